//! From a tool-call request to what deciding it needs: the policy input of kind `plugin`
//! (docs/policy-input.md), the facts the engine will also derive (for metrics and the grant
//! an approval suggests), and what approvers and the audit log see.
//!
//! The trace: OpenClaw's own (`trace.traceId`, the same id its model calls carry in
//! `traceparent`), else the run's as the turn check saw it, else a new one; so the trace view
//! shows a turn's model calls and tool calls together.

use std::collections::BTreeMap;

use decision::{CallKind, PluginInput, PolicyInput, RequesterInput, ToolFamily, ToolInput};
use governance::plugin_tokens::PluginTokenInfo;
use policy::plugin::PluginFacts;
use serde_json::{json, Map, Value};

use crate::wire::ToolCall;
use crate::Gate;

/// Longest string kept in a record's copy of the parameters.
const MAX_STRING: usize = 2048;

/// A tool call ready to decide.
pub(crate) struct Prepared {
    pub agent: String,
    /// The gateway the plugin token belongs to.
    pub gateway: String,
    /// The tool as OpenClaw names it.
    pub tool_name: String,
    pub input: PolicyInput,
    pub facts: PluginFacts,
    /// What the approver and the audit log see (parameters bounded).
    pub subject: Value,
    /// OpenClaw's ids, for the audit record.
    pub details: Value,
    /// What an "allow always" covers: the tool name as `grants.rego` matches it, and the
    /// arguments as it matches them (`plugin.grant_args`, else the arguments as JSON).
    pub grant_pattern: String,
    pub grant_args: String,
}

pub(crate) fn prepare(gate: &Gate, token: &PluginTokenInfo, req: &ToolCall) -> Prepared {
    let run = req.run_id.as_deref().and_then(|r| gate.memory.get_run(r));
    let trace_id = req
        .trace
        .valid_id()
        .map(str::to_string)
        .or_else(|| run.as_ref().and_then(|r| r.trace_id.clone()))
        .unwrap_or_else(decision::new_trace_id);
    if let (Some(r), None) = (&req.run_id, run.as_ref().and_then(|r| r.trace_id.as_ref())) {
        let t = trace_id.clone();
        gate.memory.run(r, |run| run.trace_id = Some(t));
    }
    let workspace = req.workspace.clone().or_else(|| run.as_ref().and_then(|r| r.workspace.clone()));
    let trigger =
        req.run.as_ref().and_then(|r| r.trigger.clone()).or_else(|| run.as_ref().and_then(|r| r.trigger.clone()));
    let channel = req
        .run
        .as_ref()
        .and_then(|r| r.channel.clone())
        .or_else(|| req.requester.channel.clone())
        .or_else(|| run.as_ref().and_then(|r| r.channel.clone()));
    let params = Value::Object(req.params.clone());
    let facts = policy::plugin::facts(&req.tool_name, &params, workspace.as_deref(), &req.derived_paths);
    let (server, name) = match decision::mcp_parts(&req.tool_name) {
        Some((s, t)) if facts.family == ToolFamily::Mcp => (Some(s.to_string()), t.to_string()),
        _ => (None, req.tool_name.clone()),
    };
    let grant_args = facts.grant_args.clone().unwrap_or_else(|| canonical_json(&params));
    // An approval suggests its grant masked (grants never hold a phone number or a secret),
    // so the grant is matched against the masked form too (grants.rego).
    let masked = audit::mask::mask_text_with_salted(&grant_args, &[], gate.parts.audit.mask_salt());
    let grant_args_masked = (masked != grant_args).then_some(masked);
    let mut input = PolicyInput::new(CallKind::Plugin, &req.agent_id, &trace_id);
    input.session = req.session_key.clone();
    input.grants = gate.parts.broker.grants_for(&req.agent_id);
    input.tool = Some(ToolInput { server: server.clone(), name: name.clone(), args: params.clone() });
    let r = &req.requester;
    input.plugin = Some(PluginInput {
        tool_name: req.tool_name.clone(),
        tool_kind: req.tool_kind.clone(),
        input_kind: req.tool_input_kind.clone(),
        run_id: req.run_id.clone(),
        tool_call_id: req.tool_call_id.clone(),
        session_id: req.session_id.clone(),
        workspace: workspace.clone(),
        trigger: trigger.clone(),
        channel: channel.clone(),
        requester: RequesterInput {
            channel: r.channel.clone(),
            account_id: r.account_id.clone(),
            sender_id: r.sender_id.clone(),
            sender_is_owner: r.sender_is_owner,
            role_ids: r.role_ids.clone(),
        },
        derived_paths: req.derived_paths.clone(),
        grant_args_masked,
    });
    let mut subject = json!({
        "tool": req.tool_name,
        "family": facts.family.as_str(),
        "params": Value::Object(bounded(&req.params)),
    });
    if let Some(o) = subject.as_object_mut() {
        if let Some(s) = &server {
            o.insert("server".into(), json!(s));
            o.insert("mcp_tool".into(), json!(name));
        }
        for (k, v) in [("paths", &facts.paths), ("recipients", &facts.recipients), ("hosts", &facts.hosts)] {
            if !v.is_empty() {
                o.insert(k.into(), json!(v));
            }
        }
        if let Some(w) = &workspace {
            o.insert("workspace".into(), json!(w));
        }
    }
    let details = json!({
        "kind": "tool_call",
        "run_id": req.run_id,
        "tool_call_id": req.tool_call_id,
        "session_id": req.session_id,
        "gateway": token.gateway,
        "trigger": trigger,
        "channel": channel,
    });
    Prepared {
        agent: req.agent_id.clone(),
        gateway: token.gateway.clone(),
        tool_name: req.tool_name.clone(),
        input,
        facts,
        subject,
        details,
        grant_pattern: name,
        grant_args,
    }
}

/// One line for an approver: the tool and what it touches.
pub(crate) fn summary(p: &Prepared) -> String {
    let f = &p.facts;
    let what = if !f.paths.is_empty() {
        format!("files: {}", f.paths.join(", "))
    } else if !f.recipients.is_empty() {
        format!("to: {}", f.recipients.join(", "))
    } else if !f.hosts.is_empty() {
        format!("hosts: {}", f.hosts.join(", "))
    } else if let Some(g) = &f.grant_args {
        g.chars().take(300).collect()
    } else {
        p.grant_args.chars().take(300).collect()
    };
    format!("Tool {} ({what}).", p.tool_name)
}

/// JSON text as Rego's `json.marshal` writes an object: compact, keys sorted at every level.
pub(crate) fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(o) => {
                let m: BTreeMap<&String, Value> = o.iter().map(|(k, x)| (k, sorted(x))).collect();
                Value::Object(m.into_iter().map(|(k, x)| (k.clone(), x)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_string(&sorted(v)).unwrap_or_default()
}

/// A copy of tool parameters for records: strings past [`MAX_STRING`] characters are cut
/// (a `write` can carry a whole file), saying how long they were.
pub(crate) fn bounded(m: &Map<String, Value>) -> Map<String, Value> {
    fn cut(v: &Value, depth: usize) -> Value {
        match v {
            Value::String(s) if s.chars().count() > MAX_STRING => {
                let head: String = s.chars().take(MAX_STRING).collect();
                Value::String(format!("{head}… ({} characters in all)", s.chars().count()))
            }
            Value::Object(_) | Value::Array(_) if depth > 8 => Value::String("(nested too deep)".into()),
            Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), cut(x, depth + 1))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(|x| cut(x, depth + 1)).collect()),
            other => other.clone(),
        }
    }
    m.iter().map(|(k, v)| (k.clone(), cut(v, 0))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_like_rego() {
        let v = json!({"z": 1, "a": {"y": [true, {"c": 1, "b": null}], "x": "s"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"x":"s","y":[true,{"b":null,"c":1}]},"z":1}"#);
    }

    #[test]
    fn long_strings_are_cut_in_records() {
        let big = "x".repeat(5000);
        let m = json!({"path": "/a", "content": big}).as_object().cloned().unwrap();
        let b = bounded(&m);
        assert_eq!(b["path"], "/a");
        let c = b["content"].as_str().unwrap();
        assert!(c.ends_with("(5000 characters in all)") && c.len() < 2200, "{}", c.len());
    }
}

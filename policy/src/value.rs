//! Building the engine's input value straight from a [`PolicyInput`]. Going through
//! `serde_json::Value` and regorus's deserializer cost several microseconds per call; this
//! builds the same document (same field names, `null` for absent options) directly, with the
//! field-name keys allocated once per thread. It also adds the derived `exec.features` and the
//! tool's derived fields (`features`, `name_features`, `arg_features`).

use std::collections::BTreeMap;

use regorus::Value;

use crate::needles::Needles;
use decision::{BudgetInput, CallKind, GrantInput, McpInput, PluginInput, PolicyInput};

mod template;

macro_rules! keys {
    ($($name:ident),* $(,)?) => {
        /// Field names as engine values, shared by every input built on this thread.
        #[allow(non_snake_case)]
        struct Keys {
            $($name: Value,)*
            /// Shared values every input repeats: `[]`, `{"estimate_usd": null, "unbounded": []}`,
            /// the kinds.
            empty: Value,
            no_cost: Value,
            kinds: [Value; 7],
        }
        impl Keys {
            fn new() -> Keys {
                let estimate_usd = Value::from("estimate_usd");
                let unbounded = Value::from("unbounded");
                let empty = Value::from(Vec::<Value>::new());
                Keys {
                    $($name: Value::from(stringify!($name)),)*
                    no_cost: obj([(&estimate_usd, Value::Null), (&unbounded, empty.clone())]),
                    empty,
                    kinds: [CallKind::ModelCall, CallKind::Exec, CallKind::ToolCall, CallKind::Plugin, CallKind::ConfigRollback, CallKind::ConfigImport, CallKind::ConfigChange]
                        .map(|c| Value::from(c.as_str())),
                }
            }
        }
    };
}

keys!(
    version,
    kind,
    agent,
    session,
    trace_id,
    model,
    exec,
    tool,
    cost,
    budgets,
    grants,
    now,
    upstream,
    upstream_kind,
    endpoint,
    name,
    max_tokens,
    stream,
    tools,
    command,
    argv,
    cwd,
    resolved_path,
    workspace,
    server,
    args,
    estimate_usd,
    unbounded,
    id,
    scope,
    window,
    spent_usd,
    limit_usd,
    remaining_usd,
    pattern,
    arg_pattern,
    expires_at,
    features,
    mcp,
    phase,
    calls,
    secret_seen,
    secret,
    action,
    plugin,
    tool_name,
    tool_kind,
    input_kind,
    run_id,
    tool_call_id,
    session_id,
    trigger,
    channel,
    requester,
    account_id,
    sender_id,
    sender_is_owner,
    role_ids,
    derived_paths,
    family,
    paths,
    recipients,
    hosts,
    grant_args,
    grant_args_masked,
    name_features,
    arg_features,
);

thread_local! {
    static KEYS: Keys = Keys::new();
}

/// The input document for `input`, equal to converting its JSON serialization.
pub(crate) fn input_value(input: &PolicyInput, needles: &Needles) -> Value {
    KEYS.with(|k| template::model_call(k, input).unwrap_or_else(|| template::remember(input, build(k, input, needles))))
}

/// An object from its fields. Collecting builds the map in bulk (one sort, no rebalancing),
/// which is cheaper than inserting field by field; callers list the fields in key order, which
/// is the sort's cheapest case.
fn obj<const N: usize>(fields: [(&Value, Value); N]) -> Value {
    Value::from(fields.into_iter().map(|(k, v)| (k.clone(), v)).collect::<BTreeMap<_, _>>())
}

fn build(k: &Keys, i: &PolicyInput, needles: &Needles) -> Value {
    let model = i.model.as_ref().map_or(Value::Null, |mo| {
        obj([
            (&k.endpoint, Value::from(mo.endpoint.as_str())),
            (&k.max_tokens, mo.max_tokens.map_or(Value::Null, Value::from)),
            (&k.name, Value::from(mo.name.as_str())),
            (&k.stream, Value::from(mo.stream)),
            (&k.tools, strings(k, &mo.tools)),
            (&k.upstream, Value::from(mo.upstream.as_str())),
            (&k.upstream_kind, Value::from(mo.upstream_kind.as_str())),
        ])
    });
    let exec = i.exec.as_ref().map_or(Value::Null, |e| {
        obj([
            (&k.argv, strings(k, &e.argv)),
            (&k.command, Value::from(e.command.as_str())),
            (&k.cwd, opt_str(e.cwd.as_deref())),
            // Derived here, never taken from the caller (see `features.rs`).
            (
                &k.features,
                crate::features::features(
                    &crate::features::command_line(&e.command, &e.argv),
                    e.cwd.as_deref(),
                    e.workspace.as_deref(),
                    needles,
                ),
            ),
            (&k.resolved_path, opt_str(e.resolved_path.as_deref())),
            (&k.workspace, opt_str(e.workspace.as_deref())),
        ])
    });
    let workspace = i.plugin.as_ref().and_then(|p| p.workspace.as_deref());
    let tool = i.tool.as_ref().map_or(Value::Null, |t| {
        let mut v = obj([
            (&k.args, json(&t.args)),
            (&k.name, Value::from(t.name.as_str())),
            (&k.server, opt_str(t.server.as_deref())),
        ]);
        // Derived here, never taken from the caller (see `features.rs`, `tool_features.rs`).
        if let Ok(o) = v.as_object_mut() {
            if let Some(f) = crate::features::tool_features(i.kind, &t.args, workspace, needles) {
                o.insert(k.features.clone(), f);
            }
            if let Some(f) = crate::tool_features::name_features(i.kind, &t.name, needles) {
                o.insert(k.name_features.clone(), f);
            }
            if let Some(p) = crate::tool_features::arg_features(i.kind, Some(&t.args), needles) {
                o.insert(k.arg_features.clone(), p);
            }
        }
        v
    });
    let plugin = match (&i.plugin, i.kind) {
        (Some(p), CallKind::Plugin) => plugin_value(k, p, i.tool.as_ref().map(|t| &t.args)),
        (Some(p), _) => plugin_value(k, p, None),
        (None, _) => Value::Null,
    };
    let kind = match i.kind {
        CallKind::ModelCall => &k.kinds[0],
        CallKind::Exec => &k.kinds[1],
        CallKind::ToolCall => &k.kinds[2],
        CallKind::Plugin => &k.kinds[3],
        CallKind::ConfigRollback => &k.kinds[4],
        CallKind::ConfigImport => &k.kinds[5],
        CallKind::ConfigChange => &k.kinds[6],
    };
    obj([
        (&k.agent, Value::from(i.agent.as_str())),
        (&k.budgets, budgets(k, i)),
        (&k.cost, cost(k, i)),
        (&k.exec, exec),
        (&k.grants, grants(k, i)),
        (&k.kind, kind.clone()),
        (&k.mcp, i.mcp.as_ref().map_or(Value::Null, |m| mcp(k, m))),
        (&k.model, model),
        (&k.now, Value::from(i.now.as_str())),
        (&k.plugin, plugin),
        (&k.session, opt_str(i.session.as_deref())),
        (&k.tool, tool),
        (&k.trace_id, Value::from(i.trace_id.as_str())),
        (&k.version, Value::from(u64::from(i.version))),
    ])
}

// The fields that change from call to call even when the caller and the model do not
// (`template.rs` replaces these, and `trace_id` and `now`, in a copy of a kept model call's
// document).

fn cost(k: &Keys, i: &PolicyInput) -> Value {
    match (i.cost.estimate_usd, i.cost.unbounded.is_empty()) {
        (None, true) => k.no_cost.clone(),
        (x, _) => {
            obj([(&k.estimate_usd, x.map_or(Value::Null, number)), (&k.unbounded, strings(k, &i.cost.unbounded))])
        }
    }
}

fn budgets(k: &Keys, i: &PolicyInput) -> Value {
    list(k, i.budgets.iter().map(|b| budget(k, b)).collect())
}

fn grants(k: &Keys, i: &PolicyInput) -> Value {
    list(k, i.grants.iter().map(|g| grant(k, g)).collect())
}

fn list(k: &Keys, v: Vec<Value>) -> Value {
    if v.is_empty() {
        k.empty.clone()
    } else {
        Value::from(v)
    }
}

fn mcp(k: &Keys, m: &McpInput) -> Value {
    let calls = m
        .calls
        .iter()
        .map(|c| {
            obj([
                (&k.action, Value::from(c.action.as_str())),
                (&k.secret, Value::from(c.secret)),
                (&k.server, Value::from(c.server.as_str())),
                (&k.tool, Value::from(c.tool.as_str())),
            ])
        })
        .collect::<Vec<_>>();
    obj([
        (&k.calls, if calls.is_empty() { k.empty.clone() } else { Value::from(calls) }),
        (&k.phase, Value::from(m.phase.as_str())),
        (&k.secret_seen, Value::from(m.secret_seen)),
    ])
}

/// `input.plugin`: the caller's fields plus the derived facts (`plugin.rs`; only for kind
/// `plugin`, where `args` are the tool's arguments).
fn plugin_value(k: &Keys, p: &PluginInput, args: Option<&serde_json::Value>) -> Value {
    let r = &p.requester;
    let requester = obj([
        (&k.account_id, opt_str(r.account_id.as_deref())),
        (&k.channel, opt_str(r.channel.as_deref())),
        (&k.role_ids, strings(k, &r.role_ids)),
        (&k.sender_id, opt_str(r.sender_id.as_deref())),
        (&k.sender_is_owner, r.sender_is_owner.map_or(Value::Null, Value::from)),
    ]);
    let mut v = obj([
        (&k.channel, opt_str(p.channel.as_deref())),
        (&k.derived_paths, strings(k, &p.derived_paths)),
        (&k.grant_args_masked, opt_str(p.grant_args_masked.as_deref())),
        (&k.input_kind, opt_str(p.input_kind.as_deref())),
        (&k.requester, requester),
        (&k.run_id, opt_str(p.run_id.as_deref())),
        (&k.session_id, opt_str(p.session_id.as_deref())),
        (&k.tool_call_id, opt_str(p.tool_call_id.as_deref())),
        (&k.tool_kind, opt_str(p.tool_kind.as_deref())),
        (&k.tool_name, Value::from(p.tool_name.as_str())),
        (&k.trigger, opt_str(p.trigger.as_deref())),
        (&k.workspace, opt_str(p.workspace.as_deref())),
    ]);
    if let (Some(args), Ok(o)) = (args, v.as_object_mut()) {
        let f = crate::plugin::facts(&p.tool_name, args, p.workspace.as_deref(), &p.derived_paths);
        o.insert(k.family.clone(), Value::from(f.family.as_str()));
        o.insert(k.paths.clone(), strings(k, &f.paths));
        o.insert(k.recipients.clone(), strings(k, &f.recipients));
        o.insert(k.hosts.clone(), strings(k, &f.hosts));
        o.insert(k.grant_args.clone(), opt_str(f.grant_args.as_deref()));
    }
    v
}

fn budget(k: &Keys, b: &BudgetInput) -> Value {
    obj([
        (&k.id, Value::from(b.id.as_str())),
        (&k.limit_usd, number(b.limit_usd)),
        (&k.remaining_usd, number(b.remaining_usd)),
        (&k.scope, Value::from(b.scope.as_str())),
        (&k.spent_usd, number(b.spent_usd)),
        (&k.window, Value::from(b.window.as_str())),
    ])
}

fn grant(k: &Keys, g: &GrantInput) -> Value {
    obj([
        (&k.agent, Value::from(g.agent.as_str())),
        (&k.arg_pattern, opt_str(g.arg_pattern.as_deref())),
        (&k.expires_at, opt_str(g.expires_at.as_deref())),
        (&k.id, Value::from(g.id.as_str())),
        (&k.kind, Value::from(g.kind.as_str())),
        (&k.pattern, Value::from(g.pattern.as_str())),
    ])
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

fn strings(k: &Keys, items: &[String]) -> Value {
    if items.is_empty() {
        return k.empty.clone();
    }
    Value::from(items.iter().map(|s| Value::from(s.as_str())).collect::<Vec<_>>())
}

/// JSON has no NaN or infinity: serde_json writes them as `null`, and so do we.
fn number(x: f64) -> Value {
    if x.is_finite() {
        Value::from(x)
    } else {
        Value::Null
    }
}

/// Arbitrary JSON (tool arguments), converted as regorus's deserializer would.
fn json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                n.as_f64().map_or(Value::Null, number)
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => {
            Value::from(o.iter().map(|(key, val)| (Value::from(key.as_str()), json(val))).collect::<BTreeMap<_, _>>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decision::{Action, CallKind, CostInput, ExecInput, McpCallInput, McpPhase, ModelInput, ToolInput};

    /// The JSON conversion plus the derived features, as `evaluate_value` builds it.
    fn via_json(i: &PolicyInput) -> Value {
        crate::features::attach_to_json(&serde_json::to_value(i).unwrap(), &Needles::default())
    }

    #[test]
    fn direct_value_equals_the_json_conversion() {
        let mut m = PolicyInput::new(CallKind::ModelCall, "main", "t");
        m.session = Some("agent:main:main".into());
        m.model = Some(ModelInput {
            upstream: "openai".into(),
            upstream_kind: "openai".into(),
            endpoint: "chat_completions".into(),
            name: "gpt-4o".into(),
            max_tokens: Some(4096),
            stream: true,
            tools: vec!["exec".into(), "read".into()],
        });
        m.cost = CostInput { estimate_usd: Some(0.0412), unbounded: vec!["image".into(), "server_tool".into()] };
        m.budgets.push(BudgetInput {
            id: "b".into(),
            scope: "global".into(),
            window: "daily".into(),
            spent_usd: 5.0,
            limit_usd: 5.0,
            remaining_usd: f64::NAN,
        });
        m.grants.push(GrantInput {
            id: "g1".into(),
            agent: "main".into(),
            kind: CallKind::Exec,
            pattern: "git *".into(),
            arg_pattern: None,
            expires_at: Some("2026-06-30T00:00:00Z".into()),
        });
        let mut x = PolicyInput::new(CallKind::Exec, "main", "t");
        x.exec = Some(ExecInput {
            command: "rm -rf /".into(),
            argv: vec!["rm".into(), "-rf".into()],
            cwd: None,
            resolved_path: Some("/bin/rm".into()),
            workspace: None,
        });
        let mut t = PolicyInput::new(CallKind::Plugin, "main", "t");
        t.tool = Some(ToolInput {
            server: None,
            name: "exec".into(),
            args: serde_json::json!({"command": "ls", "n": -3, "f": 1.5, "big": u64::MAX, "l": [null, true, {"z": 1}]}),
        });
        t.plugin = Some(PluginInput {
            tool_name: "exec".into(),
            workspace: Some("/w".into()),
            run_id: Some("r1".into()),
            requester: decision::RequesterInput {
                channel: Some("webchat".into()),
                sender_is_owner: Some(true),
                role_ids: vec!["admin".into()],
                ..Default::default()
            },
            ..Default::default()
        });
        let mut w = PolicyInput::new(CallKind::Plugin, "main", "t");
        w.tool = Some(ToolInput {
            server: None,
            name: "write".into(),
            args: serde_json::json!({"path": "../x", "content": "c"}),
        });
        w.plugin = Some(PluginInput {
            tool_name: "write".into(),
            workspace: Some("/w/a".into()),
            derived_paths: vec!["/w/y".into()],
            trigger: Some("cron".into()),
            ..Default::default()
        });
        let mut mcp = PolicyInput::new(CallKind::ToolCall, "main", "t");
        mcp.tool = Some(ToolInput {
            server: Some("sh".into()),
            name: "run".into(),
            args: serde_json::json!({"command": "rm -rf /"}),
        });
        let mut mc = PolicyInput::new(CallKind::ToolCall, "main", "t");
        mc.tool =
            Some(ToolInput { server: Some("fs".into()), name: "read_file".into(), args: serde_json::Value::Null });
        mc.mcp = Some(McpInput {
            phase: McpPhase::Call,
            calls: vec![McpCallInput { server: "fs".into(), tool: "read".into(), action: Action::Allow, secret: true }],
            secret_seen: true,
        });
        let mut ml = mc.clone();
        ml.mcp = Some(McpInput { phase: McpPhase::List, calls: Vec::new(), secret_seen: false });
        let built = input_value(&w, &Needles::default());
        assert_eq!(built["plugin"]["paths"], Value::from(vec![Value::from("/w/x"), Value::from("/w/y")]));
        assert_eq!(built["plugin"]["family"], Value::from("file_write"));
        assert_eq!(input_value(&t, &Needles::default())["tool"]["features"]["program"], Value::from("ls"));
        for i in [m, x, t, w, mcp, mc, ml, PolicyInput::new(CallKind::ToolCall, "a", "b")] {
            assert_eq!(input_value(&i, &Needles::default()), via_json(&i), "{i:?}");
        }
    }
}

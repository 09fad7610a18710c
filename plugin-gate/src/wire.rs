//! The protocol the ClawButler OpenClaw plugin speaks (version 1; `openclaw-plugin/index.js`,
//! docs/plugin.md): the two decision requests, the reports, and the answers. Unknown fields
//! are ignored (a newer plugin or OpenClaw may send more); a missing required field, a wrong
//! type or an unknown `kind` is a [`WireError`] the endpoint answers with 400, naming it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The protocol version this sidecar speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Why a body was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WireError {
    #[error("the body is not a JSON object: {0}")]
    NotJson(String),
    #[error("invalid {kind} request: {detail}")]
    Invalid { kind: &'static str, detail: String },
    #[error("unsupported protocol version {0} (this sidecar speaks version 1; update the plugin or the sidecar)")]
    Version(u64),
}

/// W3C trace context as OpenClaw gives it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
}

impl Trace {
    /// The trace id when it is one (32 lowercase hex digits, not all zeros).
    pub fn valid_id(&self) -> Option<&str> {
        self.trace_id.as_deref().filter(|t| {
            t.len() == 32
                && t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && t.bytes().any(|b| b != b'0')
        })
    }
}

/// Who asked for the turn (`ctx.requester`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Requester {
    pub channel: Option<String>,
    pub account_id: Option<String>,
    pub sender_id: Option<String>,
    pub sender_is_owner: Option<bool>,
    #[serde(default)]
    pub role_ids: Vec<String>,
}

/// What the plugin remembered of the run from `before_agent_run`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunCtx {
    pub trigger: Option<String>,
    pub channel: Option<String>,
    pub message_provider: Option<String>,
}

/// `kind: "tool_call"` (from `before_tool_call`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolCall {
    pub agent_id: String,
    pub tool_name: String,
    pub session_key: Option<String>,
    pub session_id: Option<String>,
    pub run_id: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_kind: Option<String>,
    pub tool_input_kind: Option<String>,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub derived_paths: Vec<String>,
    #[serde(default)]
    pub requester: Requester,
    pub channel_id: Option<String>,
    #[serde(default)]
    pub trace: Trace,
    pub workspace: Option<String>,
    pub run: Option<RunCtx>,
    /// How long the plugin waits for this answer, in ms (newer plugins send it).
    pub timeout_ms: Option<u64>,
}

/// The model of a turn.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ModelRef {
    pub provider: Option<String>,
    pub id: Option<String>,
}

/// `kind: "agent_run"` (from `before_agent_run`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRun {
    pub agent_id: String,
    pub session_key: Option<String>,
    pub session_id: Option<String>,
    pub run_id: Option<String>,
    pub trigger: Option<String>,
    pub channel: Option<String>,
    pub channel_id: Option<String>,
    pub message_provider: Option<String>,
    pub account_id: Option<String>,
    pub sender_id: Option<String>,
    pub sender_is_owner: Option<bool>,
    #[serde(default)]
    pub model: ModelRef,
    pub workspace: Option<String>,
    #[serde(default)]
    pub trace: Trace,
    pub prompt_chars: Option<u64>,
}

/// A decision request.
#[derive(Debug, Clone, PartialEq)]
pub enum Decide {
    ToolCall(Box<ToolCall>),
    AgentRun(Box<AgentRun>),
}

/// OpenClaw's usage of a run or a call (`llm_output`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    #[serde(default)]
    pub input: u64,
    #[serde(default)]
    pub output: u64,
    #[serde(default)]
    pub cache_read: u64,
    #[serde(default)]
    pub cache_write: u64,
    #[serde(default)]
    pub cost: Option<Cost>,
}

/// OpenClaw's cost of a usage, in USD.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Cost {
    pub total: Option<f64>,
}

/// A fire-and-forget report (`POST /v1/decide/report`). Fields beyond the ones named here
/// are kept as they came (`rest`) for the audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub kind: ReportKind,
    pub agent_id: Option<String>,
    pub session_key: Option<String>,
    pub run_id: Option<String>,
    pub tool_call_id: Option<String>,
    pub tool_name: Option<String>,
    pub trace: Trace,
    /// `llm_output`: the run's usage, summed over its model calls.
    pub usage: Option<Usage>,
    /// The whole body (audit details are taken from it).
    pub body: Map<String, Value>,
}

/// The kinds of report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    ToolResult,
    ModelCall,
    LlmOutput,
    ApprovalResolution,
    Heartbeat,
}

impl ReportKind {
    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::ToolResult => "tool_result",
            ReportKind::ModelCall => "model_call",
            ReportKind::LlmOutput => "llm_output",
            ReportKind::ApprovalResolution => "approval_resolution",
            ReportKind::Heartbeat => "heartbeat",
        }
    }

    /// Every kind, for pre-creating metric series.
    pub const ALL: [ReportKind; 5] = [
        ReportKind::ToolResult,
        ReportKind::ModelCall,
        ReportKind::LlmOutput,
        ReportKind::ApprovalResolution,
        ReportKind::Heartbeat,
    ];
}

fn object(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(other) => Err(WireError::NotJson(format!("found {}", kind_of(&other)))),
        Err(e) => Err(WireError::NotJson(e.to_string())),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn version(o: &Map<String, Value>) -> Result<(), WireError> {
    match o.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => Ok(()),
        Some(Value::Number(n)) => Err(WireError::Version(n.as_u64().unwrap_or(0))),
        None => Err(WireError::Invalid { kind: "decision", detail: "missing field `version` (expected 1)".into() }),
        Some(_) => Err(WireError::Invalid { kind: "decision", detail: "`version` must be the number 1".into() }),
    }
}

/// The JSON type a known field must have (`null` is always accepted as "absent").
#[derive(Clone, Copy)]
enum Ty {
    Str,
    Obj,
    Arr,
    Num,
    Bool,
}

const TOOL_FIELDS: [(&str, Ty); 16] = [
    ("agentId", Ty::Str),
    ("toolName", Ty::Str),
    ("sessionKey", Ty::Str),
    ("sessionId", Ty::Str),
    ("runId", Ty::Str),
    ("toolCallId", Ty::Str),
    ("toolKind", Ty::Str),
    ("toolInputKind", Ty::Str),
    ("channelId", Ty::Str),
    ("workspace", Ty::Str),
    ("params", Ty::Obj),
    ("requester", Ty::Obj),
    ("trace", Ty::Obj),
    ("run", Ty::Obj),
    ("derivedPaths", Ty::Arr),
    ("timeoutMs", Ty::Num),
];

const RUN_FIELDS: [(&str, Ty); 15] = [
    ("agentId", Ty::Str),
    ("sessionKey", Ty::Str),
    ("sessionId", Ty::Str),
    ("runId", Ty::Str),
    ("trigger", Ty::Str),
    ("channel", Ty::Str),
    ("channelId", Ty::Str),
    ("messageProvider", Ty::Str),
    ("accountId", Ty::Str),
    ("senderId", Ty::Str),
    ("workspace", Ty::Str),
    ("senderIsOwner", Ty::Bool),
    ("model", Ty::Obj),
    ("trace", Ty::Obj),
    ("promptChars", Ty::Num),
];

const REPORT_FIELDS: [(&str, Ty); 7] = [
    ("agentId", Ty::Str),
    ("sessionKey", Ty::Str),
    ("runId", Ty::Str),
    ("toolCallId", Ty::Str),
    ("toolName", Ty::Str),
    ("trace", Ty::Obj),
    ("usage", Ty::Obj),
];

/// Each known top-level field present has its type (so the error names the field; serde's
/// own messages from a `Value` do not).
fn check_types(o: &Map<String, Value>, kind: &'static str, fields: &[(&str, Ty)]) -> Result<(), WireError> {
    for (name, ty) in fields {
        let (ok, want) = match (o.get(*name), ty) {
            (None | Some(Value::Null), _) => (true, ""),
            (Some(v), Ty::Str) => (v.is_string(), "a string"),
            (Some(v), Ty::Obj) => (v.is_object(), "an object"),
            (Some(v), Ty::Arr) => (v.is_array(), "an array"),
            (Some(v), Ty::Num) => (v.as_u64().is_some(), "a non-negative integer"),
            (Some(v), Ty::Bool) => (v.is_boolean(), "a boolean"),
        };
        if !ok {
            let found = o.get(*name).map_or("nothing", kind_of);
            return Err(WireError::Invalid { kind, detail: format!("`{name}` must be {want}, found {found}") });
        }
    }
    Ok(())
}

fn typed<T: serde::de::DeserializeOwned>(o: Map<String, Value>, kind: &'static str) -> Result<T, WireError> {
    serde_json::from_value(Value::Object(o)).map_err(|e| WireError::Invalid { kind, detail: e.to_string() })
}

fn non_empty(kind: &'static str, field: &str, v: &str) -> Result<(), WireError> {
    if v.trim().is_empty() {
        return Err(WireError::Invalid { kind, detail: format!("`{field}` must not be empty") });
    }
    Ok(())
}

/// Parse a `POST /v1/decide` body.
pub fn parse_decide(body: &[u8]) -> Result<Decide, WireError> {
    let o = object(body)?;
    version(&o)?;
    match o.get("kind").and_then(Value::as_str) {
        Some("tool_call") => {
            check_types(&o, "tool_call", &TOOL_FIELDS)?;
            let t: ToolCall = typed(o, "tool_call")?;
            non_empty("tool_call", "toolName", &t.tool_name)?;
            check_agent("tool_call", &t.agent_id)?;
            Ok(Decide::ToolCall(Box::new(t)))
        }
        Some("agent_run") => {
            check_types(&o, "agent_run", &RUN_FIELDS)?;
            let r: AgentRun = typed(o, "agent_run")?;
            check_agent("agent_run", &r.agent_id)?;
            Ok(Decide::AgentRun(Box::new(r)))
        }
        Some(other) => Err(WireError::Invalid {
            kind: "decision",
            detail: format!("unknown kind `{other}` (expected `tool_call` or `agent_run`)"),
        }),
        None => Err(WireError::Invalid { kind: "decision", detail: "missing field `kind` (a string)".into() }),
    }
}

fn check_agent(kind: &'static str, agent: &str) -> Result<(), WireError> {
    decision::agent_id::check(agent).map_err(|e| WireError::Invalid { kind, detail: format!("agentId: {e}") })
}

/// Parse a `POST /v1/decide/report` body.
pub fn parse_report(body: &[u8]) -> Result<Report, WireError> {
    let o = object(body)?;
    version(&o)?;
    let kind = match o.get("kind").and_then(Value::as_str) {
        Some("tool_result") => ReportKind::ToolResult,
        Some("model_call") => ReportKind::ModelCall,
        Some("llm_output") => ReportKind::LlmOutput,
        Some("approval_resolution") => ReportKind::ApprovalResolution,
        Some("heartbeat") => ReportKind::Heartbeat,
        Some(other) => {
            return Err(WireError::Invalid { kind: "report", detail: format!("unknown report kind `{other}`") });
        }
        None => return Err(WireError::Invalid { kind: "report", detail: "missing field `kind` (a string)".into() }),
    };
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        agent_id: Option<String>,
        session_key: Option<String>,
        run_id: Option<String>,
        tool_call_id: Option<String>,
        tool_name: Option<String>,
        #[serde(default)]
        trace: Trace,
        usage: Option<Usage>,
    }
    check_types(&o, "report", &REPORT_FIELDS)?;
    let h: Head = typed(o.clone(), "report")?;
    if let Some(a) = &h.agent_id {
        check_agent("report", a)?;
    }
    Ok(Report {
        kind,
        agent_id: h.agent_id,
        session_key: h.session_key,
        run_id: h.run_id,
        tool_call_id: h.tool_call_id,
        tool_name: h.tool_name,
        trace: h.trace,
        usage: if kind == ReportKind::LlmOutput { h.usage } else { None },
        body: o,
    })
}

/// The answer to a tool call (`action`: allow, block, rewrite, approve).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolAnswer {
    pub action: &'static str,
    /// block: shown to the model verbatim; approve: the description's fallback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// rewrite: shallow-merged into the call's parameters by OpenClaw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_decisions: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_reason: Option<String>,
    pub decision_id: String,
    /// The rule that decided (for people reading the plugin's debug log).
    pub rule: String,
    /// The ClawButler approval that held the call, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

impl ToolAnswer {
    /// A bare answer of `action`.
    pub fn new(action: &'static str, decision_id: &str, rule: &str) -> ToolAnswer {
        ToolAnswer {
            action,
            reason: None,
            params: None,
            title: None,
            description: None,
            severity: None,
            timeout_ms: None,
            allowed_decisions: None,
            timeout_reason: None,
            decision_id: decision_id.to_string(),
            rule: rule.to_string(),
            approval_id: None,
        }
    }
}

/// The answer to a turn check (`action`: allow, block).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAnswer {
    pub action: &'static str,
    /// block: OpenClaw's internal reason code (`agent_killed`, `budget_exceeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// block: what the user sees ("Your message could not be sent: <message> (blocked by clawbutler)").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<&'static str>,
    pub decision_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn the_plugins_tool_call_parses_and_unknown_fields_are_ignored() {
        let b = body(
            json!({"version":1,"kind":"tool_call","agentId":"main","sessionKey":"agent:main:ws","sessionId":"s",
            "runId":"idem-1","toolCallId":"call17","toolName":"write","toolKind":"code_mode_exec",
            "params":{"path":"/ws/a","content":"x"},"derivedPaths":["/ws/a"],
            "requester":{"channel":"webchat","senderId":"gateway-client","senderIsOwner":true,"somethingNew":1},
            "channelId":"agent:main:ws","trace":{"traceId":"d4fe4c3c0000000000000000000000aa","spanId":"b7"},
            "workspace":"/ws","run":{"trigger":"user","channel":"webchat","messageProvider":"webchat"},"future":{"x":1}}),
        );
        let Decide::ToolCall(t) = parse_decide(&b).unwrap() else { panic!("tool call") };
        assert_eq!((t.agent_id.as_str(), t.tool_name.as_str()), ("main", "write"));
        assert_eq!(t.params["path"], "/ws/a");
        assert_eq!(t.requester.channel.as_deref(), Some("webchat"));
        assert_eq!(t.trace.valid_id(), Some("d4fe4c3c0000000000000000000000aa"));
        assert_eq!(t.run.unwrap().trigger.as_deref(), Some("user"));
        // The smallest one the plugin can send (a CLI run): no requester channel, no run.
        let b = body(json!({"version":1,"kind":"tool_call","agentId":"main","toolName":"exec","params":{}}));
        assert!(matches!(parse_decide(&b), Ok(Decide::ToolCall(_))));
    }

    #[test]
    fn malformed_bodies_name_what_is_wrong() {
        let cases = [
            (b"not json".to_vec(), "not a JSON object"),
            (body(json!([1])), "found an array"),
            (body(json!({"kind":"tool_call","agentId":"main","toolName":"x"})), "missing field `version`"),
            (body(json!({"version":2,"kind":"tool_call"})), "unsupported protocol version 2"),
            (body(json!({"version":1})), "missing field `kind`"),
            (body(json!({"version":1,"kind":"tool_cal"})), "unknown kind `tool_cal`"),
            (body(json!({"version":1,"kind":"tool_call","agentId":"main"})), "missing field `toolName`"),
            (
                body(json!({"version":1,"kind":"tool_call","agentId":"main","toolName":" "})),
                "`toolName` must not be empty",
            ),
            (
                body(json!({"version":1,"kind":"tool_call","agentId":"main","toolName":"x","params":"a"})),
                "`params` must be an object, found a string",
            ),
            (
                body(
                    json!({"version":1,"kind":"tool_call","agentId":"main","toolName":"x","requester":{"senderIsOwner":"yes"}}),
                ),
                "invalid type",
            ),
            (body(json!({"version":1,"kind":"tool_call","agentId":"Main!","toolName":"x"})), "agentId"),
            (body(json!({"version":1,"kind":"agent_run"})), "missing field `agentId`"),
            (
                body(json!({"version":1,"kind":"tool_call","agentId":"main","toolName":"x","runId":5})),
                "`runId` must be a string, found a number",
            ),
            (
                body(json!({"version":1,"kind":"agent_run","agentId":"main","senderIsOwner":1})),
                "`senderIsOwner` must be a boolean",
            ),
        ];
        for (b, want) in cases {
            let e = parse_decide(&b).unwrap_err().to_string();
            assert!(e.contains(want), "{want:?} not in {e:?} for {}", String::from_utf8_lossy(&b));
        }
    }

    #[test]
    fn reports_parse_by_kind() {
        let b = body(json!({"version":1,"kind":"llm_output","agentId":"main","runId":"r","provider":"fake",
            "usage":{"input":2000,"output":100,"cacheRead":0,"cacheWrite":0,"total":2100,"cost":{"total":0.0022}},
            "trace":{"traceId":"f6fdc482000000000000000000000001"}}));
        let r = parse_report(&b).unwrap();
        assert_eq!(r.kind, ReportKind::LlmOutput);
        assert_eq!(r.usage.as_ref().map(|u| (u.input, u.output)), Some((2000, 100)));
        assert_eq!(r.usage.unwrap().cost.unwrap().total, Some(0.0022));
        assert_eq!(r.body["provider"], "fake");
        let hb = body(json!({"version":1,"kind":"heartbeat","plugin":"0.1.0","pid":7,"beat":3,"timeoutMs":599000}));
        assert_eq!(parse_report(&hb).unwrap().kind, ReportKind::Heartbeat);
        assert!(parse_report(&body(json!({"version":1,"kind":"gossip"}))).unwrap_err().to_string().contains("gossip"));
    }
}

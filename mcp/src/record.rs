//! The audit records of tool calls: a `started` record for a forwarded call still running one
//! group window after it was sent (so a crash leaves "started, outcome unknown"; a faster call
//! would have had both records in the same group commit) and one record of how it ended, for
//! every call, refused ones included. They carry the agent, the MCP session, server, tool, the arguments (masked
//! by the audit log at write time), the decision and rule, the result's status and digest,
//! what was masked in the result, the duration and the cost. Refusals are on disk before
//! the client is answered; forwarded calls are recorded at the next group commit.

use audit::{AuditEvent, Outcome, RecordKind};
use decision::Decision;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::session::Session;
use crate::State;

/// What one tool call is, for its records.
pub(crate) struct CallInfo<'a> {
    pub sess: &'a Session,
    pub server: &'a str,
    pub tool: &'a str,
    pub exposed: &'a str,
    pub args: &'a Value,
    pub args_sha256: &'a str,
    pub trace_id: &'a str,
}

/// How the result went, for the end record.
#[derive(Default)]
pub(crate) struct ResultInfo {
    /// `ok`, `tool_error` (isError), `error` (JSON-RPC error), `timeout`, `unavailable`,
    /// `failed` (transport), `cancelled`, `refused`.
    pub status: &'static str,
    pub sha256: Option<String>,
    pub bytes: usize,
    pub secrets_found: usize,
    pub secret_classes: Vec<&'static str>,
    pub masked: bool,
    pub approval_id: Option<String>,
    pub upstream_error: Option<String>,
}

/// Hex SHA-256.
pub(crate) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn subject(c: &CallInfo<'_>) -> Value {
    json!({
        "server": c.server,
        "tool": c.tool,
        "exposed": c.exposed,
        "args": c.args,
        "args_sha256": c.args_sha256,
    })
}

fn base(c: &CallInfo<'_>, d: &Decision) -> AuditEvent {
    AuditEvent {
        trace_id: Some(c.trace_id.to_string()),
        agent: Some(c.sess.agent.clone()),
        session: Some(c.sess.id.clone()),
        subject: subject(c),
        actor: Some("policy".into()),
        ..AuditEvent::from_decision(RecordKind::ToolCall, d)
    }
}

/// The record written when a call is forwarded.
pub(crate) fn started(c: &CallInfo<'_>, d: &Decision) -> AuditEvent {
    let mut ev = base(c, d);
    // The arguments are in the end record; the start only has to name the call.
    ev.subject = json!({"server": c.server, "tool": c.tool, "exposed": c.exposed, "args_sha256": c.args_sha256});
    ev.outcome = Some(Outcome::Started);
    ev.details = json!({"mcp_session": c.sess.id});
    ev
}

/// The record of how a call ended.
pub(crate) fn ended(
    c: &CallInfo<'_>,
    d: &Decision,
    outcome: Outcome,
    r: &ResultInfo,
    latency_ms: f64,
    cost: Option<f64>,
    charged: Option<f64>,
) -> AuditEvent {
    let mut ev = base(c, d);
    ev.outcome = Some(outcome);
    ev.latency_ms = Some(latency_ms);
    ev.cost_usd = cost;
    ev.charged_usd = charged;
    let mut details = json!({
        "mcp_session": c.sess.id,
        "client": c.sess.client_name,
        "result": {"status": r.status, "sha256": r.sha256, "bytes": r.bytes},
        "secrets_in_result": {"found": r.secrets_found, "classes": r.secret_classes, "masked": r.masked},
    });
    if let Some(a) = &r.approval_id {
        details["approval_id"] = json!(a);
    }
    if let Some(e) = &r.upstream_error {
        details["upstream_error"] = json!(e);
    }
    ev.details = details;
    ev
}

/// Append a refusal and wait until it is on disk (fail closed: the call stays refused if
/// it cannot be written).
pub(crate) async fn durable(st: &State, ev: AuditEvent) {
    if let Err(e) = st.parts.audit.append_durable(ev).await {
        tracing::error!(error = %e, "audit append failed for a refused MCP tool call");
    }
}

/// Append (durable at the next group commit).
pub(crate) fn append(st: &State, ev: AuditEvent) {
    if let Err(e) = st.parts.audit.append(ev) {
        tracing::error!(error = %e, "audit append failed for an MCP tool call");
    }
}

//! Requests an upstream sends the client (elicitation, sampling, roots), routed back to the
//! client through the sidecar. Each is decided by the policy first (kind `tool_call`,
//! `tool.name` = the method, `tool.args` = its params, `mcp.phase` = `server_request`): only
//! an allow forwards it (a hold cannot wait here: the upstream's call is waiting on it, so a
//! hold refuses it too). It is forwarded only when the client declared that capability
//! (else the upstream gets "method not found", as OpenClaw itself answers). Its id towards
//! the client is the sidecar's own (`cb-<n>`, unique in the session), so it never collides
//! with ids the client or another upstream uses; the answer is matched back by that id.
//! It goes on the stream of the call it belongs to, else on the session's GET stream.
//! Every one is audited (kind `tool_call`, `details.direction` = `server_to_client`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use decision::{Action, CallKind, McpInput, McpPhase, PolicyInput, ToolInput};
use rmcp::model::{ErrorCode, ErrorData};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::jsonrpc;
use crate::session::Session;
use crate::sse::Out;
use crate::upstream::CallRoute;
use crate::State;

/// The client capability a method needs.
fn capability(method: &str) -> Option<&'static str> {
    match method {
        "elicitation/create" => Some("elicitation"),
        "sampling/createMessage" => Some("sampling"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

fn err(code: i32, message: String) -> ErrorData {
    ErrorData::new(ErrorCode(code), message, None)
}

#[allow(clippy::too_many_arguments)]
fn audit(
    st: &State,
    sess: &Session,
    server: &str,
    method: &str,
    d: &decision::Decision,
    outcome: audit::Outcome,
    status: &str,
    t0: Instant,
) {
    let ev = audit::AuditEvent {
        trace_id: Some(decision::new_trace_id()),
        agent: Some(sess.agent.clone()),
        session: Some(sess.id.clone()),
        subject: json!({"server": server, "tool": method}),
        actor: Some("policy".into()),
        outcome: Some(outcome),
        latency_ms: Some(t0.elapsed().as_secs_f64() * 1e3),
        details: json!({"direction": "server_to_client", "mcp_session": sess.id, "result": {"status": status}}),
        ..audit::AuditEvent::from_decision(audit::RecordKind::ToolCall, d)
    };
    crate::record::append(st, ev);
}

/// Forward `method` from upstream `server` to the client and wait for its answer.
pub(crate) async fn forward(
    st: &Arc<State>,
    sess: &Arc<Session>,
    server: usize,
    method: &str,
    params: Value,
    route: Option<Arc<CallRoute>>,
    upstream_cancel: CancellationToken,
) -> Result<Value, ErrorData> {
    let t0 = Instant::now();
    let _busy = sess.busy();
    let name = st.servers.get(server).map(|s| s.name().to_string()).unwrap_or_default();
    let Some(cap) = capability(method) else {
        return Err(err(ErrorCode::METHOD_NOT_FOUND.0, format!("{method} is not forwarded to the client")));
    };
    if !sess.client_has(cap) {
        return Err(err(ErrorCode::METHOD_NOT_FOUND.0, format!("Method not found: the client did not declare {cap}")));
    }
    let (calls, secret_seen) = sess.policy_context(st.parts.policy.reads_mcp_calls());
    let mut input = PolicyInput::new(CallKind::ToolCall, &sess.agent, &decision::new_trace_id());
    input.session = Some(sess.id.clone());
    input.tool = Some(ToolInput { server: Some(name.clone()), name: method.to_string(), args: params.clone() });
    input.mcp = Some(McpInput { phase: McpPhase::ServerRequest, calls, secret_seen });
    input.grants = st.parts.broker.grants_for(&sess.agent);
    let d = st.parts.policy.evaluate(&input);
    if d.action != Action::Allow {
        audit(st, sess, &name, method, &d, audit::Outcome::Denied, "refused", t0);
        let why = if d.action == Action::Hold {
            " (needs approval, and a request from a server cannot wait for one)"
        } else {
            ""
        };
        return Err(err(
            jsonrpc::code::SERVER as i32,
            format!("DENIED by ClawButler policy (rule {}): {}{why}", d.rule, d.reason),
        ));
    }
    let id = sess.next_reverse_id();
    let (tx, rx) = oneshot::channel();
    sess.reverse.insert(id.clone(), tx);
    let msg = jsonrpc::request(&id, method, &params);
    let sent_on_call = match &route {
        Some(r) => r.out.send(Out::Event(msg.clone())).await.is_ok(),
        None => false,
    };
    if !sent_on_call {
        sess.notify(msg);
    }
    let limit = Duration::from_secs(st.settings.server_request_timeout_s);
    let cancelled_note = || {
        let n = jsonrpc::notification(
            "notifications/cancelled",
            Some(&json!({"requestId": id, "reason": "the server withdrew its request"})),
        );
        match &route {
            Some(r) => {
                let _ = r.out.try_send(Out::Event(n));
            }
            None => sess.notify(n),
        }
    };
    let outcome = tokio::select! {
        r = rx => r.map_err(|_| err(ErrorCode::INTERNAL_ERROR.0, "the MCP session ended".into())),
        _ = tokio::time::sleep(limit) => Err(err(ErrorCode::INTERNAL_ERROR.0, format!("the client did not answer {method} within {} s", limit.as_secs()))),
        _ = upstream_cancel.cancelled() => {
            cancelled_note();
            Err(err(ErrorCode::INTERNAL_ERROR.0, "cancelled by the server".into()))
        }
        _ = sess.closed.cancelled() => Err(err(ErrorCode::INTERNAL_ERROR.0, "the MCP session ended".into())),
    };
    sess.reverse.remove(&id);
    match outcome {
        Ok(Ok(result)) => {
            audit(st, sess, &name, method, &d, audit::Outcome::Completed, "ok", t0);
            Ok(result)
        }
        Ok(Err(e)) => {
            audit(st, sess, &name, method, &d, audit::Outcome::Completed, "error", t0);
            let code = e.get("code").and_then(Value::as_i64).unwrap_or(i64::from(ErrorCode::INTERNAL_ERROR.0));
            let message = e.get("message").and_then(Value::as_str).unwrap_or("error").to_string();
            Err(ErrorData::new(ErrorCode(code as i32), message, e.get("data").cloned()))
        }
        Err(e) => {
            audit(st, sess, &name, method, &d, audit::Outcome::Cancelled, "no_answer", t0);
            Err(e)
        }
    }
}

/// The client answered a request the sidecar sent it (unknown ids are ignored).
pub(crate) fn resolve(sess: &Session, id: &Value, outcome: Result<Value, Value>) {
    let Some(key) = id.as_str() else { return };
    if let Some((_, tx)) = sess.reverse.remove(key) {
        let _ = tx.send(outcome);
    }
}

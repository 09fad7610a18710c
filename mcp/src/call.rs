//! One `tools/call`, in order (each step's refusal is an `isError` result with the reason, so
//! the model reads it and the run goes on; OpenClaw pauses a server after three JSON-RPC
//! errors in a row, never after `isError` results):
//!
//! 1. the exposed name → server and tool (unknown: JSON-RPC -32602);
//! 2. kill switch, audit gate, open budget breakers (`mcp:<server>`, `agent:`, `global`);
//! 3. the policy, with the arguments and the session context (`input.mcp`): deny → refused,
//!    the upstream is never called; hold → `hold.rs`;
//! 4. the budget reservation (tools with `cost_usd`), all or nothing;
//! 5. forward to the server (its `timeout_s`; a client `notifications/cancelled` cancels
//!    upstream too; progress goes back only under the client's own progress token);
//! 6. secrets in the result found and, unless the decision's `result_secrets` says `pass`,
//!    masked; the budget settled; the session context updated (`secret_seen`); one audit
//!    record; metrics.
//!
//! A client that goes away does not cancel a forwarded call (only `notifications/cancelled`
//! does, as MCP says): it runs to its end and is recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use decision::{
    Action, CallKind, Decision, McpCallInput, McpInput, McpPhase, PolicyInput, ResultSecrets, Risk, ToolInput,
};
use governance::budget::{CallScope, Charge};
use http::{HeaderName, HeaderValue};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog;
use crate::jsonrpc::{self, code};
use crate::record::{self, CallInfo, ResultInfo};
use crate::session::{Inflight, Session};
use crate::sse::Out;
use crate::upstream::{CallRoute, Forwarded, Server};
use crate::State;

mod hold;

/// Headers of a call's answer.
pub(crate) type Headers = Vec<(HeaderName, HeaderValue)>;

/// A tool call being decided and run.
pub(crate) struct Call {
    pub id: Value,
    pub key: String,
    pub server: Arc<Server>,
    pub tool: String,
    pub exposed: String,
    pub args: Value,
    pub args_sha256: String,
    pub cost: Option<f64>,
    pub trace_id: String,
    pub t0: Instant,
    pub client_meta: Option<Map<String, Value>>,
    pub client_token: Option<Value>,
}

impl Call {
    fn info<'a>(&'a self, sess: &'a Session) -> CallInfo<'a> {
        CallInfo {
            sess,
            server: self.server.name(),
            tool: &self.tool,
            exposed: &self.exposed,
            args: &self.args,
            args_sha256: &self.args_sha256,
            trace_id: &self.trace_id,
        }
    }
}

/// The arguments as `grants.rego` reads them: compact JSON with sorted keys.
pub(crate) fn canonical_args(args: &Value) -> String {
    let mut v = args.clone();
    audit::mask::canonicalize(&mut v);
    v.to_string()
}

/// A tool result carrying only `text`, as an error the model reads.
pub(crate) fn error_result(text: &str) -> Value {
    json!({"content": [{"type": "text", "text": text}], "isError": true})
}

fn decision_header(d: &Decision) -> Headers {
    HeaderValue::from_str(d.id.as_str())
        .map(|v| vec![(HeaderName::from_static("x-clawbutler-decision-id"), v)])
        .unwrap_or_default()
}

/// A tool call being run (see [`run`]).
pub(crate) type CallFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Run a `tools/call` request; its messages and answer go to `out`.
pub(crate) async fn run(st: Arc<State>, sess: Arc<Session>, id: Value, params: Value, out: mpsc::Sender<Out>) {
    let _busy = sess.busy();
    let key = jsonrpc::id_key(&id);
    let cancel = sess.closed.child_token();
    sess.inflight.insert(key.clone(), Inflight { cancel: cancel.clone() });
    let answer = match prepare(&st, &sess, id.clone(), key.clone(), params).await {
        Ok(call) => pipeline(&st, &sess, call, &out, &cancel).await,
        Err(bytes) => Some((bytes, Vec::new())),
    };
    sess.inflight.remove(&key);
    if let Some((bytes, headers)) = answer {
        let _ = out.send(Out::Final(bytes, headers)).await;
    }
}

/// Read the params and find the tool; a JSON-RPC error when that fails.
async fn prepare(
    st: &Arc<State>,
    sess: &Arc<Session>,
    id: Value,
    key: String,
    params: Value,
) -> Result<Call, bytes::Bytes> {
    let bad = |m: &str| jsonrpc::error(&id, code::INVALID_PARAMS, m, None);
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return Err(bad("tools/call needs params.name (a string)"));
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(a @ Value::Object(_)) => a.clone(),
        Some(_) => return Err(bad("params.arguments must be an object")),
    };
    let meta = match params.get("_meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => return Err(bad("params._meta must be an object")),
    };
    let cat = catalog::get(st, sess).await;
    let Some(entry) = cat.by_name.get(name) else {
        return Err(bad(&format!("Unknown tool: {name}")));
    };
    let Some(server) = st.servers.get(entry.server).cloned() else {
        return Err(bad(&format!("Unknown tool: {name}")));
    };
    let client_token = meta.as_ref().and_then(|m| m.get("progressToken")).cloned();
    let args_sha256 = record::sha256_hex(canonical_args(&args).as_bytes());
    Ok(Call {
        id,
        key,
        server,
        tool: entry.tool.clone(),
        exposed: name.to_string(),
        args,
        args_sha256,
        cost: entry.cost_usd,
        trace_id: decision::new_trace_id(),
        t0: Instant::now(),
        client_meta: meta,
        client_token,
    })
}

/// Why a call was refused before reaching the upstream.
pub(crate) enum Refusal {
    Policy,
    Budget,
}

/// Refuse a call: an `isError` result naming the rule and decision, recorded durably.
async fn refuse(
    st: &State,
    sess: &Session,
    call: &Call,
    d: &Decision,
    why: Refusal,
    r: ResultInfo,
) -> (bytes::Bytes, Headers) {
    let text = format!("DENIED by ClawButler policy (rule {}): {} [decision {}]", d.rule, d.reason, d.id);
    let result = error_result(&text);
    let outcome = match why {
        Refusal::Policy => audit::Outcome::Denied,
        Refusal::Budget => audit::Outcome::BudgetExceeded,
    };
    let r = ResultInfo { status: if r.status.is_empty() { "refused" } else { r.status }, ..r };
    let ev = record::ended(&call.info(sess), d, outcome, &r, ms(call.t0.elapsed()), call.cost, None);
    record::durable(st, ev).await;
    finish_metrics(st, call, Action::Deny);
    sess.record(McpCallInput {
        server: call.server.name().to_string(),
        tool: call.tool.clone(),
        action: Action::Deny,
        secret: false,
    });
    let mut headers = decision_header(d);
    headers.push((HeaderName::from_static("x-clawbutler-action"), HeaderValue::from_static("deny")));
    (jsonrpc::result(&call.id, &result), headers)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn finish_metrics(st: &State, call: &Call, action: Action) {
    let name = call.server.name();
    st.metrics.calls.with_label_values(&[name, action.as_str()]).inc();
    st.metrics.duration.with_label_values(&[name]).observe(call.t0.elapsed().as_secs_f64());
}

fn synthetic(rule: &str, reason: &str, risk: Risk) -> Decision {
    Decision::synthetic(Action::Deny, rule, reason, risk)
}

async fn pipeline(
    st: &Arc<State>,
    sess: &Arc<Session>,
    call: Call,
    out: &mpsc::Sender<Out>,
    cancel: &CancellationToken,
) -> Option<(bytes::Bytes, Headers)> {
    let scope = CallScope::tool(&sess.agent, call.server.name());
    if let Some(why) = st.parts.kill.blocked(&sess.agent) {
        let d = synthetic("kill_switch", &why, Risk::High);
        return Some(refuse(st, sess, &call, &d, Refusal::Policy, ResultInfo::default()).await);
    }
    // Fail closed while the audit log cannot write (`on_failure = "refuse"`, the default):
    // one atomic load while it is healthy.
    if let Err(u) = st.parts.audit.admit(audit::Face::Mcp) {
        let reason = format!("{u}; tool calls are refused until it can (retry after {} s)", u.retry_after_s());
        let d = synthetic("audit.unavailable", &reason, Risk::High);
        return Some(refuse(st, sess, &call, &d, Refusal::Policy, ResultInfo::default()).await);
    }
    if let Some(r) = st.parts.budgets.check_open(&scope) {
        let d = synthetic(&format!("budget.{}", r.budget_id), &r.message(), Risk::Medium);
        return Some(refuse(st, sess, &call, &d, Refusal::Budget, ResultInfo::default()).await);
    }

    let (calls, secret_seen) = sess.policy_context(st.parts.policy.reads_mcp_calls());
    let mut input = PolicyInput::new(CallKind::ToolCall, &sess.agent, &call.trace_id);
    input.session = Some(sess.id.clone());
    input.tool = Some(ToolInput {
        server: Some(call.server.name().to_string()),
        name: call.tool.clone(),
        args: call.args.clone(),
    });
    input.mcp = Some(McpInput { phase: McpPhase::Call, calls, secret_seen });
    input.cost.estimate_usd = call.cost;
    input.budgets = st.parts.budgets.snapshot(&scope);
    input.grants = st.parts.broker.grants_for(&sess.agent);
    let mut d = st.parts.policy.evaluate(&input);

    let mut approval_id = None;
    let mut held_for = Duration::ZERO;
    match d.action {
        Action::Deny => return Some(refuse(st, sess, &call, &d, Refusal::Policy, ResultInfo::default()).await),
        Action::Hold => {
            let t_hold = Instant::now();
            match hold::hold(st, sess, &call, &mut d, out, cancel).await {
                hold::End::Approved(id) => approval_id = Some(id),
                hold::End::Refused(dd, id) => {
                    let r = ResultInfo { status: "refused", approval_id: id, ..ResultInfo::default() };
                    return Some(refuse(st, sess, &call, &dd, Refusal::Policy, r).await);
                }
                hold::End::Cancelled(id) => {
                    let r = ResultInfo { status: "cancelled", approval_id: Some(id), ..ResultInfo::default() };
                    let ev = record::ended(
                        &call.info(sess),
                        &d,
                        audit::Outcome::Cancelled,
                        &r,
                        ms(call.t0.elapsed()),
                        call.cost,
                        None,
                    );
                    record::durable(st, ev).await;
                    finish_metrics(st, &call, Action::Deny);
                    return None;
                }
            }
            held_for = t_hold.elapsed();
        }
        Action::Allow => {}
    }

    let cost = call.cost.filter(|c| *c > 0.0);
    let reservation = match cost {
        Some(c) if st.parts.budgets.any_apply(&scope) => match if st.parts.budgets.fleet_applies(&scope) {
            st.parts.budgets.reserve_fleet(&scope, c).await
        } else {
            st.parts.budgets.reserve(&scope, c)
        } {
            Ok(res) => Some(res),
            Err(r) => {
                let dd = Decision {
                    rule: format!("budget.{}", r.budget_id),
                    reason: r.message(),
                    action: Action::Deny,
                    ..d
                };
                return Some(
                    refuse(st, sess, &call, &dd, Refusal::Budget, ResultInfo { approval_id, ..ResultInfo::default() })
                        .await,
                );
            }
        },
        _ => None,
    };
    forward(st, sess, call, d, out, cancel, reservation, approval_id, held_for).await
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    st: &Arc<State>,
    sess: &Arc<Session>,
    call: Call,
    d: Decision,
    out: &mpsc::Sender<Out>,
    cancel: &CancellationToken,
    reservation: Option<governance::budget::Reservation>,
    approval_id: Option<String>,
    held_for: Duration,
) -> Option<(bytes::Bytes, Headers)> {
    let mut headers = decision_header(&d);
    if let Some(a) = approval_id.as_deref().and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.push((HeaderName::from_static("x-clawbutler-approval-id"), a));
    }
    let slot = sess.slot_of(call.server.index);
    let conn = match slot {
        Some(s) => s.get(st, sess).await,
        None => Err("the server is not routed to this agent".to_string()),
    };
    let conn = match conn {
        Ok(c) => c,
        Err(why) => {
            let text = format!("The tool server '{}' is not available: {why}", call.server.name());
            let r =
                ResultInfo { status: "unavailable", approval_id, upstream_error: Some(why), ..ResultInfo::default() };
            let charged = reservation.map(|res| res.settle(Charge::Usd(0.0)));
            let ev = record::ended(
                &call.info(sess),
                &d,
                audit::Outcome::UpstreamError,
                &r,
                ms(call.t0.elapsed()),
                call.cost,
                charged,
            );
            record::durable(st, ev).await;
            finish_metrics(st, &call, Action::Allow);
            return Some((jsonrpc::result(&call.id, &error_result(&text)), headers));
        }
    };

    let meta = call.client_meta.clone().map(|mut m| {
        // Each path sets its own progress token; the client's is mapped back on the route.
        m.remove("progressToken");
        m
    });
    let no_args = Map::new();
    let args = call.args.as_object().unwrap_or(&no_args);
    let route = Arc::new(CallRoute { out: out.clone(), client_token: call.client_token.clone() });
    let timeout = Duration::from_secs(call.server.cfg.timeout_s.max(1));
    let t_up = Instant::now();
    // The `started` record is for a call still running when the records appended with it
    // would have been committed (one group window): a crash then leaves "started, outcome
    // unknown". A call answered sooner gets its end record only, in the group the started
    // record would have joined: one record, one masking and one queue hand-off fewer.
    let forwarded = {
        let upstream = conn.call_tool(&call.tool, args, meta, route, timeout, cancel);
        tokio::pin!(upstream);
        tokio::select! {
            biased;
            f = &mut upstream => f,
            () = tokio::time::sleep(st.parts.audit.group_window()) => {
                record::append(st, record::started(&call.info(sess), &d));
                upstream.await
            }
        }
    };
    let upstream_time = t_up.elapsed();

    let mut r = ResultInfo { approval_id, ..ResultInfo::default() };
    let (answer, outcome, reached) = match forwarded {
        Forwarded::Result(mut v) => {
            call.server.ok();
            let replace = d.obligations.result_secrets.unwrap_or_default() == ResultSecrets::Mask;
            let scan = audit::mask::find_secrets(&mut v, replace, Some(st.parts.audit.mask_salt()));
            r.secrets_found = scan.count;
            r.secret_classes = scan.classes.iter().copied().collect();
            r.masked = replace && scan.found();
            r.status = if v.get("isError").and_then(Value::as_bool) == Some(true) { "tool_error" } else { "ok" };
            let bytes = jsonrpc::result(&call.id, &v);
            (Some(bytes), audit::Outcome::Completed, true)
        }
        Forwarded::Error { code, message, data } => {
            call.server.ok();
            r.status = "error";
            r.upstream_error = Some(format!("{code}: {message}"));
            (Some(jsonrpc::error(&call.id, code, &message, data)), audit::Outcome::Completed, true)
        }
        Forwarded::Timeout => {
            let why = format!("no answer within {} s", timeout.as_secs());
            call.server.degraded("timeout", &why);
            r.status = "timeout";
            r.upstream_error = Some(why);
            let text = format!(
                "The tool server '{}' did not answer within {} s; the call was cancelled there.",
                call.server.name(),
                timeout.as_secs()
            );
            (Some(jsonrpc::result(&call.id, &error_result(&text))), audit::Outcome::UpstreamError, true)
        }
        Forwarded::Cancelled => {
            r.status = "cancelled";
            (None, audit::Outcome::Cancelled, true)
        }
        Forwarded::Broken(e) => {
            call.server.degraded("closed", &e);
            r.status = "failed";
            let text = format!("The tool server '{}' failed during the call: {e}", call.server.name());
            r.upstream_error = Some(e);
            (Some(jsonrpc::result(&call.id, &error_result(&text))), audit::Outcome::UpstreamError, false)
        }
    };
    let charge = if reached && r.status != "timeout" { call.cost.unwrap_or(0.0) } else { 0.0 };
    let charged = reservation.map(|res| res.settle(Charge::Usd(charge)));
    sess.record(McpCallInput {
        server: call.server.name().to_string(),
        tool: call.tool.clone(),
        action: Action::Allow,
        secret: r.secrets_found > 0,
    });
    let total = call.t0.elapsed();
    if held_for.is_zero() {
        st.metrics.overhead.observe(total.saturating_sub(upstream_time).as_secs_f64());
    }
    // The session's context and the money are settled above, before the answer goes out; the
    // end record (the answer's digest, masking the arguments, the hand-off to the writer)
    // once it has: the record is durable at the next group commit either way.
    finish_metrics(st, &call, Action::Allow);
    let (st, sess, sent) = (st.clone(), sess.clone(), answer.clone());
    listener::after_reply(move || {
        if let Some(b) = &sent {
            r.bytes = b.len();
            r.sha256 = Some(record::sha256_hex(b));
        }
        let ev = record::ended(&call.info(&sess), &d, outcome, &r, ms(total), call.cost, charged);
        record::append(&st, ev);
    });
    answer.map(|a| (a, headers))
}

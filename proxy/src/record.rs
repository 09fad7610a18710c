//! Building the audit events of model calls, so every path (forwarded, refused, failed)
//! records the same subject fields.

use audit::{AuditEvent, Outcome, RecordKind, Usage};
use decision::Decision;
use serde_json::json;

use crate::ctx::CallRequest;

/// What was asked, as recorded (masked again by the audit log at write time).
pub fn subject(req: &CallRequest) -> serde_json::Value {
    // Sized up front (what `json!` does not): the map's table is built once, not regrown and
    // rehashed twice on the way to seven keys. In key order, the order the audit log writes
    // (so it need not sort them).
    let mut m = serde_json::Map::with_capacity(7);
    m.insert("endpoint".into(), req.route.endpoint.as_str().into());
    m.insert("max_tokens".into(), json!(req.info.max_tokens));
    m.insert("model".into(), req.info.model.as_str().into());
    m.insert("stream".into(), req.info.stream.into());
    m.insert("tools".into(), json!(req.info.tools));
    m.insert("upstream".into(), req.route.upstream.name.as_str().into());
    m.insert("upstream_kind".into(), req.route.upstream.kind.as_str().into());
    serde_json::Value::Object(m)
}

/// The event for a model call decided by `d`.
pub fn model_call_event(req: &CallRequest, d: &Decision) -> AuditEvent {
    let mut ev = AuditEvent::from_decision(RecordKind::ModelCall, d);
    ev.trace_id = Some(req.ctx.trace_id.clone());
    ev.agent = Some(req.route.agent.clone());
    ev.session = req.session.clone();
    ev.subject = subject(req);
    ev.actor = Some("policy".into());
    ev
}

/// Fill the result fields.
pub fn finish_event(ev: &mut AuditEvent, outcome: Outcome, usage: Option<Usage>, cost: Option<f64>, latency_ms: f64) {
    ev.outcome = Some(outcome);
    ev.usage = usage;
    ev.cost_usd = cost;
    ev.latency_ms = Some(latency_ms);
}

/// The call's OpenClaw run, when the run index knows it (by the call's trace id, else its
/// session id; `governance::runs`): `details.task_type`, `details.session_key` and
/// `details.task_source`, so cost by task type reads it from the record. Unknown: nothing
/// is added and the call counts as `unknown`.
pub fn stamp_run(runs: &governance::RunIndex, ev: &mut AuditEvent) {
    let Some(trace) = ev.trace_id.as_deref() else { return };
    let Some(run) = runs.resolve(trace, ev.session.as_deref()) else { return };
    if !ev.details.is_object() {
        ev.details = json!({});
    }
    if let Some(d) = ev.details.as_object_mut() {
        d.insert("task_type".into(), run.task.as_str().into());
        d.insert("session_key".into(), run.session_key.into());
        d.insert("task_source".into(), run.source.as_str().into());
    }
}

/// The policy input of a model call, with the agent's live standing grants (from the broker).
pub fn policy_input(req: &CallRequest, grants: Vec<decision::GrantInput>) -> decision::PolicyInput {
    let mut input = decision::PolicyInput::new(decision::CallKind::ModelCall, &req.route.agent, &req.ctx.trace_id);
    input.session = req.session.clone();
    input.model = Some(decision::ModelInput {
        upstream: req.route.upstream.name.clone(),
        upstream_kind: req.route.upstream.kind.as_str().to_string(),
        endpoint: req.route.endpoint.as_str().to_string(),
        name: req.info.model.clone(),
        max_tokens: req.info.max_tokens,
        stream: req.info.stream,
        tools: req.info.tools.clone(),
    });
    input.cost.estimate_usd = req.estimate_usd;
    input.cost.unbounded = req.info.features.unbounded.iter().map(|u| u.as_str().to_string()).collect();
    input.grants = grants;
    input
}

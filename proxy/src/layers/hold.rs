//! Hold layer: a model call the policy decided to `hold` waits here, its HTTP request open,
//! until a human decides through the broker. Approved: it goes on to be forwarded. Denied,
//! expired or cancelled: it is refused in the caller's shape, naming who denied it or that it
//! expired. The time parked is the human's, not the sidecar's (`ctx.add_held`). A client that
//! hangs up drops the wait, which cancels the approval.
//!
//! A human is only asked about a call that will go ahead if approved: what will certainly
//! refuse it (a kill, an open breaker, an unpriced model under a budget, a worst case above a
//! budget's whole limit) refuses it here, before any approval exists, with the reason and in
//! the form that step would use. What may still refuse it later (a budget nearly spent, an
//! upstream whose calls fail) is shown on the approval as a caution. A kill made while the
//! call waited refuses it even when approved.

use std::sync::Arc;
use std::time::Instant;

use decision::{Action, CallKind, Decision, Risk};
use governance::approvals::{Caution, HoldRequest};
use http::HeaderValue;
use serde_json::{json, Value};

use super::kill::KILL_RULE;
use super::{budget, BoxFut, Next};
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::record;
use crate::refuse::{refuse, synthetic_decision, Refusal};
use crate::ProxyState;

/// Longest prompt excerpt shown to the approver.
const SUMMARY_CHARS: usize = 280;

/// Text of a message `content` (string, or the text parts of an array).
fn content_text(c: &Value) -> Option<String> {
    match c {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let t: Vec<&str> =
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str())).collect();
            (!t.is_empty()).then(|| t.join(" "))
        }
        _ => None,
    }
}

/// The last user turn of a chat / messages / responses body, shortened.
pub fn prompt_summary(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let turns = v.get("messages").or_else(|| v.get("input"))?;
    let text = match turns {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str).is_none_or(|r| r == "user"))
            .and_then(|m| m.get("content").and_then(content_text).or_else(|| m.as_str().map(str::to_string))),
        _ => None,
    }?;
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= SUMMARY_CHARS {
        return Some(text);
    }
    Some(format!("{}…", text.chars().take(SUMMARY_CHARS).collect::<String>()))
}

/// What the approver sees for a model call.
pub fn subject(req: &CallRequest) -> Value {
    let mut s = record::subject(req);
    if let Some(obj) = s.as_object_mut() {
        obj.insert("prompt_summary".into(), json!(prompt_summary(&req.body)));
    }
    s
}

/// Before a call is held: the refusal that is already certain, or the cautions to show the
/// approver. The kill flag is read again (a kill may have come after the kill step).
pub fn before_hold(state: &ProxyState, req: &CallRequest) -> Result<Vec<Caution>, Box<(Decision, Refusal)>> {
    if let Some(why) = state.kill.blocked(&req.route.agent) {
        return Err(Box::new((synthetic_decision(req, KILL_RULE, &why, Risk::High), Refusal::Deny)));
    }
    let mut cautions: Vec<Caution> = budget::before_hold(state, req)?.iter().map(Caution::budget).collect();
    let upstream = &req.route.upstream.name;
    if let Some((failed, of_last)) = state.health.upstream_failing(upstream) {
        cautions.push(Caution::upstream(upstream, failed, of_last));
    }
    Ok(cautions)
}

/// The hold step: park a held call until a human decides, then forward or refuse it.
pub fn step(state: Arc<ProxyState>, mut req: CallRequest, inner: Next) -> BoxFut<ProxyError> {
    // Only a held call is cloned and gets a future of this step's own; the rest pass on.
    let mut d = match &req.decision {
        Some(d) if d.action == Action::Hold => d.clone(),
        _ => return inner.call(req),
    };
    Box::pin(async move {
        let cautions = match before_hold(&state, &req) {
            Ok(c) => c,
            Err(certain) => {
                let (refusal, why) = *certain;
                return refuse(&state, &req, &refusal, why).await;
            }
        };
        let hreq = HoldRequest {
            kind: CallKind::ModelCall,
            agent: req.route.agent.clone(),
            session: req.session.clone(),
            trace_id: req.ctx.trace_id.clone(),
            decision: d.clone(),
            subject: subject(&req),
            cost_estimate_usd: req.estimate_usd,
            external_id: None,
            // Plain text: the broker escapes it (a model named `*` is not a wildcard).
            grant_pattern: req.info.model.clone(),
            grant_args: None,
            cautions,
        };
        let held = match state.broker.hold(hreq) {
            Ok(h) => h,
            Err(e) => {
                // Fail closed: no approval could be parked, so nobody could allow it.
                d.action = Action::Deny;
                d.reason = format!("no_approver: {} (the approval could not be created: {e})", d.reason);
                return refuse(&state, &req, &d, Refusal::Deny).await;
            }
        };
        let approval_id = held.approval().id.clone();
        // The span covers the wait for a human (a client that leaves ends it by dropping it).
        let span =
            req.ctx.trace.child("hold", || vec![telemetry::Attr::new("clawbutler.approval.id", approval_id.clone())]);
        let t0 = Instant::now();
        let res = held.await;
        req.ctx.add_held(t0.elapsed());
        span.set(|| telemetry::Attr::new("clawbutler.hold.wait_seconds", t0.elapsed().as_secs_f64()));
        span.set(|| telemetry::Attr::new("clawbutler.approval.allowed", res.is_allowed()));
        span.end();
        let header = HeaderValue::from_str(&approval_id).ok();
        let killed = res.is_allowed().then(|| state.kill.blocked(&req.route.agent)).flatten();
        let out = if let Some(why) = killed {
            let reason = format!("{why} (it was stopped while the call waited; {})", res.message());
            refuse(&state, &req, &synthetic_decision(&req, KILL_RULE, &reason, Risk::High), Refusal::Deny).await
        } else if res.is_allowed() {
            d.action = Action::Allow;
            d.reason = format!("{}; held because: {}", res.message(), d.reason);
            let _ = req.ctx.action.set(Action::Allow);
            req.decision = Some(d);
            inner.call(req).await
        } else {
            d.action = Action::Deny;
            d.reason = format!("{}; held because: {}", res.message(), d.reason);
            refuse(&state, &req, &d, Refusal::Deny).await
        };
        out.map(|mut r| {
            if let Some(h) = header {
                r.headers_mut().insert("x-clawbutler-approval-id", h);
            }
            r
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_the_last_user_turn() {
        let b = br#"{"messages":[{"role":"system","content":"be nice"},{"role":"user","content":"first"},
                    {"role":"assistant","content":"ok"},{"role":"user","content":[{"type":"text","text":"wire  $5"}]}]}"#;
        assert_eq!(prompt_summary(b).as_deref(), Some("wire $5"));
        assert_eq!(prompt_summary(br#"{"input":"hello there"}"#).as_deref(), Some("hello there"));
        let long = format!(r#"{{"input":"{}"}}"#, "x".repeat(1000));
        assert_eq!(prompt_summary(long.as_bytes()).unwrap().chars().count(), SUMMARY_CHARS + 1);
        assert_eq!(prompt_summary(b"{}"), None);
    }
}

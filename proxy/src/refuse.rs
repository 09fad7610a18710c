//! The one place a call is refused: whatever step refuses (kill switch, budget gate, policy,
//! a hold that ended in a deny, the budget reserve), the call gets the same treatment. The
//! decision carries the call's id; the call's final action becomes deny; the refusal is
//! recorded durably (on disk before the caller is answered); the answer is in the caller's
//! own shape, in the form that suits why it was refused. A refusal whose record cannot be
//! written is not answered as if it had been: it becomes the audit refusal ([`unrecorded`],
//! 503 + `Retry-After`), unless `[audit] on_failure = "continue_unaudited"`.

use decision::{Action, Decision, Risk};
use http::{HeaderValue, Response, StatusCode};

use crate::body::ResBody;
use crate::config::DenyStyle;
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::record;
use crate::synthetic;
use crate::ProxyState;

/// Why a call is refused, which decides the form of the answer.
#[derive(Debug)]
pub enum Refusal {
    /// A deny meant for a human (policy, kill switch, a hold that was not approved, an
    /// unpriced model under a budget): with the default deny style a normal assistant message
    /// (HTTP 200, zero usage) carrying the reason, so OpenClaw ends the turn with the
    /// sidecar's text and neither retries nor cools the key down; otherwise 403.
    Deny,
    /// A budget that resets on its own: 429 + `Retry-After` + "<window> limit reached", the
    /// form OpenClaw shows verbatim without retries or key cooldowns.
    Budget(governance::budget::Refusal),
}

/// The refusal of a call the audit log cannot record: 503, `Retry-After`, a message naming
/// the cause (`audit_unavailable`). Nothing reached the upstream. Counted by the log.
pub fn unrecorded(req: &CallRequest, u: &audit::Unavailable) -> ProxyError {
    let _ = req.ctx.action.set(Action::Deny);
    ProxyError::Refused {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "audit_unavailable",
        message: u.to_string(),
        retry_after_s: Some(u.retry_after_s()),
    }
}

/// A record of this call could not be written (`e`): `Err` (the refusal to answer with)
/// unless `[audit] on_failure = "continue_unaudited"`. A call the audit gate already let
/// through unaudited is counted once.
pub fn audit_failed(state: &ProxyState, req: &CallRequest, e: &audit::AuditError) -> Result<(), ProxyError> {
    if req.ctx.admission.get() == Some(&audit::Admission::Unaudited) {
        return Ok(());
    }
    match state.audit.record_failed(audit::Face::Model, e) {
        Ok(_) => Ok(()),
        Err(u) => Err(unrecorded(req, &u)),
    }
}

/// Just before a call is sent: can the audit log take its records? The gate checked it when
/// the call came in, but a hold may have waited since. One atomic load while the log is
/// healthy; else the gate's own answer ([`audit::AuditLog::admit`]: refused, or let through
/// unaudited with `on_failure = "continue_unaudited"`, counted once).
pub fn audit_open(state: &ProxyState, req: &CallRequest) -> Result<(), ProxyError> {
    if state.audit.accepting() || req.ctx.admission.get() == Some(&audit::Admission::Unaudited) {
        return Ok(());
    }
    match state.audit.admit(audit::Face::Model) {
        Ok(_) => Ok(()),
        Err(u) => Err(unrecorded(req, &u)),
    }
}

/// A decision made outside Rego (kill switch, budgets, ...) for this call, under the call's
/// own decision id.
pub fn synthetic_decision(req: &CallRequest, rule: &str, reason: &str, risk: Risk) -> Decision {
    let mut d = Decision::synthetic(Action::Deny, rule, reason, risk);
    d.id = req.ctx.decision_id.clone();
    d
}

/// Refuse `req` because of `d` (whose action is taken as deny), in the form `why` asks for.
pub async fn refuse(
    state: &ProxyState,
    req: &CallRequest,
    d: &Decision,
    why: Refusal,
) -> Result<Response<ResBody>, ProxyError> {
    let _ = req.ctx.action.set(Action::Deny);
    let (actor, outcome) = match &why {
        Refusal::Deny => ("policy", audit::Outcome::Denied),
        Refusal::Budget(_) => ("budget", audit::Outcome::BudgetExceeded),
    };
    let mut ev = record::model_call_event(req, d);
    ev.actor = Some(actor.into());
    record::finish_event(&mut ev, outcome, None, Some(0.0), req.ctx.started.elapsed().as_secs_f64() * 1e3);
    record::stamp_run(&state.runs, &mut ev);
    if let Err(e) = state.audit.append_durable(ev).await {
        // Fail closed: the call stays refused either way; without its record it is refused as
        // unrecorded, never answered as if the deny were on disk.
        audit_failed(state, req, &e)?;
        tracing::warn!(error = %e, decision = %d.id, "refusal answered without its audit record (continue_unaudited)");
    }
    match why {
        Refusal::Budget(r) => Err(ProxyError::Refused {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "budget_exceeded",
            message: r.message(),
            retry_after_s: Some(r.retry_after_s),
        }),
        Refusal::Deny => {
            let text = format!("ClawButler blocked this request: {} (rule {}, decision {})", d.reason, d.rule, d.id);
            if state.settings.deny_style == DenyStyle::Message && synthetic::supports(req.route.endpoint) {
                let mut res = synthetic::reply(
                    req.route.endpoint,
                    req.info.stream,
                    req.info.include_usage,
                    &req.info.model,
                    d.id.as_str(),
                    &text,
                );
                res.headers_mut().insert("x-clawbutler-action", HeaderValue::from_static("deny"));
                return Ok(res);
            }
            Err(ProxyError::Refused {
                status: StatusCode::FORBIDDEN,
                kind: "policy_denied",
                message: text,
                retry_after_s: None,
            })
        }
    }
}

//! The one place a call is refused: whatever step refuses (kill switch, budget gate, policy,
//! a hold that ended in a deny, the budget reserve), the call gets the same treatment. The
//! decision carries the call's id; the call's final action becomes deny; the refusal is
//! recorded durably (on disk before the caller is answered); the answer is in the caller's
//! own shape, in the form that suits why it was refused.

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
    if let Err(e) = state.audit.append_durable(ev).await {
        // Fail closed: the call stays refused even if the record could not be written.
        tracing::error!(error = %e, decision = %d.id, "audit append failed for a refusal");
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

//! Budget layers. The gate sits before the policy: a call in the scope of an open breaker is
//! refused at once with HTTP 429, `Retry-After` = seconds to the window reset, and a message
//! containing "<window> limit reached" (the form OpenClaw shows verbatim, without retries or
//! key cooldowns). The reserve step sits just before forwarding: it reserves the call's
//! worst-case cost against every applicable budget, all or nothing.

use std::sync::Arc;

use http::{Response, StatusCode};
use policy::{Action, Decision, Risk};
use tower::Service;

use super::{BoxFut, Next};
use crate::body::ResBody;
use crate::budget::{CallScope, Refusal};
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::record;
use crate::ProxyState;

/// Record a budget refusal durably and answer 429 in the caller's shape.
async fn refuse(state: &ProxyState, req: &CallRequest, r: &Refusal) -> Result<Response<ResBody>, ProxyError> {
    let mut d = Decision::synthetic(Action::Deny, &format!("budget.{}", r.budget_id), &r.message(), Risk::Medium);
    d.id = req.ctx.decision_id.clone();
    let _ = req.ctx.action.set(Action::Deny);
    let mut ev = record::model_call_event(req, &d);
    ev.actor = Some("budget".into());
    record::finish_event(&mut ev, "budget_exceeded", None, Some(0.0), req.ctx.started.elapsed().as_secs_f64() * 1e3);
    if let Err(e) = state.audit.append_durable(ev).await {
        tracing::error!(error = %e, "audit append failed for a budget refusal");
    }
    Err(ProxyError::Refused {
        status: StatusCode::TOO_MANY_REQUESTS,
        kind: "budget_exceeded",
        message: r.message(),
        retry_after_s: Some(r.retry_after_s),
    })
}

fn scope(req: &CallRequest) -> CallScope<'_> {
    CallScope { agent: &req.route.agent, model: &req.info.model, upstream: &req.route.upstream.name }
}

/// The gate step: refuse a call under an open breaker (before the policy).
pub fn gate(state: Arc<ProxyState>, req: CallRequest, mut next: Next) -> BoxFut<ProxyError> {
    Box::pin(async move {
        if let Some(r) = state.budgets.check_open(&scope(&req)) {
            return refuse(&state, &req, &r).await;
        }
        next.call(req).await
    })
}

/// The reserve step: reserve the call's worst case against every applicable budget, all or
/// nothing (after the policy and any hold), or refuse it.
pub fn reserve(state: Arc<ProxyState>, mut req: CallRequest, mut next: Next) -> BoxFut<ProxyError> {
    Box::pin(async move {
        if state.budgets.any_apply(&scope(&req)) {
            let Some(worst) = req.estimate_usd else {
                // No price: the cost cannot be bounded, so a capped call fails closed.
                let mut d = Decision::synthetic(
                    Action::Deny,
                    "budget.unknown_price",
                    &format!(
                        "model '{}' has no price, so its cost cannot be held to the budget; add [prices.\"{}\"] to clawbutler.toml",
                        req.info.model, req.info.model
                    ),
                    Risk::Medium,
                );
                d.id = req.ctx.decision_id.clone();
                let _ = req.ctx.action.set(Action::Deny);
                return crate::layers::policy::refuse(&state, &req, &d).await;
            };
            match state.budgets.reserve(&scope(&req), worst) {
                Ok(res) => req.reservation = Some(res),
                Err(r) => return refuse(&state, &req, &r).await,
            }
        }
        next.call(req).await
    })
}

//! Budget steps. The gate sits before the policy: a call in the scope of an open breaker is
//! refused at once with HTTP 429, `Retry-After` = seconds to the window reset, and a message
//! containing "<window> limit reached" (the form OpenClaw shows verbatim, without retries or
//! key cooldowns). The reserve step sits just before forwarding: it reserves the call's
//! worst-case cost against every applicable budget, all or nothing.

use std::sync::Arc;

use decision::Risk;
use governance::budget::CallScope;
use tower::Service;

use super::{BoxFut, Next};
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::refuse::{refuse, synthetic_decision, Refusal};
use crate::ProxyState;

/// Refuse a call because of a budget refusal.
async fn refuse_budget(
    state: &ProxyState,
    req: &CallRequest,
    r: governance::budget::Refusal,
) -> Result<http::Response<crate::body::ResBody>, ProxyError> {
    let d = synthetic_decision(req, &format!("budget.{}", r.budget_id), &r.message(), Risk::Medium);
    refuse(state, req, &d, Refusal::Budget(r)).await
}

fn scope(req: &CallRequest) -> CallScope<'_> {
    CallScope { agent: &req.route.agent, model: &req.info.model, upstream: &req.route.upstream.name }
}

/// The gate step: refuse a call under an open breaker (before the policy).
pub fn gate(state: Arc<ProxyState>, req: CallRequest, mut next: Next) -> BoxFut<ProxyError> {
    Box::pin(async move {
        if let Some(r) = state.budgets.check_open(&scope(&req)) {
            return refuse_budget(&state, &req, r).await;
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
                let reason = format!(
                    "model '{}' has no price, so its cost cannot be held to the budget; add [prices.\"{}\"] to clawbutler.toml",
                    req.info.model, req.info.model
                );
                let d = synthetic_decision(&req, "budget.unknown_price", &reason, Risk::Medium);
                return refuse(&state, &req, &d, Refusal::Deny).await;
            };
            match state.budgets.reserve(&scope(&req), worst) {
                Ok(res) => req.reservation = Some(res),
                Err(r) => return refuse_budget(&state, &req, r).await,
            }
        }
        next.call(req).await
    })
}

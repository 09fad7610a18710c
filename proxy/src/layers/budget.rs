//! Budget steps. The gate sits before the policy: a call in the scope of an open breaker is
//! refused at once with HTTP 429, `Retry-After` = seconds to the window reset, and a message
//! containing "<window> limit reached" (the form OpenClaw shows verbatim, without retries or
//! key cooldowns). The reserve step sits just before forwarding: it reserves the call's
//! worst-case cost against every applicable budget, all or nothing. [`before_hold`] is asked
//! by the hold step, so a call the reserve step will certainly refuse is refused before a
//! human is asked about it.

use std::sync::Arc;

use decision::{Decision, Risk};
use governance::budget::{BudgetCaution, CallScope, Outlook};

use super::{BoxFut, Next};
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::refuse::{refuse, synthetic_decision, Refusal};
use crate::ProxyState;

/// The decision for a model with no price under a budget: its cost cannot be bounded, so a
/// capped call fails closed.
fn unpriced(req: &CallRequest) -> Decision {
    let reason = format!(
        "model '{}' has no price, so its cost cannot be held to the budget; add [prices.\"{}\"] to clawbutler.toml",
        req.info.model, req.info.model
    );
    synthetic_decision(req, "budget.unknown_price", &reason, Risk::Medium)
}

/// Before a hold: what the budgets will certainly refuse once the call is approved (an open
/// breaker, an unpriced model under a budget, a worst case above a budget's whole limit) as
/// the decision and form the reserve step would use; otherwise the budgets that may still
/// refuse it, to show on the approval.
pub fn before_hold(state: &ProxyState, req: &CallRequest) -> Result<Vec<BudgetCaution>, Box<(Decision, Refusal)>> {
    match state.budgets.outlook(&scope(req), req.estimate_usd) {
        Outlook::Clear => Ok(Vec::new()),
        Outlook::MayRefuse(c) => Ok(c),
        Outlook::Unpriced => Err(Box::new((unpriced(req), Refusal::Deny))),
        Outlook::Refused(r) => {
            let d = synthetic_decision(req, &format!("budget.{}", r.budget_id), &r.message(), Risk::Medium);
            Err(Box::new((d, Refusal::Budget(r))))
        }
    }
}

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
    CallScope::model(&req.route.agent, &req.info.model, &req.route.upstream.name)
}

/// The gate step: refuse a call under an open breaker (before the policy).
pub fn gate(state: Arc<ProxyState>, req: CallRequest, next: Next) -> BoxFut<ProxyError> {
    match state.budgets.check_open(&scope(&req)) {
        Some(r) => Box::pin(async move { refuse_budget(&state, &req, r).await }),
        None => next.call(req),
    }
}

/// The reserve step: reserve the call's worst case against every applicable budget, all or
/// nothing (after the policy and any hold), or refuse it.
pub fn reserve(state: Arc<ProxyState>, mut req: CallRequest, next: Next) -> BoxFut<ProxyError> {
    if !state.budgets.any_apply(&scope(&req)) {
        return next.call(req);
    }
    Box::pin(async move {
        let Some(worst) = req.estimate_usd else {
            return refuse(&state, &req, &unpriced(&req), Refusal::Deny).await;
        };
        let span = req
            .ctx
            .trace
            .child("budget.reserve", || vec![telemetry::Attr::new("clawbutler.budget.reserve_usd", worst)]);
        // A fleet budget first carves the worst case out of this sidecar's lease, which
        // waits for the database only when the lease lacks room (docs/fleet.md); every
        // other call takes the synchronous local reserve exactly as before.
        let reserved = if state.budgets.fleet_applies(&scope(&req)) {
            state.budgets.reserve_fleet(&scope(&req), worst).await
        } else {
            state.budgets.reserve(&scope(&req), worst)
        };
        span.set(|| telemetry::Attr::new("clawbutler.budget.reserved", reserved.is_ok()));
        span.end();
        match reserved {
            Ok(res) => req.reservation = Some(res),
            Err(r) => return refuse_budget(&state, &req, r).await,
        }
        next.call(req).await
    })
}

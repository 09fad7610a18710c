//! Policy step: every model call is evaluated before it is forwarded. Allow passes the call
//! on with its Decision; deny is refused (recorded durably, answered in the caller's shape)
//! without reaching the upstream; hold passes the call on with its Decision to the hold step,
//! which parks it for a human. The input carries the agent's standing grants and the budgets
//! that apply, so a call an `allow-always` covers is allowed here without a hold.

use std::sync::Arc;

use decision::Action;
use governance::budget::CallScope;

use super::{BoxFut, Next};
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::record;
use crate::refuse::{refuse, Refusal};
use crate::ProxyState;

/// The policy step: decide the call, then pass it on or refuse it. The decision is made as
/// the step is called (the body layer calls it from its own future, on the call's thread), so
/// an allowed call goes on without a future of this step's own.
pub fn step(state: Arc<ProxyState>, mut req: CallRequest, inner: Next) -> BoxFut<ProxyError> {
    let mut input = record::policy_input(&req, state.broker.grants_for(&req.route.agent));
    input.budgets =
        state.budgets.snapshot(&CallScope::model(&req.route.agent, &req.info.model, &req.route.upstream.name));
    let span = req.ctx.trace.child("policy", Vec::new);
    let mut d = state.policy.evaluate(&input);
    d.id = req.ctx.decision_id.clone();
    // Rule names and revisions come from the policy bundle (the operator's), not the call.
    span.set(|| telemetry::Attr::new("clawbutler.decision.action", d.action.as_str()));
    span.set(|| telemetry::Attr::new("clawbutler.decision.rule", d.rule.clone()));
    span.set(|| telemetry::Attr::new("clawbutler.policy.revision", d.bundle_revision.clone()));
    span.end();
    match d.action {
        // The hold step parks it and sets the final action once a human decided.
        Action::Hold => {
            req.decision = Some(d);
            inner.call(req)
        }
        Action::Allow => {
            let _ = req.ctx.action.set(Action::Allow);
            req.decision = Some(d);
            inner.call(req)
        }
        Action::Deny => Box::pin(async move { refuse(&state, &req, &d, Refusal::Deny).await }),
    }
}

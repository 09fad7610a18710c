//! Kill step: a call of a killed agent (or any call under a global kill) is refused before
//! the policy is even asked, so a kill takes effect on the very next call.
//!
//! The refusal is a [`Refusal::Deny`]: with the default deny style a normal assistant message
//! (HTTP 200, zero usage) saying the agent is stopped and why. Through OpenClaw that ends the
//! turn with the sidecar's text, with no retries and no key cooldown. The 429 + `Retry-After`
//! form is kept for budget-like refusals that reset on their own: a kill lasts until a human
//! recovers the agent, so a retry hint would be a lie, and 402/403 would disable the provider
//! key and hide the message (docs/gateway.md).

use std::sync::Arc;

use decision::Risk;

use super::{BoxFut, Next};
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::refuse::{refuse, synthetic_decision, Refusal};
use crate::ProxyState;

/// Rule name recorded for kill-switch refusals.
pub const KILL_RULE: &str = "kill_switch";

/// The kill step: refuse a killed agent's call at once, else pass it on.
pub fn step(state: Arc<ProxyState>, req: CallRequest, next: Next) -> BoxFut<ProxyError> {
    let Some(why) = state.kill.blocked(&req.route.agent) else {
        return next.call(req);
    };
    Box::pin(async move {
        let d = synthetic_decision(&req, KILL_RULE, &why, Risk::High);
        refuse(&state, &req, &d, Refusal::Deny).await
    })
}

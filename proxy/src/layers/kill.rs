//! Kill layer: a call of a killed agent (or any call under a global kill) is refused before
//! the policy is even asked, so a kill takes effect on the very next call.
//!
//! The refusal uses the policy layer's `refuse`: with the default deny style it is a normal
//! assistant message (HTTP 200, zero usage) saying the agent is stopped and why. Through
//! OpenClaw that ends the turn with the sidecar's text, with no retries and no key cooldown.
//! The 429 + `Retry-After` form is kept for budget-like refusals that reset on their own: a
//! kill lasts until a human recovers the agent, so a retry hint would be a lie, and 402/403
//! would disable the provider key and hide the message (docs/gateway.md).

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use policy::{Action, Decision, Risk};
use tower::{Layer, Service};

use super::BoxFut;
use crate::body::ResBody;
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::layers::policy::refuse;
use crate::ProxyState;

/// Rule name recorded for kill-switch refusals.
pub const KILL_RULE: &str = "kill_switch";

/// See the module docs.
#[derive(Clone)]
pub struct KillLayer {
    state: Arc<ProxyState>,
}

impl KillLayer {
    /// Check the state's kill switch.
    pub fn new(state: Arc<ProxyState>) -> Self {
        KillLayer { state }
    }
}

impl<S> Layer<S> for KillLayer {
    type Service = KillGate<S>;
    fn layer(&self, inner: S) -> KillGate<S> {
        KillGate { inner, state: self.state.clone() }
    }
}

/// The kill-switch service.
#[derive(Clone)]
pub struct KillGate<S> {
    inner: S,
    state: Arc<ProxyState>,
}

impl<S> Service<CallRequest> for KillGate<S>
where
    S: Service<CallRequest, Response = Response<ResBody>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<ResBody>;
    type Error = ProxyError;
    type Future = BoxFut<ProxyError>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CallRequest) -> Self::Future {
        let Some(why) = self.state.kill.blocked(&req.route.agent) else {
            return Box::pin(self.inner.call(req));
        };
        let state = self.state.clone();
        Box::pin(async move {
            let mut d = Decision::synthetic(Action::Deny, KILL_RULE, &why, Risk::High);
            d.id = req.ctx.decision_id.clone();
            let _ = req.ctx.action.set(Action::Deny);
            refuse(&state, &req, &d).await
        })
    }
}

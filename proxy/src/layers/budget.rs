//! Budget layers. The gate sits before the policy: a call in the scope of an open breaker is
//! refused at once with HTTP 429, `Retry-After` = seconds to the window reset, and a message
//! containing "<window> limit reached" (the form OpenClaw shows verbatim, without retries or
//! key cooldowns). The reserve step sits just before forwarding: it reserves the call's
//! worst-case cost against every applicable budget, all or nothing.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Response, StatusCode};
use policy::{Action, Decision, Risk};
use tower::{Layer, Service};

use super::BoxFut;
use crate::body::ResBody;
use crate::budget::{CallScope, Refusal};
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::record;
use crate::ProxyState;

/// Which budget step a layer performs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Refuse calls under an open breaker (before the policy).
    Gate,
    /// Reserve the worst case (after policy and any hold).
    Reserve,
}

/// See the module docs.
#[derive(Clone)]
pub struct BudgetLayer {
    state: Arc<ProxyState>,
    step: Step,
}

impl BudgetLayer {
    /// A layer performing `step`.
    pub fn new(state: Arc<ProxyState>, step: Step) -> Self {
        BudgetLayer { state, step }
    }
}

impl<S> Layer<S> for BudgetLayer {
    type Service = BudgetService<S>;
    fn layer(&self, inner: S) -> BudgetService<S> {
        BudgetService { inner, state: self.state.clone(), step: self.step }
    }
}

/// The budget service.
#[derive(Clone)]
pub struct BudgetService<S> {
    inner: S,
    state: Arc<ProxyState>,
    step: Step,
}

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

impl<S> Service<CallRequest> for BudgetService<S>
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

    fn call(&mut self, mut req: CallRequest) -> Self::Future {
        let mut inner = self.inner.clone();
        let state = self.state.clone();
        let step = self.step;
        Box::pin(async move {
            let scope =
                CallScope { agent: &req.route.agent, model: &req.info.model, upstream: &req.route.upstream.name };
            match step {
                Step::Gate => {
                    if let Some(r) = state.budgets.check_open(&scope) {
                        return refuse(&state, &req, &r).await;
                    }
                }
                Step::Reserve => {
                    if state.budgets.any_apply(&scope) {
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
                        match state.budgets.reserve(&scope, worst) {
                            Ok(res) => req.reservation = Some(res),
                            Err(r) => return refuse(&state, &req, &r).await,
                        }
                    }
                }
            }
            inner.call(req).await
        })
    }
}

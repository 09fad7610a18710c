//! Policy layer: every model call is evaluated before it is forwarded. Allow passes the call
//! on with its Decision; deny is recorded durably and answered in the caller's shape without
//! reaching the upstream. Hold passes the call on with its Decision to the hold layer, which
//! parks it for a human. The input carries the agent's standing grants, so a call an
//! `allow-always` covers is allowed here without a hold.

use std::sync::Arc;

use http::{HeaderValue, Response, StatusCode};
use policy::{Action, Decision};
use tower::Service;

use super::{BoxFut, Next};
use crate::body::ResBody;
use crate::config::DenyStyle;
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::pricing;
use crate::record;
use crate::route::Endpoint;
use crate::synthetic;
use crate::ProxyState;

/// Worst-case cost of the call (prompt estimate + output cap), None when the price is unknown.
pub fn estimate(state: &ProxyState, req: &CallRequest) -> Option<f64> {
    match req.route.endpoint {
        Endpoint::Models => Some(0.0),
        Endpoint::Embeddings => {
            state.prices.estimate(&req.info.model, pricing::worst_case_input_tokens(req.body.len()), 0)
        }
        _ => {
            let max_out = req.info.max_tokens.unwrap_or(state.settings.default_max_output_tokens);
            state.prices.estimate(&req.info.model, pricing::worst_case_input_tokens(req.body.len()), max_out)
        }
    }
}

/// Record a refusal durably, then answer it in the caller's shape.
pub async fn refuse(state: &ProxyState, req: &CallRequest, d: &Decision) -> Result<Response<ResBody>, ProxyError> {
    let mut ev = record::model_call_event(req, d);
    record::finish_event(&mut ev, "denied", None, Some(0.0), req.ctx.started.elapsed().as_secs_f64() * 1e3);
    if let Err(e) = state.audit.append_durable(ev).await {
        // Fail closed: the call stays refused even if the record could not be written.
        tracing::error!(error = %e, decision = %d.id, "audit append failed for a denial");
    }
    let text = format!("ClawButler blocked this request: {} (rule {}, decision {})", d.reason, d.rule, d.id);
    if state.settings.deny_style == DenyStyle::Message && synthetic::supports(req.route.endpoint) {
        let mut res = synthetic::reply(
            req.route.endpoint,
            req.info.stream,
            req.info.include_usage,
            &req.info.model,
            &d.id,
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

/// The policy step: decide the call, then pass it on or refuse it.
pub fn step(state: Arc<ProxyState>, mut req: CallRequest, mut inner: Next) -> BoxFut<ProxyError> {
    Box::pin(async move {
        req.estimate_usd = estimate(&state, &req);
        let mut input = record::policy_input(&req, state.broker.grants_for(&req.route.agent));
        input.budgets = state.budgets.snapshot(&crate::budget::CallScope {
            agent: &req.route.agent,
            model: &req.info.model,
            upstream: &req.route.upstream.name,
        });
        let mut d = state.policy.evaluate(&input);
        d.id = req.ctx.decision_id.clone();
        if d.action == Action::Hold {
            // The hold layer parks it and sets the final action once a human decided.
            req.decision = Some(d);
            return inner.call(req).await;
        }
        let _ = req.ctx.action.set(d.action);
        if d.action == Action::Allow {
            req.decision = Some(d);
            return inner.call(req).await;
        }
        refuse(&state, &req, &d).await
    })
}

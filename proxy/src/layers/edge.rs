//! Edge layer: creates the call context, turns every error into a response in the caller's
//! own shape (the one place that happens), and stamps the decision and trace ids on every
//! response.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

use super::BoxFut;
use crate::body::ResBody;
use crate::ctx::CallCtx;
use crate::error::ProxyError;

/// See the module docs.
#[derive(Clone, Default)]
pub struct EdgeLayer;

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge { inner }
    }
}

/// The edge service.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Edge<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFut<Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ctx = Arc::new(CallCtx::new(req.headers(), req.uri().path()));
        let allow = super::guard::allow_for(req.uri().path());
        req.extensions_mut().insert(ctx.clone());
        let mut inner = self.inner.clone();
        // Every line logged while the call is decided carries its trace id (JSON logs).
        let span = tracing::info_span!("call", trace_id = %ctx.trace_id);
        Box::pin(tracing::Instrument::instrument(
            async move {
                let mut res = match inner.call(req).await {
                    Ok(res) => res,
                    Err(e) => {
                        if e.code() == "audit_unavailable" {
                            // The outage is logged once by the audit log and every refusal counted
                            // (`clawbutler_audit_refused_calls_total`): no line per call, which on
                            // a full disk would only add to what cannot be written.
                            tracing::debug!(trace_id = %ctx.trace_id, error = %e, "call refused: audit log unavailable");
                        } else if e.status().is_server_error() {
                            tracing::warn!(trace_id = %ctx.trace_id, error = %e, "call failed");
                        }
                        let mut res = e.into_response(ctx.dialect);
                        if res.status() == http::StatusCode::METHOD_NOT_ALLOWED {
                            res.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static(allow));
                        }
                        res
                    }
                };
                stamp(&mut res, &ctx);
                Ok(res)
            },
            span,
        ))
    }
}

fn stamp(res: &mut Response<ResBody>, ctx: &CallCtx) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(ctx.decision_id.as_str()) {
        h.insert("x-clawbutler-decision-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ctx.trace_id) {
        h.insert("x-clawbutler-trace-id", v);
    }
}

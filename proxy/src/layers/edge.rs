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
pub struct EdgeLayer {
    telemetry: telemetry::Telemetry,
}

impl EdgeLayer {
    /// An edge whose calls get a root span from `telemetry` (when it is on).
    pub fn new(telemetry: telemetry::Telemetry) -> Self {
        EdgeLayer { telemetry }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;
    fn layer(&self, inner: S) -> Edge<S> {
        Edge { inner, telemetry: self.telemetry.clone() }
    }
}

/// The edge service.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    telemetry: telemetry::Telemetry,
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
        let ctx = Arc::new(CallCtx::traced(req.headers(), req.method(), req.uri().path(), &self.telemetry));
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
                trace_outcome(&ctx, res.status());
                Ok(res)
            },
            span,
        ))
    }
}

/// What the call's root span says once the response is ready (the span itself ends with
/// the call: at `finish.rs` for a forwarded call, else when the context is dropped).
fn trace_outcome(ctx: &CallCtx, status: http::StatusCode) {
    let t = &ctx.trace;
    t.set(|| telemetry::Attr::new("http.response.status_code", i64::from(status.as_u16())));
    if let Some(a) = ctx.action.get() {
        t.set(|| telemetry::Attr::new("clawbutler.action", a.as_str()));
    }
    if let Some((endpoint, upstream)) = ctx.labels.get() {
        t.set(|| telemetry::Attr::new("clawbutler.route", endpoint.as_str()));
        t.set(|| telemetry::Attr::new("clawbutler.upstream", upstream.to_string()));
    }
    if status.is_server_error() {
        t.error("server error");
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

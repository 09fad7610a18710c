//! Metrics layer: counts every call by route, upstream and action, and observes total time and
//! the sidecar's own overhead (total minus upstream and human wait) to response headers.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::BoxFut;
use crate::body::ResBody;
use crate::ctx::CallCtx;
use crate::error::ProxyError;
use crate::metrics::ProxyMetrics;

/// See the module docs.
#[derive(Clone)]
pub struct MetricsLayer {
    metrics: ProxyMetrics,
}

impl MetricsLayer {
    /// Observe into these families.
    pub fn new(metrics: ProxyMetrics) -> Self {
        MetricsLayer { metrics }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;
    fn layer(&self, inner: S) -> Metered<S> {
        Metered { inner, metrics: self.metrics.clone() }
    }
}

/// The metrics service.
#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    metrics: ProxyMetrics,
}

impl<S, B> Service<Request<B>> for Metered<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = ProxyError;
    type Future = BoxFut<ProxyError>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let ctx = req.extensions().get::<Arc<CallCtx>>().cloned();
        let mut inner = self.inner.clone();
        let m = self.metrics.clone();
        Box::pin(async move {
            let res = inner.call(req).await;
            if let Some(ctx) = ctx {
                let total = ctx.started.elapsed().as_secs_f64();
                let (route, upstream) = match ctx.labels.get() {
                    Some((ep, up)) => (ep.as_str(), up.as_ref()),
                    None => ("unknown", "unknown"),
                };
                let action = match (ctx.action.get(), &res) {
                    (Some(a), _) => a.as_str(),
                    (None, Err(_)) => "error",
                    (None, Ok(_)) => "allow",
                };
                m.requests.with_label_values(&[route, upstream, action]).inc();
                m.duration.with_label_values(&[route]).observe(total);
                m.overhead.with_label_values(&[route]).observe((total - ctx.external_secs()).max(0.0));
            }
            res
        })
    }
}

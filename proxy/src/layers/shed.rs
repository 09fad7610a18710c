//! Load shedding: a bounded number of model calls in flight on the data listener. Beyond
//! `[proxy] max_in_flight` a new call is answered at once with 503 + `Retry-After` in the
//! caller's own error shape (the edge shapes it), before any route, body, policy or audit work,
//! and counted in `clawbutler_shed_calls_total`. Calls already in flight are untouched: they
//! keep their slot until their response body has ended (a stream holds it while it streams),
//! so overload degrades into quick refusals instead of a tail that grows without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use prometheus::IntCounter;
use tower::{Layer, Service};

use super::BoxFut;
use crate::body::ResBody;
use crate::error::ProxyError;

/// Seconds a shed caller is asked to wait before it retries.
pub const RETRY_AFTER_S: u64 = 1;

/// See the module docs.
#[derive(Clone)]
pub struct ShedLayer {
    limit: usize,
    in_flight: Arc<AtomicUsize>,
    shed: IntCounter,
}

impl ShedLayer {
    /// At most `limit` calls in flight (at least 1); refusals counted in `shed`.
    pub fn new(limit: usize, shed: IntCounter) -> Self {
        ShedLayer { limit: limit.max(1), in_flight: Arc::new(AtomicUsize::new(0)), shed }
    }
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Shed<S> {
        Shed { inner, limit: self.limit, in_flight: self.in_flight.clone(), shed: self.shed.clone() }
    }
}

/// The shedding service.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    limit: usize,
    in_flight: Arc<AtomicUsize>,
    shed: IntCounter,
}

/// One call's slot; dropping it (with the response body, or the call's future) frees it.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, B> Service<Request<B>> for Shed<S>
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
        // Take a slot first, then check: two callers racing for the last slot cannot both win.
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(self.in_flight.clone());
        if before >= self.limit {
            drop(slot);
            self.shed.inc();
            let limit = self.limit;
            return Box::pin(async move {
                Err(ProxyError::Refused {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    kind: "overloaded",
                    message: format!(
                        "ClawButler is at its limit of {limit} calls in flight ([proxy] max_in_flight); retry shortly"
                    ),
                    retry_after_s: Some(RETRY_AFTER_S),
                })
            });
        }
        let mut inner = self.inner.clone();
        Box::pin(async move {
            let res = inner.call(req).await?;
            // The slot rides in the body: a streamed reply holds it until its last byte.
            Ok(res.map(move |b| {
                b.map_frame(move |f| {
                    let _held = &slot;
                    f
                })
                .boxed_unsync()
            }))
        })
    }
}

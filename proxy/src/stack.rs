//! The data path's layer order, written once. Outermost first; each line says why it sits
//! where it does.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use http_body::Body;
use tower::{Service, ServiceBuilder};

use crate::body::{BoxError, ResBody};
use crate::forward::Forward;
use crate::layers::body::BodyLayer;
use crate::layers::edge::EdgeLayer;
use crate::layers::metrics::MetricsLayer;
use crate::layers::route::RouteLayer;
use crate::layers::{budget, hold, kill, policy, StepLayer};
use crate::ProxyState;

/// Build the data-path service.
pub fn build<B>(
    state: Arc<ProxyState>,
) -> impl Service<Request<B>, Response = Response<ResBody>, Error = Infallible, Future = crate::layers::BoxFut<Infallible>>
       + Clone
       + Send
       + 'static
where
    B: Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    ServiceBuilder::new()
        // Edge: outermost, so every response (errors included) is in the caller's shape and
        // carries the decision and trace ids.
        .layer(EdgeLayer)
        // Metrics: inside the edge so it sees every outcome, refusals of inner layers included.
        .layer(MetricsLayer::new(state.metrics.clone()))
        // Route: cheap path checks first; unknown routes never cost a body read.
        .layer(RouteLayer::new(state.upstreams.clone()))
        // Body: bounded read and typed parse, so the policy sees real fields.
        .layer(BodyLayer::new(state.settings.max_body_bytes))
        // Kill switch: after the body (the refusal needs the caller's model and stream flag to
        // answer in its shape), before the policy (a killed agent costs no evaluation).
        .layer(StepLayer::new(state.clone(), kill::step))
        // Budget gate: an open breaker refuses with 429 before any policy work, in the form
        // OpenClaw shows verbatim (and the policy input then always sees an open budget).
        .layer(StepLayer::new(state.clone(), budget::gate))
        // Policy: decides before anything leaves the box; deny never reaches the upstream.
        .layer(StepLayer::new(state.clone(), policy::step))
        // Hold: right after the decision it acts on; a held call waits here for a human, before
        // any budget is reserved or anything leaves the box.
        .layer(StepLayer::new(state.clone(), hold::step))
        // Budget reserve: last before forwarding, after any hold, so a human's wait never
        // pins budget and only calls that will really be sent reserve their worst case.
        .layer(StepLayer::new(state.clone(), budget::reserve))
        // Forward: only allowed calls get here.
        .service(Forward::new(state))
}

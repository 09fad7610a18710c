//! The data path's layer order, written once. Outermost first. Each step states why it sits
//! where it does and its contract: what it reads, what it writes, and what must have run
//! before it. `CallCtx` (ids, timings, final action, metric labels) is shared by all;
//! `CallRequest` is the routed call with its body that the steps after the body layer pass on.

use std::convert::Infallible;
use std::sync::Arc;

use http::{Request, Response};
use http_body::Body;
use tower::{Service, ServiceBuilder};

use crate::body::{BoxError, ResBody};
use crate::forward::Forward;
use crate::layers::body::BodyLayer;
use crate::layers::edge::EdgeLayer;
use crate::layers::guard::{GuardLayer, GuardRules};
use crate::layers::metrics::MetricsLayer;
use crate::layers::route::RouteLayer;
use crate::layers::shed::ShedLayer;
use crate::layers::{audit, budget, hold, kill, policy, StepLayer};
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
        // Reads: headers (traceparent), path (dialect). Writes: `CallCtx` (trace id, decision
        // id, dialect, the call's root span when traces are on) into the request extensions;
        // every error into a response. Needs: nothing.
        .layer(EdgeLayer::new(state.telemetry.clone()))
        // Metrics: inside the edge so it sees every outcome, refusals of inner layers included.
        // Reads: `CallCtx` (labels, action, upstream and held time). Writes: request count,
        // duration, overhead. Needs: edge.
        .layer(MetricsLayer::new(state.metrics.clone()))
        // Shed: right after the edge and the metrics, before any other work, so an overloaded
        // sidecar refuses at once (and cheaply) instead of queueing; the refusal still shows
        // in the request count and in the caller's shape.
        // Reads: the in-flight count (one atomic). Writes: 503 `overloaded` + `Retry-After`
        // beyond `[proxy] max_in_flight`, counted in `clawbutler_shed_calls_total`; else a
        // slot held until the response body ends. Needs: edge.
        .layer(ShedLayer::new(state.settings.max_in_flight, state.metrics.shed.clone()))
        // Guard: right after the edge and the metrics, before any route or body work, so a
        // request a web page made (foreign Origin, cross-site fetch, rebound Host, a body that
        // is not JSON) never reaches the injected key and still shows in the request count.
        // Reads: method, headers (Origin, Sec-Fetch-Site, Host, Content-Type), the connection's
        // local address (`listener::ConnInfo`), `[proxy] allowed_origins/allowed_hosts`.
        // Writes: a refusal (403, 415), or nothing. Needs: edge.
        .layer(GuardLayer::new(GuardRules::from_settings(&state.settings)))
        // Route: cheap path checks first; unknown routes, bad agent ids and callers without
        // the agent's key never cost a body read.
        // Reads: method, path, upstreams, the caller's key headers, per-agent keys. Writes:
        // `Route` (agent, upstream, endpoint) into the extensions, metric labels into `CallCtx`;
        // removes `x-clawbutler-agent-key`. Needs: edge.
        .layer(RouteLayer::new(state.upstreams.clone(), state.auth.clone()))
        // Body: bounded read and typed parse, so every later step sees real fields.
        // Reads: body, headers. Writes: `CallRequest` with `info` (model, stream, caps, tools),
        // `session`, `estimate_usd` (worst case; None = unpriced model). Needs: route.
        .layer(BodyLayer::new(state.clone()))
        // Audit gate: while the audit log cannot write, nothing is decided (no evaluation, no
        // hold, no reservation) and nothing is sent: 503 + `Retry-After` in the caller's shape.
        // Reads: the log's health (one atomic load). Writes: `CallCtx.admission`; a refusal
        // (counted by the log), or nothing. Needs: body (the caller's shape is known from the
        // edge; after the body so a refusal looks like every other one).
        .layer(StepLayer::new(state.clone(), audit::step))
        // Kill switch: after the body (the refusal needs the caller's model and stream flag to
        // answer in its shape), before the policy (a killed agent costs no evaluation).
        // Reads: `route.agent`, kill flags. Writes: a refusal, or nothing. Needs: body.
        .layer(StepLayer::new(state.clone(), kill::step))
        // Budget gate: an open breaker refuses with 429 before any policy work, in the form
        // OpenClaw shows verbatim (and the policy input then always sees an open budget).
        // Reads: agent, model, upstream, breaker state. Writes: a refusal, or nothing. Needs: body.
        .layer(StepLayer::new(state.clone(), budget::gate))
        // Policy: decides before anything leaves the box; deny never reaches the upstream.
        // Reads: `info`, `session`, `estimate_usd`, grants, budgets. Writes: `decision` (allow
        // or hold), `CallCtx.action` for allow; a refusal for deny. Needs: body (the estimate).
        .layer(StepLayer::new(state.clone(), policy::step))
        // Hold: right after the decision it acts on; a held call waits here for a human, before
        // any budget is reserved or anything leaves the box.
        // Reads: `decision` (hold), `estimate_usd`. Writes: the final `decision` and
        // `CallCtx.action`, held time; a refusal unless approved. Needs: policy.
        .layer(StepLayer::new(state.clone(), hold::step))
        // Budget reserve: last before forwarding, after any hold, so a human's wait never
        // pins budget and only calls that will really be sent reserve their worst case.
        // Reads: `estimate_usd`, budgets. Writes: `reservation`; a refusal when it does not
        // fit (or the model is unpriced under a budget). Needs: body (estimate), hold.
        // Fleet budgets (`fleet = true`) first carve the worst case out of the sidecar's lease:
        // no I/O while it has room, else one central take (the only wait on the database on
        // the data path; docs/fleet.md). Other calls: the synchronous local reserve, unchanged.
        .layer(StepLayer::new(state.clone(), budget::reserve))
        // Forward: only allowed calls get here.
        // Reads: `decision`, `reservation`, body, upstream. Writes: the response; hands the
        // call's end (cost, settlement, audit record) to `finish::CallEnd`. Needs: all above.
        .service(Forward::new(state))
}

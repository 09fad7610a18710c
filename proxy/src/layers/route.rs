//! Route layer: parses `/a/{agent}/{upstream}/...`, resolves the upstream and endpoint,
//! checks the agent id and the caller's agent key (`auth.rs`), and refuses anything else
//! before a body byte is read.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use super::BoxFut;
use crate::auth::{AgentAuth, RefusalReason};
use crate::body::ResBody;
use crate::ctx::CallCtx;
use crate::error::ProxyError;
use crate::route::{self, Route, RouteError};
use crate::upstream::Upstreams;

/// See the module docs.
#[derive(Clone)]
pub struct RouteLayer {
    upstreams: Arc<Upstreams>,
    auth: Arc<AgentAuth>,
}

impl RouteLayer {
    /// Route against these upstreams, checking callers with `auth`.
    pub fn new(upstreams: Arc<Upstreams>, auth: Arc<AgentAuth>) -> Self {
        RouteLayer { upstreams, auth }
    }
}

impl<S> Layer<S> for RouteLayer {
    type Service = Router<S>;
    fn layer(&self, inner: S) -> Router<S> {
        Router { inner, upstreams: self.upstreams.clone(), auth: self.auth.clone() }
    }
}

/// The routing service.
#[derive(Clone)]
pub struct Router<S> {
    inner: S,
    upstreams: Arc<Upstreams>,
    auth: Arc<AgentAuth>,
}

/// Resolve a request's route. A path of the right shape whose agent id is not canonical is
/// a 400 (before the upstream is even looked up).
pub fn resolve(upstreams: &Upstreams, method: &http::Method, path: &str) -> Result<Route, ProxyError> {
    let (agent, up_name, rest) = route::split(path).ok_or_else(|| ProxyError::UnknownRoute(path.to_string()))?;
    decision::agent_id::check(agent)?;
    let upstream = upstreams.get(up_name).ok_or_else(|| ProxyError::UnknownUpstream(up_name.to_string()))?;
    let endpoint = route::endpoint_for(upstream.kind, method, rest).map_err(|e| match e {
        RouteError::MethodNotAllowed => ProxyError::MethodNotAllowed(method.to_string()),
        _ => ProxyError::UnknownRoute(path.to_string()),
    })?;
    Ok(Route {
        agent: agent.to_string(),
        upstream: upstream.clone(),
        endpoint,
        upstream_path: route::upstream_path(upstream.kind, rest),
    })
}

impl<S, B> Service<Request<B>> for Router<S>
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

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let routed = resolve(&self.upstreams, req.method(), req.uri().path()).and_then(|route| {
            if let Some(ctx) = req.extensions().get::<Arc<CallCtx>>() {
                let _ = ctx.labels.set((route.endpoint, Arc::from(route.upstream.name.as_str())));
                // The agent id was checked canonical just above (bounded spelling).
                ctx.trace.set(|| telemetry::Attr::new("gen_ai.agent.name", route.agent.clone()));
            }
            self.auth.check(&route, req.headers_mut())?;
            Ok(route)
        });
        match routed {
            Ok(route) => {
                req.extensions_mut().insert(route);
                let mut inner = self.inner.clone();
                Box::pin(async move { inner.call(req).await })
            }
            Err(e) => {
                if matches!(e, ProxyError::BadAgentId(_)) {
                    self.auth.count(RefusalReason::BadAgentId);
                }
                Box::pin(async move { Err(e) })
            }
        }
    }
}

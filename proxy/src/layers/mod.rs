//! The interception steps, one tower layer each. Their order is fixed in `stack.rs`.

pub mod audit;
pub mod body;
pub mod budget;
pub mod edge;
pub mod guard;
pub mod hold;
pub mod kill;
pub mod metrics;
pub mod policy;
pub mod route;
pub mod shed;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Response;
use tower::util::BoxCloneService;
use tower::{Layer, Service};

use crate::body::ResBody;
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::ProxyState;

/// Boxed future every layer returns.
pub type BoxFut<E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

/// The rest of the stack, as a call step sees it.
pub type Next = BoxCloneService<CallRequest, Response<ResBody>, ProxyError>;

/// One interception step over routed calls: answer the call itself (a refusal, a hold) or
/// hand it to `next`. The steps after the body layer are all of this form.
pub type StepFn = fn(Arc<ProxyState>, CallRequest, Next) -> BoxFut<ProxyError>;

/// The tower layer that runs a [`StepFn`].
#[derive(Clone)]
pub struct StepLayer {
    state: Arc<ProxyState>,
    step: StepFn,
}

impl StepLayer {
    /// A layer running `step` with the shared state.
    pub fn new(state: Arc<ProxyState>, step: StepFn) -> Self {
        StepLayer { state, step }
    }
}

impl<S> Layer<S> for StepLayer
where
    S: Service<CallRequest, Response = Response<ResBody>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Service = StepService;
    fn layer(&self, inner: S) -> StepService {
        StepService { state: self.state.clone(), step: self.step, next: BoxCloneService::new(inner) }
    }
}

/// The service of a [`StepLayer`].
#[derive(Clone)]
pub struct StepService {
    state: Arc<ProxyState>,
    step: StepFn,
    next: Next,
}

impl Service<CallRequest> for StepService {
    type Response = Response<ResBody>;
    type Error = ProxyError;
    type Future = BoxFut<ProxyError>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CallRequest) -> Self::Future {
        (self.step)(self.state.clone(), req, self.next.clone())
    }
}

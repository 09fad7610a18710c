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
use tower::{Layer, Service};

use crate::body::ResBody;
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::ProxyState;

/// Boxed future every layer returns.
pub type BoxFut<E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

/// The rest of the stack, as a call step sees it. The steps are built once and shared:
/// handing the rest of the stack to a call is one reference count, not a copy of every step
/// below (a `BoxCloneService` here cloned the whole chain, one allocation per step, at every
/// step of every call).
#[derive(Clone)]
pub struct Next(Arc<dyn Chain>);

/// One link of the chain behind [`Next`].
trait Chain: Send + Sync {
    fn run(&self, req: CallRequest) -> BoxFut<ProxyError>;
}

impl Next {
    /// The innermost service (the forward) as the end of the chain: each call runs on a clone
    /// of it, as tower services expect.
    pub fn service<S>(svc: S) -> Next
    where
        S: Service<CallRequest, Response = Response<ResBody>, Error = ProxyError, Future = BoxFut<ProxyError>>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        Next(Arc::new(Innermost(svc)))
    }

    /// Hand `req` to the rest of the stack. A step that passes a call on returns this future
    /// as its own (no box of its own around it).
    pub fn call(&self, req: CallRequest) -> BoxFut<ProxyError> {
        self.0.run(req)
    }
}

struct Innermost<S>(S);

impl<S> Chain for Innermost<S>
where
    S: Service<CallRequest, Response = Response<ResBody>, Error = ProxyError, Future = BoxFut<ProxyError>>
        + Clone
        + Send
        + Sync,
{
    fn run(&self, req: CallRequest) -> BoxFut<ProxyError> {
        self.0.clone().call(req)
    }
}

struct Link {
    state: Arc<ProxyState>,
    step: StepFn,
    next: Next,
}

impl Chain for Link {
    fn run(&self, req: CallRequest) -> BoxFut<ProxyError> {
        (self.step)(self.state.clone(), req, self.next.clone())
    }
}

/// What a [`StepLayer`] can wrap: another step, or the innermost service.
pub trait IntoNext {
    /// This service as the rest of the stack.
    fn into_next(self) -> Next;
}

impl IntoNext for StepService {
    fn into_next(self) -> Next {
        self.0
    }
}

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

impl<S: IntoNext> Layer<S> for StepLayer {
    type Service = StepService;
    fn layer(&self, inner: S) -> StepService {
        StepService(Next(Arc::new(Link { state: self.state.clone(), step: self.step, next: inner.into_next() })))
    }
}

/// The service of a [`StepLayer`]: the chain from this step inward (cloning it is one
/// reference count).
#[derive(Clone)]
pub struct StepService(Next);

impl Service<CallRequest> for StepService {
    type Response = Response<ResBody>;
    type Error = ProxyError;
    type Future = BoxFut<ProxyError>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CallRequest) -> Self::Future {
        self.0.call(req)
    }
}

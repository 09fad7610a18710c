//! The interception steps, one tower layer each. Their order is fixed in `stack.rs`.

pub mod body;
pub mod budget;
pub mod edge;
pub mod hold;
pub mod kill;
pub mod metrics;
pub mod policy;
pub mod route;

use std::future::Future;
use std::pin::Pin;

use http::Response;

use crate::body::ResBody;

/// Boxed future every layer returns.
pub type BoxFut<E> = Pin<Box<dyn Future<Output = Result<Response<ResBody>, E>> + Send>>;

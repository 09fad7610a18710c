//! Response body type shared by every layer.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

/// Boxed error for bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the data listener sends.
pub type ResBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete in-memory body.
pub fn full(b: impl Into<Bytes>) -> ResBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

//! Metering of upstream replies: SSE framing, side decoding of usage, and the body wrapper
//! that reports how each call ended.

pub mod body;
pub mod sse;
pub mod usage;

pub use body::{Finished, Hooks, MeteredBody, Mode, OnFinish, Outcome};
pub use usage::Summary;

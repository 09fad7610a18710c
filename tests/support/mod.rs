//! Helpers shared by the integration-test files (`mod support;` in each).
//!
//! - [`http`]: a tiny HTTP/1.1 client (one connection per request, so dropping a streaming response really
//!   closes the connection, which is what disconnect tests need).
//! - [`openclaw`]: a throwaway OpenClaw gateway (installed by `scripts/install-openclaw.sh`) with its own HOME.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod http;
pub mod openclaw;
pub mod sidecar;

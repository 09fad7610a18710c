//! ClawButler's dev-only test kit, shared by the integration tests, the e2e tier and the
//! benchmarks; it is never compiled into the shipped binary. It holds the stand-ins the
//! project allows for outside services, and the one sidecar rig:
//!
//! - [`upstream::ScriptedUpstream`]: a local model server that speaks the OpenAI and Anthropic
//!   wire formats closely enough that the sidecar cannot tell it from the real APIs, and whose
//!   answers are a pure function of the prompt, so a direct call and a call through the
//!   sidecar can be compared byte for byte (also the `scripted-upstream` dev binary).

// Test infrastructure: a setup failure panics the test that uses it, with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod upstream;

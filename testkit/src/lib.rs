//! ClawButler's dev-only test kit, shared by the integration tests, the e2e tier and the
//! benchmarks; it is never compiled into the shipped binary (it is only a dev-dependency).
//!
//! - [`rig`]: the one sidecar rig, started in process from a [`rig::SidecarConfig`] builder.
//! - [`upstream::ScriptedUpstream`]: the only model stand-in the project allows, a local server
//!   that speaks the OpenAI and Anthropic wire formats closely enough that the sidecar cannot
//!   tell it from the real APIs, and whose answers are a pure function of the prompt, so a
//!   direct call and a call through the sidecar can be compared byte for byte (also the
//!   `scripted-upstream` dev binary).
//! - [`fake_gateway`]: a protocol-level fake OpenClaw gateway for link tests that need
//!   misbehaviour on demand (the e2e tier uses the real one).
//! - [`openclaw`]: a throwaway real OpenClaw gateway (installed by `scripts/install-openclaw.sh`).
//! - [`blackhole::Blackhole`]: a TCP relay that stops forwarding on demand without closing
//!   anything (a hung host or a black-holed network, as the gateway link sees it).
//! - [`mcp`]: the real MCP parts (conformance suite, reference server, the TypeScript SDK running the
//!   project's fixture server and test client), installed by `scripts/install-mcp-tools.sh`.
//! - [`postgres::PgCluster`]: a throwaway PostgreSQL cluster on a loopback port (fleet mode).
//! - [`http`]: a tiny HTTP/1.1 client (one connection per request, so dropping a stream hangs up).

// Test infrastructure: a setup failure panics the test that uses it, with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod blackhole;
pub mod fake_gateway;
pub mod http;
pub mod mcp;
pub mod openclaw;
pub mod postgres;
pub mod rig;
pub mod upstream;
pub mod wait;

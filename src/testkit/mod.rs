//! Test infrastructure shared by the in-process integration tests, the e2e tier and the load benchmark.
//!
//! The only stand-in the project allows is [`upstream::ScriptedUpstream`]: a local model server that speaks
//! the OpenAI and Anthropic wire formats closely enough that the sidecar cannot tell it from the real APIs,
//! and whose answers are a pure function of the prompt, so a direct call and a call through the sidecar
//! can be compared byte for byte.

pub mod upstream;

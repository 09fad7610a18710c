//! ClawButler's decision vocabulary, shared by every crate that decides, acts on, records or
//! shows a call: the one [`Decision`] (with its [`DecisionId`], [`Action`], [`Risk`] and
//! [`Obligations`]) and the one typed, versioned [`PolicyInput`] with a [`CallKind`] per call
//! type, and the [`TaskType`] of an OpenClaw run (what cost by task type counts). It is a
//! leaf: plain data and serde, no engine, no I/O, so the audit log and the control API can
//! speak it without compiling the policy engine.

pub mod agent_id;
mod decision;
mod family;
mod input;
pub mod task;

pub use decision::{Action, Decision, DecisionId, Obligations, ResultSecrets, Risk, POLICY_ERROR};
pub use family::{mcp_parts, ToolFamily, MCP_SEPARATOR};
pub use input::{
    new_trace_id, BudgetInput, CallKind, CostInput, ExecInput, GrantInput, McpCallInput, McpInput, McpPhase,
    ModelInput, PluginInput, PolicyInput, RequesterInput, ToolInput, INPUT_VERSION,
};
pub use task::TaskType;

//! What the control API needs from whatever knows the agents (the OpenClaw gateway link):
//! the roster with each agent's health, and the gateway side of the kill switch. The trait
//! lives here, beside the kill flags it complements, so the control API and the gateway link
//! meet in governance and neither depends on the other.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Three-state agent health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Healthy,
    Degraded,
    Offline,
}

/// What the gateway link knows of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub id: String,
    pub name: String,
    pub health: Health,
    /// Why the agent is in this state (`health.rs`), when it ever changed.
    #[serde(default)]
    pub health_reason: Option<String>,
    /// RFC 3339 time it entered this state (or was first seen).
    #[serde(default)]
    pub health_since: Option<String>,
    /// RFC 3339 time of the last agent/chat event or call, if any was seen.
    pub last_activity: Option<String>,
    pub model: Option<String>,
    pub workspace: Option<String>,
    /// Runs in flight now.
    pub active_runs: usize,
    /// Exec approvals of this agent waiting at the gateway.
    pub pending_approvals: usize,
    /// Spend OpenClaw or ClawButler attributed to the agent, when known.
    pub spend_usd: Option<f64>,
}

/// Boxed future of an [`AgentControl`] action; `Err` is a message for the operator.
pub type ControlFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, String>> + Send + 'a>>;

/// The gateway side of agent control (see the module docs). Kill/recover results are JSON
/// reports of what was changed in OpenClaw.
pub trait AgentControl: Send + Sync {
    /// Whether the gateway link is up.
    fn connected(&self) -> bool;
    /// Every known agent.
    fn list(&self) -> Vec<AgentSummary>;
    /// One agent.
    fn get(&self, id: &str) -> Option<AgentSummary>;
    /// The agent's governance report (which of its paths go through ClawButler), computed
    /// from the gateway's live config; None when none was computed.
    fn governance(&self, _id: &str) -> Option<Value> {
        None
    }
    /// The config history of the gateway's agents (`config_history.rs`), when kept.
    fn config_history(&self) -> Option<&dyn crate::config_history::ConfigHistory> {
        None
    }
    /// Cron governance of the gateway's jobs (`cron.rs`), when linked.
    fn cron(&self) -> Option<&dyn crate::cron::CronControl> {
        None
    }
    /// Encrypted gateway backups (`backups.rs`), when a gateway is linked.
    fn backups(&self) -> Option<&dyn crate::backups::Backups> {
        None
    }
    /// OpenClaw's own usage records (`usage.rs`), when a gateway is linked.
    fn usage(&self) -> Option<&dyn crate::usage::GatewayUsage> {
        None
    }
    /// What a kill changed in OpenClaw for `id` and which kinds of kill hold it (`local`,
    /// `fleet`, `config_patched`, `cron_disabled`); None when nothing is changed.
    fn kill_record(&self, _id: &str) -> Option<Value> {
        None
    }
    /// Stop the agent in OpenClaw (the proxy flag is already set by the caller).
    fn kill<'a>(&'a self, id: &'a str, reason: &'a str, actor: &'a str) -> ControlFuture<'a>;
    /// Undo exactly what `kill` changed.
    fn recover<'a>(&'a self, id: &'a str, reason: &'a str, actor: &'a str) -> ControlFuture<'a>;
    /// Kill every known agent.
    fn kill_all<'a>(&'a self, reason: &'a str, actor: &'a str) -> ControlFuture<'a>;
    /// Recover every agent killed through the gateway.
    fn recover_all<'a>(&'a self, reason: &'a str, actor: &'a str) -> ControlFuture<'a>;
}

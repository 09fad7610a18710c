//! ClawButler's governance services: the stateful parts every path acts through. The approval
//! broker parks held calls until a human decides (and keeps the standing grants an
//! "allow always" creates), budgets reserve and settle dollar spend as circuit breakers, the
//! kill switch answers "may this agent's calls pass?", per-agent keys bind a data-path call to
//! the agent it names, and the health tracker says whether each agent is healthy, degraded or
//! offline from what it does, and the run index tells which OpenClaw run (and task type) a
//! model call belongs to. The data path, the MCP and
//! plugin paths, the gateway link and the control API all use these same services, so a decision or
//! a kill made anywhere holds everywhere. State lives in the one store (`storage`); every
//! transition is recorded in the audit log.

pub mod agent_keys;
pub mod agents;
pub mod approvals;
pub mod backups;
pub mod budget;
pub mod config_history;
pub mod cron;
pub mod health;
pub mod kill;
pub mod plugin;
pub mod plugin_tokens;
pub mod runs;
mod secret;
pub mod usage;

pub use agent_keys::{AgentKeyError, AgentKeys};
pub use approvals::{ApprovalSettings, Broker, BrokerError};
pub use budget::{BudgetError, Budgets};
pub use health::HealthTracker;
pub use kill::{KillError, KillSwitch};
pub use plugin::{Handoffs, PluginHealth};
pub use plugin_tokens::{PluginTokenError, PluginTokens};
pub use runs::RunIndex;

//! What the control API needs from the config-safety side of the gateway link (issue #16):
//! an agent's versioned config snapshots, their semantic diff, drift against the version
//! ClawButler made or accepted, and rollback. The trait lives here, beside [`AgentControl`],
//! so the control API and the gateway crate meet in governance and neither depends on the
//! other; the gateway reaches it through [`AgentControl::config_history`].
//!
//! [`AgentControl`]: crate::agents::AgentControl
//! [`AgentControl::config_history`]: crate::agents::AgentControl::config_history

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

/// Why a config-history request failed; the control API turns each into its problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigHistoryError {
    /// No such agent or version.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be served as asked (a version that cannot be rolled back to, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The gateway's config changed under the rollback (stale `baseHash`): nothing was
    /// overwritten.
    #[error("{0}")]
    Conflict(String),
    /// The gateway link is down or the gateway refused.
    #[error("{0}")]
    Unavailable(String),
    /// The state store failed.
    #[error("{0}")]
    Store(String),
}

/// Boxed future of a config-history action.
pub type HistoryFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, ConfigHistoryError>> + Send + 'a>>;

/// Versions, diff, drift and rollback of one agent's config (see the module docs).
pub trait ConfigHistory: Send + Sync {
    /// Every version of the agent, newest first, without their content.
    fn versions(&self, agent: &str) -> Result<Value, ConfigHistoryError>;
    /// One version with its content.
    fn version(&self, agent: &str, version: u64) -> Result<Value, ConfigHistoryError>;
    /// The semantic diff from one version to another.
    fn diff(&self, agent: &str, from: u64, to: u64) -> Result<Value, ConfigHistoryError>;
    /// Live config (read now) against the version ClawButler made or accepted.
    fn drift<'a>(&'a self, agent: &'a str) -> HistoryFuture<'a>;
    /// Roll the agent back to `to` (or only plan it with `dry_run`), as `actor`. A plan with
    /// a critical change is not applied: it waits in the approval inbox, and the answer has
    /// `status: "awaiting_approval"`, the `approval_id` and where to `poll`.
    fn rollback<'a>(&'a self, agent: &'a str, to: u64, dry_run: bool, actor: &'a str) -> HistoryFuture<'a>;
    /// A rollback that waited for approval: its status (`awaiting_approval`, `applying`,
    /// `applied`, `not_needed`, `conflict`, `failed`, `denied`, `expired`, `cancelled`,
    /// `interrupted`) and its approval as it is now.
    fn held_rollback(&self, agent: &str, approval_id: &str) -> Result<Value, ConfigHistoryError>;
    /// Accept the live config (read now) as the agent's new drift baseline, without a
    /// rollback. `version`: the live version the caller saw (another one is a conflict).
    /// Accepting a config that lost ClawButler's wiring needs `accept_ungoverned`.
    fn accept<'a>(
        &'a self,
        agent: &'a str,
        version: Option<u64>,
        accept_ungoverned: bool,
        actor: &'a str,
    ) -> HistoryFuture<'a>;
    /// The agent's drift state as the agents API shows it (None: nothing known).
    fn status(&self, agent: &str) -> Option<Value>;
    /// Apply one previewed merge `patch` of the agent's model (a savings suggestion an admin
    /// confirmed) with `config.patch` on `base_hash`: a concurrent change is a `Conflict` and
    /// overwrites nothing. Audited as `model_changed` / `model_change_conflict`. A patch with a
    /// critical change is not applied: it waits in the approval inbox (`status:
    /// "awaiting_approval"`, `approval_id`, `poll`), like a critical rollback.
    fn change_model<'a>(&'a self, change: ModelChange<'a>) -> HistoryFuture<'a>;
    /// A model change that waited for approval: its status (as a held rollback's) and its
    /// approval as it is now.
    fn held_model_change(&self, approval_id: &str) -> Result<Value, ConfigHistoryError>;
}

/// A confirmed model change (see [`ConfigHistory::change_model`]).
#[derive(Debug, Clone, Copy)]
pub struct ModelChange<'a> {
    pub agent: &'a str,
    /// The previewed JSON merge patch.
    pub patch: &'a Value,
    /// The preview's `baseHash`.
    pub base_hash: &'a str,
    /// Who confirmed it (the token's name).
    pub actor: &'a str,
}

//! The approval broker: a `hold` decision parks a call here until a human decides, it
//! expires (= deny), or its caller goes away (= cancelled).
//!
//! Invariants:
//! - An approval leaves `pending` exactly once. Every transition happens under the approval's
//!   own lock and checks status (and, for human decisions, `expected_version`), so of two
//!   racing decisions exactly one wins and the other gets [`BrokerError::Conflict`] naming the
//!   winner.
//! - A decision is on disk (sled flushed, audit record fsynced) before the held call is
//!   released and before the decider is answered. A human's decision that cannot be made
//!   durable (the audit log cannot write, the store fails) is undone: the approval is pending
//!   again, the call stays held, and the decider gets the error. System transitions that
//!   refuse (expiry, cancel, a kill's deny) go ahead even then: failing closed needs no record.
//! - Nothing is ever auto-allowed: expiry denies, and approvals found pending after a restart
//!   (their caller is gone) become `cancelled`.
//! - Waiting costs a oneshot channel and a timer, no thread: thousands may be pending.
//!
//! In fleet mode (`fleet.rs`) decisions are taken in the fleet's shared inbox instead, and
//! the broker applies them to the calls it holds; grants are the fleet's (`fleet_grants.rs`).
//!
//! Callers: the data path's hold layer (model calls), the gateway link (OpenClaw exec
//! approvals, via [`Broker::hold`] with an `external_id` and [`Broker::close_external`]), the
//! kill switch ([`Broker::deny_all_for_agent`]) and the control API.

mod broker;
mod durable;
pub mod fleet;
mod fleet_grants;
#[cfg(test)]
mod fleet_grants_tests;
#[cfg(test)]
mod fleet_tests;
pub mod grants;
#[cfg(test)]
mod kill_tests;
pub mod model;
mod own_grants;
pub mod pattern;
mod record;
pub mod store;
mod wait;

use serde::{Deserialize, Serialize};

pub use broker::{Broker, Held};
pub use fleet::{InboxLink, Prepared, RemoteDecision};
pub use fleet_grants::{GrantFut, GrantLink};
pub use grants::{Breadth, Grant, GrantScope, ScopeInput};
pub use model::{
    Approval, ApprovalPage, ApprovalQuery, Caution, DecideRequest, DecisionKind, HoldRequest, Resolution, Status,
};

fn default_ttl_s() -> u64 {
    1800
}

fn default_heartbeat_ms() -> u64 {
    15_000
}

/// `[approvals]` config section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSettings {
    /// How long a pending approval waits before it expires (= deny), in seconds, when the
    /// policy decision carries no `obligations.hold_ttl_s` (default 1800).
    #[serde(default = "default_ttl_s")]
    pub ttl_s: u64,
    /// Interval of the heartbeat comment on `/api/v1/events`, in milliseconds (default 15000).
    #[serde(default = "default_heartbeat_ms")]
    pub events_heartbeat_ms: u64,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings { ttl_s: default_ttl_s(), events_heartbeat_ms: default_heartbeat_ms() }
    }
}

/// Errors of the broker. `Conflict`, `NotFound` and `Invalid` are the caller's to fix; the
/// rest are the box's.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("approval store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("approval store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("audit log: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Invalid(String),
    /// The fleet database did not answer (fleet mode): nothing was changed.
    #[error("fleet database unavailable: {0}")]
    Unavailable(String),
    #[error("no approval or grant '{0}'")]
    NotFound(String),
    /// The approval was already decided (or changed since the caller looked); it carries the
    /// approval as it is now.
    #[error("{}", conflict_message(.0))]
    Conflict(Box<Approval>),
}

fn conflict_message(a: &Approval) -> String {
    if a.status == Status::Pending {
        return format!("approval {} changed since you looked: it is now at version {}", a.id, a.version);
    }
    format!(
        "approval {} was already {} by {} at {}",
        a.id,
        a.status.as_str(),
        a.decided_by.as_deref().unwrap_or("system"),
        a.decided_at.as_deref().unwrap_or("an unknown time")
    )
}

//! PLACEHOLDER (issue 6 replaces): the approval broker. A `hold` decision parks a call here
//! until a human decides, it expires, or its caller goes away.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// `[approvals]` config section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalSettings {
    /// How long a pending approval waits before it expires (= deny).
    pub ttl_s: u64,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings { ttl_s: 1800 }
    }
}

/// Errors of the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("approval store: {0}")]
    Store(#[from] sled::Error),
}

/// The broker (placeholder: holds nothing yet, so holds are refused as `no_approver`).
pub struct Broker {
    _settings: ApprovalSettings,
}

impl Broker {
    /// Open the broker's trees in the main store.
    pub fn open(
        _db: &sled::Db,
        settings: &ApprovalSettings,
        _audit: Arc<audit::AuditLog>,
        _registry: &prometheus::Registry,
    ) -> Result<Broker, BrokerError> {
        Ok(Broker { _settings: settings.clone() })
    }
}

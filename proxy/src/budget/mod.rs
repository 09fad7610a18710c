//! Budget circuit breakers (being written): hard dollar caps per agent, model, upstream and
//! globally, reserved before a call is forwarded and settled with its real cost.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Daily,
    Weekly,
    Monthly,
}

/// One `[[budgets]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    #[serde(default)]
    pub id: Option<String>,
    pub scope: String,
    pub window: Window,
    pub limit_usd: f64,
    #[serde(default)]
    pub warn_at: Option<f64>,
    #[serde(default)]
    pub timezone: Option<String>,
}

/// Errors of the budget store.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("budget store: {0}")]
    Store(#[from] sled::Error),
}

/// All budgets.
pub struct Budgets {}

impl Budgets {
    /// Load budgets from config and the ledger.
    pub fn open(
        _db: &sled::Db,
        _cfg: &[BudgetConfig],
        _audit: Arc<audit::AuditLog>,
        _registry: &prometheus::Registry,
    ) -> Result<Budgets, BudgetError> {
        Ok(Budgets {})
    }
}

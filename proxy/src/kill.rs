//! PLACEHOLDER (issue 7 replaces): per-agent and global kill flags, checked on every call.

/// Kill flags (placeholder: nothing is ever killed).
#[derive(Default)]
pub struct KillSwitch {}

/// Errors of the kill switch store.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("kill switch store: {0}")]
    Store(#[from] sled::Error),
}

impl KillSwitch {
    /// Load persisted flags from the main store.
    pub fn open(_db: &sled::Db, _registry: &prometheus::Registry) -> Result<KillSwitch, KillError> {
        Ok(KillSwitch {})
    }

    /// Whether calls of `agent` must be refused now, and why.
    pub fn blocked(&self, _agent: &str) -> Option<String> {
        None
    }
}

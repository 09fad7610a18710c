//! The notifier's errors: the caller's to fix (`NotFound`, `Conflict`, `Invalid`) or the box's.

/// Errors of the notifier's API and start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("notification store: {0}")]
    Store(String),
    #[error("{key}: {msg}")]
    Config { key: String, msg: String },
    #[error("notification keys in the data dir: {0}")]
    Keys(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl From<storage::StoreError> for NotifyError {
    fn from(e: storage::StoreError) -> Self {
        NotifyError::Store(e.to_string())
    }
}

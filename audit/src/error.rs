//! The crate's one error type.

/// Errors from the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file operation on the log directory failed.
    #[error("audit io: {0}")]
    Io(#[from] std::io::Error),
    /// The sled index failed.
    #[error("audit index: {0}")]
    Index(#[from] sled::Error),
    /// The state store holding the index could not be opened.
    #[error("audit index: {0}")]
    Store(#[from] storage::StoreError),
    /// A record or checkpoint could not be (de)serialised.
    #[error("audit json: {0}")]
    Json(#[from] serde_json::Error),
    /// The signing key could not be created or read.
    #[error("audit key: {0}")]
    Key(String),
    /// The writer thread is gone (the log is closed); nothing more can be appended.
    #[error("audit writer stopped: {0}")]
    WriterStopped(String),
    /// The log cannot write now (a full disk, an I/O error); the writer retries by itself.
    /// The record was not written and got no seq.
    #[error(transparent)]
    Unavailable(#[from] crate::health::Unavailable),
    /// A query parameter (cursor, time) was malformed.
    #[error("audit query: {0}")]
    BadQuery(String),
    /// A metric could not be registered.
    #[error("audit metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

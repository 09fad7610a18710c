//! The fleet crate's one error type; the binary turns it into a start error, the control API
//! into problem+json.

/// Errors of fleet mode.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("[fleet] database_url: {0}")]
    Url(String),
    #[error("[fleet] ca_file {path}: {msg}")]
    CaFile { path: String, msg: String },
    #[error("fleet TLS setup: {0}")]
    Tls(String),
    #[error("fleet database: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("fleet database pool: {0}")]
    Pool(String),
    #[error("fleet database did not answer within {ms} ms ({what})")]
    Timeout { what: &'static str, ms: u64 },
    #[error(
        "the fleet database's schema is version {found}, newer than this binary's {known}: \
         upgrade this sidecar (it refuses to run against a schema it does not know)"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(transparent)]
    AgentId(#[from] decision::agent_id::AgentIdError),
    /// The caller's request is not valid (a bad filter).
    #[error("{0}")]
    Invalid(String),
    #[error("fleet lease journal: {0}")]
    Journal(String),
    /// A published policy bundle was refused (signature, tests, compile): nothing was stored.
    #[error("{0}")]
    Refused(String),
    #[error("fleet database: unreadable record: {0}")]
    Corrupt(#[from] serde_json::Error),
}

impl From<deadpool_postgres::PoolError> for FleetError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => FleetError::Db(e),
            other => FleetError::Pool(other.to_string()),
        }
    }
}

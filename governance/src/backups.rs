//! What the control API needs from the gateway link for encrypted gateway backups (`.cbpkg`,
//! issue #16, `docs/config-safety.md`): create a package (intent `backup`, `clone` or
//! `share`), list and download stored ones, inspect one, and import one with a preview and a
//! strategy. Like [`crate::config_history`], the trait lives here so the control API and the
//! gateway crate meet in governance; the gateway reaches it through
//! [`crate::agents::AgentControl::backups`].

use serde::Deserialize;
use serde_json::{Map, Value};

use std::future::Future;
use std::pin::Pin;

/// Boxed future of a backup action.
pub type BackupFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, BackupError>> + Send + 'a>>;

/// Why a backup request failed; the control API turns each into its problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// No such package.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (no key, unknown strategy, bad base64, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The package cannot be opened (wrong key, damaged, truncated, newer format) or a
    /// `share` package failed its scan: nothing was applied.
    #[error("{0}")]
    Refused(String),
    /// The gateway's config changed under the import (stale `baseHash`): nothing overwritten.
    #[error("{0}")]
    Conflict(String),
    /// The gateway link is down or the gateway refused.
    #[error("{0}")]
    Unavailable(String),
    /// The package store failed.
    #[error("{0}")]
    Store(String),
}

/// The key of a package: a passphrase, or a 32-byte key (hex or base64, as in a key file).
/// No `Debug`: it holds a secret.
#[derive(Clone, Default, Deserialize)]
pub struct KeyInput {
    #[serde(default)]
    pub passphrase: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
}

/// Body of `POST /api/v1/backups`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// `backup`, `clone` or `share`.
    pub intent: String,
    #[serde(flatten)]
    pub key: KeyInput,
    #[serde(default)]
    pub note: Option<String>,
}

/// Which package an inspect or import reads: a stored one or uploaded bytes (base64).
#[derive(Clone, Default, Deserialize)]
pub struct PackageInput {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub package: Option<String>,
}

/// Body of `POST /api/v1/backups/inspect`.
#[derive(Clone, Deserialize)]
pub struct InspectRequest {
    #[serde(flatten)]
    pub package: PackageInput,
    #[serde(flatten)]
    pub key: KeyInput,
}

/// Body of `POST /api/v1/backups/import`.
#[derive(Clone, Deserialize)]
pub struct ImportRequest {
    #[serde(flatten)]
    pub package: PackageInput,
    #[serde(flatten)]
    pub key: KeyInput,
    /// `merge`, `replace_scope` or `exact_restore`.
    pub strategy: String,
    /// `replace_scope`: the agents to replace.
    #[serde(default)]
    pub agents: Vec<String>,
    /// `replace_scope`: the top-level sections to replace (`cron` = every cron job).
    #[serde(default)]
    pub sections: Vec<String>,
    /// A `clone` package's secret references, filled: `{config path: value}`.
    #[serde(default)]
    pub secrets: Map<String, Value>,
    #[serde(default)]
    pub dry_run: bool,
}

/// Encrypted gateway backups (see the module docs).
pub trait Backups: Send + Sync {
    /// Write a package of the live gateway.
    fn create<'a>(&'a self, req: CreateRequest, actor: &'a str) -> BackupFuture<'a>;
    /// Stored packages, newest first (their manifests).
    fn list(&self) -> Result<Value, BackupError>;
    /// One stored package's manifest.
    fn manifest(&self, id: &str) -> Result<Value, BackupError>;
    /// One stored package's bytes.
    fn bytes(&self, id: &str) -> Result<Vec<u8>, BackupError>;
    /// Open a package and describe what it holds (never a secret value).
    fn inspect<'a>(&'a self, req: InspectRequest) -> BackupFuture<'a>;
    /// Preview (`dry_run`) or apply a package with a strategy. A preview with a critical
    /// change is held for a human: `status: "awaiting_approval"` with `approval_id` and `poll`.
    fn import<'a>(&'a self, req: ImportRequest, actor: &'a str) -> BackupFuture<'a>;
    /// How a held import stands or ended.
    fn held_import(&self, approval_id: &str) -> Result<Value, BackupError>;
}

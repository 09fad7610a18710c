//! The state store, owned in one place: the sled database under `<data_dir>/state`, the name
//! of every tree in it ([`Tree`]), and the store's format version. Every component that keeps
//! state (approvals, grants, budgets, kill switch, tokens, the audit search index, the gateway
//! link) opens its trees through [`Store::tree`], so no tree name is written anywhere else and
//! a data dir written by a newer build is refused before anything reads it.
//!
//! Writes that fail: after an I/O error (a full disk) sled refuses every later write until the
//! database is reopened, i.e. until the sidecar restarts; reads keep working. Each component
//! returns such errors to its caller; [`Store::check_writes`] (run periodically and by
//! `/readyz`) finds the state without writing anything itself.
//!
//! Invariant: [`FORMAT_VERSION`] is bumped on any change a previous build would misread (a
//! record shape, a key layout, a tree's meaning). A store stamped with a newer version is
//! refused at open with [`StoreError::NewerFormat`]; an older one is upgraded (stamped) after
//! whatever migration its version needs, which today is none.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The tree that holds the format stamp (and nothing else).
const META_TREE: &str = "store_meta";
const FORMAT_KEY: &[u8] = b"format_version";

/// Every tree of the store. The names are part of the on-disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tree {
    /// Approvals by id (UUID v7, so key order is creation order).
    Approvals,
    /// The approvals' own format stamp, from before the store had one (read for old data dirs).
    ApprovalsMeta,
    /// Standing grants by id.
    Grants,
    /// Spend per budget and window.
    BudgetSpend,
    /// Budgets defined through the API.
    BudgetDefs,
    /// Kill flags per agent and the global one.
    KillSwitch,
    /// What a kill changed in OpenClaw, so recover can undo exactly that.
    GatewayKill,
    /// Control API tokens (hashed).
    Tokens,
    /// Per-agent data-path keys (salted hashes), by agent and key id.
    AgentKeys,
    /// Per-agent MCP bearer tokens (salted hashes), by agent and token id.
    McpTokens,
    /// Per-gateway plugin-gate tokens (salted hashes), by token id.
    PluginTokens,
    /// Answers to decision POSTs, replayed for a retry with the same Idempotency-Key.
    Idempotency,
    /// Audit search index: record locations by seq.
    AuditLoc,
    /// Audit search index: postings by field value.
    AuditBy,
    /// Audit search index: its own progress marks.
    AuditMeta,
    /// Notification routes defined through the API.
    NotifyRoutes,
    /// The notification delivery log, by delivery id (UUID v7: key order is time order).
    NotifyDeliveries,
    /// Web Push subscriptions, by id.
    NotifyPush,
    /// Per-token notification preferences, by token name.
    NotifyPrefs,
    /// Action links already used (nonce -> expiry), so a link opens once.
    NotifyLinks,
    /// Versioned config snapshots per agent and the drift baselines (`gateway::config_safety`).
    ConfigVersions,
    /// Cost aggregates: hourly buckets, the top traces per hour, agent and model, and the audit
    /// seq they include (one tree, so a batch moves all three atomically; `docs/cost.md`).
    CostBuckets,
    /// Cost anomalies raised, by hour and subject (so one is raised once, across restarts).
    CostAnomalies,
    /// Cron governance: jobs paused by a budget breaker (to resume exactly those) and the
    /// failure streaks already alerted (`gateway::cron`, `docs/cron.md`).
    CronState,
    /// Reports: each report's definition, status and file list, by id (UUID v7: key order is
    /// creation order; `docs/cost.md`, "Reports").
    Reports,
    /// Report files (CSV, PDF) by file id, and each file's report and format.
    ReportFiles,
    /// Report download links already used (nonce -> expiry), so a link downloads once.
    ReportLinks,
    /// Report schedules defined through the API, and the last period each schedule made.
    ReportSchedules,
}

impl Tree {
    /// The tree's name in sled.
    pub fn name(self) -> &'static str {
        match self {
            Tree::Approvals => "approvals",
            Tree::ApprovalsMeta => "approvals_meta",
            Tree::Grants => "grants",
            Tree::BudgetSpend => "budget_spend",
            Tree::BudgetDefs => "budget_defs",
            Tree::KillSwitch => "kill_switch",
            Tree::GatewayKill => "gateway_kill",
            Tree::Tokens => "tokens",
            Tree::AgentKeys => "agent_keys",
            Tree::McpTokens => "mcp_tokens",
            Tree::PluginTokens => "plugin_tokens",
            // The name predates the control API owning these answers; kept for old data dirs.
            Tree::Idempotency => "approval_idempotency",
            Tree::AuditLoc => "audit_loc",
            Tree::AuditBy => "audit_by",
            Tree::AuditMeta => "audit_meta",
            Tree::NotifyRoutes => "notify_routes",
            Tree::NotifyDeliveries => "notify_deliveries",
            Tree::NotifyPush => "notify_push",
            Tree::NotifyPrefs => "notify_prefs",
            Tree::NotifyLinks => "notify_links",
            Tree::ConfigVersions => "config_versions",
            Tree::CostBuckets => "cost_buckets",
            Tree::CostAnomalies => "cost_anomalies",
            Tree::CronState => "cron_state",
            Tree::Reports => "reports",
            Tree::ReportFiles => "report_files",
            Tree::ReportLinks => "report_links",
            Tree::ReportSchedules => "report_schedules",
        }
    }
}

/// Errors opening or using the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error(
        "state store {path} has format version {found}, newer than this build's {supported}; \
         run the newer clawbutler, or restore a backup made by this version"
    )]
    NewerFormat { path: PathBuf, found: u32, supported: u32 },
    #[error("state store {path}: unreadable format stamp {raw:?}")]
    BadStamp { path: PathBuf, raw: String },
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
}

/// The opened store (cheap to clone: sled handles are shared).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    /// The last failed write check, if the store cannot write.
    write_error: Arc<Mutex<Option<String>>>,
}

impl Store {
    /// Open `path` again right after another handle on it was dropped, retrying for up to 5 s:
    /// sled's background flusher releases the directory lock a moment after the last handle
    /// goes. For tests that reopen a store (a restart in one process); a sidecar opens once.
    #[doc(hidden)]
    pub fn reopen(path: &Path) -> Result<Store, StoreError> {
        for _ in 0..100 {
            if let Ok(s) = Store::open(path) {
                return Ok(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Store::open(path)
    }

    /// Open (or create) the store at `path`, refusing a newer format.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        let store = Store { db, path: path.to_path_buf(), write_error: Arc::default() };
        store.check_format()?;
        Ok(store)
    }

    fn check_format(&self) -> Result<(), StoreError> {
        let meta = self.db.open_tree(META_TREE)?;
        let found = match meta.get(FORMAT_KEY)? {
            Some(v) => parse_stamp(&v).ok_or_else(|| StoreError::BadStamp {
                path: self.path.clone(),
                raw: String::from_utf8_lossy(&v).into_owned(),
            })?,
            // A store from before the stamp: the approvals' own stamp (if any) is its version.
            None => match self.db.open_tree(Tree::ApprovalsMeta.name())?.get(b"format")? {
                Some(v) => parse_stamp(&v).ok_or_else(|| StoreError::BadStamp {
                    path: self.path.clone(),
                    raw: String::from_utf8_lossy(&v).into_owned(),
                })?,
                None => FORMAT_VERSION,
            },
        };
        if found > FORMAT_VERSION {
            return Err(StoreError::NewerFormat { path: self.path.clone(), found, supported: FORMAT_VERSION });
        }
        meta.insert(FORMAT_KEY, FORMAT_VERSION.to_string().as_bytes())?;
        Ok(())
    }

    /// One tree of the store.
    pub fn tree(&self, t: Tree) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(t.name())?)
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store can still write: makes whatever is pending durable (nothing when
    /// nothing is; it writes nothing of its own) and reports sled's sticky write error, which
    /// stays until a restart. Blocking (an fsync when something is pending).
    pub fn check_writes(&self) -> Result<(), String> {
        let r = self.db.flush().map(|_| ()).map_err(|e| e.to_string());
        if let Ok(mut w) = self.write_error.lock() {
            *w = r.as_ref().err().cloned();
        }
        r
    }

    /// The error of the last [`Store::check_writes`], if it failed.
    pub fn write_error(&self) -> Option<String> {
        self.write_error.lock().ok().and_then(|w| w.clone())
    }

    /// Write everything to disk (fsync); blocking.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// Stamp a format version (tests of the refusal; a migration would use it too).
    pub fn stamp_format(&self, version: u32) -> Result<(), StoreError> {
        self.db.open_tree(META_TREE)?.insert(FORMAT_KEY, version.to_string().as_bytes())?;
        self.db.flush()?;
        Ok(())
    }
}

fn parse_stamp(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_is_stamped_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state")).unwrap();
        s.tree(Tree::Approvals).unwrap().insert("a", "1").unwrap();
        drop(s);
        let s = Store::open(&dir.path().join("state")).unwrap();
        assert_eq!(s.tree(Tree::Approvals).unwrap().get("a").unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn a_newer_format_is_refused_naming_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        Store::open(&path).unwrap().stamp_format(FORMAT_VERSION + 1).unwrap();
        let err = Store::open(&path).err().unwrap();
        let text = err.to_string();
        assert!(matches!(err, StoreError::NewerFormat { found, .. } if found == FORMAT_VERSION + 1), "{text}");
        assert!(text.contains(&format!("format version {}", FORMAT_VERSION + 1)), "{text}");
        assert!(text.contains(&format!("this build's {FORMAT_VERSION}")), "{text}");
    }

    #[test]
    fn an_old_approvals_stamp_counts_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        {
            let db = sled::open(&path).unwrap();
            db.open_tree("approvals_meta").unwrap().insert("format", "7").unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(Store::open(&path), Err(StoreError::NewerFormat { found: 7, .. })));
    }

    #[test]
    fn tree_names_are_distinct() {
        use std::collections::HashSet;
        let all = [
            Tree::Approvals,
            Tree::ApprovalsMeta,
            Tree::Grants,
            Tree::BudgetSpend,
            Tree::BudgetDefs,
            Tree::KillSwitch,
            Tree::GatewayKill,
            Tree::Tokens,
            Tree::AgentKeys,
            Tree::PluginTokens,
            Tree::Idempotency,
            Tree::AuditLoc,
            Tree::AuditBy,
            Tree::AuditMeta,
            Tree::NotifyRoutes,
            Tree::NotifyDeliveries,
            Tree::NotifyPush,
            Tree::NotifyPrefs,
            Tree::NotifyLinks,
            Tree::ConfigVersions,
            Tree::CostBuckets,
            Tree::CostAnomalies,
            Tree::CronState,
            Tree::Reports,
            Tree::ReportFiles,
            Tree::ReportLinks,
            Tree::ReportSchedules,
        ];
        let names: HashSet<&str> = all.iter().map(|t| t.name()).collect();
        assert_eq!(names.len(), all.len());
        assert!(!names.contains(META_TREE));
    }
}

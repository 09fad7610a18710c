//! Approvals in sled. Approval keys are their UUID v7 ids, so key
//! order is creation order and "newest first" is a reverse range scan.

use super::model::{Approval, ApprovalPage, ApprovalQuery, Status};
use super::BrokerError;

/// Default and maximum page sizes.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// The `status` filter of a list query (shared with the fleet inbox).
pub fn status_filter(s: Option<&str>) -> Result<Option<Status>, BrokerError> {
    match s {
        Some(s) => Ok(Some(Status::parse(s).ok_or_else(|| {
            BrokerError::Invalid(format!("unknown status '{s}' (pending, allowed, denied, expired, cancelled)"))
        })?)),
        None => Ok(None),
    }
}

/// The approvals' tree.
pub struct ApprovalStore {
    tree: sled::Tree,
}

impl ApprovalStore {
    /// Open the approvals' tree (the store checked its format version).
    pub fn open(store: &storage::Store) -> Result<ApprovalStore, BrokerError> {
        Ok(ApprovalStore { tree: store.tree(storage::Tree::Approvals)? })
    }

    /// Write an approval (insert or replace).
    pub fn put(&self, a: &Approval) -> Result<(), BrokerError> {
        self.tree.insert(a.id.as_bytes(), serde_json::to_vec(a)?)?;
        Ok(())
    }

    /// Write and wait for sled to persist (decisions are durable before anyone is answered).
    pub async fn put_durable(&self, a: &Approval) -> Result<(), BrokerError> {
        self.put(a)?;
        self.flush().await
    }

    /// Wait for sled to persist what was written.
    pub async fn flush(&self) -> Result<(), BrokerError> {
        // A blocking flush on the blocking pool: sled's own flush_async was seen to stall
        // under many concurrent callers. Concurrent flushes share sled's one log fsync.
        let tree = self.tree.clone();
        match tokio::task::spawn_blocking(move || tree.flush()).await {
            Ok(r) => r.map(|_| ()).map_err(BrokerError::from),
            Err(e) => Err(BrokerError::Invalid(format!("flush task failed: {e}"))),
        }
    }

    /// One approval.
    pub fn get(&self, id: &str) -> Result<Option<Approval>, BrokerError> {
        match self.tree.get(id.as_bytes())? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Every approval still marked pending (after a restart: orphans).
    pub fn pending(&self) -> Result<Vec<Approval>, BrokerError> {
        let mut out = Vec::new();
        for kv in self.tree.iter() {
            let (_, v) = kv?;
            let a: Approval = serde_json::from_slice(&v)?;
            if a.status == Status::Pending {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// A filtered page, newest first.
    pub fn list(&self, q: &ApprovalQuery) -> Result<ApprovalPage, BrokerError> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let status = status_filter(q.status.as_deref())?;
        let iter = match q.cursor.as_deref() {
            Some(c) => self.tree.range(..c.as_bytes().to_vec()),
            None => self.tree.range::<Vec<u8>, _>(..),
        };
        let mut items = Vec::new();
        let mut next_cursor = None;
        for kv in iter.rev() {
            let (_, v) = kv?;
            let a: Approval = serde_json::from_slice(&v)?;
            let keep = status.is_none_or(|s| a.status == s)
                && q.agent.as_deref().is_none_or(|x| a.agent == x)
                && q.kind.as_deref().is_none_or(|x| a.kind.as_str() == x)
                && q.risk.as_deref().is_none_or(|x| a.risk.as_str() == x);
            if !keep {
                continue;
            }
            if items.len() == limit {
                next_cursor = items.last().map(|l: &Approval| l.id.clone());
                break;
            }
            items.push(a);
        }
        Ok(ApprovalPage { items, next_cursor })
    }
}

//! Approvals and idempotency records in sled. Approval keys are their UUID v7 ids, so key
//! order is creation order and "newest first" is a reverse range scan.

use serde::{Deserialize, Serialize};

use super::model::{Approval, ApprovalPage, ApprovalQuery, Status};
use super::BrokerError;

/// Format of the records below; bumped on any incompatible change.
const FORMAT_VERSION: &[u8] = b"1";

/// Default and maximum page sizes.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// How long an Idempotency-Key's answer is kept: far longer than any client retries, and the
/// tree stays bounded by a day of decisions.
pub const IDEMPOTENCY_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// A stored answer to a decision POST, replayed for a retry with the same Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdemEntry {
    /// sha256 of the request body, so a reused key with another body is refused.
    pub body_hash: String,
    pub status: u16,
    pub body: serde_json::Value,
    /// When it was stored (ms since the Unix epoch; set by the store). Entries written before
    /// this field existed read as 0 and are the first to be pruned.
    #[serde(default)]
    pub stored_at_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The approvals' trees.
pub struct ApprovalStore {
    tree: sled::Tree,
    idem: sled::Tree,
}

impl ApprovalStore {
    /// Open (and stamp the format of) the trees.
    pub fn open(db: &sled::Db) -> Result<ApprovalStore, BrokerError> {
        let meta = db.open_tree("approvals_meta")?;
        match meta.get(b"format")? {
            Some(v) if v.as_ref() != FORMAT_VERSION => {
                return Err(BrokerError::Invalid(format!(
                    "approval store has format {}, this build reads {}",
                    String::from_utf8_lossy(&v),
                    String::from_utf8_lossy(FORMAT_VERSION)
                )))
            }
            Some(_) => {}
            None => {
                meta.insert(b"format", FORMAT_VERSION)?;
            }
        }
        Ok(ApprovalStore { tree: db.open_tree("approvals")?, idem: db.open_tree("approval_idempotency")? })
    }

    /// Write an approval (insert or replace).
    pub fn put(&self, a: &Approval) -> Result<(), BrokerError> {
        self.tree.insert(a.id.as_bytes(), serde_json::to_vec(a)?)?;
        Ok(())
    }

    /// Write and wait for sled to persist (decisions are durable before anyone is answered).
    pub async fn put_durable(&self, a: &Approval) -> Result<(), BrokerError> {
        self.put(a)?;
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
        let status = match q.status.as_deref() {
            Some(s) => Some(Status::parse(s).ok_or_else(|| {
                BrokerError::Invalid(format!("unknown status '{s}' (pending, allowed, denied, expired, cancelled)"))
            })?),
            None => None,
        };
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

    /// The stored answer for an idempotency key.
    pub fn idem_get(&self, key: &str) -> Result<Option<IdemEntry>, BrokerError> {
        match self.idem.get(key.as_bytes())? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Remember the answer for an idempotency key, stamped with the current time.
    pub fn idem_put(&self, key: &str, e: &IdemEntry) -> Result<(), BrokerError> {
        self.idem_put_at(key, e, now_ms())
    }

    fn idem_put_at(&self, key: &str, e: &IdemEntry, at_ms: u64) -> Result<(), BrokerError> {
        let stamped = IdemEntry { stored_at_ms: at_ms, ..e.clone() };
        self.idem.insert(key.as_bytes(), serde_json::to_vec(&stamped)?)?;
        Ok(())
    }

    /// Forget the answers stored before `cutoff_ms` (and unreadable ones); returns how many.
    pub fn idem_prune(&self, cutoff_ms: u64) -> Result<usize, BrokerError> {
        let mut removed = 0;
        for item in self.idem.iter() {
            let (key, value) = item?;
            let stale = serde_json::from_slice::<IdemEntry>(&value).map_or(true, |e| e.stored_at_ms < cutoff_ms);
            if stale {
                self.idem.remove(key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u16) -> IdemEntry {
        IdemEntry { body_hash: format!("h{n}"), status: n, body: serde_json::json!({"n": n}), stored_at_ms: 0 }
    }

    #[test]
    fn answers_older_than_the_cutoff_are_pruned_and_newer_ones_replay() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let store = ApprovalStore::open(&db).unwrap();
        store.idem_put_at("old", &entry(1), 1_000).unwrap();
        store.idem_put_at("edge", &entry(2), 5_000).unwrap();
        store.idem_put("new", &entry(3)).unwrap();
        db.open_tree("approval_idempotency").unwrap().insert("garbage", "not json").unwrap();
        assert_eq!(store.idem_prune(5_000).unwrap(), 2, "the old entry and the unreadable one");
        assert_eq!(store.idem_get("old").unwrap(), None);
        assert_eq!(store.idem_get("edge").unwrap().map(|e| e.status), Some(2));
        let new = store.idem_get("new").unwrap().unwrap();
        assert_eq!((new.status, new.body_hash.as_str()), (3, "h3"));
        assert!(new.stored_at_ms + 60_000 > now_ms(), "stamped with the current time");
    }
}

//! Idempotency-Key support for state-changing POSTs (approval decisions, batches): the first
//! answer to a key is stored and replayed for any retry with the same key and body; a reused
//! key with another body is refused. Requests sharing a key are serialised, so two racing
//! retries cannot both act. Answers are kept [`RETENTION_MS`] and pruned at most every ten
//! minutes, so the tree stays bounded by a day of decisions.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

/// How long an answer is kept: far longer than any client retries.
pub const RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

/// Shortest time between two prunes.
const PRUNE_EVERY_MS: u64 = 10 * 60 * 1000;

/// A stored answer, replayed for a retry with the same Idempotency-Key.
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

/// Errors of the idempotency store (the box's, never the caller's).
#[derive(Debug, thiserror::Error)]
pub enum IdemError {
    #[error("idempotency store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("idempotency store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Stored answers and the per-key locks.
pub struct IdemStore {
    tree: sled::Tree,
    locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// When answers were last pruned (ms since the epoch; 0 = not yet).
    pruned_at_ms: AtomicU64,
}

impl IdemStore {
    /// Open the answers' tree.
    pub fn open(store: &storage::Store) -> Result<IdemStore, IdemError> {
        Ok(IdemStore {
            tree: store.tree(storage::Tree::Idempotency)?,
            locks: DashMap::new(),
            pruned_at_ms: AtomicU64::new(0),
        })
    }

    /// Serialise requests that share a key (hold the guard while answering).
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self.locks.entry(key.to_string()).or_default().value().clone();
        m.lock_owned().await
    }

    /// The stored answer for a key.
    pub fn get(&self, key: &str) -> Result<Option<IdemEntry>, IdemError> {
        match self.tree.get(key.as_bytes())? {
            Some(v) => Ok(Some(serde_json::from_slice(&v)?)),
            None => Ok(None),
        }
    }

    /// Remember the answer for a key, stamped now. At most every ten minutes this also
    /// forgets the answers older than [`RETENTION_MS`].
    pub fn put(&self, key: &str, e: &IdemEntry) -> Result<(), IdemError> {
        let now = now_ms();
        self.put_at(key, e, now)?;
        self.locks.remove_if(key, |_, m| Arc::strong_count(m) <= 2);
        let last = self.pruned_at_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PRUNE_EVERY_MS
            && self.pruned_at_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            let removed = self.prune(now.saturating_sub(RETENTION_MS))?;
            tracing::debug!(removed, "pruned idempotency answers older than a day");
        }
        Ok(())
    }

    fn put_at(&self, key: &str, e: &IdemEntry, at_ms: u64) -> Result<(), IdemError> {
        let stamped = IdemEntry { stored_at_ms: at_ms, ..e.clone() };
        self.tree.insert(key.as_bytes(), serde_json::to_vec(&stamped)?)?;
        Ok(())
    }

    /// Forget the answers stored before `cutoff_ms` (and unreadable ones); returns how many.
    fn prune(&self, cutoff_ms: u64) -> Result<usize, IdemError> {
        let mut removed = 0;
        for item in self.tree.iter() {
            let (key, value) = item?;
            let stale = serde_json::from_slice::<IdemEntry>(&value).map_or(true, |e| e.stored_at_ms < cutoff_ms);
            if stale {
                self.tree.remove(key)?;
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
        let db = storage::Store::open(dir.path()).unwrap();
        let store = IdemStore::open(&db).unwrap();
        // The first put of a run also prunes (nothing yet); the explicit prune below is the test.
        store.put("new", &entry(3)).unwrap();
        store.put_at("old", &entry(1), 1_000).unwrap();
        store.put_at("edge", &entry(2), 5_000).unwrap();
        db.tree(storage::Tree::Idempotency).unwrap().insert("garbage", "not json").unwrap();
        assert_eq!(store.prune(5_000).unwrap(), 2, "the old entry and the unreadable one");
        assert_eq!(store.get("old").unwrap(), None);
        assert_eq!(store.get("edge").unwrap().map(|e| e.status), Some(2));
        let new = store.get("new").unwrap().unwrap();
        assert_eq!((new.status, new.body_hash.as_str()), (3, "h3"));
        assert!(new.stored_at_ms + 60_000 > now_ms(), "stamped with the current time");
    }
}

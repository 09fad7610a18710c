//! Durable spend: one sled key per budget and window. The call path only records the new
//! value in a small pending map; a background thread writes the latest values to sled and
//! flushes (a group commit), so recording spend never waits on the store or on fsync.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Spend per budget and window, plus API-defined budgets.
#[derive(Clone)]
pub struct Ledger {
    spend: sled::Tree,
    pub(crate) defs: sled::Tree,
    /// Latest values not yet written to sled (reads consult it first).
    pending: Arc<Mutex<HashMap<Vec<u8>, u64>>>,
    dirty: SyncSender<()>,
    /// Set by [`Ledger::close`]: the flusher ends after its next round.
    stop: Arc<AtomicBool>,
    /// The flusher; joined by [`Ledger::close`] so it lets go of the store (a restart on the
    /// same data dir can then open it at once).
    flusher: Arc<Mutex<Option<JoinHandle<()>>>>,
}

fn key(id: &str, window: &str, suffix: &str) -> Vec<u8> {
    format!("{id}\u{1f}{window}{suffix}").into_bytes()
}

impl Ledger {
    /// Open the trees and start the flusher.
    pub fn open(store: &storage::Store) -> Result<Ledger, storage::StoreError> {
        let (tx, rx) = sync_channel::<()>(1);
        let spend = store.tree(storage::Tree::BudgetSpend)?;
        let pending: Arc<Mutex<HashMap<Vec<u8>, u64>>> = Arc::default();
        let (flush_db, flush_tree, flush_pending) = (store.clone(), spend.clone(), pending.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let flush_stop = stop.clone();
        let flusher = std::thread::Builder::new()
            .name("budget-ledger-flush".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    let batch: Vec<(Vec<u8>, u64)> = {
                        let p = flush_pending.lock().unwrap_or_else(|e| e.into_inner());
                        p.iter().map(|(k, v)| (k.clone(), *v)).collect()
                    };
                    for (k, v) in &batch {
                        if let Err(e) = flush_tree.insert(k.as_slice(), &v.to_be_bytes()) {
                            tracing::error!(error = %e, "budget ledger write failed");
                        }
                    }
                    if let Err(e) = flush_db.flush() {
                        tracing::error!(error = %e, "budget ledger flush failed");
                        continue;
                    }
                    // Forget only what is now on disk and was not updated meanwhile.
                    let mut p = flush_pending.lock().unwrap_or_else(|e| e.into_inner());
                    for (k, v) in batch {
                        if p.get(&k) == Some(&v) {
                            p.remove(&k);
                        }
                    }
                    drop(p);
                    if flush_stop.load(Ordering::Acquire) {
                        break;
                    }
                }
            })
            .map_err(|e| storage::StoreError::Sled(sled::Error::Io(e)))?;
        Ok(Ledger {
            spend,
            defs: store.tree(storage::Tree::BudgetDefs)?,
            pending,
            dirty: tx,
            stop,
            flusher: Arc::new(Mutex::new(Some(flusher))),
        })
    }

    fn nudge(&self) {
        // A full channel means a flush is already pending: it will include this write.
        if let Err(TrySendError::Disconnected(_)) = self.dirty.try_send(()) {
            tracing::error!("budget ledger flusher is gone");
        }
    }

    /// Spend recorded for a window, in nano-USD.
    pub fn spent(&self, id: &str, window: &str) -> u64 {
        self.read(&key(id, window, ""))
    }

    /// Whether the warning was already sent for a window.
    pub fn warned(&self, id: &str, window: &str) -> bool {
        self.read(&key(id, window, "\u{1f}warned")) > 0
    }

    fn read(&self, k: &[u8]) -> u64 {
        if let Some(v) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).get(k) {
            return *v;
        }
        match self.spend.get(k) {
            Ok(Some(v)) if v.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v);
                u64::from_be_bytes(b)
            }
            _ => 0,
        }
    }

    /// Record the window's spend.
    pub fn set_spent(&self, id: &str, window: &str, nanos: u64) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(key(id, window, ""), nanos);
        self.nudge();
    }

    /// Remember the warning was sent.
    pub fn set_warned(&self, id: &str, window: &str) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(key(id, window, "\u{1f}warned"), 1);
        self.nudge();
    }

    /// Write everything pending, flush, and stop the flusher thread (shutdown). Later writes
    /// still reach the pending map and are written by [`Ledger::sync`].
    pub fn close(&self) -> Result<(), sled::Error> {
        self.sync()?;
        self.stop.store(true, Ordering::Release);
        let handle = self.flusher.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            // A full channel already wakes the flusher; either way it sees `stop` after a round.
            let _ = self.dirty.try_send(());
            if h.join().is_err() {
                tracing::error!("budget ledger flusher panicked");
            }
        }
        Ok(())
    }

    /// Write everything pending and flush (shutdown, tests).
    pub fn sync(&self) -> Result<(), sled::Error> {
        let batch: Vec<(Vec<u8>, u64)> =
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect();
        for (k, v) in batch {
            self.spend.insert(k, &v.to_be_bytes())?;
        }
        self.spend.flush()?;
        Ok(())
    }
}

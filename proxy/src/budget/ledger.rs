//! Durable spend: one sled key per budget and window, flushed by a background thread that
//! coalesces writes (a group commit), so recording spend never waits on fsync.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};

/// Spend per budget and window, plus API-defined budgets.
#[derive(Clone)]
pub struct Ledger {
    spend: sled::Tree,
    pub(crate) defs: sled::Tree,
    dirty: SyncSender<()>,
}

fn key(id: &str, window: &str, suffix: &str) -> Vec<u8> {
    format!("{id}\u{1f}{window}{suffix}").into_bytes()
}

impl Ledger {
    /// Open the trees and start the flusher.
    pub fn open(db: &sled::Db) -> Result<Ledger, sled::Error> {
        let (tx, rx) = sync_channel::<()>(1);
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("budget-ledger-flush".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    if let Err(e) = flush_db.flush() {
                        tracing::error!(error = %e, "budget ledger flush failed");
                    }
                }
            })
            .map_err(sled::Error::Io)?;
        Ok(Ledger { spend: db.open_tree("budget_spend")?, defs: db.open_tree("budget_defs")?, dirty: tx })
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
        if let Err(e) = self.spend.insert(key(id, window, ""), &nanos.to_be_bytes()) {
            tracing::error!(error = %e, budget = id, "budget ledger write failed");
        }
        self.nudge();
    }

    /// Remember the warning was sent.
    pub fn set_warned(&self, id: &str, window: &str) {
        if let Err(e) = self.spend.insert(key(id, window, "\u{1f}warned"), &1u64.to_be_bytes()) {
            tracing::error!(error = %e, budget = id, "budget ledger write failed");
        }
        self.nudge();
    }
}

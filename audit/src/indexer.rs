//! The index thread: keeps the sled search index off the writer's path. The writer hands it
//! every durable batch; it folds the records into sparse `audit_loc` anchors and per-block
//! `audit_by` keys (see `index`) and writes them in one sled batch per wake-up, at most one
//! every [`COALESCE`]: each sled batch wakes sled's I/O threads, which at saturation cost
//! more than the indexing itself (docs/performance.md, "Saturation").
//!
//! Invariant for readers: an anchor is in `Shared::recent_locs` from before its record becomes
//! durable until after it is in sled, so a durable record is always locatable; and
//! `Shared::indexed_seq` only advances once the `audit_by` keys up to it are in sled, so a
//! search treats anything above it as unindexed and scans it in full.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::index::{Builder, Index, Loc};
use crate::record::AuditRecord;
use crate::writer::Shared;

/// The shortest time between two sled batches. Searches are unaffected: records not yet in
/// sled are found through `recent_locs` and the scan above `indexed_seq`.
pub(crate) const COALESCE: Duration = Duration::from_millis(100);

/// Work for the index thread, in log order.
pub(crate) enum IndexMsg {
    /// Freshly written (durable) records and where they are.
    Recs(Vec<(Arc<AuditRecord>, Loc)>),
    /// Retention removed every record up to `through`.
    Prune { through: u64 },
}

/// Start the index thread, continuing the open block `b` left by recovery. It exits once
/// every sender is dropped and its queue is applied.
pub(crate) fn spawn(
    index: Index,
    shared: Arc<Shared>,
    b: Builder,
) -> std::io::Result<(Sender<IndexMsg>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let h = std::thread::Builder::new().name("audit-index".into()).spawn(move || run(&index, &shared, &rx, b))?;
    Ok((tx, h))
}

fn run(index: &Index, shared: &Shared, rx: &Receiver<IndexMsg>, mut b: Builder) {
    let mut last: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        // Let more batches queue up (without a wake-up per batch) until COALESCE after the
        // last sled batch; a closed queue (shutdown) is drained at once.
        if let Some(wait) = last.map(|t| (t + COALESCE).saturating_duration_since(Instant::now())) {
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let mut next = Some(first);
        // Fold everything already queued into one sled batch.
        while let Some(m) = next.take() {
            match m {
                IndexMsg::Recs(v) => {
                    for (r, l) in &v {
                        b.add(r, l);
                    }
                }
                IndexMsg::Prune { through } => {
                    apply(index, shared, &mut b);
                    if let Err(e) = index.remove(through) {
                        tracing::warn!(error = %e, "audit index prune failed");
                    }
                }
            }
            next = rx.try_recv().ok();
        }
        apply(index, shared, &mut b);
        last = Some(Instant::now());
    }
}

fn apply(index: &Index, shared: &Shared, b: &mut Builder) {
    if b.is_empty() {
        return;
    }
    let fed = b.fed_through();
    match index.apply(b) {
        Ok(done) => {
            if let (Some(seq), Ok(mut m)) = (fed, shared.recent_locs.lock()) {
                *m = m.split_off(&(seq + 1));
            }
            if let Some(seq) = done {
                shared.indexed_seq.store(seq, Ordering::Release);
            }
        }
        // The index is derived data: readers fall back to `recent_locs` and full scans above
        // `indexed_seq`, and the next open rebuilds whatever is missing from the segments.
        Err(e) => tracing::warn!(error = %e, "audit index update failed"),
    }
}

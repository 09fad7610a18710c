//! The dedicated writer thread: assigns seqs, timestamps and chain hashes, writes batches
//! with one fsync each (group commit), indexes, wakes durable waiters, signs checkpoints,
//! rotates segments and applies retention. Callers never touch the files, so no tokio worker
//! ever blocks on fsync.
//!
//! A seq is given when a record is written, never before: a record that is refused or whose
//! write fails leaves no hole in the chain. When a write fails (a full disk, an I/O error) the
//! writer enters an outage (`outage.rs`): it cuts what it half wrote, fails the durable waiters
//! of the batch, keeps the other records, and retries with backoff until the disk takes them.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::SigningKey;
use prometheus::{Histogram, IntCounterVec};
use tokio::sync::{broadcast, oneshot};

use crate::checkpoint::{self, Checkpoint};
use crate::disk::Disk;
use crate::health::{FailureCause, HealthCell, Unavailable};
use crate::index::{self, Loc};
use crate::indexer::IndexMsg;
use crate::record::AuditRecord;
use crate::spans::Spans;
use crate::{merkle, segment, AuditSettings};

/// Answers an `append_durable` caller: the record's seq once it is fsynced.
pub(crate) type Waiter = oneshot::Sender<Result<u64, Unavailable>>;

/// Answers a flush request.
pub(crate) type FlushDone = SyncSender<Result<(), Unavailable>>;

/// A record waiting for the writer (already masked; its seq is given when it is written).
pub(crate) struct Pending {
    pub rec: AuditRecord,
    pub waiter: Option<Waiter>,
    pub enqueued: Instant,
}

/// Requests to the writer thread.
pub(crate) enum Msg {
    Rec(Box<Pending>),
    /// Write everything queued so far (and sign a checkpoint if asked), then answer.
    Flush {
        checkpoint: bool,
        done: FlushDone,
    },
    /// Sign what is queued with the current key, then hand signing over to `key` with a
    /// rotation checkpoint (see `keys`), then answer.
    RotateKey {
        key: Box<SigningKey>,
        done: FlushDone,
    },
}

/// The writer's queue; queue order is seq order. `None` once the log handle is dropped (the
/// queue then drains and closes).
pub(crate) type Queue = Arc<Mutex<Option<Sender<Msg>>>>;

/// A failed write: why, in the OS's words.
#[derive(Debug, Clone)]
pub(crate) struct WriteError {
    pub cause: FailureCause,
    pub error: String,
}

impl WriteError {
    /// Map an I/O error of `stage` (write, fsync, checkpoint, ...).
    pub fn io(stage: &'static str) -> impl Fn(std::io::Error) -> WriteError {
        move |e| WriteError { cause: FailureCause::of(&e), error: format!("{stage}: {e}") }
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.error, self.cause.as_str())
    }
}

/// State shared between the writer and readers.
pub(crate) struct Shared {
    /// Highest seq that is fsynced and indexed; readers never look past it.
    pub durable_seq: AtomicU64,
    pub broadcast: broadcast::Sender<Arc<AuditRecord>>,
    pub records_total: IntCounterVec,
    pub append_seconds: Histogram,
    /// Whether the writer can write, and the outage counts (see `health`).
    pub health: HealthCell,
    /// Open segment files for readers, by first seq.
    pub files: Mutex<std::collections::HashMap<u64, Arc<File>>>,
    /// Anchors (see `index`) of durable records the index thread has not yet put in sled.
    pub recent_locs: Mutex<BTreeMap<u64, Loc>>,
    /// Highest seq whose `audit_by` keys are in sled; searches scan everything above it.
    pub indexed_seq: AtomicU64,
}

/// Checkpoint bookkeeping carried across restarts (recovered from `checkpoints.jsonl`).
#[derive(Default, Clone)]
pub(crate) struct CpState {
    pub count: u64,
    pub prev_line_hash: String,
    pub last_seq: u64,
    pub pruned_through: Option<u64>,
    pub pruned_head_hash: Option<String>,
}

/// Everything the writer owns.
pub(crate) struct Writer {
    pub dir: PathBuf,
    pub settings: AuditSettings,
    pub key: SigningKey,
    pub key_id: String,
    pub file: File,
    pub seg_first: u64,
    pub seg_len: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub last_ts_ms: i64,
    pub cp_file: File,
    /// Length of `checkpoints.jsonl` up to its last complete, fsynced line.
    pub cp_len: u64,
    pub cp: CpState,
    /// Raw hashes of records after `cp.last_seq` (the next checkpoint's Merkle leaves).
    pub pending_hashes: Vec<[u8; 32]>,
    pub last_cp: Instant,
    /// Queue of the index thread; `None` once it has been told to stop.
    pub index_tx: Option<Sender<IndexMsg>>,
    pub index_thread: Option<JoinHandle<()>>,
    pub shared: Arc<Shared>,
    /// The handle's queue, so the writer can append its own records (retention) in seq order.
    pub queue: Queue,
    /// Writer-made records that could not be queued because the handle was already dropped;
    /// written once the queue has drained, after the last caller record.
    pub deferred: Vec<AuditRecord>,
    /// Calls started and not yet ended (see `spans`), saved at every checkpoint.
    pub spans: Spans,
    /// The filesystem (or a test's faulty one).
    pub disk: Disk,
    /// A key rotation asked for and not yet done.
    pub rotate_to: Option<Box<SigningKey>>,
}

/// RFC 3339 UTC with milliseconds.
pub(crate) fn fmt_ts(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Writer {
    /// Thread body: runs until every sender is gone, then flushes and signs a final checkpoint,
    /// and waits for the index thread to apply what it was given.
    pub fn run(mut self, rx: Receiver<Msg>) {
        self.serve(&rx);
        self.index_tx.take();
        if let Some(t) = self.index_thread.take() {
            let _ = t.join();
        }
    }

    fn serve(&mut self, rx: &Receiver<Msg>) {
        let mut batch: Vec<Pending> = Vec::new();
        let mut flushes: Vec<(bool, FlushDone)> = Vec::new();
        let mut closed = false;
        loop {
            if !closed {
                closed = self.gather(rx, &mut batch, &mut flushes);
            }
            match self.step(&mut batch, &mut flushes, closed) {
                Ok(()) if closed => return,
                Ok(()) => {}
                // Back from an outage with the same chain; a closed queue still needs its
                // final checkpoint (the next turn), unless the writer gave up.
                Err(e) => {
                    if !self.outage(e, &mut batch, &mut flushes, rx, &mut closed) {
                        return;
                    }
                }
            }
        }
    }

    /// Wait for work and gather one group; returns whether the queue closed.
    ///
    /// Only the first record of a group wakes this thread (it waits in `recv` while the queue
    /// is empty). While a group gathers, the thread sleeps through the rest of the group
    /// window in `park_timeout` and drains the queue when it wakes, so the records that
    /// follow cost their callers no wake-up (no futex, no context switch per record). A caller
    /// that needs its record durable now (`append_durable`, a flush) or whose record fills a
    /// group unparks it (`AuditLog::enqueue_record`), so those are written as soon as the
    /// queue is empty, exactly as before.
    fn gather(&mut self, rx: &Receiver<Msg>, batch: &mut Vec<Pending>, flushes: &mut Vec<(bool, FlushDone)>) -> bool {
        let group = Duration::from_millis(self.settings.group_commit_ms);
        let max = self.settings.group_commit_records.max(1);
        let cp_every = Duration::from_secs(self.settings.checkpoint_every_secs.max(1));
        let idle =
            if self.pending_hashes.is_empty() { cp_every } else { cp_every.saturating_sub(self.last_cp.elapsed()) };
        match rx.recv_timeout(idle.max(Duration::from_millis(1))) {
            Ok(m) => {
                push(m, batch, flushes, &mut self.rotate_to);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return true,
        }
        // Gather the group: stop at `max` records, at the group deadline, or as soon as the
        // queue is empty when someone is waiting for durability (no point making them wait).
        let start = Instant::now();
        let mut urgent = !flushes.is_empty() || batch.iter().any(|p| p.waiter.is_some());
        loop {
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(m) => urgent |= push(m, batch, flushes, &mut self.rotate_to),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return true,
                }
            }
            if urgent || group.is_zero() || batch.is_empty() || batch.len() >= max {
                return false;
            }
            let left = group.saturating_sub(start.elapsed());
            if left.is_zero() {
                return false;
            }
            // A stale unpark only ends this sleep early; the loop then drains and sleeps again.
            std::thread::park_timeout(left);
        }
    }

    /// Write the batch, sign a checkpoint when one is due, answer the flushes.
    pub(crate) fn step(
        &mut self,
        batch: &mut Vec<Pending>,
        flushes: &mut Vec<(bool, FlushDone)>,
        closing: bool,
    ) -> Result<(), WriteError> {
        if !batch.is_empty() {
            self.write_batch(batch)?;
        }
        let rotate = self.rotate_to.take();
        let want_cp = closing
            || rotate.is_some()
            || flushes.iter().any(|(c, _)| *c)
            || self.pending_hashes.len() as u64 >= self.settings.checkpoint_every_records.max(1)
            || (!self.pending_hashes.is_empty()
                && self.last_cp.elapsed().as_secs() >= self.settings.checkpoint_every_secs);
        if want_cp {
            self.checkpoint(None)?;
            if self.settings.retention_days.is_some() {
                if let Err(e) = self.prune() {
                    tracing::warn!(error = %e, "audit retention failed");
                }
            }
        }
        if let Some(key) = rotate {
            self.rotate_key(*key)?;
        }
        if closing && !self.deferred.is_empty() {
            // The queue is closed and drained: these are the last records.
            let mut late: Vec<Pending> = std::mem::take(&mut self.deferred)
                .into_iter()
                .map(|rec| Pending { rec, waiter: None, enqueued: Instant::now() })
                .collect();
            self.shared.health.queued.fetch_add(late.len(), Ordering::AcqRel);
            if let Err(e) = self.write_batch(&mut late) {
                self.deferred = late.into_iter().map(|p| p.rec).collect();
                self.shared.health.queued.fetch_sub(self.deferred.len(), Ordering::AcqRel);
                return Err(e);
            }
            self.checkpoint(None)?;
        }
        for (_, d) in flushes.drain(..) {
            let _ = d.send(Ok(()));
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<Pending>) -> Result<(), WriteError> {
        // Rotate lazily, when there is something to put in the new segment: an idle log (or
        // one whose last write was the writer's own retention record) leaves no empty file.
        if self.seg_len >= self.settings.segment_max_bytes && !batch.is_empty() {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(batch.len() * 1100);
        let mut head_hash = self.head_hash.clone();
        let mut head_seq = self.head_seq;
        let mut ts_ms = self.last_ts_ms;
        let mut locs = Vec::with_capacity(batch.len());
        let mut hashes = Vec::with_capacity(batch.len());
        let mut ts = (i64::MIN, String::new());
        for p in batch.iter_mut() {
            p.rec.seq = head_seq + 1;
            ts_ms = ts_ms.max(Utc::now().timestamp_millis());
            if ts.0 != ts_ms {
                ts = (ts_ms, fmt_ts(ts_ms));
            }
            p.rec.ts.clone_from(&ts.1);
            p.rec.prev_hash = std::mem::take(&mut head_hash);
            let at = buf.len();
            let sealed = p
                .rec
                .seal_into(&mut buf, hashes.last())
                .map_err(|e| WriteError { cause: FailureCause::Other, error: e.to_string() })?;
            hashes.push(sealed);
            head_hash = p.rec.hash.clone();
            head_seq = p.rec.seq;
            let len = u32::try_from(buf.len() - at - 1)
                .map_err(|e| WriteError { cause: FailureCause::Other, error: e.to_string() })?;
            locs.push(Loc { segment: self.seg_first, offset: self.seg_len + at as u64, len, ts_ms });
        }
        self.check_room(buf.len() as u64)?;
        let wrote = self.disk.write_all(&mut self.file, &buf).map_err(WriteError::io("write"));
        if let Err(e) = wrote.and_then(|()| self.disk.sync(&self.file).map_err(WriteError::io("fsync"))) {
            // Whatever reached the file is cut now (and again before every retry).
            let _ = self.repair();
            return Err(e);
        }
        self.seg_len += buf.len() as u64;
        self.head_hash = head_hash;
        self.head_seq = head_seq;
        self.last_ts_ms = ts_ms;
        self.pending_hashes.extend_from_slice(&hashes);
        for p in batch.iter() {
            self.spans.observe(&p.rec);
        }
        self.shared.health.queued.fetch_sub(batch.len(), Ordering::AcqRel);

        if let Ok(mut recent) = self.shared.recent_locs.lock() {
            for (p, l) in batch.iter().zip(&locs) {
                if index::is_anchor(p.rec.seq, l) {
                    recent.insert(p.rec.seq, *l);
                }
            }
        }
        self.shared.durable_seq.store(head_seq, Ordering::Release);
        let subscribed = self.shared.broadcast.receiver_count() > 0;
        let mut indexed = Vec::with_capacity(batch.len());
        for (p, l) in batch.drain(..).zip(locs) {
            if let Some(w) = p.waiter {
                let _ = w.send(Ok(p.rec.seq));
            }
            self.shared.append_seconds.observe(p.enqueued.elapsed().as_secs_f64());
            self.shared.records_total.with_label_values(&[p.rec.kind.map_or("none", |k| k.as_str())]).inc();
            let rec = Arc::new(p.rec);
            if subscribed {
                let _ = self.shared.broadcast.send(rec.clone());
            }
            indexed.push((rec, l));
        }
        if let Some(tx) = &self.index_tx {
            // A dead index thread only costs search speed; the next open rebuilds the index.
            let _ = tx.send(IndexMsg::Recs(indexed));
        }
        Ok(())
    }

    /// Sign a checkpoint over the records since the last one (or a pruning-only one).
    pub fn checkpoint(&mut self, prune: Option<(u64, String, Vec<String>)>) -> Result<(), WriteError> {
        if self.pending_hashes.is_empty() && prune.is_none() {
            return Ok(());
        }
        self.sign_checkpoint(prune, None)
    }

    /// Hand signing over to `new`: stage it, sign a checkpoint naming it with the current key
    /// (made even when no record is new), put it in force, and record the rotation (the
    /// record is the first one the new key signs).
    fn rotate_key(&mut self, new: SigningKey) -> Result<(), WriteError> {
        let fail =
            |e: crate::AuditError| WriteError { cause: FailureCause::Other, error: format!("key rotation: {e}") };
        crate::keys::stage(&self.dir, &new).map_err(fail)?;
        let next = crate::keys::public_hex(&new.verifying_key());
        self.sign_checkpoint(None, Some(next))?;
        crate::keys::promote(&self.dir, &new).map_err(fail)?;
        let new_id = crate::keys::key_id(&new.verifying_key());
        let old_id = std::mem::replace(&mut self.key_id, new_id.clone());
        self.key = new;
        tracing::info!(old_key = %old_id, new_key = %new_id, checkpoint = self.cp.count, "audit signing key rotated");
        self.append_own(rotation_record(&old_id, &new_id, self.cp.count));
        Ok(())
    }

    fn sign_checkpoint(
        &mut self,
        prune: Option<(u64, String, Vec<String>)>,
        next_key: Option<String>,
    ) -> Result<(), WriteError> {
        let (pruned_through, pruned_head_hash, pruned_segments) = match prune {
            Some((t, h, s)) => (Some(t), Some(h), s),
            None => (self.cp.pruned_through, self.cp.pruned_head_hash.clone(), Vec::new()),
        };
        let mut cp = Checkpoint {
            checkpoint: self.cp.count + 1,
            first_seq: self.cp.last_seq + 1,
            head_hash: self.head_hash.clone(),
            key_id: self.key_id.clone(),
            last_seq: self.head_seq,
            merkle_root: hex::encode(merkle::root(&self.pending_hashes)),
            next_key,
            prev_checkpoint: self.cp.prev_line_hash.clone(),
            pruned_head_hash,
            pruned_segments,
            pruned_through,
            ts: fmt_ts(Utc::now().timestamp_millis().max(self.last_ts_ms)),
            sig: String::new(),
        };
        let line = cp.sign(&self.key).map_err(|e| WriteError { cause: FailureCause::Other, error: e.to_string() })?;
        let wrote = self.disk.write_all(&mut self.cp_file, &line).map_err(WriteError::io("checkpoint write"));
        if let Err(e) = wrote.and_then(|()| self.disk.sync(&self.cp_file).map_err(WriteError::io("checkpoint fsync"))) {
            let _ = self.repair();
            return Err(e);
        }
        self.cp_len += line.len() as u64;
        self.cp = CpState {
            count: cp.checkpoint,
            prev_line_hash: checkpoint::line_hash(&line[..line.len() - 1]),
            last_seq: cp.last_seq,
            pruned_through: cp.pruned_through,
            pruned_head_hash: cp.pruned_head_hash,
        };
        self.pending_hashes.clear();
        self.last_cp = Instant::now();
        // Off every caller's path: a stale or missing file only makes the next open replay more.
        if let Err(e) = self.spans.save(&self.dir, self.head_seq) {
            tracing::warn!(error = %e, "saving the open spans failed");
        }
        Ok(())
    }

    /// Close the current segment (after a checkpoint, so checkpoint ranges never straddle
    /// segments and retention can drop whole, fully signed segments).
    fn rotate(&mut self) -> Result<(), WriteError> {
        self.checkpoint(None)?;
        let first = self.head_seq + 1;
        self.file = segment::create(&self.dir, first).map_err(WriteError::io("new segment"))?;
        self.seg_first = first;
        self.seg_len = 0;
        Ok(())
    }

    /// Remove closed segments whose newest record is older than the retention period,
    /// recording the removal in a signed checkpoint first.
    fn prune(&mut self) -> Result<(), crate::AuditError> {
        let Some(days) = self.settings.retention_days else { return Ok(()) };
        let cutoff = Utc::now().timestamp_millis() - i64::from(days) * 86_400_000;
        let segs = segment::list(&self.dir)?;
        let mut doomed = Vec::new();
        let mut last: Option<(u64, String)> = None;
        for (first, path) in segs.iter().filter(|(f, _)| *f < self.seg_first) {
            let buf = std::fs::read(path)?;
            let recs: Vec<AuditRecord> =
                segment::lines(&buf).0.iter().filter_map(|(_, l)| serde_json::from_slice(l).ok()).collect();
            let Some(newest) = recs.last() else { break };
            if crate::index::ts_ms(&newest.ts) >= cutoff || newest.seq > self.cp.last_seq {
                break;
            }
            last = Some((newest.seq, newest.hash.clone()));
            doomed.push((*first, path.clone()));
        }
        let Some((through, hash)) = last else { return Ok(()) };
        let names: Vec<String> =
            doomed.iter().filter_map(|(_, p)| p.file_name().and_then(|n| n.to_str()).map(str::to_string)).collect();
        self.checkpoint(Some((through, hash, names.clone())))
            .map_err(|e| crate::AuditError::Io(std::io::Error::other(e.to_string())))?;
        self.append_own(retention_record(through, names, days, self.cp.count));
        if let Ok(mut recent) = self.shared.recent_locs.lock() {
            *recent = recent.split_off(&(through + 1));
        }
        for (first, path) in doomed {
            if let Ok(mut files) = self.shared.files.lock() {
                files.remove(&first);
            }
            std::fs::remove_file(&path)?;
        }
        if let Some(tx) = &self.index_tx {
            let _ = tx.send(IndexMsg::Prune { through });
        }
        segment::sync_dir(&self.dir)?;
        Ok(())
    }
}

impl Writer {
    /// Append a record the writer made itself. It goes through the handle's queue so it gets
    /// the next seq after every caller record already queued; if the handle is gone it waits
    /// in `deferred` for the queue to drain.
    pub(crate) fn append_own(&mut self, rec: AuditRecord) {
        let mut guard = match self.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match guard.as_mut() {
            Some(tx) => {
                // The receiver is this thread, alive while we run, so the send cannot fail.
                if tx.send(Msg::Rec(Box::new(Pending { rec, waiter: None, enqueued: Instant::now() }))).is_ok() {
                    self.shared.health.queued.fetch_add(1, Ordering::AcqRel);
                }
            }
            None => self.deferred.push(rec),
        }
    }
}

/// The record that makes a retention removal visible in search and the live stream. The
/// signed checkpoint just before it is the authoritative statement; this is its echo.
fn retention_record(through: u64, segments: Vec<String>, days: u32, checkpoint: u64) -> AuditRecord {
    let reason = format!("retention_days = {days}");
    let mut details = serde_json::json!({
        "checkpoint": checkpoint,
        "pruned_through": through,
        "reason": reason,
        "segments": segments,
    });
    crate::mask::canonicalize(&mut details);
    AuditRecord {
        kind: Some(crate::event::RecordKind::Retention),
        actor: Some("system".into()),
        outcome: Some(crate::event::Outcome::Pruned.as_str().into()),
        reason: Some(reason),
        details,
        ..AuditRecord::default()
    }
}

/// The record of a key rotation: the signed checkpoint just before it names the new key; this
/// makes the rotation visible in search, the live stream and notifications.
fn rotation_record(old: &str, new: &str, checkpoint: u64) -> AuditRecord {
    let mut details = serde_json::json!({
        "checkpoint": checkpoint,
        "new_key_id": new,
        "old_key_id": old,
    });
    crate::mask::canonicalize(&mut details);
    AuditRecord {
        kind: Some(crate::event::RecordKind::Auth),
        actor: Some("system".into()),
        outcome: Some("audit_key_rotated".into()),
        reason: Some(format!("audit signing key {old} retired at checkpoint {checkpoint}; {new} signs from here")),
        details,
        ..AuditRecord::default()
    }
}

/// Add `m` to the group; returns whether someone waits for it to be durable.
fn push(
    m: Msg,
    batch: &mut Vec<Pending>,
    flushes: &mut Vec<(bool, FlushDone)>,
    rotate: &mut Option<Box<SigningKey>>,
) -> bool {
    match m {
        Msg::Rec(p) => {
            let urgent = p.waiter.is_some();
            batch.push(*p);
            urgent
        }
        Msg::Flush { checkpoint, done } => {
            flushes.push((checkpoint, done));
            true
        }
        Msg::RotateKey { key, done } => {
            *rotate = Some(key);
            flushes.push((true, done));
            true
        }
    }
}

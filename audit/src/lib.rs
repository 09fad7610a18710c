//! ClawButler's audit crate: an append-only, hash-chained, signed log of every decision.
//!
//! Callers hand an [`AuditEvent`] to [`AuditLog::append`] (or [`AuditLog::append_durable`] for
//! deny/hold/approval records, which must be on disk before the caller is answered). The event
//! is masked ([`mask`]) on the caller's thread and queued to a dedicated writer thread that
//! gives it the next gapless seq, chains it (`hash = sha256(prev_hash || canonical JSON)`), writes batches
//! to JSON-lines segment files with one fsync per batch, hands them to an index thread that
//! keeps a sparse sled search index, and signs an
//! Ed25519 checkpoint with an RFC 6962 Merkle root every N records / T seconds. Nothing in the
//! API updates or deletes a record; retention removes whole old segments only after a signed
//! checkpoint records the removal, and then says so in a `retention` record. [`verify_dir`] re-checks everything offline; the format is
//! specified in `docs/audit.md`.
//!
//! When the disk refuses writes the log fails closed and recovers by itself (`outage`):
//! [`AuditLog::admit`] is the one question every face asks before it lets a call through, and
//! [`AuditLog::health`] / [`AuditLog::health_events`] tell readiness checks and the UI why.

pub mod checkpoint;
pub mod disk;
mod error;
pub mod event;
mod export;
pub mod health;
mod index;
mod indexer;
mod keychain;
pub mod keys;
pub mod mask;
pub mod merkle;
mod outage;
mod query;
pub mod record;
mod recover;
mod salt;
mod segment;
mod settings;
pub mod spans;
mod verify;
mod writer;

pub use checkpoint::Checkpoint;
pub use disk::FaultyDisk;
pub use ed25519_dalek::VerifyingKey;
pub use error::AuditError;
pub use event::{AuditEvent, Outcome, RecordKind, Usage};
pub use export::{export, follow, tail, ExportFormat};
pub use health::{
    Admission, AuditHealth, DiskStatus, Face, FailureCause, OnFailure, Unavailable, WriterState, RETRY_AFTER_S,
};
pub use query::{AuditPage, AuditQuery, DEFAULT_LIMIT, MAX_LIMIT};
pub use record::{AuditRecord, GENESIS_HASH};
pub use segment::{segment_name, CHECKPOINT_FILE};
pub use settings::AuditSettings;
pub use verify::{verify_dir, verify_export, CopyVerifier, VerifyReport};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};
use tokio::sync::{broadcast, oneshot};

use crate::disk::{Disk, Monitor};
use crate::health::{HealthCell, HealthMetrics};
use crate::index::Index;
use crate::query::Reader;
use crate::writer::{Msg, Pending, Queue, Shared, Waiter, Writer};

/// The audit log handle (cheap to share behind an `Arc`). Dropping it flushes the queue,
/// signs a final checkpoint and stops the writer thread.
pub struct AuditLog {
    dir: PathBuf,
    /// Next seq and the writer's queue (shared with the writer, which appends retention
    /// records through it).
    tx: Queue,
    reader: Reader,
    /// The key in force (changes at a rotation).
    pubkey: Mutex<VerifyingKey>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The writer thread, unparked when a record must not wait for the group window (see
    /// `Writer::gather`).
    writer: std::thread::Thread,
    /// `group_commit_records`: a queue this long wakes the writer.
    group_max: usize,
    /// `group_commit_ms`.
    group_window: Duration,
    /// The free-space sampler (stopped on drop).
    _monitor: Monitor,
}

fn stopped(shared: &Shared) -> AuditError {
    match shared.health.state() {
        WriterState::Ok => AuditError::WriterStopped("the writer thread is gone".into()),
        _ => AuditError::Unavailable(shared.health.unavailable()),
    }
}

impl AuditLog {
    /// Open (or create) the log under `dir`: cut a torn tail left by a crash, continue the
    /// chain, catch the sled index up, and start the writer thread.
    pub fn open(
        dir: &Path,
        settings: &AuditSettings,
        db: &storage::Store,
        registry: &prometheus::Registry,
    ) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let key = keys::load_or_create(dir)?;
        let salt = mask::Salt::load_or_create(dir)?;
        let pubkey = key.verifying_key();
        let idx = Index::open(db)?;
        let rec = recover::recover(dir, &idx)?;

        let records_total = IntCounterVec::new(
            Opts::new("clawbutler_audit_records_total", "Audit records written (fsynced), by kind"),
            &["kind"],
        )?;
        let append_seconds = Histogram::with_opts(
            HistogramOpts::new("clawbutler_audit_append_seconds", "Time from append to fsync of an audit record")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
        )?;
        // Pre-create every kind's series so dashboards see 0 rather than no data.
        for k in RecordKind::ALL {
            records_total.with_label_values(&[k.as_str()]);
        }
        registry.register(Box::new(records_total.clone()))?;
        registry.register(Box::new(append_seconds.clone()))?;
        let health_metrics = HealthMetrics::register(registry)?;
        let disk = Disk::from_settings(settings);

        let head = rec.writer_parts.head_seq;
        let left_open = rec.writer_parts.spans.list();
        let shared = Arc::new(Shared {
            durable_seq: AtomicU64::new(head),
            broadcast: broadcast::channel(settings.broadcast_capacity.max(1)).0,
            records_total,
            append_seconds,
            health: HealthCell::new(settings.on_failure, settings.outage_queue_records.max(1), health_metrics),
            files: Mutex::new(Default::default()),
            recent_locs: Mutex::new(Default::default()),
            indexed_seq: AtomicU64::new(rec.indexed_through),
        });
        // A first reading before anything is written: the gauges and the low-space warning are
        // right from the start.
        disk::sample(dir, &disk, settings, &shared);
        let monitor = Monitor::spawn(dir.to_path_buf(), disk.clone(), settings.clone(), shared.clone())?;
        let indexer = indexer::spawn(idx.clone(), shared.clone(), rec.builder)?;
        let (tx, rx) = mpsc::channel();
        let queue: Queue = Arc::new(Mutex::new(Some(tx)));
        let writer =
            Writer::from_parts(rec.writer_parts, dir, settings, key, indexer, shared.clone(), queue.clone(), disk);
        let thread = std::thread::Builder::new().name("audit-writer".into()).spawn(move || writer.run(rx))?;
        let writer_thread = thread.thread().clone();
        let log = AuditLog {
            dir: dir.to_path_buf(),
            tx: queue,
            reader: Reader {
                dir: dir.to_path_buf(),
                index: idx,
                shared,
                scan_limit: settings.search_scan_limit.max(1),
                salt,
            },
            pubkey: Mutex::new(pubkey),
            thread: Mutex::new(Some(thread)),
            writer: writer_thread,
            group_max: settings.group_commit_records.max(1),
            group_window: Duration::from_millis(settings.group_commit_ms),
            _monitor: monitor,
        };
        log.close_left_open(&left_open)?;
        Ok(log)
    }

    /// Close the spans a crash left open with `outcome_unknown` records (durable before the
    /// log is handed out, so a second crash cannot lose them and re-closing is idempotent).
    fn close_left_open(&self, spans: &[spans::OpenSpan]) -> Result<(), AuditError> {
        if spans.is_empty() {
            return Ok(());
        }
        tracing::warn!(calls = spans.len(), "closing calls left in flight by a crash as outcome_unknown");
        for span in spans {
            let start = self
                .reader
                .get(span.seq)
                .ok()
                .flatten()
                .filter(|r| r.decision_id.as_deref() == Some(span.decision_id.as_str()) && r.kind == span.kind);
            self.enqueue_record(spans::unknown_outcome_record(span, start.as_ref()), None)?;
        }
        self.flush()
    }

    /// Append; durable at the next group commit. Never blocks on I/O. The seq is given when
    /// the record is written. While the log cannot write (see [`AuditLog::health`]) the
    /// record is held in memory and written, in order, as soon as the disk takes writes
    /// again, up to `outage_queue_records`; beyond that it is refused
    /// ([`AuditError::Unavailable`], no seq given).
    pub fn append(&self, ev: AuditEvent) -> Result<(), AuditError> {
        let health = &self.reader.shared.health;
        if !health.accepting() && health.queued.load(Ordering::Acquire) >= health.queue_cap {
            health.count_rejected();
            return Err(AuditError::Unavailable(health.unavailable()));
        }
        self.enqueue(ev, None)
    }

    /// Append and resolve with the record's seq only once it is fsynced. While the log cannot
    /// write it is refused at once ([`AuditError::Unavailable`]): the record is never written
    /// and gets no seq, so the caller must not answer as if it had been recorded.
    pub async fn append_durable(&self, ev: AuditEvent) -> Result<u64, AuditError> {
        let health = &self.reader.shared.health;
        if !health.accepting() {
            health.count_rejected();
            return Err(AuditError::Unavailable(health.unavailable()));
        }
        let (tx, rx) = oneshot::channel();
        self.enqueue(ev, Some(tx))?;
        match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(u)) => Err(AuditError::Unavailable(u)),
            Err(_) => Err(stopped(&self.reader.shared)),
        }
    }

    fn enqueue(&self, ev: AuditEvent, waiter: Option<Waiter>) -> Result<(), AuditError> {
        self.enqueue_record(event::to_masked_record(ev, &self.reader.salt), waiter)
    }

    /// Queue a record that is already masked.
    fn enqueue_record(&self, rec: AuditRecord, waiter: Option<Waiter>) -> Result<(), AuditError> {
        let pending = Instant::now();
        let durable = waiter.is_some();
        {
            let guard = self.tx.lock().map_err(|_| stopped(&self.reader.shared))?;
            let Some(tx) = guard.as_ref() else { return Err(stopped(&self.reader.shared)) };
            tx.send(Msg::Rec(Box::new(Pending { rec, waiter, enqueued: pending })))
                .map_err(|_| stopped(&self.reader.shared))?;
        }
        // Wrapping: the writer may have written (and counted off) this record already, so the
        // count can be one below zero for a moment; a spurious unpark is harmless.
        let queued = self.reader.shared.health.queued.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        // A writer gathering a group sleeps through the group window without being woken per
        // record (`Writer::gather`); wake it only when this record must not wait: someone
        // waits for it to be durable, or the group is full. (An idle writer is woken by the
        // send itself.)
        if durable || queued >= self.group_max {
            self.writer.unpark();
        }
        Ok(())
    }

    /// How long a record appended with [`AuditLog::append`] may wait for its group commit
    /// (`group_commit_ms`), besides the write and fsync themselves.
    pub fn group_window(&self) -> Duration {
        self.group_window
    }

    /// Whether the log can write now: one atomic load, for hot paths. Prefer
    /// [`AuditLog::admit`], which also applies `on_failure` and counts refusals.
    pub fn accepting(&self) -> bool {
        self.reader.shared.health.accepting()
    }

    /// The gate every face asks before it lets a call through (one atomic load while the log
    /// is healthy). `Ok(Admission::Recorded)`: go on. While the log cannot write:
    /// `Err(Unavailable)` with `[audit] on_failure = "refuse"` (the default), the refusal
    /// counted for `face` (`clawbutler_audit_refused_calls_total` and the outage record):
    /// answer the caller in its own format with [`Unavailable::retry_after_s`] and the
    /// `Display` text, and send nothing upstream. With `"continue_unaudited"`:
    /// `Ok(Admission::Unaudited)`, counted and logged.
    pub fn admit(&self, face: Face) -> Result<Admission, Unavailable> {
        let health = &self.reader.shared.health;
        if health.accepting() {
            return Ok(Admission::Recorded);
        }
        match health.on_failure {
            OnFailure::Refuse => {
                health.count_refused(face);
                Err(health.unavailable())
            }
            OnFailure::ContinueUnaudited => {
                health.count_unaudited(face);
                tracing::warn!(
                    face = face.as_str(),
                    "audit log cannot write: call let through unaudited (on_failure = continue_unaudited)"
                );
                Ok(Admission::Unaudited)
            }
        }
    }

    /// A face's record could not be written after all (an `append_durable` that failed after
    /// [`AuditLog::admit`] let the call in): what to do with the call. `Err`: refuse it
    /// (counted as refused); `Ok`: `continue_unaudited`, answer as if recorded (counted).
    pub fn record_failed(&self, face: Face, err: &AuditError) -> Result<Admission, Unavailable> {
        let health = &self.reader.shared.health;
        let u = match err {
            AuditError::Unavailable(u) => u.clone(),
            e => Unavailable { cause: None, error: e.to_string(), since: None },
        };
        match health.on_failure {
            OnFailure::Refuse => {
                health.count_refused(face);
                Err(u)
            }
            OnFailure::ContinueUnaudited => {
                health.count_unaudited(face);
                tracing::warn!(face = face.as_str(), error = %u, "audit record not written: answered unaudited (on_failure = continue_unaudited)");
                Ok(Admission::Unaudited)
            }
        }
    }

    /// For changes that must be recorded whatever `on_failure` says (approval decisions,
    /// grants, tokens, budget changes, holds): `Err` while the log cannot write, counted for
    /// `face`. Check it before changing anything, then make the record with `append_durable`
    /// and undo the change if that fails.
    pub fn require(&self, face: Face) -> Result<(), Unavailable> {
        let health = &self.reader.shared.health;
        if health.accepting() {
            return Ok(());
        }
        health.count_refused(face);
        Err(health.unavailable())
    }

    /// What `[audit] on_failure` says.
    pub fn on_failure(&self) -> OnFailure {
        self.reader.shared.health.on_failure
    }

    /// The log's health now: writer state, why it cannot write and since when, the calls
    /// this outage refused, free space.
    pub fn health(&self) -> AuditHealth {
        self.reader.shared.health.snapshot()
    }

    /// Every change of the writer state or of the low-space flag (the `audit_health` event).
    pub fn health_events(&self) -> tokio::sync::watch::Receiver<AuditHealth> {
        self.reader.shared.health.subscribe()
    }

    /// Rotate the checkpoint-signing key: everything appended so far is signed with the
    /// current key, a checkpoint signed with it names the new public key, the new key signs
    /// from then on (the old one is kept in `audit-pubkeys.pem` for verifying), and an `auth`
    /// record `audit_key_rotated` is appended. Returns (retired key id, new key id).
    /// Blocking: use `spawn_blocking`.
    pub fn rotate_key(&self) -> Result<(String, String), AuditError> {
        let key = keys::generate()?;
        let new = key.verifying_key();
        let old = keys::key_id(&self.public_key());
        self.send(|done| Msg::RotateKey { key: Box::new(key), done })?;
        match self.pubkey.lock() {
            Ok(mut k) => *k = new,
            Err(p) => *p.into_inner() = new,
        }
        Ok((old, keys::key_id(&new)))
    }

    fn request(&self, checkpoint: bool) -> Result<(), AuditError> {
        self.send(|done| Msg::Flush { checkpoint, done })
    }

    /// Send the writer a request and wait for its answer.
    fn send(&self, msg: impl FnOnce(writer::FlushDone) -> Msg) -> Result<(), AuditError> {
        let (done, wait) = mpsc::sync_channel(1);
        {
            let guard = self.tx.lock().map_err(|_| stopped(&self.reader.shared))?;
            let Some(tx) = guard.as_ref() else { return Err(stopped(&self.reader.shared)) };
            tx.send(msg(done)).map_err(|_| stopped(&self.reader.shared))?;
        }
        self.writer.unpark();
        match wait.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(u)) => Err(AuditError::Unavailable(u)),
            Err(_) => Err(stopped(&self.reader.shared)),
        }
    }

    /// Block until everything appended so far is fsynced. Blocking: use `spawn_blocking`.
    pub fn flush(&self) -> Result<(), AuditError> {
        self.request(false)
    }

    /// Flush and sign a checkpoint now. Blocking: use `spawn_blocking`.
    pub fn checkpoint_now(&self) -> Result<(), AuditError> {
        self.request(true)
    }

    /// Highest durable seq (0 = empty).
    pub fn head(&self) -> u64 {
        self.reader.shared.durable_seq.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This install's masking salt (`audit-mask.salt`). Pass it to the `mask::*_salted`
    /// functions to produce short hashes that correlate with the ones in this log.
    pub fn mask_salt(&self) -> &mask::Salt {
        &self.reader.salt
    }

    /// The checkpoint-signing public key (also exported as `audit-pubkey.pem`).
    pub fn public_key(&self) -> VerifyingKey {
        match self.pubkey.lock() {
            Ok(k) => *k,
            Err(p) => *p.into_inner(),
        }
    }

    /// Filtered search, newest first, with cursor pagination.
    pub fn search(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        self.reader.search(q)
    }

    /// Every record of `kind` in `[from, to]` (inclusive, newest first), page by page, handed
    /// to `f`; `read` counts the records handed over (it may carry over several scans) and the
    /// scan stops once it reaches `max`. Returns whether the scan was complete. For summaries
    /// over a period (the notification digest, reports).
    pub fn scan(
        &self,
        kind: RecordKind,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        read: &mut usize,
        max: usize,
        f: &mut dyn FnMut(&AuditRecord),
    ) -> Result<bool, AuditError> {
        let mut cursor = None;
        loop {
            let q = AuditQuery {
                kind: Some(kind),
                from: Some(from),
                to: Some(to),
                cursor: cursor.take(),
                limit: Some(query::MAX_LIMIT),
                ..Default::default()
            };
            let page = self.search(&q)?;
            for r in &page.items {
                *read += 1;
                f(r);
            }
            match page.next_cursor {
                Some(c) if *read < max => cursor = Some(c),
                Some(_) => return Ok(false),
                None => return Ok(true),
            }
        }
    }

    /// One record by seq (`None` if absent, pruned or not yet durable).
    pub fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        self.reader.get(seq)
    }

    /// Every record of a trace, in seq order.
    pub fn trace(&self, trace_id: &str) -> Result<Vec<AuditRecord>, AuditError> {
        self.reader.trace(trace_id)
    }

    /// Up to `limit` durable records from `seq` on (SSE resume after `Last-Event-ID`).
    pub fn read_from(&self, seq: u64, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        self.reader.read_from(seq, limit)
    }

    /// Up to `limit` durable records from `seq` on as their stored lines, byte for byte
    /// (without the newline), with their seqs: what the fleet shipper copies, so a copy
    /// verifies with the same code as the log. Records pruned under retention are skipped.
    pub fn read_lines_from(&self, seq: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        self.reader.read_lines_from(seq, limit)
    }

    /// The complete checkpoint lines (without newline) from byte `offset` of
    /// `checkpoints.jsonl` on, and the offset after the last one (pass it back next time).
    /// A line being written (no newline yet) is left for the next call.
    pub fn checkpoint_lines_from(&self, offset: u64) -> Result<(Vec<Vec<u8>>, u64), AuditError> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = match std::fs::File::open(self.dir.join(CHECKPOINT_FILE)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
            Err(e) => return Err(e.into()),
        };
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        let (lines, _torn) = segment::lines(&buf);
        let end = lines.last().map_or(0, |(at, l)| at + l.len() + 1);
        Ok((lines.into_iter().map(|(_, l)| l.to_vec()).collect(), offset + end as u64))
    }

    /// Every public key this log has been signed with, oldest first (`audit-pubkeys.pem`).
    pub fn public_keys(&self) -> Result<Vec<VerifyingKey>, AuditError> {
        keys::local_keys(&self.dir)
    }

    /// Every record written after this call, as soon as it is durable. Slow receivers get
    /// `Lagged` and should resume with `read_from`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AuditRecord>> {
        self.reader.shared.broadcast.subscribe()
    }

    /// Verify the whole log on disk against this log's own key. Reads every segment:
    /// run it off the async runtime (`spawn_blocking`).
    pub fn verify(&self) -> VerifyReport {
        match keys::local_keys(&self.dir) {
            Ok(k) => verify::verify_dir_with(&self.dir, Some(&k), VerifyReport::default()),
            Err(e) => VerifyReport { errors: vec![format!("public keys: {e}")], ..VerifyReport::default() },
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the queue makes the writer drain it, sign a final checkpoint and exit.
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        // A writer asleep in a group window notices the closed queue now, not at its end.
        self.writer.unpark();
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

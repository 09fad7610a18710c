//! ClawButler's audit crate: an append-only, hash-chained, signed log of every decision.
//!
//! Callers hand an [`AuditEvent`] to [`AuditLog::append`] (or [`AuditLog::append_durable`] for
//! deny/hold/approval records, which must be on disk before the caller is answered). The event
//! is masked ([`mask`]) on the caller's thread, given a gapless seq, and queued to a dedicated
//! writer thread that chains it (`hash = sha256(prev_hash || canonical JSON)`), writes batches
//! to JSON-lines segment files with one fsync per batch, hands them to an index thread that
//! keeps a sparse sled search index, and signs an
//! Ed25519 checkpoint with an RFC 6962 Merkle root every N records / T seconds. Nothing in the
//! API updates or deletes a record; retention removes whole old segments only after a signed
//! checkpoint records the removal, and then says so in a `retention` record. [`verify_dir`] re-checks everything offline; the format is
//! specified in `docs/audit.md`.

pub mod checkpoint;
mod error;
pub mod event;
mod export;
mod index;
mod indexer;
pub mod keys;
pub mod mask;
pub mod merkle;
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
pub use error::AuditError;
pub use event::{AuditEvent, Outcome, RecordKind, Usage};
pub use export::{export, follow, tail, ExportFormat};
pub use query::{AuditPage, AuditQuery, DEFAULT_LIMIT, MAX_LIMIT};
pub use record::{AuditRecord, GENESIS_HASH};
pub use segment::{segment_name, CHECKPOINT_FILE};
pub use settings::AuditSettings;
pub use verify::{verify_dir, verify_export, VerifyReport};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};
use tokio::sync::{broadcast, oneshot};

use crate::index::Index;
use crate::query::Reader;
use crate::writer::{Msg, Pending, Queue, Shared, Writer};

/// The audit log handle (cheap to share behind an `Arc`). Dropping it flushes the queue,
/// signs a final checkpoint and stops the writer thread.
pub struct AuditLog {
    dir: PathBuf,
    /// Next seq and the writer's queue (shared with the writer, which appends retention
    /// records through it).
    tx: Queue,
    reader: Reader,
    pubkey: VerifyingKey,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn stopped(shared: &Shared) -> AuditError {
    let why = shared.failed.lock().ok().and_then(|f| f.clone()).unwrap_or_else(|| "closed".into());
    AuditError::WriterStopped(why)
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

        let head = rec.writer_parts.head_seq;
        let left_open = rec.writer_parts.spans.list();
        let shared = Arc::new(Shared {
            durable_seq: AtomicU64::new(head),
            broadcast: broadcast::channel(settings.broadcast_capacity.max(1)).0,
            records_total,
            append_seconds,
            failed: Mutex::new(None),
            files: Mutex::new(Default::default()),
            recent_locs: Mutex::new(Default::default()),
            indexed_seq: AtomicU64::new(rec.indexed_through),
        });
        let indexer = indexer::spawn(idx.clone(), shared.clone(), rec.builder)?;
        let (tx, rx) = mpsc::channel();
        let queue: Queue = Arc::new(Mutex::new(Some((head + 1, tx))));
        let writer = Writer::from_parts(rec.writer_parts, dir, settings, key, indexer, shared.clone(), queue.clone());
        let thread = std::thread::Builder::new().name("audit-writer".into()).spawn(move || writer.run(rx))?;
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
            pubkey,
            thread: Mutex::new(Some(thread)),
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

    /// Append; durable at the next group commit. Returns the record's seq. Never blocks on I/O.
    pub fn append(&self, ev: AuditEvent) -> Result<u64, AuditError> {
        self.enqueue(ev, None)
    }

    /// Append and resolve only once the record is fsynced.
    pub async fn append_durable(&self, ev: AuditEvent) -> Result<u64, AuditError> {
        let (tx, rx) = oneshot::channel();
        let seq = self.enqueue(ev, Some(tx))?;
        match rx.await {
            Ok(Ok(())) => Ok(seq),
            Ok(Err(e)) => Err(AuditError::WriterStopped(e)),
            Err(_) => Err(stopped(&self.reader.shared)),
        }
    }

    fn enqueue(&self, ev: AuditEvent, waiter: Option<oneshot::Sender<Result<(), String>>>) -> Result<u64, AuditError> {
        self.enqueue_record(event::to_masked_record(ev, &self.reader.salt), waiter)
    }

    /// Queue a record that is already masked.
    fn enqueue_record(
        &self,
        mut rec: AuditRecord,
        waiter: Option<oneshot::Sender<Result<(), String>>>,
    ) -> Result<u64, AuditError> {
        let pending = Instant::now();
        let mut guard = self.tx.lock().map_err(|_| stopped(&self.reader.shared))?;
        let Some((next, tx)) = guard.as_mut() else { return Err(stopped(&self.reader.shared)) };
        let seq = *next;
        rec.seq = seq;
        tx.send(Msg::Rec(Box::new(Pending { rec, waiter, enqueued: pending })))
            .map_err(|_| stopped(&self.reader.shared))?;
        *next += 1;
        Ok(seq)
    }

    fn request(&self, checkpoint: bool) -> Result<(), AuditError> {
        let (done, wait) = mpsc::sync_channel(1);
        {
            let guard = self.tx.lock().map_err(|_| stopped(&self.reader.shared))?;
            let Some((_, tx)) = guard.as_ref() else { return Err(stopped(&self.reader.shared)) };
            tx.send(Msg::Flush { checkpoint, done }).map_err(|_| stopped(&self.reader.shared))?;
        }
        match wait.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AuditError::WriterStopped(e)),
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
        self.pubkey
    }

    /// Filtered search, newest first, with cursor pagination.
    pub fn search(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        self.reader.search(q)
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

    /// Every record written after this call, as soon as it is durable. Slow receivers get
    /// `Lagged` and should resume with `read_from`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AuditRecord>> {
        self.reader.shared.broadcast.subscribe()
    }

    /// Verify the whole log on disk against this log's own key. Reads every segment:
    /// run it off the async runtime (`spawn_blocking`).
    pub fn verify(&self) -> VerifyReport {
        verify::verify_dir_with(&self.dir, Some(&self.pubkey), VerifyReport::default())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Closing the queue makes the writer drain it, sign a final checkpoint and exit.
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

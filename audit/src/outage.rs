//! The writer when the disk refuses a write: fail closed, retry, resume the same chain.
//!
//! State machine (the writer thread is its only driver):
//!
//! ```text
//!   ok --write/fsync fails--> failing --a retry writes the batch--> ok (+ audit_outage record)
//!                               |  \--retry fails: wait (50 ms, doubling, <= retry_max_ms)
//!                               \--queue closed and still failing after CLOSE_GRACE--> stopped
//! ```
//!
//! Entering `failing`: the bytes the failed write left in the segment (or checkpoint file) are
//! cut, exactly as opening the log cuts a torn tail; every `append_durable` waiter of the batch
//! and every flush is answered "unavailable" and its record dropped (it never got a seq); the
//! other records (started and end records of calls already in flight, events) stay, in
//! order, and new ones join them up to `outage_queue_records`. While failing, `append_durable`
//! is refused at once and `admit` refuses calls (see `health`).
//!
//! Each retry cuts any torn tail again, checks free space against the reserve, and writes the
//! kept records with the same `prev_hash` chain and the next seqs: no gap, no fork. The first
//! success returns to `ok` and appends an `audit_outage` record saying how long the outage
//! lasted and how many calls it refused.

use std::io::{Seek, SeekFrom};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::event::{Outcome, RecordKind};
use crate::health::{bytes, FailureCause, OutageSummary};
use crate::record::AuditRecord;
use crate::writer::{fmt_ts, FlushDone, Msg, Pending, WriteError, Writer};

/// First wait between two attempts; it doubles up to `retry_max_ms`.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// How long a closed log keeps retrying before it gives up on what it still holds.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

impl Writer {
    /// Free space check before a write: refuse (cause `reserve`) when the write would leave
    /// less than `reserve_free_bytes` free. A failed `statvfs` does not block writing.
    pub(crate) fn check_room(&self, len: u64) -> Result<(), WriteError> {
        let reserve = self.settings.reserve_free_bytes;
        if reserve == 0 {
            return Ok(());
        }
        match self.disk.space(&self.dir) {
            Ok(s) if s.free < reserve.saturating_add(len) => Err(WriteError {
                cause: FailureCause::Reserve,
                error: format!(
                    "{} free, and writing {} would leave less than the reserve of {} ([audit] reserve_free_bytes)",
                    bytes(s.free),
                    bytes(len),
                    bytes(reserve)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Cut whatever a failed write left after the last complete, fsynced line of the segment
    /// and of the checkpoint file, and put both write positions back there.
    pub(crate) fn repair(&mut self) -> Result<(), WriteError> {
        for (file, keep, name) in
            [(&mut self.file, self.seg_len, "segment"), (&mut self.cp_file, self.cp_len, "checkpoints")]
        {
            let len = file.metadata().map_err(WriteError::io("stat"))?.len();
            if len > keep {
                file.set_len(keep).map_err(WriteError::io("truncate"))?;
                file.sync_all().map_err(WriteError::io("truncate fsync"))?;
                self.disk.released(len - keep);
                tracing::warn!(file = name, cut = len - keep, "audit: cut the torn tail a failed write left");
            }
            file.seek(SeekFrom::Start(keep)).map_err(WriteError::io("seek"))?;
        }
        Ok(())
    }

    /// Answer every durable waiter of `batch` and every flush "unavailable"; their records
    /// leave the batch without a seq.
    fn fail_waiters(&self, batch: &mut Vec<Pending>, flushes: &mut Vec<(bool, FlushDone)>) {
        let u = self.shared.health.unavailable();
        let mut waiters = Vec::new();
        batch.retain_mut(|p| match p.waiter.take() {
            Some(w) => {
                waiters.push(w);
                false
            }
            None => true,
        });
        // Counted off before anyone hears: a caller woken by its answer may append at once,
        // and must not find its refused record still counted against `outage_queue_records`.
        self.shared.health.queued.fetch_sub(waiters.len(), Ordering::AcqRel);
        for w in waiters {
            self.shared.health.count_rejected();
            let _ = w.send(Err(u.clone()));
        }
        for (_, d) in flushes.drain(..) {
            let _ = d.send(Err(u.clone()));
        }
    }

    /// Take what arrives while waiting `wait`: plain records join the batch, durable ones and
    /// flushes are refused. Returns false if the queue closed.
    fn hold_queue(&self, rx: &Receiver<Msg>, batch: &mut Vec<Pending>, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            match rx.recv_timeout(left) {
                Ok(Msg::Rec(p)) => {
                    let mut p = *p;
                    match p.waiter.take() {
                        Some(w) => {
                            // Counted off before the caller hears (see `fail_waiters`).
                            self.shared.health.queued.fetch_sub(1, Ordering::AcqRel);
                            self.shared.health.count_rejected();
                            let _ = w.send(Err(self.shared.health.unavailable()));
                        }
                        None => batch.push(p),
                    }
                }
                Ok(Msg::Flush { done, .. } | Msg::RotateKey { done, .. }) => {
                    let _ = done.send(Err(self.shared.health.unavailable()));
                }
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
    }

    /// One attempt: cut any torn tail, then write the kept records (and a due checkpoint).
    fn attempt(&mut self, batch: &mut Vec<Pending>) -> Result<(), WriteError> {
        self.repair()?;
        self.step(batch, &mut Vec::new(), false)
    }

    /// Run an outage that `first` started, until a write succeeds (true: back to `ok`, the
    /// batch written and the outage recorded) or the queue closed and retries went on for
    /// [`CLOSE_GRACE`] without success (false: `stopped`, what it held is lost).
    pub(crate) fn outage(
        &mut self,
        first: WriteError,
        batch: &mut Vec<Pending>,
        flushes: &mut Vec<(bool, FlushDone)>,
        rx: &Receiver<Msg>,
        closed: &mut bool,
    ) -> bool {
        self.shared.health.failed(first.cause, &first.to_string());
        self.fail_waiters(batch, flushes);
        let max = Duration::from_millis(self.settings.retry_max_ms.max(1));
        let mut wait = FIRST_RETRY.min(max);
        let mut give_up: Option<Instant> = None;
        loop {
            if !*closed && !self.hold_queue(rx, batch, wait) {
                *closed = true;
            }
            if *closed {
                if give_up.is_none() {
                    give_up = Some(Instant::now() + CLOSE_GRACE);
                }
                std::thread::sleep(wait);
            }
            match self.attempt(batch) {
                Ok(()) => {
                    let summary = self.shared.health.recovered();
                    self.append_own(outage_record(&summary));
                    return true;
                }
                Err(e) => {
                    self.shared.health.failed(e.cause, &e.to_string());
                    if give_up.is_some_and(|t| Instant::now() >= t) {
                        tracing::error!(
                            error = %e,
                            records = batch.len() + self.deferred.len(),
                            "audit log closed while it could not write: these records are lost"
                        );
                        self.shared.health.stopped();
                        return false;
                    }
                    wait = (wait * 2).min(max);
                }
            }
        }
    }
}

/// The record of an outage, written as soon as the log writes again.
pub(crate) fn outage_record(s: &OutageSummary) -> AuditRecord {
    let faces =
        |a: [u64; 5]| serde_json::json!({"control": a[4], "exec": a[3], "mcp": a[1], "model": a[0], "plugin": a[2]});
    let refused: u64 = s.refused.iter().sum();
    let unaudited: u64 = s.unaudited.iter().sum();
    let duration_ms = (s.until_ms - s.since_ms).max(0);
    let cause = s.cause.unwrap_or(FailureCause::Other);
    let reason = format!(
        "the audit log could not write for {:.1} s ({}); {refused} calls were refused and {unaudited} let through \
         unaudited; the chain continues with no gap",
        duration_ms as f64 / 1000.0,
        cause.describe()
    );
    let mut details = serde_json::json!({
        "cause": cause.as_str(),
        "duration_ms": duration_ms,
        "ended_at": fmt_ts(s.until_ms),
        "error": s.error,
        "failed_attempts": s.attempts,
        "records_rejected": s.rejected_records,
        "refused_calls": faces(s.refused),
        "started_at": fmt_ts(s.since_ms),
        "unaudited_calls": faces(s.unaudited),
    });
    crate::mask::canonicalize(&mut details);
    AuditRecord {
        kind: Some(RecordKind::AuditOutage),
        actor: Some("system".into()),
        outcome: Some(Outcome::Recovered.as_str().into()),
        risk: Some(decision::Risk::High),
        reason: Some(reason),
        details,
        ..AuditRecord::default()
    }
}

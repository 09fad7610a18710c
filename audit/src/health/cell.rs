//! The shared health cell: the writer thread and the disk monitor move the state, every
//! reader loads atomics; with it the health metrics and the summary of an outage that the
//! record written after recovery carries.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::sync::watch;

use super::{AuditHealth, DiskStatus, Face, FailureCause, OnFailure, Unavailable, WriterState};

/// What an outage amounted to, for the record written after it.
#[derive(Debug, Clone)]
pub(crate) struct OutageSummary {
    pub cause: Option<FailureCause>,
    pub error: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub attempts: u64,
    pub refused: [u64; 5],
    pub unaudited: [u64; 5],
    pub rejected_records: u64,
}

/// The health metrics (registered once by `AuditLog::open`).
pub(crate) struct HealthMetrics {
    pub errors: IntCounterVec,
    pub state: IntGaugeVec,
    pub free: IntGauge,
    pub total: IntGauge,
    pub low: IntGauge,
    pub refused: IntCounterVec,
    pub unaudited: IntCounterVec,
    pub rejected: prometheus::IntCounter,
}

impl HealthMetrics {
    pub fn register(r: &prometheus::Registry) -> Result<HealthMetrics, prometheus::Error> {
        let m = HealthMetrics {
            errors: IntCounterVec::new(
                Opts::new("clawbutler_audit_append_errors_total", "Failed audit writes (write or fsync), by cause"),
                &["cause"],
            )?,
            state: IntGaugeVec::new(
                Opts::new("clawbutler_audit_writer_state", "1 for the audit writer's current state"),
                &["state"],
            )?,
            free: IntGauge::new("clawbutler_audit_disk_free_bytes", "Bytes free on the audit log's filesystem")?,
            total: IntGauge::new("clawbutler_audit_disk_size_bytes", "Size of the audit log's filesystem in bytes")?,
            low: IntGauge::new("clawbutler_audit_disk_low", "1 while free space is below the warning threshold")?,
            refused: IntCounterVec::new(
                Opts::new(
                    "clawbutler_audit_refused_calls_total",
                    "Calls refused because the audit log could not write",
                ),
                &["face"],
            )?,
            unaudited: IntCounterVec::new(
                Opts::new(
                    "clawbutler_audit_unaudited_calls_total",
                    "Calls let through while the audit log could not write (on_failure = continue_unaudited)",
                ),
                &["face"],
            )?,
            rejected: prometheus::IntCounter::new(
                "clawbutler_audit_records_rejected_total",
                "Audit appends refused (no seq given) because the log could not write",
            )?,
        };
        for c in FailureCause::ALL {
            m.errors.with_label_values(&[c.as_str()]);
        }
        for s in WriterState::ALL {
            m.state.with_label_values(&[s.as_str()]).set(i64::from(s == WriterState::Ok));
        }
        for f in Face::ALL {
            m.refused.with_label_values(&[f.as_str()]);
            m.unaudited.with_label_values(&[f.as_str()]);
        }
        r.register(Box::new(m.errors.clone()))?;
        r.register(Box::new(m.state.clone()))?;
        r.register(Box::new(m.free.clone()))?;
        r.register(Box::new(m.total.clone()))?;
        r.register(Box::new(m.low.clone()))?;
        r.register(Box::new(m.refused.clone()))?;
        r.register(Box::new(m.unaudited.clone()))?;
        r.register(Box::new(m.rejected.clone()))?;
        Ok(m)
    }
}

/// The shared health cell: the writer and the disk monitor write it, everyone reads it.
pub(crate) struct HealthCell {
    state: AtomicU8,
    cause: AtomicU8,
    since_ms: AtomicI64,
    error: Mutex<String>,
    refused: [AtomicU64; 5],
    unaudited: [AtomicU64; 5],
    rejected: AtomicU64,
    attempts: AtomicU64,
    /// Records handed to the writer and not yet written or failed (bounded while failing).
    pub queued: AtomicUsize,
    free: AtomicU64,
    total: AtomicU64,
    has_disk: AtomicBool,
    low: AtomicBool,
    pub on_failure: OnFailure,
    pub queue_cap: usize,
    pub metrics: HealthMetrics,
    events: watch::Sender<AuditHealth>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl HealthCell {
    pub fn new(on_failure: OnFailure, queue_cap: usize, metrics: HealthMetrics) -> HealthCell {
        let first = AuditHealth {
            state: WriterState::Ok,
            cause: None,
            error: None,
            since: None,
            refused_calls: 0,
            unaudited_calls: 0,
            on_failure,
            disk: DiskStatus::default(),
        };
        HealthCell {
            state: AtomicU8::new(0),
            cause: AtomicU8::new(0),
            since_ms: AtomicI64::new(0),
            error: Mutex::new(String::new()),
            refused: Default::default(),
            unaudited: Default::default(),
            rejected: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            free: AtomicU64::new(0),
            total: AtomicU64::new(0),
            has_disk: AtomicBool::new(false),
            low: AtomicBool::new(false),
            on_failure,
            queue_cap,
            metrics,
            events: watch::Sender::new(first),
        }
    }

    /// The hot-path check: one atomic load.
    pub fn accepting(&self) -> bool {
        self.state.load(Ordering::Acquire) == 0
    }

    pub fn state(&self) -> WriterState {
        WriterState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn snapshot(&self) -> AuditHealth {
        let state = self.state();
        let failing = state != WriterState::Ok;
        let since = self.since_ms.load(Ordering::Acquire);
        AuditHealth {
            state,
            cause: if failing { FailureCause::from_u8(self.cause.load(Ordering::Acquire)) } else { None },
            error: failing.then(|| self.error.lock().map(|e| e.clone()).unwrap_or_default()),
            since: (failing && since > 0).then(|| crate::writer::fmt_ts(since)),
            refused_calls: self.refused.iter().map(|a| a.load(Ordering::Relaxed)).sum(),
            unaudited_calls: self.unaudited.iter().map(|a| a.load(Ordering::Relaxed)).sum(),
            on_failure: self.on_failure,
            disk: self.disk(),
        }
    }

    pub fn disk(&self) -> DiskStatus {
        let known = self.has_disk.load(Ordering::Acquire);
        DiskStatus {
            free_bytes: known.then(|| self.free.load(Ordering::Relaxed)),
            total_bytes: known.then(|| self.total.load(Ordering::Relaxed)),
            low: self.low.load(Ordering::Relaxed),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<AuditHealth> {
        self.events.subscribe()
    }

    fn publish(&self) {
        self.events.send_replace(self.snapshot());
    }

    /// The error a caller gets while the log cannot write.
    pub fn unavailable(&self) -> Unavailable {
        let h = self.snapshot();
        Unavailable { cause: h.cause, error: h.error.unwrap_or_else(|| "the log is closed".into()), since: h.since }
    }

    /// Count a call refused because of the outage.
    pub fn count_refused(&self, face: Face) {
        self.refused[face.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.refused.with_label_values(&[face.as_str()]).inc();
    }

    /// Count a call let through unaudited.
    pub fn count_unaudited(&self, face: Face) {
        self.unaudited[face.index()].fetch_add(1, Ordering::Relaxed);
        self.metrics.unaudited.with_label_values(&[face.as_str()]).inc();
    }

    /// Count an append refused without a seq.
    pub fn count_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        self.metrics.rejected.inc();
    }

    fn set_state(&self, s: WriterState) {
        self.state.store(s as u8, Ordering::Release);
        for x in WriterState::ALL {
            self.metrics.state.with_label_values(&[x.as_str()]).set(i64::from(x == s));
        }
    }

    /// A write failed (the first failure of an outage, or a failed retry).
    pub fn failed(&self, cause: FailureCause, error: &str) {
        self.metrics.errors.with_label_values(&[cause.as_str()]).inc();
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let changed = self.cause.swap(cause.to_u8(), Ordering::AcqRel) != cause.to_u8();
        if let Ok(mut e) = self.error.lock() {
            error.clone_into(&mut e);
        }
        if self.state() == WriterState::Ok {
            self.since_ms.store(now_ms(), Ordering::Release);
            self.set_state(WriterState::Failing);
            tracing::error!(
                cause = cause.as_str(),
                error,
                on_failure = ?self.on_failure,
                "audit log cannot write; calls that need a record are refused until it can (retrying)"
            );
            self.publish();
        } else if changed {
            tracing::error!(cause = cause.as_str(), error, "audit log still cannot write, for another reason");
            self.publish();
        }
    }

    /// The writer gave up (the log was closed while it could not write).
    pub fn stopped(&self) {
        self.set_state(WriterState::Stopped);
        self.publish();
    }

    /// Writes work again: back to `ok`, and what the outage amounted to.
    pub fn recovered(&self) -> OutageSummary {
        self.set_state(WriterState::Ok);
        let take = |a: &[AtomicU64; 5]| {
            let mut out = [0u64; 5];
            for (o, x) in out.iter_mut().zip(a.iter()) {
                *o = x.swap(0, Ordering::Relaxed);
            }
            out
        };
        let s = OutageSummary {
            cause: FailureCause::from_u8(self.cause.swap(0, Ordering::AcqRel)),
            error: self.error.lock().map(|mut e| std::mem::take(&mut *e)).unwrap_or_default(),
            since_ms: self.since_ms.swap(0, Ordering::AcqRel),
            until_ms: now_ms(),
            attempts: self.attempts.swap(0, Ordering::Relaxed),
            refused: take(&self.refused),
            unaudited: take(&self.unaudited),
            rejected_records: self.rejected.swap(0, Ordering::Relaxed),
        };
        tracing::warn!(
            outage_ms = s.until_ms - s.since_ms,
            refused_calls = s.refused.iter().sum::<u64>(),
            "audit log writes again; the chain continues"
        );
        self.publish();
        s
    }

    /// A new free-space reading; returns whether the low-space flag changed.
    pub fn disk_reading(&self, free: u64, total: u64, low: bool) -> bool {
        self.free.store(free, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.has_disk.store(true, Ordering::Release);
        self.metrics.free.set(i64::try_from(free).unwrap_or(i64::MAX));
        self.metrics.total.set(i64::try_from(total).unwrap_or(i64::MAX));
        self.metrics.low.set(i64::from(low));
        let changed = self.low.swap(low, Ordering::AcqRel) != low;
        if changed {
            self.publish();
        }
        changed
    }
}

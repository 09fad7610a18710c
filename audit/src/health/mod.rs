//! The audit log's health: whether it can make a record durable right now, and what every
//! path that needs a record does when it cannot.
//!
//! The one question on the hot path is [`AuditLog::admit`](crate::AuditLog::admit) (or the bare
//! [`AuditLog::accepting`](crate::AuditLog::accepting)): one atomic load while the log is
//! healthy. Every face that lets a call through (the model proxy, the MCP proxy, the plugin
//! gate) asks it before it acts on a call:
//!
//! ```ignore
//! match audit.admit(audit::Face::Mcp) {
//!     Ok(_) => { /* go on: the call's records will be written */ }
//!     Err(u) => return answer_503(u.retry_after_s(), &u.to_string()), // in the face's own format
//! }
//! ```
//!
//! `Err` means `[audit] on_failure = "refuse"` (the default) and the writer cannot write: the
//! refusal is counted (metric, and the outage record written after recovery). With
//! `on_failure = "continue_unaudited"` it answers `Ok(Admission::Unaudited)` instead, counted
//! and logged. The writer thread moves the state; readers only load atomics.

use serde::{Deserialize, Serialize};

mod cell;
pub(crate) use cell::{HealthCell, HealthMetrics, OutageSummary};

/// Seconds a refused caller is told to wait (`Retry-After`). The writer retries far more often
/// (at most every `[audit] retry_max_ms`), so a freed disk is noticed well within it.
pub const RETRY_AFTER_S: u64 = 5;

/// Which face of the sidecar a call came through (a metric label and a key of the outage
/// record's counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Face {
    /// Model calls on the data listener (`/a/{agent}/{upstream}/...`).
    Model,
    /// MCP tool calls (`/mcp/...`).
    Mcp,
    /// The plugin gate (`/v1/decide`).
    Plugin,
    /// OpenClaw exec approvals through the gateway link.
    Exec,
    /// Changes made through the control API (approvals, grants, tokens, budgets, kill switch).
    Control,
}

impl Face {
    /// Every face, for pre-created metric series.
    pub const ALL: [Face; 5] = [Face::Model, Face::Mcp, Face::Plugin, Face::Exec, Face::Control];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Face::Model => "model",
            Face::Mcp => "mcp",
            Face::Plugin => "plugin",
            Face::Exec => "exec",
            Face::Control => "control",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The writer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriterState {
    /// Writing: records become durable at the next group commit.
    Ok,
    /// The last write failed; the writer retries with backoff and resumes the same chain as
    /// soon as the disk accepts writes. Calls are refused (or let through unaudited) meanwhile.
    Failing,
    /// The log was closed while it could not write; nothing more will be written.
    Stopped,
}

impl WriterState {
    const ALL: [WriterState; 3] = [WriterState::Ok, WriterState::Failing, WriterState::Stopped];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WriterState::Ok => "ok",
            WriterState::Failing => "failing",
            WriterState::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> WriterState {
        match v {
            0 => WriterState::Ok,
            1 => WriterState::Failing,
            _ => WriterState::Stopped,
        }
    }
}

/// Why a write failed, from the OS error (a metric label; the OS text goes to the log and
/// the outage record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The filesystem is full (`ENOSPC`).
    NoSpace,
    /// Free space fell below `[audit] reserve_free_bytes`: the writer stopped before the disk
    /// was full, so the state store and the outage record still have room.
    Reserve,
    /// A disk quota is exhausted (`EDQUOT`).
    Quota,
    /// The filesystem is read-only (`EROFS`, e.g. remounted after errors).
    ReadOnly,
    /// Permission denied (`EACCES`, `EPERM`).
    Permission,
    /// An I/O error (`EIO`: a failing disk, a lost network volume).
    Io,
    /// Anything else.
    Other,
}

impl FailureCause {
    /// Every cause, for pre-created metric series.
    pub const ALL: [FailureCause; 7] = [
        FailureCause::NoSpace,
        FailureCause::Reserve,
        FailureCause::Quota,
        FailureCause::ReadOnly,
        FailureCause::Permission,
        FailureCause::Io,
        FailureCause::Other,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::NoSpace => "no_space",
            FailureCause::Reserve => "reserve",
            FailureCause::Quota => "quota",
            FailureCause::ReadOnly => "read_only",
            FailureCause::Permission => "permission",
            FailureCause::Io => "io",
            FailureCause::Other => "other",
        }
    }

    /// What an operator reads.
    pub fn describe(self) -> &'static str {
        match self {
            FailureCause::NoSpace => "no space left on the device",
            FailureCause::Reserve => "free space is below [audit] reserve_free_bytes",
            FailureCause::Quota => "the disk quota is exhausted",
            FailureCause::ReadOnly => "the filesystem is read-only",
            FailureCause::Permission => "permission denied",
            FailureCause::Io => "an I/O error",
            FailureCause::Other => "a write error",
        }
    }

    /// Classify an OS error.
    pub fn of(e: &std::io::Error) -> FailureCause {
        match e.raw_os_error() {
            Some(28) => FailureCause::NoSpace,        // ENOSPC
            Some(122) => FailureCause::Quota,         // EDQUOT
            Some(30) => FailureCause::ReadOnly,       // EROFS
            Some(1 | 13) => FailureCause::Permission, // EPERM, EACCES
            Some(5) => FailureCause::Io,              // EIO
            _ if e.kind() == std::io::ErrorKind::StorageFull => FailureCause::NoSpace,
            _ => FailureCause::Other,
        }
    }

    fn from_u8(v: u8) -> Option<FailureCause> {
        FailureCause::ALL.get(usize::from(v).checked_sub(1)?).copied()
    }

    fn to_u8(self) -> u8 {
        FailureCause::ALL.iter().position(|c| *c == self).map_or(0, |i| i as u8 + 1)
    }
}

/// `[audit] on_failure`: what calls do while the log cannot write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Refuse every call that would need a record (the default: fail closed).
    #[default]
    Refuse,
    /// Let calls through without a durable record; each is counted
    /// (`clawbutler_audit_unaudited_calls_total`) and logged. Never the default.
    ContinueUnaudited,
}

/// Free space of the filesystem holding the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskStatus {
    /// Bytes available to the sidecar (`f_bavail * f_frsize`); `None` before the first check.
    pub free_bytes: Option<u64>,
    /// Size of the filesystem in bytes.
    pub total_bytes: Option<u64>,
    /// Free space is below the warning threshold (`warn_free_bytes` or `warn_free_ratio`).
    pub low: bool,
}

/// A snapshot of the log's health (`/readyz`, the `audit_health` event, the UI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditHealth {
    pub state: WriterState,
    /// Why the last write failed (while not `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<FailureCause>,
    /// The OS error text of the last failed write (while not `ok`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the writer stopped being able to write (RFC 3339), while not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Calls refused because of this outage so far.
    pub refused_calls: u64,
    /// Calls let through unaudited during this outage (`on_failure = "continue_unaudited"`).
    pub unaudited_calls: u64,
    pub on_failure: OnFailure,
    pub disk: DiskStatus,
}

impl AuditHealth {
    /// One line for `/readyz` and logs.
    pub fn summary(&self) -> String {
        let disk = match (self.disk.free_bytes, self.disk.total_bytes) {
            (Some(f), Some(t)) => {
                format!("; {} free of {}{}", bytes(f), bytes(t), if self.disk.low { " (low)" } else { "" })
            }
            _ => String::new(),
        };
        match self.state {
            WriterState::Ok => format!("writing{disk}"),
            s => format!(
                "cannot write ({}: {}) since {}; {} calls refused, {} let through unaudited; {}{disk}",
                self.cause.map_or("unknown", |c| c.describe()),
                self.error.as_deref().unwrap_or("?"),
                self.since.as_deref().unwrap_or("?"),
                self.refused_calls,
                self.unaudited_calls,
                if s == WriterState::Failing { "retrying" } else { "stopped" },
            ),
        }
    }
}

/// Bytes for people: `1.5 GiB`, `812 KiB`, `90 B`.
pub fn bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// Whether a call may go ahead while the log cannot write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The log is writing: the call's records will be durable.
    Recorded,
    /// The log cannot write and `on_failure = "continue_unaudited"`: the call goes ahead,
    /// counted and logged, and its records may never be written.
    Unaudited,
}

/// The log cannot take a record now. Its `Display` is the message a refused caller reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    pub cause: Option<FailureCause>,
    pub error: String,
    pub since: Option<String>,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the audit log cannot record this right now ({}: {}",
            self.cause.map_or("closed", |c| c.describe()),
            self.error
        )?;
        if let Some(s) = &self.since {
            write!(f, ", since {s}")?;
        }
        write!(f, "), so it is refused; retry in {RETRY_AFTER_S} s")
    }
}

impl std::error::Error for Unavailable {}

impl Unavailable {
    /// `Retry-After` for the refusal.
    pub fn retry_after_s(&self) -> u64 {
        RETRY_AFTER_S
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_round_trip_and_classify() {
        for c in FailureCause::ALL {
            assert_eq!(FailureCause::from_u8(c.to_u8()), Some(c));
        }
        assert_eq!(FailureCause::from_u8(0), None);
        assert_eq!(FailureCause::of(&std::io::Error::from_raw_os_error(28)), FailureCause::NoSpace);
        assert_eq!(FailureCause::of(&std::io::Error::from_raw_os_error(5)), FailureCause::Io);
        assert_eq!(FailureCause::of(&std::io::Error::from_raw_os_error(30)), FailureCause::ReadOnly);
        assert_eq!(FailureCause::of(&std::io::Error::other("x")), FailureCause::Other);
    }

    #[test]
    fn bytes_read_well() {
        assert_eq!(bytes(90), "90 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn an_outage_is_counted_and_summarised_once() {
        let r = prometheus::Registry::new();
        let h = HealthCell::new(OnFailure::Refuse, 10, HealthMetrics::register(&r).unwrap());
        let mut rx = h.subscribe();
        assert!(h.accepting());
        h.failed(FailureCause::NoSpace, "No space left on device (os error 28)");
        assert!(!h.accepting());
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().state, WriterState::Failing);
        h.count_refused(Face::Model);
        h.count_refused(Face::Mcp);
        h.failed(FailureCause::NoSpace, "No space left on device (os error 28)");
        assert!(!rx.has_changed().unwrap(), "a retry failing the same way is not a new event");
        let u = h.unavailable();
        assert_eq!(u.cause, Some(FailureCause::NoSpace));
        assert!(u.to_string().contains("no space left on the device"), "{u}");
        assert_eq!(h.snapshot().refused_calls, 2);
        let s = h.recovered();
        assert!(h.accepting());
        assert_eq!((s.refused, s.attempts, s.cause), ([1, 1, 0, 0, 0], 2, Some(FailureCause::NoSpace)));
        assert_eq!(h.snapshot().refused_calls, 0);
        assert_eq!(rx.borrow_and_update().state, WriterState::Ok);
    }
}

//! The `[audit]` config section.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::disk::FaultyDisk;
use crate::health::OnFailure;

/// `[audit]` config section. Every field has a default, so an empty section is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Group commit: write and fsync once this many records are pending...
    pub group_commit_records: usize,
    /// ...or once the oldest pending record has waited this many milliseconds. Batches that
    /// carry a durable (`append_durable`) record are flushed as soon as the queue is empty.
    pub group_commit_ms: u64,
    /// Sign a checkpoint after this many records...
    pub checkpoint_every_records: u64,
    /// ...or after this many seconds with new records, whichever comes first.
    pub checkpoint_every_secs: u64,
    /// Start a new segment file once the current one reaches this size.
    pub segment_max_bytes: u64,
    /// Remove whole closed segments whose newest record is older than this (None = keep all).
    pub retention_days: Option<u32>,
    /// Capacity of the live-record broadcast channel (`subscribe`); slow subscribers lag.
    pub broadcast_capacity: usize,
    /// Upper bound of records a single search page may scan before it returns a partial page
    /// with a cursor (keeps keyword queries over big logs bounded).
    pub search_scan_limit: usize,
    /// What calls do while the log cannot write: `refuse` (default: fail closed) or
    /// `continue_unaudited` (let them through, counted and logged; never the default).
    pub on_failure: OnFailure,
    /// The writer stops (and calls are refused) once fewer bytes than this would be free
    /// after a write, before the filesystem is full, so the state store and the outage record
    /// still have room. 0 disables the reserve (the writer then stops at `ENOSPC`).
    pub reserve_free_bytes: u64,
    /// Warn (log, `audit_health` event, `clawbutler_audit_disk_low`) when fewer bytes than
    /// this are free...
    pub warn_free_bytes: u64,
    /// ...or when less than this fraction of the filesystem is free.
    pub warn_free_ratio: f64,
    /// How often free space is sampled, in milliseconds.
    pub disk_check_ms: u64,
    /// Longest wait between two write attempts while the log cannot write (the wait starts
    /// at 50 ms and doubles up to this).
    pub retry_max_ms: u64,
    /// Records (started and end records of calls already in flight, events) held in memory
    /// while the log cannot write; beyond it `append` is refused too.
    pub outage_queue_records: usize,
    /// Tests only: a [`FaultyDisk`] under the log instead of the real filesystem.
    #[serde(skip)]
    pub test_disk: Option<Arc<FaultyDisk>>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            group_commit_records: 512,
            group_commit_ms: 5,
            checkpoint_every_records: 10_000,
            checkpoint_every_secs: 60,
            segment_max_bytes: 64 * 1024 * 1024,
            retention_days: None,
            broadcast_capacity: 1024,
            search_scan_limit: 100_000,
            on_failure: OnFailure::Refuse,
            reserve_free_bytes: 16 * 1024 * 1024,
            warn_free_bytes: 1 << 30,
            warn_free_ratio: 0.10,
            disk_check_ms: 5_000,
            retry_max_ms: 1_000,
            outage_queue_records: 16_384,
            test_disk: None,
        }
    }
}

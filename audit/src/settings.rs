//! The `[audit]` config section.

use serde::{Deserialize, Serialize};

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
        }
    }
}

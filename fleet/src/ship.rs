//! The audit shipper: a task that follows this sidecar's audit log (the source of truth) and
//! copies its records and signed checkpoints to the fleet database, off the data path.
//!
//! Invariants:
//! - Lines are copied byte for byte, so the central copy verifies with the log's own checks
//!   (`audit::CopyVerifier`).
//! - Delivery is at least once, storage exactly once: every insert is `ON CONFLICT (sidecar_id,
//!   seq) DO NOTHING`, and after a restart the shipper resumes from the central `max(seq)`.
//! - A checkpoint is shipped only once every record it covers is (records commit first), so a
//!   snapshot of the central copy never has a checkpoint beyond its records.
//! - Nothing here is awaited by a call: while the database does not answer the shipper only
//!   retries, and the lag gauges grow.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use prometheus::{Gauge, IntCounter, IntGauge, Registry};
use tokio::sync::watch;

use crate::FleetError;

/// Records per insert (about 1 KB each).
const BATCH: usize = 500;

/// The shipper's gauges and counters (no labels).
struct Metrics {
    shipped: IntCounter,
    lag_records: IntGauge,
    lag_seconds: Gauge,
    gaps: IntCounter,
    failures: IntCounter,
}

impl Metrics {
    fn new(reg: &Registry) -> Result<Metrics, prometheus::Error> {
        let m = Metrics {
            shipped: IntCounter::new(
                "clawbutler_fleet_audit_shipped_records_total",
                "Audit records this sidecar copied to the fleet database",
            )?,
            lag_records: IntGauge::new(
                "clawbutler_fleet_audit_lag_records",
                "Durable audit records of this sidecar not yet in the fleet database",
            )?,
            lag_seconds: Gauge::new(
                "clawbutler_fleet_audit_lag_seconds",
                "Age of this sidecar's oldest audit record not yet in the fleet database (0: none)",
            )?,
            gaps: IntCounter::new(
                "clawbutler_fleet_audit_gap_records_total",
                "Audit records removed under local retention before they were shipped (a hole in the central copy)",
            )?,
            failures: IntCounter::new(
                "clawbutler_fleet_audit_ship_failures_total",
                "Shipping rounds that failed (the database did not answer or refused); retried",
            )?,
        };
        reg.register(Box::new(m.shipped.clone()))?;
        reg.register(Box::new(m.lag_records.clone()))?;
        reg.register(Box::new(m.lag_seconds.clone()))?;
        reg.register(Box::new(m.gaps.clone()))?;
        reg.register(Box::new(m.failures.clone()))?;
        Ok(m)
    }
}

/// Where the central copy stands (read from the database at start, then kept in memory).
#[derive(Debug, Clone, Copy, Default)]
struct Position {
    shipped_seq: u64,
    shipped_checkpoint: u64,
    /// Byte offset in `checkpoints.jsonl` of the first checkpoint not shipped yet.
    cp_offset: u64,
}

/// Follows one audit log into the fleet database.
pub struct Shipper {
    pool: Pool,
    sidecar_id: String,
    log: Arc<audit::AuditLog>,
    every: Duration,
    timeout: Duration,
    metrics: Metrics,
}

impl Shipper {
    /// A shipper for `log`, registering its metrics.
    pub(crate) fn new(
        pool: Pool,
        sidecar_id: &str,
        log: Arc<audit::AuditLog>,
        every_ms: u64,
        timeout_ms: u64,
        reg: &Registry,
    ) -> Result<Shipper, FleetError> {
        Ok(Shipper {
            pool,
            sidecar_id: sidecar_id.to_string(),
            log,
            every: Duration::from_millis(every_ms.max(1)),
            timeout: Duration::from_millis(timeout_ms),
            metrics: Metrics::new(reg).map_err(|e| FleetError::Pool(e.to_string()))?,
        })
    }

    /// Ship every `every` until `stop`; one last round at stop, so a clean shutdown leaves the
    /// central copy complete up to the final checkpoint when the database answers.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut pos: Option<Position> = None;
        loop {
            let stopping = tokio::select! {
                _ = tokio::time::sleep(self.every) => false,
                _ = stop.changed() => true,
            };
            // A round may take a few queries; the last one (at stop) gets one timeout, so a
            // database that does not answer delays a shutdown by at most that.
            let bound = if stopping { self.timeout } else { self.timeout * 4 };
            match tokio::time::timeout(bound, self.round(&mut pos)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.metrics.failures.inc();
                    tracing::warn!(error = %e, "fleet audit shipping failed; retrying");
                }
                Err(_) => {
                    self.metrics.failures.inc();
                    tracing::warn!("fleet audit shipping timed out; retrying");
                }
            }
            self.measure(pos.map_or(0, |p| p.shipped_seq)).await;
            if stopping {
                return;
            }
        }
    }

    /// One round: find the central position if unknown, ship records, then checkpoints,
    /// then report where this shipper stands.
    async fn round(&self, pos: &mut Option<Position>) -> Result<(), FleetError> {
        let mut p = match *pos {
            Some(p) => p,
            None => {
                let p = self.resume().await?;
                *pos = Some(p);
                p
            }
        };
        loop {
            let log = self.log.clone();
            let from = p.shipped_seq + 1;
            let lines = tokio::task::spawn_blocking(move || log.read_lines_from(from, BATCH))
                .await
                .map_err(|e| FleetError::Pool(e.to_string()))?
                .map_err(|e| FleetError::Invalid(format!("reading the audit log: {e}")))?;
            let Some((first, _)) = lines.first() else { break };
            if p.shipped_seq > 0 && *first > from {
                self.metrics.gaps.inc_by(*first - from);
                tracing::error!(from, to = *first - 1, "audit records were pruned locally before they were shipped");
            }
            let last = lines.last().map_or(p.shipped_seq, |(s, _)| *s);
            let n = self.insert_records(&lines).await?;
            self.metrics.shipped.inc_by(n);
            p.shipped_seq = last;
            *pos = Some(p);
            if lines.len() < BATCH {
                break;
            }
        }
        self.ship_checkpoints(&mut p).await?;
        *pos = Some(p);
        self.report(p.shipped_seq).await
    }

    /// The central position after a restart: `max(seq)` and `max(checkpoint)` of this sidecar.
    async fn resume(&self) -> Result<Position, FleetError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT (SELECT coalesce(max(seq), 0) FROM fleet_audit_record WHERE sidecar_id = $1), \
                 (SELECT coalesce(max(checkpoint), 0) FROM fleet_audit_checkpoint WHERE sidecar_id = $1)",
                &[&self.sidecar_id],
            )
            .await?;
        let (seq, cp): (i64, i64) = (row.get(0), row.get(1));
        tracing::info!(shipped_seq = seq, shipped_checkpoint = cp, "fleet audit shipper resumes");
        Ok(Position { shipped_seq: seq.max(0) as u64, shipped_checkpoint: cp.max(0) as u64, cp_offset: 0 })
    }

    /// Insert one batch in one statement; the number of rows new to the database.
    async fn insert_records(&self, lines: &[(u64, Vec<u8>)]) -> Result<u64, FleetError> {
        let mut cols = Columns::default();
        for (seq, line) in lines {
            cols.push(*seq, line)?;
        }
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "INSERT INTO fleet_audit_record (sidecar_id, seq, ts, kind, agent, action, risk, trace_id, line) \
                 SELECT $1, * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::text[], $9::text[]) ON CONFLICT (sidecar_id, seq) DO NOTHING",
                &[
                    &self.sidecar_id,
                    &cols.seq,
                    &cols.ts,
                    &cols.kind,
                    &cols.agent,
                    &cols.action,
                    &cols.risk,
                    &cols.trace_id,
                    &cols.line,
                ],
            )
            .await?;
        Ok(n)
    }

    /// Ship the checkpoints whose records are all shipped, in order.
    async fn ship_checkpoints(&self, p: &mut Position) -> Result<(), FleetError> {
        let log = self.log.clone();
        let offset = p.cp_offset;
        let (lines, _) = tokio::task::spawn_blocking(move || log.checkpoint_lines_from(offset))
            .await
            .map_err(|e| FleetError::Pool(e.to_string()))?
            .map_err(|e| FleetError::Invalid(format!("reading the audit checkpoints: {e}")))?;
        let (mut nums, mut texts) = (Vec::new(), Vec::new());
        let mut next_offset = p.cp_offset;
        let mut shipped_cp = p.shipped_checkpoint;
        for line in &lines {
            let c: audit::Checkpoint = serde_json::from_slice(line)?;
            // Only complete, covered checkpoints go; a later round takes the rest.
            if c.last_seq > p.shipped_seq && c.last_seq >= c.first_seq {
                break;
            }
            next_offset += line.len() as u64 + 1;
            if c.checkpoint <= p.shipped_checkpoint {
                continue;
            }
            nums.push(c.checkpoint as i64);
            texts.push(text(line)?);
            shipped_cp = c.checkpoint;
        }
        if !nums.is_empty() {
            let client = self.pool.get().await?;
            client
                .execute(
                    "INSERT INTO fleet_audit_checkpoint (sidecar_id, checkpoint, line) \
                     SELECT $1, * FROM unnest($2::bigint[], $3::text[]) ON CONFLICT (sidecar_id, checkpoint) DO NOTHING",
                    &[&self.sidecar_id, &nums, &texts],
                )
                .await?;
        }
        p.cp_offset = next_offset;
        p.shipped_checkpoint = shipped_cp;
        Ok(())
    }

    /// Write where this shipper stands (the fleet view's shipping lag) and the keys its
    /// checkpoints are signed with.
    async fn report(&self, shipped: u64) -> Result<(), FleetError> {
        let head = self.log.head();
        let lag_s = self.lag_seconds(shipped, head).await;
        // The key history file; the key in force if it cannot be read (it is written at open).
        let keys = self
            .log
            .public_keys()
            .unwrap_or_else(|_| vec![self.log.public_key()])
            .iter()
            .map(audit::keys::public_hex)
            .collect::<Vec<_>>()
            .join("\n");
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO fleet_audit_shipper (sidecar_id, public_keys, local_head, shipped_seq, lag_seconds, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (sidecar_id) DO UPDATE SET \
                 public_keys = EXCLUDED.public_keys, local_head = EXCLUDED.local_head, \
                 shipped_seq = EXCLUDED.shipped_seq, lag_seconds = EXCLUDED.lag_seconds, updated_at = now()",
                &[&self.sidecar_id, &keys, &(head as i64), &(shipped as i64), &lag_s],
            )
            .await?;
        Ok(())
    }

    /// Set the lag gauges from the local log (works while the database is down).
    async fn measure(&self, shipped: u64) {
        let head = self.log.head();
        self.metrics.lag_records.set(head.saturating_sub(shipped) as i64);
        self.metrics.lag_seconds.set(self.lag_seconds(shipped, head).await);
    }

    /// Seconds since the oldest record not shipped yet was written (0 when none).
    async fn lag_seconds(&self, shipped: u64, head: u64) -> f64 {
        if head <= shipped {
            return 0.0;
        }
        let log = self.log.clone();
        let rec = tokio::task::spawn_blocking(move || log.get(shipped + 1)).await.ok().and_then(Result::ok).flatten();
        let ts = rec.and_then(|r| DateTime::parse_from_rfc3339(&r.ts).ok());
        ts.map_or(0.0, |t| (Utc::now() - t.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0)
    }
}

/// A line as text (the writer only writes UTF-8 JSON).
fn text(line: &[u8]) -> Result<String, FleetError> {
    String::from_utf8(line.to_vec()).map_err(|_| FleetError::Invalid("an audit line is not UTF-8".into()))
}

/// One batch as columns, for `unnest`.
#[derive(Default)]
struct Columns {
    seq: Vec<i64>,
    ts: Vec<DateTime<Utc>>,
    kind: Vec<Option<String>>,
    agent: Vec<Option<String>>,
    action: Vec<Option<String>>,
    risk: Vec<Option<String>>,
    trace_id: Vec<Option<String>>,
    line: Vec<String>,
}

impl Columns {
    fn push(&mut self, seq: u64, line: &[u8]) -> Result<(), FleetError> {
        let v: serde_json::Value = serde_json::from_slice(line)?;
        let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str).map(str::to_string);
        let ts = field("ts")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .ok_or_else(|| FleetError::Invalid(format!("audit record {seq} has no valid ts")))?;
        self.seq.push(seq as i64);
        self.ts.push(ts.with_timezone(&Utc));
        self.kind.push(field("kind"));
        self.agent.push(field("agent"));
        self.action.push(field("action"));
        self.risk.push(field("risk"));
        self.trace_id.push(field("trace_id"));
        self.line.push(text(line)?);
        Ok(())
    }
}

//! Offline readers for the CLI: export (JSON lines with checkpoints, or CSV), tail, follow.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::checkpoint::Checkpoint;
use crate::index::ts_ms;
use crate::record::AuditRecord;
use crate::segment::{self, CHECKPOINT_FILE};
use crate::AuditError;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// Stored lines, byte for byte, with each checkpoint line after the record it ends at;
    /// `verify --export` can check the result.
    Jsonl,
    /// One row per record, flat columns, for spreadsheets (not verifiable).
    Csv,
}

const CSV_COLUMNS: &[&str] = &[
    "seq",
    "ts",
    "kind",
    "agent",
    "session",
    "trace_id",
    "decision_id",
    "action",
    "rule",
    "risk",
    "reason",
    "outcome",
    "actor",
    "cost_usd",
    "charged_usd",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "subject",
    "details",
    "hash",
];

/// Write records with `from <= ts <= to` to `out`; returns how many records were written.
pub fn export(
    dir: &Path,
    format: ExportFormat,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    out: &mut dyn Write,
) -> Result<u64, AuditError> {
    let cps: Vec<(Checkpoint, Vec<u8>)> = segment::lines(&fs::read(dir.join(CHECKPOINT_FILE)).unwrap_or_default())
        .0
        .into_iter()
        .filter_map(|(_, l)| serde_json::from_slice(l).ok().map(|c| (c, l.to_vec())))
        .collect();
    let (lo, hi) = (from.map(|t| t.timestamp_millis()), to.map(|t| t.timestamp_millis()));
    if format == ExportFormat::Csv {
        writeln!(out, "{}", CSV_COLUMNS.join(","))?;
    }
    let mut n = 0u64;
    let mut first_seq = None;
    let mut cp_i = 0;
    for (_, path) in segment::list(dir)? {
        let buf = fs::read(&path)?;
        for (_, line) in segment::lines(&buf).0 {
            let r: AuditRecord = serde_json::from_slice(line)?;
            let t = ts_ms(&r.ts);
            if lo.is_some_and(|lo| t < lo) {
                continue;
            }
            if hi.is_some_and(|hi| t > hi) {
                return Ok(n);
            }
            first_seq.get_or_insert(r.seq);
            match format {
                ExportFormat::Jsonl => {
                    out.write_all(line)?;
                    out.write_all(b"\n")?;
                    // Checkpoints that end here and start inside the export travel with it.
                    while let Some((c, l)) = cps.get(cp_i) {
                        if c.last_seq > r.seq {
                            break;
                        }
                        if c.last_seq == r.seq && first_seq.is_some_and(|f| c.first_seq >= f) {
                            out.write_all(l)?;
                            out.write_all(b"\n")?;
                        }
                        cp_i += 1;
                    }
                }
                ExportFormat::Csv => write_csv(&r, out)?,
            }
            n += 1;
        }
    }
    Ok(n)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn write_csv(r: &AuditRecord, out: &mut dyn Write) -> std::io::Result<()> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    let num = |o: Option<f64>| o.map(|v| v.to_string()).unwrap_or_default();
    let json = |v: &serde_json::Value| if v.is_null() { String::new() } else { v.to_string() };
    let cols = [
        r.seq.to_string(),
        r.ts.clone(),
        r.kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
        opt(&r.agent),
        opt(&r.session),
        opt(&r.trace_id),
        opt(&r.decision_id),
        r.action.map(|a| a.as_str().to_string()).unwrap_or_default(),
        opt(&r.rule),
        r.risk.map(|x| x.as_str().to_string()).unwrap_or_default(),
        opt(&r.reason),
        opt(&r.outcome),
        opt(&r.actor),
        num(r.cost_usd),
        num(r.charged_usd),
        num(r.latency_ms),
        r.usage.as_ref().map(|u| u.input_tokens.to_string()).unwrap_or_default(),
        r.usage.as_ref().map(|u| u.output_tokens.to_string()).unwrap_or_default(),
        json(&r.subject),
        json(&r.details),
        r.hash.clone(),
    ];
    let row: Vec<String> = cols.iter().map(|c| csv_field(c)).collect();
    writeln!(out, "{}", row.join(","))
}

/// The last `n` records, oldest first.
pub fn tail(dir: &Path, n: usize) -> Result<Vec<AuditRecord>, AuditError> {
    let mut out: Vec<AuditRecord> = Vec::new();
    for (_, path) in segment::list(dir)?.iter().rev() {
        let buf = fs::read(path)?;
        let lines = segment::lines(&buf).0;
        for (_, l) in lines.iter().rev() {
            if out.len() >= n {
                break;
            }
            out.push(serde_json::from_slice(l)?);
        }
        if out.len() >= n {
            break;
        }
    }
    out.reverse();
    Ok(out)
}

/// Follow the log like `tail -f`: call `f` for every record after `after_seq`, polling every
/// `poll`, until `f` returns false. Blocking; for the CLI.
pub fn follow(
    dir: &Path,
    mut after_seq: u64,
    poll: Duration,
    mut f: impl FnMut(AuditRecord) -> bool,
) -> Result<(), AuditError> {
    loop {
        let segs = segment::list(dir)?;
        let start = segs.iter().rposition(|(first, _)| *first <= after_seq + 1).unwrap_or(0);
        for (_, path) in &segs[start..] {
            let buf = fs::read(path)?;
            for (_, l) in segment::lines(&buf).0 {
                let r: AuditRecord = serde_json::from_slice(l)?;
                if r.seq > after_seq {
                    after_seq = r.seq;
                    if !f(r) {
                        return Ok(());
                    }
                }
            }
        }
        std::thread::sleep(poll);
    }
}

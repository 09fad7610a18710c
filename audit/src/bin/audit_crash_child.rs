//! Test support for `tests/crash.rs` (not a product binary): append to the audit log in
//! `<dir>` from many tasks forever, printing `ACK <seq> <marker>` after each durable append,
//! so the test can SIGKILL it at a random point and check that every acknowledged record
//! survived exactly once. Some iterations are calls: a `started` record (never acknowledged),
//! then either an acknowledged end record (`END <decision id>`) or nothing, as if the call was
//! still in flight when the kill came. Usage: `audit-crash-child <dir> <run>`.

use std::io::Write;
use std::sync::{Arc, Mutex};

use audit::{AuditEvent, AuditLog, AuditSettings, Outcome, RecordKind};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: audit-crash-child <dir> <run>";

/// A failure ends the process with the error (the test then sees no more acknowledgements).
fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or(USAGE)?);
    let run: u64 = args.next().ok_or(USAGE)?.parse()?;
    let settings = AuditSettings {
        group_commit_records: 64,
        segment_max_bytes: 64 * 1024,
        checkpoint_every_records: 300,
        ..AuditSettings::default()
    };
    let db = storage::Store::open(&dir.join("db"))?;
    let log = Arc::new(AuditLog::open(&dir.join("audit"), &settings, &db, &prometheus::Registry::new())?);
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let (log, out) = (log.clone(), out.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let marker = format!("{run}-{t}-{i}");
                    let ev = AuditEvent {
                        details: serde_json::json!({"marker": marker, "pad": "x".repeat(200)}),
                        ..AuditEvent::new(RecordKind::ModelCall)
                    };
                    if i % 3 == 0 {
                        log.append(ev)?; // not acknowledged: may be lost
                        continue;
                    }
                    if i % 4 == 1 {
                        // A call: started (not acknowledged), then ended, or left in flight.
                        let id = decision::DecisionId::new();
                        let start = AuditEvent {
                            decision_id: Some(id.clone()),
                            outcome: Some(Outcome::Started),
                            details: serde_json::json!({"marker": marker}),
                            ..AuditEvent::new(RecordKind::ModelCall)
                        };
                        log.append(start)?;
                        if i % 8 == 1 {
                            continue;
                        }
                        let end = AuditEvent {
                            decision_id: Some(id.clone()),
                            outcome: Some(Outcome::Completed),
                            ..AuditEvent::new(RecordKind::ModelCall)
                        };
                        log.append_durable(end).await?;
                        let mut o = out.lock().map_err(|_| "stdout lock poisoned")?;
                        writeln!(o, "END {id}")?;
                        o.flush()?;
                        continue;
                    }
                    let seq = log.append_durable(ev).await?;
                    let mut o = out.lock().map_err(|_| "stdout lock poisoned")?;
                    writeln!(o, "ACK {seq} {marker}")?;
                    o.flush()?;
                }
                Ok::<(), Error>(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        Ok(())
    })
}

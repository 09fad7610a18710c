//! Crash safety: a child process appends continuously and is SIGKILLed at random points; after
//! every kill the log opens, verifies, and holds every acknowledged record exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit::{AuditEvent, AuditSettings, RecordKind};

const CHILD_ENV: &str = "AUDIT_CRASH_CHILD_DIR";
const KILLS: usize = 55;

/// Child mode (only when re-executed by `sigkill_at_random_points_loses_no_acknowledged_record`):
/// append forever from many tasks; print `ACK <seq> <marker>` after each durable append.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let run: u64 = std::env::var("AUDIT_CRASH_RUN").unwrap().parse().unwrap();
    let settings = AuditSettings {
        group_commit_records: 64,
        segment_max_bytes: 64 * 1024,
        checkpoint_every_records: 300,
        ..AuditSettings::default()
    };
    let log = Arc::new(common::open(std::path::Path::new(&dir), &settings));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let (log, out) = (log.clone(), out.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let marker = format!("{run}-{t}-{i}");
                    let ev = AuditEvent {
                        kind: Some(RecordKind::ModelCall),
                        details: serde_json::json!({"marker": marker, "pad": "x".repeat(200)}),
                        ..AuditEvent::default()
                    };
                    if i % 3 == 0 {
                        log.append(ev).unwrap(); // not acknowledged: may be lost
                        continue;
                    }
                    let seq = log.append_durable(ev).await.unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {seq} {marker}").unwrap();
                    o.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn rand_ms(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    20 + *state % 180
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_record() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut rng = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    for run in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, tmp.path())
            .env("AUDIT_CRASH_RUN", run.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split_whitespace();
                if parts.next() == Some("ACK") {
                    let seq: u64 = parts.next().unwrap().parse().unwrap();
                    got.push((parts.next().unwrap().to_string(), seq));
                }
            }
            got
        });
        std::thread::sleep(Duration::from_millis(rand_ms(&mut rng) + 150));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for (marker, seq) in reader.join().unwrap() {
            assert!(acked.insert(marker, seq).is_none());
        }

        // Every third round the parent also opens, verifies and closes cleanly.
        let log = common::open(tmp.path(), &AuditSettings::default());
        let rep = log.verify();
        assert!(rep.ok, "run {run}: {rep}");
        if run % 3 == 0 || run + 1 == KILLS {
            let all = log.read_from(1, usize::MAX).unwrap();
            assert_eq!(all.len() as u64, log.head(), "gapless");
            let mut by_marker: HashMap<String, Vec<u64>> = HashMap::new();
            for r in &all {
                if let Some(m) = r.details["marker"].as_str() {
                    by_marker.entry(m.to_string()).or_default().push(r.seq);
                }
            }
            for (marker, seq) in &acked {
                assert_eq!(
                    by_marker.get(marker),
                    Some(&vec![*seq]),
                    "run {run}: acked {marker} must be present once at seq {seq}"
                );
            }
        }
    }
    assert!(acked.len() > 1000, "children acknowledged only {} records", acked.len());
}

//! Crash safety: a child process appends continuously and is SIGKILLed at random points; after
//! every kill the log opens, verifies, and holds every acknowledged record exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use audit::AuditSettings;

/// The child: `src/bin/audit_crash_child.rs`, which appends from many tasks and prints
/// `ACK <seq> <marker>` after each durable append until it is killed.
const CHILD: &str = env!("CARGO_BIN_EXE_audit-crash-child");
const KILLS: usize = 55;

fn rand_ms(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    20 + *state % 180
}

#[test]
fn sigkill_at_random_points_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut rng = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    for run in 0..KILLS {
        let mut child = Command::new(CHILD)
            .arg(tmp.path())
            .arg(run.to_string())
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

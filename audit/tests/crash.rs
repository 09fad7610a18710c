//! Crash safety: a child process appends continuously and is SIGKILLed at random points; after
//! every kill the log opens, verifies, and holds every acknowledged record exactly once. Calls
//! the kill caught in flight (a `started` record and no end) are closed at open with exactly
//! one `outcome_unknown` record; calls whose end was acknowledged never are.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod common;

use std::collections::{HashMap, HashSet};
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
    let mut ended: HashSet<String> = HashSet::new();
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
            let mut ends = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut parts = line.split_whitespace();
                match parts.next() {
                    Some("ACK") => {
                        let seq: u64 = parts.next().unwrap().parse().unwrap();
                        got.push((parts.next().unwrap().to_string(), seq));
                    }
                    Some("END") => ends.push(parts.next().unwrap().to_string()),
                    _ => {}
                }
            }
            (got, ends)
        });
        std::thread::sleep(Duration::from_millis(rand_ms(&mut rng) + 150));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (got, ends) = reader.join().unwrap();
        for (marker, seq) in got {
            assert!(acked.insert(marker, seq).is_none());
        }
        ended.extend(ends);

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
            check_spans(run, &all, &ended);
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
    assert!(ended.len() > 100, "children ended only {} calls", ended.len());
}

/// Every `started` record is closed exactly once after it: by its end when that was
/// acknowledged, else by its end or an `outcome_unknown` record that names the start.
fn check_spans(run: usize, all: &[audit::AuditRecord], ended: &HashSet<String>) {
    let mut closes: HashMap<String, Vec<&audit::AuditRecord>> = HashMap::new();
    let mut starts: HashMap<String, u64> = HashMap::new();
    for r in all {
        let Some(id) = &r.decision_id else { continue };
        if r.outcome.as_deref() == Some("started") {
            assert!(starts.insert(id.clone(), r.seq).is_none(), "run {run}: two starts for {id}");
        } else {
            closes.entry(id.clone()).or_default().push(r);
        }
    }
    let mut unknown = 0;
    for (id, seq) in &starts {
        let c = closes.get(id).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(c.len(), 1, "run {run}: start {id} at seq {seq} closed {} times", c.len());
        assert!(c[0].seq > *seq);
        if c[0].outcome.as_deref() == Some("outcome_unknown") {
            unknown += 1;
            assert!(!ended.contains(id), "run {run}: acknowledged end of {id} replaced by outcome_unknown");
            assert_eq!(c[0].details["start_seq"], *seq, "run {run}");
            assert_eq!(c[0].kind, Some(audit::RecordKind::ModelCall));
        } else {
            assert_eq!(c[0].outcome.as_deref(), Some("completed"));
        }
    }
    for id in ended {
        assert!(starts.contains_key(id), "run {run}: acknowledged call {id} has no start record");
    }
    assert!(starts.is_empty() || unknown > 0 || run == 0, "run {run}: no call was ever caught in flight");
}

//! The writer's outage state machine, driven through a `FaultyDisk`: a full disk, a failed
//! fsync, a read-only filesystem and the free-space reserve each fail closed; the writer
//! retries and resumes the same chain (no gap, no fork, the torn tail cut), keeps the records
//! of calls already in flight and drops only refused durable ones, and records the outage.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{AuditError, AuditLog, AuditSettings, Face, FailureCause, FaultyDisk, RecordKind, WriterState};

const BIG: u64 = 1 << 30;

fn settings(disk: &Arc<FaultyDisk>) -> AuditSettings {
    AuditSettings {
        test_disk: Some(disk.clone()),
        reserve_free_bytes: 0,
        retry_max_ms: 40,
        disk_check_ms: 20,
        warn_free_bytes: 0,
        warn_free_ratio: 0.0,
        ..AuditSettings::default()
    }
}

fn open(dir: &std::path::Path, s: &AuditSettings) -> (AuditLog, prometheus::Registry) {
    let db = storage::Store::reopen(&dir.join("db")).unwrap();
    let reg = prometheus::Registry::new();
    (AuditLog::open(&dir.join("audit"), s, &db, &reg).unwrap(), reg)
}

/// Wait (bounded) until the writer is in `state`, for `cause` when one is given.
async fn until_state_for(log: &AuditLog, state: WriterState, cause: Option<FailureCause>) {
    for _ in 0..400 {
        let h = log.health();
        if h.state == state && cause.is_none_or(|c| h.cause == Some(c)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("writer never reached {state:?} ({cause:?}): {:?}", log.health());
}

/// Wait (bounded) until the writer is in `state`.
async fn until_state(log: &AuditLog, state: WriterState) {
    until_state_for(log, state, None).await;
}

fn unavailable(e: AuditError) -> audit::Unavailable {
    match e {
        AuditError::Unavailable(u) => u,
        e => panic!("expected Unavailable, got {e}"),
    }
}

fn metric(reg: &prometheus::Registry, name: &str, label: Option<(&str, &str)>) -> f64 {
    use prometheus::Encoder;
    let mut buf = Vec::new();
    prometheus::TextEncoder::new().encode(&reg.gather(), &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let series = match label {
        Some((k, v)) => format!("{name}{{{k}=\"{v}\"}} "),
        None => format!("{name} "),
    };
    let line = text.lines().find(|l| l.starts_with(&series)).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    line[series.len()..].trim().parse().unwrap()
}

#[tokio::test]
async fn a_full_disk_fails_closed_and_the_chain_resumes_without_a_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new(BIG, BIG);
    let (log, reg) = open(tmp.path(), &settings(&disk));
    for i in 1..=3 {
        assert_eq!(log.append_durable(common::event(i)).await.unwrap(), i);
    }
    assert!(log.admit(Face::Model).is_ok());

    // The disk fills: the next write tears after 100 bytes and fails.
    disk.set_free(100);
    let u = unavailable(log.append_durable(common::event(4)).await.unwrap_err());
    assert_eq!(u.cause, Some(FailureCause::NoSpace));
    assert!(u.to_string().contains("no space left"), "{u}");
    let h = log.health();
    assert_eq!(h.state, WriterState::Failing);
    assert!(h.error.as_deref().unwrap().contains("os error 28"), "{h:?}");
    assert!(h.since.is_some());
    assert_eq!(metric(&reg, "clawbutler_audit_writer_state", Some(("state", "failing"))), 1.0);
    assert!(metric(&reg, "clawbutler_audit_append_errors_total", Some(("cause", "no_space"))) >= 1.0);

    // While failing: durable appends are refused at once, calls are refused and counted, and
    // the records of calls already in flight are kept for later.
    assert!(matches!(log.append_durable(common::event(5)).await, Err(AuditError::Unavailable(_))));
    assert!(log.admit(Face::Model).is_err());
    assert!(log.admit(Face::Mcp).is_err());
    log.append(common::event(6)).unwrap();
    log.append(common::event(7)).unwrap();
    assert!(log.flush().is_err(), "a flush cannot succeed while nothing can be written");
    assert_eq!(log.head(), 3);
    assert_eq!(log.health().refused_calls, 2);

    // Space comes back: the writer notices by itself.
    let freed = Instant::now();
    disk.set_free(BIG);
    until_state(&log, WriterState::Ok).await;
    eprintln!("recovered {} ms after space was freed", freed.elapsed().as_millis());
    log.flush().unwrap();
    assert!(log.admit(Face::Model).is_ok());

    let all = log.read_from(1, 100).unwrap();
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    let markers: Vec<Option<u64>> = all.iter().map(|r| r.details["marker"].as_u64()).collect();
    // 4 and 5 were refused (never written, no seq); 6 and 7 were kept and written in order.
    assert_eq!(markers[..5], [Some(1), Some(2), Some(3), Some(6), Some(7)]);
    let outage = &all[5];
    assert_eq!(outage.kind, Some(RecordKind::AuditOutage));
    assert_eq!(outage.outcome.as_deref(), Some("recovered"));
    assert_eq!(outage.details["cause"], "no_space");
    assert_eq!(outage.details["refused_calls"]["model"], 1);
    assert_eq!(outage.details["refused_calls"]["mcp"], 1);
    assert!(outage.details["duration_ms"].as_u64().is_some());
    assert!(outage.details["failed_attempts"].as_u64().unwrap() >= 1);
    assert_eq!(outage.details["records_rejected"], 2);
    for w in all.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash, "fork at seq {}", w[1].seq);
    }
    let rep = log.verify();
    assert!(rep.ok, "{rep}");
    assert!(rep.warnings.is_empty(), "the torn tail was cut: {rep}");
    drop(log);
    let (log, _) = open(tmp.path(), &settings(&disk));
    assert_eq!(log.head(), 6);
    assert!(log.verify().ok);
}

#[tokio::test]
async fn a_failed_fsync_is_retried_and_nothing_is_written_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new(BIG, BIG);
    let (log, _) = open(tmp.path(), &settings(&disk));
    log.append_durable(common::event(1)).await.unwrap();
    disk.fail_syncs(2);
    // The write reached the page cache but the fsync failed: not acknowledged.
    let u = unavailable(log.append_durable(common::event(2)).await.unwrap_err());
    assert_eq!(u.cause, Some(FailureCause::Io));
    log.append(common::event(3)).unwrap();
    until_state(&log, WriterState::Ok).await;
    log.flush().unwrap();
    let all = log.read_from(1, 100).unwrap();
    let markers: Vec<Option<u64>> = all.iter().map(|r| r.details["marker"].as_u64()).collect();
    assert_eq!(markers, vec![Some(1), Some(3), None]);
    assert_eq!(all[2].details["cause"], "io");
    let rep = log.verify();
    assert!(rep.ok && rep.warnings.is_empty(), "{rep}");
}

#[tokio::test]
async fn a_read_only_filesystem_and_a_torn_checkpoint_recover() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new(BIG, BIG);
    let (log, reg) = open(tmp.path(), &settings(&disk));
    log.append_durable(common::event(1)).await.unwrap();
    // The checkpoint line tears: the checkpoint file must not keep half a line.
    disk.set_free(30);
    assert!(log.checkpoint_now().is_err());
    disk.fail_writes(Some(30));
    disk.set_free(BIG);
    // The writer's next retry meets the read-only disk (polled: it may be off its CPU).
    until_state_for(&log, WriterState::Failing, Some(FailureCause::ReadOnly)).await;
    let h = log.health();
    assert_eq!((h.state, h.cause), (WriterState::Failing, Some(FailureCause::ReadOnly)));
    assert!(metric(&reg, "clawbutler_audit_append_errors_total", Some(("cause", "read_only"))) >= 1.0);
    disk.fail_writes(None);
    until_state(&log, WriterState::Ok).await;
    log.checkpoint_now().unwrap();
    let rep = log.verify();
    assert!(rep.ok && rep.warnings.is_empty(), "{rep}");
    assert_eq!(rep.signed_through, Some(log.head()));
}

#[tokio::test]
async fn the_reserve_stops_writes_before_the_disk_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new(BIG, BIG);
    let s = AuditSettings { reserve_free_bytes: 10_000, ..settings(&disk) };
    let (log, _) = open(tmp.path(), &s);
    log.append_durable(common::event(1)).await.unwrap();
    disk.set_free(10_100);
    let u = unavailable(log.append_durable(common::event(2)).await.unwrap_err());
    assert_eq!(u.cause, Some(FailureCause::Reserve));
    assert!(u.error.contains("reserve_free_bytes"), "{u}");
    // Nothing was written: the reserve is intact.
    assert_eq!(disk.free(), 10_100);
    disk.set_free(BIG);
    until_state(&log, WriterState::Ok).await;
}

#[tokio::test]
async fn the_records_held_during_an_outage_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new(BIG, BIG);
    let s = AuditSettings { outage_queue_records: 3, ..settings(&disk) };
    let (log, reg) = open(tmp.path(), &s);
    disk.set_free(0);
    assert!(log.append_durable(common::event(1)).await.is_err());
    for i in 2..=4 {
        log.append(common::event(i)).unwrap();
    }
    assert!(matches!(log.append(common::event(5)), Err(AuditError::Unavailable(_))));
    assert_eq!(metric(&reg, "clawbutler_audit_records_rejected_total", None), 2.0);
    disk.set_free(BIG);
    until_state(&log, WriterState::Ok).await;
    log.flush().unwrap();
    let markers: Vec<Option<u64>> =
        log.read_from(1, 10).unwrap().iter().map(|r| r.details["marker"].as_u64()).collect();
    assert_eq!(markers, vec![Some(2), Some(3), Some(4), None]);
}

#[tokio::test]
async fn closing_while_the_disk_is_full_gives_up_and_the_next_open_cuts_the_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new(BIG, BIG);
    let (log, _) = open(tmp.path(), &settings(&disk));
    log.append_durable(common::event(1)).await.unwrap();
    disk.set_free(50);
    assert!(log.append_durable(common::event(2)).await.is_err());
    log.append(common::event(3)).unwrap();
    // Dropping must not hang on a disk that stays full.
    let t = Instant::now();
    drop(log);
    assert!(t.elapsed() < Duration::from_secs(30));
    disk.set_free(BIG);
    let (log, _) = open(tmp.path(), &settings(&disk));
    assert_eq!(log.head(), 1, "the record held in memory was lost with the process, as a crash would");
    let rep = log.verify();
    assert!(rep.ok, "{rep}");
    assert_eq!(log.append_durable(common::event(4)).await.unwrap(), 2);
}

#[tokio::test]
async fn the_low_space_warning_fires_before_the_disk_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new(1_000_000, 900_000);
    let s = AuditSettings { warn_free_bytes: 300_000, ..settings(&disk) };
    let (log, reg) = open(tmp.path(), &s);
    let mut events = log.health_events();
    assert!(!log.health().disk.low);
    assert_eq!(metric(&reg, "clawbutler_audit_disk_free_bytes", None), 900_000.0);
    disk.set_free(250_000);
    tokio::time::timeout(Duration::from_secs(10), events.wait_for(|h| h.disk.low)).await.unwrap().unwrap();
    assert_eq!(metric(&reg, "clawbutler_audit_disk_low", None), 1.0);
    // Still writing: the warning comes while there is room to act.
    assert_eq!(log.health().state, WriterState::Ok);
    log.append_durable(common::event(1)).await.unwrap();
    // The ratio alone also warns.
    drop(log);
    let s = AuditSettings { warn_free_bytes: 0, warn_free_ratio: 0.5, ..settings(&disk) };
    disk.set_free(400_000);
    let (log, _) = open(tmp.path(), &s);
    assert!(log.health().disk.low);
}

#[tokio::test]
async fn search_finds_every_record_written_after_an_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = FaultyDisk::new(BIG, BIG);
    let s = AuditSettings { reserve_free_bytes: 10_000, ..settings(&disk) };
    let (log, _) = open(tmp.path(), &s);
    let model = |i: u64| audit::AuditEvent { kind: RecordKind::ModelCall, ..common::event(i) };
    for i in 0..40 {
        log.append(model(i)).unwrap();
    }
    log.flush().unwrap();
    disk.set_free(10_100);
    for i in 40..50 {
        log.append(model(i)).unwrap();
    }
    until_state(&log, WriterState::Failing).await;
    disk.set_free(BIG);
    until_state(&log, WriterState::Ok).await;
    for i in 50..60 {
        log.append(model(i)).unwrap();
    }
    log.flush().unwrap();
    let all: Vec<u64> = log.read_from(1, 1000).unwrap().iter().map(|r| r.seq).collect();
    assert_eq!(all.len(), 61);
    let q = audit::AuditQuery { kind: Some(RecordKind::ModelCall), limit: Some(1000), ..Default::default() };
    let found: Vec<u64> = log.search(&q).unwrap().items.iter().map(|r| r.seq).collect();
    assert_eq!(found.len(), 60, "{found:?}");
}

//! Shared helpers for the audit integration tests.
#![allow(dead_code, clippy::manual_is_multiple_of)]

use std::path::Path;

use audit::{AuditEvent, AuditLog, AuditSettings, RecordKind};
use decision::{Action, Risk};

/// Open the log in `dir`. Tests open it again right after [`build`] closed it, and sled lets
/// go of the store's lock a moment after its last handle: `reopen` waits for that.
pub fn open(dir: &Path, settings: &AuditSettings) -> AuditLog {
    let db = storage::Store::reopen(&dir.join("db")).unwrap();
    AuditLog::open(&dir.join("audit"), settings, &db, &prometheus::Registry::new()).unwrap()
}

pub fn event(i: u64) -> AuditEvent {
    AuditEvent {
        agent: Some(format!("agent-{}", i % 4)),
        trace_id: Some(format!("trace-{}", i / 5)),
        action: Some(if i % 7 == 0 { Action::Deny } else { Action::Allow }),
        risk: Some(if i % 7 == 0 { Risk::High } else { Risk::Low }),
        reason: Some(format!("reason number {i}")),
        subject: serde_json::json!({"model": "gpt-4o", "i": i}),
        details: serde_json::json!({"marker": i}),
        ..AuditEvent::new(if i % 3 == 0 { RecordKind::Exec } else { RecordKind::ModelCall })
    }
}

/// Write `n` records (seq 1..=n) with a checkpoint every `cp_every`, then close cleanly.
pub fn build(dir: &Path, n: u64, cp_every: u64) {
    let settings =
        AuditSettings { checkpoint_every_records: cp_every, group_commit_records: 8, ..AuditSettings::default() };
    let log = open(dir, &settings);
    for i in 1..=n {
        log.append(event(i)).unwrap();
        if i % 4 == 0 {
            log.flush().unwrap();
        }
    }
    log.flush().unwrap();
    assert_eq!(log.head(), n);
    drop(log);
}

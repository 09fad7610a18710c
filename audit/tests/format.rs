//! The record format stays readable across versions: a log written before `charged_usd`,
//! `usage.server_tool_calls` and spans existed still verifies, and every one of its records
//! re-serialises to exactly the bytes that were hashed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod common;

use std::path::Path;

use audit::{AuditEvent, AuditRecord, Outcome, RecordKind, Usage};

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/log-v1"))
}

#[test]
fn a_log_written_by_the_previous_format_verifies_and_round_trips() {
    let dir = fixture();
    let rep = audit::verify_dir(dir, Some(&dir.join("audit-pubkey.pem")));
    assert!(rep.ok, "{rep}");
    assert_eq!(rep.records, 11);
    let text = std::fs::read_to_string(dir.join(audit::segment_name(1))).unwrap();
    for line in text.lines() {
        let rec: AuditRecord = serde_json::from_str(line).unwrap();
        assert_eq!(rec.charged_usd, None);
        // Canonical bytes = the line without its `,"hash":"…"` suffix, closed again.
        let want = format!("{}}}", &line[..line.len() - 75]);
        assert_eq!(String::from_utf8(rec.canonical_bytes().unwrap()).unwrap(), want, "seq {}", rec.seq);
    }
}

#[test]
fn charged_usd_and_server_tool_calls_are_hashed_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let log = common::open(tmp.path(), &Default::default());
    let ev = AuditEvent {
        usage: Some(Usage { input_tokens: 10, output_tokens: 2, server_tool_calls: 3, ..Default::default() }),
        cost_usd: Some(0.25),
        charged_usd: Some(0.5),
        outcome: Some(Outcome::Completed),
        ..AuditEvent::new(RecordKind::ModelCall)
    };
    log.append(ev).unwrap();
    let seq = 1;
    let zero = AuditEvent { usage: Some(Usage::default()), ..AuditEvent::new(RecordKind::ModelCall) };
    log.append(zero).unwrap();
    log.flush().unwrap();
    let r = log.get(seq).unwrap().unwrap();
    assert_eq!(r.charged_usd, Some(0.5));
    assert_eq!(r.usage.as_ref().unwrap().server_tool_calls, 3);
    drop(log);
    let seg = std::fs::read_to_string(tmp.path().join("audit").join(audit::segment_name(1))).unwrap();
    let lines: Vec<&str> = seg.lines().collect();
    assert!(lines[0].contains(r#""charged_usd":0.5,"cost_usd":0.25"#), "{}", lines[0]);
    assert!(lines[0].contains(r#""server_tool_calls":3"#), "{}", lines[0]);
    // Zero server tool calls and no charge leave the fields out (the old canonical form).
    assert!(!lines[1].contains("server_tool_calls") && !lines[1].contains("charged_usd"), "{}", lines[1]);
    let rep = audit::verify_dir(&tmp.path().join("audit"), None);
    assert!(rep.ok, "{rep}");
    // Tampering with the charge breaks the chain at that record.
    std::fs::write(
        tmp.path().join("audit").join(audit::segment_name(1)),
        seg.replacen(r#""charged_usd":0.5"#, r#""charged_usd":0.0"#, 1),
    )
    .unwrap();
    let rep = audit::verify_dir(&tmp.path().join("audit"), None);
    assert!(!rep.ok);
    assert_eq!(rep.first_bad_seq, Some(seq));
}

//! Spans: calls that are recorded when they start and again when they end, so that a crash
//! in between leaves "started, outcome unknown" instead of nothing.
//!
//! A record whose outcome is `started` opens a span keyed by its `decision_id`; the next record
//! of the same kind with that decision id (and any other outcome) closes it. The writer keeps
//! the open spans in memory (one hash lookup per record that carries a decision id) and, at
//! every checkpoint, saves them to `open-spans.json` together with the seq they are valid
//! through. Opening the log loads that file and replays only the records after it (the
//! unsigned tail, at most one checkpoint interval), so finding the calls a crash left open
//! never reads the whole log. Each is then closed with an `outcome_unknown` record.
//!
//! The file is written to a temporary name, fsynced and renamed at checkpoint time (never on a
//! caller's path), so it is either the previous complete version or the new one; an older
//! version only makes the replay longer. If it is missing (a log written before spans
//! existed, which has none) the replay starts after the last checkpoint.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::event::{Outcome, RecordKind};
use crate::record::AuditRecord;

/// File name of the saved open spans inside the log directory.
pub const SPANS_FILE: &str = "open-spans.json";

/// One open span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpenSpan {
    pub seq: u64,
    pub decision_id: String,
    #[serde(default)]
    pub kind: Option<RecordKind>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    through_seq: u64,
    open: Vec<OpenSpan>,
}

/// The span fields of a stored line, parsed without building the whole record.
#[derive(Deserialize)]
struct LineSpan<'a> {
    seq: u64,
    #[serde(default)]
    kind: Option<RecordKind>,
    #[serde(borrow, default)]
    decision_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
}

/// The open spans, by decision id.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    open: HashMap<String, (Option<RecordKind>, u64)>,
}

impl Spans {
    fn apply(&mut self, seq: u64, kind: Option<RecordKind>, decision_id: Option<&str>, outcome: Option<&str>) {
        let Some(id) = decision_id else { return };
        if outcome == Some(Outcome::Started.as_str()) {
            self.open.insert(id.to_string(), (kind, seq));
        } else if self.open.get(id).is_some_and(|(k, _)| *k == kind) {
            self.open.remove(id);
        }
    }

    /// Account for a record the writer is about to write.
    pub fn observe(&mut self, r: &AuditRecord) {
        if r.decision_id.is_some() {
            self.apply(r.seq, r.kind, r.decision_id.as_deref(), r.outcome.as_deref());
        }
    }

    /// Account for a stored line (recovery); lines that do not parse are skipped.
    pub fn observe_line(&mut self, line: &[u8]) {
        if let Ok(l) = serde_json::from_slice::<LineSpan<'_>>(line) {
            self.apply(l.seq, l.kind, l.decision_id.as_deref(), l.outcome.as_deref());
        }
    }

    /// The open spans, oldest first.
    pub fn list(&self) -> Vec<OpenSpan> {
        let mut v: Vec<OpenSpan> = self
            .open
            .iter()
            .map(|(id, (kind, seq))| OpenSpan { seq: *seq, decision_id: id.clone(), kind: *kind })
            .collect();
        v.sort_by_key(|s| s.seq);
        v
    }

    /// Save the open spans as valid through `through_seq` (checkpoint time).
    pub fn save(&self, dir: &Path, through_seq: u64) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(&Saved { through_seq, open: self.list() }).map_err(std::io::Error::other)?;
        let tmp = dir.join(format!("{SPANS_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        std::fs::rename(&tmp, dir.join(SPANS_FILE))
    }

    /// The saved spans and the seq they are valid through; `None` if there is no usable file.
    pub fn load(dir: &Path) -> Option<(Spans, u64)> {
        let bytes = std::fs::read(dir.join(SPANS_FILE)).ok()?;
        let saved: Saved = serde_json::from_slice(&bytes).ok()?;
        let mut s = Spans::default();
        for o in saved.open {
            s.open.insert(o.decision_id, (o.kind, o.seq));
        }
        Some((s, saved.through_seq))
    }
}

/// The record that closes a span a crash left open, copying what the start said about the call.
pub(crate) fn unknown_outcome_record(span: &OpenSpan, start: Option<&AuditRecord>) -> AuditRecord {
    let mut details = serde_json::json!({ "start_seq": span.seq });
    crate::mask::canonicalize(&mut details);
    let base = AuditRecord {
        kind: span.kind,
        decision_id: Some(span.decision_id.clone()),
        actor: Some("system".into()),
        outcome: Some(Outcome::OutcomeUnknown.as_str().into()),
        reason: Some(
            "the sidecar stopped (crash, SIGKILL or power loss) while this call was in flight; \
             its outcome and cost are unknown"
                .into(),
        ),
        details,
        ..AuditRecord::default()
    };
    match start {
        Some(s) => AuditRecord {
            bundle_revision: s.bundle_revision.clone(),
            trace_id: s.trace_id.clone(),
            agent: s.agent.clone(),
            session: s.session.clone(),
            action: s.action,
            rule: s.rule.clone(),
            risk: s.risk,
            subject: s.subject.clone(),
            ..base
        },
        None => base,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, kind: RecordKind, id: &str, outcome: &str) -> AuditRecord {
        AuditRecord {
            seq,
            kind: Some(kind),
            decision_id: Some(id.into()),
            outcome: Some(outcome.into()),
            ..AuditRecord::default()
        }
    }

    #[test]
    fn a_span_closes_only_on_the_same_kind_and_id() {
        let mut s = Spans::default();
        s.observe(&rec(1, RecordKind::ModelCall, "a", "started"));
        s.observe(&rec(2, RecordKind::ModelCall, "b", "started"));
        // An approval about the same decision does not end the call.
        s.observe(&rec(3, RecordKind::Approval, "a", "allowed"));
        s.observe(&rec(4, RecordKind::ModelCall, "b", "completed"));
        assert_eq!(s.list(), vec![OpenSpan { seq: 1, decision_id: "a".into(), kind: Some(RecordKind::ModelCall) }]);
        let line = br#"{"decision_id":"a","kind":"model_call","outcome":"cancelled","seq":5}"#;
        s.observe_line(line);
        assert!(s.list().is_empty());
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Spans::load(dir.path()).is_none());
        let mut s = Spans::default();
        s.observe(&rec(7, RecordKind::ModelCall, "x", "started"));
        s.save(dir.path(), 9).unwrap();
        let (back, through) = Spans::load(dir.path()).unwrap();
        assert_eq!(through, 9);
        assert_eq!(back.list(), s.list());
        std::fs::write(dir.path().join(SPANS_FILE), b"{torn").unwrap();
        assert!(Spans::load(dir.path()).is_none());
    }
}

//! The broker's side of the fleet inbox, with a recording link instead of PostgreSQL: holds
//! and local transitions are written to the inbox, decisions are refused locally, a decision
//! taken in the inbox releases the call (and creates its grant) exactly once, and at expiry a
//! decision that won in the inbox first is applied instead of the expiry, while an inbox that
//! does not answer lets the call expire (fail closed).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use decision::{Action, CallKind, Decision, Risk};
use serde_json::json;

use super::fleet::{prepare, ExpireFut};
use super::*;

#[derive(Default)]
pub(super) struct Recording {
    written: Mutex<Vec<Approval>>,
    /// What the inbox answers at expiry: a decision that won there first, or none.
    won: Mutex<Option<RemoteDecision>>,
    asked_at_expiry: Mutex<Vec<String>>,
}

impl InboxLink for Recording {
    fn write(&self, a: &Approval) {
        self.written.lock().unwrap().push(a.clone());
    }

    fn expire<'a>(&'a self, expired: &'a Approval) -> ExpireFut<'a> {
        Box::pin(async move {
            assert_eq!(expired.status, Status::Expired);
            self.asked_at_expiry.lock().unwrap().push(expired.id.clone());
            self.won.lock().unwrap().clone()
        })
    }
}

pub(super) fn broker(dir: &std::path::Path) -> (Broker, Arc<Recording>) {
    let db = storage::Store::open(&dir.join("state")).unwrap();
    let reg = prometheus::Registry::new();
    let audit = Arc::new(audit::AuditLog::open(&dir.join("audit"), &Default::default(), &db, &reg).unwrap());
    let b = Broker::open(&db, &ApprovalSettings::default(), audit, &reg).unwrap();
    let link = Arc::new(Recording::default());
    b.set_inbox(link.clone());
    (b, link)
}

pub(super) fn hold_req(ttl_s: u64) -> HoldRequest {
    let mut decision = Decision::synthetic(Action::Hold, "test.hold", "needs a human", Risk::High);
    decision.obligations.hold_ttl_s = Some(ttl_s);
    HoldRequest {
        kind: CallKind::ModelCall,
        agent: "main".into(),
        session: None,
        trace_id: "trace-1".into(),
        decision,
        subject: json!({"model": "needs-approval-1"}),
        cost_estimate_usd: None,
        external_id: None,
        grant_pattern: "needs-approval-1".into(),
        grant_args: None,
        cautions: Vec::new(),
    }
}

fn decide_req(decision: DecisionKind, version: u64) -> DecideRequest {
    DecideRequest { decision, expected_version: version, reason: Some("from sidecar b".into()), scope: None }
}

/// A broker with a recording inbox holding one call (expiring in `ttl_s`); the temp dir
/// lives as long as the broker.
fn holding(ttl_s: u64) -> (tempfile::TempDir, Broker, Arc<Recording>, Held, Approval) {
    let dir = tempfile::tempdir().unwrap();
    let (b, link) = broker(dir.path());
    let held = b.hold(hold_req(ttl_s)).unwrap();
    let pending = held.approval().clone();
    (dir, b, link, held, pending)
}

#[tokio::test]
async fn a_decision_taken_in_the_inbox_releases_the_held_call_once_with_its_grant() {
    let (_dir, b, link, held, pending) = holding(600);
    assert_eq!(link.written.lock().unwrap().clone(), vec![pending.clone()], "the hold is written to the inbox");
    assert_eq!(b.live_ids(), vec![pending.id.clone()]);

    // Locally nothing decides in fleet mode: one winner needs the inbox.
    let err = b.decide(&pending.id, &decide_req(DecisionKind::AllowOnce, 1), "x").await.unwrap_err();
    assert!(err.to_string().contains("fleet inbox"), "{err}");

    let p = prepare(&pending, &decide_req(DecisionKind::AllowAlways, 1), "bea").unwrap();
    let gid = p.approval.grant_id.clone().expect("allow-always names its grant");
    let remote = RemoteDecision { approval: p.approval, grant_scope: p.grant_scope };
    let res = b.apply_remote(remote.clone()).await.expect("the call was held here");
    assert!(res.is_allowed());
    assert_eq!(res.approval.decided_by.as_deref(), Some("bea"));
    assert_eq!(res.approval.decided_at, remote.approval.decided_at, "the inbox's decision time");
    let got = tokio::time::timeout(Duration::from_secs(5), held).await.unwrap();
    assert!(got.is_allowed() && got.message().contains("approved by bea"), "{}", got.message());
    assert_eq!(b.grant(&gid).map(|g| g.scope.pattern), Some("needs-approval-1".to_string()));
    assert_eq!(b.apply_remote(remote).await, None, "a second delivery changes nothing");
    assert_eq!(link.written.lock().unwrap().len(), 1, "a decision from the inbox is not written back");
    assert!(b.live_ids().is_empty());
}

#[tokio::test]
async fn at_expiry_a_decision_that_won_in_the_inbox_first_is_applied_instead() {
    let (_dir, b, link, held, pending) = holding(1);
    let p = prepare(&pending, &decide_req(DecisionKind::AllowOnce, 1), "bea").unwrap();
    *link.won.lock().unwrap() = Some(RemoteDecision { approval: p.approval, grant_scope: None });
    let got = tokio::time::timeout(Duration::from_secs(5), held).await.unwrap();
    assert_eq!(link.asked_at_expiry.lock().unwrap().clone(), vec![pending.id.clone()]);
    assert!(got.is_allowed(), "the inbox's decision, not the expiry: {}", got.message());
    assert_eq!(b.get(&pending.id).unwrap().unwrap().status, Status::Allowed);
}

#[tokio::test]
async fn at_expiry_with_no_decision_in_the_inbox_the_call_is_denied_and_the_expiry_written() {
    let (_dir, b, link, held, pending) = holding(1);
    let id = pending.id;
    let got = tokio::time::timeout(Duration::from_secs(5), held).await.unwrap();
    assert_eq!(got.approval.status, Status::Expired, "fail closed");
    let written = link.written.lock().unwrap().clone();
    assert_eq!(written.iter().map(|a| a.status).collect::<Vec<_>>(), vec![Status::Pending, Status::Expired]);
    assert!(written.iter().all(|a| a.id == id));

    // A caller that goes away (it waited a moment, then left): its cancellation is written too.
    let mut held = b.hold(hold_req(600)).unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(20), &mut held).await.is_err());
    drop(held);
    let last = link.written.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.status, Status::Cancelled);
}

#[test]
fn prepare_checks_a_decision_as_a_local_one_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let pending = rt.block_on(async { broker(dir.path()).0.hold(hold_req(600)).unwrap().approval().clone() });
    let stale = prepare(&pending, &decide_req(DecisionKind::Deny, 2), "bea").unwrap_err();
    assert!(matches!(stale, BrokerError::Conflict(_)), "{stale}");
    let mut long = decide_req(DecisionKind::Deny, 1);
    long.reason = Some("x".repeat(2001));
    assert!(matches!(prepare(&pending, &long, "bea"), Err(BrokerError::Invalid(_))));
    let mut scoped = decide_req(DecisionKind::Deny, 1);
    scoped.scope = Some(ScopeInput::default());
    assert!(matches!(prepare(&pending, &scoped, "bea"), Err(BrokerError::Invalid(_))));
    let ok = prepare(&pending, &decide_req(DecisionKind::Deny, 1), "bea").unwrap();
    assert_eq!((ok.approval.status, ok.approval.version, ok.approval.grant_id.clone()), (Status::Denied, 2, None));
    let decided = ok.approval;
    assert!(matches!(prepare(&decided, &decide_req(DecisionKind::AllowOnce, 2), "x"), Err(BrokerError::Conflict(_))));
}

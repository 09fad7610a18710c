//! A hold registered just after its agent was stopped (the kill's sweep of held calls ran
//! before the hold existed, the caller's kill check before the kill): the broker reads the
//! flag again and denies it at once, naming the kill; another agent's hold, and a config
//! change (not a call the kill switch stops), stay pending.

use std::sync::Arc;
use std::time::Duration;

use super::fleet_tests::hold_req;
use super::*;
use crate::kill::KillEntry;

#[tokio::test]
async fn a_hold_registered_after_its_agent_was_stopped_is_denied_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = storage::Store::open(&dir.path().join("state")).unwrap();
    let reg = prometheus::Registry::new();
    let audit = Arc::new(audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &reg).unwrap());
    let b = Broker::open(&db, &ApprovalSettings::default(), audit, &reg).unwrap();
    let kill = Arc::new(crate::KillSwitch::open(&db, &reg).unwrap());
    b.watch_kill(kill.clone());
    // The kill lands, and its sweep finds nothing held yet (what `deny_all_for_agent` sees).
    kill.kill("main", KillEntry::now("runaway loop", "ops")).unwrap();
    assert!(b.deny_all_for_agent("main", "kill switch: runaway loop", "ops").await.is_empty());

    let mut other = hold_req(600);
    other.agent = "ops".into();
    let other = b.hold(other).unwrap();
    let mut rollback = hold_req(600);
    rollback.kind = decision::CallKind::ConfigRollback;
    let rollback = b.hold(rollback).unwrap();
    let held = b.hold(hold_req(600)).unwrap();
    let id = held.approval().id.clone();
    let res = tokio::time::timeout(Duration::from_secs(5), held).await.expect("answered at once");
    assert!(!res.is_allowed());
    assert_eq!(res.approval.status, Status::Denied);
    let why = res.approval.decision_reason.clone().unwrap_or_default();
    assert!(why.contains("stopped by the kill switch: runaway loop"), "{why}");
    assert_eq!(b.get(&id).unwrap().unwrap().status, Status::Denied, "stored denied");
    let mut waiting = vec![other.approval().id.clone(), rollback.approval().id.clone()];
    waiting.sort();
    let mut live = b.live_ids();
    live.sort();
    assert_eq!(live, waiting, "the other agent's hold and the config change wait on");
}

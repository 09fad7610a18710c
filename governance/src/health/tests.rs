use std::sync::Arc;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    audit: Arc<audit::AuditLog>,
    registry: prometheus::Registry,
    tracker: HealthTracker,
    sub: tokio::sync::broadcast::Receiver<Arc<audit::AuditRecord>>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = storage::Store::open(&dir.path().join("state")).unwrap();
    let audit = Arc::new(
        audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &prometheus::Registry::new())
            .unwrap(),
    );
    let registry = prometheus::Registry::new();
    let tracker = HealthTracker::new(audit.clone(), &registry).unwrap();
    let sub = audit.subscribe();
    Fixture { _dir: dir, audit, registry, tracker, sub }
}

impl Fixture {
    /// The health records written since the last call: (agent, outcome, reason).
    fn changes(&mut self) -> Vec<(String, String, String)> {
        self.audit.flush().unwrap();
        let mut out = Vec::new();
        while let Ok(r) = self.sub.try_recv() {
            if r.kind == Some(audit::RecordKind::Health) {
                out.push((
                    r.agent.clone().unwrap_or_default(),
                    r.outcome.clone().unwrap_or_default(),
                    r.reason.clone().unwrap_or_default(),
                ));
            }
        }
        out
    }

    fn gauge(&self, health: &str) -> i64 {
        let fams = self.registry.gather();
        let fam = fams.iter().find(|f| f.name() == "clawbutler_agents").unwrap();
        let m = fam.get_metric().iter().find(|m| m.get_label()[0].value() == health).unwrap();
        m.get_gauge().get_value() as i64
    }

    fn health(&self, agent: &str) -> Health {
        self.tracker.view(agent).unwrap().health
    }
}

#[test]
fn failing_calls_degrade_and_successes_recover_with_one_record_each() {
    let mut f = fixture();
    f.tracker.record_call("main", "openai", Ok(()));
    assert_eq!(f.health("main"), Health::Healthy);
    assert!(f.tracker.view("main").unwrap().last_activity.is_some());
    for _ in 0..2 {
        f.tracker.record_call("main", "openai", Err(CallFailure::Status(500)));
    }
    assert_eq!(f.health("main"), Health::Healthy, "two failures are noise");
    f.tracker.record_call("main", "openai", Err(CallFailure::Timeout));
    let v = f.tracker.view("main").unwrap();
    assert_eq!(v.health, Health::Degraded);
    let reason = v.reason.unwrap();
    assert!(reason.contains("3 of its last 4 calls failed") && reason.contains("timed out"), "{reason}");
    assert_eq!(f.tracker.upstream_failing("openai"), Some((3, 4)), "the upstream's calls fail too");
    assert_eq!((f.gauge("healthy"), f.gauge("degraded")), (0, 1));
    for _ in 0..3 {
        f.tracker.record_call("main", "openai", Ok(()));
    }
    assert_eq!(f.health("main"), Health::Healthy);
    let changes = f.changes();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!((changes[0].1.as_str(), changes[1].1.as_str()), ("degraded", "healthy"));
    assert!(changes[1].2.contains("last 3 calls succeeded"), "{changes:?}");
    assert_eq!(f.tracker.upstream_failing("openai"), None);
}

#[test]
fn link_down_takes_only_roster_members_offline_and_back() {
    let mut f = fixture();
    f.tracker.record_call("data-only", "openai", Ok(()));
    f.tracker.roster(&["main".into(), "ops".into()]);
    assert_eq!(f.tracker.views().len(), 3);
    f.tracker.link_changed(false, "link lost: no pong within 5000 ms");
    assert_eq!(
        (f.health("main"), f.health("ops"), f.health("data-only")),
        (Health::Offline, Health::Offline, Health::Healthy)
    );
    let down = f.changes();
    assert_eq!(down.len(), 2, "{down:?}");
    assert!(down.iter().all(|c| c.1 == "offline" && c.2.contains("no pong")), "{down:?}");
    assert_eq!(f.gauge("offline"), 2);
    // Calls while offline do not bring it back: only the link does.
    for _ in 0..3 {
        f.tracker.record_call("main", "openai", Ok(()));
    }
    assert_eq!(f.health("main"), Health::Offline);
    f.tracker.link_changed(true, "");
    assert_eq!(f.health("main"), Health::Healthy);
    let up = f.changes();
    assert_eq!(up.len(), 2);
    assert!(up.iter().all(|c| c.1 == "healthy" && c.2.contains("link is up")), "{up:?}");
}

#[test]
fn an_agent_the_gateway_no_longer_lists_is_offline_until_listed_again() {
    let mut f = fixture();
    f.tracker.roster(&["main".into(), "ops".into()]);
    f.tracker.roster(&["main".into()]);
    assert_eq!(f.health("ops"), Health::Offline);
    assert!(f.tracker.view("ops").unwrap().reason.unwrap().contains("no longer lists"));
    // Not a member any more: a link drop does not concern it, and listing it again heals it.
    f.tracker.roster(&["main".into(), "ops".into()]);
    assert_eq!(f.health("ops"), Health::Healthy);
    assert_eq!(f.changes().len(), 2);
}

#[test]
fn an_errored_run_degrades_until_a_run_ends_well_and_tool_failures_count() {
    let mut f = fixture();
    f.tracker.run_ended("main", Some("model call failed: 500"));
    let v = f.tracker.view("main").unwrap();
    assert_eq!(v.health, Health::Degraded);
    assert!(v.reason.unwrap().contains("its last run failed: model call failed: 500"));
    f.tracker.run_ended("main", None);
    assert_eq!(f.health("main"), Health::Healthy);
    for _ in 0..3 {
        f.tracker.record_tool("main", Err("exec failed: exit 127".into()));
    }
    let v = f.tracker.view("main").unwrap();
    assert_eq!(v.health, Health::Degraded);
    assert!(v.reason.unwrap().contains("exec failed: exit 127"));
    assert_eq!(f.changes().len(), 3);
}

#[test]
fn sweep_reports_nothing_when_nothing_changed() {
    let mut f = fixture();
    f.tracker.record_call("main", "openai", Err(CallFailure::Unreachable));
    f.tracker.sweep();
    assert!(f.changes().is_empty());
    assert_eq!(CallFailure::decode(CallFailure::Status(503).encode()), Some(CallFailure::Status(503)));
}

#[test]
fn an_agent_removed_while_the_link_was_down_stays_offline_with_the_new_reason() {
    let mut f = fixture();
    f.tracker.roster(&["main".into(), "ops".into()]);
    f.tracker.link_changed(false, "link lost: socket ended");
    // The link is back: the roster is re-read first, then the link counts as up.
    f.tracker.roster(&["main".into()]);
    f.tracker.link_changed(true, "");
    assert_eq!((f.health("main"), f.health("ops")), (Health::Healthy, Health::Offline));
    assert!(f.tracker.view("ops").unwrap().reason.unwrap().contains("no longer lists"));
    let changes = f.changes();
    assert_eq!(changes.iter().filter(|c| c.0 == "ops").count(), 1, "offline once, never a false healthy: {changes:?}");
}

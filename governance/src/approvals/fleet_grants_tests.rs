//! The broker's side of fleet grants, with an in-memory link instead of PostgreSQL: grants
//! made and revoked through the API go to the fleet (never the local store), the set the
//! fleet hands over applies on the data path, expired ones do not, an allow-always decided in
//! the inbox applies here at once without a local copy, an empty set (the TTL's drop) removes
//! them all, and a link that does not answer refuses the change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use decision::CallKind;

use super::fleet::prepare;
use super::fleet_grants::GrantFut;
use super::*;

#[derive(Default)]
struct Memory {
    rows: Mutex<BTreeMap<String, Grant>>,
    down: Mutex<bool>,
}

impl Memory {
    fn all(&self) -> Vec<Grant> {
        self.rows.lock().unwrap().values().cloned().collect()
    }
    fn check(&self) -> Result<(), BrokerError> {
        if *self.down.lock().unwrap() {
            return Err(BrokerError::Unavailable("no answer".into()));
        }
        Ok(())
    }
}

impl GrantLink for Memory {
    fn create<'a>(&'a self, g: &'a Grant) -> GrantFut<'a, Grant> {
        Box::pin(async move {
            self.check()?;
            let mut g = g.clone();
            g.sidecar.get_or_insert_with(|| "sc-x".into());
            Ok(self.rows.lock().unwrap().entry(g.id.clone()).or_insert(g).clone())
        })
    }
    fn revoke<'a>(&'a self, id: &'a str) -> GrantFut<'a, Option<Grant>> {
        Box::pin(async move {
            self.check()?;
            Ok(self.rows.lock().unwrap().remove(id))
        })
    }
}

/// A fleet-mode broker (a recording inbox) with an in-memory grant link.
fn broker(dir: &std::path::Path) -> (Broker, Arc<Memory>) {
    let (b, _inbox) = super::fleet_tests::broker(dir);
    let link = Arc::new(Memory::default());
    b.set_grant_link(link.clone());
    (b, link)
}

fn input(agent: &str, pattern: &str) -> ScopeInput {
    ScopeInput {
        agent: Some(agent.into()),
        kind: Some(CallKind::ModelCall),
        pattern: Some(pattern.into()),
        ..ScopeInput::default()
    }
}

fn ids(b: &Broker, agent: &str) -> Vec<String> {
    b.grants_for(agent).into_iter().map(|g| g.id).collect()
}

#[tokio::test]
async fn api_grants_go_to_the_fleet_and_apply_from_the_set_it_hands_over() {
    let dir = tempfile::tempdir().unwrap();
    let (b, link) = broker(dir.path());
    let g = b.create_grant(&input("main", "gpt-4o"), "bea").await.unwrap();
    assert_eq!(g.sidecar.as_deref(), Some("sc-x"), "the grant as the fleet stored it");
    assert!(b.grants().is_empty(), "nothing in the local store");
    assert_eq!(link.all(), vec![g.clone()]);

    b.set_fleet_grants(link.all());
    assert_eq!(ids(&b, "main"), vec![g.id.clone()]);
    assert!(ids(&b, "ops").is_empty(), "only for the agent it names");
    assert_eq!(b.grant(&g.id).map(|x| x.id), Some(g.id.clone()));

    // An expired fleet grant is listed but never applied.
    let mut old = g.clone();
    old.id = grants::new_id();
    old.scope.expires_at = Some("2000-01-01T00:00:00Z".into());
    b.set_fleet_grants(vec![g.clone(), old.clone()]);
    assert_eq!(ids(&b, "main"), vec![g.id.clone()]);
    assert_eq!(b.fleet_grants().len(), 2);

    // The TTL's drop: an empty set applies nothing.
    b.set_fleet_grants(Vec::new());
    assert!(ids(&b, "main").is_empty());

    // Revoked through this sidecar: gone from the fleet; unknown ids are 404s.
    assert_eq!(b.revoke_grant(&g.id, "bea").await.unwrap().id, g.id);
    assert!(link.all().is_empty());
    assert!(matches!(b.revoke_grant(&g.id, "bea").await, Err(BrokerError::NotFound(_))));

    // A fleet that does not answer: refused, nothing changed.
    *link.down.lock().unwrap() = true;
    let e = b.create_grant(&input("main", "gpt-4o"), "bea").await.unwrap_err();
    assert!(matches!(e, BrokerError::Unavailable(_)), "{e}");
    assert!(link.all().is_empty() && b.grants().is_empty());
}

#[tokio::test]
async fn an_allow_always_from_the_inbox_applies_here_at_once_without_a_local_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _link) = broker(dir.path());
    let held = b.hold(super::fleet_tests::hold_req(600)).unwrap();
    let req = DecideRequest { decision: DecisionKind::AllowAlways, expected_version: 1, reason: None, scope: None };
    let p = prepare(held.approval(), &req, "bea").unwrap();
    let gid = p.approval.grant_id.clone().unwrap();
    let res = b.apply_remote(RemoteDecision { approval: p.approval, grant_scope: p.grant_scope }).await.unwrap();
    assert_eq!(res.grant.map(|g| g.id), Some(gid.clone()));
    assert!(held.await.is_allowed());
    assert_eq!(ids(&b, "main"), vec![gid], "in force here before the next read");
    assert!(b.grants().is_empty(), "the fleet holds it, not the local store");
}

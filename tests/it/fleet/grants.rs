//! Fleet-wide grants on a real PostgreSQL with three sidecars: an allow-always decided on B
//! lets the next matching call through on A without a hold, C lists the grant with the
//! sidecar that created it, a revoke on A makes B hold again, an expiring grant stops applying
//! everywhere at its expiry, and a sidecar cut off from the database drops the fleet's grants
//! after the heartbeat TTL (fail closed) and applies them again once it reads them. The first
//! test also measures propagation (create / revoke on B until A applies it) and prints
//! p50/p99/max.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use testkit::http::{get, post_json, send, HttpResponse};
use testkit::postgres::PgCluster;
use testkit::rig::{bearer, reply_text, Rig, ADMIN};
use testkit::wait::until;

use super::kill::{pct, wait_until};

fn applies(rig: &Rig, agent: &str, id: &str) -> bool {
    rig.sidecar.broker().grants_for(agent).iter().any(|g| g.id == id)
}

/// Wait (within the connected bound, polling every millisecond) until `rig` applies grant
/// `id` of `agent` (`on`) or no longer does.
async fn wait_applied(rig: &Rig, agent: &str, id: &str, on: bool) -> Duration {
    wait_until("the grant change reaches the sidecar", || applies(rig, agent, id) == on).await
}

async fn create(rig: &Rig, body: &Value) -> Value {
    let r = post_json(&rig.control("/api/v1/grants"), &bearer(ADMIN), body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

async fn revoke(rig: &Rig, id: &str) -> HttpResponse {
    send(Method::DELETE, &rig.control(&format!("/api/v1/grants/{id}")), &bearer(ADMIN), Bytes::new()).await
}

async fn list(rig: &Rig, query: &str) -> Vec<Value> {
    let r = get(&rig.control(&format!("/api/v1/grants?{query}")), &bearer(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().cloned().unwrap_or_default()
}

/// A model call expected to pass at once (no hold): its reply text.
async fn passes(rig: &Rig, agent: &str, model: &str, mark: &str) -> String {
    let r = tokio::time::timeout(Duration::from_secs(10), rig.call(agent, model, &format!("MARK:{mark}")))
        .await
        .expect("a granted call must not be held")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-clawbutler-approval-id"), None, "not held");
    reply_text(&r.json())
}

/// A call `rig` holds: wait until the fleet's inbox lists it, deny it, check the caller was
/// denied (the only pending approval of `agent` in the fleet).
async fn held_then_denied(rig: &Rig, agent: &str, model: &str) {
    let held = rig.call(agent, model, "MARK:held");
    let id = rig.wait_pending(agent, 1).await.remove(0)["id"].as_str().unwrap().to_string();
    assert_eq!(rig.sidecar.broker().pending_for_agent(agent).len(), 1, "held on this sidecar");
    let r = rig.decide(ADMIN, &id, &json!({"decision": "deny", "expected_version": 1}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = reply_text(&held.await.unwrap().json());
    assert!(text.contains("denied"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_always_on_b_lets_the_call_through_on_a_and_a_revoke_on_a_holds_it_again_on_b() {
    let Some(pg) = PgCluster::start_or_skip("fleet grants") else { return };
    let rigs = pg.sidecars_from(3, "", || Rig::builder().hold_rule()).await;
    let (a, b, c) = (&rigs[0], &rigs[1], &rigs[2]);
    let approver = b.token("approver", "bea").await;

    // Held on B, allowed always through B's API.
    let held = b.call("main", "needs-approval-1", "MARK:first");
    let id = b.wait_pending("main", 1).await.remove(0)["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let r = b.decide(&approver, &id, &json!({"decision": "allow-always", "expected_version": 1}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let gid = r.json()["approval"]["grant_id"].as_str().expect("allow-always names its grant").to_string();
    let answered = &r.json()["grant"];
    assert_eq!(
        (answered["id"].as_str(), answered["sidecar"].as_str()),
        (Some(gid.as_str()), Some("sc-b")),
        "{answered}"
    );
    assert!(reply_text(&held.await.unwrap().json()).contains("[first]"));
    wait_applied(a, "main", &gid, true).await;
    println!(
        "FLEET GRANT allow-always on B in force on A {:.1} ms after the decision",
        t0.elapsed().as_secs_f64() * 1000.0
    );

    // The next matching call on A goes through without a hold; another model is still held.
    assert!(passes(a, "main", "needs-approval-1", "granted").await.contains("[granted]"));
    assert_eq!(a.up.request_count(), 1);
    held_then_denied(a, "main", "needs-approval-2").await;
    assert_eq!(a.up.request_count(), 1, "the grant covers exactly the model allowed");
    // One grant for the decision, though B both decided it and held the call.
    assert_eq!(pg.psql("SELECT count(*) FROM fleet_grant").trim(), "1");

    // C lists it with the sidecar whose API created it, and shows it alone.
    let items = list(c, "agent=main").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let g = &items[0];
    assert_eq!(
        (g["id"].as_str(), g["sidecar"].as_str(), g["fleet"].as_bool()),
        (Some(gid.as_str()), Some("sc-b"), Some(true))
    );
    assert_eq!((g["approval_id"].as_str(), g["created_by"].as_str()), (Some(id.as_str()), Some("bea")), "{g}");
    assert_eq!(g["expired"], false);
    let one = get(&c.control(&format!("/api/v1/grants/{gid}")), &bearer(ADMIN)).await;
    assert_eq!((one.status.as_u16(), one.json()["sidecar"].as_str()), (200, Some("sc-b")), "{}", one.text());
    // The holding sidecar records the grant's creation with the decider's name.
    let recs = b.audit("kind=grant").await;
    assert!(recs.iter().any(|r| r["outcome"] == "created" && r["actor"] == "bea"), "{recs:?}");

    // Revoked on A: B holds the call again.
    let r = revoke(a, &gid).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["revoked"]["id"], gid.as_str());
    assert_eq!(revoke(c, &gid).await.status, 404, "gone everywhere");
    wait_applied(b, "main", &gid, false).await;
    held_then_denied(b, "main", "needs-approval-1").await;
    let recs = a.audit("kind=grant").await;
    assert!(recs.iter().any(|r| r["outcome"] == "revoked"), "A records the revocation: {recs:?}");
    assert!(list(c, "agent=main").await.is_empty());

    // A grant with an expiry, created on C: in force on A, then not, at its expiry (long
    // enough for A to apply it and decide a call first on a loaded machine).
    let g = create(c, &json!({"agent": "ops", "kind": "model_call", "pattern": "needs-approval-9", "expires_in_s": 8}))
        .await;
    assert_eq!(g["sidecar"], "sc-c", "{g}");
    let eid = g["id"].as_str().unwrap().to_string();
    wait_applied(a, "ops", &eid, true).await;
    assert!(passes(a, "ops", "needs-approval-9", "before-expiry").await.contains("[before-expiry]"));
    until("the grant expires on A", Duration::from_secs(15), || async { !applies(a, "ops", &eid) }).await;
    held_then_denied(a, "ops", "needs-approval-9").await;
    let shown = list(b, "agent=ops").await;
    assert_eq!((shown.len(), shown[0]["expired"].as_bool()), (1, Some(true)), "listed until revoked: {shown:?}");

    // Propagation: create / revoke through B's API until A applies the change.
    let (mut add_t, mut del_t) = (Vec::new(), Vec::new());
    for i in 0..100 {
        let t0 = Instant::now();
        let g = create(b, &json!({"agent": "bench", "kind": "model_call", "pattern": format!("m-{i}")})).await;
        let gid = g["id"].as_str().unwrap().to_string();
        wait_applied(a, "bench", &gid, true).await;
        add_t.push(t0.elapsed());
        let t0 = Instant::now();
        assert_eq!(revoke(b, &gid).await.status, 200);
        wait_applied(a, "bench", &gid, false).await;
        del_t.push(t0.elapsed());
    }
    println!(
        "FLEET GRANT PROPAGATION B->A over 100 grants (API call on B to applied on A), ms: create p50 {:.1} p99 {:.1} \
         max {:.1}; revoke p50 {:.1} p99 {:.1} max {:.1}",
        pct(&mut add_t, 0.5),
        pct(&mut add_t, 0.99),
        pct(&mut add_t, 1.0),
        pct(&mut del_t, 0.5),
        pct(&mut del_t, 0.99),
        pct(&mut del_t, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_cut_off_from_the_database_drops_fleet_grants_after_the_ttl_and_reapplies_them() {
    let Some(mut pg) = PgCluster::start_or_skip("fleet grants partition") else { return };
    // keep_last: the kill switch keeps serving, so what is seen is the grants' own policy.
    let extra =
        "heartbeat_ms = 200\nheartbeat_ttl_ms = 1500\npoll_ms = 300\ntimeout_ms = 500\npartitioned = \"keep_last\"";
    let a = pg.sidecars_from(1, extra, || Rig::builder().hold_rule()).await.remove(0);
    let g = create(&a, &json!({"agent": "main", "kind": "model_call", "pattern": "needs-approval-1"})).await;
    let gid = g["id"].as_str().unwrap().to_string();
    assert!(applies(&a, "main", &gid), "in force on the creating sidecar when the API answers");
    assert!(passes(&a, "main", "needs-approval-1", "granted").await.contains("[granted]"));

    pg.stop();
    let lost = Instant::now();
    until("the grants are dropped", Duration::from_secs(6), || async { !applies(&a, "main", &gid) }).await;
    // The TTL runs from the last good read, which may be a poll (300 ms) and a slow read
    // (500 ms) before the cut: 1,500 - 800.
    assert!(lost.elapsed() >= Duration::from_millis(700), "not before the TTL: {:?}", lost.elapsed());
    assert!(a.metrics().await.contains("clawbutler_fleet_grants_applied 0"));
    let r = post_json(
        &a.control("/api/v1/grants"),
        &bearer(ADMIN),
        &json!({"agent": "x", "kind": "model_call", "pattern": "m"}),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.header("content-type")), (503, Some("application/problem+json")), "{}", r.text());
    assert!(r.header("retry-after").is_some());
    let held = a.call("main", "needs-approval-1", "MARK:cut-off");
    until("held while cut off", Duration::from_secs(5), || async {
        !a.sidecar.broker().pending_for_agent("main").is_empty()
    })
    .await;
    assert_eq!(a.up.request_count(), 1, "nothing a dropped grant covered went through");

    pg.start_again();
    until("the grants are read again", Duration::from_secs(15), || async { applies(&a, "main", &gid) }).await;
    assert!(passes(&a, "main", "needs-approval-1", "again").await.contains("[again]"));
    held.abort();
}

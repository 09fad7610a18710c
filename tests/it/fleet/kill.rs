//! The fleet kill switch: a kill issued on one sidecar's API blocks the agent on every
//! sidecar (or every agent of one sidecar's gateway), recover releases it, and a sidecar that loses the database refuses every call
//! after the heartbeat TTL. The kill test also measures propagation (issue on B until A's
//! kill switch refuses) over 50 kills and prints p50/p99/max.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::postgres::PgCluster;

use super::{admin_post, call};

/// The stated bound when connected: the poll interval (2 s by default) is the safety net;
/// LISTEN/NOTIFY normally brings it to milliseconds. Margin for a loaded 2-core CI box.
pub(super) const BOUND: Duration = Duration::from_millis(2_000 + 1_000);

pub(super) async fn wait_until(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < BOUND, "{what}: not within {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t0.elapsed()
}

pub(super) fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

#[tokio::test]
async fn a_kill_on_b_blocks_the_agent_on_a_and_c_and_recover_releases_it() {
    let Some(pg) = PgCluster::start_or_skip("fleet kill") else { return };
    let rigs = pg.sidecars(3, "", "").await;
    let (a, b, c) = (&rigs[0], &rigs[1], &rigs[2]);
    for r in &rigs {
        assert!(call(r, "main").await.1, "main passes before the kill");
    }

    let (st, v) = admin_post(b, "/api/v1/fleet/kill", &json!({"agent": "main", "reason": "runaway loop"})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["sidecar_id"], "sc-b");
    for r in [a, c] {
        wait_until("kill reaches the sidecar", || r.sidecar.kill.blocked("main").is_some()).await;
        let (text, reached) = call(r, "main").await;
        assert!(!reached, "a killed agent's call must not reach the upstream");
        assert!(text.contains("fleet kill switch") && text.contains("runaway loop"), "{text}");
        assert!(call(r, "ops").await.1, "other agents still pass");
    }
    // A local recover on A does not lift the fleet kill.
    let (st, _) = admin_post(a, "/api/v1/agents/main/recover", &json!({"reason": "x", "confirm": true})).await;
    assert_eq!(st, 200);
    assert!(!call(a, "main").await.1, "still killed fleet-wide");

    let (st, v) = admin_post(c, "/api/v1/fleet/recover", &json!({"agent": "main", "reason": "fixed"})).await;
    assert_eq!(st, 400, "recover needs confirm: {v}");
    let body = json!({"agent": "main", "reason": "fixed", "confirm": true});
    let (st, v) = admin_post(c, "/api/v1/fleet/recover", &body).await;
    assert_eq!(st, 200, "{v}");
    for r in &rigs {
        wait_until("recover reaches the sidecar", || r.sidecar.kill.blocked("main").is_none()).await;
        assert!(call(r, "main").await.1, "main passes again");
    }
    let audited = b.audit("kind=kill_switch").await;
    assert!(audited.iter().any(|e| e["details"]["fleet"] == true), "{audited:?}");

    // The whole fleet, from A.
    let (st, v) = admin_post(a, "/api/v1/fleet/kill", &json!({"reason": "incident 7"})).await;
    assert_eq!(st, 200, "{v}");
    wait_until("global kill reaches C", || c.sidecar.kill.blocked("anyone").is_some()).await;
    assert!(!call(c, "ops").await.1);
    let (st, _) = admin_post(b, "/api/v1/fleet/recover", &json!({"reason": "over", "confirm": true})).await;
    assert_eq!(st, 200);
    wait_until("recover all reaches C", || c.sidecar.kill.blocked("ops").is_none()).await;

    // One gateway: every agent of sc-c's sidecar, from A; A and B keep serving.
    let (st, v) = admin_post(a, "/api/v1/fleet/kill", &json!({"sidecar": "sc-x", "reason": "typo"})).await;
    assert_eq!(st, 404, "an unknown sidecar is refused, not silently stored: {v}");
    let (st, v) =
        admin_post(a, "/api/v1/fleet/kill", &json!({"sidecar": "sc-c", "agent": "main", "reason": "x"})).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) =
        admin_post(a, "/api/v1/fleet/kill", &json!({"sidecar": "sc-c", "reason": "gateway compromised"})).await;
    assert_eq!((st, v["sidecar"].as_str()), (200, Some("sc-c")), "{v}");
    wait_until("the gateway kill reaches C", || c.sidecar.kill.blocked("ops").is_some()).await;
    let (text, reached) = call(c, "ops").await;
    assert!(!reached && text.contains("gateway compromised"), "{text}");
    for r in [a, b] {
        assert!(call(r, "ops").await.1, "other sidecars' gateways keep serving");
        assert!(r.sidecar.kill.blocked("main").is_none());
    }
    let body = json!({"sidecar": "sc-c", "reason": "rotated", "confirm": true});
    let (st, v) = admin_post(b, "/api/v1/fleet/recover", &body).await;
    assert_eq!(st, 200, "{v}");
    wait_until("the gateway recover reaches C", || c.sidecar.kill.blocked("ops").is_none()).await;
    assert!(call(c, "ops").await.1, "C serves again");

    // Propagation: issue on B, until A's kill switch refuses (what every path asks).
    let (mut kill_t, mut recover_t) = (Vec::new(), Vec::new());
    for i in 0..50 {
        let t0 = Instant::now();
        let (st, v) = admin_post(b, "/api/v1/fleet/kill", &json!({"agent": "bench", "reason": format!("k{i}")})).await;
        assert_eq!(st, 200, "{v}");
        wait_until("kill", || a.sidecar.kill.blocked("bench").is_some()).await;
        kill_t.push(t0.elapsed());
        let t0 = Instant::now();
        let body = json!({"agent": "bench", "reason": "r", "confirm": true});
        assert_eq!(admin_post(b, "/api/v1/fleet/recover", &body).await.0, 200);
        wait_until("recover", || a.sidecar.kill.blocked("bench").is_none()).await;
        recover_t.push(t0.elapsed());
    }
    println!(
        "FLEET KILL PROPAGATION B->A over 50 kills (API call on B to refusal on A), ms: p50 {:.1} p99 {:.1} max {:.1}; \
         recover: p50 {:.1} p99 {:.1} max {:.1}",
        pct(&mut kill_t, 0.5),
        pct(&mut kill_t, 0.99),
        pct(&mut kill_t, 1.0),
        pct(&mut recover_t, 0.5),
        pct(&mut recover_t, 0.99),
        pct(&mut recover_t, 1.0)
    );
}

#[tokio::test]
async fn a_sidecar_cut_off_from_the_database_refuses_every_call_after_the_ttl() {
    let Some(pg) = PgCluster::start_or_skip("fleet partition") else { return };
    let rigs = pg.sidecars(1, "heartbeat_ms = 200\nheartbeat_ttl_ms = 1500\npoll_ms = 300\ntimeout_ms = 500", "").await;
    let a = &rigs[0];
    assert!(call(a, "main").await.1);
    let lost = Instant::now();
    drop(pg); // the database goes away (its postmaster is stopped)
    let t = Instant::now();
    while a.sidecar.kill.blocked("main").is_none() {
        assert!(t.elapsed() < Duration::from_secs(6), "still serving 6 s after losing the database");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The TTL runs from the last good read, which may be a poll (300 ms) and a slow read
    // (500 ms) before the cut: 1,500 - 800.
    assert!(lost.elapsed() >= Duration::from_millis(700), "not before the TTL: {:?}", lost.elapsed());
    let (text, reached) = call(a, "ops").await;
    assert!(!reached);
    assert!(text.contains("cannot be read") && text.contains("heartbeat TTL"), "{text}");
}

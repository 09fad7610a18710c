//! The shared approval inbox on a real PostgreSQL with three sidecars: a call held on A is
//! approved through B's API and completes (and one denied through C is denied), every
//! sidecar lists the same inbox, 1,000 racing decisions across the three APIs have exactly
//! one winner per approval (the others 409), one Idempotency-Key used on two sidecars makes
//! one decision, and a sidecar cut off from the database refuses decisions (503) while its
//! held call is denied at expiry. Fleet kills (an agent, one sidecar's gateway, the whole
//! fleet) answer the calls held for what they stop at once, denied with the kill's reason.
//! The first test also measures approve-to-release latency across sidecars (decision POST on
//! B until the held call's answer on A).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::http::{get, HttpResponse};
use testkit::postgres::PgCluster;
use testkit::rig::{bearer, reply_text, Rig, ADMIN};

use super::admin_post;

/// Three (or `n`) sidecars holding `needs-approval*` model calls, on one database.
async fn holding(pg: &PgCluster, n: usize, fleet_extra: &str, policies: &str) -> Vec<Rig> {
    pg.sidecars_from(n, fleet_extra, || Rig::builder().hold_rule().policies(policies)).await
}

/// The ids of the fleet's pending approvals of `agent` as `rig`'s API lists them.
async fn pending_ids(rig: &Rig, agent: &str) -> Vec<String> {
    let r =
        get(&rig.control(&format!("/api/v1/approvals?status=pending&agent={agent}&limit=500")), &bearer(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut ids: Vec<String> =
        r.json()["items"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn allow(reason: &str) -> Value {
    json!({"decision": "allow-once", "expected_version": 1, "reason": reason})
}

fn deny(reason: &str) -> Value {
    json!({"decision": "deny", "expected_version": 1, "reason": reason})
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

async fn finished(h: tokio::task::JoinHandle<HttpResponse>) -> HttpResponse {
    tokio::time::timeout(Duration::from_secs(20), h).await.expect("the held call was not released").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_held_on_a_is_approved_through_b_and_denied_through_c() {
    let Some(pg) = PgCluster::start_or_skip("fleet inbox") else { return };
    let rigs = holding(&pg, 3, "", "").await;
    let (a, b, c) = (&rigs[0], &rigs[1], &rigs[2]);
    let approver_b = b.token("approver", "bea").await;
    let approver_c = c.token("approver", "cai").await;

    // Held on A, seen by every sidecar's API; approved through B, it completes on A.
    let held = a.call("main", "needs-approval-1", "fleet please");
    let id = a.wait_pending("main", 1).await.remove(0)["id"].as_str().unwrap().to_string();
    for r in &rigs {
        let t0 = Instant::now();
        while pending_ids(r, "main").await != [id.clone()] {
            assert!(t0.elapsed() < Duration::from_secs(5), "sidecar does not list the fleet's approval");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let one = get(&c.control(&format!("/api/v1/approvals/{id}")), &bearer(ADMIN)).await.json();
    assert_eq!((one["status"].as_str(), one["agent"].as_str()), (Some("pending"), Some("main")), "{one}");
    assert!(!held.is_finished(), "the call waits for a human");
    let r = b.decide(&approver_b, &id, &allow("fine by me"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["approval"]["status"], "allowed");
    assert_eq!(r.json()["approval"]["decided_by"], "bea");
    let res = finished(held).await;
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.header("x-clawbutler-approval-id"), Some(id.as_str()));
    assert!(!reply_text(&res.json()).contains("denied"), "{}", res.text());
    assert_eq!(a.up.request_count(), 1, "the approved call reached A's upstream");

    // A second decision, on any sidecar, gets 409 naming the winner.
    let r = a.decide(ADMIN, &id, &deny("too late"), None).await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let v = r.json();
    assert_eq!((v["status_now"].as_str(), v["decided_by"].as_str()), (Some("allowed"), Some("bea")), "{v}");

    // Denied through C: A's caller gets the denial, nothing reaches the upstream.
    let held = a.call("main", "needs-approval-1", "second");
    let id2 = a.wait_pending("main", 1).await.remove(0)["id"].as_str().unwrap().to_string();
    let r = c.decide(&approver_c, &id2, &deny("not on a friday"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = reply_text(&finished(held).await.json());
    assert!(text.contains("denied by cai") && text.contains("not on a friday"), "{text}");
    assert_eq!(a.up.request_count(), 1);
    // The holding sidecar's audit log records both decisions with the deciders' names.
    let recs = a.audit("kind=approval").await;
    let decided: Vec<(&str, &str)> = recs
        .iter()
        .filter(|r| r["outcome"] != "created")
        .map(|r| (r["outcome"].as_str().unwrap(), r["actor"].as_str().unwrap()))
        .collect();
    assert!(decided.contains(&("allowed", "bea")) && decided.contains(&("denied", "cai")), "{decided:?}");

    // One Idempotency-Key on B and C at once: one decision, the same answer twice.
    let held = a.call("main", "needs-approval-1", "third");
    let id3 = a.wait_pending("main", 1).await.remove(0)["id"].as_str().unwrap().to_string();
    let once = allow("retry-safe");
    let (r1, r2) =
        tokio::join!(b.decide(ADMIN, &id3, &once, Some("key-7")), c.decide(ADMIN, &id3, &once, Some("key-7")));
    assert_eq!((r1.status.as_u16(), r2.status.as_u16()), (200, 200), "{} / {}", r1.text(), r2.text());
    assert_eq!(r1.json(), r2.json(), "the same answer on both sidecars");
    let replayed = [&r1, &r2].iter().filter(|r| r.header("idempotent-replayed") == Some("true")).count();
    assert_eq!(replayed, 1, "exactly one of the two is the replay");
    assert_eq!(finished(held).await.status, 200);
    assert_eq!(a.up.request_count(), 2);
    let r = a.decide(ADMIN, &id3, &deny("changed my mind"), Some("key-7")).await;
    assert_eq!(r.status, 422, "the key with another body: {}", r.text());
    assert_eq!(a.decide(ADMIN, &id3, &deny("x"), Some("key-8")).await.status, 409);
    assert_eq!(pg.psql(&format!("SELECT state FROM fleet_approval WHERE approval_id = '{id3}'")).trim(), "allowed");

    // Approve-to-release latency across sidecars: decision POST on B until A's caller has
    // the answer (held on A, decided through B; alternately through C).
    let mut lat = Vec::new();
    for i in 0..100 {
        let held = a.call("bench", "needs-approval-1", &format!("n{i}"));
        let id = a.wait_pending("bench", 1).await.remove(0)["id"].as_str().unwrap().to_string();
        let via = if i % 2 == 0 { b } else { c };
        let t0 = Instant::now();
        let r = via.decide(ADMIN, &id, &allow("bench"), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(finished(held).await.status, 200);
        lat.push(t0.elapsed());
    }
    println!(
        "FLEET APPROVAL RELEASE across sidecars over 100 approvals (decision POST on B/C to the held call's answer \
         on A), ms: p50 {:.1} p99 {:.1} max {:.1}",
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        pct(&mut lat, 1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_racing_decisions_across_three_sidecars_have_one_winner_each() {
    let Some(pg) = PgCluster::start_or_skip("fleet inbox race") else { return };
    // The race is about one winner each, not latency: 1,000 requests at once on a 16-connection
    // pool wait their turn, which on a loaded machine can pass the default 5 s.
    let rigs = holding(&pg, 3, "pool_size = 16\ntimeout_ms = 30000", "").await;
    const N: usize = 100;
    let held: Vec<_> = (0..N).map(|i| rigs[i % 3].call("main", "needs-approval-1", &format!("race {i}"))).collect();
    let ids = rigs[1].wait_pending("main", N).await;
    let ids: Vec<String> = ids.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), N);

    // 10 attempts per approval, random sidecar and decision, all at once.
    let mut tasks = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        for j in 0..10 {
            let rig = &rigs[(k * 7 + j * 3) % 3];
            let url = rig.control(&format!("/api/v1/approvals/{id}/decision"));
            let body = if (k + j) % 2 == 0 { allow(&format!("w{j}")) } else { deny(&format!("w{j}")) };
            let id = id.clone();
            tasks.push(tokio::spawn(async move {
                let r = testkit::http::post_json(&url, &bearer(ADMIN), &body).await;
                (id, r.status.as_u16(), r.json())
            }));
        }
    }
    let mut winners: BTreeMap<String, Value> = BTreeMap::new();
    let mut conflicts = 0;
    for t in tasks {
        let (id, status, v) = t.await.unwrap();
        match status {
            200 => assert!(winners.insert(id.clone(), v["approval"].clone()).is_none(), "two winners for {id}"),
            409 => {
                assert!(v["status_now"] == "allowed" || v["status_now"] == "denied", "{v}");
                conflicts += 1;
            }
            s => panic!("unexpected {s}: {v}"),
        }
    }
    assert_eq!((winners.len(), conflicts), (N, 9 * N), "exactly one winner per approval, 409 for the rest");

    // Every held call ends as its winner decided, on whichever sidecar held it.
    let allowed = winners.values().filter(|a| a["status"] == "allowed").count();
    let mut released = (0, 0);
    for h in held {
        let res = finished(h).await;
        assert_eq!(res.status, 200, "{}", res.text());
        let id = res.header("x-clawbutler-approval-id").unwrap().to_string();
        let text = reply_text(&res.json());
        if winners[&id]["status"] == "allowed" {
            assert!(!text.contains("denied by"), "{text}");
            released.0 += 1;
        } else {
            assert!(text.contains("denied by") && text.contains(winners[&id]["decision_reason"].as_str().unwrap()));
            released.1 += 1;
        }
    }
    assert_eq!(released, (allowed, N - allowed));
    let upstream: u64 = rigs.iter().map(|r| r.up.request_count() as u64).sum();
    assert_eq!(upstream, allowed as u64, "only approved calls reached an upstream");
    let states = pg.psql("SELECT state, count(*) FROM fleet_approval GROUP BY state ORDER BY state");
    assert_eq!(states.trim(), format!("allowed|{allowed}\ndenied|{}", N - allowed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_cut_off_from_the_database_refuses_decisions_and_its_held_call_is_denied_at_expiry() {
    let Some(pg) = PgCluster::start_or_skip("fleet inbox partition") else { return };
    let rigs = holding(&pg, 2, "timeout_ms = 500", "hold_ttl_s = 3").await;
    let (a, b) = (&rigs[0], &rigs[1]);
    let held = a.call("main", "needs-approval-1", "cut off");
    let id = b.wait_pending("main", 1).await.remove(0)["id"].as_str().unwrap().to_string();
    drop(pg); // the database goes away (its postmaster is stopped)

    let r = b.decide(ADMIN, &id, &allow("now"), None).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.header("retry-after").is_some());
    let detail = r.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("cannot reach the fleet database") && detail.contains("nothing was decided"), "{detail}");
    let r = get(&a.control("/api/v1/approvals?status=pending"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 503, "{}", r.text());

    // Fail closed: the call held on A is denied when its approval expires, as without a fleet.
    let res = finished(held).await;
    let text = reply_text(&res.json());
    assert!(text.contains("expired"), "{text}");
    assert_eq!(a.up.request_count(), 0);
    let recs = a.audit("kind=approval").await;
    assert!(recs.iter().any(|r| r["outcome"] == "expired" && r["details"]["approval"]["id"] == id.as_str()));
    // The expiry waits to be written to the inbox, visibly.
    let m = a.metrics().await;
    assert!(m.contains("clawbutler_fleet_inbox_writes_pending 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_kills_deny_the_calls_held_for_what_they_stop_at_once_and_nothing_else() {
    let Some(pg) = PgCluster::start_or_skip("fleet kill denies held calls") else { return };
    let rigs = holding(&pg, 3, "", "").await;
    let (a, b, c) = (&rigs[0], &rigs[1], &rigs[2]);
    let (a_main, b_main) = (a.call("main", "needs-approval-1", "a"), b.call("main", "needs-approval-1", "b"));
    let (b_ops, c_ops) = (b.call("ops", "needs-approval-1", "b"), c.call("ops", "needs-approval-1", "c"));
    // Each call held on its own sidecar, and all four in the shared inbox (a fleet-wide list
    // shows another sidecar's hold too, so one count per agent is not enough).
    for (r, agent) in [(a, "main"), (b, "main"), (b, "ops"), (c, "ops")] {
        testkit::wait::until("held on its sidecar", Duration::from_secs(10), || async {
            r.sidecar.broker().pending_for_agent(agent).len() == 1
        })
        .await;
    }
    a.wait_pending("main", 2).await;
    a.wait_pending("ops", 2).await;
    let kill = |r, body| async move { admin_post(r, "/api/v1/fleet/kill", &body).await.0 };
    // `main` everywhere, from C: A's and B's held calls of main are answered at once.
    assert_eq!(kill(c, json!({"agent": "main", "reason": "main runaway"})).await, 200);
    for h in [a_main, b_main] {
        let res = tokio::time::timeout(Duration::from_secs(3), h).await.expect("answered at once").unwrap();
        let text = reply_text(&res.json());
        assert!(text.contains("fleet kill switch: main runaway"), "{text}");
    }
    let t0 = Instant::now();
    while !pending_ids(a, "main").await.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "main's approvals stay in the inbox");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pending_ids(a, "ops").await.len(), 2, "ops is not stopped");

    // C's gateway, from A: only C's held call.
    assert_eq!(kill(a, json!({"sidecar": "sc-c", "reason": "gateway compromised"})).await, 200);
    let res = tokio::time::timeout(Duration::from_secs(3), c_ops).await.expect("answered at once").unwrap();
    assert!(reply_text(&res.json()).contains("gateway compromised"), "{}", res.text());
    assert!(!b_ops.is_finished(), "B's gateway is not stopped");

    // The whole fleet, from B: B's last held call.
    assert_eq!(kill(b, json!({"reason": "incident 9"})).await, 200);
    let res = tokio::time::timeout(Duration::from_secs(3), b_ops).await.expect("answered at once").unwrap();
    assert!(reply_text(&res.json()).contains("incident 9"), "{}", res.text());
    let t0 = Instant::now();
    while !pending_ids(c, "ops").await.is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "ops' approvals stay in the inbox");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = get(&c.control("/api/v1/approvals?status=denied&limit=50"), &bearer(ADMIN)).await;
    let rows = r.json()["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(rows.len(), 4, "{}", r.text());
    assert!(
        rows.iter().all(|x| x["decision_reason"].as_str().unwrap_or("").starts_with("fleet kill switch: ")),
        "{rows:?}"
    );
    assert_eq!(a.up.request_count() + b.up.request_count() + c.up.request_count(), 0, "nothing reached an upstream");
}

//! A fleet kill carried into OpenClaw: two sidecars on a real PostgreSQL, sidecar A linked to
//! a real OpenClaw 2026.9.6 gateway (agent `main` reaching its model through A), sidecar B
//! without a gateway. A kill of `main` issued on B aborts A's streaming run, denies the call
//! A holds for approval at once (gone from the fleet inbox, its row denied with the kill's
//! reason), denies `main`'s tools and pauses its enabled cron job in A's OpenClaw; a restart of
//! A while the kill is in force pauses nothing twice and forgets nothing; the recover on B
//! resumes exactly that job (the one an operator paused stays paused) and restores the config.
//! A local kill on A and a fleet kill together: OpenClaw is restored only when both are lifted.
//! A kill of A's whole gateway (`{"sidecar": "sc-a"}`) on B does the same for every agent A lists.
//! Prints the propagation figures (`FLEET KILL INTO OPENCLAW ...`).
//!
//! Needs PostgreSQL and `scripts/install-openclaw.sh`; skipped without them, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::http::get;
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::postgres::PgCluster;
use testkit::rig::{bearer, reply_text, Rig, ADMIN};
use testkit::wait::until;

use super::admin_post;
use crate::e2e_cron::{job_body, openclaw_config};
use crate::e2e_gateway::config_doc;

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_FLEET_KILL_TOKEN";

/// OpenClaw's own view of one cron job.
async fn job(link: &gateway::Link, id: &str) -> Value {
    let v = link.call("cron.list", json!({"includeDisabled": true, "limit": 200})).await.expect("cron.list");
    v["jobs"].as_array().unwrap().iter().find(|j| j["id"] == id).cloned().unwrap_or(Value::Null)
}

async fn admin_get(rig: &Rig, path: &str) -> Value {
    let r = get(&rig.control(path), &bearer(ADMIN)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()
}

/// `kill_switch` records of A carrying a fleet kill, with `outcome`.
async fn fleet_records(rig: &Rig, outcome: &str) -> Vec<Value> {
    let recs = rig.audit("kind=kill_switch").await;
    recs.into_iter().filter(|r| r["details"]["fleet"] == true && r["outcome"] == outcome).collect()
}

/// [`fleet_records`] once there is at least one (a record is searchable after its group
/// commit, which may come a moment after the effect it records is visible), up to 10 s.
async fn fleet_records_made(rig: &Rig, outcome: &str) -> Vec<Value> {
    for _ in 0..200 {
        let recs = fleet_records(rig, outcome).await;
        if !recs.is_empty() {
            return recs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fleet_records(rig, outcome).await
}

async fn linked(rig: &Rig) -> Arc<gateway::Link> {
    let link = rig.sidecar.gateway.clone().expect("A has a gateway link").link().clone();
    assert!(link.wait_connected(Duration::from_secs(30)).await, "A's link is up");
    until("A lists main", Duration::from_secs(15), || async {
        admin_get(rig, "/api/v1/agents").await["items"].as_array().into_iter().flatten().any(|a| a["id"] == "main")
    })
    .await;
    link
}

/// How long after `t0` `f` first held (polled every 20 ms for up to 10 s).
async fn first<F, Fut>(t0: Instant, what: &str, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while !f().await {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}: not within 10 s of the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t0.elapsed()
}

/// Stop `rig`'s sidecar and start it again on its data dir. The gateway's event handlers
/// (a `config.changed` re-read waits 1 s) may hold the state store for a moment after the
/// shutdown: retried until its lock is free.
async fn restart(rig: Rig) -> Rig {
    let Rig { sidecar, up, dir, cfg } = rig;
    sidecar.shutdown().await;
    let t = Instant::now();
    loop {
        match clawbutler::app::Sidecar::start(cfg.build()).await {
            Ok(sidecar) => return Rig { sidecar, up, dir, cfg },
            Err(e) if t.elapsed() < Duration::from_secs(10) && e.to_string().contains("lock") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("A restarts: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_kill_on_b_stops_main_in_a_s_openclaw_and_recover_undoes_exactly_that() {
    let Some(pg) = PgCluster::start_or_skip("fleet kill into OpenClaw") else { return };
    let Some(install) = find_or_skip("a_fleet_kill_on_b_stops_main_in_a_s_openclaw") else { return };
    let t_test = Instant::now();
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Arc::new(Gateway::start(&install, openclaw_config(data)).await);
    std::env::set_var(TOKEN_ENV, gw.token());
    let gateway_table = format!(
        "[gateway]\nurl = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\nreconnect_initial_ms = 500\nreconnect_max_ms = 2000",
        gw.ws_url()
    );
    let fleet = "poll_ms = 2000";
    let a = Rig::builder()
        .hold_rule()
        .listen(&data.to_string())
        .table(&gateway_table)
        .table(&pg.fleet_table("sc-a", fleet))
        .start()
        .await;
    let b = Rig::builder().table(&pg.fleet_table("sc-b", fleet)).start().await;
    let link = linked(&a).await;

    // main's cron jobs: one enabled, one an operator paused.
    let (st, j) = admin_post(&a, "/api/v1/cron/jobs", &job_body("nightly", "nightly MARK:n", true)).await;
    assert_eq!(st, 201, "{j}");
    let nightly = j["id"].as_str().unwrap().to_string();
    let (st, j) = admin_post(&a, "/api/v1/cron/jobs", &job_body("paused-by-ops", "x", false)).await;
    assert_eq!(st, 201, "{j}");
    let by_ops = j["id"].as_str().unwrap().to_string();
    let config_before = config_doc(&link).await;

    // A streaming run of main in OpenClaw, and a call A holds for approval.
    let before = a.up.request_count();
    let gw2 = gw.clone();
    let slow = tokio::spawn(async move { gw2.agent_turn("main", "SLOW please MARK:fleet-slow").await });
    assert!(a.up.wait_for_requests(before + 1, Duration::from_secs(60)).await, "the run reached the model");
    let held = a.call("main", "needs-approval-fleet", "hold me");
    let pending = b.wait_pending("main", 1).await;
    let approval = pending[0]["id"].as_str().unwrap().to_string();
    let cancelled_before = a.up.cancelled_streams();

    // The kill, on B; A's run and A's cron job watched from the moment it is sent.
    let t0 = Instant::now();
    let run = first(t0, "the run aborted", || async { a.up.cancelled_streams() > cancelled_before });
    let cron = first(t0, "nightly paused in OpenClaw", || async { job(&link, &nightly).await["enabled"] == false });
    let kill = async {
        let body = json!({"agent": "main", "reason": "fleet e2e runaway"});
        let (st, v) = admin_post(&b, "/api/v1/fleet/kill", &body).await;
        assert_eq!(st, 200, "{v}");
        let res = tokio::time::timeout(Duration::from_secs(5), held).await.expect("held call answered").unwrap();
        (t0.elapsed(), res)
    };
    let (t_run, t_cron, (t_held, res)) = tokio::join!(run, cron, kill);
    let text = reply_text(&res.json());
    assert!(text.contains("fleet kill switch") && text.contains("fleet e2e runaway"), "{text}");
    assert_eq!(res.header("x-clawbutler-approval-id"), Some(approval.as_str()));
    until("gone from the fleet inbox", Duration::from_secs(5), || async {
        admin_get(&b, "/api/v1/approvals?status=pending&agent=main").await["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
    })
    .await;
    let row = admin_get(&b, &format!("/api/v1/approvals/{approval}")).await;
    assert_eq!(row["status"], "denied", "{row}");
    assert!(row["decision_reason"].as_str().unwrap_or("").contains("fleet e2e runaway"), "{row}");
    let turn = slow.await.unwrap();
    assert!(!turn.ok(), "the run did not finish normally: {}", turn.describe());
    let tools = config_doc(&link).await["agents"]["entries"]["main"]["tools"].clone();
    assert_eq!(tools, json!({"deny": ["*"]}), "main's tools denied in OpenClaw");
    assert_eq!(job(&link, &by_ops).await["enabled"], false);
    let main = admin_get(&a, "/api/v1/agents/main").await;
    assert_eq!(main["fleet_kill"]["reason"], "fleet e2e runaway", "{main}");
    assert_eq!(
        (main["openclaw_kill"]["fleet"].as_bool(), main["openclaw_kill"]["local"].as_bool()),
        (Some(true), Some(false)),
        "{main}"
    );
    assert_eq!(main["openclaw_kill"]["cron_disabled"], json!([nightly]), "only the enabled job: {main}");
    let paused = fleet_records_made(&a, "cron_disabled").await;
    assert_eq!(paused.len(), 1, "{paused:?}");

    // A restarts while the kill is in force: nothing paused twice, nothing forgotten.
    drop(link);
    let a = restart(a).await;
    let link = linked(&a).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let main = admin_get(&a, "/api/v1/agents/main").await;
    assert_eq!(main["openclaw_kill"]["cron_disabled"], json!([nightly]), "{main}");
    assert_eq!(fleet_records(&a, "cron_disabled").await.len(), 1, "not paused twice");
    assert_eq!(fleet_records(&a, "runs_aborted").await.len(), 1, "not killed twice");

    // The recover, on B: exactly the job the kill paused, and the config as it was.
    let t1 = Instant::now();
    let body = json!({"agent": "main", "reason": "fixed", "confirm": true});
    let (st, v) = admin_post(&b, "/api/v1/fleet/recover", &body).await;
    assert_eq!(st, 200, "{v}");
    until("nightly resumed", Duration::from_secs(10), || async { job(&link, &nightly).await["enabled"] == true }).await;
    let t_resume = t1.elapsed();
    assert_eq!(job(&link, &by_ops).await["enabled"], false, "the job an operator paused stays paused");
    until("config restored", Duration::from_secs(10), || async { config_doc(&link).await == config_before }).await;
    until("no record left", Duration::from_secs(5), || async {
        admin_get(&a, "/api/v1/agents/main").await["openclaw_kill"].is_null()
    })
    .await;

    // A local kill on A and a fleet kill together: restored only when both are lifted.
    let (st, v) = admin_post(&a, "/api/v1/agents/main/kill", &json!({"reason": "local stop"})).await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = admin_post(&b, "/api/v1/fleet/kill", &json!({"agent": "main", "reason": "fleet stop"})).await;
    assert_eq!(st, 200);
    until("the fleet holds it too", Duration::from_secs(10), || async {
        admin_get(&a, "/api/v1/agents/main").await["openclaw_kill"]["fleet"] == true
    })
    .await;
    assert_eq!(fleet_records(&a, "cron_disabled").await.len(), 1, "the fleet kill paused nothing again");
    let (st, _) =
        admin_post(&b, "/api/v1/fleet/recover", &json!({"agent": "main", "reason": "r", "confirm": true})).await;
    assert_eq!(st, 200);
    until("the fleet lets go", Duration::from_secs(10), || async {
        admin_get(&a, "/api/v1/agents/main").await["openclaw_kill"]["fleet"] == false
    })
    .await;
    assert_eq!(job(&link, &nightly).await["enabled"], false, "the local kill still holds the job");
    let tools = config_doc(&link).await["agents"]["entries"]["main"]["tools"].clone();
    assert_eq!(tools, json!({"deny": ["*"]}), "the local kill still holds the tools");
    let (st, v) = admin_post(&a, "/api/v1/agents/main/recover", &json!({"reason": "done", "confirm": true})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["gateway"]["restored"], true, "{v}");
    assert_eq!(job(&link, &nightly).await["enabled"], true);
    assert_eq!(config_doc(&link).await, config_before, "restored exactly");

    // A's whole gateway, from B: every agent A's OpenClaw lists; lifted, all of it undone.
    let body = json!({"sidecar": "sc-a", "reason": "gateway compromised"});
    assert_eq!(admin_post(&b, "/api/v1/fleet/kill", &body).await.0, 200);
    until("nightly paused by the gateway kill", Duration::from_secs(10), || async {
        job(&link, &nightly).await["enabled"] == false
    })
    .await;
    let main = admin_get(&a, "/api/v1/agents/main").await;
    assert_eq!(main["fleet_kill"]["reason"], "gateway compromised", "{main}");
    let body = json!({"sidecar": "sc-a", "reason": "rotated", "confirm": true});
    assert_eq!(admin_post(&b, "/api/v1/fleet/recover", &body).await.0, 200);
    until("restored after the gateway kill", Duration::from_secs(10), || async {
        job(&link, &nightly).await["enabled"] == true && config_doc(&link).await == config_before
    })
    .await;
    assert_eq!(job(&link, &by_ops).await["enabled"], false);

    println!(
        "FLEET KILL INTO OPENCLAW (kill API call on B to A): held call denied {:.0} ms, streaming run aborted {:.0} ms, \
         cron job paused {:.0} ms; recover on B to the job resumed {:.0} ms; test {:.1} s (OpenClaw start {:.1} s)",
        t_held.as_secs_f64() * 1e3,
        t_run.as_secs_f64() * 1e3,
        t_cron.as_secs_f64() * 1e3,
        t_resume.as_secs_f64() * 1e3,
        t_test.elapsed().as_secs_f64(),
        gw.started_in().as_secs_f64()
    );
    a.sidecar.shutdown().await;
    b.sidecar.shutdown().await;
}

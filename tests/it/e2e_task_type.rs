//! End to end: cost by task type (issue #19) against a real OpenClaw 2026.9.6 gateway whose
//! `main` agent reaches its model (a scripted upstream) through the sidecar, its model entry
//! with `compat.sendSessionAffinityHeaders` (what `attach` writes), linked but without the
//! ClawButler plugin: the task type comes from the gateway link's `agent` events (session id
//! -> session key, `isHeartbeat`).
//!
//! 1. A chat turn (`chat.send` to `agent:main:main`): its model calls are recorded with
//!    `details.task_type: interactive` and the session key, and `GET /api/v1/cost?by=task`
//!    and `clawbutler cost --by task` count them under `interactive`, none under `unknown`.
//!
//! A heartbeat run is driven in `e2e_attach_tools` (with the plugin, [`run_heartbeat_now`]):
//! without the plugin its calls stay `unknown`, because OpenClaw does not send a heartbeat
//! run's `agent` events to operator clients (the run is not "control UI visible"), so the
//! link never learns the run. Sub-agent runs are covered by unit tests of the mapping
//! (`governance::runs`, `gateway::runs`, `decision::task`).
//!
//! The plugin's exact per-run join (trace id) is checked in `e2e_attach_tools`. Needs
//! `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::ADMIN;
use testkit::upstream::ScriptedUpstream;
use testkit::wait::until as wait_until;

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_TASK_TYPE_TOKEN";

async fn get(control: SocketAddr, path: &str) -> Value {
    let auth = format!("Bearer {ADMIN}");
    let r = testkit::http::get(&format!("http://{control}{path}"), &[("authorization", &auth)]).await;
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// main's model-call end records.
async fn ended(control: SocketAddr) -> Vec<Value> {
    get(control, "/api/v1/audit?kind=model_call&agent=main&limit=200").await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| !["started", "denied", "budget_exceeded"].contains(&r["outcome"].as_str().unwrap_or("")))
        .collect()
}

/// Calls per task type in the cost API.
async fn by_task(control: SocketAddr) -> Vec<(String, u64)> {
    let c = get(control, "/api/v1/cost?by=task&agent=main&since=1d").await;
    let mut rows: Vec<(String, u64)> = c["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["key"].as_str().unwrap_or("").to_string(), r["calls"].as_u64().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_turns_calls_count_as_interactive() {
    let Some(install) = find_or_skip("a_chat_turns_calls_count_as_interactive") else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(&install, crate::e2e_cron::openclaw_config(data)).await;
    std::env::set_var(TOKEN_ENV, gw.token());
    let dir = tempfile::tempdir().unwrap();
    let sidecar = crate::e2e_cost_check::linked_sidecar(dir.path(), data, &up.base_url(), &gw, TOKEN_ENV).await;
    let control = sidecar.control_addr;
    let (other, stop_other) = gateway::attach::connect(&gw.ws_url(), TOKEN_ENV, dir.path()).await.expect("2nd client");
    wait_until("the link", Duration::from_secs(30), || async {
        get(control, "/api/v1/agents").await["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;

    // 1. A chat turn in the main session.
    let sent = other
        .call(
            "chat.send",
            json!({"sessionKey": "agent:main:main", "message": "hello MARK:chat", "idempotencyKey": "tt-chat-1"}),
        )
        .await
        .expect("chat.send");
    eprintln!("chat.send: {sent}");
    let took = wait_until("the chat turn's calls recorded", Duration::from_secs(120), || async {
        ended(control).await.iter().any(|r| r["details"]["task_type"].is_string())
    })
    .await;
    eprintln!("chat.send -> a classified record: {took:?}");
    let recs = ended(control).await;
    assert!(
        up.requests().iter().any(|r| String::from_utf8_lossy(&r.body).contains("MARK:chat")),
        "the turn's call went through the sidecar"
    );
    for r in &recs {
        assert!(r["session"].is_string(), "the session header arrived: {r}");
        assert_eq!(r["details"]["task_type"], "interactive", "{r}");
        assert_eq!(r["details"]["session_key"], "agent:main:main", "{r}");
        assert_eq!(r["details"]["task_source"], "gateway_session", "{r}");
    }
    let chat_calls = recs.len() as u64;
    wait_until("the cost API counts them", Duration::from_secs(15), || async {
        by_task(control).await == vec![("interactive".to_string(), chat_calls)]
    })
    .await;

    let _ = stop_other.send(true);
    sidecar.shutdown().await;
    drop(gw);
    up.shutdown().await;
}

/// Run `agent`'s heartbeat now: OpenClaw's built-in monitor job `heartbeat-<agent>` (made a
/// moment after start when the agent has `heartbeat.every`), `cron.run` with `mode: "force"`;
/// waits until the run finished and fails when OpenClaw skipped it. The agent needs
/// `heartbeat.target: "none"` (or a channel): with the default target and no channel, a
/// scheduled heartbeat is skipped `no-route` before any model call.
pub(crate) async fn run_heartbeat_now(link: &gateway::Link, agent: &str) -> Value {
    let name = format!("heartbeat-{agent}");
    let t0 = std::time::Instant::now();
    let job = loop {
        let jobs = link.call("cron.list", json!({"includeDisabled": true})).await.expect("cron.list");
        let job = jobs["jobs"].as_array().into_iter().flatten().find(|j| j["name"] == name.as_str()).cloned();
        if let Some(j) = job {
            break j;
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "no {name} job: {jobs}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ran = link.call("cron.run", json!({"id": job["id"], "mode": "force"})).await.expect("cron.run");
    let run_id = ran["runId"].clone();
    let t0 = std::time::Instant::now();
    loop {
        let runs = link.call("cron.runs", json!({"id": job["id"], "runId": run_id})).await.expect("cron.runs");
        if let Some(e) = runs["entries"].as_array().and_then(|e| e.iter().find(|e| e["action"] == "finished")) {
            assert_eq!(e["status"], "ok", "the heartbeat did not run: {e}");
            return e.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the heartbeat run never finished: {runs}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

//! End to end: config safety (issue #16) against a real OpenClaw 2026.9.6 gateway.
//!
//! `main` is wired through the sidecar by hand (`wiring.md`): its own `cb-main` provider on
//! the sidecar's data address, pinned with `modelPolicy`. The sidecar links to the gateway and
//! takes version 1 of every agent's slice. Then, from another client (a second operator
//! connection doing `config.patch` with baseHash, as the OpenClaw UI or CLI would):
//!
//! 1. a tool-policy change is a new version marked outside ClawButler, a `drifted` audit
//!    record and the `clawbutler_config_drift` gauge; the diff names the path, group and risk;
//! 2. a dry-run rollback shows the plan and changes nothing; the rollback restores the slice
//!    exactly, the pre-rollback state is a version of its own, and the drift is gone;
//! 3. taking `main` off the sidecar provider by hand marks it ungoverned in the agents API and
//!    `/readyz` within seconds, and `clawbutler config drift` (the real binary) says so;
//!    rolling back governs it again.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::{SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_CONFIG_SAFETY_TOKEN";

pub(crate) fn model(id: &str) -> Value {
    json!({"id": id, "name": id, "reasoning": false, "input": ["text"],
           "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
           "contextWindow": 128000, "maxTokens": 4096})
}

fn openclaw_config(data: SocketAddr, direct: &str) -> Value {
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "direct": {"baseUrl": format!("{direct}/v1"), "apiKey": "k-direct", "api": "openai-completions",
                       "models": [model("gpt-4o-mini")]},
            "cb-main": {"baseUrl": format!("http://{data}/a/main/fake/v1"), "apiKey": "k-main",
                        "api": "openai-completions", "timeoutSeconds": 120, "models": [model("gpt-4o-mini")]}
        }},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": {
            "main": {"model": "cb-main/gpt-4o-mini", "modelPolicy": {"allow": ["cb-main/*"]}},
            "ops": {"model": "direct/gpt-4o-mini"}
        }},
    })
}

struct Api {
    control: SocketAddr,
}

impl Api {
    async fn get(&self, path: &str) -> (u16, Value) {
        let auth = format!("Bearer {ADMIN}");
        let r = testkit::http::get(&format!("http://{}{path}", self.control), &[("authorization", &auth)]).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let auth = format!("Bearer {ADMIN}");
        let url = format!("http://{}{path}", self.control);
        let r = testkit::http::post_json(&url, &[("authorization", &auth)], &body).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
    async fn versions(&self, agent: &str) -> Vec<Value> {
        let (code, v) = self.get(&format!("/api/v1/agents/{agent}/config/versions")).await;
        if code != 200 {
            return Vec::new();
        }
        v["items"].as_array().cloned().unwrap_or_default()
    }
    async fn ready(&self) -> (u16, Value) {
        let r = testkit::http::get(&format!("http://{}/readyz", self.control), &[]).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
}

pub(crate) async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f().await {
            return t0.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// `config.get` without the bookkeeping the gateway rewrites on every write.
async fn config_doc(link: &gateway::Link) -> (String, Value) {
    let v = link.call("config.get", json!({})).await.expect("config.get");
    let mut doc = v["parsed"].clone();
    if let Some(o) = doc.as_object_mut() {
        o.remove("meta");
    }
    (v["hash"].as_str().unwrap_or_default().to_string(), doc)
}

/// A change made outside ClawButler: another operator client's `config.patch`.
pub(crate) async fn outside_patch(link: &gateway::Link, patch: Value, replace: &[&str]) {
    let (hash, _) = config_doc(link).await;
    let mut p = json!({"raw": patch.to_string(), "baseHash": hash, "note": "an operator edits by hand"});
    if !replace.is_empty() {
        p["replacePaths"] = json!(replace);
    }
    link.call("config.patch", p).await.expect("outside config.patch");
}

/// A real gateway whose config (`config(data address, upstream url)`) wires agents to the
/// sidecar, the sidecar linked to it with the gateway token in `token_env`, and a second
/// operator client (as the OpenClaw UI or CLI would be). Also used by `e2e_savings`.
pub(crate) struct Linked {
    pub up: ScriptedUpstream,
    pub gw: Gateway,
    pub dir: tempfile::TempDir,
    pub data: SocketAddr,
    pub sidecar: clawbutler::app::Sidecar,
    pub other: std::sync::Arc<gateway::Link>,
    pub stop_other: tokio::sync::watch::Sender<bool>,
}

pub(crate) async fn linked(
    install: &testkit::openclaw::Install,
    token_env: &str,
    config: impl FnOnce(SocketAddr, &str) -> Value,
) -> Linked {
    let up = ScriptedUpstream::start().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(install, config(data, &up.base_url())).await;
    std::env::set_var(token_env, gw.token());
    let dir = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(dir.path())
        .listen(&data.to_string(), "127.0.0.1:0")
        .upstreams(&up.base_url())
        .table(&format!(
            "[gateway]\nurl = \"{}\"\ntoken_env = \"{token_env}\"\nreconnect_initial_ms = 500\nreconnect_max_ms = 2000",
            gw.ws_url()
        ))
        .build();
    let sidecar = clawbutler::app::Sidecar::start(cfg).await.expect("sidecar starts");
    let (other, stop_other) = gateway::attach::connect(&gw.ws_url(), token_env, dir.path()).await.expect("2nd client");
    Linked { up, gw, dir, data, sidecar, other, stop_other }
}

fn check<'a>(ready: &'a Value, name: &str) -> &'a Value {
    ready["checks"].as_array().and_then(|c| c.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_changes_are_versioned_diffed_drift_checked_and_rolled_back() {
    let Some(install) = find_or_skip("config_changes_are_versioned_diffed_drift_checked_and_rolled_back") else {
        return;
    };
    let Linked { up, gw, dir: _dir, data: _, sidecar, other, stop_other } =
        linked(&install, TOKEN_ENV, openclaw_config).await;
    let api = Api { control: sidecar.control_addr };

    // Version 1 at link start: the baseline, nothing drifted, the wiring check passes.
    wait_until("version 1 of main", Duration::from_secs(30), || async { !api.versions("main").await.is_empty() }).await;
    let v1 = api.versions("main").await;
    assert_eq!(
        (v1.len(), v1[0]["version"].as_u64(), v1[0]["source"].as_str()),
        (1, Some(1), Some("initial")),
        "{v1:?}"
    );
    let (_, one) = api.get("/api/v1/agents/main/config/versions/1").await;
    assert_eq!(one["content"]["agents"]["entries"]["main"]["model"], "cb-main/gpt-4o-mini");
    assert_eq!(
        one["content"]["models"]["providers"]["cb-main"]["apiKey"], "__OPENCLAW_REDACTED__",
        "secrets stay redacted: {one}"
    );
    assert!(!one.to_string().contains("k-main"), "no secret stored in clear");
    let (code, ready) = api.ready().await;
    assert_eq!((code, check(&ready, "config_wiring")["ok"].as_bool()), (200, Some(true)), "{ready}");
    let (_, drift) = api.get("/api/v1/agents/main/config/versions/drift").await;
    assert_eq!(drift["drifted"], false, "{drift}");
    let (_, original) = config_doc(&other).await;

    // 1. A tool-policy change outside ClawButler.
    outside_patch(&other, json!({"agents": {"entries": {"main": {"tools": {"deny": ["exec"]}}}}}), &[]).await;
    wait_until("version 2, outside", Duration::from_secs(15), || async {
        api.versions("main").await.first().is_some_and(|v| v["version"] == 2)
    })
    .await;
    let v2 = api.versions("main").await[0].clone();
    assert_eq!((v2["source"].as_str(), v2["actor"].as_str()), (Some("outside"), Some("outside ClawButler")), "{v2}");
    assert_eq!(v2["changed_scopes"], json!(["agent_config"]), "{v2}");
    let (code, diff) = api.get("/api/v1/agents/main/config/versions/diff?from=1&to=2").await;
    assert_eq!(code, 200, "{diff}");
    let deny = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "agents.entries.main.tools")
        .unwrap_or_else(|| panic!("the diff names the tools change: {diff}"));
    assert_eq!((deny["group"].as_str(), deny["risk"].as_str()), (Some("tools_and_permissions"), Some("critical")));
    assert_eq!(diff["groups"]["tools_and_permissions"].as_array().map(Vec::len), Some(1), "{diff}");
    let (_, drift) = api.get("/api/v1/agents/main/config/versions/drift").await;
    assert_eq!((drift["drifted"].as_bool(), drift["suggested_version"].as_u64()), (Some(true), Some(1)), "{drift}");
    assert_eq!(drift["ungoverned"], false, "tools are not the wiring: {drift}");
    let (_, audit) = api.get("/api/v1/audit?agent=main&kind=config&limit=50").await;
    let drifted: Vec<&Value> =
        audit["items"].as_array().into_iter().flatten().filter(|r| r["outcome"] == "drifted").collect();
    assert_eq!(drifted.len(), 1, "one drift event: {audit}");
    assert_eq!(drifted[0]["risk"], "critical");
    let metrics = testkit::http::get(&format!("http://{}/metrics", api.control), &[]).await.text();
    assert!(metrics.contains("clawbutler_config_drift{risk=\"critical\"} 1"), "gauge: {metrics}");
    let (_, ops) = api.get("/api/v1/agents/ops/config/versions").await;
    assert_eq!(ops["items"].as_array().map(Vec::len), Some(1), "ops did not change: {ops}");

    // 2. Dry run: the plan, and nothing changes.
    let (_, live_before) = config_doc(&other).await;
    let (code, plan) =
        api.post("/api/v1/agents/main/config/versions/rollback", json!({"to": 1, "dry_run": true})).await;
    assert_eq!(code, 200, "{plan}");
    assert_eq!(plan["changes"][0]["path"], "agents.entries.main.tools", "{plan}");
    assert_eq!(plan["restart"]["required"], false, "agents.* hot-reloads: {plan}");
    assert_eq!(plan["restart"]["reload_kinds"]["agents.entries.main.tools"], "hot", "{plan}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(config_doc(&other).await.1, live_before, "a dry run changes nothing");
    assert_eq!(api.versions("main").await.len(), 2);
    // A version that does not exist is a 404 problem.
    let (code, _) = api.post("/api/v1/agents/main/config/versions/rollback", json!({"to": 99, "dry_run": true})).await;
    assert_eq!(code, 404);

    // The rollback.
    let (code, done) = api.post("/api/v1/agents/main/config/versions/rollback", json!({"to": 1})).await;
    assert_eq!(code, 200, "{done}");
    assert_eq!(
        (done["restored_exactly"].as_bool(), done["pre_rollback_version"].as_u64()),
        (Some(true), Some(2)),
        "{done}"
    );
    let (_, restored) = config_doc(&other).await;
    // The agent's slice exactly (OpenClaw itself adds `agents.defaults.model`, a global key, on
    // the first write after start: that is the global slice's change, not the agent's).
    assert_eq!(
        restored["agents"]["entries"], original["agents"]["entries"],
        "config.get shows version 1's agents again"
    );
    assert_eq!(restored["models"], original["models"]);
    let v3 = api.versions("main").await[0].clone();
    assert_eq!((v3["version"].as_u64(), v3["source"].as_str()), (Some(3), Some("clawbutler")), "{v3}");
    let (_, drift) = api.get("/api/v1/agents/main/config/versions/drift").await;
    assert_eq!(drift["drifted"], false, "{drift}");
    // ...and the rollback itself can be undone: version 2 is still there to return to.
    let (_, undo) = api.post("/api/v1/agents/main/config/versions/rollback", json!({"to": 2, "dry_run": true})).await;
    assert_eq!(undo["changes"][0]["path"], "agents.entries.main.tools", "{undo}");

    // 3. The wiring removed by hand: ungoverned within seconds.
    let t0 = Instant::now();
    outside_patch(
        &other,
        json!({"agents": {"entries": {"main": {"model": "direct/gpt-4o-mini", "modelPolicy": null}}}}),
        &["agents.entries.main.modelPolicy.allow"],
    )
    .await;
    let patched_in = t0.elapsed();
    let seen = wait_until("main ungoverned in the agents API", Duration::from_secs(10), || async {
        api.get("/api/v1/agents/main").await.1["config_drift"]["ungoverned"] == true
    })
    .await;
    eprintln!("wiring removal: patch answered in {patched_in:?}, agent ungoverned {seen:?} later");
    let (_, main) = api.get("/api/v1/agents/main").await;
    assert_eq!(main["config_drift"]["wiring_lost"], json!(["model provider through the sidecar"]), "{main}");
    let (code, ready) = api.ready().await;
    let wiring = check(&ready, "config_wiring");
    assert_eq!((code, wiring["ok"].as_bool()), (503, Some(false)), "{ready}");
    assert!(wiring["detail"].as_str().unwrap_or("").contains("agent main is UNGOVERNED"), "{ready}");
    let cli = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
            .args(["config", "drift", "main", "--url", &format!("http://{}", api.control)])
            .env("CLAWBUTLER_TOKEN", ADMIN)
            .output()
            .expect("run clawbutler")
    });
    let out = cli.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("UNGOVERNED") && text.contains("rollback main --to 3"), "{text}");
    let api = Api { control: sidecar.control_addr };
    let (code, back) = api.post("/api/v1/agents/main/config/versions/rollback", json!({"to": 3})).await;
    assert_eq!((code, back["restored_exactly"].as_bool()), (200, Some(true)), "{back}");
    let (code, ready) = api.ready().await;
    assert_eq!((code, check(&ready, "config_wiring")["ok"].as_bool()), (200, Some(true)), "{ready}");
    assert_eq!(config_doc(&other).await.1["agents"]["entries"], original["agents"]["entries"]);

    let _ = stop_other.send(true);
    sidecar.shutdown().await;
    drop(gw);
    up.shutdown().await;
}

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
//!    The rollback is critical, so it waits in the approval inbox: denied, nothing changes;
//!    approved after the config changed, nothing is overwritten; approved, it is applied.
//! 3. taking `main` off the sidecar provider by hand marks it ungoverned in the agents API and
//!    `/readyz` within seconds, and `clawbutler config drift` (the real binary) says so;
//!    accepting that as the baseline is refused; `clawbutler config rollback --wait` waits
//!    for the approval and governs it again.
//! 4. a low-risk change the operator made with the OpenClaw CLI (`openclaw config set`) is a
//!    new outside version, accepted as the new baseline;
//! 5. SOUL.md edited outside ClawButler is a new outside version with the file in the diff,
//!    and a rollback writes it back; the global slice is served under `@global`.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::{SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;
pub(crate) use testkit::wait::until as wait_until;

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_CONFIG_SAFETY_TOKEN";

pub(crate) fn model(id: &str) -> Value {
    json!({"id": id, "name": id, "reasoning": false, "input": ["text"],
           "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
           "contextWindow": 128000, "maxTokens": 4096})
}

pub(crate) fn openclaw_config(data: SocketAddr, direct: &str) -> Value {
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

pub(crate) struct Api {
    pub control: SocketAddr,
}

impl Api {
    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let auth = format!("Bearer {ADMIN}");
        let r = testkit::http::get(&format!("http://{}{path}", self.control), &[("authorization", &auth)]).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
    pub(crate) async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let auth = format!("Bearer {ADMIN}");
        let url = format!("http://{}{path}", self.control);
        let r = testkit::http::post_json(&url, &[("authorization", &auth)], &body).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
    pub(crate) async fn versions(&self, agent: &str) -> Vec<Value> {
        let (code, v) = self.get(&format!("/api/v1/agents/{agent}/config/versions")).await;
        if code != 200 {
            return Vec::new();
        }
        v["items"].as_array().cloned().unwrap_or_default()
    }
    /// Ask for a rollback that holds a critical change: 202, nothing applied; the approval id.
    pub(crate) async fn hold_rollback(&self, agent: &str, to: u64) -> String {
        let (code, v) = self.post(&format!("/api/v1/agents/{agent}/config/versions/rollback"), json!({"to": to})).await;
        assert_eq!(
            (code, v["status"].as_str(), v["applied"].as_bool()),
            (202, Some("awaiting_approval"), Some(false)),
            "{v}"
        );
        assert_eq!(
            v["poll"],
            format!("/api/v1/agents/{agent}/config/versions/rollback/{}", v["approval_id"].as_str().unwrap_or(""))
        );
        v["approval_id"].as_str().unwrap_or_default().to_string()
    }
    /// Decide an approval on the version it has now.
    pub(crate) async fn decide(&self, id: &str, decision: &str) -> (u16, Value) {
        let (_, a) = self.get(&format!("/api/v1/approvals/{id}")).await;
        let body = json!({"decision": decision, "expected_version": a["version"]});
        self.post(&format!("/api/v1/approvals/{id}/decision"), body).await
    }
    /// The held rollback once it left `awaiting_approval`/`applying`.
    pub(crate) async fn held_outcome(&self, agent: &str, id: &str) -> Value {
        let path = format!("/api/v1/agents/{agent}/config/versions/rollback/{id}");
        let mut last = Value::Null;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            let (code, v) = self.get(&path).await;
            assert_eq!(code, 200, "{v}");
            if !matches!(v["status"].as_str(), Some("awaiting_approval" | "applying")) {
                return v;
            }
            last = v;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the held rollback did not settle: {last}");
    }
    pub(crate) async fn ready(&self) -> (u16, Value) {
        let r = testkit::http::get(&format!("http://{}/readyz", self.control), &[]).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
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

/// A sidecar on `data` linked to `gw` (its token in the env var `token_env`).
pub(crate) async fn link_sidecar(
    gw: &Gateway,
    token_env: &str,
    data: SocketAddr,
    up: &ScriptedUpstream,
) -> (clawbutler::app::Sidecar, tempfile::TempDir) {
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
    (clawbutler::app::Sidecar::start(cfg).await.expect("sidecar starts"), dir)
}

/// A real gateway whose config (`config(data address, upstream url)`) wires agents to the
/// sidecar, the sidecar linked to it with the gateway token in `token_env`, and a second
/// operator client (as the OpenClaw UI or CLI would be). Also used by `e2e_savings` and
/// `e2e_config_ui`.
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
    let (sidecar, dir) = link_sidecar(&gw, token_env, data, &up).await;
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
    // The drift record is written in the audit log's next group commit: listed a moment later.
    let drift_records = || async {
        let (_, audit) = api.get("/api/v1/audit?agent=main&kind=config&limit=50").await;
        let drifted: Vec<Value> =
            audit["items"].as_array().into_iter().flatten().filter(|r| r["outcome"] == "drifted").cloned().collect();
        drifted
    };
    wait_until("the drift audited", Duration::from_secs(5), || async { !drift_records().await.is_empty() }).await;
    let drifted = drift_records().await;
    assert_eq!(drifted.len(), 1, "one drift event: {drifted:?}");
    assert_eq!(drifted[0]["risk"], "critical");
    let gauge = || async {
        let metrics = testkit::http::get(&format!("http://{}/metrics", api.control), &[]).await.text();
        metrics.contains("clawbutler_config_drift{risk=\"critical\"} 1")
    };
    wait_until("the drift gauge", Duration::from_secs(5), gauge).await;
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

    // The rollback puts a critical change back (the tool policy): it waits in the inbox.
    // First one is denied: nothing changes.
    let held = api.hold_rollback("main", 1).await;
    let (_, inbox) = api.get("/api/v1/approvals?status=pending&kind=config_rollback").await;
    let item = inbox["items"].as_array().and_then(|i| i.iter().find(|a| a["id"] == held)).cloned();
    let item = item.unwrap_or_else(|| panic!("the rollback is in the inbox: {inbox}"));
    assert_eq!((item["agent"].as_str(), item["risk"].as_str()), (Some("main"), Some("critical")), "{item}");
    assert_eq!(item["subject"]["critical_paths"], json!(["agents.entries.main.tools"]), "{item}");
    assert_eq!((item["subject"]["from_version"].as_u64(), item["subject"]["to_version"].as_u64()), (Some(2), Some(1)));
    assert!(
        !item.to_string().contains("k-main") && !item.to_string().contains("exec\""),
        "paths, never values: {item}"
    );
    let (code, always) = api.decide(&held, "allow-always").await;
    assert_eq!(code, 422, "a config rollback is never granted: {always}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(config_doc(&other).await.1, live_before, "nothing changes while it waits");
    let (code, denied) = api.decide(&held, "deny").await;
    assert_eq!(code, 200, "{denied}");
    let out = api.held_outcome("main", &held).await;
    assert_eq!(out["status"], "denied", "{out}");
    assert!(out["why"].as_str().unwrap_or("").contains("not applied"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(config_doc(&other).await.1, live_before, "a denied rollback changes nothing");
    wait_until("rollback_held and rollback_refused records", Duration::from_secs(5), || async {
        let (_, audit) = api.get("/api/v1/audit?agent=main&kind=config&limit=100").await;
        let outcomes: Vec<&str> =
            audit["items"].as_array().into_iter().flatten().filter_map(|r| r["outcome"].as_str()).collect();
        outcomes.contains(&"rollback_held") && outcomes.contains(&"rollback_refused")
    })
    .await;

    // Asked again, and the config changes before the approval: the approval covered the
    // config as it was, so nothing is applied.
    let held = api.hold_rollback("main", 1).await;
    outside_patch(&other, json!({"agents": {"entries": {"ops": {"name": "Ops desk"}}}}), &[]).await;
    let (_, before_approval) = config_doc(&other).await;
    let (code, _) = api.decide(&held, "allow-once").await;
    assert_eq!(code, 200);
    let out = api.held_outcome("main", &held).await;
    assert_eq!(out["status"], "conflict", "{out}");
    assert_eq!(config_doc(&other).await.1["agents"], before_approval["agents"], "nothing overwritten");

    // Asked again and approved: applied, with the approver named.
    let held = api.hold_rollback("main", 1).await;
    let t0 = Instant::now();
    let (code, _) = api.decide(&held, "allow-once").await;
    assert_eq!(code, 200);
    let done = api.held_outcome("main", &held).await;
    eprintln!("critical rollback: applied {:?} after the approval", t0.elapsed());
    assert_eq!(done["status"], "applied", "{done}");
    assert_eq!(
        (done["restored_exactly"].as_bool(), done["pre_rollback_version"].as_u64()),
        (Some(true), Some(2)),
        "{done}"
    );
    let (_, restored) = config_doc(&other).await;
    // The agent's slice exactly (OpenClaw itself adds `agents.defaults.model`, a global key, on
    // the first write after start: that is the global slice's change, not the agent's).
    assert_eq!(
        restored["agents"]["entries"]["main"], original["agents"]["entries"]["main"],
        "config.get shows version 1's agent again"
    );
    assert_eq!(restored["models"], original["models"]);
    let v3 = api.versions("main").await[0].clone();
    assert_eq!((v3["version"].as_u64(), v3["source"].as_str()), (Some(3), Some("clawbutler")), "{v3}");
    assert!(v3["actor"].as_str().unwrap_or("").contains(", approved by seeded-admin)"), "{v3}");
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
    // Accepting the unwired config as the baseline is refused unless said in so many words.
    let (code, refused) = api.post("/api/v1/agents/main/config/versions/accept", json!({})).await;
    assert_eq!(code, 400, "{refused}");
    assert!(refused["detail"].as_str().unwrap_or("").contains("UNGOVERNED"), "{refused}");
    // Putting the wiring back is critical too: the CLI says it waits, and `--wait` follows
    // it until a human approved it and it was applied.
    let control = api.control;
    let cli = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
            .args(["config", "rollback", "main", "--to", "3", "--wait", "60", "--url", &format!("http://{control}")])
            .env("CLAWBUTLER_TOKEN", ADMIN)
            .output()
            .expect("run clawbutler")
    });
    let t0 = Instant::now();
    let held = loop {
        let (_, inbox) = api.get("/api/v1/approvals?status=pending&kind=config_rollback&agent=main").await;
        if let Some(id) = inbox["items"][0]["id"].as_str() {
            break id.to_string();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the CLI's rollback never reached the inbox: {inbox}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        api.get("/api/v1/agents/main").await.1["config_drift"]["ungoverned"],
        true,
        "not applied before approval"
    );
    let (code, _) = api.decide(&held, "allow-once").await;
    assert_eq!(code, 200);
    let out = cli.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("WAITING FOR APPROVAL") && text.contains("APPLIED: approved by"), "{text}");
    let (code, ready) = api.ready().await;
    assert_eq!((code, check(&ready, "config_wiring")["ok"].as_bool()), (200, Some(true)), "{ready}");
    assert_eq!(config_doc(&other).await.1["agents"]["entries"]["main"], original["agents"]["entries"]["main"]);

    // 4. A low-risk change the operator made with the OpenClaw CLI (`openclaw config set`
    // writes the config file; the gateway reloads it and announces `config.changed`): a new
    // version marked outside ClawButler, accepted as the new baseline without a rollback.
    let set = gw
        .cli(&["config", "set", "agents.entries.main.name", "\"Main desk\"", "--strict-json"], Duration::from_secs(90))
        .await;
    assert!(set.status.success(), "openclaw config set: {}\n{}", set.stdout, set.stderr);
    let t_set = Instant::now();
    wait_until("main drifted by its name", Duration::from_secs(45), || async {
        api.get("/api/v1/agents/main").await.1["config_drift"]["drifted"] == true
    })
    .await;
    eprintln!("openclaw config set: a new outside version {:?} after the CLI returned", t_set.elapsed());
    let by_cli = api.versions("main").await[0].clone();
    assert_eq!(
        (by_cli["source"].as_str(), by_cli["actor"].as_str()),
        (Some("outside"), Some("outside ClawButler")),
        "{by_cli}"
    );
    let live = by_cli["version"].as_u64().unwrap_or(0);
    let (code, stale) = api.post("/api/v1/agents/main/config/versions/accept", json!({"version": live - 1})).await;
    assert_eq!(code, 409, "accepting a version that is not live: {stale}");
    let (code, acc) = api.post("/api/v1/agents/main/config/versions/accept", json!({"version": live})).await;
    assert_eq!(
        (code, acc["accepted"].as_bool(), acc["baseline_version"].as_u64()),
        (200, Some(true), Some(live)),
        "{acc}"
    );
    assert_eq!(acc["changes"][0]["path"], "agents.entries.main.name", "{acc}");
    let (_, drift) = api.get("/api/v1/agents/main/config/versions/drift").await;
    assert_eq!(
        (drift["drifted"].as_bool(), drift["baseline"]["version"].as_u64()),
        (Some(false), Some(live)),
        "{drift}"
    );
    assert_eq!(config_doc(&other).await.1["agents"]["entries"]["main"]["name"], "Main desk", "the change stays");
    // Audit records reach the search index with the next group commit.
    wait_until("the drift_accepted record", Duration::from_secs(5), || async {
        let (_, audit) = api.get("/api/v1/audit?agent=main&kind=config&limit=200").await;
        audit["items"].as_array().into_iter().flatten().any(|r| r["outcome"] == "drift_accepted")
    })
    .await;

    // 5. Workspace identity files are versioned too: SOUL.md written outside ClawButler (as
    // the OpenClaw UI or an assistant would) is a new outside version naming the file; a
    // rollback writes the earlier text back.
    let set_soul = |text: &'static str| {
        let other = &other;
        async move {
            other
                .call("agents.files.set", json!({"agentId": "main", "name": "SOUL.md", "content": text}))
                .await
                .expect("agents.files.set")
        }
    };
    set_soul("Be calm and careful.\n").await;
    api.get("/api/v1/agents/main/config/versions/drift").await; // a drift check reads now
    let calm = api.versions("main").await[0].clone();
    let calm_v = calm["version"].as_u64().unwrap_or(0);
    assert!(calm_v > live, "SOUL.md made a version: {calm}");
    set_soul("Move fast.\n").await;
    let (_, drift) = api.get("/api/v1/agents/main/config/versions/drift").await;
    let fast = api.versions("main").await[0].clone();
    assert_eq!(
        (fast["version"].as_u64(), fast["source"].as_str(), fast["changed_scopes"].clone()),
        (Some(calm_v + 1), Some("outside"), json!(["workspace_bundle"])),
        "{fast}"
    );
    assert_eq!(drift["drifted"], true, "{drift}");
    let (_, diff) = api.get(&format!("/api/v1/agents/main/config/versions/diff?from={calm_v}&to={}", calm_v + 1)).await;
    let soul = &diff["groups"]["workspace_files"][0];
    assert_eq!(
        (soul["path"].as_str(), soul["risk"].as_str(), soul["after"].as_str()),
        (Some("$workspace_files.SOUL.md"), Some("high"), Some("Move fast.\n")),
        "{diff}"
    );
    let (code, back) = api.post("/api/v1/agents/main/config/versions/rollback", json!({"to": calm_v})).await;
    assert_eq!((code, back["restored_exactly"].as_bool()), (200, Some(true)), "high risk applies directly: {back}");
    let now = other.call("agents.files.get", json!({"agentId": "main", "name": "SOUL.md"})).await.expect("files.get");
    assert_eq!(now["file"]["content"], "Be calm and careful.\n");

    // The global slice is served too (read only).
    let (code, global) = api.get("/api/v1/agents/@global/config/versions").await;
    assert_eq!(code, 200, "{global}");
    assert!(!global["items"].as_array().map(Vec::is_empty).unwrap_or(true), "{global}");
    let (code, _) =
        api.post("/api/v1/agents/@global/config/versions/rollback", json!({"to": 1, "dry_run": true})).await;
    assert_eq!(code, 400, "the global slice is not rolled back");

    let _ = stop_other.send(true);
    sidecar.shutdown().await;
    drop(gw);
    up.shutdown().await;
}

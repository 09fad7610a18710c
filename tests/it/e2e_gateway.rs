//! End to end with a real OpenClaw gateway and the sidecar's gateway link.
//!
//! One gateway, shared by every step (each start costs 10-25 s): agent `main` is wired through the
//! sidecar (`http://<sidecar>/a/main/fake/v1`) to the scripted model server, agent `ops` exists beside
//! it. The sidecar connects to the gateway as `gateway-client`/`backend` with the shared token.
//! Steps: the link lists the agents; a kill during a SLOW streaming run aborts it within 2 s, the next
//! turn gets the sidecar's refusal, and recover restores the gateway config exactly; exec approvals are
//! decided by policy and by a human through the API; a gateway restart while an approval is pending
//! reconnects the link and approves nothing by itself; attach rewires `ops` through an upstream
//! whose key the sidecar holds, creating `ops`' per-agent key and wiring it as a file SecretRef
//! (a turn works with it, a call without it is refused), and detach puts everything back and
//! revokes exactly that key.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when `CLAWBUTLER_E2E=1`.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::{SidecarConfig, ADMIN};
use testkit::upstream::{reply_for, ScriptedUpstream};
use testkit::wait::until as wait_until;

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_GATEWAY_TOKEN";
/// The upstream key the sidecar holds for upstream `held` (attach wires `ops` through it).
const HELD_KEY_ENV: &str = "CLAWBUTLER_E2E_HELD_UPSTREAM_KEY";
const HELD_KEY: &str = "sk-e2e-held-by-the-sidecar";

/// `main` goes through the sidecar from the start; `ops` talks to its own model server (`held`
/// in the sidecar's config, whose key the sidecar holds) directly until `attach` rewires it.
fn openclaw_config(data: SocketAddr, held: &str) -> Value {
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "direct": {
                "baseUrl": format!("{held}/v1"), "apiKey": "k-ops", "api": "openai-completions",
                "models": [{"id": "gpt-4o-mini", "name": "gpt-4o-mini", "reasoning": false, "input": ["text"],
                            "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000, "maxTokens": 4096}]
            },
            "cb-main": {
                "baseUrl": format!("http://{data}/a/main/fake/v1"), "apiKey": "k-main", "api": "openai-completions",
                "timeoutSeconds": 120,
                "models": [{"id": "gpt-4o-mini", "name": "gpt-4o-mini", "reasoning": false, "input": ["text"],
                            "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000, "maxTokens": 4096}]
            }
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
    fn auth() -> String {
        format!("Bearer {ADMIN}")
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        let r =
            testkit::http::get(&format!("http://{}{path}", self.control), &[("authorization", &Self::auth())]).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("http://{}{path}", self.control);
        let r = testkit::http::post_json(&url, &[("authorization", &Self::auth())], &body).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
}

/// `config.get` without the bookkeeping the gateway rewrites on every write.
pub(crate) async fn config_doc(link: &gateway::Link) -> Value {
    let v = link.call("config.get", json!({})).await.expect("config.get");
    let mut doc = v["parsed"].clone();
    if let Some(o) = doc.as_object_mut() {
        o.remove("meta");
    }
    doc
}

/// The single pending ClawButler approval of `agent`, once it appears.
async fn pending_approval(api: &Api, agent: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (code, body) = api.get(&format!("/api/v1/approvals?status=pending&agent={agent}")).await;
        assert_eq!(code, 200, "{body}");
        if let Some(a) = body["items"].as_array().and_then(|i| i.first()) {
            return a.clone();
        }
        assert!(Instant::now() < deadline, "no pending approval for {agent}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_link_registry_kill_switch_and_exec_approvals() {
    let Some(install) = find_or_skip("gateway_link_registry_kill_switch_and_exec_approvals") else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    let held_up = ScriptedUpstream::start().await;
    std::env::set_var(HELD_KEY_ENV, HELD_KEY);
    let held_table = format!(
        "[[upstreams]]\nname = \"held\"\nkind = \"openai\"\nurl = \"{}/v1\"\napi_key_env = \"{HELD_KEY_ENV}\"",
        held_up.base_url()
    );
    let data_port = free_port();
    let data: SocketAddr = format!("127.0.0.1:{data_port}").parse().unwrap();
    let gw = Arc::new(Gateway::start(&install, openclaw_config(data, &held_up.base_url())).await);
    eprintln!("openclaw gateway ready in {:?} at {}", gw.started_in(), gw.ws_url());
    std::env::set_var(TOKEN_ENV, gw.token());

    let dir = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(dir.path())
        .listen(&data.to_string(), "127.0.0.1:0")
        .upstreams(&up.base_url())
        .table(&held_table)
        .table(&format!(
            "[gateway]\nurl = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\nreconnect_initial_ms = 500\nreconnect_max_ms = 2000",
            gw.ws_url()
        ))
        .build();
    let sidecar = clawbutler::app::Sidecar::start(cfg).await.expect("sidecar starts");
    let api = Api { control: sidecar.control_addr };
    let gateway = sidecar.gateway.clone().expect("gateway link configured");
    let link = gateway.link().clone();

    // 1. The link connects and the registry lists the gateway's agents.
    assert!(link.wait_connected(Duration::from_secs(30)).await, "link up:\n{}", gw.log_tail(40));
    wait_until("agents listed", Duration::from_secs(15), || async {
        let (_, b) = api.get("/api/v1/agents").await;
        let ids: Vec<&str> = b["items"].as_array().into_iter().flatten().filter_map(|a| a["id"].as_str()).collect();
        ids.contains(&"main") && ids.contains(&"ops")
    })
    .await;
    let (code, main) = api.get("/api/v1/agents/main").await;
    assert_eq!(code, 200);
    assert_eq!((main["health"].as_str(), main["killed"].as_bool()), (Some("healthy"), Some(false)), "{main}");
    let workspace = PathBuf::from(main["workspace"].as_str().unwrap_or_else(|| panic!("workspace known: {main}")));
    let ready = testkit::http::get(&format!("http://{}/readyz", api.control), &[]).await;
    assert_eq!(ready.status, 200, "readyz: {}", ready.text());
    assert!(ready.text().contains("\"gateway\""), "{}", ready.text());
    let metrics = testkit::http::get(&format!("http://{}/metrics", api.control), &[]).await.text();
    assert!(metrics.contains("clawbutler_gateway_connected 1"), "gauge up");

    // 2. Kill during a slow streaming run.
    let config_before = config_doc(&link).await;
    let before = up.request_count();
    let gw2 = gw.clone();
    let slow = tokio::spawn(async move { gw2.agent_turn("main", "SLOW please MARK:slow").await });
    assert!(up.wait_for_requests(before + 1, Duration::from_secs(120)).await, "slow run reached the model");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled_before = up.cancelled_streams();
    let t0 = Instant::now();
    // Probe the proxy while the kill runs: how soon are the agent's model calls refused?
    let probe = tokio::spawn(async move {
        let url = format!("http://{data}/a/main/fake/v1/chat/completions");
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "probe"}]});
        loop {
            let r = testkit::http::post_json(&url, &[], &body).await;
            if r.header("x-clawbutler-action") == Some("deny") {
                return t0.elapsed();
            }
            assert!(t0.elapsed() < Duration::from_secs(5), "calls still forwarded 5 s after the kill");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let (code, killed) = api.post("/api/v1/agents/main/kill", json!({"reason": "e2e runaway"})).await;
    let blocked_after = probe.await.unwrap();
    eprintln!("model calls refused at the proxy {blocked_after:?} after the kill request");
    assert!(blocked_after < Duration::from_secs(1), "proxy block took {blocked_after:?}");
    assert_eq!(code, 200, "{killed}");
    assert!(
        up.wait_for_cancelled(cancelled_before + 1, Duration::from_secs(2).saturating_sub(t0.elapsed())).await
            || up.cancelled_streams() > cancelled_before,
        "upstream stream cancelled"
    );
    eprintln!("kill answered in {:?}: {killed}", t0.elapsed());
    wait_until(
        "run ended",
        Duration::from_secs(2).saturating_sub(t0.elapsed()).max(Duration::from_millis(100)),
        || async { api.get("/api/v1/agents/main").await.1["active_runs"] == 0 },
    )
    .await;
    let slow_turn = slow.await.unwrap();
    assert!(!slow_turn.ok(), "the slow run did not finish normally: {}", slow_turn.describe());
    assert_eq!(killed["killed"], true);
    assert_eq!(killed["gateway"]["config_patched"], true, "{killed}");
    let tools = config_doc(&link).await["agents"]["entries"]["main"]["tools"].clone();
    assert_eq!(tools, json!({"deny": ["*"]}), "tools blocked in OpenClaw");
    // Without a reason: refused.
    assert_eq!(api.post("/api/v1/agents/ops/kill", json!({})).await.0, 400);

    let turn = gw.agent_turn("main", "hello after the kill").await;
    let text = turn.reply_text().unwrap_or_default();
    assert!(
        text.contains("kill switch") && text.contains("e2e runaway"),
        "refused with the sidecar's message: {}",
        turn.describe()
    );

    // Recover: refused without confirm, then restores the config exactly.
    assert_eq!(api.post("/api/v1/agents/main/recover", json!({"reason": "fixed"})).await.0, 400);
    let (code, rec) = api.post("/api/v1/agents/main/recover", json!({"reason": "fixed", "confirm": true})).await;
    assert_eq!(code, 200, "{rec}");
    assert_eq!(rec["killed"], false);
    assert_eq!(config_doc(&link).await, config_before, "recover restored the gateway config exactly: {rec}");
    let msg = "hello after recover MARK:back";
    let turn = gw.agent_turn("main", msg).await;
    assert_eq!(turn.reply_text().as_deref(), Some(reply_for(msg).as_str()), "{}", turn.describe());

    // 3. Exec approvals decided by ClawButler.
    let ea = link.call("exec.approvals.get", json!({})).await.expect("exec.approvals.get");
    link.call(
        "exec.approvals.set",
        json!({"file": {"version": 1, "defaults": {"security": "allowlist", "ask": "on-miss", "askFallback": "deny"}},
               "baseHash": ea["hash"]}),
    )
    .await
    .expect("exec.approvals.set");
    // Allowed by policy: runs with nobody asked.
    let turn = gw.agent_turn("main", "RUN_EXEC: echo e2e-allowed").await;
    assert_eq!(turn.reply_text().as_deref(), Some("exec finished: e2e-allowed"), "{}", turn.describe());

    // Held, approved through the API, runs.
    let gw2 = gw.clone();
    let held =
        tokio::spawn(async move { gw2.agent_turn("main", "RUN_EXEC: rm -rf junk-a && touch approved.txt").await });
    let a = pending_approval(&api, "main").await;
    assert_eq!(a["kind"], "exec", "{a}");
    assert!(!workspace.join("approved.txt").exists());
    let (code, d) = api
        .post(
            &format!("/api/v1/approvals/{}/decision", a["id"].as_str().unwrap()),
            json!({"decision": "allow-once", "expected_version": a["version"]}),
        )
        .await;
    assert_eq!(code, 200, "{d}");
    let turn = held.await.unwrap();
    assert!(turn.ok(), "{}", turn.describe());
    assert!(workspace.join("approved.txt").exists(), "the approved command ran");

    // Held, denied through the API, does not run; the model is told.
    let gw2 = gw.clone();
    let held = tokio::spawn(async move { gw2.agent_turn("main", "RUN_EXEC: rm -rf junk-b && touch denied.txt").await });
    let a = pending_approval(&api, "main").await;
    let (code, _) = api
        .post(
            &format!("/api/v1/approvals/{}/decision", a["id"].as_str().unwrap()),
            json!({"decision": "deny", "expected_version": a["version"], "reason": "not today"}),
        )
        .await;
    assert_eq!(code, 200);
    let turn = held.await.unwrap();
    let text = turn.reply_text().unwrap_or_default();
    assert!(text.to_lowercase().contains("denied"), "model told of the denial: {}", turn.describe());
    assert!(!workspace.join("denied.txt").exists(), "the denied command did not run");

    // 4. Gateway restart while an approval is pending: reconnect, nothing approved by itself. An agent run
    // waiting on an approval defers the restart, so the pending approval is requested by an operator
    // client (the gateway accepts `exec.approval.request` from operators), not by a run.
    let (requester, stop_requester) =
        gateway::attach::connect(&gw.ws_url(), TOKEN_ENV, dir.path()).await.expect("second client");
    let req = requester
        .call(
            "exec.approval.request",
            json!({"command": "rm -rf junk-d", "agentId": "main", "cwd": workspace,
                                             "sessionKey": "agent:main:main", "twoPhase": true}),
        )
        .await
        .expect("exec.approval.request");
    let a = pending_approval(&api, "main").await;
    assert_eq!(a["external_id"], req["id"], "held approval carries the OpenClaw id: {a}");
    let _ = stop_requester.send(true);
    let restart =
        link.call("gateway.restart.request", json!({"reason": "e2e restart"})).await.expect("restart request");
    eprintln!("restart: {restart}");
    // OpenClaw 2026.9.6 defers the restart while an approval request is open: the link stays up and the
    // approval stays pending (nothing decided it).
    if restart["status"] == "deferred" {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, now) = api.get(&format!("/api/v1/approvals/{}", a["id"].as_str().unwrap())).await;
        assert_eq!(now["status"], "pending", "still pending while the restart waits: {now}");
        // A human denies it; the deferred restart then goes ahead.
        let (code, _) = api
            .post(
                &format!("/api/v1/approvals/{}/decision", a["id"].as_str().unwrap()),
                json!({"decision": "deny", "expected_version": now["version"], "reason": "restart test"}),
            )
            .await;
        assert_eq!(code, 200);
    }
    wait_until("link down", Duration::from_secs(60), || async { !link.is_connected() }).await;
    assert!(link.wait_connected(Duration::from_secs(90)).await, "link back:\n{}", gw.log_tail(40));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, now) = api.get(&format!("/api/v1/approvals/{}", a["id"].as_str().unwrap())).await;
    assert_ne!(now["status"], "allowed", "nothing auto-approved: {now}");
    let (_, audit) = api.get("/api/v1/audit?kind=exec").await;
    let resolved_allow = audit["items"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|i| i["details"]["openclaw_approval_id"] == req["id"] && i["outcome"] == "resolved_allow-once");
    assert!(!resolved_allow, "no allow was sent for the approval: {audit}");
    wait_until("agents re-read after reconnect", Duration::from_secs(15), || async {
        api.get("/api/v1/agents/main").await.1["health"] == "healthy"
    })
    .await;
    let metrics = testkit::http::get(&format!("http://{}/metrics", api.control), &[]).await.text();
    assert!(metrics.contains("clawbutler_gateway_connected 1"), "gauge back up");

    // 5. attach / detach round trip: `ops` is rewired through the sidecar with a per-agent key,
    // then put back exactly and the key revoked.
    let config_before = config_doc(&link).await;
    let exec_before = link.call("exec.approvals.get", json!({})).await.unwrap()["file"].clone();
    // Through the real binary, as an operator runs it.
    let cli_dir = tempfile::tempdir().unwrap();
    let cli_cfg = cli_dir.path().join("clawbutler.toml");
    std::fs::write(
        &cli_cfg,
        SidecarConfig::new(cli_dir.path())
            .listen(&data.to_string(), &api.control.to_string())
            .upstreams(&up.base_url())
            .table(&held_table)
            .to_toml(),
    )
    .unwrap();
    let cli = |verb: &'static str, dry: bool| {
        let mut args = vec![
            verb.to_string(),
            "--config".into(),
            cli_cfg.display().to_string(),
            "--gateway".into(),
            gw.ws_url(),
            "--token-env".into(),
            TOKEN_ENV.into(),
        ];
        if dry {
            args.push("--dry-run".into());
        }
        async move {
            let out = tokio::task::spawn_blocking(move || {
                // The admin token lets attach create (and detach revoke) per-agent keys.
                std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
                    .args(args)
                    .env("CLAWBUTLER_TOKEN", ADMIN)
                    .output()
                    .expect("run clawbutler")
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(out.status.success(), "clawbutler {verb}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            stdout
        }
    };
    let diff = cli("attach", true).await;
    eprintln!("attach --dry-run:\n{diff}");
    assert!(diff.contains("models.providers.cb-ops"), "{diff}");
    assert!(diff.contains("per-agent key for ops"), "{diff}");
    assert_eq!(config_doc(&link).await, config_before, "--dry-run changes nothing");
    assert_eq!(api.get("/api/v1/agents/ops/keys").await.1["items"], json!([]), "--dry-run creates no key");
    let out = cli("attach", false).await;
    eprintln!("attach:\n{out}");
    let attached = config_doc(&link).await;
    assert_eq!(attached["agents"]["entries"]["ops"]["model"], "cb-ops/gpt-4o-mini");
    assert_eq!(attached["models"]["providers"]["cb-ops"]["baseUrl"], format!("http://{data}/a/ops/held/v1"));
    assert!(attached["models"]["providers"]["cb-ops"]["apiKey"].is_object(), "a SecretRef: {attached}");
    assert!(attached["secrets"]["providers"]["clawbutler-agent-keys"].is_object(), "{attached}");
    // Attach created exactly one key, for ops, and wrote it to a private file OpenClaw reads.
    let (_, keys) = api.get("/api/v1/agents/ops/keys").await;
    let keys = keys["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0]["label"].as_str().unwrap_or_default().starts_with("attach "), "{keys:?}");
    let key_file = cli_dir
        .path()
        .join("gateway")
        .read_dir()
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("agent-keys-")));
    let key_file = key_file.expect("the key file");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let ops_key = serde_json::from_slice::<Value>(&std::fs::read(&key_file).unwrap()).unwrap()["ops"]
        .as_str()
        .unwrap()
        .to_string();
    // A turn works with it: OpenClaw resolved the file SecretRef and the sidecar checked the key.
    let msg = "hello from ops MARK:ops";
    let turn = gw.agent_turn("ops", msg).await;
    assert_eq!(turn.reply_text().as_deref(), Some(reply_for(msg).as_str()), "{}", turn.describe());
    let (_, audit) = api.get("/api/v1/audit?agent=ops&kind=model_call").await;
    assert!(audit["items"].as_array().is_some_and(|i| !i.is_empty()), "ops' turn went through the sidecar: {audit}");
    let sent = held_up.requests().pop().expect("ops' call reached its upstream");
    assert_eq!(sent.headers.get("authorization").unwrap(), &format!("Bearer {HELD_KEY}"), "the sidecar's key went up");
    assert!(!format!("{:?}", sent.headers).contains(&ops_key), "the agent key did not");
    // Anyone else on the host: no key, or ops' key on main's path, is refused.
    let url = format!("http://{data}/a/ops/held/v1/chat/completions");
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "spoof"}]});
    assert_eq!(testkit::http::post_json(&url, &[], &body).await.status, 401);
    let other = format!("http://{data}/a/main/held/v1/chat/completions");
    let r = testkit::http::post_json(&other, &[("authorization", &format!("Bearer {ops_key}"))], &body).await;
    assert_eq!(r.status, 401, "{}", r.text());

    let undo = cli("detach", false).await;
    eprintln!("detach:\n{undo}");
    assert_eq!(config_doc(&link).await, config_before, "detach restored the config exactly");
    let exec_after = link.call("exec.approvals.get", json!({})).await.unwrap()["file"].clone();
    assert_eq!(exec_after, exec_before, "detach restored the exec approvals");
    assert_eq!(api.get("/api/v1/agents/ops/keys").await.1["items"], json!([]), "detach revoked the key");
    assert!(!key_file.exists(), "detach deleted the key file");
    let r = testkit::http::post_json(&url, &[("authorization", &format!("Bearer {ops_key}"))], &body).await;
    assert_eq!(r.status, 401, "the revoked key no longer works: {}", r.text());
    let (_, auth_audit) = api.get("/api/v1/audit?kind=auth&agent=ops").await;
    let outcomes: Vec<&str> =
        auth_audit["items"].as_array().into_iter().flatten().filter_map(|i| i["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"created") && outcomes.contains(&"revoked"), "{auth_audit}");

    drop(gw);
    sidecar.shutdown().await;
    up.shutdown().await;
    held_up.shutdown().await;
}

//! End to end with a real OpenClaw 2026.9.6 gateway and the ClawButler plugin installed on it
//! live through `gateway::plugin_install` (the files, the token file, `config.patch`; what
//! `attach` calls). Agent `main`'s model is the scripted upstream behind the sidecar; its
//! `RUN_TOOL:` prompts make the model call OpenClaw's built-in tools, and every call is decided
//! by the sidecar before it runs:
//!
//! - a `write` inside the workspace runs (the file exists), and OpenClaw's usage for the run
//!   matches the sidecar's metering on the turn's trace;
//! - an `exec` an operator's rule denies does not run, and the model reads the rule;
//! - a `write` outside the workspace is held, approved through the control API, and only then
//!   runs; a `write` to `~/.ssh/authorized_keys` is held and denied, and the file never appears;
//! - a `message` to a recipient off the allow-list is held with the number masked in the inbox;
//!   allow-always grants the recipient, and the next message to it needs no human;
//! - a killed agent's turn is blocked before any model request, with the sidecar's message;
//! - with the sidecar stopped the turn is blocked (fail closed), and works again once it is back;
//! - each decision is one audit record with OpenClaw's run and tool-call ids;
//! - removal takes the plugin out of the gateway again.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`. Takes about two to four minutes (a gateway start, ten turns).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::gateway::plugin_install::PluginInstall;
use clawbutler::config::Config;
use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, free_port, AgentTurn, Gateway};
use testkit::rig::{bundle_dir, SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;
use testkit::wait::until as wait_until;

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_PLUGIN_GATEWAY_TOKEN";
const HEARTBEAT_S: u64 = 5;

/// An operator's rule on top of the shipped bundle: agents may not run curl (a deny, where the
/// shipped rules only hold).
const NO_CURL: &str = r#"package clawbutler

call_denies contains f if {
	input.kind == "plugin"
	input.plugin.family == "exec"
	contains(input.tool.args.command, "curl")
	f := {"rule": "ops.no_curl", "reason": "agents may not run curl", "risk": "high"}
}
"#;

fn openclaw_config(data: SocketAddr) -> Value {
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "cb-main": {
                "baseUrl": format!("http://{data}/a/main/fake/v1"), "apiKey": "k-main", "api": "openai-completions",
                "timeoutSeconds": 120,
                "models": [{"id": "gpt-4o-mini", "name": "gpt-4o-mini", "reasoning": false, "input": ["text"],
                            "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000, "maxTokens": 4096}]
            }
        }},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": {
            "main": {"model": "cb-main/gpt-4o-mini", "modelPolicy": {"allow": ["cb-main/*"]}}
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
    async fn get(&self, path: &str) -> Value {
        let r =
            testkit::http::get(&format!("http://{}{path}", self.control), &[("authorization", &Self::auth())]).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.json()
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("http://{}{path}", self.control);
        let r = testkit::http::post_json(&url, &[("authorization", &Self::auth())], &body).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }

    /// The tool-call decisions recorded for `tool`, oldest first, once there are `n`.
    async fn tool_records(&self, tool: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut v: Vec<Value> =
                self.get("/api/v1/audit?kind=plugin&limit=1000").await["items"].as_array().cloned().unwrap_or_default();
            v.reverse();
            v.retain(|r| r["details"]["kind"] == "tool_call" && r["subject"]["tool"] == tool);
            if v.len() >= n || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The one pending approval of `main`, once it appears.
    async fn pending(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let body = self.get("/api/v1/approvals?status=pending&agent=main").await;
            if let Some(a) = body["items"].as_array().and_then(|i| i.first()) {
                return a.clone();
            }
            assert!(Instant::now() < deadline, "no pending approval for main");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn decide(&self, approval: &Value, decision: &str, reason: &str) {
        let body = json!({"decision": decision, "expected_version": approval["version"], "reason": reason});
        let (code, b) =
            self.post(&format!("/api/v1/approvals/{}/decision", approval["id"].as_str().unwrap()), body).await;
        assert_eq!(code, 200, "{b}");
    }
}

/// The prompt that makes the scripted model call `tool` with `args`.
fn run_tool(tool: &str, args: Value) -> String {
    format!("RUN_TOOL: {tool} {args}")
}

/// Everything the user saw of a turn (reply, or the CLI's error output).
fn shown(t: &AgentTurn) -> String {
    format!("{}\n{}\n{}", t.reply_text().unwrap_or_default(), t.out.stdout, t.out.stderr)
}

fn sidecar_config(dir: &Path, data: SocketAddr, bundle: &Path, up: &ScriptedUpstream, gw: &Gateway) -> Config {
    SidecarConfig::new(dir)
        .listen(&data.to_string(), "127.0.0.1:0")
        .upstreams(&up.base_url())
        .policy_dir(bundle)
        .table(&format!("[plugin]\nheartbeat_s = {HEARTBEAT_S}"))
        .table(&format!(
            "[gateway]\nurl = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\nreconnect_initial_ms = 500\nreconnect_max_ms = 2000",
            gw.ws_url()
        ))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_built_in_tool_calls_are_decided_by_the_sidecar() {
    let Some(install) = find_or_skip("openclaw_built_in_tool_calls_are_decided_by_the_sidecar") else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Arc::new(Gateway::start(&install, openclaw_config(data)).await);
    eprintln!("openclaw gateway ready in {:?} at {}", gw.started_in(), gw.ws_url());
    std::env::set_var(TOKEN_ENV, gw.token());
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), &[("e2e_ops.rego", NO_CURL)]);
    let data_dir = dir.path().join("data");
    let mut sidecar = clawbutler::app::Sidecar::start(sidecar_config(&data_dir, data, &bundle, &up, &gw))
        .await
        .expect("sidecar starts");
    let api = Api { control: sidecar.control_addr };
    let link = sidecar.gateway.clone().expect("gateway link configured").link().clone();
    assert!(link.wait_connected(Duration::from_secs(30)).await, "link up:\n{}", gw.log_tail(40));

    // Install: a plugin token for this gateway, the files, the config patch (hot reload).
    let (code, t) = api.post("/api/v1/plugin-tokens", json!({"gateway": gw.ws_url(), "label": "e2e"})).await;
    assert_eq!(code, 201, "{t}");
    let token = t["token"].as_str().unwrap().to_string();
    let plugin = PluginInstall::new(&data_dir, &data.to_string(), HEARTBEAT_S);
    let t0 = Instant::now();
    let allow_added = plugin.install(&link, &token).await.expect("install");
    let active = plugin.wait_active(&link, Duration::from_secs(60)).await.expect("plugins.list");
    assert!(active, "the plugin is active in OpenClaw:\n{}", gw.log_tail(60));
    eprintln!("plugin active {:?} after the config patch", t0.elapsed());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = api.get("/api/v1/plugins").await;
        if p["items"].as_array().into_iter().flatten().any(|v| v["governance"] == "governed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the plugin does not govern the gateway (plugins.list + heartbeat): {p:#}\n{}",
            gw.log_tail(80)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("gateway governed {:?} after the config patch", t0.elapsed());
    let main = api.get("/api/v1/agents/main").await;
    assert_eq!(main["built_in_tools"]["governance"], "governed", "{main}");
    let workspace = PathBuf::from(main["workspace"].as_str().unwrap_or_else(|| panic!("workspace known: {main}")));

    // 1. Allowed: a write inside the workspace runs without a human.
    let inside = workspace.join("e2e-allowed.txt");
    let turn = gw.agent_turn("main", &run_tool("write", json!({"path": inside, "content": "through the gate"}))).await;
    assert!(turn.ok(), "allowed write turn:\n{}\n{}", turn.describe(), gw.log_tail(40));
    assert!(turn.reply_text().unwrap_or_default().starts_with("tool write finished"), "{}", turn.describe());
    assert_eq!(std::fs::read_to_string(&inside).ok().as_deref(), Some("through the gate"));
    let recs = api.tool_records("write", 1).await;
    let allowed = recs.iter().find(|r| r["outcome"] == "allowed").unwrap_or_else(|| panic!("{recs:#?}"));
    assert_eq!(allowed["subject"]["paths"], json!([inside]), "{allowed}");
    assert!(allowed["details"]["run_id"].is_string() && allowed["details"]["tool_call_id"].is_string(), "{allowed}");
    // OpenClaw's usage for the run (its llm_output report) against the sidecar's metering.
    let trace = allowed["trace_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    let t = loop {
        let t = api.get(&format!("/api/v1/audit/trace/{trace}")).await;
        if !t["usage_check"].is_null() || Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(t["usage_check"]["match"], true, "OpenClaw's usage matches the sidecar's: {t:#}");
    let kinds: Vec<&str> = t["items"].as_array().unwrap().iter().filter_map(|r| r["kind"].as_str()).collect();
    assert!(kinds.contains(&"model_call") && kinds.contains(&"plugin"), "model and tool calls on one trace: {kinds:?}");

    // 2. Denied by an operator's rule: the command never runs, the model reads why.
    let marker = workspace.join("curl-ran");
    let cmd = format!("touch {} && curl -s http://127.0.0.1:9/", marker.display());
    let turn = gw.agent_turn("main", &run_tool("exec", json!({"command": cmd}))).await;
    assert!(turn.ok(), "denied exec turn:\n{}", turn.describe());
    let reply = turn.reply_text().unwrap_or_default();
    assert!(reply.contains("ClawButler policy blocked this exec call") && reply.contains("ops.no_curl"), "{reply}");
    assert!(!marker.exists(), "the denied command ran");
    let recs = api.tool_records("exec", 1).await;
    assert_eq!((recs[0]["outcome"].as_str(), recs[0]["rule"].as_str()), (Some("denied"), Some("ops.no_curl")));

    // 3. Held, approved through the control API, and only then run.
    let outside = gw.home().join("outside-approved.txt");
    let g = gw.clone();
    let prompt = run_tool("write", json!({"path": outside, "content": "approved"}));
    let held = tokio::spawn(async move { g.agent_turn("main", &prompt).await });
    let ap = api.pending().await;
    assert_eq!((ap["kind"].as_str(), ap["rule"].as_str()), (Some("plugin"), Some("plugin.file_outside_workspace")));
    assert_eq!(ap["subject"]["paths"], json!([outside]), "{ap}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!outside.exists(), "a held write ran before anyone approved it");
    api.decide(&ap, "allow-once", "e2e: expected").await;
    let turn = held.await.unwrap();
    assert!(turn.ok(), "approved write turn:\n{}", turn.describe());
    assert_eq!(std::fs::read_to_string(&outside).ok().as_deref(), Some("approved"));

    // 4. Held and denied: the credential file never appears, the model reads the decider's reason.
    let keys = gw.home().join(".ssh/authorized_keys");
    let g = gw.clone();
    let prompt = run_tool("write", json!({"path": keys, "content": "ssh-ed25519 AAAA attacker"}));
    let held = tokio::spawn(async move { g.agent_turn("main", &prompt).await });
    let ap = api.pending().await;
    assert_eq!(ap["rule"], "plugin.file_protected", "{ap}");
    api.decide(&ap, "deny", "no new ssh keys from agents").await;
    let turn = held.await.unwrap();
    assert!(turn.ok(), "denied write turn:\n{}", turn.describe());
    let reply = turn.reply_text().unwrap_or_default();
    assert!(reply.contains("denied it") && reply.contains("no new ssh keys from agents"), "{reply}");
    assert!(!keys.exists(), "the denied write ran");
    let outcomes: Vec<String> =
        api.tool_records("write", 5).await.iter().map(|r| r["outcome"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(outcomes, ["allowed", "held", "approved", "held", "denied"]);

    // 4b. A message to a recipient off the allow-list is held (the inbox shows the number
    // masked, in the subject and the reason); allow-always grants that recipient, so the next
    // message to it goes through without a human. (No channel is configured on this gateway,
    // so OpenClaw's send itself fails after the gate: what matters here is the gate's answer.)
    // OpenClaw 2026.9.6 offers the model a core set of tools and the rest (`message` among
    // them) through its Tool Search wrapper, `tool_call {id, args}`; the gate sees the inner
    // tool's name and parameters.
    let send = |text: &str| {
        let args = json!({"action": "send", "target": "+15550100", "message": text});
        run_tool("tool_call", json!({"id": "message", "args": args}))
    };
    let g = gw.clone();
    let prompt = send("the invoice is ready");
    let mut held = tokio::spawn(async move { g.agent_turn("main", &prompt).await });
    let ap = tokio::select! {
        ap = api.pending() => ap,
        t = &mut held => {
            let offered: Vec<Value> = up.requests().iter().rev().find_map(|r| r.json()).map(|b| {
                b["tools"].as_array().into_iter().flatten().map(|t| t["function"]["name"].clone()).collect()
            }).unwrap_or_default();
            panic!("the message turn ended without a hold:\n{}\ntools offered: {offered:?}\n{}", t.unwrap().describe(), gw.log_tail(60))
        }
    };
    assert_eq!((ap["kind"].as_str(), ap["rule"].as_str()), (Some("plugin"), Some("plugin.message_recipient")), "{ap}");
    let masked = ap["subject"]["recipients"][0].as_str().unwrap_or_default().to_string();
    assert!(masked.starts_with("[phone:"), "{ap}");
    assert!(!ap.to_string().contains("15550100"), "the inbox shows the number in clear: {ap}");
    assert!(ap["reason"].as_str().unwrap_or_default().contains(&masked), "{ap}");
    api.decide(&ap, "allow-always", "e2e: the invoice contact").await;
    let turn = held.await.unwrap();
    assert!(turn.ok(), "approved message turn:\n{}", turn.describe());
    let before = api.get("/api/v1/approvals?agent=main&limit=100").await["items"].as_array().map(Vec::len);
    let turn = gw.agent_turn("main", &send("a second note")).await;
    assert!(turn.ok(), "granted message turn:\n{}", turn.describe());
    let recs = api.tool_records("message", 3).await;
    let outcomes: Vec<&str> = recs.iter().map(|r| r["outcome"].as_str().unwrap_or("")).collect();
    assert_eq!(outcomes, ["held", "approved", "allowed"], "{recs:#?}");
    assert!(recs[2]["rule"].as_str().unwrap_or_default().starts_with("grant:"), "{}", recs[2]);
    let after = api.get("/api/v1/approvals?agent=main&limit=100").await["items"].as_array().map(Vec::len);
    assert_eq!(before, after, "the granted message needed no new approval");

    // 5. A killed agent's turn is blocked before any model request.
    let (code, b) = api.post("/api/v1/agents/main/kill", json!({"reason": "e2e runaway"})).await;
    assert_eq!(code, 200, "{b}");
    let before = up.request_count();
    let turn = gw.agent_turn("main", "hello while killed MARK:killed").await;
    let seen = shown(&turn);
    assert!(!turn.ok(), "a killed agent's turn ran:\n{}", turn.describe());
    assert!(seen.contains("blocked by clawbutler") && seen.contains("stopped agent 'main'"), "{seen}");
    assert_eq!(up.request_count(), before, "no model request for a blocked turn");
    let (code, b) = api.post("/api/v1/agents/main/recover", json!({"reason": "e2e: fixed", "confirm": true})).await;
    assert_eq!(code, 200, "{b}");

    // 6. Sidecar stopped: fail closed; back: works again.
    sidecar.shutdown().await;
    let down = workspace.join("e2e-down.txt");
    let prompt = run_tool("write", json!({"path": down, "content": "x"}));
    let turn = gw.agent_turn("main", &prompt).await;
    let seen = shown(&turn);
    assert!(!turn.ok() && seen.contains("could not be reached") && seen.contains("fail closed"), "{seen}");
    assert!(!down.exists());
    sidecar = clawbutler::app::Sidecar::start(sidecar_config(&data_dir, data, &bundle, &up, &gw))
        .await
        .expect("sidecar restarts");
    let api = Api { control: sidecar.control_addr };
    let turn = gw.agent_turn("main", &prompt).await;
    assert!(turn.ok(), "after the restart:\n{}\n{}", turn.describe(), gw.log_tail(40));
    assert!(down.exists(), "the write ran once the sidecar was back");

    // 7. Removal: exactly what install added goes; OpenClaw no longer lists the plugin.
    let link = sidecar.gateway.clone().expect("gateway link").link().clone();
    assert!(link.wait_connected(Duration::from_secs(30)).await);
    plugin.uninstall(&link, allow_added).await.expect("uninstall");
    wait_until("the plugin gone from plugins.list", Duration::from_secs(30), || async {
        let l = link.call("plugins.list", json!({})).await.unwrap_or_default();
        ::gateway::plugin::listed(&l) == governance::plugin::Listed::Missing
    })
    .await;
    let cfg = link.call("config.get", json!({})).await.expect("config.get");
    assert!(cfg["parsed"]["plugins"]["entries"].get("clawbutler").is_none(), "{}", cfg["parsed"]);
    assert!(!plugin.dir.exists() && !plugin.token_file.exists());
    let last = api.tool_records("write", 6).await.last().cloned().unwrap_or_default();
    assert_eq!(
        (last["outcome"].as_str(), last["subject"]["paths"].clone()),
        (Some("allowed"), json!([down])),
        "{last}"
    );
    drop(gw);
    sidecar.shutdown().await;
    up.shutdown().await;
}

//! End to end: `clawbutler attach` on a stock OpenClaw 2026.9.6 gateway (issue #23).
//!
//! The gateway runs the most common setup: agents on OpenClaw's bundled `openai` and
//! `anthropic` providers (no `models.providers` at all), a default model, a utility model,
//! one agent with `{primary, fallbacks}` across both vendors, one inheriting the default, and
//! one on Google (which the sidecar cannot stand in for). The gateway process has no
//! OPENAI_API_KEY / ANTHROPIC_API_KEY (the state attach asks the operator for); the sidecar
//! has them, and its `openai` and `anthropic` upstreams point at a scripted model server (the
//! real vendor hosts are unreachable here; attach finds the upstreams by name, so it does not
//! depend on where they point).
//!
//! Steps, through the real binary: `attach --dry-run` prints the whole plan and changes
//! nothing; `attach` refuses (exit 3, naming the agent it cannot govern) and changes nothing;
//! `attach --allow-partial` applies the rest, rewrites ClawButler's config (comments kept,
//! `.bak` beside it), and its report shows the Google agent ungoverned. The sidecar then starts
//! from that config: a turn of each agent and a forced fallback (a daily-limit 429 on the
//! primary) reach the scripted server through the sidecar with the vendor key the sidecar
//! holds and the right agent in the audit log; the API and the console's agents page (real
//! Chromium) show each agent's governance; a
//! config change that takes an agent off the sidecar is a `governance` audit record and
//! counts in the drift metric; `status` reports it; `detach` restores the gateway config
//! exactly and ClawButler's config byte for byte.
//!
//! Needs `scripts/install-openclaw.sh` (and `scripts/install-browser.sh` for the console step); skipped with a notice otherwise, failed when `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::ADMIN;
use testkit::upstream::{reply_for, ScriptedUpstream};

pub(crate) const TOKEN_ENV: &str = "CLAWBUTLER_E2E_ATTACH_GATEWAY_TOKEN";
pub(crate) const OPENAI_KEY: &str = "sk-e2e-openai-held-by-the-sidecar";
const ANTHROPIC_KEY: &str = "sk-ant-e2e-held-by-the-sidecar";

fn stock_gateway() -> Value {
    json!({
        "agents": {"ownership": "explicit",
            "defaults": {"skipBootstrap": true, "model": "openai/gpt-5.4-mini", "utilityModel": "openai/gpt-5.4-nano"},
            "entries": {
                "main": {"model": "openai/gpt-5.4-mini"},
                "writer": {"model": {"primary": "anthropic/claude-sonnet-5", "fallbacks": ["openai/gpt-5.4"]}},
                "plain": {},
                "gem": {"model": "google/gemini-3.6-flash"}
            }}
    })
}

pub(crate) fn clawbutler_toml(dir: &Path, data: SocketAddr, control: SocketAddr, up: &str, gw: &str) -> String {
    format!(
        r#"# ClawButler beside the team's gateway.
[server]
listen = "{data}" # the gateway reaches the sidecar here
control_listen = "{control}"
data_dir = "{}"

[auth]
admin_token = "{ADMIN}"

[policies]
eval_timeout_ms = 250

# Vendor APIs (a scripted stand-in in this test).
[[upstreams]]
name = "openai"
kind = "openai"
url = "{up}/v1"

[[upstreams]]
name = "anthropic"
kind = "anthropic"
url = "{up}"

[gateway]
url = "{gw}"
token_env = "{TOKEN_ENV}"
reconnect_initial_ms = 500
reconnect_max_ms = 2000
"#,
        dir.display()
    )
}

pub(crate) struct Cli {
    pub config: std::path::PathBuf,
    pub gateway: String,
}

pub(crate) struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    pub async fn run(&self, args: &[&str]) -> Out {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--config".into(), self.config.display().to_string()]);
        if args[0] != "agent-key" {
            all.extend(["--gateway".into(), self.gateway.clone(), "--token-env".into(), TOKEN_ENV.into()]);
        }
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
                .args(all)
                .env("CLAWBUTLER_TOKEN", ADMIN)
                .output()
                .expect("run clawbutler")
        })
        .await
        .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }
}

/// `config.get`: (hash, parsed without the bookkeeping the gateway rewrites on every write).
pub(crate) async fn config_doc(link: &gateway::Link) -> (String, Value) {
    let v = link.call("config.get", json!({})).await.expect("config.get");
    let mut doc = v["parsed"].clone();
    if let Some(o) = doc.as_object_mut() {
        o.remove("meta");
    }
    (v["hash"].as_str().unwrap_or_default().to_string(), doc)
}

pub(crate) async fn get(control: SocketAddr, path: &str) -> Value {
    let r =
        testkit::http::get(&format!("http://{control}{path}"), &[("authorization", &format!("Bearer {ADMIN}"))]).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    serde_json::from_slice(&r.body).unwrap()
}

pub(crate) async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Completed model calls of `agent` in the audit log, as (upstream, model).
async fn calls(control: SocketAddr, agent: &str) -> Vec<(String, String, String)> {
    let v = get(control, &format!("/api/v1/audit?agent={agent}&kind=model_call&limit=200")).await;
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| i["outcome"] != "started")
        .map(|i| {
            let s = |k: &str| i["subject"][k].as_str().unwrap_or_default().to_string();
            (s("upstream"), s("model"), i["outcome"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_wires_a_stock_gateway_on_builtin_providers() {
    let Some(install) = find_or_skip("attach_wires_a_stock_gateway_on_builtin_providers") else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    // The sidecar holds the vendor keys; the gateway must not see them.
    std::env::set_var("OPENAI_API_KEY", OPENAI_KEY);
    std::env::set_var("ANTHROPIC_API_KEY", ANTHROPIC_KEY);
    let gw =
        Gateway::start_with_env(&install, stock_gateway(), &[("OPENAI_API_KEY", None), ("ANTHROPIC_API_KEY", None)])
            .await;
    eprintln!("openclaw gateway ready in {:?} at {}", gw.started_in(), gw.ws_url());
    std::env::set_var(TOKEN_ENV, gw.token());

    let dir = tempfile::tempdir().unwrap();
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let control: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg_path = dir.path().join("clawbutler.toml");
    let original = clawbutler_toml(dir.path(), data, control, &up.base_url(), &gw.ws_url());
    std::fs::write(&cfg_path, &original).unwrap();
    let cli = Cli { config: cfg_path.clone(), gateway: gw.ws_url() };
    let (link, stop_link) = gateway::attach::connect(&gw.ws_url(), TOKEN_ENV, dir.path()).await.expect("link");
    let (hash_before, config_before) = config_doc(&link).await;
    let exec_before = link.call("exec.approvals.get", json!({})).await.unwrap()["file"].clone();

    // 1. The dry run prints the whole plan and the report, and changes nothing.
    let dry = cli.run(&["attach", "--dry-run"]).await;
    eprintln!("attach --dry-run (exit {}):\n{}{}", dry.code, dry.stdout, dry.stderr);
    assert_eq!(dry.code, 3, "gem cannot be governed: {}", dry.stderr);
    for want in [
        "models.providers.cb-main.api: (absent) -> \"openai-responses\"",
        "models.providers.cb-writer.api: (absent) -> \"anthropic-messages\"",
        "models.providers.cb-writer-openai.baseUrl",
        "agents.entries.writer.modelPolicy",
        "agents.entries.plain.model",
        "agents.entries.main.utilityModel",
        "agents.entries.main.memory",
        "models.catalogRefresh.enabled: (absent) -> false",
        "+ plugins.deny += openai",
        "[[upstreams]] openai.api_key_env: (absent) -> \"OPENAI_API_KEY\"",
        "[[upstreams]] anthropic.api_key_env: (absent) -> \"ANTHROPIC_API_KEY\"",
        "[prices.\"gpt-5.4-mini\"]",
        "remove ANTHROPIC_API_KEY OPENAI_API_KEY from the OpenClaw gateway's environment",
        "per-agent key for writer",
        "exec-approvals agents.main",
        "agent gem",
        "UNGOVERNED",
        "Gemini",
        "STAYS OUTSIDE ClawButler",
        "  agent gem models model google/gemini-3.6-flash",
        "dry run: nothing changed",
    ] {
        assert!(dry.stdout.contains(want), "dry run lacks {want:?}:\n{}", dry.stdout);
    }
    assert_eq!(config_doc(&link).await.0, hash_before, "--dry-run leaves the gateway config alone");
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original, "--dry-run leaves ClawButler's config alone");

    // 2. Without --allow-partial: refused, naming the agent, nothing changed.
    let refused = cli.run(&["attach"]).await;
    assert_eq!(refused.code, 3, "{}\n{}", refused.stdout, refused.stderr);
    assert!(refused.stdout.contains("NOT GOVERNED on the model path: gem"), "{}", refused.stdout);
    assert!(refused.stdout.contains("nothing changed"), "{}", refused.stdout);
    assert_eq!(config_doc(&link).await.0, hash_before);
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original);
    assert!(!dir
        .path()
        .join("gateway")
        .read_dir()
        .is_ok_and(|mut d| d.any(|e| { e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("attach-")) })));

    // 3. --allow-partial applies the rest (the sidecar is stopped: keys go to its store).
    let t0 = Instant::now();
    let applied = cli.run(&["attach", "--allow-partial"]).await;
    eprintln!(
        "attach --allow-partial in {:?} (exit {}):\n{}{}",
        t0.elapsed(),
        applied.code,
        applied.stdout,
        applied.stderr
    );
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(applied.stdout.contains("NOT GOVERNED on the model path: gem"), "the live report: {}", applied.stdout);
    let written = std::fs::read_to_string(&cfg_path).unwrap();
    assert_eq!(std::fs::read_to_string(format!("{}.bak", cfg_path.display())).unwrap(), original, ".bak kept");
    for comment in
        ["# ClawButler beside the team's gateway.", "# the gateway reaches the sidecar here", "# Vendor APIs"]
    {
        assert!(written.contains(comment), "comments kept:\n{written}");
    }
    let t: toml::Table = toml::from_str(&written).unwrap();
    let ups = t["upstreams"].as_array().unwrap();
    assert_eq!(ups.len(), 2, "both reused: {written}");
    assert_eq!(ups[0]["api_key_env"].as_str(), Some("OPENAI_API_KEY"));
    assert_eq!(ups[1]["api_key_env"].as_str(), Some("ANTHROPIC_API_KEY"));
    assert!(
        t["prices"]["claude-sonnet-5"]["input"].as_float().is_some(),
        "OpenClaw's price for a model ClawButler lacked"
    );
    let (_, attached) = config_doc(&link).await;
    let provs = &attached["models"]["providers"];
    assert_eq!(provs["cb-main"]["baseUrl"], format!("http://{data}/a/main/openai/v1"));
    assert_eq!(provs["cb-writer"]["baseUrl"], format!("http://{data}/a/writer/anthropic"));
    assert!(provs["cb-main"]["apiKey"].is_object(), "the agent key, as a file SecretRef: {}", provs["cb-main"]);
    let deny = attached["plugins"]["deny"].as_array().cloned().unwrap_or_default();
    assert!(deny.contains(&json!("openai")) && deny.contains(&json!("anthropic")), "{deny:?}");
    assert_eq!(attached["models"]["catalogRefresh"]["enabled"], false);
    assert_eq!(attached["agents"]["entries"]["gem"]["model"], "google/gemini-3.6-flash", "gem left alone");

    // 4. The sidecar starts from the config attach wrote.
    let cfg = clawbutler::config::Config::load(Some(&cfg_path), std::env::vars()).expect("the written config loads");
    let sidecar = clawbutler::app::Sidecar::start(cfg).await.expect("sidecar starts");
    assert!(sidecar.gateway.as_ref().unwrap().link().wait_connected(Duration::from_secs(30)).await);

    // 5. A turn of each agent goes through the sidecar, attributed to it, with the sidecar's key.
    for (agent, upstream) in [("main", "openai"), ("plain", "openai"), ("writer", "anthropic")] {
        let msg = format!("hello from {agent} MARK:{agent}");
        let turn = gw.agent_turn(agent, &msg).await;
        assert_eq!(turn.reply_text().as_deref(), Some(reply_for(&msg).as_str()), "{agent}: {}", turn.describe());
        let done = calls(control, agent).await;
        assert!(
            done.iter().any(|(u, _, o)| u == upstream && o == "completed"),
            "{agent}'s call through the sidecar to {upstream}: {done:?}"
        );
    }
    let main_models: Vec<String> = calls(control, "main").await.into_iter().map(|c| c.1).collect();
    assert!(main_models.contains(&"gpt-5.4-mini".to_string()), "{main_models:?}");

    // A forced fallback: the primary's vendor answers "daily limit reached"; OpenClaw moves to
    // the fallback at once, and that goes through the sidecar too, as writer.
    let before = up.request_count();
    let msg = "fall back please DAILY_LIMIT:claude-sonnet-5 MARK:fallback";
    let turn = gw.agent_turn("writer", msg).await;
    assert_eq!(turn.reply_text().as_deref(), Some(reply_for(msg).as_str()), "{}", turn.describe());
    let writer = calls(control, "writer").await;
    assert!(
        writer.iter().any(|(u, m, o)| u == "anthropic" && m == "claude-sonnet-5" && o == "upstream_error"),
        "{writer:?}"
    );
    assert!(writer.iter().any(|(u, m, o)| u == "openai" && m == "gpt-5.4" && o == "completed"), "{writer:?}");
    let seen = up.requests();
    let fallback = &seen[before..];
    assert!(fallback.iter().any(|r| r.path == "/v1/messages"), "the primary was tried");
    assert!(fallback.iter().any(|r| r.path == "/v1/responses" && r.json().is_some_and(|b| b["model"] == "gpt-5.4")));
    // Every request the vendors saw carried the sidecar's key: nothing went around it.
    for r in &seen {
        let auth = r.headers.get("authorization").or_else(|| r.headers.get("x-api-key"));
        let auth = auth.and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(auth == format!("Bearer {OPENAI_KEY}") || auth == ANTHROPIC_KEY, "{} with {auth:?}", r.path);
    }

    // 6. The API shows each agent's governance, computed from the live gateway config.
    wait_for("governance computed", Duration::from_secs(30), || async {
        !get(control, "/api/v1/agents/main").await["governance"].is_null()
    })
    .await;
    let main = get(control, "/api/v1/agents/main").await;
    assert_eq!(main["governance"]["model_path_governed"], true, "{main}");
    assert_eq!(main["governance"]["source"], "live");
    let gem = get(control, "/api/v1/agents/gem").await;
    assert_eq!(gem["governance"]["model_path_governed"], false, "{gem}");
    let models = gem["governance"]["sections"][0]["paths"].as_array().cloned().unwrap_or_default();
    assert!(
        models.iter().any(|p| p["state"] == "ungoverned" && p["why"].as_str().unwrap_or("").contains("Gemini")),
        "{gem}"
    );
    let exec = &main["governance"]["sections"][1]["paths"][0];
    assert_eq!((exec["state"].as_str(), exec["path"].as_str()), (Some("governed"), Some("exec")), "{main}");

    // The same report on the agents page of the console, in a real browser: gem's card says its
    // model calls are not all through ClawButler and why; main's says they are.
    if let Some((chromium, driver_bin)) = crate::ui_browser::browser_paths() {
        let driver = crate::ui_browser::Driver::start(&driver_bin).await;
        let b = crate::ui_browser::Browser::open(&driver, &chromium).await;
        b.goto(&format!("http://{control}/")).await;
        b.type_into("[data-testid=token]", ADMIN).await;
        b.click("[data-testid=signin]").await;
        b.goto(&format!("http://{control}/#/agents")).await;
        // The card of an agent: the one whose id field is exactly the agent's id.
        let card = |agent: &str, cond: &str| {
            format!(
                "[...document.querySelectorAll('[data-testid=agent]')].some((c) => \
                 [...c.querySelectorAll('dd')].some((d) => d.textContent === '{agent}') \
                 && c.querySelector('[data-testid=governance]') && {cond})"
            )
        };
        b.wait_js(
            "gem ungoverned with why",
            &card(
                "gem",
                "c.querySelector('[data-testid=governance-state]').textContent === 'Model calls NOT all through ClawButler' \
                 && c.querySelector('[data-testid=governance-gaps]').innerText.includes('Gemini')",
            ),
        )
        .await;
        b.wait_js(
            "main governed",
            &card(
                "main",
                "c.querySelector('[data-testid=governance-state]').textContent === 'Model calls go through ClawButler'",
            ),
        )
        .await;
        b.screenshot("agents-governance-desktop.png").await;
        b.close().await;
    }

    // 7. Drift: main pointed back at OpenAI directly is an audit record and a metric.
    let (hash, _) = config_doc(&link).await;
    let raw = json!({"agents": {"entries": {"main": {"model": "openai/gpt-5.4-mini"}}}}).to_string();
    link.call("config.patch", json!({"raw": raw, "baseHash": hash, "note": "e2e drift"})).await.expect("patch");
    wait_for("a governance drift record", Duration::from_secs(60), || async {
        let v = get(control, "/api/v1/audit?kind=governance&agent=main").await;
        v["items"].as_array().is_some_and(|i| i.iter().any(|r| r["outcome"] == "ungoverned"))
    })
    .await;
    let metrics = testkit::http::get(&format!("http://{control}/metrics"), &[]).await.text();
    assert!(metrics.contains("clawbutler_governance_ungoverned_agents 2"), "main and gem");
    assert!(metrics.contains("clawbutler_governance_drift_total{direction=\"lost\"}"), "drift counted");
    let status = cli.run(&["status"]).await;
    assert_eq!(status.code, 3, "{}", status.stdout);
    assert!(
        status.stdout.contains("drift since attach") && status.stdout.contains("agent main models model"),
        "{}",
        status.stdout
    );
    // Put it back (detach then finds exactly what attach left).
    let (hash, _) = config_doc(&link).await;
    let raw = json!({"agents": {"entries": {"main": {"model": "cb-main/gpt-5.4-mini"}}}}).to_string();
    link.call("config.patch", json!({"raw": raw, "baseHash": hash, "note": "e2e drift back"})).await.expect("patch");
    let status = cli.run(&["status", "--allow-partial"]).await;
    assert_eq!(status.code, 0, "{}", status.stdout);
    assert!(status.stdout.contains("no drift since attach"), "{}", status.stdout);

    // 8. Detach restores the gateway config exactly, ClawButler's config byte for byte, the
    // exec approvals, and revokes the keys.
    let undo = cli.run(&["detach"]).await;
    eprintln!("detach (exit {}):\n{}{}", undo.code, undo.stdout, undo.stderr);
    assert_eq!(undo.code, 0, "{}\n{}", undo.stderr, gw.log_tail(80));
    assert_eq!(config_doc(&link).await.1, config_before, "detach restored the gateway config exactly");
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original, "ClawButler's config restored byte for byte");
    let exec_after = link.call("exec.approvals.get", json!({})).await.unwrap()["file"].clone();
    assert_eq!(exec_after, exec_before, "exec approvals restored");
    for agent in ["main", "writer", "plain"] {
        assert_eq!(
            get(control, &format!("/api/v1/agents/{agent}/keys")).await["items"],
            json!([]),
            "{agent}'s key revoked"
        );
    }
    assert!(undo.stdout.contains("give it ANTHROPIC_API_KEY OPENAI_API_KEY back"), "{}", undo.stdout);

    let _ = stop_link.send(true);
    sidecar.shutdown().await;
    drop(gw);
    up.shutdown().await;
}

/// The smallest real setup: one agent on Anthropic. Attach governs it (exit 0, nothing left
/// outside on its model path); detach has to take a sidecar provider bigger than the rest of
/// the file back out under OpenClaw's guard against writes that halve the config file, and
/// restores `config.get` exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_and_detach_a_one_agent_gateway() {
    let Some(install) = find_or_skip("attach_and_detach_a_one_agent_gateway") else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    std::env::set_var("ANTHROPIC_API_KEY", ANTHROPIC_KEY);
    let stock = json!({"agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true},
                                  "entries": {"main": {"model": "anthropic/claude-sonnet-5"}}}});
    let gw = Gateway::start_with_env(&install, stock, &[("OPENAI_API_KEY", None), ("ANTHROPIC_API_KEY", None)]).await;
    std::env::set_var(TOKEN_ENV, gw.token());
    let dir = tempfile::tempdir().unwrap();
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let control: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg_path = dir.path().join("clawbutler.toml");
    let original = clawbutler_toml(dir.path(), data, control, &up.base_url(), &gw.ws_url());
    std::fs::write(&cfg_path, &original).unwrap();
    let cli = Cli { config: cfg_path.clone(), gateway: gw.ws_url() };
    let (link, stop_link) = gateway::attach::connect(&gw.ws_url(), TOKEN_ENV, dir.path()).await.expect("link");
    let (_, before) = config_doc(&link).await;

    // The opt-outs: no plugin, no MCP in the plan (this gateway has no MCP server anyway).
    let dry = cli.run(&["attach", "--dry-run", "--no-plugin", "--no-mcp"]).await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(
        !dry.stdout.contains("plugins.entries.clawbutler.enabled") && !dry.stdout.contains("+ plugin token"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("UNGOVERNED built-in tools"), "the report says so: {}", dry.stdout);

    let applied = cli.run(&["attach"]).await;
    eprintln!("attach (exit {}):\n{}{}", applied.code, applied.stdout, applied.stderr);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(
        applied.stdout.contains("every agent's model path goes through ClawButler (1 agent(s))"),
        "{}",
        applied.stdout
    );
    let (_, attached) = config_doc(&link).await;
    assert_eq!(attached["agents"]["entries"]["main"]["model"], "cb-main/claude-sonnet-5");
    assert_eq!(attached["models"]["providers"]["cb-main"]["baseUrl"], format!("http://{data}/a/main/anthropic"));

    let undo = cli.run(&["detach"]).await;
    eprintln!("detach (exit {}):\n{}{}", undo.code, undo.stdout, undo.stderr);
    assert_eq!(undo.code, 0, "{}\n{}", undo.stderr, gw.log_tail(60));
    assert_eq!(config_doc(&link).await.1, before, "detach restored the gateway config exactly");
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original);
    assert!(!dir.path().join("openclaw-plugin").exists(), "the plugin attach installed is gone");

    let _ = stop_link.send(true);
    drop(gw);
    up.shutdown().await;
}

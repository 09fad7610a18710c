//! End to end: `clawbutler attach` also puts a real OpenClaw 2026.9.6 gateway's MCP tools and
//! built-in tools through the sidecar (issues #13, #14, #23).
//!
//! The gateway has two agents on OpenClaw's bundled `openai` provider and one real MCP server
//! in `mcp.servers` (`@modelcontextprotocol/server-everything` over Streamable HTTP, from
//! `scripts/install-mcp-tools.sh`). Through the real binary:
//! - `attach --dry-run` prints the MCP move, the `cb-<agent>` entries, the deny globs, the
//!   tokens and the plugin install, and changes nothing (gateway config, ClawButler's config,
//!   no plugin files);
//! - `attach` moves the server into ClawButler's `[[mcp_servers]]` (gone from OpenClaw), gives
//!   each agent `mcp.servers.cb-<agent>` on its sidecar endpoint and denies the other's
//!   `cb-<other>__*`, installs the plugin (`plugins.list`: active), and writes the MCP tokens
//!   to an env file; the gateway is restarted with that file's lines, as the operator is told;
//! - with the sidecar started from the config attach wrote: `main`'s scripted model calls the
//!   server's `echo` through `cb-main`, which reaches server-everything through the sidecar as
//!   `main` (audit `tool_call`); `ops` cannot use `main`'s entry; a built-in `write` is decided
//!   by the sidecar through the plugin (audit `plugin`) and runs; a heartbeat run of `main`
//!   (its `heartbeat-main` cron monitor job run now) has its model calls recorded
//!   `heartbeat` by the plugin's trace join, and `GET /api/v1/cost?by=task` counts them;
//! - `detach` restores `config.get` exactly and ClawButler's config byte for byte, removes
//!   the plugin's files and the env file, and revokes the MCP and plugin tokens;
//! - attach and detach again with the sidecar running (tokens through its control API).
//!
//! Needs `scripts/install-openclaw.sh` and `scripts/install-mcp-tools.sh`; skipped with a
//! notice otherwise, failed when `CLAWBUTLER_E2E=1`. About a minute and a half (two gateway
//! starts, three turns).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::upstream::ScriptedUpstream;

use crate::e2e_attach::{clawbutler_toml, config_doc, get, wait_for, Cli, OPENAI_KEY, TOKEN_ENV};

fn gateway_config(mcp_url: &str) -> Value {
    json!({
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true},
            "entries": {"main": {"model": "openai/gpt-5.4-mini",
                                 // A heartbeat (step 5), run on demand: no channel to report to,
                                 // and a day apart so none starts by itself during the test.
                                 "heartbeat": {"every": "24h", "target": "none"}},
                        "ops": {"model": "openai/gpt-5.4-mini"}}},
        "mcp": {"servers": {"ev": {"url": mcp_url, "transport": "streamable-http"}}},
    })
}

/// The prompt that makes the scripted model call the OpenClaw tool `id` (Tool Search's
/// `tool_call {id, args}`).
fn call(id: &str, args: Value) -> String {
    format!("CALL_TOOL: tool_call {}", json!({"id": id, "args": args}))
}

/// Whether some line of `out` has all of `parts`.
fn line_with(out: &str, parts: &[&str]) -> bool {
    out.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// The audit records of `kind` for `agent`.
async fn records(control: SocketAddr, kind: &str, agent: &str) -> Vec<Value> {
    get(control, &format!("/api/v1/audit?agent={agent}&kind={kind}&limit=200")).await["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `VAR=value` lines of the env file attach wrote.
fn env_lines(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect()
}

fn env_file(data_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(data_dir.join("gateway"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("mcp-tokens-")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_puts_mcp_and_built_in_tools_through_the_sidecar() {
    let Some(install) = find_or_skip("attach_puts_mcp_and_built_in_tools_through_the_sidecar") else {
        return;
    };
    let Some(tools) = testkit::mcp::find_or_skip("attach_puts_mcp_and_built_in_tools_through_the_sidecar") else {
        return;
    };
    let scripts = tools.scripts();
    let everything = scripts.everything_http(&[]);
    let up = ScriptedUpstream::start().await;
    std::env::set_var("OPENAI_API_KEY", OPENAI_KEY);
    let no_keys = [("OPENAI_API_KEY", None), ("ANTHROPIC_API_KEY", None)];
    let mut gw = Gateway::start_with_env(&install, gateway_config(&everything.url()), &no_keys).await;
    eprintln!("openclaw gateway ready in {:?} at {}", gw.started_in(), gw.ws_url());
    std::env::set_var(TOKEN_ENV, gw.token());

    let dir = tempfile::tempdir().unwrap();
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let control: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let cfg_path = dir.path().join("clawbutler.toml");
    let original = format!(
        "{}\n[plugin]\nheartbeat_s = 5\n",
        clawbutler_toml(dir.path(), data, control, &up.base_url(), &gw.ws_url())
    );
    std::fs::write(&cfg_path, &original).unwrap();
    let cli = Cli { config: cfg_path.clone(), gateway: gw.ws_url() };
    let plugin_dir = dir.path().join("openclaw-plugin");
    let (link, stop_link) = gateway::attach::connect(&gw.ws_url(), TOKEN_ENV, dir.path()).await.expect("link");
    let (hash_before, config_before) = config_doc(&link).await;

    // 1. The dry run shows every tool change and changes nothing.
    let dry = cli.run(&["attach", "--dry-run"]).await;
    eprintln!("attach --dry-run (exit {}):\n{}{}", dry.code, dry.stdout, dry.stderr);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let endpoint = |agent: &str| format!("http://{data}/mcp/agent/{agent}");
    for want in [
        format!("mcp.servers.cb-main.url: (absent) -> \"{}\"", endpoint("main")),
        format!("mcp.servers.cb-ops.url: (absent) -> \"{}\"", endpoint("ops")),
        format!("mcp.servers.ev.url: \"{}\" -> (absent)", everything.url()),
        "agents.entries.main.tools.deny: (absent) -> [\"cb-ops__*\"]".to_string(),
        "agents.entries.ops.tools.deny: (absent) -> [\"cb-main__*\"]".to_string(),
        format!("+ clawbutler config [[mcp_servers]] ev ({}; moved from OpenClaw's mcp.servers.ev)", everything.url()),
        "+ MCP token for main: CB_MCP_TOKEN_MAIN=...".to_string(),
        "plugins.entries.clawbutler.enabled: (absent) -> true".to_string(),
        format!("plugins.entries.clawbutler.config.decisionUrl: (absent) -> \"http://{data}/v1/decide\""),
        "+ plugin token for this gateway".to_string(),
        "dry run: nothing changed".to_string(),
    ] {
        assert!(dry.stdout.contains(&want), "dry run lacks {want:?}:\n{}", dry.stdout);
    }
    assert!(line_with(&dry.stdout, &["governed", "mcp server cb-main", &endpoint("main")]), "{}", dry.stdout);
    assert!(line_with(&dry.stdout, &["governed", "built-in tools"]), "{}", dry.stdout);
    assert_eq!(config_doc(&link).await.0, hash_before, "--dry-run leaves the gateway config alone");
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original, "--dry-run leaves ClawButler's config alone");
    assert!(!plugin_dir.exists() && env_file(dir.path()).is_none(), "--dry-run writes no files");

    // 2. Attach (the sidecar is stopped: tokens and keys go to its store).
    let t0 = Instant::now();
    let applied = cli.run(&["attach"]).await;
    let attach_time = t0.elapsed();
    eprintln!("attach in {attach_time:?} (exit {}):\n{}{}", applied.code, applied.stdout, applied.stderr);
    assert_eq!(applied.code, 0, "{}\n{}", applied.stderr, gw.log_tail(40));
    assert!(applied.stdout.contains("the ClawButler plugin is active in OpenClaw"), "{}", applied.stdout);
    assert!(applied.stdout.contains("EnvironmentFile="), "{}", applied.stdout);
    let (_, attached) = config_doc(&link).await;
    let servers = attached["mcp"]["servers"].as_object().cloned().unwrap_or_default();
    let names: Vec<&str> = servers.keys().map(String::as_str).collect();
    assert_eq!(names, ["cb-main", "cb-ops"], "the upstream left OpenClaw: {}", attached["mcp"]);
    assert_eq!(servers["cb-main"]["url"], endpoint("main"));
    assert_eq!(servers["cb-ops"]["url"], endpoint("ops"));
    assert_eq!(attached["agents"]["entries"]["main"]["tools"]["deny"], json!(["cb-ops__*"]));
    assert_eq!(attached["agents"]["entries"]["ops"]["tools"]["deny"], json!(["cb-main__*"]));
    let entry = &attached["plugins"]["entries"]["clawbutler"];
    assert_eq!(entry["enabled"], true, "{}", attached["plugins"]);
    assert_eq!(entry["config"]["decisionUrl"], format!("http://{data}/v1/decide"));
    let listed = gateway::plugin::listed(&link.call("plugins.list", json!({})).await.expect("plugins.list"));
    assert!(matches!(listed, governance::plugin::Listed::Active { .. }), "{listed:?}");
    for f in ["index.js", "sidecar.js", "openclaw.plugin.json", "package.json"] {
        assert!(plugin_dir.join(f).exists(), "{f} written");
    }
    let written: toml::Table = toml::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let moved = written["mcp_servers"].as_array().cloned().unwrap_or_default();
    assert_eq!(moved.len(), 1, "{written:?}");
    assert_eq!(moved[0]["name"].as_str(), Some("ev"));
    assert_eq!(moved[0]["url"].as_str(), Some(everything.url().as_str()));
    let env_path = env_file(dir.path()).expect("the MCP token env file");
    let env = env_lines(&env_path);
    let env_names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(env_names, ["CB_MCP_TOKEN_MAIN", "CB_MCP_TOKEN_OPS"]);
    assert!(env.iter().all(|(_, v)| v.len() > 20), "tokens in the env file");
    assert!(!applied.stdout.contains(&env[0].1), "a token was printed");

    // 3. The operator adds the env file to the gateway's environment and restarts it; the
    // sidecar starts from the config attach wrote.
    let mut with_env: Vec<(&str, Option<&str>)> = no_keys.to_vec();
    with_env.extend(env.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))));
    let t0 = Instant::now();
    gw.restart_with_env(&with_env).await;
    eprintln!("gateway restarted in {:?}", t0.elapsed());
    assert!(link.wait_connected(Duration::from_secs(30)).await, "the test's link is back");
    let cfg = clawbutler::config::Config::load(Some(&cfg_path), std::env::vars()).expect("the written config loads");
    let sidecar = clawbutler::app::Sidecar::start(cfg).await.expect("sidecar starts");
    let sidecar_link = sidecar.gateway.as_ref().unwrap().link().clone();
    assert!(sidecar_link.wait_connected(Duration::from_secs(30)).await);

    // 4. main's model calls the MCP server's echo: through the sidecar, as main.
    let t0 = Instant::now();
    let turn = gw.agent_turn("main", &call("cb-main__ev__echo", json!({"message": "hi from main"}))).await;
    let text = turn.reply_text().unwrap_or_default();
    assert!(text.contains("Echo: hi from main"), "{}\n{}", turn.describe(), gw.log_tail(40));
    eprintln!("MCP turn in {:?}", t0.elapsed());
    let recs = records(control, "tool_call", "main").await;
    assert!(
        recs.iter().any(|r| r["agent"] == "main" && r["subject"]["server"] == "ev" && r["subject"]["tool"] == "echo"),
        "{recs:#?}"
    );

    // ops cannot use main's entry (denied in OpenClaw; nothing reaches the sidecar as main).
    let before = records(control, "tool_call", "main").await.len();
    let turn = gw.agent_turn("ops", &call("cb-main__ev__echo", json!({"message": "from ops"}))).await;
    assert!(!turn.reply_text().unwrap_or_default().contains("Echo: from ops"), "{}", turn.describe());
    assert_eq!(records(control, "tool_call", "main").await.len(), before, "ops's call reached main's endpoint");

    // 5. A built-in write is decided by the sidecar through the plugin, and runs.
    wait_for("main's workspace (plugin heartbeat)", Duration::from_secs(60), || async {
        get(control, "/api/v1/agents/main").await["workspace"].is_string()
    })
    .await;
    let workspace = get(control, "/api/v1/agents/main").await["workspace"].as_str().map(PathBuf::from).unwrap();
    let file = workspace.join("e2e-attach-write.txt");
    let prompt = format!("RUN_TOOL: write {}", json!({"path": file, "content": "through the plugin"}));
    let turn = gw.agent_turn("main", &prompt).await;
    assert!(turn.ok(), "{}\n{}", turn.describe(), gw.log_tail(40));
    assert_eq!(std::fs::read_to_string(&file).ok().as_deref(), Some("through the plugin"));
    let recs = records(control, "plugin", "main").await;
    assert!(
        recs.iter().any(|r| r["subject"]["tool"] == "write" && r["outcome"] == "allowed"),
        "the write was decided by the sidecar: {recs:#?}"
    );
    // Cost by task type: the turn's model calls carry the run the plugin posted (joined by
    // the run's trace id) and the session header attach turned on.
    let write = recs.iter().find(|r| r["subject"]["tool"] == "write").unwrap();
    let calls: Vec<Value> =
        records(control, "model_call", "main").await.into_iter().filter(|r| r["outcome"] != "started").collect();
    let of_turn: Vec<&Value> = calls.iter().filter(|r| r["trace_id"] == write["trace_id"]).collect();
    assert!(!of_turn.is_empty(), "the turn's model calls share its trace: {calls:#?}");
    for r in of_turn {
        assert_eq!(
            (r["details"]["task_type"].as_str(), r["details"]["task_source"].as_str()),
            (Some("interactive"), Some("plugin_trace")),
            "{r}"
        );
        assert!(r["details"]["session_key"].as_str().is_some_and(|k| k.starts_with("agent:main:")), "{r}");
        assert!(r["session"].is_string(), "attach turned the session header on: {r}");
    }
    // A call outside any run (OpenClaw's utility model, no session, its own trace) stays
    // unknown; nothing is guessed, and no call of main is anything but interactive.
    for r in calls.iter().filter(|r| r["details"]["task_type"].is_string()) {
        assert_eq!(r["details"]["task_type"], "interactive", "{r}");
    }
    // A heartbeat run of main (its cron monitor job, run now): the plugin posts the run with
    // trigger `heartbeat`, so its model calls are `heartbeat`, joined by trace, and the cost
    // API counts them there.
    let t0 = std::time::Instant::now();
    let run = crate::e2e_task_type::run_heartbeat_now(&link, "main").await;
    eprintln!("heartbeat run: {run}");
    wait_for("the heartbeat's calls recorded", Duration::from_secs(20), || async {
        records(control, "model_call", "main").await.iter().any(|r| r["details"]["task_type"] == "heartbeat")
    })
    .await;
    eprintln!("heartbeat run started to its call recorded as heartbeat: {:?}", t0.elapsed());
    let beats: Vec<Value> = records(control, "model_call", "main")
        .await
        .into_iter()
        .filter(|r| r["outcome"] != "started" && r["details"]["task_type"] == "heartbeat")
        .collect();
    assert!(!beats.is_empty());
    for r in &beats {
        assert_eq!(r["details"]["task_source"], "plugin_trace", "{r}");
        assert_eq!(r["details"]["session_key"], "agent:main:main", "a heartbeat runs in the main session: {r}");
    }
    wait_for("the cost API counts the heartbeat", Duration::from_secs(15), || async {
        let c = get(control, "/api/v1/cost?by=task&agent=main&since=1d").await;
        c["rows"].as_array().into_iter().flatten().any(|r| r["key"] == "heartbeat" && r["calls"] == beats.len())
    })
    .await;

    // 6. Detach puts everything back and revokes the tokens.
    let undo = cli.run(&["detach"]).await;
    eprintln!("detach (exit {}):\n{}{}", undo.code, undo.stdout, undo.stderr);
    assert_eq!(undo.code, 0, "{}\n{}", undo.stderr, gw.log_tail(60));
    assert_eq!(config_doc(&link).await.1, config_before, "detach restored the gateway config exactly");
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original, "ClawButler's config restored byte for byte");
    assert!(!plugin_dir.exists() && !dir.path().join("openclaw-plugin.token").exists(), "plugin files removed");
    assert!(!env_path.exists(), "the env file removed");
    for agent in ["main", "ops"] {
        let t = get(control, &format!("/api/v1/agents/{agent}/mcp-tokens")).await;
        assert_eq!(t["items"], json!([]), "{agent}'s MCP token revoked");
    }
    assert_eq!(get(control, "/api/v1/plugin-tokens").await["items"], json!([]), "the plugin token revoked");
    wait_for("the plugin gone from plugins.list", Duration::from_secs(30), || async {
        let l = link.call("plugins.list", json!({})).await.unwrap_or_default();
        gateway::plugin::listed(&l) == governance::plugin::Listed::Missing
    })
    .await;

    // 7. Attach again with the sidecar running: the tokens come from its control API, and a
    // second detach is as exact as the first.
    let again = cli.run(&["attach"]).await;
    assert_eq!(again.code, 0, "{}\n{}", again.stderr, again.stdout);
    for agent in ["main", "ops"] {
        let t = get(control, &format!("/api/v1/agents/{agent}/mcp-tokens")).await;
        assert_eq!(t["items"].as_array().map(Vec::len), Some(1), "{agent}: {t}");
    }
    let t = get(control, "/api/v1/plugin-tokens").await;
    assert_eq!(t["items"].as_array().map(Vec::len), Some(1), "{t}");
    let undo = cli.run(&["detach"]).await;
    assert_eq!(undo.code, 0, "{}\n{}", undo.stderr, undo.stdout);
    assert_eq!(config_doc(&link).await.1, config_before, "the second detach restored the config exactly");
    assert_eq!(std::fs::read_to_string(&cfg_path).unwrap(), original);
    assert_eq!(get(control, "/api/v1/plugin-tokens").await["items"], json!([]));
    assert_eq!(get(control, "/api/v1/agents/main/mcp-tokens").await["items"], json!([]));

    let _ = stop_link.send(true);
    sidecar.shutdown().await;
    drop(gw);
    drop(everything);
    up.shutdown().await;
}

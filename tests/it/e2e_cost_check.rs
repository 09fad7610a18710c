//! End to end: the cost cross-check (issue #19) against a real OpenClaw 2026.9.6 gateway with
//! two agents. `main` reaches its model through the sidecar; `side` has a provider that goes
//! straight to the same scripted upstream, as a provider left unwired would. After one turn
//! each, `GET /api/v1/cost/crosscheck` shows `main`'s day matching OpenClaw's own
//! `usage.cost` to the token and `side`'s day as `bypassed` (OpenClaw counted tokens the
//! sidecar never saw); the Cost page's Compare (Chromium, as a viewer) and
//! `clawbutler cost --crosscheck` show the same, the CLI exiting 1.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::{SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

use crate::ui_browser::{browser_paths, Browser, Driver};

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_COST_CHECK_TOKEN";

fn openclaw_config(data: SocketAddr, upstream: &str) -> Value {
    let model = json!({"id": "gpt-4o-mini", "name": "gpt-4o-mini", "reasoning": false, "input": ["text"],
           "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
           "contextWindow": 128000, "maxTokens": 4096});
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "cb-main": {"baseUrl": format!("http://{data}/a/main/fake/v1"), "apiKey": "k-main",
                        "api": "openai-completions", "timeoutSeconds": 120, "models": [model.clone()]},
            "direct": {"baseUrl": format!("{upstream}/v1"), "apiKey": "k-direct",
                       "api": "openai-completions", "timeoutSeconds": 120, "models": [model]}
        }},
        "agents": {"defaults": {"skipBootstrap": true, "model": {"primary": "cb-main/gpt-4o-mini"}},
                   "entries": {"main": {"model": "cb-main/gpt-4o-mini"},
                               "side": {"model": "direct/gpt-4o-mini"}}},
    })
}

async fn get(control: SocketAddr, token: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let r = testkit::http::get(&format!("http://{control}{path}"), &[("authorization", &auth)]).await;
    (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

/// A sidecar on `data` priced for gpt-4o-mini and linked to `gw` (its token in `token_env`).
pub(crate) async fn linked_sidecar(
    dir: &std::path::Path,
    data: SocketAddr,
    upstream: &str,
    gw: &Gateway,
    token_env: &str,
) -> clawbutler::app::Sidecar {
    let cfg = SidecarConfig::new(dir).listen(&data.to_string(), "127.0.0.1:0").upstreams(upstream).table(&format!(
        "[prices.\"gpt-4o-mini\"]\ninput = 0.15\noutput = 0.6\n\
         [gateway]\nurl = \"{}\"\ntoken_env = \"{token_env}\"\nreconnect_initial_ms = 500\nreconnect_max_ms = 2000",
        gw.ws_url()
    ));
    clawbutler::app::Sidecar::start(cfg.build()).await.expect("sidecar starts")
}

/// Calls on main's route (its provider's key) that are not the turn's, as (input, output).
fn calls_beside_the_turn(up: &ScriptedUpstream) -> Vec<(u64, u64)> {
    up.requests()
        .iter()
        .filter(|r| r.method == Method::POST && r.headers.get("authorization").is_some_and(|v| v == "Bearer k-main"))
        .filter(|r| !String::from_utf8_lossy(&r.body).contains("MARK:governed"))
        .map(|r| r.usage.as_ref().map_or((0, 0), |u| (u.input_tokens, u.output_tokens)))
        .collect()
}

fn day_of<'a>(check: &'a Value, agent: &str) -> Vec<&'a Value> {
    check["items"].as_array().unwrap().iter().filter(|r| r["agent"] == agent).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cross_check_matches_governed_calls_and_flags_a_bypass() {
    let Some(install) = find_or_skip("the_cross_check_matches_governed_calls_and_flags_a_bypass") else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(&install, openclaw_config(data, &up.base_url())).await;
    std::env::set_var(TOKEN_ENV, gw.token());
    let dir = tempfile::tempdir().unwrap();
    let sidecar = linked_sidecar(dir.path(), data, &up.base_url(), &gw, TOKEN_ENV).await;
    let control = sidecar.control_addr;

    let turn = gw.agent_turn("main", "hello through the sidecar MARK:governed").await;
    assert!(turn.ok(), "{}", turn.describe());
    let through = up.request_count();
    assert!(
        up.requests().iter().any(|r| String::from_utf8_lossy(&r.body).contains("MARK:governed")),
        "main's call reached the upstream"
    );
    let turn = gw.agent_turn("side", "hello around the sidecar MARK:bypass").await;
    assert!(turn.ok(), "{}", turn.describe());
    assert!(up.request_count() > through, "side's call reached the upstream directly");

    // The sidecar's aggregates follow the audit log, and OpenClaw's usage cache refreshes
    // lazily: wait until both sides have the turn (it must be well within the time). On a
    // loaded machine OpenClaw has once sent main's route short calls of its own beside the
    // turn, which are not in its `usage.cost`: the sidecar meters them, so the day then differs
    // by their tokens (`sidecar_only` beyond the tolerance), and what is checked to the token
    // is the turn itself.
    let turn_tokens = |up: &ScriptedUpstream| -> u64 {
        up.requests()
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("MARK:governed"))
            .filter_map(|r| r.usage.as_ref().map(|u| u.input_tokens + u.output_tokens))
            .sum()
    };
    let tokens = |v: &Value| {
        ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]
            .iter()
            .map(|k| v[*k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let t0 = Instant::now();
    let mut last = None;
    let (check, extra, turn) = loop {
        let (code, v) = get(control, ADMIN, "/api/v1/cost/crosscheck?since=1d").await;
        assert_eq!(code, 200, "{v}");
        let (extra, turn) = (calls_beside_the_turn(&up), turn_tokens(&up));
        let main = day_of(&v, "main");
        let settled = main.len() == 1
            && tokens(&main[0]["openclaw"]) == turn
            && main[0]["sidecar"]["calls"].as_u64() == Some(1 + extra.len() as u64)
            && (!extra.is_empty() || main[0]["verdict"] == "match");
        if settled && day_of(&v, "side").len() == 1 && v["errors"] == json!([]) {
            break (v, extra, turn);
        }
        assert!(t0.elapsed() < Duration::from_secs(90), "main's day never matched: {v}\nbeside the turn: {extra:?}");
        if last.as_ref() != Some(&v) {
            eprintln!("{:?}: {v}", t0.elapsed());
            last = Some(v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("cross-check settled in {:?}", t0.elapsed());
    let main = day_of(&check, "main")[0];
    assert!(turn > 0);
    assert_eq!(tokens(&main["openclaw"]), turn, "OpenClaw recorded the turn to the token: {main}");
    if extra.is_empty() {
        assert_eq!(tokens(&main["sidecar"]), turn, "to the token: {main}");
        assert_eq!(main["token_difference"], 0, "{main}");
    } else {
        eprintln!("OpenClaw called main's route beside the turn (input, output): {extra:?}");
        assert!(tokens(&main["sidecar"]) > turn, "{main}");
        assert!(main["token_difference"].as_i64().unwrap() < 0, "{main}");
    }
    let main_verdict = main["verdict"].as_str().unwrap().to_string();
    let mismatches = if main_verdict == "match" { 1 } else { 2 };
    let side = day_of(&check, "side")[0];
    assert_eq!(side["verdict"], "bypassed", "{side}");
    assert_eq!(tokens(&side["sidecar"]), 0, "{side}");
    assert!(tokens(&side["openclaw"]) > 0, "{side}");
    assert_eq!(side["token_difference"].as_i64().unwrap(), tokens(&side["openclaw"]) as i64);
    assert_eq!(check["mismatches"], mismatches, "{check}");
    assert_eq!(check["errors"], json!([]), "{check}");

    // One agent; a viewer reads; a bad parameter is named.
    let (code, created) = {
        let auth = format!("Bearer {ADMIN}");
        let r = testkit::http::send(
            Method::POST,
            &format!("http://{control}/api/v1/tokens"),
            &[("authorization", &auth), ("content-type", "application/json")],
            json!({"name": "cost-viewer", "role": "viewer"}).to_string().into(),
        )
        .await;
        (r.status.as_u16(), r.json())
    };
    assert_eq!(code, 201, "{created}");
    let viewer = created["token"].as_str().unwrap();
    let (code, only) = get(control, viewer, "/api/v1/cost/crosscheck?since=1d&agent=side").await;
    assert_eq!(code, 200, "{only}");
    assert_eq!(only["items"].as_array().unwrap().len(), 1, "{only}");
    let (code, bad) = get(control, viewer, "/api/v1/cost/crosscheck?since=1d&by=agent").await;
    assert_eq!((code, bad["detail"].as_str().is_some_and(|d| d.contains("\"by\""))), (400, true), "{bad}");

    // The Cost page, as the viewer: Compare shows the same verdicts.
    if let Some((chromium, driver_bin)) = browser_paths() {
        let driver = Driver::start(&driver_bin).await;
        let b = Browser::open(&driver, &chromium).await;
        b.goto(&format!("http://{control}/")).await;
        b.type_into("[data-testid=token]", viewer).await;
        b.click("[data-testid=signin]").await;
        b.click("[data-testid=nav-cost]").await;
        b.click("[data-testid=cost-crosscheck-run]").await;
        let rows = b
            .wait_js(
                "the cross-check table",
                "[...document.querySelectorAll('[data-testid=cost-crosscheck] tbody tr')].map(r => r.dataset.verdict + ' ' + r.cells[0].textContent).join(',')",
            )
            .await;
        if main_verdict == "match" {
            assert_eq!(rows, "bypassed side,match main", "mismatches first");
        } else {
            let mut rows: Vec<&str> = rows.as_str().unwrap_or_default().split(',').collect();
            rows.sort();
            assert_eq!(rows, ["bypassed side", "sidecar_only main"]);
        }
        let summary = b.text("[data-testid=cost-crosscheck-summary]").await;
        assert!(summary.starts_with(&format!("{mismatches} day(s) do not match")), "{summary}");
        b.close().await;
    }

    // The CLI: the same rows, exit status 1 for the mismatch.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
            .args(["cost", "--crosscheck", "--since", "1d", "--url", &format!("http://{control}")])
            .env("CLAWBUTLER_TOKEN", ADMIN)
            .output()
            .expect("run clawbutler")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line =
        |agent: &str| text.lines().find(|l| l.starts_with(agent)).unwrap_or_else(|| panic!("{text}")).to_string();
    assert!(line("main").ends_with(&main_verdict), "{text}");
    assert!(line("side").ends_with("bypassed"), "{text}");
    assert!(text.contains(&format!("{mismatches} day(s) do not match")), "{text}");

    sidecar.shutdown().await;
    drop(gw);
    up.shutdown().await;
}

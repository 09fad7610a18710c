//! End to end: a savings suggestion's dry-run config change against a real OpenClaw 2026.9.6
//! gateway. `main` is wired through the sidecar (`cb-main/gpt-4o`, pinned with `modelPolicy`);
//! the sidecar is linked, so config safety holds main's config versions. Short, tool-free
//! calls of main through the sidecar's data path make it a good candidate for a cheaper
//! OpenAI model (shipped price table). The preview plans the `config.patch` from the stored
//! version: it names the live model ref and the live `baseHash` and changes nothing. Applying
//! it is refused to an approver (403), on a stale hash (409) and without `confirm`; the admin's
//! confirmation, given on the Cost page in Chromium (Preview, Apply, confirm), goes to
//! OpenClaw, which moves main to the cheaper model on the same `cb-main`
//! provider, audited `model_changed` and stored as ClawButler's version. An agent without
//! suggestions gets none to preview. A sibling test pins main model by model, so the move
//! also adds the model to `modelPolicy.allow` (ClawButler's wiring, critical) and
//! `clawbutler cost suggest --apply --yes --wait` waits for a human before OpenClaw takes it.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::openclaw::find_or_skip;
use testkit::rig::{bearer, chat, ADMIN};

use crate::ui_browser::{browser_paths, Browser, Driver};

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_SAVINGS_TOKEN";

/// main on `cb-main/gpt-4o`, pinned to its whole sidecar provider (`cb-main/*`).
fn openclaw_config(data: SocketAddr, direct: &str) -> Value {
    config_with_allow(data, direct, json!(["cb-main/*"]))
}

fn config_with_allow(data: SocketAddr, direct: &str, allow: Value) -> Value {
    let model = |id: &str| {
        json!({"id": id, "name": id, "reasoning": false, "input": ["text"],
               "cost": {"input": 2.5, "output": 10, "cacheRead": 0, "cacheWrite": 0},
               "contextWindow": 128000, "maxTokens": 4096})
    };
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "direct": {"baseUrl": format!("{direct}/v1"), "apiKey": "k-direct", "api": "openai-completions",
                       "models": [model("gpt-4o")]},
            "cb-main": {"baseUrl": format!("http://{data}/a/main/fake/v1"), "apiKey": "k-main",
                        "api": "openai-completions", "timeoutSeconds": 120, "models": [model("gpt-4o")]}
        }},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": {
            "main": {"model": "cb-main/gpt-4o", "modelPolicy": {"allow": allow}},
            "ops": {"model": "direct/gpt-4o"}
        }},
    })
}

async fn get(control: SocketAddr, path: &str) -> (u16, Value) {
    let r = testkit::http::get(&format!("http://{control}{path}"), &bearer(ADMIN)).await;
    (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
}

async fn config_get(link: &gateway::Link) -> Value {
    link.call("config.get", json!({})).await.expect("config.get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suggestion_previews_the_config_patch_openclaw_accepts() {
    let Some(install) = find_or_skip("a_suggestion_previews_the_config_patch_openclaw_accepts") else {
        return;
    };
    let linked = crate::e2e_config_safety::linked(&install, TOKEN_ENV, openclaw_config).await;
    let (data, control, other) = (linked.data, linked.sidecar.control_addr, linked.other.clone());
    let (item, version) = main_suggestion(data, control).await;
    assert_eq!((item["model"].as_str(), item["family"].as_str()), (Some("gpt-4o"), Some("openai")), "{item}");
    assert_eq!(item["verdict"], "good_candidate", "{item}");
    let cheaper = item["candidates"][0]["model"].as_str().unwrap().to_string();

    // The preview: planned from the stored version, on the live hash; nothing changes.
    let live = config_get(&other).await;
    let (code, p) = get(control, &format!("/api/v1/cost/suggestions/preview?agent=main&model={cheaper}")).await;
    assert_eq!(code, 200, "{p}");
    assert_eq!((p["dry_run"].as_bool(), p["applied"].as_bool()), (Some(true), Some(false)));
    assert_eq!((p["model_ref_before"].as_str(), p["from_version"].as_u64()), (Some("cb-main/gpt-4o"), Some(version)));
    assert_eq!(p["model_ref_after"], format!("cb-main/{cheaper}"));
    assert_eq!(p["base_hash"], live["hash"], "{p}");
    assert_eq!(p["patch"]["agents"]["entries"]["main"]["model"], format!("cb-main/{cheaper}"), "{p}");
    let models = p["patch"]["models"]["providers"]["cb-main"]["models"].as_array().unwrap();
    assert_eq!(models.iter().map(|m| m["id"].as_str().unwrap()).collect::<Vec<_>>(), ["gpt-4o", cheaper.as_str()]);
    assert_eq!(config_get(&other).await["hash"], live["hash"], "the preview changed nothing");

    // Applying: an approver may not; a stale hash is a 409 that changes nothing; the admin's
    // confirmation of what the preview showed goes to OpenClaw, which takes it.
    let apply = |token: String, body: Value| {
        let url = format!("http://{control}/api/v1/cost/suggestions/apply");
        async move {
            let r = testkit::http::post_json(&url, &bearer(&token), &body).await;
            (r.status.as_u16(), serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null))
        }
    };
    let body = json!({"agent": "main", "model": cheaper, "base_hash": p["base_hash"], "confirm": true});
    let approver = {
        let r = testkit::http::post_json(
            &format!("http://{control}/api/v1/tokens"),
            &bearer(ADMIN),
            &json!({"name": "savings-approver", "role": "approver"}),
        )
        .await;
        r.json()["token"].as_str().unwrap().to_string()
    };
    assert_eq!(apply(approver, body.clone()).await.0, 403);
    let (code, r) =
        apply(ADMIN.to_string(), json!({"agent": "main", "model": cheaper, "base_hash": "stale", "confirm": true}))
            .await;
    assert_eq!(code, 409, "{r}");
    let (code, r) =
        apply(ADMIN.to_string(), json!({"agent": "main", "model": cheaper, "base_hash": p["base_hash"]})).await;
    assert_eq!(code, 400, "confirm is required: {r}");
    assert_eq!(config_get(&other).await["hash"], live["hash"], "refusals changed nothing");
    // The admin applies it from the Cost page (Preview, Apply, confirm) in Chromium; without
    // a browser (outside CI) through the API.
    match browser_paths() {
        Some((chromium, driver_bin)) => apply_in_the_console(control, &cheaper, &chromium, &driver_bin).await,
        None => {
            let (code, r) = apply(ADMIN.to_string(), body).await;
            assert_eq!((code, r["applied"].as_bool()), (200, Some(true)), "{r}");
        }
    }
    let after = config_get(&other).await;
    assert_eq!(after["parsed"]["agents"]["entries"]["main"]["model"], format!("cb-main/{cheaper}"), "{after}");
    assert_eq!(after["parsed"]["agents"]["entries"]["main"]["modelPolicy"]["allow"], json!(["cb-main/*"]));
    let ids: Vec<&str> = after["parsed"]["models"]["providers"]["cb-main"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["gpt-4o", cheaper.as_str()]);
    assert!(after["parsed"]["models"]["providers"]["cb-main"]["baseUrl"].as_str().unwrap().contains("/a/main/"));

    // The audit record (searchable once its group commit is durable).
    let t0 = Instant::now();
    let changed = loop {
        let (_, audit) = get(control, "/api/v1/audit?agent=main&kind=config&limit=50").await;
        let found: Vec<Value> = audit["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["outcome"] == "model_changed")
            .cloned()
            .collect();
        if !found.is_empty() || t0.elapsed() > Duration::from_secs(10) {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(changed.len(), 1, "one model_changed record");
    assert!(changed[0]["reason"].as_str().unwrap().contains(&cheaper), "{}", changed[0]);
    let (_, versions) = get(control, "/api/v1/agents/main/config/versions").await;
    assert_eq!(versions["items"][0]["source"], "clawbutler", "the new version is ClawButler's: {versions}");

    // ops has no calls, so nothing to preview.
    let (code, r) = get(control, &format!("/api/v1/cost/suggestions/preview?agent=ops&model={cheaper}")).await;
    assert_eq!(code, 400, "{r}");

    let _ = linked.stop_other.send(true);
    linked.sidecar.shutdown().await;
    linked.up.shutdown().await;
}

/// main's calls through the sidecar (short answers, no tools), then its suggestion and
/// newest config version once every call is counted.
async fn main_suggestion(data: SocketAddr, control: SocketAddr) -> (Value, u64) {
    for i in 0..24 {
        let url = format!("http://{data}/a/main/fake/v1/chat/completions");
        let r = testkit::http::post_json(&url, &[], &chat("gpt-4o", &"summarise ".repeat(3 + i))).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let t0 = Instant::now();
    loop {
        let (_, v) = get(control, "/api/v1/cost/suggestions?agent=main").await;
        let (_, versions) = get(control, "/api/v1/agents/main/config/versions").await;
        let item = v["items"].as_array().and_then(|i| i.first()).cloned();
        match (item, versions["items"][0]["version"].as_u64()) {
            (Some(i), Some(n)) if i["evidence"]["calls"] == 24 => return (i, n),
            _ => {}
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no suggestion and version for main: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `clawbutler cost suggest --apply ...` (the real binary, admin) in the background: its
/// exit code and stdout.
fn cli_apply(control: SocketAddr, args: &[&str]) -> tokio::task::JoinHandle<(Option<i32>, String)> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
            .args(["cost", "suggest", "--apply", "--agent", "main"])
            .args(&args)
            .args(["--url", &format!("http://{control}")])
            .env("CLAWBUTLER_TOKEN", ADMIN)
            .env_remove("CLAWBUTLER_CONFIG")
            .output()
            .expect("run clawbutler");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    })
}

/// main is pinned model by model (`modelPolicy.allow: ["cb-main/gpt-4o"]`), so moving it to
/// the cheaper model also adds that model to the list: ClawButler's wiring, critical. The
/// CLI's `cost suggest --apply` shows the plan and changes nothing; with `--yes` the change
/// waits in the approval inbox (kind `config_change`), nothing applied, and `--wait` follows
/// it until a human allowed it and OpenClaw took it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_suggest_apply_from_the_cli_waits_for_approval_of_a_wiring_change() {
    let Some(install) = find_or_skip("cost_suggest_apply_from_the_cli_waits_for_approval_of_a_wiring_change") else {
        return;
    };
    let pinned = |data, direct: &str| config_with_allow(data, direct, json!(["cb-main/gpt-4o"]));
    let linked = crate::e2e_config_safety::linked(&install, TOKEN_ENV, pinned).await;
    let (data, control, other) = (linked.data, linked.sidecar.control_addr, linked.other.clone());
    let (item, _) = main_suggestion(data, control).await;
    let cheaper = item["candidates"][0]["model"].as_str().unwrap().to_string();
    let live = config_get(&other).await;

    // The dry run (default): the plan, nothing changed.
    let (code, text) = cli_apply(control, &[]).await.unwrap();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("DRY RUN") && text.contains(&format!("cb-main/gpt-4o -> cb-main/{cheaper}")), "{text}");
    assert!(text.contains("modelPolicy.allow") && text.contains("--yes"), "{text}");
    assert_eq!(config_get(&other).await["hash"], live["hash"], "the dry run changed nothing");

    // --yes --wait: held in the inbox, nothing applied until a human allows it.
    let t0 = Instant::now();
    let cli = cli_apply(control, &["--yes", "--wait", "60"]);
    let held = loop {
        let (_, inbox) = get(control, "/api/v1/approvals?status=pending&kind=config_change&agent=main").await;
        if let Some(a) = inbox["items"].as_array().and_then(|i| i.first()) {
            break a.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "the CLI's apply never reached the inbox: {inbox}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(held["subject"]["critical_paths"], json!(["agents.entries.main.modelPolicy.allow"]), "{held}");
    assert_eq!(
        held["subject"]["model_change"],
        format!("move agent main to model cb-main/{cheaper} (savings suggestion)")
    );
    assert_eq!(config_get(&other).await["hash"], live["hash"], "not applied before approval");
    let id = held["id"].as_str().unwrap();
    let body = json!({"decision": "allow-once", "expected_version": held["version"]});
    let r =
        testkit::http::post_json(&format!("http://{control}/api/v1/approvals/{id}/decision"), &bearer(ADMIN), &body)
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let (code, text) = cli.await.unwrap();
    eprintln!("held apply through the CLI, approval to applied: {:?}", t0.elapsed());
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("WAITING FOR APPROVAL") && text.contains("APPLIED: approved by"), "{text}");
    let after = config_get(&other).await;
    let main = &after["parsed"]["agents"]["entries"]["main"];
    assert_eq!(main["model"], format!("cb-main/{cheaper}"), "{after}");
    assert_eq!(main["modelPolicy"]["allow"], json!(["cb-main/gpt-4o", format!("cb-main/{cheaper}")]), "{after}");
    let (code, settled) = get(control, &format!("/api/v1/cost/suggestions/apply/{id}")).await;
    assert_eq!((code, settled["status"].as_str()), (200, Some("applied")), "{settled}");
    let (_, versions) = get(control, "/api/v1/agents/main/config/versions").await;
    assert_eq!(versions["items"][0]["version"], settled["new_version"], "{settled}");

    let _ = linked.stop_other.send(true);
    linked.sidecar.shutdown().await;
    linked.up.shutdown().await;
}

/// Sign in as admin, open the Cost page, preview main's `cheaper` candidate and apply it.
async fn apply_in_the_console(
    control: SocketAddr,
    cheaper: &str,
    chromium: &std::path::Path,
    driver_bin: &std::path::Path,
) {
    let driver = Driver::start(driver_bin).await;
    let b = Browser::open(&driver, chromium).await;
    b.goto(&format!("http://{control}/")).await;
    b.type_into("[data-testid=token]", ADMIN).await;
    b.click("[data-testid=signin]").await;
    b.click("[data-testid=nav-cost]").await;
    let cand = format!(
        "[data-testid=suggestion][data-agent=main] [data-testid=suggestion-candidate][data-model=\"{cheaper}\"]"
    );
    b.click(&format!("{cand} [data-testid=suggestion-preview]")).await;
    b.click(&format!("{cand} [data-testid=suggestion-apply]")).await;
    let t = Instant::now();
    b.click(&format!("{cand} [data-testid=suggestion-apply-confirm]")).await;
    let sel = serde_json::to_string(&format!("{cand} [data-testid=suggestion-apply-msg]")).unwrap();
    let msg = b
        .wait_js("the applied message", &format!("document.querySelector({sel}).textContent.startsWith('Applied') && document.querySelector({sel}).textContent"))
        .await;
    eprintln!("apply from the console (config.patch, reload, snapshot) took {:?}", t.elapsed());
    assert!(msg.as_str().unwrap().contains(&format!("main now uses cb-main/{cheaper}")), "{msg}");
    b.close().await;
}

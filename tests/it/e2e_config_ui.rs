//! The Config History tab and the Backups page in a real browser (Chromium over WebDriver, the
//! helpers of `ui_browser`), against a sidecar linked to a real OpenClaw 2026.9.6 gateway.
//!
//! Another operator client changes agent `main` outside ClawButler (its model and its name).
//! Then, as an admin:
//!
//! 1. the tab lists both versions from the API, the new one marked "Outside ClawButler", the
//!    first as the baseline; the drift check names the drifted field and suggests version 1;
//!    the diff shows the model change in the Model group with a High badge and the name in
//!    Identity with a Low one;
//! 2. rolling back to version 1 first shows the plan (no restart needed) and changes nothing;
//!    the confirm restores `config.get` to version 1, and a third version by ClawButler appears;
//! 3. the Backups page creates a package and says which secrets it could not include; a wrong
//!    passphrase and an uploaded file with a flipped byte are each refused with their own
//!    message; the stored package opens, and after another outside change to `ops` (its model,
//!    and a tool denied), a `replace_scope` preview of `ops` shows that change under agent
//!    ops (and nothing under main); restoring it is critical (the tool policy), so the page
//!    says it waits for approval, naming the critical path, and nothing changes; once an
//!    approver allows it, the page shows the result: `ops` is back and the checkpoint named;
//! 4. at phone width both pages fit the screen (in Chinese);
//! 5. a viewer sees the versions and the packages, but no rollback, create, download or
//!    restore controls.
//!
//! Screenshots land in `target/ui-artifacts/`. Needs `scripts/install-openclaw.sh` and
//! `scripts/install-browser.sh`; skipped with a notice otherwise, failed when `CLAWBUTLER_E2E=1`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::openclaw::find_or_skip;
use testkit::rig::ADMIN;

use crate::e2e_attach::config_doc;
use crate::e2e_config_safety::{linked, model, outside_patch, wait_until, Linked};
use crate::ui_browser::{browser_paths, Browser, Driver};

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_CONFIG_UI_TOKEN";
const PASS: &str = "a passphrase typed in the console";

fn openclaw_config(up: &str) -> Value {
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "direct": {"baseUrl": format!("{up}/v1"), "apiKey": "k-direct-ui", "api": "openai-completions",
                       "models": [model("gpt-4o-mini"), model("gpt-4o")]}
        }},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": {
            "main": {"model": "direct/gpt-4o-mini"},
            "ops": {"model": "direct/gpt-4o-mini"}
        }},
    })
}

/// Number of elements matching a selector that are shown (not hidden by a role or `hidden`).
const SHOWN: &str = "return [...document.querySelectorAll(arguments[0])].filter((e) => e.offsetParent !== null).length";

/// Like `Browser::wait_js`, with a longer deadline (a restore patches the gateway twice).
async fn wait_long(b: &Browser, what: &str, expr: &str, secs: u64) {
    let t0 = Instant::now();
    loop {
        let v = b.js(&format!("try {{ return !!({expr}); }} catch (e) {{ return false; }}"), json!([])).await;
        if v == json!(true) {
            return;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            let body = b.js("return document.body.innerText;", json!([])).await;
            panic!("timed out waiting for {what} ({expr}); page text:\n{}", body.as_str().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn versions(control: &str, agent: &str) -> Vec<Value> {
    let r = get(&format!("{control}/api/v1/agents/{agent}/config/versions"), &[("authorization", &bearer())]).await;
    if r.status != 200 {
        return Vec::new();
    }
    r.json()["items"].as_array().cloned().unwrap_or_default()
}

fn bearer() -> String {
    format!("Bearer {ADMIN}")
}

async fn sign_in(b: &Browser, console: &str, token: &str) {
    b.goto(&format!("{console}/")).await;
    b.type_into("[data-testid=token]", token).await;
    b.click("[data-testid=signin]").await;
    b.find("[data-testid=whoami]").await;
    b.wait_js("identity", "document.querySelector('[data-testid=whoami]').textContent.length > 0").await;
}

/// An element's text as written (badges are upper-cased by the stylesheet, which WebDriver's
/// element text follows).
async fn content(b: &Browser, css: &str) -> String {
    b.find(css).await;
    b.js("return document.querySelector(arguments[0]).textContent", json!([css]))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn no_sideways_scroll(b: &Browser, page: &str) {
    let overflow =
        b.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth", json!([])).await;
    assert!(overflow.as_i64().unwrap_or(99) <= 0, "{page}: sideways scrolling on a phone (overflow {overflow})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_history_tab_and_backups_page_in_the_browser() {
    let Some(install) = find_or_skip("config_history_tab_and_backups_page_in_the_browser") else { return };
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let Linked { up, gw, dir, data: _, sidecar, other, stop_other } =
        linked(&install, TOKEN_ENV, |_, up| openclaw_config(up)).await;
    let console = format!("http://{}", sidecar.control_addr);

    // Version 1 at link start, then a change from another client: version 2, outside.
    wait_until("version 1 of main", Duration::from_secs(30), || async { !versions(&console, "main").await.is_empty() })
        .await;
    outside_patch(
        &other,
        json!({"agents": {"entries": {"main": {"model": "direct/gpt-4o", "name": "Main desk"}}}}),
        &[],
    )
    .await;
    wait_until("version 2 of main", Duration::from_secs(15), || async {
        versions(&console, "main").await.first().is_some_and(|v| v["version"] == 2)
    })
    .await;

    let driver = Driver::start(&driver_bin).await;
    let b = Browser::open(&driver, &chromium).await;
    sign_in(&b, &console, ADMIN).await;

    // 1. The tab: versions, drift, diff. The agents page links to it.
    b.goto(&format!("{console}/#/agents/main")).await;
    b.click("[data-testid=agent-tab-link-config]").await;
    b.wait_js("two versions", "document.querySelectorAll('[data-testid=version]').length === 2").await;
    let v2 = content(&b, "[data-testid=version][data-version='2']").await;
    assert!(v2.contains("Outside ClawButler") && v2.contains("agent config"), "version 2 row: {v2}");
    let v1 = content(&b, "[data-testid=version][data-version='1']").await;
    assert!(v1.contains("Baseline") && v1.contains("First seen"), "version 1 row: {v1}");
    b.wait_js("drift", "document.querySelector('[data-testid=drift-state]').dataset.drifted === 'true'").await;
    let drift = b.text("[data-testid=drift]").await;
    assert!(drift.contains("agents.entries.main.model") && drift.contains("agents.entries.main.name"), "{drift}");
    assert!(b.text("[data-testid=suggested]").await.contains("version 1"));
    // The two newest are compared on opening; untick and tick again as a user would.
    b.click("[data-testid=version][data-version='1'] [data-testid=version-pick]").await;
    b.wait_js("diff hidden with one pick", "document.querySelector('[data-testid=diff]').hidden").await;
    b.click("[data-testid=version][data-version='1'] [data-testid=version-pick]").await;
    let model_change = "[data-testid=diff] [data-group=model] [data-path='agents.entries.main.model']";
    b.find(model_change).await;
    assert_eq!(b.js("return document.querySelector(arguments[0]).dataset.risk", json!([model_change])).await, "high");
    assert_eq!(content(&b, &format!("{model_change} .badge")).await, "High");
    let name_change = "[data-testid=diff] [data-group=identity] [data-path='agents.entries.main.name']";
    assert_eq!(b.js("return document.querySelector(arguments[0]).dataset.risk", json!([name_change])).await, "low");
    assert!(b.text("[data-testid=diff]").await.contains("Version 1 → version 2"));
    b.screenshot("config-history-desktop.png").await;

    // 2. Preview, then roll back.
    b.click("[data-testid=version][data-version='1'] [data-testid=rollback-preview]").await;
    b.find("[data-testid=rollback] [data-testid=rollback-apply]").await;
    assert!(content(&b, "[data-testid=restart]").await.contains("without a gateway restart"));
    assert!(b.text("[data-testid=rollback]").await.contains("agents.entries.main.model"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, live) = config_doc(&other).await;
    assert_eq!(live["agents"]["entries"]["main"]["model"], "direct/gpt-4o", "the preview changed nothing");
    assert_eq!(versions(&console, "main").await.len(), 2);
    b.screenshot("config-rollback-plan-desktop.png").await;
    b.click("[data-testid=rollback-apply]").await;
    wait_long(
        &b,
        "rollback result",
        "document.querySelector('[data-testid=rollback-result]').dataset.applied === 'true'",
        30,
    )
    .await;
    assert!(content(&b, "[data-testid=rollback-result]").await.contains("Version 1 restored exactly"));
    let (_, live) = config_doc(&other).await;
    assert_eq!(live["agents"]["entries"]["main"]["model"], "direct/gpt-4o-mini", "{live}");
    assert!(live["agents"]["entries"]["main"].get("name").is_none(), "{live}");
    b.wait_js(
        "version 3 by ClawButler",
        "document.querySelector('[data-testid=version]').dataset.source === 'clawbutler'",
    )
    .await;
    b.wait_js("no drift", "document.querySelector('[data-testid=drift-state]').dataset.drifted === 'false'").await;

    // 3. Backups: create, refuse a wrong passphrase and a tampered file, preview, restore.
    b.goto(&format!("{console}/#/backups")).await;
    b.find("[data-testid=empty]").await;
    b.click("[data-testid=backup-new]").await;
    b.type_into("[data-testid=backup-pass]", PASS).await;
    b.type_into("[data-testid=backup-pass2]", "not the same").await;
    b.click("[data-testid=backup-create]").await;
    b.wait_js("mismatch", "document.querySelector('[data-testid=backup-msg]').textContent.includes('differ')").await;
    b.type_into("[data-testid=backup-pass2]", PASS).await;
    b.click("[data-testid=backup-create]").await;
    wait_long(&b, "package created", "document.querySelector('[data-testid=backup-created]')", 30).await;
    // No `[gateway] config_file`: the provider key cannot be read, and the page says so.
    assert!(b.text("[data-testid=secrets-missing]").await.contains("could not be included"));
    b.find("[data-testid=backup]").await;
    let id = b.js("return document.querySelector('[data-testid=backup]').dataset.id", json!([])).await;
    let id = id.as_str().unwrap().to_string();
    let card = content(&b, "[data-testid=backup]").await;
    assert!(card.contains("main, ops") && card.contains("Backup"), "{card}");
    b.click("[data-testid=backup-download]").await;
    b.wait_js(
        "downloaded",
        "document.querySelector('[data-testid=backup] .card-msg').textContent.includes('Downloaded')",
    )
    .await;

    outside_patch(
        &other,
        json!({"agents": {"entries": {"ops": {"model": "direct/gpt-4o", "tools": {"deny": ["browser"]}}}}}),
        &[],
    )
    .await;

    b.click("[data-testid=restore-open]").await;
    b.type_into("[data-testid=restore-pass]", "wrong passphrase").await;
    b.click("[data-testid=restore-inspect]").await;
    b.wait_js(
        "wrong passphrase",
        "document.querySelector('[data-testid=restore-msg]').textContent.startsWith('Wrong passphrase')",
    )
    .await;
    // The package, one byte flipped, uploaded from this device.
    let pkg = get(&format!("{console}/api/v1/backups/{id}/download"), &[("authorization", &bearer())]).await;
    assert_eq!(pkg.status, 200);
    let mut bytes = pkg.body.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let tampered = dir.path().join("tampered.cbpkg");
    std::fs::write(&tampered, &bytes).unwrap();
    b.js(
        "const s = document.querySelector('[data-testid=restore-source]'); s.value = ''; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    let input = b.find("[data-testid=restore-file]").await;
    b.cmd(http::Method::POST, &format!("/element/{input}/value"), Some(json!({"text": tampered.to_string_lossy()})))
        .await;
    b.type_into("[data-testid=restore-pass]", PASS).await;
    b.click("[data-testid=restore-inspect]").await;
    b.wait_js(
        "tampered",
        "document.querySelector('[data-testid=restore-msg]').textContent.startsWith('The file is damaged or was tampered with')",
    )
    .await;
    assert!(b.js(SHOWN, json!(["[data-testid=restore-verified]"])).await == 0, "nothing opened");
    // The stored package, with the right passphrase.
    b.js(
        "const s = document.querySelector('[data-testid=restore-source]'); s.value = arguments[0]; s.dispatchEvent(new Event('change'));",
        json!([id]),
    )
    .await;
    b.type_into("[data-testid=restore-pass]", PASS).await;
    b.click("[data-testid=restore-inspect]").await;
    b.find("[data-testid=restore-verified]").await;
    b.js(
        "const s = document.querySelector('[data-testid=restore-strategy]'); s.value = 'replace_scope'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.click("[data-testid=scope-agent][value=ops]").await;
    b.click("[data-testid=restore-preview-run]").await;
    let ops_change = "[data-testid=preview-agent][data-name=ops] [data-path='agents.entries.ops.model']";
    wait_long(&b, "import preview", &format!("document.querySelector(\"{ops_change}\")"), 30).await;
    assert_eq!(b.js("return document.querySelector(arguments[0]).dataset.risk", json!([ops_change])).await, "high");
    assert_eq!(b.js(SHOWN, json!(["[data-testid=preview-agent][data-name=main]"])).await, 0, "main is not in scope");
    let (_, live) = config_doc(&other).await;
    assert_eq!(live["agents"]["entries"]["ops"]["model"], "direct/gpt-4o", "the preview changed nothing");
    b.screenshot("backups-import-preview-desktop.png").await;
    b.click("[data-testid=restore-apply]").await;
    // Critical (the tool policy): held for an approver, nothing changed yet.
    wait_long(&b, "waiting for approval", "document.querySelector('[data-testid=restore-waiting]')", 60).await;
    let waiting = content(&b, "[data-testid=restore-waiting]").await;
    assert!(waiting.contains("Waiting for approval") && waiting.contains("agents.entries.ops.tools"), "{waiting}");
    let (_, live) = config_doc(&other).await;
    assert_eq!(live["agents"]["entries"]["ops"]["model"], "direct/gpt-4o", "nothing changes while it waits");
    b.screenshot("backups-restore-waiting-desktop.png").await;
    let approval =
        b.js("return document.querySelector('[data-testid=restore-waiting]').dataset.approval", json!([])).await;
    let approval = approval.as_str().unwrap_or_default().to_string();
    let a = get(&format!("{console}/api/v1/approvals/{approval}"), &[("authorization", &bearer())]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["kind"], "config_import", "{}", a.text());
    let r = post_json(
        &format!("{console}/api/v1/approvals/{approval}/decision"),
        &[("authorization", &bearer())],
        &json!({"decision": "allow-once", "expected_version": a.json()["version"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    wait_long(
        &b,
        "restore result",
        "document.querySelector('[data-testid=restore-result]').dataset.status === 'applied'",
        60,
    )
    .await;
    let result = b.text("[data-testid=restore-result]").await;
    assert!(result.contains("checkpoint package"), "{result}");
    let (_, live) = config_doc(&other).await;
    assert_eq!(live["agents"]["entries"]["ops"]["model"], "direct/gpt-4o-mini", "ops restored: {live}");
    assert!(live["agents"]["entries"]["ops"].get("tools").is_none(), "the tool policy set outside is gone: {live}");
    assert_eq!(live["agents"]["entries"]["main"]["model"], "direct/gpt-4o-mini");
    b.wait_js("the checkpoint is listed", "document.querySelectorAll('[data-testid=backup]').length === 2").await;

    // 4. A phone, in Chinese.
    b.resize(390, 844).await;
    b.js("const s = document.querySelector('[data-testid=lang]'); s.value = 'zh-CN'; s.dispatchEvent(new Event('change'));", json!([]))
        .await;
    b.wait_js("Chinese nav", "document.querySelector('[data-testid=nav-backups]').textContent === '备份'").await;
    b.find("[data-testid=backup]").await;
    b.click("[data-testid=restore-open]").await;
    no_sideways_scroll(&b, "backups").await;
    b.screenshot("backups-phone-zh.png").await;
    b.goto(&format!("{console}/#/agents/main/config")).await;
    b.wait_js("three versions", "document.querySelectorAll('[data-testid=version]').length >= 3").await;
    b.find("[data-testid=diff] [data-testid=change]").await;
    assert!(b.text("[data-testid=version]").await.contains("版本 3"));
    no_sideways_scroll(&b, "config history").await;
    b.screenshot("config-history-phone-zh.png").await;
    b.js(
        "const s = document.querySelector('[data-testid=lang]'); s.value = 'en'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.resize(1280, 900).await;

    // 5. A viewer: reads, but is offered no rollback, create, download or restore.
    let created = post_json(
        &format!("{console}/api/v1/tokens"),
        &[("authorization", &bearer())],
        &json!({"name": "vic", "role": "viewer"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let viewer = created.json()["token"].as_str().unwrap().to_string();
    b.click("[data-testid=signout]").await;
    sign_in(&b, &console, &viewer).await;
    b.wait_js("viewer", "document.querySelector('[data-testid=whoami]').textContent === 'vic · viewer'").await;
    b.goto(&format!("{console}/#/agents/main/config")).await;
    b.wait_js("versions for a viewer", "document.querySelectorAll('[data-testid=version]').length >= 3").await;
    b.find("[data-testid=diff] [data-testid=change]").await;
    for sel in ["[data-testid=rollback-preview]", "[data-testid=drift-rollback]", "[data-testid=rollback-apply]"] {
        assert_eq!(b.js(SHOWN, json!([sel])).await, 0, "{sel} is offered to a viewer");
    }
    b.goto(&format!("{console}/#/backups")).await;
    b.find("[data-testid=backup]").await;
    for sel in [
        "[data-testid=backup-new]",
        "[data-testid=backup-download]",
        "[data-testid=restore-open]",
        "[data-testid=restore]",
    ] {
        assert_eq!(b.js(SHOWN, json!([sel])).await, 0, "{sel} is offered to a viewer");
    }
    b.screenshot("backups-viewer-desktop.png").await;

    b.close().await;
    drop(driver);
    let _ = stop_other.send(true);
    sidecar.shutdown().await;
    drop(gw);
    up.shutdown().await;
}

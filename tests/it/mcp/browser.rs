//! The MCP servers page in a real browser (Debian's Chromium over WebDriver, the helpers of
//! `ui_browser`), with the reference server over Streamable HTTP and a stdio child: before any
//! agent connects both are "not tried yet" with no tools; after the official SDK client lists
//! and calls through the sidecar, the page shows them healthy with their tools (a filtered one
//! marked hidden), the stdio command line, header and environment names but never their
//! values; the page reads in Chinese too and fits a phone. Screenshots land in
//! `target/ui-artifacts/`.

use std::sync::Arc;

use serde_json::json;
use testkit::rig::ADMIN;

use super::{http_server, ok, tools, McpRig};
use crate::ui_browser::{browser_paths, Browser, Driver};

/// A fake secret (never real): the page must not show it.
const FAKE: &str = "ghp_FAKEui0123456789abcdefghijKLMN";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_servers_page_shows_health_tools_and_names_but_no_secret_values() {
    let Some(tools) = tools("mcp::browser::the_mcp_servers_page_shows_health_tools_and_names_but_no_secret_values")
    else {
        return;
    };
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let scripts = Arc::new(tools.scripts());
    let http = scripts.everything_http(&[]);
    let entry = tools.everything().display().to_string();
    let stdio = scripts.stdio_entry("evs", &[&entry, "stdio"], &format!("env = {{ GITHUB_TOKEN = \"{FAKE}\" }}"));
    std::env::set_var("CB_UI_TEST_MCP_AUTH", format!("Bearer {FAKE}"));
    let evh = http_server(
        "evh",
        &http.url(),
        "headers = { Authorization = \"${CB_UI_TEST_MCP_AUTH}\" }\ntool_filter = { exclude = [\"get-env\"] }",
    );
    let m = McpRig::start(&format!("{evh}{stdio}"), &[]).await;
    let console = format!("http://{}", m.rig.sidecar.control_addr);

    let driver = Driver::start(&driver_bin).await;
    let b = Browser::open(&driver, &chromium).await;
    b.goto(&format!("{console}/#/mcp")).await;
    b.type_into("[data-testid=token]", ADMIN).await;
    b.click("[data-testid=signin]").await;
    b.find("[data-testid=mcp-server][data-name=evh]").await;
    b.find("[data-testid=mcp-server][data-name=evs]").await;
    for name in ["evh", "evs"] {
        let card = b.text(&format!("[data-testid=mcp-server][data-name={name}][data-health=unknown]")).await;
        // (The badge is upper-cased by the stylesheet.)
        assert!(
            card.to_lowercase().contains("not tried yet") && card.contains("No tools listed yet"),
            "{name}: {card}"
        );
    }
    let evs = b.text("[data-testid=mcp-server][data-name=evs]").await;
    assert!(evs.contains(&entry) && evs.contains("stdio") && evs.contains("GITHUB_TOKEN (values hidden)"), "{evs}");
    let evh = b.text("[data-testid=mcp-server][data-name=evh]").await;
    assert!(evh.contains(&http.url()) && evh.contains("Authorization (values hidden)"), "{evh}");

    // An agent connects, lists and calls: both servers answer; the page follows on its own.
    let token = m.token("main").await;
    let steps = json!([{"op": "list"}, {"op": "call", "name": "evh__echo", "args": {"message": "hi"}},
                       {"op": "call", "name": "evs__echo", "args": {"message": "hi"}}]);
    let report = scripts.client(json!({"url": m.endpoint("main"), "token": token, "steps": steps})).await;
    ok(&report, 2);
    b.wait_js(
        "both servers healthy with tools",
        "document.querySelectorAll('[data-testid=mcp-server][data-health=healthy] [data-testid=tools]').length === 2",
    )
    .await;
    let hidden = b
        .js(
            "return [...document.querySelectorAll('[data-name=evh] [data-testid=tool][data-offered=false]')].map(e => e.textContent)",
            json!([]),
        )
        .await;
    assert!(hidden.to_string().contains("get-env") && hidden.to_string().contains("hidden from agents"), "{hidden}");
    let offered = b
        .js(
            "return document.querySelectorAll('[data-name=evs] [data-testid=tool][data-offered=true]').length",
            json!([]),
        )
        .await;
    assert!(offered.as_u64().unwrap_or(0) >= 5, "evs lists its tools: {offered}");
    let html = b.js("return document.documentElement.outerHTML", json!([])).await;
    assert!(!html.to_string().contains("FAKEui"), "a secret value reached the page");
    b.screenshot("mcp-servers.png").await;

    // Chinese, and a phone's width: nothing wider than the screen.
    b.js("localStorage.setItem('clawbutler.lang', 'zh-CN'); location.reload(); return true", json!([])).await;
    b.wait_js("Chinese", "document.body.textContent.includes('MCP 服务器')").await;
    b.resize(390, 844).await;
    b.find("[data-testid=mcp-server][data-name=evh]").await;
    let wide = b.js("return document.documentElement.scrollWidth <= window.innerWidth + 1", json!([])).await;
    assert_eq!(wide, json!(true), "the page is wider than a phone");
    b.screenshot("mcp-servers-phone-zh.png").await;
    b.close().await;
}

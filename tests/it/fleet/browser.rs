//! The fleet in the web console, in a real Chromium: on sidecar B's console the Fleet tab
//! lists all three sidecars with their heartbeat and gateway link (A linked to a fake OpenClaw
//! gateway, B pointed at a gateway that is down, C without a link), in English and, at phone
//! width, in Simplified Chinese; B's approvals inbox shows a call held on A, and approving it
//! there releases the call on A; B's Grants tab shows a grant made through A's API as
//! fleet-wide with its origin, and revoking it there stops it on A; each card shows the
//! policy revision its sidecar serves. A
//! sidecar without `[fleet]` shows no Fleet tab.

use std::time::Duration;

use serde_json::json;
use testkit::fake_gateway::{FakeGateway, TOKEN};
use testkit::postgres::PgCluster;
use testkit::rig::{bearer, Rig, ADMIN};

use crate::ui_browser::{browser_paths, Browser, Driver};

const ENV: &str = "FLEET_UI_FAKE_GATEWAY_TOKEN";

async fn sign_in(b: &Browser, console: &str) {
    b.goto(&format!("{console}/")).await;
    b.type_into("[data-testid=token]", ADMIN).await;
    b.click("[data-testid=signin]").await;
    b.find("[data-testid=approvals]").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_fleet_and_decides_an_approval_held_on_another_sidecar() {
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let Some(pg) = PgCluster::start_or_skip("fleet console") else { return };
    std::env::set_var(ENV, TOKEN);
    let gw = FakeGateway::start().await;
    let gateways = [
        format!("[gateway]\nurl = \"{}\"\ntoken_env = \"{ENV}\"\n", gw.url()),
        format!("[gateway]\nurl = \"ws://127.0.0.1:9\"\ntoken_env = \"{ENV}\"\n"),
        String::new(),
    ];
    let mut rigs = Vec::new();
    for (i, g) in gateways.iter().enumerate() {
        let id = ["sc-a", "sc-b", "sc-c"][i];
        let b = Rig::builder().hold_rule().table(g).table(&pg.fleet_table(id, "heartbeat_ms = 200"));
        rigs.push(b.start().await);
    }
    let (a, b_rig) = (&rigs[0], &rigs[1]);
    let link = a.sidecar.gateway.clone().unwrap().link().clone();
    assert!(link.wait_connected(Duration::from_secs(10)).await, "A links to the fake gateway");
    // The API first: every sidecar's link state as of its last heartbeat.
    let mut states = json!(null);
    for _ in 0..100 {
        let v = testkit::http::get(&b_rig.control("/api/v1/fleet/sidecars"), &bearer(ADMIN)).await.json();
        states = json!(v["items"].as_array().unwrap().iter().map(|s| s["gateway_link"].clone()).collect::<Vec<_>>());
        if states == json!(["connected", "disconnected", null]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(states, json!(["connected", "disconnected", null]));

    let driver = Driver::start(&driver_bin).await;
    let br = Browser::open(&driver, &chromium).await;
    let console = format!("http://{}", b_rig.sidecar.control_addr);
    sign_in(&br, &console).await;
    br.wait_js("fleet tab", "!document.querySelector('[data-testid=nav-fleet]').hidden").await;

    // B's inbox shows the call held on A; approving it there releases the call on A.
    let held = a.call("main", "needs-approval-1", "from the console");
    br.find("[data-testid=approval]").await;
    let card = br.text("[data-testid=approval]").await;
    assert!(card.contains("needs-approval-1") && card.contains("@main"), "{card}");
    br.click("[data-testid=allow-once]").await;
    let res = tokio::time::timeout(Duration::from_secs(20), held).await.expect("released").unwrap();
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(a.up.request_count(), 1, "approved on B's console, the call went out from A");

    // B's Grants tab shows a grant created through A's API as the fleet's, with its origin;
    // revoking it there stops it applying on A.
    let body = json!({"agent": "main", "kind": "model_call", "pattern": "needs-approval-7"});
    let r = testkit::http::post_json(&a.control("/api/v1/grants"), &bearer(ADMIN), &body).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(a.sidecar.broker().grants_for("main").len(), 1);
    br.click("[data-testid=nav-grants]").await;
    br.find("[data-testid=grant-sidecar]").await;
    assert_eq!(br.text("[data-testid=grant-sidecar]").await, "sc-a");
    assert!(br.text("[data-testid=grant-reach]").await.to_lowercase().contains("fleet-wide"));
    br.click("[data-testid=revoke]").await;
    br.click("[data-testid=revoke-confirm]").await;
    testkit::wait::until("the console's revoke reaches A", Duration::from_secs(10), || async {
        a.sidecar.broker().grants_for("main").is_empty()
    })
    .await;

    // The Fleet tab: three sidecars, their heartbeats and gateway links.
    br.click("[data-testid=nav-fleet]").await;
    br.wait_js("three sidecars", "document.querySelectorAll('[data-testid=fleet-sidecar]').length === 3").await;
    let links = br
        .js(
            "return [...document.querySelectorAll('[data-testid=fleet-sidecar]')].map((c) => \
             [c.dataset.id, c.dataset.stale, c.querySelector('[data-testid=gateway-link]').dataset.link])",
            json!([]),
        )
        .await;
    assert_eq!(
        links,
        json!([["sc-a", "false", "connected"], ["sc-b", "false", "disconnected"], ["sc-c", "false", "none"]])
    );
    // Badges are upper-cased by the stylesheet.
    let text = br.text("[data-testid=fleet-sidecars]").await.to_lowercase();
    assert!(text.contains("gateway connected") && text.contains("no gateway link"), "{text}");
    assert!(text.contains("heartbeat on time") && text.contains("s ago"), "{text}");
    // Each sidecar's audit shipping lag to the central audit trail (the page reloads every 5 s).
    let lag = "[...document.querySelectorAll('[data-testid=audit-lag]')].filter((e) => e.dataset.records !== '').length === 3";
    br.wait_js("the audit shipping lag of three sidecars", lag).await;
    let text = br.text("[data-testid=fleet-sidecars]").await.to_lowercase();
    assert!(text.contains("audit shipping lag") && text.contains(" records, "), "{text}");
    // Each card shows the policy revision its sidecar serves (its own: nothing published here).
    let rev = testkit::http::get(&b_rig.control("/api/v1/policies"), &bearer(ADMIN)).await.json()["revision"].clone();
    let js = "return [...document.querySelectorAll('[data-testid=policy]')].map((p) => p.dataset.revision);";
    assert_eq!(br.js(js, json!([])).await, json!([rev, rev, rev]));
    assert!(text.contains("(its own bundle)"), "{text}");
    // A fleet kill of one gateway from the console (admin): sc-c's card; A and B keep serving.
    let c_card = "[data-testid=fleet-sidecar][data-id=sc-c]";
    br.click(&format!("{c_card} [data-testid=fleet-kill]")).await;
    br.type_into(&format!("{c_card} .panel input"), "gateway compromised").await;
    br.click("[data-testid=fleet-kill-confirm]").await;
    testkit::wait::until("the console's kill reaches sc-c", Duration::from_secs(10), || async {
        rigs[2].sidecar.kill.blocked("main").is_some()
    })
    .await;
    assert!(rigs[0].sidecar.kill.blocked("main").is_none() && rigs[1].sidecar.kill.blocked("main").is_none());
    br.wait_js("sc-c shown stopped", &format!("document.querySelector('{c_card} [data-testid=fleet-killed]')")).await;
    assert!(br.text(&format!("{c_card} [data-testid=fleet-killed]")).await.contains("gateway compromised"));
    br.click(&format!("{c_card} [data-testid=fleet-recover]")).await;
    br.type_into(&format!("{c_card} .panel input"), "rotated").await;
    br.click("[data-testid=fleet-recover-confirm]").await;
    testkit::wait::until("the console's recover reaches sc-c", Duration::from_secs(10), || async {
        rigs[2].sidecar.kill.blocked("main").is_none()
    })
    .await;
    br.wait_js("sc-c back", &format!("document.querySelector('{c_card} [data-testid=fleet-kill]')")).await;
    // The fleet kill form (admin): one agent stopped on every sidecar, then lifted.
    br.type_into("[data-testid=fleet-kill-agent]", "main").await;
    br.type_into("[data-testid=fleet-kill-reason]", "runaway loop").await;
    br.click("[data-testid=fleet-kill-all]").await;
    testkit::wait::until("the console's agent kill on every sidecar", Duration::from_secs(10), || async {
        rigs.iter().all(|r| r.sidecar.kill.blocked("main").is_some())
    })
    .await;
    assert!(rigs.iter().all(|r| r.sidecar.kill.blocked("ops").is_none()), "other agents still run");
    br.click("[data-testid=fleet-recover-all]").await;
    testkit::wait::until("the console's lift on every sidecar", Duration::from_secs(10), || async {
        rigs.iter().all(|r| r.sidecar.kill.blocked("main").is_none())
    })
    .await;
    let said = br.text("[data-testid=fleet-kill-form]").await;
    assert!(said.contains("Fleet kill lifted: main"), "{said}");
    br.screenshot("fleet-desktop.png").await;

    // Phone width, Simplified Chinese: the same, readable without sideways scrolling.
    br.resize(390, 844).await;
    br.js(
        "const s = document.querySelector('[data-testid=lang]'); s.value = 'zh-CN'; \
         s.dispatchEvent(new Event('change')); return true;",
        json!([]),
    )
    .await;
    br.wait_js("chinese", "document.querySelector('[data-testid=fleet-sidecars]').innerText.includes('网关已连接')")
        .await;
    let zh = br.text("[data-testid=fleet-sidecars]").await;
    assert!(zh.contains("心跳正常") && zh.contains("无网关连接") && zh.contains("网关已断开"), "{zh}");
    assert!(zh.contains("审计上传延迟"), "{zh}");
    assert!(zh.contains("本地策略包"), "{zh}");
    let fits = br.js("return document.documentElement.scrollWidth <= window.innerWidth + 1;", json!([])).await;
    assert_eq!(fits, json!(true), "the fleet page fits a phone's width");
    br.screenshot("fleet-phone-zh.png").await;
    br.close().await;

    // Without [fleet] the tab is not offered.
    let plain = Rig::start("").await;
    let br = Browser::open(&driver, &chromium).await;
    sign_in(&br, &format!("http://{}", plain.sidecar.control_addr)).await;
    br.wait_js("fleet probe done", "document.querySelector('[data-testid=nav-fleet]')").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hidden = br.js("return document.querySelector('[data-testid=nav-fleet]').hidden;", json!([])).await;
    assert_eq!(hidden, json!(true));
    br.close().await;
}

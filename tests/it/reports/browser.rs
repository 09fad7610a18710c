//! The Reports page in a real browser (Debian's headless Chromium over WebDriver, the helpers
//! of `ui_browser`): a report made through the API is listed as done; a report created from the
//! page appears and finishes; its PDF button downloads the file through a single-use link
//! (the bytes the page saved are a PDF, and the link it used is refused a second time). Then
//! the phone layout, in Chinese. Screenshots land in `target/ui-artifacts/`.

use serde_json::{json, Value};
use testkit::http::get;
use testkit::rig::{bearer, Rig, ADMIN};

use crate::ui_browser::{browser_paths, Browser, Driver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_page_lists_a_report_and_downloads_it_once() {
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let rig = Rig::builder().table(crate::cost::TABLES).start().await;
    let n = crate::cost::load(&rig).await as u64;
    crate::cost::cost(&rig, "by=agent&since=2d", n).await;
    let first = super::made(&rig, json!({"since": "2d"}), "done").await;
    let id = first["id"].as_str().unwrap();

    let driver = Driver::start(&driver_bin).await;
    let b = Browser::open(&driver, &chromium).await;
    b.goto(&rig.control("/")).await;
    b.type_into("[data-testid=token]", ADMIN).await;
    b.click("[data-testid=signin]").await;
    b.click("[data-testid=nav-reports]").await;
    b.wait_js(
        "the report",
        &format!("document.querySelector('[data-testid=report][data-id=\"{id}\"][data-status=done]')"),
    )
    .await;

    // Create one from the page: it is queued, then done (the list refreshes by itself).
    b.click("[data-testid=report-create]").await;
    b.wait_js("two reports", "document.querySelectorAll('[data-testid=report]').length === 2").await;
    b.wait_js("both done", "document.querySelectorAll('[data-testid=report][data-status=done]').length === 2").await;

    // Watch what the page fetches and saves, then download the first report's PDF.
    b.js(
        "window.__fetched = []; const f = window.fetch; window.fetch = (u, o) => { window.__fetched.push(String(u)); return f(u, o); }; \
         window.__saved = []; const c = URL.createObjectURL; URL.createObjectURL = (blob) => { \
           blob.arrayBuffer().then((a) => window.__saved.push([blob.size, String.fromCharCode(...new Uint8Array(a).slice(0, 5))])); \
           return c(blob); };",
        json!([]),
    )
    .await;
    b.click(&format!("[data-testid=report][data-id=\"{id}\"] [data-testid=report-pdf]")).await;
    b.wait_js("the saved file", "window.__saved.length === 1").await;
    let saved = b.js("return window.__saved[0];", json!([])).await;
    assert_eq!(saved[1], "%PDF-", "{saved}");
    assert!(saved[0].as_u64().unwrap() > 1_000, "{saved}");
    b.screenshot("reports-page.png").await;
    let fetched: Vec<String> = serde_json::from_value(b.js("return window.__fetched;", json!([])).await).unwrap();
    let used: Vec<&String> = fetched.iter().filter(|u| u.contains("/api/v1/reports/download/")).collect();
    assert_eq!(used.len(), 1, "{fetched:?}");
    let again = get(&rig.control(used[0]), &[]).await;
    assert_eq!(again.status, 410, "the page's link works once: {}", again.text());
    let api = get(&rig.control("/api/v1/reports"), &bearer(ADMIN)).await.json();
    assert_eq!(api["items"].as_array().unwrap().len(), 2);

    // A report in another time zone: chosen on the page, kept by the API, shown on its card.
    b.js(
        "const s = document.querySelector('[data-testid=report-zone]'); s.value = 'Asia/Tokyo'; s.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    b.click("[data-testid=report-create]").await;
    b.wait_js("three done", "document.querySelectorAll('[data-testid=report][data-status=done]').length === 3").await;
    let api = get(&rig.control("/api/v1/reports"), &bearer(ADMIN)).await.json();
    let tokyo: Vec<&Value> =
        api["items"].as_array().unwrap().iter().filter(|r| r["timezone"] == "Asia/Tokyo").collect();
    assert_eq!(tokyo.len(), 1, "{api}");
    let tid = tokyo[0]["id"].as_str().unwrap();
    b.wait_js(
        "its zone on its card",
        &format!(
            "document.querySelector('[data-testid=report][data-id=\"{tid}\"] [data-testid=report-zone-badge]').textContent === 'Asia/Tokyo'"
        ),
    )
    .await;

    // A phone, in Chinese: the list fits the screen.
    b.resize(390, 844).await;
    b.goto(&rig.control("/#/reports")).await;
    b.wait_js("the list", "document.querySelector('[data-testid=report]')").await;
    b.js("const s = document.querySelector('[data-testid=lang]'); s.value = 'zh-CN'; s.dispatchEvent(new Event('change'));", json!([])).await;
    b.wait_js("Chinese", "document.querySelector('[data-testid=nav-reports]').textContent === '报告'").await;
    b.wait_js("the list again", "document.querySelector('[data-testid=report] [data-testid=report-status]')").await;
    let fits: Value = b
        .js(
            "const w = document.documentElement.clientWidth; \
             return [document.documentElement.scrollWidth <= w, document.querySelector('[data-testid=report-status]').textContent];",
            json!([]),
        )
        .await;
    assert_eq!(fits, json!([true, "已完成"]));
    b.screenshot("reports-page-phone-zh.png").await;
    b.close().await;
}

//! The Cost page in a real browser (Debian's headless Chromium over WebDriver, the helpers of
//! `ui_browser`). Two days of quiet history for agent `main` are added to the cost store
//! before the sidecar starts (`Cost::backfill`: the audit log cannot be written in the past);
//! then calls through the proxy to a dear model make this hour a spend spike. The page's
//! stacked chart adds up to the API's total, the top agents and models are the API's rows,
//! the anomaly is marked on the timeline and listed with its contributors, and its most
//! expensive trace opens in the audit view in two clicks. The Suggestions section shows the
//! API's savings suggestions with their candidates, and its preview (no gateway linked) shows
//! why it cannot plan. Then the phone layout, in Chinese.
//! Screenshots land in `target/ui-artifacts/`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, chat, Rig, ADMIN};

use crate::ui_browser::{browser_paths, Browser, Driver};

/// Hourly history for `main`: 5 cheap calls an hour for the 48 hours before this one.
fn seed(data: &std::path::Path) {
    let db = storage::Store::open(&data.join("state")).unwrap();
    let reg = prometheus::Registry::new();
    let audit = Arc::new(audit::AuditLog::open(&data.join("audit"), &Default::default(), &db, &reg).unwrap());
    let cost = cost::Cost::open(&db, audit, Default::default(), cost::system_clock(), &reg).unwrap();
    let hour = Utc::now().timestamp() / 3600 * 3600;
    let mut recs = Vec::new();
    for h in 1..=48 {
        for i in 0..5 {
            let t = chrono::DateTime::from_timestamp(hour - h * 3600 + i * 600, 0).unwrap();
            recs.push(audit::AuditRecord {
                ts: t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                kind: Some(audit::RecordKind::ModelCall),
                agent: Some("main".into()),
                trace_id: Some(format!("history-{h}-{i}")),
                subject: json!({"model": "m-b", "upstream": "fake"}),
                usage: Some(audit::Usage { input_tokens: 400, output_tokens: 40, ..Default::default() }),
                cost_usd: Some(0.002),
                outcome: Some("completed".into()),
                ..Default::default()
            });
        }
    }
    cost.backfill(&recs).unwrap();
    cost.flush().unwrap();
    db.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_page_draws_the_api_numbers_and_an_anomaly_leads_to_its_trace() {
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let rig = super::rig().await;
    // Stop, add the history, start again on the same data dir.
    let Rig { sidecar, up, dir, cfg } = rig;
    sidecar.shutdown().await;
    seed(&dir.path().join("data"));
    let sidecar = clawbutler::app::Sidecar::start(cfg.build()).await.unwrap();
    let rig = Rig { sidecar, up, dir, cfg };

    // The spike: `main` calls the dear model; `ops` a little of the cheap one.
    for i in 0..6 {
        let prompt = "spend ".repeat(10 + i * 5);
        let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat("m-big", &prompt)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = post_json(&rig.url("/a/ops/fake/v1/chat/completions"), &[], &chat("m-b", "a small one")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let anomaly = wait_anomaly(&rig).await;
    assert_eq!((anomaly["scope"].as_str(), anomaly["subject"].as_str()), (Some("agent"), Some("main")), "{anomaly}");
    let top_trace = anomaly["top"][0]["models"][0]["traces"][0]["trace_id"].as_str().unwrap().to_string();
    assert_eq!(anomaly["top"][0]["models"][0]["model"], "m-big");
    let api = super::cost(&rig, "by=day&split=agent&since=7d", 240 + 7).await;
    let agents = super::cost(&rig, "by=agent&since=7d&limit=10", 240 + 7).await;

    let driver = Driver::start(&driver_bin).await;
    let b = Browser::open(&driver, &chromium).await;
    b.goto(&rig.control("/")).await;
    b.type_into("[data-testid=token]", ADMIN).await;
    b.click("[data-testid=signin]").await;
    b.click("[data-testid=nav-cost]").await;
    b.find("[data-testid=cost-chart] rect").await;
    // The stacked bars add up to the API's total, per agent and overall.
    let drawn = b
        .js(
            "const m = {}; for (const r of document.querySelectorAll('[data-testid=cost-chart] rect')) \
             { m[r.dataset.split] = (m[r.dataset.split] || 0) + Number(r.dataset.costNano); } return m;",
            json!([]),
        )
        .await;
    let mut want = serde_json::Map::new();
    for r in api["rows"].as_array().unwrap() {
        let e = want.entry(r["split"].as_str().unwrap()).or_insert(json!(0));
        *e = json!(e.as_u64().unwrap() + r["cost_nano"].as_u64().unwrap());
    }
    assert_eq!(drawn, Value::Object(want), "chart vs API");
    let total = b.text("[data-testid=cost-total]").await;
    assert!(total.contains(&format!("{:.2}", api["totals"]["cost_usd"].as_f64().unwrap())), "{total} vs {api}");
    let top: Vec<String> = serde_json::from_value(
        b.js(
            "return [...document.querySelectorAll('[data-testid=cost-top-agents] rect')].map(r => r.dataset.key);",
            json!([]),
        )
        .await,
    )
    .unwrap();
    let api_top: Vec<String> =
        agents["rows"].as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap().to_string()).collect();
    assert_eq!(top, api_top);
    // The anomaly: marked on the timeline, listed with agent -> model -> traces.
    b.find("[data-testid=anomaly-mark]").await;
    let listed = b.text("[data-testid=anomaly]").await;
    assert!(listed.contains("main") && listed.contains("m-big") && listed.contains(&top_trace), "{listed}");
    // Savings suggestions: the API's, with their verdicts and cheaper models.
    let sugg = get(&rig.control("/api/v1/cost/suggestions?since=7d"), &bearer(ADMIN)).await.json();
    let first = sugg["items"][0].clone();
    let agent = first["agent"].as_str().unwrap_or_else(|| panic!("no suggestion: {sugg}")).to_string();
    let sel = format!("[data-testid=cost-suggestions] [data-testid=suggestion][data-agent='{agent}']");
    b.find(&sel).await;
    let shown = b
        .js(
            "const s = document.querySelector(arguments[0]); \
             return [document.querySelectorAll('[data-testid=suggestion]').length, s.dataset.verdict, \
             [...s.querySelectorAll('[data-testid=suggestion-candidate]')].map(c => c.dataset.model), \
             s.querySelector('[data-testid=suggestion-reasons]').innerText.length > 0];",
            json!([sel]),
        )
        .await;
    let models: Vec<Value> = first["candidates"].as_array().unwrap().iter().map(|c| c["model"].clone()).collect();
    assert_eq!(shown, json!([sugg["items"].as_array().unwrap().len(), first["verdict"], models, true]), "{sugg}");
    b.click(&format!("{sel} [data-testid=suggestion-preview]")).await;
    b.find(&format!("{sel} [data-testid=suggestion-preview-out] [data-testid=error]")).await;
    b.screenshot("cost-page.png").await;
    // Second click: the trace in the audit view.
    b.click(&format!("[data-testid=anomaly-trace][href$='{top_trace}']")).await;
    b.find("[data-testid=trace] .trace-card").await;
    b.wait_js("the trace's records", "document.querySelector('[data-testid=trace]').innerText.includes('m-big')").await;

    // A phone, in Chinese: nothing wider than the screen, the charts scale down.
    b.resize(390, 844).await;
    b.goto(&rig.control("/#/cost")).await;
    b.wait_js("the page", "document.querySelector('[data-testid=cost-chart] rect')").await;
    b.js("const s = document.querySelector('[data-testid=lang]'); s.value = 'zh-CN'; s.dispatchEvent(new Event('change'));", json!([])).await;
    b.wait_js("Chinese", "document.querySelector('[data-testid=nav-cost]').textContent === '成本'").await;
    b.wait_js("the chart again", "document.querySelector('[data-testid=cost-chart] rect')").await;
    let fits = b
        .js(
            "const w = document.documentElement.clientWidth; const c = document.querySelector('[data-testid=cost-chart]').getBoundingClientRect(); \
             return [document.documentElement.scrollWidth <= w, c.width <= w, c.width > 200];",
            json!([]),
        )
        .await;
    assert_eq!(fits, json!([true, true, true]));
    b.wait_js(
        "the suggestions in Chinese",
        "document.querySelector('[data-testid=cost-suggestions] h2').textContent === '节省建议' \
         && document.querySelector('[data-testid=suggestion]')",
    )
    .await;
    let fits = b
        .js(
            "const w = document.documentElement.clientWidth; \
             const r = document.querySelector('[data-testid=cost-suggestions]').getBoundingClientRect(); \
             return [document.documentElement.scrollWidth <= w, r.right <= w];",
            json!([]),
        )
        .await;
    assert_eq!(fits, json!([true, true]));
    b.screenshot("cost-page-phone-zh.png").await;
    b.close().await;
}

async fn wait_anomaly(rig: &Rig) -> Value {
    for _ in 0..200 {
        let v = get(&rig.control("/api/v1/cost/anomalies"), &bearer(ADMIN)).await.json();
        if let Some(a) = v["items"].as_array().and_then(|i| i.iter().find(|a| a["metric"] == "spend")) {
            return a.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no spend anomaly was raised");
}

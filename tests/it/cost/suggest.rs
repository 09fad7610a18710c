//! Savings suggestions through the real data path: three agents call priced models through
//! the proxy to the scripted upstream (one with short tool-free answers, one whose answers
//! call `exec` half the time, one already on the cheapest model). `/api/v1/cost/suggestions`
//! prices the audited tokens on the cheaper model exactly as the proxy's price table does,
//! marks tool use risky, gives the cheapest model none; bad parameters are problem+json; the
//! preview without a linked gateway says so; `clawbutler cost suggest` prints the same.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, chat, Rig};

/// The rig's `[prices]` (`super::TABLES`) as the proxy's table.
fn table() -> proxy::PriceTable {
    let p = |input, output| proxy::Price { input, output, cached_input: None, cache_write: None };
    let o = BTreeMap::from([
        ("m-a".to_string(), p(1000.0, 3000.0)),
        ("m-b".to_string(), p(150.0, 600.0)),
        ("m-big".to_string(), p(5000.0, 5000.0)),
    ]);
    proxy::PriceTable::new(&o).unwrap()
}

async fn load(rig: &Rig) -> u64 {
    let mut n = 0;
    let tools = json!([{"type": "function", "function": {"name": "exec", "parameters": {"type": "object"}}}]);
    for i in 0..22 {
        let r = post_json(&rig.url("/a/summ/fake/v1/chat/completions"), &[], &chat("m-a", &"sum ".repeat(5 + i))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let prompt = if i % 2 == 0 { "RUN_EXEC: ls".to_string() } else { "code ".repeat(3 + i) };
        let mut body = chat("m-a", &prompt);
        body["tools"] = tools.clone();
        let r = post_json(&rig.url("/a/coder/fake/v1/chat/completions"), &[], &body).await;
        assert_eq!(r.status, 200, "{}", r.text());
        n += 2;
    }
    for _ in 0..3 {
        let r = post_json(&rig.url("/a/cheap/fake/v1/chat/completions"), &[], &chat("m-b", "tiny")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        n += 1;
    }
    n
}

/// `/api/v1/cost/suggestions?{query}` once every call's evidence is counted.
async fn suggestions(rig: &Rig, token: &str, query: &str, calls: u64) -> Value {
    super::cost(rig, "by=agent&since=1d", calls).await;
    for _ in 0..100 {
        let r = get(&rig.control(&format!("/api/v1/cost/suggestions?{query}")), &bearer(token)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let counted: u64 =
            v["items"].as_array().unwrap().iter().map(|i| i["evidence"]["calls"].as_u64().unwrap()).sum();
        if counted == 44 {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the suggestions never counted the calls");
}

fn item<'a>(v: &'a Value, agent: &str) -> &'a Value {
    v["items"].as_array().unwrap().iter().find(|i| i["agent"] == agent).unwrap_or_else(|| panic!("no {agent}: {v}"))
}

/// The summed usage of an agent's audited call ends.
async fn audited_usage(rig: &Rig, agent: &str) -> audit::Usage {
    let mut u = audit::Usage::default();
    for r in rig.audit(&format!("kind=model_call&agent={agent}")).await.iter().filter(|r| r["outcome"] == "completed") {
        let n = |k: &str| r["usage"][k].as_u64().unwrap_or(0);
        u.input_tokens += n("input_tokens");
        u.output_tokens += n("output_tokens");
        u.cached_input_tokens += n("cached_input_tokens");
        u.cache_write_tokens += n("cache_write_tokens");
    }
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suggestions_price_the_audited_tokens_and_judge_the_evidence() {
    let rig = super::rig().await;
    let n = load(&rig).await;
    let viewer = rig.token("viewer", "savings-viewer").await;
    let v = suggestions(&rig, &viewer, "since=7d", n).await;

    let summ = item(&v, "summ");
    assert_eq!((summ["model"].as_str(), summ["calls"].as_u64()), (Some("m-a"), Some(22)), "{summ}");
    let names: Vec<&str> =
        summ["candidates"].as_array().unwrap().iter().map(|c| c["model"].as_str().unwrap()).collect();
    assert_eq!(names, ["m-b"], "only the cheaper model, never the dearer m-big");
    let u = audited_usage(&rig, "summ").await;
    assert_eq!(summ["evidence"]["input_tokens"].as_u64(), Some(u.input_tokens));
    assert_eq!(summ["evidence"]["output_tokens"].as_u64(), Some(u.output_tokens));
    let (now, cheaper) = (table().cost("m-a", &u).unwrap(), table().cost("m-b", &u).unwrap());
    let c = &summ["candidates"][0];
    assert!((summ["priced_usd"].as_f64().unwrap() - now).abs() < 1e-9, "{summ} vs {now}");
    assert!((summ["cost_usd"].as_f64().unwrap() - now).abs() < 1e-6, "the real cost is the same table's: {summ}");
    assert!((c["cost_usd"].as_f64().unwrap() - cheaper).abs() < 1e-9, "{c} vs {cheaper}");
    assert!((c["saving_usd"].as_f64().unwrap() - (now - cheaper)).abs() < 1e-9);
    assert!((c["saving_pct"].as_f64().unwrap() - (now - cheaper) / now * 100.0).abs() < 1e-6);
    assert_eq!(summ["evidence"]["tool_free_calls"], 22);
    assert_eq!(summ["verdict"], "good_candidate", "{summ}");

    let coder = item(&v, "coder");
    assert_eq!(coder["evidence"]["tool_use_calls"], 11, "{coder}");
    assert_eq!(coder["evidence"]["tool_free_calls"], 0);
    assert_eq!(coder["verdict"], "risky");
    assert!(coder["reasons"][0].as_str().unwrap().contains("50% of answers called a tool"), "{coder}");

    assert!(v["items"].as_array().unwrap().iter().all(|i| i["agent"] != "cheap"));
    let why = v["no_suggestion"].as_array().unwrap().iter().find(|n| n["agent"] == "cheap").unwrap();
    assert!(why["why"].as_str().unwrap().contains("no cheaper custom model"), "{why}");

    // Filters, bad input, roles, and the preview without a gateway.
    let one = get(&rig.control("/api/v1/cost/suggestions?agent=coder"), &bearer(&viewer)).await.json();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);
    for q in ["since=yesterday", "colour=red", "limit=0", "since=1d&until=2d"] {
        let r = get(&rig.control(&format!("/api/v1/cost/suggestions?{q}")), &bearer(&viewer)).await;
        assert_eq!(
            (r.status.as_u16(), r.headers["content-type"].to_str().unwrap()),
            (400, "application/problem+json"),
            "{q}"
        );
    }
    assert_eq!(get(&rig.control("/api/v1/cost/suggestions"), &[]).await.status, 401);
    let preview = |q: &'static str| {
        let url = rig.control(&format!("/api/v1/cost/suggestions/preview?{q}"));
        let v = viewer.clone();
        async move { get(&url, &bearer(&v)).await }
    };
    let r = preview("agent=summ&model=m-b").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.json()["detail"].as_str().unwrap().contains("no OpenClaw gateway is linked"), "{}", r.text());
    let r = preview("agent=summ&model=m-big").await;
    assert_eq!(r.status, 400, "a dearer model is not a suggestion: {}", r.text());
    assert_eq!(preview("agent=summ").await.status, 400);
    assert_eq!(preview("agent=..%2Fx&model=m-b").await.status, 400);

    // The CLI shows the same suggestions.
    let run = |args: &[&str]| super::cli(&rig, args);
    let text = run(&["cost", "suggest", "--since", "7d"]);
    let summ_line = text.lines().find(|l| l.starts_with("summ")).unwrap_or_else(|| panic!("{text}"));
    assert!(summ_line.contains("m-a") && summ_line.contains("GOOD_CANDIDATE"), "{text}");
    assert!(text.contains(&format!("saves ${:.6}", c["saving_usd"].as_f64().unwrap())), "{text}");
    assert!(text.lines().any(|l| l.starts_with("coder") && l.contains("RISKY")), "{text}");
    assert!(text.contains("cheap (task unknown, model m-b): no cheaper"), "{text}");
    let json: Value = serde_json::from_str(&run(&["cost", "suggest", "--json"])).unwrap();
    assert_eq!(json["items"], v["items"]);
}

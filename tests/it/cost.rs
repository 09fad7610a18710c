//! Cost insight through the real data path: calls over several agents and models through the
//! proxy to the scripted upstream, then `/api/v1/cost` for every grouping equals the sum of
//! the audited calls (the audit API's records), before and after a restart; bad parameters
//! are problem+json; a viewer reads; the CLI prints the table. The Cost page in Chromium
//! (`browser`) draws the API's numbers and marks an anomaly whose trace opens in two clicks.
//! Multi-day and month-long figures with an injectable clock are in the `cost` crate's tests.

mod browser;
mod suggest;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, chat, Rig, ADMIN};

/// Priced models (USD per million tokens) and a quick anomaly judge.
pub(crate) const TABLES: &str = "[prices.\"m-a\"]\ninput = 1000.0\noutput = 3000.0\n\
[prices.\"m-b\"]\ninput = 150.0\noutput = 600.0\n\
[prices.\"m-big\"]\ninput = 5000.0\noutput = 5000.0\n\
[cost]\nevaluate_every_s = 1\n";

pub(crate) async fn rig() -> Rig {
    Rig::builder().table(TABLES).start().await
}

/// Calls from three agents to two models, prompts of different lengths; returns how many.
pub(crate) async fn load(rig: &Rig) -> usize {
    let mut n = 0;
    for (i, agent) in ["main", "ops", "research"].iter().enumerate() {
        for j in 0..(4 + i * 2) {
            let model = if j % 3 == 0 { "m-b" } else { "m-a" };
            let prompt = "cost ".repeat(3 + j * 7 + i);
            let url = rig.url(&format!("/a/{agent}/fake/v1/chat/completions"));
            let r = post_json(&url, &[], &chat(model, &prompt)).await;
            assert_eq!(r.status, 200, "{}", r.text());
            n += 1;
        }
    }
    n
}

/// `/api/v1/cost` with `query`, waiting until it counts `calls` calls.
pub(crate) async fn cost(rig: &Rig, query: &str, calls: u64) -> Value {
    for _ in 0..200 {
        let r = get(&rig.control(&format!("/api/v1/cost?{query}")), &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        if v["totals"]["calls"].as_u64() == Some(calls) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cost never counted {calls} calls for {query}");
}

/// Run the real binary against the rig as admin; its stdout (it must succeed).
pub(crate) fn cli(rig: &Rig, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"));
    cmd.args(args).args(["--url", &rig.control(""), "--token", ADMIN]).env_remove("CLAWBUTLER_CONFIG");
    // The sidecar runs on this runtime: wait for the child without holding a worker.
    let out = tokio::task::block_in_place(|| cmd.output()).unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn nano(usd: f64) -> u64 {
    (usd * 1e9).round() as u64
}

/// Per group, (calls, input tokens, output tokens, nano-dollars) of the audited call ends.
fn audited(records: &[Value], key: impl Fn(&Value) -> String) -> HashMap<String, (u64, u64, u64, u64)> {
    let mut m: HashMap<String, (u64, u64, u64, u64)> = HashMap::new();
    for r in records.iter().filter(|r| r["outcome"] != "started" && r["outcome"] != "denied") {
        let e = m.entry(key(r)).or_default();
        e.0 += 1;
        e.1 += r["usage"]["input_tokens"].as_u64().unwrap_or(0);
        e.2 += r["usage"]["output_tokens"].as_u64().unwrap_or(0);
        e.3 += r["cost_usd"].as_f64().map(nano).unwrap_or(0);
    }
    m
}

fn rows(v: &Value) -> HashMap<String, (u64, u64, u64, u64)> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["calls"].as_u64().unwrap() > 0)
        .map(|r| {
            let n = |k: &str| r[k].as_u64().unwrap();
            (
                r["key"].as_str().unwrap().to_string(),
                (n("calls"), n("input_tokens"), n("output_tokens"), n("cost_nano")),
            )
        })
        .collect()
}

/// A record's group key.
type KeyFn = Box<dyn Fn(&Value) -> String>;

async fn check_all(rig: &Rig, calls: u64) {
    // Every call's end record, durable (a call's answer can reach the client first).
    let mut records = rig.audit("kind=model_call").await;
    for _ in 0..200 {
        if records.iter().filter(|r| r["outcome"] != "started").count() as u64 == calls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        records = rig.audit("kind=model_call").await;
    }
    let day = |r: &Value| r["ts"].as_str().unwrap()[..10].to_string();
    let groupings: [(&str, KeyFn); 5] = [
        ("agent", Box::new(|r: &Value| r["agent"].as_str().unwrap().to_string())),
        ("model", Box::new(|r: &Value| r["subject"]["model"].as_str().unwrap().to_string())),
        ("upstream", Box::new(|r: &Value| r["subject"]["upstream"].as_str().unwrap().to_string())),
        ("task", Box::new(|_: &Value| "unknown".to_string())),
        ("day", Box::new(day)),
    ];
    for (by, key) in groupings {
        let v = cost(rig, &format!("by={by}&since=2d"), calls).await;
        let want = audited(&records, key);
        assert_eq!(rows(&v), want, "by={by}: {v}");
        let total: u64 = want.values().map(|w| w.3).sum();
        assert_eq!(v["totals"]["cost_nano"].as_u64().unwrap(), total, "by={by}");
        assert!(total > 0);
    }
    // A filter: one agent's calls by model.
    let ops: Vec<Value> =
        records.iter().filter(|r| r["agent"] == "ops" && r["outcome"] != "started").cloned().collect();
    let v = cost(rig, "by=model&agent=ops&since=2d", ops.len() as u64).await;
    assert_eq!(rows(&v), audited(&ops, |r| r["subject"]["model"].as_str().unwrap().to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_equals_the_audited_calls_through_the_proxy_and_after_a_restart() {
    let rig = rig().await;
    let n = load(&rig).await as u64;
    assert_eq!(n, 18);
    check_all(&rig, n).await;
    let v = cost(&rig, "by=agent&since=2d", n).await;
    let t = &v["totals"];
    let (c, calls) = (t["cost_usd"].as_f64().unwrap(), t["calls"].as_f64().unwrap());
    assert!((t["avg_cost_per_call_usd"].as_f64().unwrap() - c / calls).abs() < 1e-12, "{v}");
    let tokens = (t["input_tokens"].as_u64().unwrap() + t["output_tokens"].as_u64().unwrap()) as f64;
    assert!((t["cost_per_1k_tokens_usd"].as_f64().unwrap() - c * 1000.0 / tokens).abs() < 1e-12, "{v}");

    // A restart reads the log from the stored cursor: nothing counted twice, nothing lost.
    let rig = rig.restart("", TABLES).await;
    check_all(&rig, n).await;
    let more = load(&rig).await as u64;
    check_all(&rig, n + more).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_are_problems_and_a_viewer_reads() {
    let rig = rig().await;
    for q in [
        "by=team",
        "since=yesterday",
        "until=7x",
        "split=day",
        "limit=0",
        "colour=red",
        "since=1d&until=2d",
        "since=500d",
        "by=hour&since=40d",
    ] {
        let r = get(&rig.control(&format!("/api/v1/cost?{q}")), &bearer(ADMIN)).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.headers["content-type"], "application/problem+json", "{q}");
        let detail = r.json()["detail"].as_str().unwrap().to_string();
        let named = q.split('=').next().unwrap();
        assert!(detail.contains(named) || detail.contains("since") || detail.contains("days"), "{q}: {detail}");
    }
    let r = get(&rig.control("/api/v1/cost/anomalies?since=soon"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 400, "{}", r.text());
    // The cross-check needs a linked gateway: without one it says so (e2e_cost_check has one).
    let r = get(&rig.control("/api/v1/cost/crosscheck"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.json()["detail"].as_str().unwrap().contains("no OpenClaw gateway is linked"), "{}", r.text());
    assert_eq!(get(&rig.control("/api/v1/cost"), &[]).await.status, 401);
    let viewer = rig.token("viewer", "cost-viewer").await;
    let r = get(&rig.control("/api/v1/cost?by=week&since=30d"), &bearer(&viewer)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["totals"]["calls"], 0);
    let r = get(&rig.control("/api/v1/cost/anomalies"), &bearer(&viewer)).await;
    assert_eq!((r.status.as_u16(), r.json()), (200, json!({"items": [], "next_cursor": null})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_the_table_and_json() {
    let rig = rig().await;
    let n = load(&rig).await as u64;
    let api = cost(&rig, "by=model&since=7d", n).await;
    let run = |args: &[&str]| cli(&rig, args);
    let table = run(&["cost", "--by", "model", "--since", "7d"]);
    for r in api["rows"].as_array().unwrap() {
        let line =
            table.lines().find(|l| l.starts_with(r["key"].as_str().unwrap())).unwrap_or_else(|| panic!("{table}"));
        assert!(line.contains(&format!("{:.6}", r["cost_usd"].as_f64().unwrap())), "{line}");
    }
    assert!(table.lines().any(|l| l.starts_with("TOTAL") && l.contains(&n.to_string())), "{table}");
    let json: Value = serde_json::from_str(&run(&["cost", "--by", "model", "--json"])).unwrap();
    assert_eq!(json["totals"], api["totals"]);
}

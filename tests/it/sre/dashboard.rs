//! The Grafana dashboard (`deploy/grafana/clawbutler.json`): importable with the data source
//! as a variable, and every panel's query parses in a real Prometheus and names only metrics
//! a live sidecar serves (or recording rules the shipped rules define).

use std::collections::BTreeSet;

use serde_json::{json, Value};
use testkit::http::post_json;
use testkit::rig::{bearer, Rig, ADMIN};

use super::{families, repo, tool, Prometheus};

fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/clawbutler.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every panel (rows' nested panels included).
fn panels(d: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p.clone());
        out.extend(p["panels"].as_array().cloned().unwrap_or_default());
    }
    out
}

/// A query as Grafana sends it: its variables replaced by values for this rig.
fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$job", "clawbutler")
        .replace("$instance", ".*")
}

/// Names in a query that look like metrics or recording rules.
fn names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("clawbutler_").map(|n| n + i) {
        // Back up over a recording rule's `level:` prefix.
        let mut start = at;
        while start > 0
            && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_' || bytes[start - 1] == b':')
        {
            start -= 1;
        }
        let mut end = at;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_' || bytes[end] == b':') {
            end += 1;
        }
        out.insert(expr[start..end].to_string());
        i = end;
    }
    out
}

#[test]
fn dashboard_uses_a_data_source_variable_everywhere() {
    let d = dashboard();
    assert_eq!(d["uid"], "clawbutler-overview");
    let vars = d["templating"]["list"].as_array().unwrap();
    assert!(vars.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"));
    let ps: Vec<Value> = panels(&d).into_iter().filter(|p| p["type"] != "row").collect();
    assert!(ps.len() >= 20, "{}", ps.len());
    let mut ids = BTreeSet::new();
    for p in &ps {
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id {} twice", p["id"]);
        assert_eq!(p["datasource"]["uid"], "${datasource}", "panel {}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "panel {}", p["title"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_parses_and_names_served_metrics() {
    let test = "every_dashboard_query_parses_and_names_served_metrics";
    let Some(prom_bin) = tool(test, "prometheus") else { return };
    std::env::set_var("CB_TEST_SRE_DASH_GATEWAY_TOKEN", "x");
    let rig = Rig::start(
        "[gateway]\nurl = \"ws://127.0.0.1:9\"\ntoken_env = \"CB_TEST_SRE_DASH_GATEWAY_TOKEN\"\n\
         [[budgets]]\nscope = \"global\"\nwindow = \"daily\"\nlimit_usd = 1.0\n",
    )
    .await;
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &body).await;
    post_json(&rig.control("/api/v1/policies/reload"), &bearer(ADMIN), &json!({})).await;
    let served = families(&rig.metrics().await);
    let recorded = super::rules::recorded();
    let prom = Prometheus::start(&prom_bin, rig.sidecar.control_addr).await;
    // Three scrapes, so rate() has samples to work on.
    prom.wait_for("count_over_time(up{job=\"clawbutler\"}[1m])", 20, |r| !r.is_empty() && super::value(r) >= 3.0).await;

    let mut queried = 0;
    let mut with_data = 0;
    for p in panels(&dashboard()) {
        for t in p["targets"].as_array().cloned().unwrap_or_default() {
            let expr = t["expr"].as_str().unwrap();
            let q = concrete(expr);
            assert!(!q.contains('$'), "panel {}: unknown variable in {expr}", p["title"]);
            let answer = prom.query_raw(&q).await;
            assert_eq!(answer["status"], "success", "panel {}: {q}: {answer}", p["title"]);
            queried += 1;
            if answer["data"]["result"].as_array().is_some_and(|r| !r.is_empty()) {
                with_data += 1;
            }
            for name in names(expr) {
                if name.contains(':') {
                    assert!(recorded.contains(&name), "panel {}: {name} is not a shipped recording rule", p["title"]);
                    continue;
                }
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| served.contains(*f)))
                    .unwrap_or(&name);
                assert!(served.contains(family), "panel {}: {name} is not served by the sidecar", p["title"]);
            }
        }
    }
    assert!(queried >= 30, "{queried}");
    // Gauges answer at once; most panels show data after one scrape of a sidecar that served a call.
    assert!(with_data * 2 >= queried, "only {with_data} of {queried} queries returned data");
}

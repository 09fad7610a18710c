//! Issue 12, hardening of the money path, each class tested as an attacker would try it: the
//! exact reproduction from the issue and at least one variant.
//!
//! - `charge`: budgets charge what was spent (multipliers in the estimate, the real cost
//!   charged even above the reservation, unbounded features visible to the policy, the
//!   overshoot bound measured under concurrency).
//! - `reconcile`: the audit log records exactly what each call was charged; spend equals the
//!   log's sum, under completed, cancelled and timed-out calls.
//! - `meter`: an endless SSE event cannot make the sidecar buffer without bound; a cut stream
//!   delivers every complete event; absurd usage is clamped and audited raw.
//! - `body`: only one JSON object in UTF-8 is forwarded, byte for byte where nothing changed.
//! - `crash`: a call in flight when the real binary is SIGKILLed is closed as
//!   `outcome_unknown` at the next start.

mod body;
mod charge;
pub(crate) mod crash;
mod meter;
mod reconcile;

use std::time::Duration;

use clawbutler::app::Sidecar;
use serde_json::Value;
use testkit::http::get;
use testkit::rig::{bearer, Rig, SidecarConfig, ADMIN};
use testkit::upstream::{ScriptedUpstream, UpstreamOptions};

/// A model whose tokens are dear enough to count: $100 per million input tokens, $1000 per
/// million output tokens ($0.001 each).
pub const PRICES: &str = "[prices.\"metered-model\"]\ninput = 100.0\noutput = 1000.0\n";

/// A daily budget for `agent:<agent>` of `limit` USD.
pub fn agent_budget(agent: &str, limit: f64) -> String {
    format!("[[budgets]]\nscope = \"agent:{agent}\"\nwindow = \"daily\"\nlimit_usd = {limit}\n")
}

/// A sidecar in front of a scripted upstream started with `opts`, with extra config tables
/// (`{base}` in them stands for the upstream's base URL).
pub async fn start(opts: UpstreamOptions, tables: &str) -> Rig {
    let up = ScriptedUpstream::start_with(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let tables = tables.replace("{base}", &up.base_url());
    let cfg = SidecarConfig::new(&dir.path().join("data")).upstreams(&up.base_url()).table(&tables);
    let sidecar = Sidecar::start(cfg.build()).await.unwrap();
    Rig { sidecar, up, dir, cfg }
}

/// Every model_call record of `agent` (starts included), oldest first.
pub async fn records(rig: &Rig, agent: &str) -> Vec<Value> {
    let url = rig.control(&format!("/api/v1/audit?agent={agent}&kind=model_call&limit=1000"));
    let r = get(&url, &bearer(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut items = r.json()["items"].as_array().cloned().unwrap_or_default();
    items.reverse();
    items
}

/// The end records of `agent`'s forwarded calls (neither starts nor refusals), once there are
/// `n` and every started call has one; waits up to 10 s.
pub async fn ended_calls(rig: &Rig, agent: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let all = records(rig, agent).await;
        // A call running past a group-commit window also has a `started` record: each one
        // must be closed by its end record.
        let starts: Vec<&Value> = all.iter().filter(|r| r["outcome"] == "started").map(|r| &r["decision_id"]).collect();
        let ends: Vec<Value> = all
            .iter()
            .filter(|r| r["outcome"] != "started" && r["action"] == "allow" && r["details"]["status"].is_u64())
            .cloned()
            .collect();
        let closed = starts.iter().all(|id| ends.iter().any(|e| &&e["decision_id"] == id));
        if closed && ends.len() >= n {
            return ends;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("calls of {agent} never all ended: {:#?}", records(rig, agent).await);
}

/// A budget once no reservation is held (every call settled).
pub async fn settled(rig: &Rig, id: &str) -> Value {
    let mut b = Value::Null;
    for _ in 0..200 {
        b = get(&rig.control(&format!("/api/v1/budgets/{id}")), &bearer(ADMIN)).await.json();
        if b["reserved_usd"].as_f64() == Some(0.0) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("budget {id} never settled: {b}");
}

/// The sum of `charged_usd` over records.
pub fn charged(recs: &[Value]) -> f64 {
    recs.iter().filter_map(|r| r["charged_usd"].as_f64()).sum()
}

/// A metric sample's value from the Prometheus text.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {series} in metrics"))
}

//! A real Prometheus scraping a running sidecar under load: the recording rules return what
//! the load produced, alerts fire for conditions produced for real (an open breaker, a budget
//! past its warning level, approvals waiting past half their TTL), and `promtool check
//! metrics` finds nothing to say about a live scrape.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, Rig, ADMIN};

use super::{families, tool, value, Prometheus};

/// $0.001 per output token, input free (as in tests/it/budgets.rs).
const PRICES: &str = "[prices.\"metered-model\"]\ninput = 0.0\noutput = 1000.0\n";

fn call(model: &str, max_tokens: u64) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "stream": false,
           "messages": [{"role": "user", "content": "count"}]})
}

/// A call's status and the action the sidecar says it took (a policy denial answers 200 with
/// a refusal message in the model's reply shape, and `x-clawbutler-action: deny`).
async fn send(rig: &Rig, agent: &str, model: &str, max_tokens: u64) -> (u16, &'static str) {
    let r = post_json(&rig.url(&format!("/a/{agent}/fake/v1/chat/completions")), &[], &call(model, max_tokens)).await;
    let action = match r.header("x-clawbutler-action") {
        None => "allow",
        Some("deny") => "deny",
        Some(other) => panic!("unexpected action {other}"),
    };
    (r.status.as_u16(), action)
}

/// Within `tol` (a fraction) of `want`.
fn near(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= want.abs() * tol
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_prometheus_records_the_load_and_fires_alerts() {
    let test = "real_prometheus_records_the_load_and_fires_alerts";
    let Some(prom_bin) = tool(test, "prometheus") else { return };
    let probe = Rig::start(PRICES).await;
    let k = post_json(&probe.direct("/v1/chat/completions"), &[], &call("metered-model", 100)).await.json()["usage"]
        ["completion_tokens"]
        .as_u64()
        .unwrap();
    drop(probe);
    let usd = |calls: u64| calls as f64 * k as f64 * 0.001;
    // main: warns at 10 % of 100 calls' worth; spender: its breaker opens after 2 calls.
    let budgets = format!(
        "{PRICES}[[budgets]]\nscope = \"agent:main\"\nwindow = \"daily\"\nlimit_usd = {}\nwarn_at = 0.1\n\
         [[budgets]]\nscope = \"agent:spender\"\nwindow = \"daily\"\nlimit_usd = {}\n",
        usd(100),
        usd(2)
    );
    let rig = Rig::builder()
        .hold_rule()
        .policies("model_allowlist = [\"metered-model\", \"needs-approval-1\"]\nhold_ttl_s = 8")
        .table(&budgets)
        .start()
        .await;

    // Phase 1: one call of each action, so every series exists before Prometheus's first
    // scrape (a counter first seen at 1 has no increase to show for that 1).
    assert_eq!(send(&rig, "main", "metered-model", k).await, (200, "allow"));
    assert_eq!(send(&rig, "main", "not-allowed", k).await, (200, "deny"));
    let prom = Prometheus::start(&prom_bin, rig.sidecar.control_addr).await;
    prom.wait_for("up{job=\"clawbutler\"}", 20, |r| !r.is_empty() && super::value(r) == 1.0).await;
    prom.wait_for("count_over_time(clawbutler_requests_total{action=\"deny\"}[1m])", 20, |r| {
        !r.is_empty() && value(r) >= 2.0
    })
    .await;

    // Two calls held for a human: the backlog recording rule sees both, and once they have
    // waited half their 8 s TTL the alert fires.
    let held = [rig.call("waiter", "needs-approval-1", "one"), rig.call("waiter", "needs-approval-1", "two")];
    let backlog = prom.wait_for("job:clawbutler_approvals_pending:sum", 20, |r| !r.is_empty() && value(r) == 2.0).await;
    assert_eq!(backlog[0]["metric"]["job"], "clawbutler");

    // Phase 2: 20 more allowed calls and 10 more denied.
    for _ in 0..20 {
        assert_eq!(send(&rig, "main", "metered-model", k).await, (200, "allow"));
    }
    for _ in 0..10 {
        assert_eq!(send(&rig, "main", "not-allowed", k).await, (200, "deny"));
    }
    // The spender's breaker: two calls fit, the third is refused and opens it.
    assert_eq!(send(&rig, "spender", "metered-model", k).await, (200, "allow"));
    assert_eq!(send(&rig, "spender", "metered-model", k).await, (200, "allow"));
    assert_eq!(send(&rig, "spender", "metered-model", k).await.0, 429);

    let alert = prom.wait_firing("ClawButlerApprovalPastHalfTtl", &[("job", "clawbutler")], 20).await;
    assert_eq!(alert["value"].as_str().map(|v| v.parse::<f64>().unwrap()), Some(2.0), "{alert}");
    assert_eq!(alert["annotations"]["runbook_url"], "docs/operations.md#clawbutlerapprovalpasthalfttl");

    let breaker =
        prom.wait_firing("ClawButlerBudgetBreakerOpen", &[("scope", "agent:spender"), ("window", "daily")], 20).await;
    assert_eq!(breaker["labels"]["severity"], "warning");
    let warn = prom.wait_firing("ClawButlerBudgetAtWarn", &[("scope", "agent:main")], 20).await;
    assert_eq!(warn["labels"]["severity"], "info");
    // The spender is past its warning level too, but its open breaker speaks instead.
    let spender_warns = prom
        .alerts()
        .await
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == "ClawButlerBudgetAtWarn" && a["labels"]["scope"] == "agent:spender")
        .count();
    assert_eq!(spender_warns, 0);

    // The held calls expire at 8 s: denied.
    for h in held {
        let r = h.await.unwrap();
        assert_eq!(r.header("x-clawbutler-action"), Some("deny"), "{}", r.text());
    }

    // Decisions by action, as the load produced them: wait until the last calls are scraped
    // and the rules evaluated, then compare. rate() over 5 m of a series younger than that
    // is its increase / 300 s, extrapolated by at most about one scrape interval at each end.
    prom.wait_for("sum(clawbutler_requests_total{route=\"chat_completions\", action=\"deny\"})", 20, |r| {
        !r.is_empty() && value(r) == 14.0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rate = |action: &'static str| {
        let prom = &prom;
        async move {
            let r = prom
                .query(&format!(
                    "route_action:clawbutler_requests:rate5m{{route=\"chat_completions\", action=\"{action}\"}}"
                ))
                .await;
            value(&r) * 300.0
        }
    };
    let (allowed, denied) = (rate("allow").await, rate("deny").await);
    // Allowed: main 20 (+1 before the first scrape), spender 2. Denied: main 10 (+1), the
    // spender's refused call, the two expired holds.
    assert!(near(allowed, 22.0, 0.25), "allowed calls per the recording rule: {allowed}");
    assert!(near(denied, 13.0, 0.25), "denied calls per the recording rule: {denied}");
    assert!(near(allowed / denied, 22.0 / 13.0, 0.15), "allow/deny ratio: {allowed} / {denied}");
    let r = prom.query("kind_action:clawbutler_policy_decisions:rate5m{kind=\"model_call\", action=\"deny\"}").await;
    assert!(value(&r) > 0.0, "{r:?}");

    // Spend per budget: the recorded share of the limit is exactly what the API reports.
    let api = get(&rig.control("/api/v1/budgets/agent:main@daily"), &bearer(ADMIN)).await.json();
    let share = api["spent_usd"].as_f64().unwrap() / api["limit_usd"].as_f64().unwrap();
    assert!(near(share, 0.21, 1e-9), "{api}");
    prom.wait_for("scope_window:clawbutler_budget_used:ratio{scope=\"agent:main\"}", 10, |r| {
        !r.is_empty() && near(value(r), share, 1e-9)
    })
    .await;

    // The backlog empties once the held calls have expired.
    prom.wait_for("job:clawbutler_approvals_pending:sum", 20, |r| !r.is_empty() && value(r) == 0.0).await;
    assert!(prom.query("ALERTS{alertname=\"ClawButlerDown\"}").await.is_empty());
}

#[tokio::test]
async fn promtool_check_metrics_is_clean_on_a_live_scrape() {
    let Some(promtool) = tool("promtool_check_metrics_is_clean_on_a_live_scrape", "promtool") else { return };
    // Every family present: a gateway link (to nothing), a budget, a call, a reload.
    std::env::set_var("CB_TEST_SRE_GATEWAY_TOKEN", "x");
    let rig = Rig::start(
        "[gateway]\nurl = \"ws://127.0.0.1:9\"\ntoken_env = \"CB_TEST_SRE_GATEWAY_TOKEN\"\n\
         [[budgets]]\nscope = \"global\"\nwindow = \"daily\"\nlimit_usd = 1.0\n",
    )
    .await;
    post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &call("gpt-4o-mini", 10)).await;
    post_json(&rig.control("/api/v1/policies/reload"), &bearer(ADMIN), &json!({})).await;
    let scrape = rig.metrics().await;
    assert!(families(&scrape).len() >= 30, "{scrape}");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "promtool check metrics:\n{text}");
}

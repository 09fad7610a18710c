//! Reports: the audit trail of a turn, and OpenClaw's usage against the sidecar's metering.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, chat, ADMIN};

use super::{agent_run, tool_call, Plugin, TRACE};

/// A model call of `main` through the proxy on trace `trace`; returns its end record.
async fn model_call(p: &Plugin, trace: &str, prompt: &str) -> Value {
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let r = post_json(
        &p.url("/a/main/fake/v1/chat/completions"),
        &[("traceparent", tp.as_str())],
        &chat("gpt-4o-mini", prompt),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = get(&p.rig.control(&format!("/api/v1/audit/trace/{trace}")), &bearer(ADMIN)).await.json();
        let end = t["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "model_call" && r["outcome"] == "completed")
            .cloned();
        if let Some(e) = end {
            return e;
        }
        assert!(Instant::now() < deadline, "no end record on {trace}: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `llm_output` as the plugin reports it, with OpenClaw's own token split (cached apart).
fn llm_output(run: &str, trace: &str, input: u64, output: u64, cost: f64) -> Value {
    json!({"version": 1, "kind": "llm_output", "agentId": "main", "sessionKey": "agent:main:main", "runId": run,
        "provider": "cb-main", "model": "gpt-4o-mini", "resolvedRef": "cb-main/gpt-4o-mini", "harnessId": "openclaw",
        "usage": {"input": input, "output": output, "cacheRead": 0, "cacheWrite": 0, "total": input + output,
                  "cost": {"total": cost}},
        "stopReason": "stop", "assistantTexts": 1, "trace": {"traceId": trace}})
}

async fn usage_check(p: &Plugin, trace: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = get(&p.rig.control(&format!("/api/v1/audit/trace/{trace}")), &bearer(ADMIN)).await.json();
        if !t["usage_check"].is_null() {
            return t;
        }
        assert!(Instant::now() < deadline, "no usage check on {trace}: {t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_turns_reports_land_on_its_trace_and_its_cost_is_cross_checked() {
    let p = Plugin::start("", "").await;
    assert_eq!(p.decide(&agent_run("main", "run-r")).await.json()["action"], "allow");
    let end = model_call(&p, TRACE, "hello").await;
    let (input, output, cost) = (
        end["usage"]["input_tokens"].as_u64().unwrap(),
        end["usage"]["output_tokens"].as_u64().unwrap(),
        end["cost_usd"].as_f64().unwrap(),
    );
    assert!(cost > 0.0, "gpt-4o-mini is priced: {end}");
    // The tool call, then what OpenClaw reports afterwards (no trace on these: the gate knows the run's).
    assert_eq!(p.decide(&tool_call("read", json!({"path": "a.md"}), "run-r", "call1")).await.json()["action"], "allow");
    let base = |kind: &str| json!({"version": 1, "kind": kind, "agentId": "main", "sessionKey": "agent:main:main", "runId": "run-r"});
    let mut tool_result = base("tool_result");
    tool_result["toolCallId"] = json!("call1");
    tool_result["toolName"] = json!("read");
    tool_result["durationMs"] = json!(45);
    tool_result["outcome"] = json!("ok");
    tool_result["params"] = json!({"path": "a.md"});
    tool_result["result"] = json!({"content": [{"type": "text", "text": "x".repeat(5000)}]});
    assert_eq!(p.report(&tool_result).await.status, 204);
    let mut mc = base("model_call");
    mc["callId"] = json!("run-r:model:1");
    mc["provider"] = json!("cb-main");
    mc["model"] = json!("gpt-4o-mini");
    mc["durationMs"] = json!(80);
    mc["outcome"] = json!("completed");
    assert_eq!(p.report(&mc).await.status, 204);
    assert_eq!(p.report(&llm_output("run-r", TRACE, input, output, cost)).await.status, 204);

    let t = usage_check(&p, TRACE).await;
    let check = &t["usage_check"];
    assert_eq!(check["match"], true, "{check}");
    assert_eq!(check["sidecar"]["model_calls"], 1);
    assert!(check["reason"].as_str().unwrap().contains("matches"), "{check}");
    // The trace shows the turn in order: the turn check, the model call, the tool decision, the
    // tool's outcome, OpenClaw's model-call and usage reports, the check.
    let order: Vec<String> = t["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] != "started")
        .map(|r| {
            format!(
                "{}:{}",
                r["kind"].as_str().unwrap(),
                r["details"]["kind"].as_str().unwrap_or(r["outcome"].as_str().unwrap())
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            "plugin:agent_run",
            "model_call:completed",
            "plugin:tool_call",
            "plugin:tool_result",
            "plugin:model_call",
            "plugin:llm_output",
            "plugin:usage_check"
        ],
        "{t}"
    );
    let tr = t["items"].as_array().unwrap().iter().find(|r| r["details"]["kind"] == "tool_result").unwrap();
    assert_eq!(tr["outcome"], "completed");
    assert!(tr["latency_ms"].as_f64().unwrap() <= 45.0, "the gate's own time is taken out: {tr}");
    assert!(tr["subject"]["result"].to_string().contains("characters in all"), "results are cut in records");
    let m = p.rig.metrics().await;
    assert!(m.contains("clawbutler_plugin_usage_checks_total{result=\"match\"} 1"), "{m}");
    assert!(m.contains("clawbutler_plugin_reports_total{kind=\"llm_output\"} 1"), "{m}");
}

#[tokio::test]
async fn a_cost_that_disagrees_or_a_run_the_sidecar_never_saw_is_a_mismatch() {
    let p = Plugin::start("", "").await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let end = model_call(&p, trace, "hello again").await;
    let (input, output, cost) = (
        end["usage"]["input_tokens"].as_u64().unwrap(),
        end["usage"]["output_tokens"].as_u64().unwrap(),
        end["cost_usd"].as_f64().unwrap(),
    );
    // OpenClaw priced the run at twice the sidecar's price.
    assert_eq!(p.report(&llm_output("run-m", trace, input, output, cost * 2.0)).await.status, 204);
    let check = usage_check(&p, trace).await["usage_check"].clone();
    assert_eq!(check["match"], false, "{check}");
    assert!(check["reason"].as_str().unwrap().contains("cost: OpenClaw"), "{check}");
    assert!((check["difference_usd"].as_f64().unwrap() - cost).abs() < 1e-9, "{check}");
    // A run whose model calls bypassed the sidecar.
    let unseen = "11111111111111111111111111111111";
    assert_eq!(p.report(&llm_output("run-u", unseen, 100, 10, 0.001)).await.status, 204);
    let check = usage_check(&p, unseen).await["usage_check"].clone();
    assert_eq!(check["match"], false);
    assert!(check["reason"].as_str().unwrap().contains("did not go through the sidecar"), "{check}");
    let recs = p.plugin_records("usage_mismatch", 2).await;
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(p.rig.metrics().await.contains("clawbutler_plugin_usage_checks_total{result=\"mismatch\"} 2"));
}

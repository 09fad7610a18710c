//! OpenTelemetry traces (`[telemetry]`, docs/telemetry.md): the spans of real calls through
//! the rig reach a loopback OTLP/HTTP receiver that decodes the protobuf; their parent/child
//! structure, the caller's trace, the `traceparent` sent upstream and the attributes are
//! checked. A collector that never answers must not hold calls up, and its drops are counted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::http::post_json;
use testkit::rig::{chat, Rig, ADMIN};

use super::otlp::{Got, Receiver};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "the secret plan is in the drawer";

fn telemetry(r: &Receiver, extra: &str) -> String {
    format!("[telemetry]\nendpoint = \"http://{}\"\nbatch_delay_ms = 20\n{extra}\n", r.addr)
}

fn by_name(spans: &[Got]) -> BTreeMap<String, Got> {
    spans.iter().map(|g| (g.span.name.clone(), g.clone())).collect()
}

/// Wait (up to 10 s) until `series` on the rig's `/metrics` satisfies `ok`; returns its value.
async fn metric_until(rig: &Rig, series: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let mut v = 0.0;
    for _ in 0..100 {
        v = metric(&rig.metrics().await, series);
        if ok(v) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    v
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{series} missing from\n{text}"))
}

#[tokio::test]
async fn a_calls_spans_continue_the_callers_trace_with_policy_budget_and_upstream_children() {
    let rx = Receiver::start(false).await;
    let rig = Rig::start(&format!(
        "{}[[budgets]]\nscope = \"global\"\nwindow = \"daily\"\nlimit_usd = 100.0\n",
        telemetry(&rx, "service_name = \"cb-test\"")
    ))
    .await;
    let traceparent = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let r = post_json(
        &rig.url("/a/main/fake/v1/chat/completions"),
        &[("traceparent", &traceparent)],
        &chat("gpt-4o-mini", PROMPT),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-clawbutler-trace-id"), Some(TRACE));
    rig.sidecar.telemetry.flush().await;
    let spans = rx.trace(TRACE, "call").await;
    let s = by_name(&spans);
    for name in ["call", "policy", "budget.reserve", "upstream", "budget.settle"] {
        assert!(s.contains_key(name), "span {name} missing: {spans:#?}");
    }
    assert_eq!(spans.len(), 5, "{spans:#?}");
    let call = &s["call"];
    // The caller's span is the parent: the trace is continued, not restarted.
    assert_eq!(call.parent(), CALLER_SPAN);
    assert_eq!(call.service, "cb-test");
    for name in ["policy", "budget.reserve", "upstream", "budget.settle"] {
        assert_eq!(s[name].parent(), call.span_id(), "{name} is a child of the call");
    }
    assert_eq!(call.attr("gen_ai.agent.name").as_deref(), Some("main"));
    assert_eq!(call.attr("gen_ai.request.model").as_deref(), Some("gpt-4o-mini"));
    assert_eq!(call.attr("clawbutler.route").as_deref(), Some("chat_completions"));
    assert_eq!(call.attr("clawbutler.upstream").as_deref(), Some("fake"));
    assert_eq!(call.attr("clawbutler.action").as_deref(), Some("allow"));
    assert_eq!(call.attr("clawbutler.outcome").as_deref(), Some("completed"));
    assert_eq!(call.attr("http.response.status_code").as_deref(), Some("200"));
    let usage = rig.up.requests()[0].usage.unwrap();
    assert_eq!(call.attr("gen_ai.usage.input_tokens"), Some(usage.input_tokens.to_string()));
    assert_eq!(call.attr("gen_ai.usage.output_tokens"), Some(usage.output_tokens.to_string()));
    assert_eq!(s["policy"].attr("clawbutler.decision.action").as_deref(), Some("allow"));
    assert_eq!(s["budget.reserve"].attr("clawbutler.budget.reserved").as_deref(), Some("true"));
    assert!(s["budget.settle"].attr("clawbutler.budget.charged_usd").is_some());
    assert_eq!(s["upstream"].attr("http.response.status_code").as_deref(), Some("200"));
    // Client span kind for the upstream request, server for the call.
    assert_eq!(s["upstream"].span.kind, 3);
    assert_eq!(call.span.kind, 2);
    // The upstream was told the upstream span is its parent, in the same trace.
    let sent = rig.up.requests()[0].headers["traceparent"].to_str().unwrap().to_string();
    assert_eq!(sent, format!("00-{TRACE}-{}-01", s["upstream"].span_id()));
    // The audit record names the same trace.
    let rec = rig.model_calls("main", 1).await;
    assert_eq!(rec[0]["trace_id"], TRACE);
    // Nothing of the prompt is in any span.
    let dump = format!("{spans:?}");
    assert!(!dump.contains("secret plan"), "prompt text leaked into spans");
    assert_eq!(metric_until(&rig, "clawbutler_trace_spans_exported_total ", |v| v >= 5.0).await, 5.0);
    let m = rig.metrics().await;
    for reason in ["queue_full", "export_failed", "export_timeout"] {
        assert_eq!(metric(&m, &format!("clawbutler_trace_spans_dropped_total{{reason=\"{reason}\"}} ")), 0.0);
    }
}

#[tokio::test]
async fn a_held_call_has_a_hold_span_with_its_wait_and_a_new_trace_matches_the_response() {
    let rx = Receiver::start(false).await;
    let rig = Rig::builder().hold_rule().table(&telemetry(&rx, "")).start().await;
    let url = rig.url("/a/main/fake/v1/chat/completions");
    let call = tokio::spawn(async move { post_json(&url, &[], &chat("needs-approval-1", "hi")).await });
    let pending = rig.wait_pending("main", 1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let d = rig
        .decide(
            ADMIN,
            pending[0]["id"].as_str().unwrap(),
            &json!({"decision": "allow-once", "expected_version": 1}),
            None,
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.text());
    let r = call.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // No traceparent: the sidecar's new trace id is the one the response (and logs, audit) carry.
    let trace = r.header("x-clawbutler-trace-id").unwrap().to_string();
    rig.sidecar.telemetry.flush().await;
    let spans = rx.trace(&trace, "call").await;
    let s = by_name(&spans);
    assert!(s["call"].span.parent_span_id.is_empty(), "a new trace has a root call span");
    let hold = &s["hold"];
    assert_eq!(hold.parent(), s["call"].span_id());
    assert_eq!(hold.attr("clawbutler.approval.id").as_deref(), pending[0]["id"].as_str());
    assert_eq!(hold.attr("clawbutler.approval.allowed").as_deref(), Some("true"));
    let wait: f64 = hold.attr("clawbutler.hold.wait_seconds").unwrap().parse().unwrap();
    assert!(wait >= 0.1, "the hold span records the human's wait: {wait}");
    assert_eq!(s["policy"].attr("clawbutler.decision.action").as_deref(), Some("hold"));
    assert_eq!(s["policy"].attr("clawbutler.decision.rule").as_deref(), Some("test.model_hold"));
    assert!(s.contains_key("upstream"));
}

#[tokio::test]
async fn a_collector_that_never_answers_does_not_hold_calls_up_and_drops_are_counted() {
    let rx = Receiver::start(true).await;
    // Export timeout 5 s: a call that waited for the collector even once would take that long.
    let rig = Rig::start(&telemetry(&rx, "export_timeout_ms = 5000\nmax_queue_spans = 8\nmax_batch_spans = 4")).await;
    // Each call bounded on its own (a total over 20 would also count a busy machine's stalls).
    for i in 0..20 {
        let t0 = Instant::now();
        let r =
            post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat("gpt-4o-mini", &format!("n{i}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(5), "call {i} took {took:?}: it waited for the collector");
    }
    // 20 calls x 3 spans (call, policy, upstream), a queue of 8, one batch stuck in the
    // hung export: the rest is dropped and counted.
    let full = metric_until(&rig, "clawbutler_trace_spans_dropped_total{reason=\"queue_full\"} ", |v| v >= 40.0).await;
    assert!(full >= 40.0, "queue_full drops {full}");
    assert!(rx.requests() >= 1, "the exporter did try the collector");
    // The stuck batch is dropped at the export timeout and counted.
    let timed_out =
        metric_until(&rig, "clawbutler_trace_spans_dropped_total{reason=\"export_timeout\"} ", |v| v >= 1.0).await;
    assert!(timed_out >= 1.0, "export_timeout drops {timed_out}");
    assert_eq!(metric(&rig.metrics().await, "clawbutler_trace_spans_exported_total "), 0.0);
    assert!(rx.spans().is_empty());
}

#[tokio::test]
async fn telemetry_settings_are_checked_and_off_by_default() {
    let cfg = clawbutler::config::Config::from_toml_str("").unwrap();
    assert!(cfg.telemetry.endpoint.is_none());
    for (toml, key) in [
        ("[telemetry]\nendpoint = \"udp://x:1\"", "telemetry.endpoint"),
        ("[telemetry]\nendpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 2.0", "telemetry.sample_ratio"),
        ("[telemetry]\nmax_queue_spans = 0", "telemetry.max_queue_spans"),
    ] {
        let e = clawbutler::config::Config::from_toml_str(toml).unwrap_err().to_string();
        assert!(e.contains(key), "{toml}: {e}");
    }
    let e = clawbutler::config::Config::from_toml_str("[telemetry]\nendpont = \"x\"").unwrap_err().to_string();
    assert!(e.contains("endpont"), "{e}");
    // Traces off: no span is exported anywhere, the counters are there at zero.
    let rig = Rig::start("").await;
    let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat("gpt-4o-mini", "x")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!rig.sidecar.telemetry.enabled());
    assert!(rig.up.requests()[0].headers.get("traceparent").is_none());
    let m = rig.metrics().await;
    assert_eq!(metric(&m, "clawbutler_trace_spans_exported_total "), 0.0);
}

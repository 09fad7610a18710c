//! Metering against a misbehaving upstream: an endless SSE event (the reproduction: one
//! unterminated 400 MB event took the sidecar from 64 MB to 910 MB RSS), a stream cut in the
//! middle (the last complete event was lost in 11 of 20 runs), and absurd usage numbers
//! (`u64::MAX` audited as $13.8 trillion).

use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::{post_json, post_json_streaming, StreamingResponse};
use testkit::rig::Rig;
use testkit::upstream::UpstreamOptions;

use super::{agent_budget, ended_calls, metric, settled, start, PRICES};

/// Peak resident memory of this test process (nextest runs each test in its own process).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Read a response to its end (or its error), counting bytes and keeping at most `keep`.
async fn drain(mut s: StreamingResponse, keep: usize) -> (u64, Vec<u8>, Option<String>) {
    let (mut n, mut kept) = (0u64, Vec::new());
    loop {
        match s.try_next_chunk().await {
            Ok(Some(c)) => {
                n += c.len() as u64;
                if kept.len() < keep {
                    kept.extend_from_slice(&c[..c.len().min(keep - kept.len())]);
                }
            }
            Ok(None) => return (n, kept, None),
            Err(e) => return (n, kept, Some(e)),
        }
    }
}

#[tokio::test]
async fn an_endless_sse_event_passes_through_undecoded_in_bounded_memory() {
    let tables = format!("{PRICES}{}[proxy]\nmax_sse_event_bytes = 65536\n", agent_budget("main", 100.0));
    let rig = start(UpstreamOptions::default(), &tables).await;
    let before = peak_rss_kib();
    // The reproduction: one 400 MiB event that never ends, to a client that asked for usage.
    let body = json!({"model": "metered-model", "max_tokens": 5, "stream": true, "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "HUGE_EVENT:400"}]});
    let s = post_json_streaming(&rig.url("/a/main/fake/v1/chat/completions"), &[], &body).await;
    assert_eq!(s.status, 200);
    let (n, head, err) = drain(s, 4096).await;
    assert_eq!(err, None);
    let first_event = head.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    assert_eq!(&head[first_event..first_event + 14], b"data: {\"pad\":\"");
    assert_eq!(n, (first_event + 14) as u64 + 400 * 1024 * 1024, "every byte of the event passed through");
    let grew_mib = (peak_rss_kib() - before) / 1024;
    eprintln!("400 MiB event through the sidecar: peak RSS grew {grew_mib} MiB");
    assert!(grew_mib < 100, "the sidecar buffered the event: peak RSS grew {grew_mib} MiB");

    // Variant: a client that did not ask for usage (the sidecar rewrites that stream).
    let mut body = body;
    body.as_object_mut().unwrap().remove("stream_options");
    body["messages"][0]["content"] = json!("HUGE_EVENT:16");
    let s = post_json_streaming(&rig.url("/a/main/fake/v1/chat/completions"), &[], &body).await;
    let (n, _, err) = drain(s, 0).await;
    assert_eq!(err, None);
    assert!(n > 16 * 1024 * 1024, "{n}");

    // The cost is unknown, audited as such, and the budget is charged the reservation.
    let b = settled(&rig, "agent:main@daily").await;
    let ends = ended_calls(&rig, "main", 2).await;
    assert_eq!(ends.len(), 2);
    for r in &ends {
        assert_eq!(r["details"]["undecoded"], "sse_event_too_large", "{r}");
        assert!(r["cost_usd"].is_null(), "{r}");
        assert_eq!(r["details"]["charge"], "reservation_cost_unknown");
        assert_eq!(r["charged_usd"], r["details"]["reserved_usd"]);
    }
    assert!((super::charged(&ends) - b["spent_usd"].as_f64().unwrap()).abs() < 1e-9);
    let m = rig.metrics().await;
    assert_eq!(metric(&m, "clawbutler_meter_undecoded_total{reason=\"sse_event_too_large\"}"), 2.0);
}

/// The SSE events of a stream's text: `(complete events, trailing partial bytes)`.
fn events(text: &str) -> (Vec<String>, String) {
    let mut parts: Vec<String> = text.split_inclusive("\n\n").map(str::to_string).collect();
    let partial = match parts.last() {
        Some(p) if !p.ends_with("\n\n") => parts.pop().unwrap_or_default(),
        _ => String::new(),
    };
    (parts, partial)
}

/// The data of an event, as JSON.
fn data(ev: &str) -> Value {
    let d: String = ev.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    serde_json::from_str(&d).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {ev:?}"))
}

/// One streamed call of each dialect, cut by the upstream after `k` events.
fn cut_call(variant: usize, k: usize) -> (&'static str, &'static str, Value) {
    let prompt = format!("CUT_AFTER:{k} tell me more words please");
    let msgs = json!([{"role": "user", "content": prompt}]);
    match variant % 4 {
        0 => (
            "/a/main/fake/v1/chat/completions",
            "/v1/chat/completions",
            json!({"model": "metered-model", "max_tokens": 50, "stream": true, "stream_options": {"include_usage": true}, "messages": msgs}),
        ),
        1 => (
            "/a/main/fake/v1/chat/completions",
            "",
            json!({"model": "metered-model", "max_tokens": 50, "stream": true, "messages": msgs}),
        ),
        2 => (
            "/a/main/anth/v1/messages",
            "/v1/messages",
            json!({"model": "metered-model", "max_tokens": 50, "stream": true, "messages": msgs}),
        ),
        _ => (
            "/a/main/fake/v1/responses",
            "/v1/responses",
            json!({"model": "metered-model", "max_output_tokens": 50, "stream": true, "input": prompt}),
        ),
    }
}

#[tokio::test]
async fn a_cut_stream_delivers_every_complete_event_every_time() {
    let rig = start(UpstreamOptions::default(), &format!("{PRICES}{}", agent_budget("main", 100.0))).await;
    let k = 4;
    for run in 0..50 {
        let (via, direct, body) = cut_call(run, k);
        let s = post_json_streaming(&rig.url(via), &[], &body).await;
        assert_eq!(s.status, 200);
        let (_, bytes, err) = drain(s, usize::MAX).await;
        assert_eq!(err, None, "run {run}: the stream must end cleanly, with an error event");
        let text = String::from_utf8(bytes).unwrap();
        let (evs, partial) = events(&text);
        assert_eq!(partial, "", "run {run}: half an event reached the client: {text}");
        assert_eq!(evs.len(), k + 1, "run {run}: {text}");
        let last = data(&evs[k]);
        assert!(evs[k].starts_with("event: error\n"), "run {run}: {}", evs[k]);
        assert_eq!(last["error"]["type"], "upstream_stream_error", "run {run}: {last}");
        evs[..k].iter().for_each(|e| drop(data(e)));
        if !direct.is_empty() {
            // Exactly the events the upstream sent before the cut, byte for byte.
            let d = post_json_streaming(&rig.direct(direct), &[], &body).await;
            let (_, raw, err) = drain(d, usize::MAX).await;
            assert!(err.is_some(), "the scripted upstream cuts the connection");
            let (want, cut) = events(&String::from_utf8(raw).unwrap());
            assert!(!cut.is_empty());
            assert_eq!(evs[..k], want[..], "run {run}");
        }
    }
    // The upstream's cut is recorded; the cost is unknown, so the reservation is charged.
    let ends = ended_calls(&rig, "main", 50).await;
    assert_eq!(ends.len(), 50);
    for r in &ends {
        assert_eq!(r["outcome"], "upstream_error", "{r}");
        assert_eq!(r["details"]["charge"], "reservation_cost_unknown", "{r}");
    }
    // Variant: the upstream goes silent instead; the idle timeout ends the stream the same way.
    let opts = UpstreamOptions { slow_interval: Duration::from_secs(5), ..UpstreamOptions::default() };
    let rig = start(opts, "[proxy]\nstream_idle_timeout_ms = 300\n").await;
    let body = json!({"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "SLOW"}]});
    let s = post_json_streaming(&rig.url("/a/main/fake/v1/chat/completions"), &[], &body).await;
    let (_, bytes, err) = drain(s, usize::MAX).await;
    assert_eq!(err, None);
    let (evs, partial) = events(&String::from_utf8(bytes).unwrap());
    assert_eq!(partial, "");
    assert_eq!(data(&evs[0])["choices"][0]["delta"]["role"], "assistant");
    assert!(evs.last().unwrap().contains("sent nothing for"), "{evs:?}");
    let end = &ended_calls(&rig, "main", 1).await[0];
    assert_eq!(end["outcome"], "stream_idle_timeout");
}

#[tokio::test]
async fn absurd_usage_is_clamped_flagged_and_audited_raw() {
    let rig: Rig = start(UpstreamOptions::default(), &agent_budget("main", 10.0)).await;
    // The reproduction: usage of u64::MAX prompt tokens (and -5 completion tokens).
    let body =
        json!({"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "ABSURD_USAGE"}]});
    let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["usage"]["prompt_tokens"].as_u64(), Some(u64::MAX), "the client gets the reply untouched");
    let end = &ended_calls(&rig, "main", 1).await[0];
    assert_eq!(end["usage"]["input_tokens"], 100_000_000, "clamped: {end}");
    assert_eq!(end["usage"]["output_tokens"], 0);
    let raw = &end["details"]["usage_invalid"];
    assert_eq!(raw["prompt_tokens"].as_u64(), Some(u64::MAX), "{end}");
    assert_eq!(raw["completion_tokens"].as_i64(), Some(-5));
    // 100M tokens of gpt-4o-mini at $0.15 per million: $15, not $13.8 trillion.
    assert!((end["cost_usd"].as_f64().unwrap() - 15.0).abs() < 1e-9, "{end}");
    let b = settled(&rig, "agent:main@daily").await;
    assert_eq!(b["spent_usd"], end["charged_usd"]);
    assert_eq!(b["open"], true, "fail closed: a broken report stops the agent's spending");
    // Variant: a streamed Anthropic reply with u64::MAX input and negative cache and output
    // counts, for an agent without a budget.
    let body = json!({"model": "claude-haiku-4-5", "max_tokens": 5, "stream": true,
                      "messages": [{"role": "user", "content": "ABSURD_USAGE"}]});
    let r = post_json(&rig.url("/a/claude/anth/v1/messages"), &[], &body).await;
    assert_eq!(r.status, 200);
    let end = &ended_calls(&rig, "claude", 1).await[0];
    assert_eq!(end["details"]["usage_invalid"]["input_tokens"].as_u64(), Some(u64::MAX), "{end}");
    assert_eq!(end["details"]["usage_invalid"]["cache_creation_input_tokens"].as_i64(), Some(-1));
    assert!(end["cost_usd"].as_f64().unwrap() <= 100_000_000.0 * 5.0 / 1e6, "{end}");
    let m = rig.metrics().await;
    assert_eq!(metric(&m, "clawbutler_meter_undecoded_total{reason=\"invalid_usage\"}"), 2.0);
}

//! Load shedding on the data listener (`[proxy] max_in_flight`): beyond the limit a call is
//! refused at once with 503 + `Retry-After` in the caller's own error shape, counted in
//! `clawbutler_shed_calls_total`; the calls already in flight complete untouched, and once
//! they have, calls pass again.

use std::time::Duration;

use clawbutler::app::Sidecar;
use serde_json::{json, Value};
use testkit::http::{get, post_json, post_json_streaming};
use testkit::rig::SidecarConfig;
use testkit::upstream::{ScriptedUpstream, UpstreamOptions};

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "max_tokens": 64, "stream": stream,
           "messages": [{"role": "user", "content": prompt}]})
}

fn anthropic_msg(prompt: &str) -> Value {
    json!({"model": "claude-3-5-haiku-latest", "max_tokens": 64,
           "messages": [{"role": "user", "content": prompt}]})
}

#[tokio::test]
async fn beyond_max_in_flight_callers_get_503_in_their_shape_and_in_flight_calls_complete() {
    // Streams that tick every 50 ms for 5 s: long enough to be in flight while we overload,
    // on a loaded machine too.
    let opts = UpstreamOptions {
        slow_interval: Duration::from_millis(50),
        slow_duration: Duration::from_millis(5000),
        ..UpstreamOptions::default()
    };
    let up = ScriptedUpstream::start_with(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        SidecarConfig::new(&dir.path().join("data")).upstreams(&up.base_url()).table("[proxy]\nmax_in_flight = 2");
    let sc = Sidecar::start(cfg.build()).await.unwrap();
    let url = |p: &str| format!("http://{}{}", sc.data_addr, p);
    let chat_url = url("/a/main/fake/v1/chat/completions");

    // Two slow streams take both slots (each has sent its first chunk, so it is in flight).
    let mut a = post_json_streaming(&chat_url, &[], &chat("SLOW one", true)).await;
    let mut b = post_json_streaming(&chat_url, &[], &chat("SLOW two", true)).await;
    assert_eq!(a.status, 200);
    assert_eq!(b.status, 200);
    assert!(a.next_chunk().await.is_some());
    assert!(b.next_chunk().await.is_some());

    // A third call, OpenAI shape: refused at once, never sent upstream.
    let before = up.requests().len();
    let r = post_json(&chat_url, &[], &chat("one too many", false)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    let v = r.json();
    assert_eq!(v["error"]["type"], "overloaded", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_in_flight"), "{v}");
    // Anthropic shape.
    let r = post_json(&url("/a/claude/anth/v1/messages"), &[], &anthropic_msg("me too")).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    let v = r.json();
    assert_eq!((v["type"].as_str(), v["error"]["type"].as_str()), (Some("error"), Some("overloaded")), "{v}");
    assert_eq!(up.requests().len(), before, "a shed call reached the upstream");

    // The calls in flight were not disturbed: both streams run to their end.
    for s in [a, b] {
        let rest = String::from_utf8_lossy(&s.collect_rest().await).to_string();
        assert!(rest.contains("[DONE]"), "stream did not complete: {rest}");
    }
    // Their slots are free again.
    let r = post_json(&chat_url, &[], &chat("fits again", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let m = get(&format!("http://{}/metrics", sc.control_addr), &[]).await.text();
    assert!(m.lines().any(|l| l == "clawbutler_shed_calls_total 2"), "shed count missing:\n{m}");
    sc.shutdown().await;
}

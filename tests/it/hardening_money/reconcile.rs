//! The audit log records exactly what each call was charged (`charged_usd`), and the budget's
//! spend is the sum of it. The reproduction: four clients that left before the
//! upstream's response headers drained a $0.01 budget, while the log said each cost 0.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::{post_json, post_json_streaming};
use testkit::rig::Rig;
use testkit::upstream::UpstreamOptions;

use super::{agent_budget, charged, ended_calls, settled, start, PRICES};

const UPSTREAMS: &str = "[[upstreams]]\nname = \"slowup\"\nkind = \"openai\"\nurl = \"{base}/v1\"\ntimeout_ms = 1500\n\
                         [[upstreams]]\nname = \"deadup\"\nkind = \"openai\"\nurl = \"http://127.0.0.1:1/v1\"\n";

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "metered-model", "max_tokens": 5, "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

/// Input at $1 per million tokens, so a short call fits in a cent: $0.005 of output at most.
const CHEAP: &str = "[prices.\"cheap-model\"]\ninput = 1.0\noutput = 1000.0\n";

fn cheap(prompt: &str, stream: bool) -> Value {
    let mut b = chat(prompt, stream);
    b["model"] = json!("cheap-model");
    b
}

/// Send a call and hang up before any response header, once the upstream has it. The slow
/// answers (`slow_duration`) and the upstream timeout (`timeout_ms`) are long against the
/// 50 ms wait here, so a test paused by a loaded machine still leaves first.
async fn leave_before_headers(rig: &Rig, path: &str, body: Value) {
    let before = rig.up.request_count();
    let url = rig.url(path);
    let task = tokio::spawn(async move { post_json_streaming(&url, &[], &body).await.status });
    if !rig.up.wait_for_requests(before + 1, Duration::from_secs(5)).await {
        let status = task.await;
        panic!("the upstream never got the call (request {}); the client got {status:?}", before + 1);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!task.is_finished(), "the upstream answered before the client left");
    task.abort();
    let _ = task.await;
}

fn basis(ends: &[Value], b: &str) -> Vec<Value> {
    ends.iter().filter(|r| r["details"]["charge"] == b).cloned().collect()
}

#[tokio::test]
async fn early_disconnects_are_not_charged_and_spend_equals_the_logs_sum() {
    let opts = UpstreamOptions {
        slow_interval: Duration::from_millis(50),
        slow_duration: Duration::from_millis(700),
        ..UpstreamOptions::default()
    };
    let rig = start(opts, &format!("{CHEAP}{}{UPSTREAMS}", agent_budget("main", 0.01))).await;
    // The reproduction: four streamed calls whose client leaves before the headers. Each
    // reserves about $0.005, so charging the reservations would have opened the breaker. Each
    // call goes once the one before is settled: two reservations held at once are a cent, and
    // the sidecar may notice a client gone a moment after it hung up.
    for _ in 0..4 {
        leave_before_headers(&rig, "/a/main/fake/v1/chat/completions", cheap("HANG", true)).await;
        settled(&rig, "agent:main@daily").await;
    }
    let b = settled(&rig, "agent:main@daily").await;
    assert_eq!(b["spent_usd"], 0.0, "nothing was spent upstream: {b}");
    assert_eq!(b["open"], false);
    let ends = ended_calls(&rig, "main", 4).await;
    assert_eq!(ends.len(), 4);
    for r in &ends {
        assert_eq!((r["outcome"].as_str(), r["charged_usd"].as_f64()), (Some("cancelled"), Some(0.0)), "{r}");
        assert_eq!(r["details"]["charge"], "none_cancelled_before_answer");
    }
    // The budget still works for a call that completes.
    let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &cheap("fine", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn spend_equals_the_sum_of_charged_usd_under_every_way_a_call_ends() {
    let opts = UpstreamOptions {
        slow_interval: Duration::from_millis(50),
        slow_duration: Duration::from_millis(1500),
        ..UpstreamOptions::default()
    };
    let rig = start(opts, &format!("{PRICES}{}{UPSTREAMS}", agent_budget("main", 100.0))).await;
    let chat_url = "/a/main/fake/v1/chat/completions";
    // Completed, streamed and not.
    assert_eq!(post_json(&rig.url(chat_url), &[], &chat("one", false)).await.status, 200);
    assert_eq!(post_json(&rig.url(chat_url), &[], &chat("two", true)).await.status, 200);
    // A stream the client cuts after the first chunk: the cost is unknown, so the reservation.
    let mut s = post_json_streaming(&rig.url(chat_url), &[], &chat("SLOW cut me", true)).await;
    s.next_chunk().await.unwrap();
    drop(s);
    assert!(rig.up.wait_for_cancelled(1, Duration::from_secs(5)).await);
    // A streamed call left before the headers: nothing.
    leave_before_headers(&rig, chat_url, chat("HANG", true)).await;
    // A non-streamed call left before the answer: the upstream bills it anyway, so the
    // sidecar waits for the reply in the background and charges its real cost.
    leave_before_headers(&rig, chat_url, chat("SLOW answer later", false)).await;
    // The same whose upstream then times out: the reservation.
    leave_before_headers(&rig, "/a/main/slowup/v1/chat/completions", chat("HANG", false)).await;
    // Upstream timeout with the client waiting: 504 and the reservation, audited as such.
    let r = post_json(&rig.url("/a/main/slowup/v1/chat/completions"), &[], &chat("HANG", false)).await;
    assert_eq!(r.status, 504);
    // The upstream refuses, or cannot be reached: nothing.
    assert_eq!(post_json(&rig.url(chat_url), &[], &chat("FAIL500", false)).await.status, 500);
    assert_eq!(post_json(&rig.url("/a/main/deadup/v1/chat/completions"), &[], &chat("x", false)).await.status, 502);

    let b = settled(&rig, "agent:main@daily").await;
    let ends = ended_calls(&rig, "main", 9).await;
    assert_eq!(ends.len(), 9, "{ends:#?}");
    assert!(ends.iter().all(|r| r["charged_usd"].is_f64()), "every budgeted call states its charge");
    let spent = b["spent_usd"].as_f64().unwrap();
    assert!((charged(&ends) - spent).abs() < 1e-9, "log says {}, budget says {spent}", charged(&ends));

    let costed = basis(&ends, "cost");
    assert_eq!(costed.len(), 3, "{ends:#?}");
    for r in &costed {
        assert_eq!(r["charged_usd"], r["cost_usd"], "{r}");
    }
    let late = costed.iter().find(|r| r["details"]["client_gone_before_answer"] == true).expect("background finish");
    assert_eq!(late["outcome"], "cancelled");
    assert!(late["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let reserved = basis(&ends, "reservation_cost_unknown");
    assert_eq!(reserved.len(), 3, "cut stream, timeout, timeout after the client left: {ends:#?}");
    for r in &reserved {
        assert!(r["cost_usd"].is_null(), "cost unknown, never a silent 0: {r}");
        assert_eq!(r["charged_usd"], r["details"]["reserved_usd"], "{r}");
    }
    assert_eq!(basis(&ends, "none_cancelled_before_answer").len(), 1);
    assert_eq!(basis(&ends, "none_upstream_refused").len(), 1);
    assert_eq!(basis(&ends, "none_upstream_unreachable").len(), 1);
    for r in ends.iter().filter(|r| r["details"]["charge"].as_str().unwrap().starts_with("none")) {
        assert_eq!(r["charged_usd"], 0.0, "{r}");
    }
}

//! The model data path end to end, in process: a scripted OpenAI/Anthropic upstream on
//! 127.0.0.1:0, the sidecar started from a config string on port 0, and a real HTTP client.
//! Every assertion is about what a caller (or an auditor) sees.

use std::time::Duration;

use bytes::Bytes;
use clawbutler::app::Sidecar;
use http::Method;
use serde_json::{json, Value};
use testkit::http::{get, post_json, post_json_streaming, send};
use testkit::rig::{Rig, SidecarConfig};
use testkit::upstream::ScriptedUpstream;

fn chat(prompt: &str, stream: bool) -> Value {
    json!({"model": "gpt-4o-mini", "stream": stream, "messages": [{"role": "user", "content": prompt}]})
}

fn anthropic_msg(prompt: &str, stream: bool) -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 256, "stream": stream,
           "messages": [{"role": "user", "content": prompt}]})
}

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test]
async fn replies_are_byte_identical_to_a_direct_call() {
    let rig = Rig::start("").await;
    let cases: Vec<(&str, &str, Value)> = vec![
        ("/a/main/fake/v1/chat/completions", "/v1/chat/completions", chat("MARK:plain hello", false)),
        ("/a/main/fake/v1/chat/completions", "/v1/chat/completions", chat("MARK:streamed hello", true)),
        (
            "/a/main/fake/v1/chat/completions",
            "/v1/chat/completions",
            json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true},
                   "messages": [{"role": "user", "content": "with usage"}]}),
        ),
        ("/a/main/fake/v1/responses", "/v1/responses", json!({"model": "gpt-4o-mini", "input": "hi there"})),
        ("/a/main/fake/v1/responses", "/v1/responses", json!({"model": "gpt-4o-mini", "input": "hi", "stream": true})),
        ("/a/main/fake/v1/embeddings", "/v1/embeddings", json!({"model": "text-embedding-3-small", "input": "abc"})),
        ("/a/claude/anth/v1/messages", "/v1/messages", anthropic_msg("MARK:claude", false)),
        ("/a/claude/anth/v1/messages", "/v1/messages", anthropic_msg("MARK:claude-stream", true)),
        ("/a/main/fake/v1/chat/completions", "/v1/chat/completions", chat("FAIL500 please", false)),
        ("/a/claude/anth/v1/messages", "/v1/messages", anthropic_msg("FAIL429 please", true)),
    ];
    for (via, direct, body) in cases {
        let d = post_json(&rig.direct(direct), &[], &body).await;
        let p = post_json(&rig.url(via), &[("traceparent", TRACEPARENT)], &body).await;
        assert_eq!(p.status, d.status, "{via} {body}");
        assert_eq!(p.text(), d.text(), "{via} body differs for {body}");
        assert_eq!(p.header("content-type"), d.header("content-type"));
        assert_eq!(p.header("x-clawbutler-trace-id"), Some("0af7651916cd43dd8448eb211c80319c"));
        assert_eq!(p.header("x-clawbutler-decision-id").map(str::len), Some(36));
    }
    let models_direct = get(&rig.direct("/v1/models"), &[]).await;
    let models = get(&rig.url("/a/main/fake/v1/models"), &[]).await;
    assert_eq!(models.status, 200);
    assert_eq!(models.text(), models_direct.text());
    // Without a traceparent the sidecar makes a trace id of its own.
    assert_eq!(models.header("x-clawbutler-trace-id").map(str::len), Some(32));
}

#[tokio::test]
async fn usage_and_cost_are_recorded_for_every_call_kind() {
    let rig = Rig::start("").await;
    post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat("count me", false)).await;
    // Streamed without include_usage: the sidecar asks upstream for usage on its own.
    let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat("count me streamed", true)).await;
    assert!(!r.text().contains("\"usage\""), "usage leaked to a client that did not ask: {}", r.text());
    post_json(&rig.url("/a/claude/anth/v1/messages"), &[], &anthropic_msg("claude counts", true)).await;
    post_json(
        &rig.url("/a/main/fake/v1/chat/completions"),
        &[],
        &json!({"model": "my-local-model", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;

    let reqs = rig.up.requests();
    let streamed = reqs.iter().find(|q| q.body.windows(17).any(|w| w == b"count me streamed")).unwrap();
    assert_eq!(streamed.json().unwrap()["stream_options"]["include_usage"], true, "usage not requested upstream");

    let main = rig.model_calls("main", 3).await;
    for (rec, want_prompt) in main.iter().zip(["count me", "count me streamed"]) {
        let up = reqs.iter().find(|q| q.json().unwrap()["messages"][0]["content"] == want_prompt).unwrap();
        let u = up.usage.unwrap();
        assert_eq!(rec["agent"], "main");
        assert_eq!(rec["subject"]["model"], "gpt-4o-mini");
        assert_eq!(rec["usage"]["input_tokens"], u.input_tokens);
        assert_eq!(rec["usage"]["output_tokens"], u.output_tokens);
        let want_cost = ((u.input_tokens - u.cached_tokens) as f64 * 0.15
            + u.cached_tokens as f64 * 0.075
            + u.output_tokens as f64 * 0.60)
            / 1e6;
        let got = rec["cost_usd"].as_f64().unwrap();
        assert!((got - want_cost).abs() < 1e-12, "cost {got} != {want_cost}");
        assert_eq!(rec["outcome"], "completed");
    }
    // Unknown model: cost is unknown (null), never zero.
    assert_eq!(main[2]["subject"]["model"], "my-local-model");
    assert!(main[2]["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(main[2]["cost_usd"].is_null(), "{}", main[2]);

    let claude = rig.model_calls("claude", 1).await;
    assert_eq!(claude[0]["subject"]["upstream"], "anth");
    assert!(claude[0]["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert!(claude[0]["cost_usd"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn injected_key_replaces_the_clients_and_pass_through_keeps_it() {
    std::env::set_var("CB_TEST_INJECTED_KEY", "sk-sidecar-held-key");
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(dir.path()).table(&format!(
        r#"
[[upstreams]]
name = "held"
kind = "openai"
url = "{base}/v1"
api_key_env = "CB_TEST_INJECTED_KEY"
[[upstreams]]
name = "passthru"
kind = "openai"
url = "{base}/v1"
[[upstreams]]
name = "anthheld"
kind = "anthropic"
url = "{base}"
api_key_env = "CB_TEST_INJECTED_KEY"
"#,
        base = up.base_url()
    ));
    let sc = Sidecar::start(cfg.build()).await.unwrap();
    let url = |p: &str| format!("http://{}{p}", sc.data_addr);
    // Where the sidecar holds the key, the caller's key is its per-agent key (docs/security.md).
    let created = post_json(
        &format!("http://{}/api/v1/agents/main/keys", sc.control_addr),
        &testkit::rig::bearer(testkit::rig::ADMIN),
        &json!({}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let agent_key = created.json()["key"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {agent_key}");
    let held_key = [("authorization", bearer.as_str())];
    let client_key = [("authorization", "Bearer sk-client-key"), ("x-api-key", "sk-ant-client")];
    let r = post_json(&url("/a/main/held/v1/chat/completions"), &held_key, &chat("a", false)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    post_json(&url("/a/main/passthru/v1/chat/completions"), &client_key, &chat("b", false)).await;
    let r = post_json(
        &url("/a/main/anthheld/v1/messages"),
        &[("x-api-key", agent_key.as_str())],
        &anthropic_msg("c", false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reqs = up.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        let all = format!("{:?}", r.headers);
        assert!(!all.contains(&agent_key), "the agent key never goes upstream: {all}");
    }
    let h = |i: usize, k: &str| reqs[i].headers.get(k).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h(0, "authorization").as_deref(), Some("Bearer sk-sidecar-held-key"));
    assert_eq!(h(0, "x-api-key"), None, "client's key forwarded alongside the injected one");
    assert_eq!(h(1, "authorization").as_deref(), Some("Bearer sk-client-key"));
    assert_eq!(h(1, "x-api-key").as_deref(), Some("sk-ant-client"));
    assert_eq!(h(2, "x-api-key").as_deref(), Some("sk-sidecar-held-key"));
    assert_eq!(h(2, "authorization"), None);
    sc.shutdown().await;
}

#[tokio::test]
async fn errors_come_back_in_the_callers_shape() {
    // A port with nothing listening: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let rig = Rig::start(&format!(
        r#"
[proxy]
max_body_bytes = 4096
[[upstreams]]
name = "dead"
kind = "openai"
url = "http://{dead}/v1"
[[upstreams]]
name = "deadanth"
kind = "anthropic"
url = "http://{dead}"
"#
    ))
    .await;
    let r = post_json(&rig.url("/a/main/dead/v1/chat/completions"), &[], &chat("x", false)).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"]["type"], "upstream_unreachable");
    assert!(r.header("x-clawbutler-decision-id").is_some());
    let r = post_json(&rig.url("/a/main/deadanth/v1/messages"), &[], &anthropic_msg("x", false)).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "upstream_unreachable");

    let r = send(
        Method::POST,
        &rig.url("/a/main/fake/v1/chat/completions"),
        &[("content-type", "application/json")],
        Bytes::from_static(b"{\"model\": "),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    let r = send(
        Method::POST,
        &rig.url("/a/claude/anth/v1/messages"),
        &[("content-type", "application/json")],
        Bytes::from_static(b"not json"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["type"], "error");

    let big = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x".repeat(5000)}]});
    let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["type"], "request_too_large");

    let r = post_json(&rig.url("/a/main/nosuch/v1/chat/completions"), &[], &chat("x", false)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "unknown_upstream");
    let r = post_json(&rig.url("/a/main/nosuch/v1/messages"), &[], &anthropic_msg("x", false)).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["type"], "error");
    let r = post_json(&rig.url("/elsewhere"), &[], &chat("x", false)).await;
    assert_eq!(r.status, 404);
    assert_eq!(rig.up.request_count(), 0, "a refused call reached the upstream");

    let m = rig.metrics().await;
    assert!(m.contains("clawbutler_upstream_errors_total{class=\"connect\",upstream=\"dead\"} 1"), "{m}");
}

#[tokio::test]
async fn upstream_timeout_is_504() {
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(dir.path()).table(&format!(
        "[[upstreams]]\nname = \"slow\"\nkind = \"openai\"\nurl = \"{base}/v1\"\ntimeout_ms = 300\n\
         [[upstreams]]\nname = \"slowanth\"\nkind = \"anthropic\"\nurl = \"{base}\"\ntimeout_ms = 300\n",
        base = up.base_url()
    ));
    let sc = Sidecar::start(cfg.build()).await.unwrap();
    let r =
        post_json(&format!("http://{}/a/main/slow/v1/chat/completions", sc.data_addr), &[], &chat("HANG", false)).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"]["type"], "upstream_timeout");
    let r =
        post_json(&format!("http://{}/a/main/slowanth/v1/messages", sc.data_addr), &[], &anthropic_msg("HANG", false))
            .await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"]["type"], "upstream_timeout");
    sc.shutdown().await;
}

/// A call's first timer fires at the earlier of its `started` record's due time (one group
/// commit window after sending) and the upstream timeout: a timeout shorter than the window
/// answers on time with one end record and no `started` one; a longer one writes `started`
/// when the window passes, then times out.
#[tokio::test]
async fn an_upstream_timeout_shorter_than_the_group_window_answers_on_time_without_a_started_record() {
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(&dir.path().join("data")).table(&format!(
        "[audit]\ngroup_commit_ms = 2000\n\
         [[upstreams]]\nname = \"quick\"\nkind = \"openai\"\nurl = \"{base}/v1\"\ntimeout_ms = 100\n\
         [[upstreams]]\nname = \"slow\"\nkind = \"openai\"\nurl = \"{base}/v1\"\ntimeout_ms = 2500\n",
        base = up.base_url()
    ));
    let sidecar = Sidecar::start(cfg.build()).await.unwrap();
    let rig = Rig { sidecar, up, dir, cfg };
    let call = |upstream: &'static str| {
        let url = rig.url(&format!("/a/main/{upstream}/v1/chat/completions"));
        async move {
            let t0 = std::time::Instant::now();
            let r = post_json(&url, &[], &chat("HANG", false)).await;
            assert_eq!(r.status, 504, "{}", r.text());
            assert_eq!(r.json()["error"]["type"], "upstream_timeout");
            (r.header("x-clawbutler-decision-id").unwrap().to_string(), t0.elapsed())
        }
    };
    let (quick_id, quick_took) = call("quick").await;
    // Not held until the 2 s window: the timeout's own deadline answers.
    assert!(quick_took >= Duration::from_millis(100) && quick_took < Duration::from_millis(1500), "{quick_took:?}");
    let (slow_id, slow_took) = call("slow").await;
    assert!(slow_took >= Duration::from_millis(2500), "{slow_took:?}");
    let of = |recs: &[Value], id: &str| -> Vec<String> {
        let mut o: Vec<String> = recs
            .iter()
            .filter(|r| r["decision_id"] == id)
            .map(|r| r["outcome"].as_str().unwrap_or("").to_string())
            .collect();
        o.sort();
        o
    };
    let recs = rig.audit_until("kind=model_call", |r| of(r, &quick_id).len() == 1 && of(r, &slow_id).len() == 2).await;
    assert_eq!(of(&recs, &quick_id), ["upstream_error"], "{recs:#?}");
    assert_eq!(of(&recs, &slow_id), ["started", "upstream_error"], "{recs:#?}");
    rig.sidecar.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_mid_stream_cancels_the_upstream() {
    let rig = Rig::start("").await;
    let mut s =
        post_json_streaming(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat("SLOW please", true)).await;
    assert_eq!(s.status, 200);
    let first = s.next_chunk().await.expect("first chunk");
    assert!(!first.is_empty());
    drop(s);
    assert!(rig.up.wait_for_cancelled(1, Duration::from_secs(5)).await, "upstream stream was not cancelled");
    let rec = rig.model_calls("main", 1).await;
    assert_eq!(rec[0]["outcome"], "cancelled");
    // Same for Anthropic.
    let mut s =
        post_json_streaming(&rig.url("/a/claude/anth/v1/messages"), &[], &anthropic_msg("SLOW please", true)).await;
    s.next_chunk().await.expect("first chunk");
    drop(s);
    assert!(rig.up.wait_for_cancelled(2, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn metrics_and_health_endpoints() {
    let rig = Rig::start("").await;
    post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat("m", false)).await;
    rig.model_calls("main", 1).await;
    let m = rig.metrics().await;
    for family in [
        "clawbutler_requests_total{action=\"allow\",route=\"chat_completions\",upstream=\"fake\"} 1",
        "clawbutler_overhead_seconds_bucket",
        "clawbutler_request_duration_seconds_bucket",
        "clawbutler_policy_eval_seconds",
        "clawbutler_audit_records_total",
    ] {
        assert!(m.contains(family), "missing {family} in\n{m}");
    }
    let live = get(&rig.control("/livez"), &[]).await;
    assert_eq!(live.status, 200);
    let ready = get(&rig.control("/readyz"), &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
}

#[tokio::test]
async fn a_denied_model_never_reaches_the_upstream_and_the_client_sees_why() {
    let rig = Rig::start_with("model_allowlist = [\"gpt-4o-mini\"]", "").await;
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-clawbutler-action"), Some("deny"));
    let text = r.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(text.contains("gpt-4o") && text.contains("ClawButler blocked"), "{text}");
    // Streamed denial in Anthropic's shape.
    let r = post_json(&rig.url("/a/claude/anth/v1/messages"), &[], &anthropic_msg("hi", true)).await;
    assert!(r.text().contains("event: message_stop"), "{}", r.text());
    assert!(r.text().contains("ClawButler blocked"));
    assert_eq!(rig.up.request_count(), 0);
    // Allowed model passes.
    let ok = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat("fine", false)).await;
    assert!(ok.header("x-clawbutler-action").is_none());
    assert_eq!(rig.up.request_count(), 1);
    let recs = rig.model_calls("main", 2).await;
    assert_eq!(recs[0]["action"], "deny");
    assert_eq!(recs[0]["outcome"], "denied");
}

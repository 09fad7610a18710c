//! Bad input and failing upstreams, at the HTTP edge as a client sees them: no token, a
//! wrong one, another agent's token, a bad Origin, a batch, malformed JSON, a huge body, an
//! unknown or missing session, an unknown protocol version, DELETE; an upstream that hangs
//! and one that dies mid-call: clear statuses and JSON-RPC errors or `isError` results, no
//! panic, a record for every call, and the other server of the session keeps working; an
//! HTTP upstream that hangs, and one restarted under a live session (its session is gone).

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use testkit::http::{send, HttpResponse};
use testkit::mcp::result_text;

use super::{http_server, ok, tools, McpRig};

fn headers<'a>(token: &'a str, session: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("accept", "application/json, text/event-stream"),
        ("content-type", "application/json"),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let auth: &'static str = Box::leak(format!("Bearer {token}").into_boxed_str());
    h.push(("authorization", auth));
    if let Some(s) = session {
        h.push(("mcp-session-id", s));
    }
    h
}

async fn post(url: &str, h: &[(&str, &str)], body: &str) -> HttpResponse {
    send(Method::POST, url, h, Bytes::from(body.to_string())).await
}

fn init_body() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
    .to_string()
}

fn code(r: &HttpResponse) -> i64 {
    r.json()["error"]["code"].as_i64().unwrap_or_else(|| panic!("not a JSON-RPC error: {} {}", r.status, r.text()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let Some(tools) = tools("mcp::edges::bad_requests_get_clear_errors") else { return };
    let scripts = Arc::new(tools.scripts());
    let fx = scripts.fixture_http(&[]);
    let m = McpRig::start(&http_server("fx", &fx.url(), ""), &[]).await;
    let (main, ops) = (m.token("main").await, m.token("ops").await);
    let url = m.endpoint("main");

    // Credentials.
    let r = post(
        &url,
        &[("accept", "application/json, text/event-stream"), ("content-type", "application/json")],
        &init_body(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("mcp-token create main"), "{}", r.text());
    assert_eq!(post(&url, &headers("cbm_not-a-token", None), &init_body()).await.status, 401);
    let r = post(&url, &headers(&ops, None), &init_body()).await;
    assert_eq!(r.status, 403, "another agent's token: {}", r.text());
    let mut h = headers(&main, None);
    h.push(("origin", "https://evil.example"));
    let r = post(&url, &h, &init_body()).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("allowed_origins"), "{}", r.text());

    // A session, then malformed messages in it.
    let r = post(&url, &headers(&main, None), &init_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-11-25");
    let sid = r.header("mcp-session-id").unwrap().to_string();
    let h = headers(&main, Some(&sid));
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"}).to_string();
    let r = post(&url, &h, &ping).await;
    assert_eq!((r.status.as_u16(), r.json()["result"].clone()), (200, json!({})), "{}", r.text());
    let r = post(&url, &h, &format!("[{ping}]")).await;
    assert_eq!((r.status.as_u16(), code(&r)), (400, -32600), "batch: {}", r.text());
    let r = post(&url, &h, "{\"jsonrpc\": \"2.0\", \"id\": 3, ").await;
    assert_eq!((r.status.as_u16(), code(&r)), (400, -32700), "malformed: {}", r.text());
    let big = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                     "params": {"name": "fx__echo", "arguments": {"text": "x".repeat(5 * 1024 * 1024)}}});
    let r = post(&url, &h, &big.to_string()).await;
    assert_eq!(r.status, 413, "{}", &r.text()[..r.text().len().min(300)]);
    let r = post(
        &url,
        &h,
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "nope"}}).to_string(),
    )
    .await;
    assert_eq!((r.status.as_u16(), code(&r)), (200, -32602), "unknown tool: {}", r.text());
    let r = post(&url, &h, &json!({"jsonrpc": "2.0", "id": 6, "method": "no/such"}).to_string()).await;
    assert_eq!(code(&r), -32601, "{}", r.text());
    let mut bad_version = h.clone();
    bad_version.retain(|(k, _)| *k != "mcp-protocol-version");
    bad_version.push(("mcp-protocol-version", "1999-01-01"));
    assert_eq!(post(&url, &bad_version, &ping).await.status, 400);

    // Sessions: missing, unknown, another agent's endpoint, deleted.
    assert_eq!(post(&url, &headers(&main, None), &ping).await.status, 400);
    assert_eq!(post(&url, &headers(&main, Some("nope")), &ping).await.status, 404);
    let r = send(Method::DELETE, &url, &h, Bytes::new()).await;
    assert!(r.status == 204 || r.status == 200 || r.status == 202, "{}", r.status);
    let r = post(&url, &h, &ping).await;
    assert_eq!((r.status.as_u16(), code(&r)), (404, -32001), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstreams_do_not_take_the_session_down() {
    let Some(tools) = tools("mcp::edges::failing_upstreams_do_not_take_the_session_down") else { return };
    let scripts = Arc::new(tools.scripts());
    let fx = scripts.fixture_http(&[]);
    let fixture = scripts.path("fixture.mjs").display().to_string();
    let stdio = scripts.stdio_entry("fs", &[&fixture, "stdio"], "timeout_s = 2");
    let dead = http_server("gone", "http://127.0.0.1:9/mcp", "");
    let m = McpRig::start(&format!("{}{stdio}{dead}", http_server("fx", &fx.url(), "")), &[]).await;
    let token = m.token("main").await;
    let report = super::client(
        &scripts,
        &m.endpoint("main"),
        &token,
        json!([
            {"op": "list"},
            {"op": "call", "name": "fs__test_hang"},
            {"op": "call", "name": "fx__echo", "args": {"text": "still here"}},
            {"op": "call", "name": "fs__test_exit"},
            {"op": "call", "name": "fx__echo", "args": {"text": "and here"}},
            {"op": "call", "name": "fs__echo", "args": {"text": "back"}},
        ]),
    )
    .await;
    let listed = super::names(ok(&report, 0));
    assert!(listed.iter().any(|n| n == "fs__echo") && listed.iter().any(|n| n == "fx__echo"), "{listed:?}");
    assert!(!listed.iter().any(|n| n.starts_with("gone__")), "{listed:?}");
    let r = ok(&report, 1);
    assert_eq!(r["isError"], true, "{r}");
    assert!(result_text(r).contains("did not answer within 2 s"), "{r}");
    assert_eq!(result_text(ok(&report, 2)), "echo: still here");
    let r = ok(&report, 3);
    assert_eq!(r["isError"], true, "{r}");
    assert!(result_text(r).contains("'fs'"), "{r}");
    assert_eq!(result_text(ok(&report, 4)), "echo: and here");
    // The dead child is replaced by a new one on the next call.
    assert_eq!(result_text(ok(&report, 5)), "echo: back", "{report}");

    let recs = m.tool_records("main", 5).await;
    let statuses: Vec<Value> = recs.iter().map(|r| r["details"]["result"]["status"].clone()).collect();
    assert!(statuses.contains(&json!("timeout")) && statuses.contains(&json!("failed")), "{statuses:?}");
    let servers = m.servers().await;
    let gone = servers.iter().find(|s| s["name"] == "gone").unwrap();
    assert_eq!(gone["health"]["state"], "offline", "{gone}");
    assert!(gone["health"]["reason"].is_string(), "{gone}");
}

/// A tool call on an HTTP upstream goes straight from the call's task to the server on the
/// session rmcp opened (`upstream/direct.rs`): a hang is cut at `timeout_s` and cancelled
/// upstream, progress comes back under the client's token, and a server restarted under a
/// live client session (its upstream session gone: 404) is re-initialised by rmcp and the
/// call still answers, in the same client session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_upstreams_time_out_stream_progress_and_survive_a_restart() {
    let Some(tools) = tools("mcp::edges::http_upstreams_time_out_stream_progress_and_survive_a_restart") else {
        return;
    };
    let scripts = Arc::new(tools.scripts());
    let calls = scripts.path("calls.jsonl").display().to_string();
    let fx = scripts.fixture_http(&[("FIXTURE_CALL_LOG", &calls)]);
    let port = fx.port;
    let m = McpRig::start(&http_server("fx", &fx.url(), "timeout_s = 2"), &[]).await;
    let token = m.token("main").await;
    let url = m.endpoint("main");
    let r = post(&url, &headers(&token, None), &init_body()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sid = r.header("mcp-session-id").unwrap().to_string();
    let h = headers(&token, Some(&sid));
    let call = |id: i64, name: &str, args: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": name, "arguments": args}})
            .to_string()
    };

    let r = post(&url, &h, &call(2, "fx__echo", json!({"text": "one"}))).await;
    assert_eq!(result_text(&r.json()["result"]), "echo: one", "{}", r.text());
    let t0 = std::time::Instant::now();
    let r = post(&url, &h, &call(3, "fx__test_hang", json!({}))).await;
    let res = &r.json()["result"];
    assert_eq!(res["isError"], true, "{}", r.text());
    assert!(result_text(res).contains("did not answer within 2 s"), "{}", r.text());
    assert!(t0.elapsed() < std::time::Duration::from_secs(10), "{:?}", t0.elapsed());

    // A client that goes away mid-call (its connection closed) does not cancel the call: it
    // runs to its end (here the 2 s timeout) and is recorded, though the request that ran it
    // inline is gone.
    let gone = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        post(&url, &h, &call(30, "fx__test_hang", json!({"left": true}))),
    )
    .await;
    assert!(gone.is_err(), "the hanging call answered within 300 ms");
    let recs = m.tool_records("main", 3).await;
    assert_eq!(recs.iter().filter(|r| r["details"]["result"]["status"] == "timeout").count(), 2, "{recs:?}");

    // Progress under the client's own token, then the result, on one event stream.
    let body = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "fx__test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": "mine-7"}}});
    let r = post(&url, &h, &body.to_string()).await;
    let text = r.text();
    assert_eq!(r.header("content-type"), Some("text/event-stream"), "{text}");
    assert_eq!(text.matches("notifications/progress").count(), 3, "{text}");
    assert_eq!(text.matches("\"progressToken\":\"mine-7\"").count(), 3, "{text}");
    assert!(!text.contains("cb-"), "the sidecar's own token leaked: {text}");
    assert!(text.contains("Tool with progress executed successfully"), "{text}");

    // The server restarts: the upstream session is gone, the client's is not.
    drop(fx);
    let _fx = scripts.fixture_http_on(port, &[("FIXTURE_CALL_LOG", &calls)]);
    let r = post(&url, &h, &call(5, "fx__echo", json!({"text": "after restart"}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(result_text(&r.json()["result"]), "echo: after restart", "{}", r.text());
    let r = post(&url, &h, &call(6, "fx__echo", json!({"text": "and again"}))).await;
    assert_eq!(result_text(&r.json()["result"]), "echo: and again", "{}", r.text());

    let logged = std::fs::read_to_string(&calls).unwrap();
    let names: Vec<String> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["name"].as_str().unwrap_or("").to_string())
        .collect();
    // Each call reached the server once: nothing was sent twice by the fallback.
    assert_eq!(names, ["echo", "test_hang", "test_hang", "test_tool_with_progress", "echo", "echo"], "{logged}");
    let recs = m.tool_records("main", 6).await;
    let statuses: Vec<Value> = recs.iter().map(|r| r["details"]["result"]["status"].clone()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == json!("timeout")).count(), 2, "{statuses:?}");
    // Calls still running one group window (5 ms) after they were sent (the two hangs) have a
    // `started` record; calls answered sooner only their end record.
    let all = m.rig.audit("agent=main&kind=tool_call").await;
    let started: Vec<&Value> = all.iter().filter(|r| r["outcome"] == "started").collect();
    for end in all.iter().filter(|r| r["outcome"] != "started") {
        let has_start = started.iter().any(|s| s["decision_id"] == end["decision_id"]);
        let ms = end["latency_ms"].as_f64().unwrap();
        if end["subject"]["tool"] == "test_hang" {
            assert!(has_start, "a hanging call without a started record: {end}");
        } else if ms < 5.0 {
            assert!(!has_start, "a call answered in {ms} ms has a started record: {end}");
        }
    }
    let servers = m.servers().await;
    assert_eq!(servers[0]["health"]["state"], "healthy", "{servers:?}");
}

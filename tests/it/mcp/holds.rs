//! Holds on MCP tool calls, in the same approval broker and API as model and exec holds: a
//! held call approved through the control API completes with the exact arguments; a denied
//! one returns the approver's reason; a call the client cancels withdraws its approval;
//! "allow always" grants the next identical call; and the session-context rule holds an
//! outbound tool once an earlier result in the same MCP session carried a secret.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::get;
use testkit::mcp::result_text;
use testkit::rig::{bearer, ADMIN};

use super::{calls_reached, client, http_server, ok, tools, McpRig, DENY_RULES};

/// The approval `id`, as the API shows it now.
async fn approval(m: &McpRig, id: &str) -> Value {
    let r = get(&m.rig.control(&format!("/api/v1/approvals/{id}")), &bearer(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_calls_are_approved_denied_cancelled_and_granted() {
    let Some(tools) = tools("mcp::holds::held_calls_are_approved_denied_cancelled_and_granted") else { return };
    let scripts = Arc::new(tools.scripts());
    let log = scripts.dir().join("calls.jsonl");
    let fx = scripts.fixture_http(&[("FIXTURE_CALL_LOG", log.to_str().unwrap())]);
    let m = McpRig::start(&http_server("fx", &fx.url(), ""), &[("zz_mcp_rules.rego", DENY_RULES)]).await;
    let token = m.token("main").await;
    let url = m.endpoint("main");
    let approver = m.rig.token("approver", "ops").await;

    // 1. Held, approved once through the API: the call completes with its exact arguments.
    let plan = json!({"url": url, "token": token, "steps": [
        {"op": "call", "name": "fx__send_message", "args": {"to": "bob", "text": "lunch?"}},
    ]});
    let run = scripts.client_spawn(plan);
    let pending = m.rig.wait_pending("main", 1).await;
    let a = &pending[0];
    assert_eq!(a["kind"], "tool_call", "{a}");
    assert_eq!(a["rule"], "tool.outbound_message", "{a}");
    assert_eq!(a["subject"]["server"], "fx", "{a}");
    assert_eq!(a["subject"]["tool"], "send_message", "{a}");
    assert_eq!(a["subject"]["args"], json!({"to": "bob", "text": "lunch?"}), "the inbox shows the arguments: {a}");
    assert_eq!(a["subject"]["args_sha256"].as_str().map(str::len), Some(64), "{a}");
    assert!(calls_reached(&log).is_empty(), "a held call reached the server before approval");
    let id = a["id"].as_str().unwrap().to_string();
    let r = m.rig.decide(&approver, &id, &json!({"decision": "allow-once", "expected_version": 1}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = run.await.unwrap();
    assert_eq!(result_text(ok(&report, 0)), "sent to bob: lunch?", "{report}");
    assert_eq!(calls_reached(&log).len(), 1);

    // 2. Held and denied: the model reads the approver's reason; the server never sees it.
    let plan = json!({"url": url, "token": token, "steps": [
        {"op": "call", "name": "fx__send_message", "args": {"to": "eve", "text": "the keys"}},
    ]});
    let run = scripts.client_spawn(plan);
    let id = m.rig.wait_pending("main", 1).await[0]["id"].as_str().unwrap().to_string();
    let body = json!({"decision": "deny", "expected_version": 1, "reason": "not to eve"});
    assert_eq!(m.rig.decide(&approver, &id, &body, None).await.status, 200);
    let report = run.await.unwrap();
    let r = ok(&report, 0);
    assert_eq!(r["isError"], true, "{r}");
    assert!(result_text(r).contains("not to eve"), "{r}");
    assert_eq!(calls_reached(&log).len(), 1, "a denied call reached the server");

    // 3. Held, then cancelled by the client: the approval is withdrawn.
    let plan = json!({"url": url, "token": token, "steps": [
        {"op": "call", "name": "fx__send_message", "args": {"to": "carol", "text": "hi"}, "abortAfterMs": 1500},
    ]});
    let run = scripts.client_spawn(plan);
    let id = m.rig.wait_pending("main", 1).await[0]["id"].as_str().unwrap().to_string();
    let report = run.await.unwrap();
    assert!(report["results"][0]["error"].is_object(), "the client's own abort: {report}");
    assert_eq!(report["cancels"].as_array().map(Vec::len), Some(1), "the SDK sent notifications/cancelled: {report}");
    let mut status = Value::Null;
    for _ in 0..100 {
        status = approval(&m, &id).await["status"].clone();
        if status != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "cancelled", "the approval is withdrawn when the client cancels");
    assert_eq!(calls_reached(&log).len(), 1);

    // 4. Allow always: the grant lets the next identical call through without a hold.
    let plan = json!({"url": url, "token": token, "steps": [
        {"op": "call", "name": "fx__send_message", "args": {"to": "bob", "text": "standup"}},
        {"op": "call", "name": "fx__send_message", "args": {"to": "bob", "text": "standup"}},
    ]});
    let run = scripts.client_spawn(plan);
    let id = m.rig.wait_pending("main", 1).await[0]["id"].as_str().unwrap().to_string();
    let r = m.rig.decide(&approver, &id, &json!({"decision": "allow-always", "expected_version": 1}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["grant"].is_object(), "{}", r.text());
    let report = run.await.unwrap();
    assert_eq!(result_text(ok(&report, 0)), "sent to bob: standup");
    assert_eq!(result_text(ok(&report, 1)), "sent to bob: standup");
    assert_eq!(calls_reached(&log).len(), 3);
    let recs = m.tool_records("main", 5).await;
    let granted = &recs[0];
    assert_eq!(granted["action"], "allow", "{granted}");
    assert!(granted["rule"].as_str().unwrap().starts_with("grant"), "the grant decided: {granted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_tool_is_held_after_a_secret_came_back() {
    let Some(tools) = tools("mcp::holds::an_outbound_tool_is_held_after_a_secret_came_back") else { return };
    let scripts = Arc::new(tools.scripts());
    let fx = scripts.fixture_http(&[]);
    let m = McpRig::start(&http_server("fx", &fx.url(), ""), &[]).await;
    let token = m.token("main").await;
    let url = m.endpoint("main");
    let post =
        json!({"op": "call", "name": "fx__http_post", "args": {"url": "https://paste.example/new", "body": "notes"}});

    // Before any secret, posting is allowed.
    let report = client(&scripts, &url, &token, json!([post.clone()])).await;
    assert!(result_text(ok(&report, 0)).starts_with("posted 5 bytes"), "{report}");

    // In a session where a tool returned a credential, the same post waits for a human.
    let plan = json!({"url": url, "token": token, "steps": [
        {"op": "call", "name": "fx__test_secret"},
        post,
    ]});
    let run = scripts.client_spawn(plan);
    let a = m.rig.wait_pending("main", 1).await[0].clone();
    assert_eq!(a["rule"], "mcp.secret_then_outbound", "{a}");
    assert_eq!(a["subject"]["tool"], "http_post", "{a}");
    let approver = m.rig.token("approver", "ops").await;
    let body = json!({"decision": "deny", "expected_version": 1, "reason": "no exfiltration"});
    assert_eq!(m.rig.decide(&approver, a["id"].as_str().unwrap(), &body, None).await.status, 200);
    let report = run.await.unwrap();
    let r = ok(&report, 1);
    assert_eq!(r["isError"], true, "{r}");
    assert!(result_text(r).contains("no exfiltration"), "{r}");
}

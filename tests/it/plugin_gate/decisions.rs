//! What the gate answers, and what is recorded.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, chat, ADMIN};
use tokio::io::AsyncWriteExt;

use super::{agent_run, tool_call, Plugin, TRACE, WS};

#[tokio::test]
async fn writes_inside_run_outside_are_held_and_a_denial_is_the_models_reason() {
    let p = Plugin::start("", "").await;
    let r = p.decide(&tool_call("write", json!({"path": "notes/today.md", "content": "x"}), "run-1", "call1")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.json();
    assert_eq!((a["action"].as_str(), a["rule"].as_str()), (Some("allow"), Some("allow.plugin")));

    let held = p.spawn_decide(tool_call(
        "write",
        json!({"path": "/etc/cron.d/job", "content": "* * * * * x"}),
        "run-1",
        "call_2",
    ));
    let pending = p.rig.wait_pending("main", 1).await;
    let ap = &pending[0];
    assert_eq!((ap["kind"].as_str(), ap["rule"].as_str()), (Some("plugin"), Some("plugin.file_outside_workspace")));
    assert_eq!(ap["subject"]["tool"], "write");
    assert_eq!(ap["subject"]["paths"], json!(["/etc/cron.d/job"]));
    assert_eq!(ap["trace_id"], TRACE);
    assert_eq!(ap["suggested_scope"]["pattern"], "write");
    assert_eq!(
        ap["suggested_scope"]["arg_pattern"], "/etc/cron.d/job",
        "allow-always covers the path, not the content"
    );
    let r = p.decide_approval(ap, "deny").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = held.await.unwrap().json();
    assert_eq!(a["action"], "block", "{a}");
    let reason = a["reason"].as_str().unwrap();
    assert!(reason.contains("denied it") && reason.contains("plugin.file_outside_workspace"), "{reason}");
    assert!(reason.contains("checked by the test"), "the decider's reason reaches the model: {reason}");

    // One record per decision, with OpenClaw's ids, on the turn's trace, in order.
    let trace = get(&p.rig.control(&format!("/api/v1/audit/trace/{TRACE}")), &bearer(ADMIN)).await.json();
    let plugin: Vec<&Value> = trace["items"].as_array().unwrap().iter().filter(|r| r["kind"] == "plugin").collect();
    let steps: Vec<(&str, &str)> = plugin
        .iter()
        .map(|r| (r["details"]["tool_call_id"].as_str().unwrap_or("-"), r["outcome"].as_str().unwrap_or("-")))
        .collect();
    assert_eq!(steps, [("call1", "allowed"), ("call_2", "held"), ("call_2", "denied")], "{trace}");
    assert!(plugin.iter().all(|r| r["details"]["run_id"] == "run-1" && r["agent"] == "main"));
    assert_eq!(plugin[0]["subject"]["paths"], json!([format!("{WS}/notes/today.md")]));
    let m = p.rig.metrics().await;
    assert!(m.contains("clawbutler_plugin_decisions_total{action=\"hold\",family=\"file_write\"} 1"), "{m}");
    assert!(m.contains("clawbutler_plugin_decisions_total{action=\"block\",family=\"file_write\"} 1"), "{m}");
    assert!(m.contains("clawbutler_plugin_hold_outcomes_total{outcome=\"denied\"} 1"), "{m}");
}

#[tokio::test]
async fn a_held_call_approved_through_the_api_runs_and_a_retry_gets_the_same_answer() {
    let p = Plugin::start("", "").await;
    let body = tool_call("write", json!({"path": "/tmp/report.txt", "content": "x"}), "run-2", "call_1");
    let held = p.spawn_decide(body.clone());
    let pending = p.rig.wait_pending("main", 1).await;
    assert_eq!(p.decide_approval(&pending[0], "allow-once").await.status, 200);
    let a = held.await.unwrap().json();
    assert_eq!((a["action"].as_str(), a["approvalId"].as_str()), (Some("allow"), pending[0]["id"].as_str()), "{a}");
    // The plugin's retry (same run and tool-call id) is answered the same, without a new hold.
    let again = p.decide(&body).await.json();
    assert_eq!((again["action"].as_str(), again["decisionId"].as_str()), (Some("allow"), a["decisionId"].as_str()));
    let outcomes: Vec<String> =
        p.plugin_records("", 2).await.iter().map(|r| r["outcome"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(outcomes, ["held", "approved"]);
}

#[tokio::test]
async fn an_allow_always_grant_for_a_message_recipient_lets_the_next_one_through() {
    let p = Plugin::start("message_allowlist = [\"@team\"]", "").await;
    let send = |to: &str, text: &str, call: &str| {
        tool_call("message", json!({"action": "send", "target": to, "message": text}), "run-3", call)
    };
    assert_eq!(p.decide(&send("@team", "hi", "c1")).await.json()["action"], "allow", "allow-listed");
    let held = p.spawn_decide(send("+15550100", "the invoice is ready", "c2"));
    let pending = p.rig.wait_pending("main", 1).await;
    assert_eq!(pending[0]["rule"], "plugin.message_recipient");
    // The inbox shows the number masked, in the subject and in the reason alike, and so the
    // grant holds it (a grant never holds it).
    let first = pending[0]["subject"]["recipients"][0].as_str().unwrap().to_string();
    assert!(first.starts_with("[phone:"), "{}", pending[0]);
    let reason = pending[0]["reason"].as_str().unwrap();
    assert!(reason.contains(&first) && !reason.contains("15550100"), "{reason}");
    assert_eq!(p.decide_approval(&pending[0], "allow-always").await.status, 200);
    assert_eq!(held.await.unwrap().json()["action"], "allow");
    let next = p.decide(&send("+15550100", "a different text", "c3")).await.json();
    assert_eq!(next["action"], "allow", "{next}");
    assert!(next["rule"].as_str().unwrap().starts_with("grant:"), "{next}");
    // Another recipient is still held.
    let other = p.spawn_decide(send("+15550199", "x", "c4"));
    let pending = p.rig.wait_pending("main", 1).await;
    let second = pending[0]["subject"]["recipients"][0].as_str().unwrap();
    assert!(second.starts_with("[phone:") && second != first, "{}", pending[0]);
    assert!(pending[0]["reason"].as_str().unwrap().contains(second), "{}", pending[0]);
    assert_eq!(p.decide_approval(&pending[0], "deny").await.status, 200);
    assert_eq!(other.await.unwrap().json()["action"], "block");
}

#[tokio::test]
async fn a_hold_ends_before_the_plugin_gives_up_with_a_clear_reason() {
    let p = Plugin::start("", "").await;
    let mut body = tool_call("write", json!({"path": "/opt/x", "content": "x"}), "run-4", "c1");
    // The plugin waits 3 s: the approval expires after 1 s (3 s minus the 1.5 s margin, whole seconds).
    body["timeoutMs"] = json!(3000);
    let t0 = Instant::now();
    let a = p.decide(&body).await.json();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(2900), "answered after {took:?}");
    assert_eq!(a["action"], "block", "{a}");
    assert!(a["reason"].as_str().unwrap().contains("nobody approved it in time"), "{a}");
    let ap =
        get(&p.rig.control(&format!("/api/v1/approvals/{}", a["approvalId"].as_str().unwrap())), &bearer(ADMIN)).await;
    assert_eq!(ap.json()["status"], "expired");
    // Too little time to ask anyone: blocked at once, saying what to raise.
    body["timeoutMs"] = json!(1200);
    body["toolCallId"] = json!("c2");
    let a = p.decide(&body).await.json();
    assert_eq!(a["action"], "block");
    assert!(a["reason"].as_str().unwrap().contains("hooks.timeouts.before_tool_call"), "{a}");
}

#[tokio::test]
async fn a_plugin_that_hangs_up_cancels_its_hold() {
    let p = Plugin::start("", "").await;
    let body =
        serde_json::to_vec(&tool_call("write", json!({"path": "/opt/y", "content": "x"}), "run-5", "c1")).unwrap();
    let mut s = tokio::net::TcpStream::connect(p.rig.sidecar.data_addr).await.unwrap();
    let head = format!(
        "POST /v1/decide HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        p.token,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let pending = p.rig.wait_pending("main", 1).await;
    drop(s); // the run was aborted: the plugin closes the request
    let url = p.rig.control(&format!("/api/v1/approvals/{}", pending[0]["id"].as_str().unwrap()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = get(&url, &bearer(ADMIN)).await.json();
        if a["status"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "still {a}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recs = p.plugin_records("cancelled", 1).await;
    assert!(recs.iter().any(|r| r["reason"].as_str().unwrap_or("").contains("closed the request")), "{recs:?}");
}

#[tokio::test]
async fn killed_agents_and_open_breakers_block_turns_before_any_model_call() {
    let prices = "[prices.\"gpt-4o-mini\"]\ninput = 1000.0\noutput = 1000.0\n";
    let p = Plugin::start("", prices).await;
    let a = p.decide(&agent_run("main", "run-6")).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["action"], "allow");

    let r =
        post_json(&p.rig.control("/api/v1/agents/main/kill"), &bearer(ADMIN), &json!({"reason": "runaway loop"})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = p.decide(&agent_run("main", "run-7")).await.json();
    assert_eq!(
        (a["action"].as_str(), a["reason"].as_str(), a["category"].as_str()),
        (Some("block"), Some("agent_killed"), Some("clawbutler"))
    );
    let msg = a["message"].as_str().unwrap();
    assert!(msg.contains("stopped agent 'main'") && msg.contains("runaway loop"), "{msg}");
    let t = p.decide(&tool_call("read", json!({"path": "a.md"}), "run-7", "c1")).await.json();
    assert_eq!((t["action"].as_str(), t["rule"].as_str()), (Some("block"), Some("kill_switch")));

    // ops spends through the proxy under a daily budget; then the limit is cut below what was
    // spent (an operator's change): the breaker is open and ops' next turn is refused.
    let put = |limit: f64| json!({"scope": "agent:ops", "window": "daily", "limit_usd": limit});
    let budget_url = p.rig.control("/api/v1/budgets/ops-daily");
    let r = testkit::http::send(
        http::Method::PUT,
        &budget_url,
        &[("authorization", &format!("Bearer {ADMIN}")), ("content-type", "application/json")],
        bytes::Bytes::from(put(100.0).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(&p.rig.url("/a/ops/fake/v1/chat/completions"), &[], &chat("gpt-4o-mini", "spend it all")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(p.decide(&agent_run("ops", "run-8a")).await.json()["action"], "allow", "within the budget");
    let deadline = Instant::now() + Duration::from_secs(10);
    let spent = loop {
        let b = get(&budget_url, &bearer(ADMIN)).await.json();
        if b["reserved_usd"].as_f64() == Some(0.0) && b["spent_usd"].as_f64().unwrap_or(0.0) > 0.0 {
            break b["spent_usd"].as_f64().unwrap();
        }
        assert!(Instant::now() < deadline, "the call was never charged: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let r = testkit::http::send(
        http::Method::PUT,
        &budget_url,
        &[("authorization", &format!("Bearer {ADMIN}")), ("content-type", "application/json")],
        bytes::Bytes::from(put(spent / 2.0).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    let a = loop {
        let a = p.decide(&agent_run("ops", "run-8")).await.json();
        if a["action"] == "block" || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((a["action"].as_str(), a["reason"].as_str()), (Some("block"), Some("budget_exceeded")), "{a}");
    assert!(a["message"].as_str().unwrap().contains("daily limit reached"), "{a}");
    let turns = p.plugin_records("denied", 2).await;
    assert!(turns.iter().filter(|r| r["details"]["kind"] == "agent_run").count() >= 2, "{turns:?}");
    let m = p.rig.metrics().await;
    assert!(m.contains("clawbutler_plugin_turns_total{action=\"block\"}"), "{m}");
}

#[tokio::test]
async fn a_policy_can_rewrite_the_parameters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.rego"),
        r#"package clawbutler

decision := {"action": "allow", "rule": "test.rewrite", "reason": "kept inside", "risk": "low",
    "obligations": {"rewrite": {"path": "/srv/agents/main/quarantine.txt"}}} if {
    input.plugin.tool_name == "write"
} else := {"action": "allow", "rule": "test.allow", "reason": "ok", "risk": "low"}
"#,
    )
    .unwrap();
    let p = Plugin::start(&format!("dir = \"{}\"\nwatch = false", dir.path().display()), "").await;
    let a = p.decide(&tool_call("write", json!({"path": "/etc/x", "content": "x"}), "run-9", "c1")).await.json();
    assert_eq!(a["action"], "rewrite", "{a}");
    assert_eq!(a["params"], json!({"path": "/srv/agents/main/quarantine.txt"}));
    let recs = p.plugin_records("rewritten", 1).await;
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["details"]["rewrite"]["path"], "/srv/agents/main/quarantine.txt");
}

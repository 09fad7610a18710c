//! The other faces that let calls through, under the same full disk: an MCP `tools/call`
//! (answered with an `isError` result naming the audit log, the server never reached) and a
//! plugin-gate decision (blocked, fail closed), both counted by face; after the disk is freed
//! both go through again without a restart.

use std::sync::Arc;

use clawbutler::app::Sidecar;
use serde_json::{json, Value};
use testkit::http::post_json;
use testkit::mcp::result_text;
use testkit::rig::{bearer, bundle_dir, Rig, SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

use super::disk::TestDisk;
use super::{audit_table, readyz, series, trigger_outage};

async fn decide(rig: &Rig, token: &str, call: &str) -> Value {
    let body = json!({"version": 1, "kind": "tool_call", "agentId": "main", "sessionKey": "agent:main:main",
        "sessionId": "s-1", "runId": "r-1", "toolCallId": call, "toolName": "read",
        "params": {"path": "/srv/agents/main/notes.txt"}, "requester": {"senderIsOwner": true},
        "workspace": "/srv/agents/main", "run": {"trigger": "user"}, "timeoutMs": 599000});
    let r = post_json(&rig.url("/v1/decide"), &bearer(token), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_and_plugin_calls_are_refused_while_the_log_cannot_write() {
    let Some(tools) = testkit::mcp::find_or_skip("audit_failure::faces") else { return };
    let scripts = Arc::new(tools.scripts());
    let log = scripts.dir().join("calls.jsonl");
    let fx = scripts.fixture_http(&[("FIXTURE_CALL_LOG", log.to_str().unwrap())]);
    let disk = TestDisk::faulty();
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tables = format!(
        "{}\n[[mcp_servers]]\nname = \"fx\"\ntransport = \"streamable-http\"\nurl = \"{}\"\n",
        audit_table(""),
        fx.url()
    );
    let sc = SidecarConfig::new(disk.data_dir())
        .upstreams(&up.base_url())
        .policy_dir(&bundle_dir(dir.path(), &[]))
        .table(&tables);
    let mut cfg = sc.build();
    cfg.audit.test_disk = disk.hook();
    let rig = Rig { sidecar: Sidecar::start(cfg).await.unwrap(), up, dir, cfg: sc };

    let r = post_json(&rig.control("/api/v1/agents/main/mcp-tokens"), &bearer(ADMIN), &json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let mcp_token = r.json()["token"].as_str().unwrap().to_string();
    let r =
        post_json(&rig.control("/api/v1/plugin-tokens"), &bearer(ADMIN), &json!({"gateway": "ws://gw:18789"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let plugin_token = r.json()["token"].as_str().unwrap().to_string();
    let endpoint = rig.url("/mcp/agent/main");
    let echo = |text: &str| json!({"op": "call", "name": "fx__echo", "args": {"text": text}});

    // Healthy: both faces work.
    let report =
        scripts.client(json!({"url": endpoint, "token": mcp_token, "steps": [echo("before the outage")]})).await;
    assert_eq!(result_text(&report["results"][0]["ok"]), "echo: before the outage", "{report}");
    assert_eq!(decide(&rig, &plugin_token, "c-1").await["action"], "allow");

    disk.fill();
    trigger_outage(&rig).await;

    // MCP: an isError result that names the audit log; the server never saw the call.
    let report =
        scripts.client(json!({"url": endpoint, "token": mcp_token, "steps": [echo("during the outage")]})).await;
    let r = &report["results"][0]["ok"];
    assert_eq!(r["isError"], true, "{report}");
    assert!(result_text(r).contains("audit log cannot record"), "{report}");
    let reached = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!reached.contains("during the outage"), "the server was called: {reached}");

    // Plugin gate: blocked, saying why.
    let a = decide(&rig, &plugin_token, "c-2").await;
    assert_eq!(a["action"], "block", "{a}");
    assert!(a["reason"].as_str().unwrap().contains("cannot record decisions"), "{a}");

    let m = rig.metrics().await;
    assert!(series(&m, "clawbutler_audit_refused_calls_total{face=\"mcp\"}") >= 1.0, "{m}");
    assert!(series(&m, "clawbutler_audit_refused_calls_total{face=\"plugin\"}") >= 1.0, "{m}");

    // Freed: both go through again, no restart.
    disk.free_all();
    for _ in 0..400 {
        if readyz(&rig).await.0 == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(readyz(&rig).await.0, 200, "the log did not recover");
    let report =
        scripts.client(json!({"url": endpoint, "token": mcp_token, "steps": [echo("after the outage")]})).await;
    assert_eq!(result_text(&report["results"][0]["ok"]), "echo: after the outage", "{report}");
    assert_eq!(decide(&rig, &plugin_token, "c-3").await["action"], "allow");
}

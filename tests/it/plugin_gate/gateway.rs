//! The gateway side, against the fake gateway: plugin health, native approvals, and an exec
//! approved at the gate that OpenClaw then asks about.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::fake_gateway::{event, Cmd, FakeGateway, TOKEN};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, Rig, ADMIN};

use super::{tool_call, Plugin};

const ENV: &str = "PLUGIN_GATE_FAKE_GATEWAY_TOKEN";

/// A sidecar linked to a fake gateway, with a plugin token for it (created without naming
/// the gateway: it defaults to the linked one).
async fn linked(gw: &FakeGateway, plugin_table: &str) -> Plugin {
    std::env::set_var(ENV, TOKEN);
    let table = format!(
        "[gateway]\nurl = \"{}\"\ntoken_env = \"{ENV}\"\nreconnect_initial_ms = 200\nreconnect_max_ms = 1000\n{plugin_table}",
        gw.url()
    );
    let rig = Rig::builder().table(&table).start().await;
    let link = rig.sidecar.gateway.clone().unwrap().link().clone();
    assert!(link.wait_connected(Duration::from_secs(10)).await);
    let r = post_json(&rig.control("/api/v1/plugin-tokens"), &bearer(ADMIN), &json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["gateway"], gw.url().trim_end_matches('/'));
    let token = r.json()["token"].as_str().unwrap().to_string();
    Plugin { rig, token }
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {within:?} waiting for {what}");
}

fn plugin_check(ready: &Value) -> Option<Value> {
    ready["checks"].as_array()?.iter().find(|c| c["name"] == "plugin").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_plugin_is_disabled_is_ungoverned_and_readyz_says_so() {
    let gw = FakeGateway::start().await;
    *gw.shared.plugins.lock().unwrap() = json!({"plugins": [{"id": "clawbutler", "enabled": true, "state": "enabled",
        "origin": "config", "version": "0.1.0", "runtime": {"state": "active"}}]});
    let p = linked(&gw, "[plugin]\nheartbeat_s = 1").await;
    let control = p.rig.control("");
    // Right after the start, with nothing heard yet: pending, and /readyz does not fail for it.
    let ready = get(&format!("{control}/readyz"), &[]).await;
    let check =
        plugin_check(&ready.json()).unwrap_or_else(|| panic!("a plugin check once a token exists: {}", ready.text()));
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(ready.status, 200);

    let beat = json!({"version": 1, "kind": "heartbeat", "plugin": "0.1.0", "pid": 4242, "beat": 1,
        "registeredAt": "2026-12-01T00:00:00Z", "timeoutMs": 599000, "agentRunTimeoutMs": 9000});
    assert_eq!(p.report(&beat).await.status, 204);
    let url = format!("{control}/api/v1/plugins");
    wait_for("plugins.list read over the link", Duration::from_secs(10), || {
        let url = url.clone();
        async move { get(&url, &bearer(ADMIN)).await.json()["items"][0]["listed"]["state"] == "active" }
    })
    .await;
    let plugins = get(&url, &bearer(ADMIN)).await.json();
    let me = &plugins["items"][0];
    assert_eq!(me["governance"], "governed", "{plugins}");
    assert_eq!(me["listed"]["state"], "active");
    assert_eq!(me["last_beat"]["pid"], 4242);
    let agents_url = format!("{control}/api/v1/agents");
    wait_for("agents listed over the link", Duration::from_secs(10), || {
        let url = agents_url.clone();
        async move {
            let a = get(&url, &bearer(ADMIN)).await.json();
            a["items"].as_array().is_some_and(|i| i.iter().any(|a| a["id"] == "main"))
        }
    })
    .await;
    let agents = get(&agents_url, &bearer(ADMIN)).await.json();
    assert_eq!(agents["gateway"]["plugin"]["governance"], "governed", "{agents}");
    let main = agents["items"].as_array().unwrap().iter().find(|a| a["id"] == "main").unwrap().clone();
    assert_eq!(main["built_in_tools"]["governance"], "governed", "{main}");

    // Disabled in OpenClaw (a hot config change): the link re-reads plugins.list.
    *gw.shared.plugins.lock().unwrap() = json!({"plugins": [{"id": "clawbutler", "enabled": false, "state": "disabled",
        "runtime": {"state": "unloaded"}}]});
    gw.cmd(Cmd::Send(event("config.changed", json!({}), None)));
    let url = format!("{control}/readyz");
    wait_for("readyz to fail on the plugin", Duration::from_secs(10), || {
        let url = url.clone();
        async move { get(&url, &[]).await.status == 503 }
    })
    .await;
    let ready = get(&url, &[]).await.json();
    let check = plugin_check(&ready).unwrap();
    assert_eq!(check["ok"], false);
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("built-in tools are not governed") && detail.contains("unloaded"), "{detail}");
    let main = get(&format!("{control}/api/v1/agents/main"), &bearer(ADMIN)).await.json();
    assert_eq!(main["built_in_tools"]["governance"], "ungoverned", "{main}");
    // The change is recorded (the sweeper runs every 5 s).
    wait_for("the ungoverned record", Duration::from_secs(15), || async {
        !p.plugin_records("ungoverned", 0).await.is_empty()
    })
    .await;
    let m = p.rig.metrics().await;
    assert!(m.contains("clawbutler_plugin_gateways{governance=\"ungoverned\"} 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_approval_is_held_in_the_inbox_and_resolved_over_the_link() {
    let gw = FakeGateway::start().await;
    let p = linked(&gw, "[plugin]\nnative_approval_channels = [\"webchat\"]").await;
    let mut body = tool_call("write", json!({"path": "/etc/motd", "content": "hi"}), "idem-42", "call17");
    body["requester"] = json!({"channel": "webchat", "senderId": "gateway-client", "senderIsOwner": true});
    body["run"] = json!({"trigger": "user", "channel": "webchat"});
    let a = p.decide(&body).await.json();
    assert_eq!(a["action"], "approve", "{a}");
    assert_eq!(a["allowedDecisions"], json!(["allow-once", "deny"]));
    assert!(a["title"].as_str().unwrap().contains("write") && a["timeoutMs"].as_u64().unwrap() <= 600_000, "{a}");
    // A CLI run of the same kind is held in place instead (OpenClaw cannot ask anyone there).
    let cli = p.spawn_decide(tool_call("write", json!({"path": "/etc/issue", "content": "x"}), "run-cli", "c1"));

    // OpenClaw asks its approvers; ClawButler holds it in its inbox.
    gw.cmd(Cmd::Send(event(
        "plugin.approval.requested",
        json!({"approvalKind": "plugin", "id": "plugin:0690b757", "createdAtMs": 1, "expiresAtMs": 2,
            "request": {"pluginId": "clawbutler", "title": a["title"], "toolName": "write", "toolCallId": "call17",
                "agentId": "main", "sessionKey": "agent:main:main", "runId": "idem-42", "turnSourceChannel": "webchat"}}),
        None,
    )));
    let pending = p.rig.wait_pending("main", 2).await;
    let native = pending
        .iter()
        .find(|x| x["external_id"] == "plugin:0690b757")
        .cloned()
        .unwrap_or_else(|| panic!("{pending:?}"));
    assert_eq!(native["rule"], "plugin.file_outside_workspace");
    assert_eq!(p.decide_approval(&native, "allow-once").await.status, 200);
    let calls = || gw.shared.calls.lock().unwrap().clone();
    wait_for("plugin.approval.resolve sent", Duration::from_secs(5), || async {
        calls().iter().any(|(_, m, params)| m == "plugin.approval.resolve" && params["id"] == "plugin:0690b757")
    })
    .await;
    let (_, _, params) = calls().into_iter().find(|(_, m, _)| m == "plugin.approval.resolve").unwrap();
    assert_eq!(params["decision"], "allow-once");
    let cli_ap = pending.iter().find(|x| x["external_id"].is_null()).unwrap().clone();
    assert_eq!(p.decide_approval(&cli_ap, "deny").await.status, 200);
    assert_eq!(cli.await.unwrap().json()["action"], "block");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_approved_at_the_gate_is_not_asked_again_by_exec_approvals() {
    let gw = FakeGateway::start().await;
    let p = linked(&gw, "").await;
    let cmd = "sudo systemctl restart nginx";
    let held = p.spawn_decide(tool_call("exec", json!({"command": cmd}), "run-x", "call_9"));
    let pending = p.rig.wait_pending("main", 1).await;
    assert_eq!(pending[0]["rule"], "exec.privilege_escalation");
    assert_eq!(p.decide_approval(&pending[0], "allow-once").await.status, 200);
    assert_eq!(held.await.unwrap().json()["action"], "allow");
    // OpenClaw's own exec approval for the same tool call (its id may keep the underscore).
    gw.cmd(Cmd::Send(event(
        "exec.approval.requested",
        json!({"approvalKind": "exec", "id": "ex-1", "request": {"command": cmd, "agentId": "main",
            "sessionKey": "agent:main:main", "runId": "run-x", "toolCallId": "call_9", "cwd": "/srv/agents/main"}}),
        None,
    )));
    let calls = || gw.shared.calls.lock().unwrap().clone();
    wait_for("exec.approval.resolve allow-once", Duration::from_secs(5), || async {
        calls().iter().any(|(_, m, params)| m == "exec.approval.resolve" && params["decision"] == "allow-once")
    })
    .await;
    let open = get(&p.rig.control("/api/v1/approvals?status=pending&agent=main"), &bearer(ADMIN)).await.json();
    assert_eq!(open["items"].as_array().unwrap().len(), 0, "not held a second time: {open}");
    // Written in the audit log's next group commit, so listed a moment after the resolve.
    wait_for("the exec audited as approved at the gate", Duration::from_secs(5), || async {
        p.rig.audit("kind=exec").await.iter().any(|r| r["rule"] == "plugin_gate.approved")
    })
    .await;
}

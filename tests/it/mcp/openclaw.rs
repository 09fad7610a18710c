//! A real OpenClaw 2026.9.6 gateway using the MCP endpoint, as `attach` wires it: one
//! `cb-<agent>` MCP server per agent pointing at `/mcp/agent/<agent>` with that agent's token and
//! a `requestTimeoutMs` that fits the hold timeout, each agent denying the other's prefix. The
//! scripted model calls MCP tools through OpenClaw's default Tool Search (`tool_call {id, args}`).
//! Checked: an allowed call reaches the fixture through the sidecar attributed to the agent; a
//! held call approved through the control API completes the turn; a denied one shows the reason
//! to the model; the other agent's tools are not reachable.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, Gateway};

use super::{calls_reached, http_server, tools, McpRig, DENY_RULES};

/// The gateway config: one provider per agent through the sidecar's model path, and one MCP
/// server per agent through its MCP endpoint.
fn gateway_config(m: &McpRig, tokens: &[(&str, String)]) -> Value {
    let data = m.rig.sidecar.data_addr;
    let (mut providers, mut entries, mut servers) =
        (serde_json::Map::new(), serde_json::Map::new(), serde_json::Map::new());
    for (agent, token) in tokens {
        let provider = format!("cb-{agent}");
        providers.insert(
            provider.clone(),
            json!({"baseUrl": format!("http://{data}/a/{agent}/fake/v1"), "apiKey": "k", "api": "openai-completions",
                   "timeoutSeconds": 120,
                   "models": [{"id": "gpt-4o-mini", "name": "gpt-4o-mini", "reasoning": false, "input": ["text"],
                               "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
                               "contextWindow": 128000, "maxTokens": 4096}]}),
        );
        let others: Vec<String> =
            tokens.iter().filter(|(a, _)| a != agent).map(|(a, _)| format!("cb-{a}__*")).collect();
        entries.insert(
            agent.to_string(),
            json!({"model": format!("{provider}/gpt-4o-mini"), "modelPolicy": {"allow": [format!("{provider}/*")]},
                   "tools": {"deny": others}}),
        );
        servers.insert(
            format!("cb-{agent}"),
            json!({"url": m.endpoint(agent), "transport": "streamable-http",
                   "headers": {"authorization": format!("Bearer {token}")}, "requestTimeoutMs": 120000}),
        );
    }
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": providers},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": entries},
        "mcp": {"servers": servers},
    })
}

/// The message that makes the scripted model call `tool` (an OpenClaw tool id) with `args`.
fn call(tool: &str, args: Value) -> String {
    format!("CALL_TOOL: tool_call {}", json!({"id": tool, "args": args}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_agents_call_mcp_tools_through_the_sidecar() {
    let Some(install) = find_or_skip("mcp::openclaw::openclaw_agents_call_mcp_tools_through_the_sidecar") else {
        return;
    };
    let Some(tools) = tools("mcp::openclaw::openclaw_agents_call_mcp_tools_through_the_sidecar") else { return };
    let scripts = Arc::new(tools.scripts());
    let log = scripts.dir().join("calls.jsonl");
    let fx = scripts.fixture_http(&[("FIXTURE_CALL_LOG", log.to_str().unwrap())]);
    let m = McpRig::start(
        &format!("[mcp]\nclient_timeout_s = 120\n{}", http_server("fx", &fx.url(), "")),
        &[("zz_mcp_rules.rego", DENY_RULES)],
    )
    .await;
    let tokens = [("main", m.token("main").await), ("ops", m.token("ops").await)];
    let gw = Gateway::start(&install, gateway_config(&m, &tokens)).await;
    eprintln!("openclaw gateway ready in {:?}", gw.started_in());
    let turn = |agent: &'static str, msg: String| {
        let gw = &gw;
        async move {
            let t = gw.agent_turn(agent, &msg).await;
            let text = t.reply_text().unwrap_or_default();
            assert!(t.ok(), "agent {agent} turn failed:\n{}\n{}", t.describe(), gw.log_tail(40));
            text
        }
    };

    // Allowed: the call reaches the fixture through the sidecar, attributed to main.
    let text = turn("main", call("cb-main__fx__echo", json!({"text": "from openclaw"}))).await;
    assert!(text.contains("echo: from openclaw"), "{text}");
    assert!(calls_reached(&log).iter().any(|c| c["args"]["text"] == "from openclaw"));
    let recs = m.tool_records("main", 1).await;
    assert_eq!(recs[0]["subject"]["tool"], "echo", "{recs:?}");
    assert_eq!(recs[0]["agent"], "main");
    assert_eq!(recs[0]["details"]["client"], "openclaw-bundle-mcp", "{}", recs[0]);

    // Denied on its arguments: the model reads the reason; the fixture never sees the call.
    let text = turn("main", call("cb-main__fx__echo", json!({"text": "rm -rf /"}))).await;
    assert!(text.contains("DENIED by ClawButler policy") && text.contains("test.no_rm"), "{text}");
    assert!(!calls_reached(&log).iter().any(|c| c["args"]["text"] == "rm -rf /"));

    // Held, approved in the inbox: the turn completes with the tool's result.
    let approver = m.rig.token("approver", "ops-human").await;
    let held = turn("main", call("cb-main__fx__send_message", json!({"to": "bob", "text": "from openclaw"})));
    let approve = async {
        let a = m.rig.wait_pending("main", 1).await[0].clone();
        assert_eq!(a["subject"]["tool"], "send_message", "{a}");
        let r = m
            .rig
            .decide(
                &approver,
                a["id"].as_str().unwrap(),
                &json!({"decision": "allow-once", "expected_version": 1}),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    };
    let (text, ()) = tokio::join!(held, approve);
    assert!(text.contains("sent to bob: from openclaw"), "{text}\n{}", gw.log_tail(20));

    // The other agent cannot reach main's tools (its own endpoint has them under its own prefix).
    let before = calls_reached(&log).len();
    let text = turn("ops", call("cb-main__fx__echo", json!({"text": "from ops"}))).await;
    assert!(!text.contains("echo: from ops"), "ops reached main's tool: {text}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(calls_reached(&log).len(), before, "ops's call reached the server");
    assert!(m.rig.audit("agent=main&kind=tool_call").await.iter().all(|r| r["subject"]["args"]["text"] != "from ops"));
    let text = turn("ops", call("cb-ops__fx__echo", json!({"text": "from ops"}))).await;
    assert!(text.contains("echo: from ops"), "{text}");
    assert_eq!(m.tool_records("ops", 1).await[0]["agent"], "ops");
}

//! The everyday path through the fixture server over Streamable HTTP: the filtered,
//! namespaced list; an allowed call; a call denied on its arguments that never reaches the
//! server; a result's secrets masked before the client sees them; audit records with the
//! arguments, the decision and the result's digest; metrics and the servers view.

use std::sync::Arc;

use serde_json::json;
use testkit::mcp::result_text;

use super::{calls_reached, client, http_server, names, ok, tools, McpRig, DENY_RULES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_decided_masked_and_audited() {
    let Some(tools) = tools("mcp::proxy::calls_are_decided_masked_and_audited") else { return };
    let scripts = Arc::new(tools.scripts());
    let log = scripts.dir().join("calls.jsonl");
    let fx = scripts.fixture_http(&[("FIXTURE_CALL_LOG", log.to_str().unwrap())]);
    let m = McpRig::start(&http_server("fx", &fx.url(), ""), &[("zz_mcp_rules.rego", DENY_RULES)]).await;
    let token = m.token("main").await;
    let report = client(
        &scripts,
        &m.endpoint("main"),
        &token,
        json!([
            {"op": "list"},
            {"op": "call", "name": "fx__echo", "args": {"text": "hello"}},
            {"op": "call", "name": "fx__echo", "args": {"text": "please rm -rf / now"}},
            {"op": "call", "name": "fx__test_secret"},
            {"op": "call", "name": "fx__test_env"},
        ]),
    )
    .await;
    assert_eq!(report["protocolVersion"], "2025-11-25", "{report}");
    assert_eq!(report["serverInfo"]["name"], "clawbutler");

    // The list: namespaced, and a tool the policy always denies is not offered.
    let listed = names(ok(&report, 0));
    assert!(listed.contains(&"fx__echo".to_string()) && listed.contains(&"fx__test_secret".to_string()), "{listed:?}");
    assert!(!listed.contains(&"fx__test_env".to_string()), "an always-denied tool is listed: {listed:?}");
    assert!(listed.iter().all(|n| n.starts_with("fx__")), "{listed:?}");
    let echo = ok(&report, 0)["tools"].as_array().unwrap().iter().find(|t| t["name"] == "fx__echo").unwrap().clone();
    assert_eq!(echo["inputSchema"]["properties"]["text"]["type"], "string", "the schema passes unchanged: {echo}");

    // Allowed.
    let r = ok(&report, 1);
    assert_eq!(result_text(r), "echo: hello");
    assert!(r.get("isError").is_none_or(|e| e == false), "{r}");

    // Denied on its arguments: an isError result with the rule and reason; the server never saw it.
    let r = ok(&report, 2);
    assert_eq!(r["isError"], true, "{r}");
    let text = result_text(r);
    assert!(text.contains("test.no_rm") && text.contains("echo must not carry rm -rf"), "{text}");
    let reached = calls_reached(&log);
    assert!(reached.iter().all(|c| !c["args"]["text"].as_str().unwrap_or("").contains("rm -rf")), "{reached:?}");
    assert!(reached.iter().any(|c| c["args"]["text"] == "hello"), "{reached:?}");

    // A secret in the result is masked, text and structured content alike.
    let r = ok(&report, 3);
    let text = result_text(r);
    assert!(!text.contains("ghp_0123456789"), "the token reached the client: {text}");
    assert!(!text.contains("MC4CAQAwBQYDK2VwBCIEIOf4kE"), "the PEM body reached the client: {text}");
    assert!(text.starts_with("GITHUB_TOKEN="), "{text}");
    let structured = r["structuredContent"]["token"].as_str().unwrap();
    assert!(!structured.contains("ghp_0123456789"), "{r}");
    assert_eq!(r["structuredContent"]["user"], "ada", "non-secrets are left alone: {r}");

    // A tool the policy denies by name cannot be called even when the client knows its name.
    let r = &report["results"][4];
    let denied = r.get("ok").map(|v| v["isError"] == true).unwrap_or(false)
        || r["error"]["message"].as_str().unwrap_or("").contains("Unknown tool");
    assert!(denied, "{r}");
    assert!(calls_reached(&log).iter().all(|c| c["name"] != "test_env"));

    // Audit: one record per call, with the arguments, the decision and the result's status.
    let recs = m.tool_records("main", 3).await;
    let find = |tool: &str, text: Option<&str>| {
        recs.iter()
            .find(|r| {
                r["subject"]["tool"] == tool && text.is_none_or(|t| r["subject"]["args"]["text"].as_str() == Some(t))
            })
            .unwrap_or_else(|| panic!("no record for {tool} {text:?}: {recs:#?}"))
            .clone()
    };
    let allowed = find("echo", Some("hello"));
    assert_eq!(allowed["subject"]["server"], "fx");
    assert_eq!(allowed["action"], "allow", "{allowed}");
    assert_eq!(allowed["outcome"], "completed", "{allowed}");
    assert_eq!(allowed["details"]["result"]["status"], "ok", "{allowed}");
    assert_eq!(allowed["details"]["result"]["sha256"].as_str().map(str::len), Some(64), "{allowed}");
    assert_eq!(allowed["session"].as_str().map(str::len), Some(43), "the MCP session is recorded: {allowed}");
    let denied = find("echo", Some("please rm -rf / now"));
    assert_eq!(denied["action"], "deny", "{denied}");
    assert_eq!(denied["rule"], "test.no_rm", "{denied}");
    assert_eq!(denied["outcome"], "denied", "{denied}");
    let secret = find("test_secret", None);
    assert_eq!(secret["details"]["secrets_in_result"]["masked"], true, "{secret}");
    assert!(secret["details"]["secrets_in_result"]["found"].as_u64().unwrap() >= 2, "{secret}");
    let all = serde_json::to_string(&recs).unwrap();
    assert!(!all.contains("ghp_0123456789"), "a secret reached the audit log");

    // Metrics and the servers view.
    let metrics = m.rig.metrics().await;
    assert!(metrics.contains("clawbutler_mcp_calls_total{action=\"allow\",server=\"fx\"}"), "{metrics}");
    assert!(metrics.contains("clawbutler_mcp_calls_total{action=\"deny\",server=\"fx\"}"), "{metrics}");
    let servers = m.servers().await;
    assert_eq!(servers[0]["name"], "fx", "{servers:?}");
    assert_eq!(servers[0]["health"]["state"], "healthy", "{servers:?}");
}

/// The session's earlier calls (`input.mcp.calls`) are built only for a bundle that may read
/// them (`policy/src/reads.rs`); one that does gets them: here the third echo of a session is
/// refused, and a new session starts from none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_that_reads_the_session_calls_gets_them() {
    let Some(tools) = tools("mcp::proxy::a_bundle_that_reads_the_session_calls_gets_them") else { return };
    let scripts = Arc::new(tools.scripts());
    let fx = scripts.fixture_http(&[]);
    let rules = r#"package clawbutler

call_denies contains f if {
	input.kind == "tool_call"
	input.mcp.phase == "call"
	input.tool.name == "echo"
	count([c | c := input.mcp.calls[_]; c.tool == "echo"; c.action == "allow"]) >= 2
	f := {"rule": "test.two_echoes", "reason": "two echoes per session", "risk": "low"}
}
"#;
    let m = McpRig::start(&http_server("fx", &fx.url(), ""), &[("zz_calls.rego", rules)]).await;
    let token = m.token("main").await;
    let three = json!([
        {"op": "call", "name": "fx__echo", "args": {"text": "a"}},
        {"op": "call", "name": "fx__echo", "args": {"text": "b"}},
        {"op": "call", "name": "fx__echo", "args": {"text": "c"}},
    ]);
    for _session in 0..2 {
        let report = client(&scripts, &m.endpoint("main"), &token, three.clone()).await;
        assert_eq!(result_text(ok(&report, 0)), "echo: a", "{report}");
        assert_eq!(result_text(ok(&report, 1)), "echo: b", "{report}");
        let r = ok(&report, 2);
        assert_eq!(r["isError"], true, "{r}");
        assert!(result_text(r).contains("test.two_echoes"), "{r}");
    }
}

//! The reference server `@modelcontextprotocol/server-everything` behind the sidecar, once
//! over Streamable HTTP and once as a stdio child, driven by the official TypeScript SDK
//! client: list, call, progress under the client's own token, an elicitation round trip
//! (the server asks, the client answers through the sidecar), and `get-env` with a secret in
//! its result masked. The stdio child starts with a clean environment plus what is configured.

use std::sync::Arc;

use serde_json::json;
use testkit::mcp::result_text;

use super::{http_server, names, ok, tools, McpRig};

/// A fake GitHub token (never real) the servers carry in their environment.
const FAKE: &str = "ghp_FAKE0123456789abcdefghijKLMNOP";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_http_and_stdio() {
    let Some(tools) = tools("mcp::everything::server_everything_over_http_and_stdio") else { return };
    let scripts = Arc::new(tools.scripts());
    let http = scripts.everything_http(&[("GITHUB_TOKEN", FAKE)]);
    let entry = tools.everything().display().to_string();
    let stdio = scripts.stdio_entry("evs", &[&entry, "stdio"], &format!("env = {{ GITHUB_TOKEN = \"{FAKE}\" }}"));
    let m = McpRig::start(&format!("{}{stdio}", http_server("evh", &http.url(), "")), &[]).await;
    let token = m.token("main").await;

    // get-env last: after a secret came back, "outbound" tools of the session would be held
    // (`mcp.secret_then_outbound`; the elicitation tool's name has "request" in it).
    let mut steps = vec![json!({"op": "list"})];
    for s in ["evh", "evs"] {
        steps.extend([
            json!({"op": "call", "name": format!("{s}__echo"), "args": {"message": format!("hi {s}")}}),
            json!({"op": "call", "name": format!("{s}__trigger-long-running-operation"), "args": {"duration": 1, "steps": 4}, "progress": true}),
            json!({"op": "call", "name": format!("{s}__trigger-elicitation-request")}),
        ]);
    }
    steps.extend(["evh", "evs"].map(|s| json!({"op": "call", "name": format!("{s}__get-env")})));
    let plan = json!({"url": m.endpoint("main"), "token": token, "steps": steps,
                      "elicit": {"action": "accept", "content": {"name": "Ada Lovelace"}}});
    let report = scripts.client(plan).await;

    let listed = names(ok(&report, 0));
    for s in ["evh", "evs"] {
        for t in ["echo", "get-env", "trigger-long-running-operation", "trigger-elicitation-request"] {
            assert!(listed.contains(&format!("{s}__{t}")), "{s}__{t} missing from {listed:?}");
        }
    }
    for (k, s) in ["evh", "evs"].iter().enumerate() {
        let base = 1 + k * 3;
        assert_eq!(result_text(ok(&report, base)), format!("Echo: hi {s}"), "{report}");
        let r = ok(&report, base + 1);
        assert!(result_text(r).contains("Long running operation completed"), "{r}");
        let r = ok(&report, base + 2);
        assert!(result_text(r).contains("Name: Ada Lovelace"), "the elicitation answer reached {s}: {r}");
        let env = result_text(ok(&report, 7 + k));
        assert!(env.contains("GITHUB_TOKEN"), "{s}: {env}");
        assert!(!env.contains(FAKE), "{s}: the secret reached the client: {env}");
        if *s == "evs" {
            assert!(!env.contains("CARGO_MANIFEST_DIR"), "the stdio child inherited the sidecar's environment: {env}");
        }
    }
    // Progress: only under the client's own token, in order, for both servers' operations.
    let progress = report["progress"].as_array().unwrap();
    assert!(progress.len() >= 6, "{report}");
    assert_eq!(report["elicitations"].as_array().map(Vec::len), Some(2), "{report}");

    // The last call's end record is appended after its answer: wait for it, not for a count.
    let mut env_rec = None;
    for _ in 0..100 {
        let recs = m.tool_records("main", 8).await;
        env_rec = recs.into_iter().find(|r| r["subject"]["server"] == "evs" && r["subject"]["tool"] == "get-env");
        if env_rec.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let env_rec = env_rec.expect("no audit record of evs get-env");
    assert_eq!(env_rec["details"]["secrets_in_result"]["masked"], true, "{env_rec}");
    let servers = m.servers().await;
    assert!(servers.iter().all(|s| s["health"]["state"] == "healthy"), "{servers:?}");
}

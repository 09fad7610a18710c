//! Issue #13, the MCP tool proxy (`/mcp/agent/{agent}`), end to end against the real parts:
//! the official TypeScript SDK client (`client.mjs`), the project's fixture server on the
//! TypeScript SDK, the reference server `server-everything` over Streamable HTTP and stdio,
//! and the official conformance suite, all installed by `scripts/install-mcp-tools.sh`
//! (`testkit::mcp`). The sidecar runs in process on the shipped policy bundle (plus a test
//! rule file where a test needs a deny). One submodule per area; the rig is here.

mod browser;
mod conformance;
mod edges;
mod everything;
mod holds;
mod openclaw;
mod proxy;

use std::sync::Arc;
use std::time::Duration;

use clawbutler::app::Sidecar;
use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::mcp::{Scripts, Tools};
use testkit::rig::{bearer, bundle_dir, Rig, SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

/// Test rules: argument-level and name-level denies (the shipped bundle has no MCP denies).
pub const DENY_RULES: &str = r#"package clawbutler

call_denies contains f if {
	input.kind == "tool_call"
	input.tool.name == "echo"
	is_object(input.tool.args)
	contains(object.get(input.tool.args, "text", ""), "rm -rf")
	f := {"rule": "test.no_rm", "reason": "echo must not carry rm -rf", "risk": "high"}
}

call_denies contains f if {
	input.kind == "tool_call"
	input.tool.name == "test_env"
	f := {"rule": "test.no_env", "reason": "environment dumps are not allowed", "risk": "high"}
}
"#;

/// The installed MCP tools, or `None` (skip) when absent and `CLAWBUTLER_E2E` is not 1.
pub fn tools(test: &str) -> Option<Tools> {
    testkit::mcp::find_or_skip(test)
}

/// A sidecar with `[[mcp_servers]]` (and `[mcp]`) tables, on the shipped bundle plus `rules`.
pub struct McpRig {
    pub rig: Rig,
}

impl McpRig {
    pub async fn start(tables: &str, rules: &[(&str, &str)]) -> McpRig {
        McpRig::start_with(tables, rules, "").await
    }

    /// With extra `[policies]` lines.
    pub async fn start_with(tables: &str, rules: &[(&str, &str)], policies: &str) -> McpRig {
        let up = ScriptedUpstream::start().await;
        let dir = tempfile::tempdir().unwrap();
        let cfg = SidecarConfig::new(&dir.path().join("data"))
            .upstreams(&up.base_url())
            .policy_dir(&bundle_dir(dir.path(), rules))
            .policies(policies)
            .table(tables);
        let sidecar = Sidecar::start(cfg.build()).await.unwrap();
        McpRig { rig: Rig { sidecar, up, dir, cfg } }
    }

    /// The agent's MCP endpoint.
    pub fn endpoint(&self, agent: &str) -> String {
        self.rig.url(&format!("/mcp/agent/{agent}"))
    }

    /// A new MCP token for `agent`, created through the control API.
    pub async fn token(&self, agent: &str) -> String {
        let r = post_json(&self.rig.control(&format!("/api/v1/agents/{agent}/mcp-tokens")), &bearer(ADMIN), &json!({}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// Tool-call audit records (newest first), without the `started` ones, waiting for `n`.
    pub async fn tool_records(&self, agent: &str, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let items: Vec<Value> = self
                .rig
                .audit(&format!("agent={agent}&kind=tool_call"))
                .await
                .into_iter()
                .filter(|i| i["outcome"] != "started")
                .collect();
            if items.len() >= n {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} tool_call records for {agent}");
    }

    /// `GET /api/v1/mcp/servers`.
    pub async fn servers(&self) -> Vec<Value> {
        let r = get(&self.rig.control("/api/v1/mcp/servers"), &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["items"].as_array().cloned().unwrap()
    }
}

/// `[[mcp_servers]]` for a Streamable HTTP server.
pub fn http_server(name: &str, url: &str, extra: &str) -> String {
    format!("[[mcp_servers]]\nname = \"{name}\"\ntransport = \"streamable-http\"\nurl = \"{url}\"\n{extra}\n")
}

/// Run the SDK client: `steps` against `url` with `token`.
pub async fn client(scripts: &Arc<Scripts>, url: &str, token: &str, steps: Value) -> Value {
    scripts.client(json!({"url": url, "token": token, "steps": steps})).await
}

/// The result of step `i` (panics with the whole report when the step failed).
pub fn ok(report: &Value, i: usize) -> &Value {
    let r = &report["results"][i];
    assert!(r.get("ok").is_some(), "step {i} failed: {r}\nreport: {report}");
    &r["ok"]
}

/// The tool names a `list` step returned.
pub fn names(list: &Value) -> Vec<String> {
    list["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

/// The lines of a fixture's call log (one JSON object per call that reached it).
pub fn calls_reached(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

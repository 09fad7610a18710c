//! The MCP section (report only for now; the MCP face adds its attach step here). MCP servers
//! are global in OpenClaw (`mcp.servers.<name>`); an agent reaches every enabled server its
//! tool policy does not deny (`tools.deny: ["<server>__*"]`, `openclaw-interception.md`
//! §2.3). A server is governed for an agent when it is that agent's sidecar endpoint
//! (`http://<sidecar>/mcp/agent/<agent>`).
//!
//! Merge seam (the MCP proxy's branch): its `mcp::attach` (`plan` of `mcp.servers` into
//! `[[mcp_servers]]`, `agent_entry` for `mcp.servers.cb-<agent>`, `deny_globs` for the other
//! agents' entries) is applied where `prepare` (`mod.rs`) builds `after`, next to the key and
//! hardening steps; its `[[mcp_servers]]` become `CbChange`s. This report needs no change: it
//! already reads those entries as governed.

use serde_json::Value;

use super::models::entry;
use super::report::{PathStatus, State, View};

/// The tool-name prefix OpenClaw gives a server: characters outside `[A-Za-z0-9_-]` become
/// `-`, and a name not starting with a letter gets `mcp-` in front.
pub fn prefix(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        s
    } else {
        format!("mcp-{s}")
    }
}

fn denied(config: &Value, id: &str, server: &str) -> bool {
    let pre = format!("{}__*", prefix(server));
    [entry(config, id).pointer("/tools/deny"), config.pointer("/tools/deny")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .any(|d| d == pre || d == "*" || d == "group:plugins" || d == "bundle-mcp")
}

/// The MCP paths of agent `id`.
pub fn report(view: &View<'_>, id: &str) -> Vec<PathStatus> {
    let mine = format!("http://{}/mcp/agent/{id}", view.sidecar);
    let mut out = Vec::new();
    for (name, s) in view.config.pointer("/mcp/servers").and_then(Value::as_object).into_iter().flatten() {
        if s.get("enabled").and_then(Value::as_bool) == Some(false) || denied(view.config, id, name) {
            continue;
        }
        let url = s.get("url").and_then(Value::as_str);
        let target =
            url.map(str::to_string).or_else(|| s.get("command").and_then(Value::as_str).map(|c| format!("stdio: {c}")));
        if url.is_some_and(|u| u.trim_end_matches('/') == mine) {
            out.push(PathStatus::new(
                format!("mcp server {name}"),
                target,
                State::Governed,
                format!("the sidecar's MCP endpoint for {id}"),
            ));
        } else {
            out.push(PathStatus::new(
                format!("mcp server {name}"),
                target,
                State::Ungoverned,
                "MCP server configured directly in OpenClaw: its tool calls do not reach ClawButler",
            ));
        }
    }
    if out.is_empty() {
        out.push(PathStatus::new("mcp", None, State::Off, "no MCP server configured for this agent"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn servers_are_reported_unless_denied_or_the_sidecar() {
        let cfg = json!({"mcp": {"servers": {"files": {"command": "npx fs"}, "cb-a": {"url": "http://s:1/mcp/agent/a"},
                                             "off": {"url": "http://x", "enabled": false}, "9lives": {"url": "http://y"}}},
                         "agents": {"entries": {"a": {"tools": {"deny": ["mcp-9lives__*"]}}}}});
        let (exec, agents) = (json!({}), ["a".to_string(), "b".to_string()]);
        let view = View { config: &cfg, agents: &agents, exec: &exec, sidecar: "s:1", approver: None };
        let a = report(&view, "a");
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.iter().any(|p| p.path == "mcp server files" && p.state == State::Ungoverned));
        assert!(a.iter().any(|p| p.path == "mcp server cb-a" && p.state == State::Governed));
        let b = report(&view, "b");
        assert_eq!(
            b.iter().filter(|p| p.state == State::Ungoverned).count(),
            3,
            "b reaches files, 9lives and a's endpoint"
        );
        let none = json!({});
        assert_eq!(report(&View { config: &none, ..view }, "a")[0].state, State::Off);
    }
}

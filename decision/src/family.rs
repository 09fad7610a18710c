//! Tool families: what an OpenClaw tool does, as far as governing it is concerned. The plugin
//! gate classifies every tool call by its name (the same function in the engine, the metrics
//! and the audit log), so a rule, a metric label and a record all say `file_write` for `write`,
//! `edit` and `apply_patch`. Names are OpenClaw 2026.9.6's built-in tool names (its
//! `core-tool-factory-descriptors`); MCP tools reach the gate as `<server>__<tool>`, and in
//! tool-search mode first as the wrapper `tool_call` (docs/plugin.md).

use serde::{Deserialize, Serialize};

/// The family of one tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolFamily {
    /// `exec` (`bash` is OpenClaw's alias): a shell command.
    Exec,
    /// `write`, `edit`, `apply_patch`: changes files.
    FileWrite,
    /// `read`, `ls`: reads files.
    FileRead,
    /// `message`: sends to a chat channel.
    Message,
    /// `browser`: drives a browser.
    Browser,
    /// `web_fetch`, `web_search`: fetches from the web.
    Web,
    /// `sessions_spawn`: starts another agent session.
    Spawn,
    /// `<server>__<tool>`: a tool of an MCP server.
    Mcp,
    /// `tool_call`: tool-search mode's wrapper; the tool it names passes the gate itself.
    ToolSearch,
    /// Everything else.
    Other,
}

/// The separator OpenClaw puts between an MCP server's name and its tool's.
pub const MCP_SEPARATOR: &str = "__";

impl ToolFamily {
    /// Every family, for pre-creating metric series.
    pub const ALL: [ToolFamily; 10] = [
        ToolFamily::Exec,
        ToolFamily::FileWrite,
        ToolFamily::FileRead,
        ToolFamily::Message,
        ToolFamily::Browser,
        ToolFamily::Web,
        ToolFamily::Spawn,
        ToolFamily::Mcp,
        ToolFamily::ToolSearch,
        ToolFamily::Other,
    ];

    /// The family of the tool OpenClaw calls `name`.
    pub fn of(name: &str) -> ToolFamily {
        match name {
            "exec" | "bash" => ToolFamily::Exec,
            "write" | "edit" | "apply_patch" => ToolFamily::FileWrite,
            "read" | "ls" => ToolFamily::FileRead,
            "message" => ToolFamily::Message,
            "browser" => ToolFamily::Browser,
            "web_fetch" | "web_search" => ToolFamily::Web,
            "sessions_spawn" => ToolFamily::Spawn,
            "tool_call" => ToolFamily::ToolSearch,
            _ if mcp_parts(name).is_some() => ToolFamily::Mcp,
            _ => ToolFamily::Other,
        }
    }

    /// Stable label value (metrics, audit, `input.plugin.family`).
    pub fn as_str(self) -> &'static str {
        match self {
            ToolFamily::Exec => "exec",
            ToolFamily::FileWrite => "file_write",
            ToolFamily::FileRead => "file_read",
            ToolFamily::Message => "message",
            ToolFamily::Browser => "browser",
            ToolFamily::Web => "web",
            ToolFamily::Spawn => "spawn",
            ToolFamily::Mcp => "mcp",
            ToolFamily::ToolSearch => "tool_search",
            ToolFamily::Other => "other",
        }
    }
}

/// `(server, tool)` of an MCP tool name `<server>__<tool>` (both non-empty; the first `__`
/// splits, as OpenClaw builds the name from a server name without one).
pub fn mcp_parts(name: &str) -> Option<(&str, &str)> {
    let (server, tool) = name.split_once(MCP_SEPARATOR)?;
    (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openclaw_tool_names_map_to_families() {
        let cases = [
            ("exec", ToolFamily::Exec),
            ("bash", ToolFamily::Exec),
            ("write", ToolFamily::FileWrite),
            ("edit", ToolFamily::FileWrite),
            ("apply_patch", ToolFamily::FileWrite),
            ("read", ToolFamily::FileRead),
            ("message", ToolFamily::Message),
            ("browser", ToolFamily::Browser),
            ("web_fetch", ToolFamily::Web),
            ("sessions_spawn", ToolFamily::Spawn),
            ("tool_call", ToolFamily::ToolSearch),
            ("mail__send_email", ToolFamily::Mcp),
            ("cb-main__mail_send_email", ToolFamily::Mcp),
            ("__x", ToolFamily::Other),
            ("x__", ToolFamily::Other),
            ("sessions_list", ToolFamily::Other),
            ("Write", ToolFamily::Other),
        ];
        for (name, family) in cases {
            assert_eq!(ToolFamily::of(name), family, "{name}");
        }
        assert_eq!(mcp_parts("cb-main__mail__x"), Some(("cb-main", "mail__x")));
        let labels: std::collections::HashSet<&str> = ToolFamily::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(labels.len(), ToolFamily::ALL.len());
        for f in ToolFamily::ALL {
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
    }
}

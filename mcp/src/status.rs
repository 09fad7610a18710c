//! What the control API shows of the MCP servers: each one's config as written (never the
//! resolved `${VAR}` values, never header or env values), its health, the tools it listed
//! last, and how many sessions use it.

use serde::Serialize;

use crate::upstream::HealthState;
use crate::State;

/// One tool of a server.
#[derive(Debug, Clone, Serialize)]
pub struct ToolView {
    /// The server's own name.
    pub name: String,
    /// With the server's prefix (the name agents see, before any shortening for length).
    pub prefixed: String,
    pub description: Option<String>,
    /// Whether `tool_filter` offers it.
    pub offered: bool,
    pub cost_usd: Option<f64>,
}

/// A server's health.
#[derive(Debug, Clone, Serialize)]
pub struct ServerHealth {
    /// `unknown` (never tried), `healthy`, `degraded` (calls fail or time out), `offline`
    /// (connecting fails).
    pub state: String,
    pub reason: Option<String>,
    pub since: String,
    pub last_ok: Option<String>,
}

/// One `[[mcp_servers]]` entry as the control API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    pub name: String,
    pub transport: String,
    pub url: Option<String>,
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Names of the configured headers and env variables (never their values).
    pub header_names: Vec<String>,
    pub env_names: Vec<String>,
    /// Agents that see it; null = every agent.
    pub agents: Option<Vec<String>>,
    pub prefix: String,
    pub timeout_s: u64,
    pub health: ServerHealth,
    pub tools: Vec<ToolView>,
    /// Open MCP sessions that include it.
    pub sessions: usize,
}

fn state_name(s: HealthState) -> &'static str {
    match s {
        HealthState::Unknown => "unknown",
        HealthState::Healthy => "healthy",
        HealthState::Degraded => "degraded",
        HealthState::Offline => "offline",
    }
}

/// Every server, in config order.
pub(crate) fn servers(st: &State) -> Vec<ServerView> {
    let sessions = st.sessions.all();
    st.servers
        .iter()
        .map(|s| {
            let w = &s.written;
            let h = s.health();
            let prefix = s.cfg.tool_prefix();
            let tools = s
                .last_tools
                .lock()
                .map(|t| t.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|t| ToolView {
                    prefixed: format!("{prefix}{}", t.name),
                    offered: s.offers(&t.name),
                    cost_usd: s.cfg.cost_of(&t.name),
                    description: t.description.map(|d| d.to_string()),
                    name: t.name.to_string(),
                })
                .collect();
            ServerView {
                name: w.name.clone(),
                transport: w.transport.as_str().to_string(),
                url: w.url.clone(),
                command: w.command.clone(),
                args: w.args.clone(),
                header_names: w.headers.keys().cloned().collect(),
                env_names: w.env.keys().cloned().collect(),
                agents: w.agents.clone(),
                prefix,
                timeout_s: w.timeout_s,
                health: ServerHealth {
                    state: state_name(h.state).to_string(),
                    reason: h.reason,
                    since: h.since,
                    last_ok: h.last_ok,
                },
                tools,
                sessions: sessions.iter().filter(|x| x.slot_of(s.index).is_some()).count(),
            }
        })
        .collect()
}

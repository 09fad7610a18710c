//! ClawButler's MCP tool proxy: its one job is that every MCP tool call an agent makes is
//! decided inline (allow, deny, hold for a human), filtered, masked, budgeted and audited.
//!
//! It is the data listener's `/mcp/` face: `/mcp/agent/{agent}` is a Streamable HTTP MCP
//! endpoint (protocol 2025-11-25 and 2025-06-18) that aggregates the upstream MCP servers
//! of `[[mcp_servers]]` that agent may use, over Streamable HTTP or stdio children, through
//! the official Rust SDK (`rmcp`) as their client. The sidecar serves the endpoint itself
//! (`edge.rs`) so it mints and binds its own sessions, answers in the spec's HTTP statuses,
//! and runs the policy pipeline (`call.rs`) before anything reaches an upstream.
//!
//! Map: `edge` (HTTP: route, Origin/Host, token, headers, body, session) → `dispatch` (one
//! method each) → `call` (tools/call: policy, hold, budget, forward, mask, audit) with
//! `catalog` (the agent's tool list), `upstream` (rmcp clients, health), `reverse` (requests
//! from upstreams to the client), `session`, `record` (audit), `metrics`. `attach` turns an
//! OpenClaw gateway's `mcp.servers` into `[[mcp_servers]]` entries. Invariants are stated
//! where they are kept; `docs/mcp.md` is the user's page.

pub mod attach;
mod call;
mod catalog;
pub mod config;
mod dispatch;
mod edge;
mod jsonrpc;
mod metrics;
pub mod names;
mod record;
mod reverse;
mod session;
mod sse;
pub mod status;
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{McpServerConfig, McpSettings, ToolFilter, Transport};
pub use edge::McpService;
pub use status::{ServerHealth, ServerView, ToolView};

/// Boxed error of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every answer (the same type as the model proxy's, so both are faces of one
/// listener).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The governance services the endpoint acts through (the same instances as the model path).
pub struct Parts {
    pub policy: Arc<policy::PolicyEngine>,
    pub audit: Arc<audit::AuditLog>,
    pub broker: Arc<governance::Broker>,
    pub budgets: Arc<governance::Budgets>,
    pub kill: Arc<governance::KillSwitch>,
    /// Per-agent MCP tokens (`governance::AgentKeys::open_mcp_tokens`).
    pub tokens: Arc<governance::AgentKeys>,
}

/// Errors starting the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}: {1}")]
    Config(String, String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("TLS client: {0}")]
    Tls(String),
}

/// The running endpoint (cheap to clone).
#[derive(Clone)]
pub struct Mcp {
    state: Arc<State>,
}

/// Everything the endpoint shares.
pub(crate) struct State {
    pub settings: McpSettings,
    pub servers: Vec<Arc<upstream::Server>>,
    pub parts: Parts,
    pub sessions: session::Sessions,
    pub metrics: metrics::Metrics,
    pub guard: edge::Guard,
    pub http: reqwest::Client,
    /// The direct call path's hyper client (`upstream/raw.rs`).
    pub(crate) raw: upstream::RawClient,
}

impl Mcp {
    /// Start the endpoint for a data listener bound at `listen` (its own loopback origins are
    /// allowed). Returns the background tasks (session reaper), which end on `shutdown`.
    pub fn start(
        settings: &McpSettings,
        servers: &[McpServerConfig],
        parts: Parts,
        registry: &prometheus::Registry,
        listen: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(Mcp, Vec<JoinHandle<()>>), StartError> {
        config::validate(settings, servers).map_err(|(k, m)| StartError::Config(k, m))?;
        let metrics = metrics::Metrics::new(registry)?;
        let mut list = Vec::with_capacity(servers.len());
        for (i, s) in servers.iter().enumerate() {
            let resolved = config::resolve(s).map_err(|(k, m)| StartError::Config(k, m))?;
            list.push(Arc::new(upstream::Server::new(i, resolved, s.clone(), &metrics)));
        }
        let state = Arc::new(State {
            guard: edge::Guard::new(settings, listen),
            settings: settings.clone(),
            servers: list,
            parts,
            sessions: session::Sessions::default(),
            metrics,
            http: upstream::http_client().map_err(StartError::Tls)?,
            raw: upstream::raw_client().map_err(StartError::Tls)?,
        });
        let reaper_state = state.clone();
        let reaper = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(30));
            loop {
                tokio::select! {
                    _ = every.tick() => session::reap_idle(&reaper_state),
                    _ = shutdown.changed() => break,
                }
            }
        });
        Ok((Mcp { state }, vec![reaper]))
    }

    /// The face to mount at `/mcp/` on the data listener.
    pub fn service(&self) -> McpService {
        McpService::new(self.state.clone())
    }

    /// Every configured server with its health, tools (as last listed) and open sessions.
    pub fn servers(&self) -> Vec<ServerView> {
        status::servers(&self.state)
    }

    /// A policy reload happened: recompute the open sessions' tool lists and tell the clients
    /// whose list changed (`notifications/tools/list_changed`).
    pub fn policy_reloaded(&self) {
        catalog::refresh_all(&self.state);
    }

    /// A handle that does not keep the endpoint alive: for the policy engine's reload hook
    /// (the endpoint holds the engine, so a strong handle there would be a cycle that keeps
    /// the state store open after shutdown).
    pub fn downgrade(&self) -> WeakMcp {
        WeakMcp(Arc::downgrade(&self.state))
    }

    /// Close every session (their upstream sessions and children) at shutdown.
    pub fn shutdown(&self) {
        session::close_all(&self.state, "the sidecar is shutting down");
    }
}

/// See [`Mcp::downgrade`].
#[derive(Clone)]
pub struct WeakMcp(std::sync::Weak<State>);

impl WeakMcp {
    /// [`Mcp::policy_reloaded`], while the endpoint runs.
    pub fn policy_reloaded(&self) {
        if let Some(state) = self.0.upgrade() {
            catalog::refresh_all(&state);
        }
    }
}

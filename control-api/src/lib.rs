//! ClawButler's control API: the control listener's routes. REST under `/api/v1` (JSON,
//! bearer tokens with roles, problem+json errors), `/metrics` for Prometheus, `/livez` and
//! `/readyz` for orchestrators, and the embedded web UI at `/`. It reads and steers the
//! governance services the data path acts through (approvals, grants, budgets, kill switch);
//! it never sits on the data path itself and does not depend on it.

pub mod auth;
pub mod idempotency;
pub mod problem;
pub mod routes;

#[cfg(test)]
mod ui_checks;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use auth::{Caller, Role, TokenRecord, TokenStore};
pub use problem::Problem;

/// One readiness check: name, ok, detail.
pub type Check = (&'static str, bool, String);

/// Something `/readyz` asks.
pub type ReadyProbe = Arc<dyn Fn() -> Vec<Check> + Send + Sync>;

/// The plugin of every gateway where it is expected or was heard from.
pub type PluginViews = Arc<dyn Fn() -> Vec<governance::plugin::PluginView> + Send + Sync>;

/// Everything the control routes share.
pub struct ControlState {
    pub registry: prometheus::Registry,
    pub policy: Arc<policy::PolicyEngine>,
    pub audit: Arc<audit::AuditLog>,
    pub broker: Arc<governance::Broker>,
    pub kill: Arc<governance::KillSwitch>,
    pub budgets: Arc<governance::Budgets>,
    /// Every agent's health (gateway agents and agents seen only on the data path).
    pub health: Arc<governance::HealthTracker>,
    pub tokens: TokenStore,
    /// Per-agent data-path keys (hashed), managed under `/api/v1/agents/{id}/keys`.
    pub agent_keys: Arc<governance::AgentKeys>,
    /// Per-agent MCP tokens (hashed), managed under `/api/v1/agents/{id}/mcp-tokens`.
    pub mcp_tokens: Arc<governance::AgentKeys>,
    /// The MCP endpoint's servers, health and tools (`/api/v1/mcp/servers`).
    pub mcp: Option<Arc<dyn McpStatus>>,
    /// Per-gateway plugin tokens (hashed), managed under `/api/v1/plugin-tokens`.
    pub plugin_tokens: Arc<governance::PluginTokens>,
    /// Each gateway's OpenClaw plugin: governed or not, and why (`/api/v1/plugins`, agents).
    pub plugins: PluginViews,
    /// The linked gateway's id (`[gateway] url`), when one is configured.
    pub linked_gateway: Option<String>,
    /// Stored answers of decision POSTs (Idempotency-Key).
    pub idempotency: idempotency::IdemStore,
    pub ready: ReadyProbe,
    /// The gateway link's view of agents and its kill/recover actions; `None` without a
    /// configured gateway (the kill switch then acts at the proxy only).
    pub agents: Option<Arc<dyn governance::agents::AgentControl>>,
    /// `clawbutler_event_streams`: live `/api/v1/events` streams (see `routes::events`).
    pub event_streams: prometheus::IntGauge,
    /// Notifications: routes, deliveries, push subscriptions, preferences, action links.
    pub notify: Arc<notifier::Notifier>,
    /// Fleet mode (`/api/v1/fleet/...`); `None` when `[fleet]` is not configured.
    pub fleet: Option<Arc<fleet::Fleet>>,
    /// Cost insight: aggregates, queries, anomalies (`/api/v1/cost`).
    pub cost: Arc<cost::Cost>,
    /// Reports: CSV and PDF, on demand and scheduled (`/api/v1/reports`).
    pub reports: Arc<reports::Reports>,
}

/// Shared handle.
pub type AppState = Arc<ControlState>;

/// What the control API shows of the MCP endpoint; the binary implements it over the `mcp`
/// crate, so neither crate depends on the other.
pub trait McpStatus: Send + Sync {
    /// Every configured MCP server with its health and tools (a JSON array).
    fn servers(&self) -> serde_json::Value;
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut http::request::Parts, state: &AppState) -> Result<Caller, Problem> {
        auth::authenticate(&state.tokens, parts.headers.get(http::header::AUTHORIZATION))
    }
}

/// Every control route group, remembering the API paths it serves.
pub fn routes() -> routes::Routes {
    routes::Routes::default()
        .merge(routes::health::routes())
        .merge(routes::policies::routes())
        .merge(routes::audit::routes())
        .merge(routes::approvals::routes())
        .merge(routes::grants::routes())
        .merge(routes::events::routes())
        .merge(routes::tokens::routes())
        .merge(routes::openapi::routes())
        .merge(routes::agents::routes())
        .merge(routes::config_history::routes())
        .merge(routes::backups::routes())
        .merge(routes::agent_keys::routes())
        .merge(routes::plugins::routes())
        .merge(routes::budgets::routes())
        .merge(routes::cost::routes())
        .merge(routes::reports::routes())
        .merge(routes::savings::routes())
        .merge(routes::cron::routes())
        .merge(routes::mcp::routes())
        .merge(routes::notifications::routes())
        .merge(routes::fleet::routes())
        .merge(routes::fleet_policy::routes())
        .merge(routes::ui::routes())
}

/// The API paths the control router serves (each must be described in `openapi.json`).
pub fn api_paths() -> Vec<&'static str> {
    routes().paths().to_vec()
}

/// All control routes. Every error answer leaves as problem+json, the ones axum makes itself
/// included (`problem::normalize`).
pub fn router(state: AppState) -> Router {
    routes()
        .into_router()
        .fallback(routes::not_found)
        .layer(axum::middleware::from_fn(problem::normalize))
        .with_state(state)
}

/// Serve the router until `shutdown` turns true, through the shared listener edge (connection
/// cap, header/idle and body timeouts from `[server]`, hyper's early answers as problem+json).
/// `open` is the listener's `clawbutler_connections_open` series.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: listener::Limits,
    open: Option<prometheus::IntGauge>,
    shutdown: watch::Receiver<bool>,
) {
    let cfg = listener::Listener {
        name: "control",
        limits,
        error_page: problem::early_answer,
        open,
        // Event streams end on shutdown by themselves; this bounds everything else.
        grace: std::time::Duration::from_secs(5),
        threads: None,
    };
    listener::serve(listener, app, cfg, shutdown).await;
}

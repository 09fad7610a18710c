//! ClawButler's data path: the per-agent model proxy, and nothing else. A call to
//! `/a/{agent}/{upstream}/v1/...` passes a fixed stack of tower layers written once in
//! `stack.rs` (edge, metrics, guard, route, body, kill, budget gate, policy, hold, budget reserve,
//! forward), each with its contract. Refusals go through one helper (`refuse.rs`); a forwarded
//! call streams back frame for frame while a side decoder (`meter/`) reads usage, and ends in
//! one place (`finish.rs`) that prices it, settles its budget reservation and writes its audit
//! record. The stateful services it acts through (approvals, budgets, kill switch) belong to
//! `governance`; the decisions to `policy`.

pub mod auth;
pub mod body;
pub mod config;
pub mod ctx;
pub mod error;
pub mod estimate;
pub mod finish;
pub mod forward;
pub mod health;
pub mod layers;
pub mod meter;
pub mod metrics;
pub mod pricing;
pub mod record;
pub mod refuse;
pub mod route;
pub mod server;
pub mod stack;
pub mod synthetic;
pub mod upstream;

use std::sync::Arc;

pub use auth::AgentKeyMode;
pub use config::{DenyStyle, ProxySettings, UpstreamConfig, UpstreamKind};
pub use error::ProxyError;
pub use metrics::ProxyMetrics;
pub use pricing::{Price, PriceTable};

/// Everything the data path shares across calls.
pub struct ProxyState {
    pub settings: ProxySettings,
    pub upstreams: Arc<upstream::Upstreams>,
    pub client: upstream::Clients,
    pub policy: Arc<policy::PolicyEngine>,
    pub audit: Arc<audit::AuditLog>,
    pub broker: Arc<governance::Broker>,
    pub kill: Arc<governance::KillSwitch>,
    pub budgets: Arc<governance::Budgets>,
    /// Every forwarded call's outcome feeds its agent's (and upstream's) health.
    pub health: Arc<governance::HealthTracker>,
    pub prices: PriceTable,
    pub metrics: ProxyMetrics,
    /// Who may call as which agent (`[auth] agent_keys` and the per-agent keys).
    pub auth: Arc<auth::AgentAuth>,
    /// OpenTelemetry spans per call (`[telemetry]`; off: nothing is made).
    pub telemetry: telemetry::Telemetry,
    /// Which OpenClaw run (and task type) a call belongs to, stamped on its end record.
    pub runs: Arc<governance::RunIndex>,
}

/// The shared services the data path acts through, built by the app from one store.
pub struct Components {
    pub policy: Arc<policy::PolicyEngine>,
    pub audit: Arc<audit::AuditLog>,
    pub broker: Arc<governance::Broker>,
    pub kill: Arc<governance::KillSwitch>,
    pub budgets: Arc<governance::Budgets>,
    pub agent_keys: Arc<governance::AgentKeys>,
    /// `[auth] agent_keys`.
    pub agent_key_mode: auth::AgentKeyMode,
    pub health: Arc<governance::HealthTracker>,
    pub telemetry: telemetry::Telemetry,
    pub runs: Arc<governance::RunIndex>,
}

/// Errors assembling the data path (reported at start).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl ProxyState {
    /// Assemble the data path's shared state.
    pub fn new(
        settings: ProxySettings,
        upstreams: &[UpstreamConfig],
        prices: PriceTable,
        c: Components,
        registry: &prometheus::Registry,
    ) -> Result<ProxyState, BuildError> {
        let ups = upstream::build_upstreams(upstreams, &settings)?;
        let client = upstream::Clients::new(&settings)?;
        let metrics = ProxyMetrics::new(registry)?;
        for name in upstreams.iter().map(|u| u.name.as_str()) {
            metrics.register_upstream(name);
        }
        Ok(ProxyState {
            upstreams: Arc::new(ups),
            client,
            policy: c.policy,
            audit: c.audit,
            broker: c.broker,
            kill: c.kill,
            budgets: c.budgets,
            health: c.health,
            prices: prices.with_server_tool_call_usd(settings.server_tool_call_usd),
            metrics,
            auth: Arc::new(auth::AgentAuth::new(c.agent_key_mode, c.agent_keys, registry)?),
            telemetry: c.telemetry,
            runs: c.runs,
            settings,
        })
    }
}

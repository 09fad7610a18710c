//! ClawButler's data path: the per-agent model proxy. A call to
//! `/a/{agent}/{upstream}/v1/...` passes a fixed stack of tower layers (see `stack.rs`): the
//! edge (ids, caller-shaped errors), metrics, routing, a bounded body read, the policy gate,
//! and finally the forwarder, which sends allowed calls upstream over rustls and streams the
//! reply back frame for frame while a side decoder meters usage and cost for the audit log.

pub mod approvals;
pub mod body;
pub mod budget;
pub mod config;
pub mod ctx;
pub mod error;
pub mod forward;
pub mod kill;
pub mod layers;
pub mod meter;
pub mod metrics;
pub mod pricing;
pub mod record;
pub mod route;
pub mod server;
pub mod stack;
pub mod synthetic;
pub mod upstream;

use std::sync::Arc;

pub use config::{DenyStyle, ProxySettings, UpstreamConfig, UpstreamKind};
pub use error::ProxyError;
pub use metrics::ProxyMetrics;
pub use pricing::{Price, PriceTable};

/// Everything the data path shares across calls.
pub struct ProxyState {
    pub settings: ProxySettings,
    pub upstreams: Arc<upstream::Upstreams>,
    pub client: upstream::HttpClient,
    pub policy: Arc<policy::PolicyEngine>,
    pub audit: Arc<audit::AuditLog>,
    pub broker: Arc<approvals::Broker>,
    pub kill: Arc<kill::KillSwitch>,
    pub budgets: Arc<budget::Budgets>,
    pub prices: PriceTable,
    pub metrics: ProxyMetrics,
}

/// The shared parts the data path acts through, built by the app from one store.
pub struct Components {
    pub policy: Arc<policy::PolicyEngine>,
    pub audit: Arc<audit::AuditLog>,
    pub broker: Arc<approvals::Broker>,
    pub kill: Arc<kill::KillSwitch>,
    pub budgets: Arc<budget::Budgets>,
}

/// Errors assembling the data path (reported at start).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error(transparent)]
    Price(#[from] pricing::PriceError),
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
        let client = upstream::build_client(&settings)?;
        Ok(ProxyState {
            upstreams: Arc::new(ups),
            client,
            policy: c.policy,
            audit: c.audit,
            broker: c.broker,
            kill: c.kill,
            budgets: c.budgets,
            prices,
            metrics: ProxyMetrics::new(registry)?,
            settings,
        })
    }
}

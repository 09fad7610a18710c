//! Assembling and running the sidecar: bind both listeners first (so a port in use is
//! refused before anything else happens), open the data dir, then start the data path and
//! the control API on one shared state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError};

/// Errors starting the sidecar; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind { addr: SocketAddr, key: &'static str, source: std::io::Error },
    #[error("data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] storage::StoreError),
    #[error("audit log: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("policies: {0}")]
    Policy(#[from] policy::PolicyError),
    #[error("proxy: {0}")]
    Proxy(#[from] proxy::BuildError),
    #[error("prices: {0}")]
    Prices(#[from] proxy::pricing::PriceError),
    #[error("approvals: {0}")]
    Approvals(#[from] governance::BrokerError),
    #[error("kill switch: {0}")]
    Kill(#[from] governance::KillError),
    #[error("budgets: {0}")]
    Budgets(#[from] governance::BudgetError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("gateway: {0}")]
    Gateway(#[from] gateway::GatewayError),
    #[error("idempotency store: {0}")]
    Idempotency(#[from] control_api::idempotency::IdemError),
    #[error("tokens: {0}")]
    Tokens(#[from] control_api::auth::TokenError),
}

/// A running sidecar.
pub struct Sidecar {
    /// Where the data listener is bound (useful with port 0).
    pub data_addr: SocketAddr,
    /// Where the control listener is bound.
    pub control_addr: SocketAddr,
    /// A freshly created admin token, when this start created the first one.
    pub first_admin_token: Option<String>,
    /// The gateway link, when `[gateway] url` is set.
    pub gateway: Option<Arc<gateway::Gateway>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    audit: Arc<audit::AuditLog>,
    policy: Arc<policy::PolicyEngine>,
    db: storage::Store,
    broker: Arc<governance::Broker>,
    budgets: Arc<governance::Budgets>,
    _watch: Option<policy::WatchGuard>,
}

async fn bind(addr: SocketAddr, key: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, key, source })
}

impl Sidecar {
    /// Start everything described by `cfg`.
    pub async fn start(cfg: Config) -> Result<Sidecar, StartError> {
        cfg.validate()?;
        let data_listener = bind(cfg.listen_addr()?, "server.listen").await?;
        let control_listener = bind(cfg.control_addr()?, "server.control_listen").await?;
        let data_dir = cfg.server.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir { path: data_dir.clone(), source })?;
        let db = storage::Store::open(&data_dir.join("state"))?;

        let registry = prometheus::Registry::new();
        let audit = Arc::new(audit::AuditLog::open(&data_dir.join("audit"), &cfg.audit, &db, &registry)?);
        let policy = Arc::new(policy::PolicyEngine::from_settings(&cfg.policies, &registry)?);
        policy.set_on_reload(reload_auditor(audit.clone()));
        let watch_guard = if cfg.policies.watch && cfg.policies.dir.is_some() { Some(policy.watch()?) } else { None };

        let broker = Arc::new(governance::Broker::open(&db, &cfg.approvals, audit.clone(), &registry)?);
        let kill = Arc::new(governance::KillSwitch::open(&db, &registry)?);
        let prices = proxy::PriceTable::new(&cfg.prices)?;
        let budgets = Arc::new(governance::Budgets::open(&db, &cfg.budgets, audit.clone(), &registry)?);
        let health = Arc::new(governance::HealthTracker::new(audit.clone(), &registry)?);
        let components = proxy::Components {
            policy: policy.clone(),
            audit: audit.clone(),
            broker: broker.clone(),
            kill: kill.clone(),
            budgets: budgets.clone(),
            health: health.clone(),
        };
        let state = Arc::new(proxy::ProxyState::new(cfg.proxy.clone(), &cfg.upstreams, prices, components, &registry)?);

        let tokens = control_api::TokenStore::open(&db)?;
        let idempotency = control_api::idempotency::IdemStore::open(&db)?;
        let first_admin_token = seed_tokens(&tokens, &cfg)?;

        let (shutdown, rx) = watch::channel(false);
        let data_addr = data_listener.local_addr().map_err(|source| StartError::Bind {
            addr: cfg.listen_addr().unwrap_or_else(|_| ([127, 0, 0, 1], 0).into()),
            key: "server.listen",
            source,
        })?;
        let control_addr = control_listener.local_addr().map_err(|source| StartError::Bind {
            addr: cfg.control_addr().unwrap_or_else(|_| ([127, 0, 0, 1], 0).into()),
            key: "server.control_listen",
            source,
        })?;

        let tick_budgets = budgets.clone();
        let budget_handle = budgets.clone();
        let mut tick_rx = rx.clone();
        let budget_ticker = tokio::spawn(async move {
            // Close breakers at window reset even when no call arrives to notice.
            let mut every = tokio::time::interval(std::time::Duration::from_secs(15));
            loop {
                tokio::select! {
                    _ = every.tick() => tick_budgets.tick(),
                    _ = tick_rx.changed() => break,
                }
            }
        });
        let sweep_health = health.clone();
        let mut sweep_rx = rx.clone();
        let health_sweeper = tokio::spawn(async move {
            // Health changes that need no new call (old failures forgotten) are noticed here.
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => sweep_health.sweep(),
                    _ = sweep_rx.changed() => break,
                }
            }
        });
        let svc = proxy::stack::build(state.clone());
        let mut tasks =
            vec![tokio::spawn(proxy::server::serve(data_listener, svc, rx.clone())), budget_ticker, health_sweeper];

        // The gateway link (optional): registry, OpenClaw side of the kill switch, exec approvals.
        let gateway = match cfg.gateway.url {
            Some(_) => {
                let parts = gateway::Parts {
                    audit: audit.clone(),
                    policy: policy.clone(),
                    broker: broker.clone(),
                    kill: kill.clone(),
                    health: health.clone(),
                };
                let (gw, gw_tasks) =
                    gateway::Gateway::start(&cfg.gateway, &data_dir, &db, parts, &registry, rx.clone())?;
                tasks.extend(gw_tasks);
                Some(gw)
            }
            None => None,
        };
        let ready_gateway = gateway.clone();
        let ready_policy = policy.clone();
        let control_state = Arc::new(control_api::ControlState {
            registry,
            policy: policy.clone(),
            audit: audit.clone(),
            broker: broker.clone(),
            kill,
            budgets,
            health,
            tokens,
            idempotency,
            ready: Arc::new(move || {
                let st = ready_policy.status();
                let mut checks = vec![("policy", !st.revision.is_empty(), format!("revision {}", st.revision))];
                checks.extend(ready_gateway.as_ref().map(|g| g.ready_check()));
                checks
            }),
            agents: gateway.clone().map(|g| g as Arc<dyn governance::agents::AgentControl>),
        });
        let app = control_api::router(control_state);
        let crx = rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = control_api::serve(control_listener, app, crx).await {
                tracing::error!(error = %e, "control listener failed");
            }
        }));

        Ok(Sidecar {
            data_addr,
            control_addr,
            first_admin_token,
            gateway,
            shutdown,
            tasks,
            audit,
            policy,
            db,
            broker,
            budgets: budget_handle,
            _watch: watch_guard,
        })
    }

    /// Reload the policy bundle (SIGHUP); a bad bundle keeps the last good one.
    pub fn reload_policies(&self, why: &str) {
        match self.policy.reload_by(policy::ReloadTrigger::Signal) {
            Ok(st) => tracing::info!(revision = %st.revision, trigger = why, "policies reloaded"),
            Err(e) => tracing::error!(error = %e, trigger = why, "policy reload failed; keeping the last good bundle"),
        }
    }

    /// Stop accepting, let open calls finish briefly, flush the audit log and the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // Held calls are answered now (cancelled, recorded) instead of being cut after the grace period.
        self.broker.shutdown("the sidecar is shutting down").await;
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.budgets.sync() {
            tracing::error!(error = %e, "budget ledger sync at shutdown failed");
        }
        if let Err(e) = self.audit.flush() {
            tracing::error!(error = %e, "audit flush at shutdown failed");
        }
        // A blocking flush on the blocking pool: sled's flush_async can stall under load.
        let db = self.db.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || db.flush()).await {
            tracing::error!(error = %e, "state store flush at shutdown failed");
        }
    }
}

/// Seed tokens: `[auth] admin_token` / `CLAWBUTLER_ADMIN_TOKEN`, or a new admin token on a
/// first start with none (returned so it can be printed once).
fn seed_tokens(tokens: &control_api::TokenStore, cfg: &Config) -> Result<Option<String>, StartError> {
    let seeded = cfg.auth.admin_token.clone().or_else(|| std::env::var("CLAWBUTLER_ADMIN_TOKEN").ok());
    if let Some(secret) = seeded.filter(|s| !s.is_empty()) {
        if tokens.verify(&secret).is_none() {
            tokens.insert(&secret, "seeded-admin", control_api::Role::Admin)?;
        }
        return Ok(None);
    }
    if tokens.is_empty() {
        let (secret, _) = tokens.create("first-admin", control_api::Role::Admin)?;
        return Ok(Some(secret));
    }
    Ok(None)
}

/// Records every policy reload attempt (the API records its own, with the caller as actor).
fn reload_auditor(audit: Arc<audit::AuditLog>) -> policy::ReloadHook {
    Arc::new(move |o: &policy::ReloadOutcome| {
        if o.trigger == policy::ReloadTrigger::Api {
            return;
        }
        let trigger = serde_json::to_value(o.trigger).unwrap_or_default();
        let ev = audit::AuditEvent {
            bundle_revision: Some(o.revision.clone()),
            actor: Some(trigger.as_str().unwrap_or("system").to_string()),
            outcome: Some(if o.error.is_some() {
                audit::Outcome::Error
            } else if o.changed {
                audit::Outcome::Reloaded
            } else {
                audit::Outcome::Unchanged
            }),
            reason: o.error.clone(),
            details: serde_json::to_value(o).unwrap_or_default(),
            ..audit::AuditEvent::new(audit::RecordKind::PolicyReload)
        };
        if let Err(e) = audit.append(ev) {
            tracing::error!(error = %e, "audit append failed for a policy reload");
        }
    })
}

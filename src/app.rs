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

mod wiring;
pub use wiring::FIRST_TOKEN_FILE;
use wiring::{
    connection_caps, private_data_dir, reload_auditor, seed_tokens, state_store_gauge, write_first_token, McpView,
    PriceView,
};

/// Errors starting the sidecar; each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind { addr: SocketAddr, key: &'static str, source: std::io::Error },
    #[error("data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("data listener threads (proxy.io_threads): {0}")]
    IoThreads(std::io::Error),
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
    #[error(transparent)]
    Telemetry(#[from] telemetry::TelemetryError),
    #[error("gateway: {0}")]
    Gateway(#[from] gateway::GatewayError),
    #[error("idempotency store: {0}")]
    Idempotency(#[from] control_api::idempotency::IdemError),
    #[error("tokens: {0}")]
    Tokens(#[from] control_api::auth::TokenError),
    #[error("first admin token file {path}: {source}")]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("agent keys: {0}")]
    AgentKeys(#[from] governance::AgentKeyError),
    #[error("MCP endpoint: {0}")]
    Mcp(#[from] mcp::StartError),
    #[error("plugin tokens: {0}")]
    PluginTokens(#[from] governance::PluginTokenError),
    #[error("plugin gate: {0}")]
    PluginGate(#[from] plugin_gate::GateError),
    #[error("notifications: {0}")]
    Notify(#[from] notifier::NotifyError),
    #[error("fleet mode: {0}")]
    Fleet(#[from] fleet::FleetError),
    #[error("cost insight: {0}")]
    Cost(#[from] cost::CostError),
    #[error("reports: {0}")]
    Reports(#[from] reports::ReportsError),
}

/// A running sidecar.
pub struct Sidecar {
    /// Where the data listener is bound (useful with port 0).
    pub data_addr: SocketAddr,
    /// Where the control listener is bound.
    pub control_addr: SocketAddr,
    /// A freshly created admin token, when this start created the first one.
    pub first_admin_token: Option<String>,
    /// Where that token was written (0600, in the data dir): what `serve` prints.
    pub first_admin_token_file: Option<PathBuf>,
    /// The gateway link, when `[gateway] url` is set.
    pub gateway: Option<Arc<gateway::Gateway>>,
    /// The plugin gate (`/v1/decide`).
    pub plugin_gate: Arc<plugin_gate::Gate>,
    /// OpenTelemetry traces (`[telemetry]`; off unless an endpoint is set).
    pub telemetry: telemetry::Telemetry,
    /// The kill switch every path asks (local and, in fleet mode, fleet flags).
    pub kill: Arc<governance::KillSwitch>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    audit: Arc<audit::AuditLog>,
    policy: Arc<policy::PolicyEngine>,
    db: storage::Store,
    broker: Arc<governance::Broker>,
    budgets: Arc<governance::Budgets>,
    mcp: mcp::Mcp,
    _watch: Option<policy::WatchGuard>,
}

async fn bind(addr: SocketAddr, key: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, key, source })
}

impl Sidecar {
    /// Start everything described by `cfg`.
    pub async fn start(cfg: Config) -> Result<Sidecar, StartError> {
        cfg.validate()?;
        // Private files from here on (also set by `main`; in-process starts need it too).
        crate::os::restrict_umask();
        let (data_cap, control_cap) = connection_caps(&cfg, crate::os::raise_fd_limit());
        let data_listener = bind(cfg.listen_addr()?, "server.listen").await?;
        let control_listener = bind(cfg.control_addr()?, "server.control_listen").await?;
        let data_dir = cfg.server.data_dir.clone();
        private_data_dir(&data_dir)?;
        let db = storage::Store::open(&data_dir.join("state"))?;

        let registry = prometheus::Registry::new();
        let connections = listener::connections_gauge(&registry).map_err(StartError::Metrics)?;
        let event_streams = control_api::routes::events::streams_gauge(&registry).map_err(StartError::Metrics)?;
        let audit = Arc::new(audit::AuditLog::open(&data_dir.join("audit"), &cfg.audit, &db, &registry)?);
        let policy = Arc::new(policy::PolicyEngine::from_settings(&cfg.policies, &registry)?);
        let watch_guard = if cfg.policies.watch && cfg.policies.dir.is_some() { Some(policy.watch()?) } else { None };

        let broker = Arc::new(governance::Broker::open(&db, &cfg.approvals, audit.clone(), &registry)?);
        let kill = Arc::new(governance::KillSwitch::open(&db, &registry)?);
        broker.watch_kill(kill.clone());
        let prices = proxy::PriceTable::new(&cfg.prices)?;
        // Savings suggestions price tokens by the same table the proxy charges by.
        let price_view = prices.clone().with_server_tool_call_usd(cfg.proxy.server_tool_call_usd);
        let budgets = Arc::new(governance::Budgets::open(&db, &cfg.budgets, audit.clone(), &registry)?);
        let agent_keys = Arc::new(governance::AgentKeys::open(&db)?);
        let mcp_tokens = Arc::new(governance::AgentKeys::open_mcp_tokens(&db)?);
        let plugin_tokens = Arc::new(governance::PluginTokens::open(&db)?);
        let plugin_health =
            Arc::new(governance::PluginHealth::new(std::time::Duration::from_secs(cfg.plugin.heartbeat_s)));
        let handoffs = Arc::new(governance::Handoffs::default());
        // Which OpenClaw run a model call belongs to: filled by the plugin gate and the
        // gateway link, read by the data path when it records a call (cost by task type).
        let runs = Arc::new(governance::RunIndex::default());
        let health = Arc::new(governance::HealthTracker::new(audit.clone(), &registry)?);
        let telemetry = telemetry::Telemetry::start(&cfg.telemetry, &registry)?;
        let components = proxy::Components {
            policy: policy.clone(),
            audit: audit.clone(),
            broker: broker.clone(),
            kill: kill.clone(),
            budgets: budgets.clone(),
            agent_keys: agent_keys.clone(),
            agent_key_mode: cfg.auth.agent_keys,
            health: health.clone(),
            telemetry: telemetry.clone(),
            runs: runs.clone(),
        };
        let state = Arc::new(proxy::ProxyState::new(cfg.proxy.clone(), &cfg.upstreams, prices, components, &registry)?);

        let tokens = control_api::TokenStore::open(&db, &data_dir)?;
        let idempotency = control_api::idempotency::IdemStore::open(&db)?;
        let first_admin_token = seed_tokens(&tokens, &cfg)?;
        let first_admin_token_file = match &first_admin_token {
            Some(t) => Some(write_first_token(&data_dir, t)?),
            None => None,
        };

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

        // Fleet mode (optional): before anything serves, so a sidecar never takes a call
        // without having read the fleet's kill flags (docs/fleet.md).
        // A fleet bundle may apply during the start: audited like every reload from here on (the
        // hook is replaced below once the MCP endpoint, which also hears of reloads, exists).
        policy.set_on_reload(reload_auditor(audit.clone()));
        let (fleet, fleet_tasks) = match &cfg.fleet {
            Some(f) => {
                let (fleet, tasks) = fleet::Fleet::start(
                    f,
                    &data_dir,
                    env!("CARGO_PKG_VERSION"),
                    kill.clone(),
                    broker.clone(),
                    policy.clone(),
                    &registry,
                    rx.clone(),
                )
                .await?;
                budgets.set_fleet(fleet.leases());
                let mut tasks = tasks;
                tasks.push(fleet.ship_audit(audit.clone(), &registry, rx.clone())?);
                (Some(fleet), tasks)
            }
            None => (None, Vec::new()),
        };

        // The MCP endpoint (`/mcp/agent/{agent}`), on the same governance services.
        let mcp_parts = mcp::Parts {
            policy: policy.clone(),
            audit: audit.clone(),
            broker: broker.clone(),
            budgets: budgets.clone(),
            kill: kill.clone(),
            tokens: mcp_tokens.clone(),
        };
        let (mcp, mcp_tasks) =
            mcp::Mcp::start(&cfg.mcp, &cfg.mcp_servers, mcp_parts, &registry, data_addr, rx.clone())?;
        let (reload_audit, reload_mcp) = (reload_auditor(audit.clone()), mcp.downgrade());
        policy.set_on_reload(Arc::new(move |o: &policy::ReloadOutcome| {
            reload_audit(o);
            if o.changed {
                reload_mcp.policy_reloaded();
            }
        }));

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
        let (probe_db, store_writable) = (db.clone(), state_store_gauge(&registry)?);
        let health_sweeper = tokio::spawn(async move {
            // Health changes that need no new call (old failures forgotten) are noticed here,
            // and whether the state store can still write (for `/readyz` and the gauge).
            let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        sweep_health.sweep();
                        let db = probe_db.clone();
                        let ok = tokio::task::spawn_blocking(move || db.check_writes().is_ok()).await.unwrap_or(false);
                        store_writable.set(i64::from(ok));
                    }
                    _ = sweep_rx.changed() => break,
                }
            }
        });
        if !data_addr.ip().is_loopback() {
            tracing::warn!(
                addr = %data_addr,
                "the data listener is not on a loopback address: any host that reaches it can spend the upstream \
                 keys this sidecar holds unless agents present per-agent keys; keep it on 127.0.0.1 or give \
                 every agent its own key (see docs/security.md)"
            );
        }
        let mut gateway_tasks = Vec::new();
        // The gateway link (optional): registry, OpenClaw side of the kill switch, exec approvals.
        let gateway = match cfg.gateway.url {
            Some(_) => {
                let parts = gateway::Parts {
                    audit: audit.clone(),
                    policy: policy.clone(),
                    broker: broker.clone(),
                    kill: kill.clone(),
                    health: health.clone(),
                    // A wildcard listen address is reached over loopback by a local gateway.
                    sidecar: Some(if data_addr.ip().is_unspecified() {
                        format!("127.0.0.1:{}", data_addr.port())
                    } else {
                        data_addr.to_string()
                    }),
                    plugin_health: plugin_health.clone(),
                    handoffs: handoffs.clone(),
                    budgets: Some(budgets.clone()),
                    cron: cfg.cron.clone(),
                    runs: runs.clone(),
                };
                let (gw, gw_tasks) =
                    gateway::Gateway::start(&cfg.gateway, &data_dir, &db, parts, &registry, rx.clone())?;
                gateway_tasks = gw_tasks;
                Some(gw)
            }
            None => None,
        };
        if let (Some(f), Some(g)) = (&fleet, &gateway) {
            let link = g.link().clone();
            f.set_gateway_link(Arc::new(move || link.is_connected()));
        }
        // The plugin gate (`/v1/decide`): what the OpenClaw plugin asks before tool calls and turns.
        let plugin_link = gateway.as_ref().map(|g| {
            let link = g.link().clone();
            plugin_gate::Link {
                gateway: governance::plugin::gateway_id(link.url()),
                connected: Arc::new(move || link.is_connected()),
            }
        });
        let plugin_parts = plugin_gate::Parts {
            policy: policy.clone(),
            audit: audit.clone(),
            broker: broker.clone(),
            kill: kill.clone(),
            budgets: budgets.clone(),
            tokens: plugin_tokens.clone(),
            health: plugin_health.clone(),
            handoffs: handoffs.clone(),
            link: plugin_link,
            runs: runs.clone(),
        };
        let plugin_gate = plugin_gate::Gate::new(cfg.plugin.clone(), plugin_parts, &registry)?;
        // The data listener's faces (`data.rs`): the model proxy, and the others by prefix.
        let svc = crate::data::Faces::new(crate::data::Face::new(proxy::stack::build(state.clone())))
            .with("/mcp/", crate::data::Face::new(mcp.service()))
            .with(plugin_gate::settings::PATH_PREFIX, crate::data::Face::new(plugin_gate.service()));
        let data_open = Some(connections.with_label_values(&["data"]));
        let data_limits = listener::Limits { max_connections: data_cap, ..proxy::server::limits(&cfg.proxy) };
        let data_threads = proxy::server::connection_threads(&cfg.proxy).map_err(StartError::IoThreads)?;
        let data_server = proxy::server::serve(data_listener, svc, data_limits, data_open, data_threads, rx.clone());
        let mut tasks =
            vec![tokio::spawn(data_server), budget_ticker, health_sweeper, plugin_gate.spawn_sweeper(rx.clone())];
        tasks.extend(mcp_tasks);
        tasks.extend(gateway_tasks);
        tasks.extend(fleet_tasks);

        // Notifications read the audit log's live stream; they never sit on the data path.
        let (notify, notify_tasks) = notifier::Notifier::start(
            &cfg.notify,
            notifier::Parts {
                audit: audit.clone(),
                broker: broker.clone(),
                budgets: budgets.clone(),
                db: db.clone(),
                data_dir: data_dir.clone(),
                default_public_url: format!("http://{control_addr}"),
            },
            &registry,
            rx.clone(),
        )?;
        tasks.extend(notify_tasks);
        // Cost insight follows the audit log too (`docs/cost.md`).
        let cost = Arc::new(cost::Cost::open(&db, audit.clone(), cfg.cost.clone(), cost::system_clock(), &registry)?);
        cost.set_prices(Arc::new(PriceView(price_view)));
        tasks.push(tokio::spawn(cost::follow(cost.clone(), rx.clone())));
        let report_parts = reports::Parts {
            db: db.clone(),
            audit: audit.clone(),
            cost: cost.clone(),
            agents: gateway.clone().map(|g| g as Arc<dyn governance::agents::AgentControl>),
            data_dir: data_dir.clone(),
        };
        let (reports, report_tasks) =
            reports::Reports::start(report_parts, cfg.report_settings.clone(), cfg.reports.clone(), rx.clone())?;
        tasks.extend(report_tasks);
        let ready_gateway = gateway.clone();
        let ready_policy = policy.clone();
        let (ready_audit, ready_db) = (audit.clone(), db.clone());
        let ready_plugin = plugin_gate.clone();
        let views_plugin = plugin_gate.clone();
        let control_state = Arc::new(control_api::ControlState {
            registry,
            policy: policy.clone(),
            audit: audit.clone(),
            broker: broker.clone(),
            kill: kill.clone(),
            budgets,
            health,
            tokens,
            agent_keys,
            mcp_tokens,
            mcp: Some(Arc::new(McpView(mcp.clone()))),
            plugin_tokens,
            plugins: Arc::new(move || views_plugin.views()),
            linked_gateway: gateway.as_ref().map(|g| governance::plugin::gateway_id(g.link().url())),
            idempotency,
            ready: Arc::new(move || {
                let st = ready_policy.status();
                let mut checks = vec![("policy", !st.revision.is_empty(), format!("revision {}", st.revision))];
                let audit = ready_audit.health();
                checks.push(("audit", audit.state == audit::WriterState::Ok, audit.summary()));
                checks.push(match ready_db.write_error() {
                    None => ("state_store", true, "writing".to_string()),
                    Some(e) => (
                        "state_store",
                        false,
                        format!(
                            "cannot write: {e}; after an I/O error the store refuses writes until the sidecar \
                             restarts: free disk space, then restart"
                        ),
                    ),
                });
                checks.extend(ready_gateway.as_ref().map(|g| g.ready_check()));
                checks.extend(ready_gateway.as_ref().and_then(|g| g.config_ready_check()));
                checks.extend(ready_plugin.ready_check());
                checks
            }),
            agents: gateway.clone().map(|g| g as Arc<dyn governance::agents::AgentControl>),
            event_streams,
            notify,
            fleet: fleet.clone(),
            cost,
            reports,
        });
        let app = control_api::router(control_state);
        let control_open = Some(connections.with_label_values(&["control"]));
        tasks.push(tokio::spawn(control_api::serve(
            control_listener,
            app,
            listener::Limits { max_connections: control_cap, ..cfg.server.control_limits() },
            control_open,
            rx.clone(),
        )));

        Ok(Sidecar {
            data_addr,
            control_addr,
            first_admin_token,
            first_admin_token_file,
            gateway,
            shutdown,
            tasks,
            plugin_gate,
            telemetry,
            kill,
            audit,
            policy,
            db,
            broker,
            budgets: budget_handle,
            mcp,
            _watch: watch_guard,
        })
    }

    /// The approval broker (holds, decisions, and the grants every path applies).
    pub fn broker(&self) -> &Arc<governance::Broker> {
        &self.broker
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
        // MCP sessions end: their upstream sessions are closed and stdio servers stopped.
        self.mcp.shutdown();
        for t in self.tasks {
            let _ = t.await;
        }
        // Spans of the calls that just ended go out (bounded by the export timeout).
        self.telemetry.shutdown().await;
        if let Err(e) = self.budgets.close() {
            tracing::error!(error = %e, "budget ledger close at shutdown failed");
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

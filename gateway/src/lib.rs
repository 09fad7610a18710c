//! ClawButler's OpenClaw gateway link and what rides on it: the WebSocket client (an operator
//! connection with device identity), the agent registry, the OpenClaw side of the kill
//! switch, exec approvals decided by policy and people, and `attach`/`detach`.
//!
//! [`Gateway::start`] builds a supervised [`link::Link`] and one event task. The task keeps
//! the [`registry::Registry`] current, feeds the health tracker (link down = every agent of
//! the gateway offline; runs and tool calls, `health.rs`), answers `exec.approval.requested`
//! (see `exec.rs`), and after every (re)connect re-reads the roster, reconciles pending exec
//! approvals and re-applies kills made while the link was down. Fleet kills in force on this
//! sidecar are carried into OpenClaw as local kills are (`fleet_kill.rs`). The control API
//! reaches all of it through [`governance::agents::AgentControl`], which [`Gateway`] implements.

pub mod attach;
pub mod backoff;
pub mod backup;
pub mod config_safety;
pub mod cron;
pub mod device;
mod exec;
mod fleet_kill;
pub mod frame;
mod governance_watch;
mod health;
pub mod kill;
pub mod link;
mod liveness;
pub mod plugin;
pub mod plugin_install;
pub mod registry;
mod runs;
pub mod settings;
mod usage;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use governance::agents::{AgentControl, AgentSummary, ControlFuture};
use serde_json::json;
use tokio::sync::{broadcast, watch};

pub use link::{Link, LinkEvent};
pub use settings::GatewaySettings;

/// Errors of the gateway link.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway link is not connected")]
    NotConnected,
    #[error("gateway link dropped before the answer arrived")]
    Disconnected,
    #[error("gateway did not answer {method} within {after:?}")]
    Timeout { method: String, after: Duration },
    #[error("gateway refused {method}: {error}")]
    Rpc { method: String, error: Box<frame::RpcError> },
    #[error("gateway handshake: {0}")]
    Handshake(String),
    #[error("device identity: {0}")]
    Device(String),
    #[error("gateway token: environment variable {0} is not set")]
    Token(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("gateway state store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("gateway.url is not set")]
    NoUrl,
    #[error("gateway's {method} data was still refreshing after {after:?}; try again")]
    Stale { method: String, after: Duration },
    #[error("gateway kept refusing {method}: the config changed under every attempt")]
    Conflict { method: String },
    #[error("already attached ({0} exists); run detach first")]
    AlreadyAttached(std::path::PathBuf),
    #[error("not attached ({path}: {source})")]
    NotAttached { path: std::path::PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    RecordFile { path: std::path::PathBuf, source: std::io::Error },
    #[error("detach: {0}")]
    Detach(String),
    #[error("attach: {0}")]
    Attach(String),
    #[error("{path}: unreadable attach record: {source}")]
    RecordJson { path: std::path::PathBuf, source: serde_json::Error },
}

/// What the gateway module acts through (built by the app).
pub struct Parts {
    pub audit: Arc<audit::AuditLog>,
    pub policy: Arc<policy::PolicyEngine>,
    pub broker: Arc<governance::Broker>,
    pub kill: Arc<governance::KillSwitch>,
    pub health: Arc<governance::HealthTracker>,
    /// The sidecar's data address as the gateway reaches it (`host:port`): the live
    /// governance report needs it to tell sidecar providers apart (None = no report).
    pub sidecar: Option<String>,
    /// Whether each gateway's ClawButler plugin is loaded (`plugin.rs` feeds `plugins.list`).
    pub plugin_health: Arc<governance::PluginHealth>,
    /// Calls the plugin gate decided that finish here (native approvals, approved execs).
    pub handoffs: Arc<governance::Handoffs>,
    /// Budgets, for cron governance's budget-aware pausing (None: no pausing).
    pub budgets: Option<Arc<governance::Budgets>>,
    /// `[cron]`: failure streaks and budget pausing (`cron`).
    pub cron: cron::CronSettings,
    /// Session id -> session key and task type of its latest run, from `agent` events
    /// (`runs.rs`), for the data path's records.
    pub runs: Arc<governance::RunIndex>,
}

/// A running gateway link with its registry; see the module docs.
pub struct Gateway {
    /// Itself, for work that outlives a request (a critical rollback waiting for approval).
    me: std::sync::Weak<Gateway>,
    link: Arc<Link>,
    registry: registry::Registry,
    parts: Parts,
    kills: sled::Tree,
    settings: GatewaySettings,
    /// Serialises kill/recover so two operators cannot interleave config patches.
    kill_lock: tokio::sync::Mutex<()>,
    /// Serialises the passes that carry fleet kills into OpenClaw (`fleet_kill.rs`).
    fleet_pass: tokio::sync::Mutex<()>,
    exec: exec::ExecState,
    governance: governance_watch::GovernanceWatch,
    native: plugin::NativeState,
    /// Versioned config snapshots, drift and rollback (`config_safety`).
    config: config_safety::ConfigSafety,
    /// Cron governance: streaks, budget pauses, metrics (`cron`).
    cron: cron::CronState,
    /// Stored `.cbpkg` packages (`backup`).
    backups: backup::Store,
}

impl Gateway {
    /// Build the link for `settings.url` (which must be set) and start its tasks.
    pub fn start(
        settings: &GatewaySettings,
        data_dir: &Path,
        db: &storage::Store,
        parts: Parts,
        registry: &prometheus::Registry,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Gateway>, Vec<tokio::task::JoinHandle<()>>), GatewayError> {
        let url = settings.url.clone().ok_or(GatewayError::NoUrl)?;
        let link = connect_link(settings, &url, data_dir, registry)?;
        let governance =
            governance_watch::GovernanceWatch::new(parts.sidecar.clone(), data_dir.to_path_buf(), registry)?;
        let cron = cron::CronState::new(parts.cron.clone(), db.tree(storage::Tree::CronState)?, registry)?;
        let kills = db.tree(storage::Tree::GatewayKill)?;
        let config = config_safety::ConfigSafety::new(db.tree(storage::Tree::ConfigVersions)?, registry)?;
        let gw = Arc::new_cyclic(|me| Gateway {
            me: me.clone(),
            link: link.clone(),
            registry: registry::Registry::default(),
            parts,
            kills,
            settings: settings.clone(),
            kill_lock: tokio::sync::Mutex::new(()),
            fleet_pass: tokio::sync::Mutex::new(()),
            exec: exec::ExecState::default(),
            governance,
            native: plugin::NativeState::default(),
            config,
            cron,
            backups: backup::Store::new(data_dir),
        });
        let events = link.subscribe();
        let sup = link.spawn(shutdown.clone());
        let ev = tokio::spawn(gw.clone().event_loop(events, shutdown.clone()));
        let timer = tokio::spawn(gw.clone().governance_timer(shutdown.clone()));
        let poll = tokio::spawn(gw.clone().poll_plugins(shutdown.clone()));
        let cron = tokio::spawn(gw.clone().cron_budget_loop(shutdown.clone()));
        let fleet_kills = tokio::spawn(gw.clone().fleet_kill_loop(shutdown));
        Ok((gw, vec![sup, ev, timer, poll, cron, fleet_kills]))
    }

    /// The link (for tests and the CLI).
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// The `/readyz` check: the link must be up.
    pub fn ready_check(&self) -> (&'static str, bool, String) {
        let up = self.link.is_connected();
        let detail = match self.link.down_for() {
            None => format!("connected to {}", self.link.url()),
            Some(d) => match self.link.last_error() {
                Some(why) => format!("not connected to {} for {} s: {why}", self.link.url(), d.as_secs()),
                None => format!("not connected to {} for {} s", self.link.url(), d.as_secs()),
            },
        };
        ("gateway", up, detail)
    }

    async fn event_loop(
        self: Arc<Self>,
        mut events: broadcast::Receiver<LinkEvent>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let ev = tokio::select! {
                _ = shutdown.changed() => return,
                ev = events.recv() => ev,
            };
            match ev {
                Ok(LinkEvent::Connected) => {
                    let gw = self.clone();
                    tokio::spawn(async move { gw.on_connected().await });
                }
                Ok(LinkEvent::Disconnected) => {
                    let why = self.link.last_error().unwrap_or_else(|| "link lost".into());
                    self.registry.clear_runs();
                    self.audit_gateway(audit::Outcome::Disconnected, json!({"url": self.link.url(), "reason": why}));
                    self.parts.health.link_changed(false, &why);
                }
                Ok(LinkEvent::Event(e)) => self.on_event(&e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "gateway events lagged; re-reading state");
                    let gw = self.clone();
                    tokio::spawn(async move { gw.on_connected().await });
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    fn on_event(self: &Arc<Self>, e: &Arc<frame::Event>) {
        match e.event.as_str() {
            "agent" | "chat" => {
                self.registry.on_event(e);
                health::feed(&self.parts.health, e);
                runs::feed(&self.parts.runs, e);
            }
            "config.changed" => {
                let gw = self.clone();
                tokio::spawn(async move {
                    gw.refresh_agents().await;
                    gw.snapshot_config("config.changed").await;
                    gw.refresh_plugins().await;
                    // A patch is often followed by related writes: read them together.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    gw.recheck_governance("config.changed").await;
                });
            }
            "plugin.approval.requested" => {
                let gw = self.clone();
                let payload = e.payload.clone();
                tokio::spawn(async move { gw.on_plugin_approval_requested(payload).await });
            }
            "plugin.approval.resolved" => {
                let gw = self.clone();
                let payload = e.payload.clone();
                tokio::spawn(async move { gw.on_plugin_approval_resolved(payload).await });
            }
            "exec.approval.requested" if self.settings.exec_approvals => {
                let gw = self.clone();
                let payload = e.payload.clone();
                tokio::spawn(async move { gw.on_exec_requested(payload, false).await });
            }
            "exec.approval.resolved" => {
                let gw = self.clone();
                let payload = e.payload.clone();
                tokio::spawn(async move { gw.on_exec_resolved(payload).await });
            }
            "cron" => {
                let gw = self.clone();
                let payload = e.payload.clone();
                tokio::spawn(async move { gw.on_cron_event(payload).await });
            }
            "shutdown" => tracing::info!(payload = %e.payload, "gateway announced shutdown"),
            _ => {}
        }
    }

    async fn on_connected(self: Arc<Self>) {
        self.audit_gateway(audit::Outcome::Connected, json!({"url": self.link.url()}));
        self.refresh_agents().await;
        // Beside the rest: a config read must not delay "online" or the exec reconciliation.
        let gw = self.clone();
        tokio::spawn(async move { gw.snapshot_config("connected").await });
        // Online again only once the roster is re-read: an agent removed meanwhile goes from
        // "link down" to "no longer listed", never through a false "healthy".
        self.parts.health.link_changed(true, "");
        // Beside, not before: `plugins.list` takes about a second, and a link lost meanwhile
        // must not be followed by this connect's late "online".
        let gw = self.clone();
        tokio::spawn(async move { gw.refresh_plugins().await });
        if self.settings.exec_approvals {
            self.reconcile_exec().await;
        }
        self.reapply_kills().await;
        self.reconcile_fleet_kills().await;
        self.recheck_governance("connected").await;
    }

    /// Recompute the governance report every `RECHECK` while the link is up.
    async fn governance_timer(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(governance_watch::RECHECK);
        every.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = every.tick() => {
                    if self.link.is_connected() {
                        self.snapshot_config("timer").await;
                        self.recheck_governance("timer").await;
                    }
                }
            }
        }
    }

    /// Read `plugins.list` every [`plugin::LIST_EVERY`] while connected (a plugin disabled by
    /// an edit of OpenClaw's config file may not announce itself).
    async fn poll_plugins(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(plugin::LIST_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = every.tick() => {
                    if self.link.is_connected() {
                        self.refresh_plugins().await;
                    }
                }
            }
        }
    }

    async fn refresh_agents(&self) {
        match self.link.call("agents.list", json!({})).await {
            Ok(v) => {
                self.registry.replace(&v);
                self.parts.health.roster(&self.registry.ids());
            }
            Err(e) => tracing::warn!(error = %e, "agents.list failed"),
        }
    }

    fn audit_gateway(&self, outcome: audit::Outcome, details: serde_json::Value) {
        let ev = audit::AuditEvent {
            actor: Some("system".into()),
            outcome: Some(outcome),
            reason: details.get("reason").and_then(serde_json::Value::as_str).map(str::to_string),
            details,
            ..audit::AuditEvent::new(audit::RecordKind::Gateway)
        };
        if let Err(e) = self.parts.audit.append(ev) {
            tracing::error!(error = %e, "gateway audit append failed");
        }
    }

    fn summaries(&self) -> Vec<AgentSummary> {
        self.registry.summaries(&|id| self.exec.pending_for(id), &|id| self.parts.health.view(id))
    }
}

fn connect_link(
    settings: &GatewaySettings,
    url: &str,
    data_dir: &Path,
    registry: &prometheus::Registry,
) -> Result<Arc<Link>, GatewayError> {
    let token = std::env::var(&settings.token_env).ok().filter(|t| !t.is_empty());
    let device = if settings.use_device(url) {
        let path = settings.device_key.clone().unwrap_or_else(|| data_dir.join("gateway").join("device.key"));
        Some(device::Device::load_or_create(&path)?)
    } else {
        None
    };
    if token.is_none() && device.is_none() {
        return Err(GatewayError::Token(settings.token_env.clone()));
    }
    Link::new(settings, url, token, device, registry)
}

impl AgentControl for Gateway {
    fn connected(&self) -> bool {
        self.link.is_connected()
    }

    fn list(&self) -> Vec<AgentSummary> {
        self.summaries()
    }

    fn get(&self, id: &str) -> Option<AgentSummary> {
        self.registry.get(id, self.exec.pending_for(id), self.parts.health.view(id))
    }

    fn governance(&self, id: &str) -> Option<serde_json::Value> {
        self.governance.agent(id, self.link.is_connected())
    }

    fn config_history(&self) -> Option<&dyn governance::config_history::ConfigHistory> {
        Some(self)
    }

    fn cron(&self) -> Option<&dyn governance::cron::CronControl> {
        Some(self)
    }

    fn backups(&self) -> Option<&dyn governance::backups::Backups> {
        Some(self)
    }

    fn usage(&self) -> Option<&dyn governance::usage::GatewayUsage> {
        Some(self)
    }

    fn kill_record(&self, id: &str) -> Option<serde_json::Value> {
        self.record(id).map(|r| {
            json!({"local": r.local, "fleet": r.fleet, "config_patched": r.config_patched,
                   "cron_disabled": r.cron_disabled})
        })
    }

    fn kill<'a>(&'a self, id: &'a str, reason: &'a str, actor: &'a str) -> ControlFuture<'a> {
        Box::pin(async move { self.kill_agent(id, reason, actor).await })
    }

    fn recover<'a>(&'a self, id: &'a str, reason: &'a str, actor: &'a str) -> ControlFuture<'a> {
        Box::pin(async move { self.recover_agent(id, reason, actor).await })
    }

    fn kill_all<'a>(&'a self, reason: &'a str, actor: &'a str) -> ControlFuture<'a> {
        Box::pin(async move {
            let mut out = serde_json::Map::new();
            for id in self.registry.ids() {
                let r = self.kill_agent(&id, reason, actor).await.unwrap_or_else(|e| json!({"error": e}));
                out.insert(id, r);
            }
            Ok(json!({"agents": out}))
        })
    }

    fn recover_all<'a>(&'a self, reason: &'a str, actor: &'a str) -> ControlFuture<'a> {
        Box::pin(async move {
            let (mut out, mut errors) = (serde_json::Map::new(), Vec::new());
            for id in self.killed_ids() {
                match self.recover_agent(&id, reason, actor).await {
                    Ok(r) => {
                        out.insert(id, r);
                    }
                    Err(e) => errors.push(format!("{id}: {e}")),
                }
            }
            if errors.is_empty() {
                Ok(json!({"agents": out}))
            } else {
                Err(errors.join("; "))
            }
        })
    }
}

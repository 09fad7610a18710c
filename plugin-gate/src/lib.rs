//! The plugin gate: the data listener's face the ClawButler OpenClaw plugin asks
//! (`POST /v1/decide`) before every built-in tool call and every agent turn, and reports to
//! (`POST /v1/decide/report`) after them. docs/plugin.md has the whole story; the protocol is
//! in `wire.rs`.
//!
//! - A tool call becomes a policy input of kind `plugin` (`tool.rs`); the answer is allow,
//!   block (with the reason the model reads), rewrite, or a hold: the request stays open
//!   until a human decides through the broker (the same inbox, grants and expiry as every
//!   hold), answered before the plugin gives up; optionally OpenClaw's native approval.
//! - A turn is blocked when its agent is killed or a budget breaker that applies is open
//!   (`turn.rs`), so no model request is sent.
//! - Reports (`report.rs`) go to the audit log on the turn's trace, and a run's usage as
//!   OpenClaw computed it is compared with the sidecar's own metering (`usage.rs`).
//! - Every request is authenticated with a per-gateway plugin token
//!   (`governance::plugin_tokens`); heartbeats and requests feed the per-gateway plugin
//!   health (`governance::plugin`) the registry and `/readyz` show.
//!
//! Invariants: nothing is allowed that was not decided (a decision that cannot be recorded is
//! a block; a hold that nobody decided in time is a block); a client that goes away cancels
//! its hold; label values of metrics come from enums.

mod http;
mod input;
mod memory;
mod metrics;
mod report;
pub mod settings;
mod tool;
mod turn;
mod usage;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use audit::{AuditEvent, AuditLog, Outcome, RecordKind};
use governance::plugin::{Governance, PluginView};
use governance::{Broker, Budgets, Handoffs, KillSwitch, PluginHealth, PluginTokens};
use policy::PolicyEngine;
use serde_json::json;

pub use http::GateService;
pub use settings::PluginSettings;

/// Errors building the gate.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The gateway the sidecar is linked to (`[gateway] url`).
#[derive(Clone)]
pub struct Link {
    /// Its id (`governance::plugin::gateway_id` of the URL).
    pub gateway: String,
    /// Whether the link is up now.
    pub connected: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// What the gate acts through (built by the app).
pub struct Parts {
    pub policy: Arc<PolicyEngine>,
    pub audit: Arc<AuditLog>,
    pub broker: Arc<Broker>,
    pub kill: Arc<KillSwitch>,
    pub budgets: Arc<Budgets>,
    pub tokens: Arc<PluginTokens>,
    pub health: Arc<PluginHealth>,
    pub handoffs: Arc<Handoffs>,
    /// The linked gateway, when one is configured (native approvals and `required` need it).
    pub link: Option<Link>,
    /// Each run's trace id -> session key and task type, noted at `agent_run`, for the data
    /// path's records (`governance::runs`).
    pub runs: Arc<governance::RunIndex>,
}

/// The running gate; see the module docs. Shared by every connection.
pub struct Gate {
    settings: PluginSettings,
    parts: Parts,
    metrics: metrics::Metrics,
    memory: memory::Memory,
    /// Last governance state audited per expected gateway.
    last_state: std::sync::Mutex<std::collections::HashMap<String, Governance>>,
}

impl Gate {
    /// Build the gate and register its metrics.
    pub fn new(
        settings: PluginSettings,
        parts: Parts,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Gate>, GateError> {
        Ok(Arc::new(Gate {
            settings,
            parts,
            metrics: metrics::Metrics::register(registry)?,
            memory: memory::Memory::new(),
            last_state: std::sync::Mutex::default(),
        }))
    }

    /// The data listener's face (`/v1/decide...`).
    pub fn service(self: &Arc<Self>) -> GateService {
        GateService::new(self.clone())
    }

    /// The settings in force.
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }

    /// Gateways where the plugin is expected: every gateway with a plugin token, and the
    /// linked one when `[plugin] required` is set.
    pub fn expected_gateways(&self) -> Vec<String> {
        let mut g = self.parts.tokens.gateways();
        if let (true, Some(l)) = (self.settings.required, &self.parts.link) {
            g.push(governance::plugin::gateway_id(&l.gateway));
        }
        g.sort();
        g.dedup();
        g
    }

    /// The plugin of every expected gateway, plus the linked one's if it has been heard from.
    pub fn views(&self) -> Vec<PluginView> {
        let mut ids = self.expected_gateways();
        if let Some(l) = &self.parts.link {
            let id = governance::plugin::gateway_id(&l.gateway);
            if !ids.contains(&id) && self.parts.health.last_beat(&id).is_some() {
                ids.push(id);
            }
        }
        ids.into_iter().map(|g| self.parts.health.view(&g)).collect()
    }

    /// The linked gateway's plugin, when a link is configured.
    pub fn linked_view(&self) -> Option<(PluginView, bool)> {
        let l = self.parts.link.as_ref()?;
        let id = governance::plugin::gateway_id(&l.gateway);
        let expected = self.expected_gateways().contains(&id);
        Some((self.parts.health.view(&id), expected))
    }

    /// The `/readyz` check: every gateway where the plugin is expected is governed (or not
    /// known yet, shortly after a start). `None` when the plugin is expected nowhere.
    pub fn ready_check(&self) -> Option<(&'static str, bool, String)> {
        let views: Vec<PluginView> = self.expected_gateways().iter().map(|g| self.parts.health.view(g)).collect();
        if views.is_empty() {
            return None;
        }
        let bad: Vec<String> = views
            .iter()
            .filter(|v| v.governance == Governance::Ungoverned)
            .map(|v| format!("{}: built-in tools are not governed: {}", v.gateway, v.reason))
            .collect();
        if bad.is_empty() {
            let parts: Vec<String> = views.iter().map(|v| format!("{}: {}", v.gateway, v.reason)).collect();
            return Some(("plugin", true, parts.join("; ")));
        }
        Some(("plugin", false, bad.join("; ")))
    }

    /// Periodic: update the gateways gauge and record every change of a gateway's governance
    /// in the audit log (a plugin that goes missing or silent is an event an auditor wants).
    pub fn sweep(&self) {
        let views = self.views();
        let mut counts = std::collections::HashMap::new();
        for v in &views {
            *counts.entry(v.governance).or_insert(0i64) += 1;
        }
        // The gauge before the records: a reader who sees a change's record sees it counted.
        for g in [Governance::Governed, Governance::Ungoverned, Governance::Pending] {
            self.metrics.gateways.with_label_values(&[g.as_str()]).set(counts.get(&g).copied().unwrap_or(0));
        }
        let mut last = self.last_state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for v in &views {
            let before = last.insert(v.gateway.clone(), v.governance);
            let changed =
                before.is_some_and(|b| b != v.governance) || (before.is_none() && v.governance != Governance::Pending);
            if changed && v.governance != Governance::Pending {
                let outcome =
                    if v.governance == Governance::Governed { Outcome::Governed } else { Outcome::Ungoverned };
                let ev = AuditEvent {
                    actor: Some("system".into()),
                    outcome: Some(outcome),
                    reason: Some(v.reason.clone()),
                    subject: json!({"gateway": v.gateway}),
                    details: json!({"kind": "plugin_health", "plugin": v}),
                    ..AuditEvent::new(RecordKind::Plugin)
                };
                if let Err(e) = self.parts.audit.append(ev) {
                    tracing::error!(error = %e, "audit append failed for a plugin health change");
                }
                if v.governance == Governance::Ungoverned {
                    tracing::warn!(gateway = %v.gateway, reason = %v.reason, "built-in tools of this gateway are not governed");
                }
            }
        }
    }

    /// Run [`Gate::sweep`] every few seconds until `shutdown`.
    pub fn spawn_sweeper(
        self: &Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let gate = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => gate.sweep(),
                    _ = shutdown.changed() => break,
                }
            }
        })
    }

    /// `Some(why)` when the audit log cannot record (then nothing is decided: every call is
    /// blocked). One atomic load while the log is healthy; with `[audit] on_failure =
    /// "continue_unaudited"` calls go on (counted as unaudited by the log).
    fn audit_down(&self) -> Option<String> {
        self.parts.audit.admit(audit::Face::Plugin).err().map(|u| u.to_string())
    }
}

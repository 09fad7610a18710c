//! The live governance report (`attach::report`) of the connected gateway, for the control
//! API (`GET /api/v1/agents/{id}` `governance`), and drift detection.
//!
//! It is recomputed from the gateway's own config, roster and exec approvals on every
//! (re)connect, a second after each `config.changed` (a burst of changes is read once), and
//! every [`RECHECK`] (exec approval changes send no event). Each path whose state changed
//! since the previous computation (on the first, since the report `attach` ended with, from
//! its record in the data dir) is one `governance` audit record (outcome `ungoverned` when
//! it left ClawButler, `governed` when it came back) and counts in
//! `clawbutler_governance_drift_total{direction}`; `clawbutler_governance_ungoverned_paths{section}`
//! and `clawbutler_governance_ungoverned_agents` hold the current state for alerts.

use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use serde_json::{json, Value};

use super::attach::report::{drift, Report, Section, State};
use super::attach::{load_record, read_state};
use super::{Gateway, GatewayError};

/// How often the report is recomputed while the link is up.
pub const RECHECK: Duration = Duration::from_secs(30);

struct Live {
    report: Report,
    at: String,
}

/// The watch's state and metrics.
pub(crate) struct GovernanceWatch {
    sidecar: Option<String>,
    data_dir: PathBuf,
    live: RwLock<Option<Live>>,
    /// Serialises recomputations (events and the timer may overlap).
    busy: tokio::sync::Mutex<()>,
    paths: IntGaugeVec,
    agents: IntGauge,
    drifts: IntCounterVec,
}

impl GovernanceWatch {
    pub(crate) fn new(sidecar: Option<String>, data_dir: PathBuf, registry: &Registry) -> Result<Self, GatewayError> {
        let paths = IntGaugeVec::new(
            Opts::new(
                "clawbutler_governance_ungoverned_paths",
                "Paths of the gateway's agents that do not go through ClawButler, by report section",
            ),
            &["section"],
        )?;
        let agents = IntGauge::new(
            "clawbutler_governance_ungoverned_agents",
            "Agents of the gateway whose model path does not (entirely) go through ClawButler",
        )?;
        let drifts = IntCounterVec::new(
            Opts::new(
                "clawbutler_governance_drift_total",
                "Paths whose governance changed since the last check: lost (left ClawButler) or regained",
            ),
            &["direction"],
        )?;
        registry.register(Box::new(paths.clone()))?;
        registry.register(Box::new(agents.clone()))?;
        registry.register(Box::new(drifts.clone()))?;
        for s in Section::ALL {
            paths.with_label_values(&[s.as_str()]).set(0);
        }
        for d in ["lost", "regained"] {
            drifts.with_label_values(&[d]);
        }
        Ok(GovernanceWatch {
            sidecar,
            data_dir,
            live: RwLock::new(None),
            busy: tokio::sync::Mutex::new(()),
            paths,
            agents,
            drifts,
        })
    }

    /// The agent's governance as the API shows it, if a report was computed.
    pub(crate) fn agent(&self, id: &str, connected: bool) -> Option<Value> {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        let live = live.as_ref()?;
        let a = live.report.agent(id)?;
        Some(json!({
            "computed_at": live.at,
            "source": if connected { "live" } else { "last_known" },
            "model_path_governed": a.model_path_governed,
            "sections": a.sections,
            "gateway": live.report.gateway,
        }))
    }
}

impl Gateway {
    /// Recompute the report; audit and count what drifted. `trigger` names why.
    pub(crate) async fn recheck_governance(&self, trigger: &str) {
        let w = &self.governance;
        let Some(sidecar) = w.sidecar.clone() else { return };
        let _one = w.busy.lock().await;
        let state = match read_state(&self.link).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, trigger, "governance re-check: reading the gateway failed");
                return;
            }
        };
        let approver = Some(self.link.is_connected() && self.settings.exec_approvals);
        let report = state.report(&sidecar, approver);
        let previous = w.live.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|l| l.report.clone());
        let baseline = match previous {
            Some(p) => Some(p),
            None => load_record(&w.data_dir, self.link.url()).ok().flatten().and_then(|r| r.report),
        };
        for d in baseline.as_ref().map(|b| drift(b, &report)).unwrap_or_default() {
            let lost = d.is_loss();
            let regained = d.to == Some(State::Governed) || (d.to.is_none() && d.from == Some(State::Ungoverned));
            if !lost && !regained {
                continue;
            }
            w.drifts.with_label_values(&[if lost { "lost" } else { "regained" }]).inc();
            let ev = audit::AuditEvent {
                agent: Some(d.agent.clone()),
                actor: Some("system".into()),
                outcome: Some(if lost { audit::Outcome::Ungoverned } else { audit::Outcome::Governed }),
                reason: Some(d.render()),
                subject: json!({"agent": d.agent, "section": d.section, "path": d.path, "target": d.target}),
                details: json!({"from": d.from, "to": d.to, "why": d.why, "trigger": trigger, "gateway": self.link.url()}),
                ..audit::AuditEvent::new(audit::RecordKind::Governance)
            };
            if let Err(e) = self.parts.audit.append(ev) {
                tracing::error!(error = %e, "governance audit append failed");
            }
        }
        for s in Section::ALL {
            let n = report
                .agents
                .iter()
                .map(|a| a.section(s).iter().filter(|p| p.state == State::Ungoverned).count())
                .sum::<usize>();
            w.paths.with_label_values(&[s.as_str()]).set(n as i64);
        }
        w.agents.set(report.ungoverned_agents().len() as i64);
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        *w.live.write().unwrap_or_else(|p| p.into_inner()) = Some(Live { report, at });
    }
}

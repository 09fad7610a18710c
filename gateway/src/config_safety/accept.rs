//! Accepting drift: the live config becomes the agent's new baseline without a rollback
//! (the operator meant the outside change). Audited as `drift_accepted`; the caller names the
//! live version it saw (another one is a conflict), and a config that lost ClawButler's wiring
//! is accepted only when asked in so many words (`accept_ungoverned`).

use serde_json::{json, Value};

use super::classify::{max_risk, semantic_diff};
use super::{scope, Gateway};

impl Gateway {
    /// Accept the live config as the new baseline (see [`ConfigHistory::accept`]).
    ///
    /// [`ConfigHistory::accept`]: governance::config_history::ConfigHistory::accept
    pub(super) async fn accept_live(
        &self,
        agent: &str,
        seen: Option<u64>,
        accept_ungoverned: bool,
        actor: &str,
    ) -> Result<Value, governance::config_history::ConfigHistoryError> {
        use governance::config_history::ConfigHistoryError as E;
        if !self.link.is_connected() {
            return Err(E::Unavailable("the gateway link is down: the live config cannot be read now".into()));
        }
        let _one = self.config.lock.lock().await;
        self.snapshot_locked("accept drift", None).await.map_err(|e| E::Unavailable(e.to_string()))?;
        let v = &self.config.versions;
        let base = v.baseline(agent).map_err(|e| E::Store(e.to_string()))?;
        let Some(base) = base else { return Err(E::NotFound(format!("no config version of agent '{agent}'"))) };
        let live = v.latest(agent).map_err(|e| E::Store(e.to_string()))?.unwrap_or_else(|| base.clone());
        if let Some(n) = seen.filter(|n| *n != live.version) {
            return Err(E::Conflict(format!(
                "the live config of {agent} is version {} now, not version {n}: look at it again before accepting",
                live.version
            )));
        }
        if base.version == live.version {
            return Ok(json!({"accepted": false, "agent": agent, "baseline_version": base.version,
                             "why": "no drift: the live config already is the baseline"}));
        }
        let changes = super::drift_changes(semantic_diff(&base.content, &live.content));
        let lost = scope::wiring_lost(&base.content, &live.content, agent);
        if !lost.is_empty() && !accept_ungoverned {
            return Err(E::BadRequest(format!(
                "accepting version {} leaves agent {agent} UNGOVERNED ({} removed): roll back instead, or send \
                 \"accept_ungoverned\": true if that is meant",
                live.version,
                lost.join(", ")
            )));
        }
        v.accept(agent, live.version).map_err(|e| E::Store(e.to_string()))?;
        v.flush().await.map_err(|e| E::Store(e.to_string()))?;
        self.config.set_drift(agent, None);
        let result = json!({
            "accepted": true, "agent": agent, "baseline_version": live.version, "previous_baseline": base.version,
            "risk": max_risk(&changes), "wiring_lost": lost,
            "changes": changes.iter().map(|c| json!({"path": c.path, "group": c.group, "risk": c.risk})).collect::<Vec<_>>(),
        });
        self.audit_config(
            agent,
            actor,
            audit::Outcome::DriftAccepted,
            max_risk(&changes),
            format!(
                "{actor} accepted the live config of {agent} (version {}) as the new baseline instead of version {}: \
                 {} change(s) kept",
                live.version,
                base.version,
                changes.len()
            ),
            result.clone(),
        );
        Ok(result)
    }
}

//! Config safety (issue #16, `docs/config-safety.md`): every change of the gateway's config
//! is kept as an immutable, versioned snapshot per agent (and one global slice), diffed by
//! meaning, checked for drift against the version ClawButler made or accepted, and can be
//! rolled back with a dry-run plan, save-before-restore and `config.patch` + baseHash.
//!
//! When it reads: at every (re)connect, on every `config.changed`, every
//! `governance_watch::RECHECK` (exec-approval edits send no event), and around a rollback.
//! Who changed it: the sidecar's own config writes (`Gateway::config_patch`, rollbacks) run
//! under [`ConfigSafety::lock`], the same lock the snapshots take, and remember the hash each
//! write produced; a version whose `config.get` hash is one of those is ClawButler's, any
//! other is "outside ClawButler" (the OpenClaw CLI or UI, another client, a hand edit, and
//! also `clawbutler attach`/`detach`, which run in another process).

mod accept;
pub(crate) mod approval;
pub mod classify;
pub mod files;
mod model_change;
mod rollback;
pub mod scope;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, RwLock};

use prometheus::{IntGaugeVec, Opts, Registry};
use serde_json::{json, Value};

use classify::{max_risk, semantic_diff, Risk, SemanticChange};
use store::{Draft, Source, Version, Versions};

use super::{Gateway, GatewayError};

/// How many of the sidecar's own config hashes are remembered.
const OWN_HASHES: usize = 64;
pub(crate) const OUTSIDE: &str = "outside ClawButler";

/// One agent's drift, as last computed.
#[derive(Debug, Clone, Default)]
pub(crate) struct AgentDrift {
    baseline: u64,
    live: u64,
    risk: Option<Risk>,
    changes: usize,
    wiring_lost: Vec<&'static str>,
}

/// The config-safety state of a gateway link.
pub(crate) struct ConfigSafety {
    versions: Versions,
    /// Serialises snapshots and the sidecar's own config writes (see the module docs).
    pub(crate) lock: tokio::sync::Mutex<()>,
    own: Mutex<VecDeque<(String, String)>>,
    drift: RwLock<BTreeMap<String, AgentDrift>>,
    gauge: IntGaugeVec,
    /// The workspace files read last (`files.rs`).
    pub(crate) files: files::FileCache,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConfigSafety {
    pub(crate) fn new(tree: sled::Tree, registry: &Registry) -> Result<ConfigSafety, GatewayError> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "clawbutler_config_drift",
                "Agents whose live OpenClaw config differs from the version ClawButler made or accepted, \
                 by the worst risk among the drifted changes",
            ),
            &["risk"],
        )?;
        registry.register(Box::new(gauge.clone()))?;
        for r in [Risk::Low, Risk::Medium, Risk::High, Risk::Critical] {
            gauge.with_label_values(&[r.as_str()]).set(0);
        }
        let versions = Versions::new(tree);
        let stale = versions.cancel_waiting()?;
        if stale > 0 {
            tracing::warn!(stale, "critical config rollbacks left waiting by the previous run were cancelled");
        }
        Ok(ConfigSafety {
            versions,
            lock: tokio::sync::Mutex::new(()),
            own: Mutex::new(VecDeque::new()),
            drift: RwLock::new(BTreeMap::new()),
            gauge,
            files: files::FileCache::default(),
        })
    }

    /// Remember that the config with `hash` was written by the sidecar for `actor`.
    pub(crate) fn remember(&self, hash: Option<&str>, actor: &str) {
        let Some(h) = hash.filter(|h| !h.is_empty()) else { return };
        let mut own = lock(&self.own);
        own.push_back((h.to_string(), actor.to_string()));
        while own.len() > OWN_HASHES {
            own.pop_front();
        }
    }

    fn own_actor(&self, hash: &str) -> Option<String> {
        lock(&self.own).iter().rev().find(|(h, _)| h == hash).map(|(_, a)| a.clone())
    }

    fn set_drift(&self, agent: &str, d: Option<AgentDrift>) {
        let mut all = self.drift.write().unwrap_or_else(|p| p.into_inner());
        match d {
            Some(d) => all.insert(agent.to_string(), d),
            None => all.remove(agent),
        };
        for r in [Risk::Low, Risk::Medium, Risk::High, Risk::Critical] {
            let n = all.values().filter(|d| d.risk == Some(r)).count();
            self.gauge.with_label_values(&[r.as_str()]).set(n as i64);
        }
    }

    fn drift_of(&self, agent: &str) -> Option<AgentDrift> {
        self.drift.read().unwrap_or_else(|p| p.into_inner()).get(agent).cloned()
    }

    /// Agents whose ClawButler wiring drifted away, with what was lost.
    pub(crate) fn ungoverned(&self) -> Vec<(String, Vec<&'static str>)> {
        let all = self.drift.read().unwrap_or_else(|p| p.into_inner());
        all.iter().filter(|(_, d)| !d.wiring_lost.is_empty()).map(|(a, d)| (a.clone(), d.wiring_lost.clone())).collect()
    }
}

/// What the sidecar read from the gateway for a snapshot.
pub(crate) struct Read {
    pub hash: String,
    pub config: Value,
    /// `exec.approvals.get`'s answer (None when it could not be read).
    pub exec: Option<Value>,
    /// Each configured agent's workspace identity files (`files.rs`).
    pub files: BTreeMap<String, files::Files>,
}

impl Read {
    pub(crate) fn agent_doc(&self, id: &str) -> Value {
        let mut doc = scope::agent_doc(&self.config, self.exec.as_ref().map(|e| &e["file"]), id);
        if let (Some(f), Some(o)) = (self.files.get(id).filter(|f| !f.is_empty()), doc.as_object_mut()) {
            o.insert(files::FILES_KEY.into(), json!(f));
        }
        doc
    }
}

/// The changes that count as drift: all but the agent's own memory file (`files.rs`).
pub(crate) fn drift_changes(mut changes: Vec<SemanticChange>) -> Vec<SemanticChange> {
    let memory = format!("{}.{}", files::FILES_KEY, files::SELF_WRITTEN);
    changes.retain(|c| c.path != memory);
    changes
}

/// The changes grouped by meaning: `{group: [change, ...]}`.
pub fn grouped(changes: &[SemanticChange]) -> Value {
    let mut g: BTreeMap<String, Vec<&SemanticChange>> = BTreeMap::new();
    for c in changes {
        let name = serde_json::to_value(c.group).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        g.entry(name).or_default().push(c);
    }
    json!(g)
}

fn version_head(v: &Version) -> Value {
    json!({"version": v.version, "at": v.at, "source": v.source, "actor": v.actor, "gateway_hash": v.gateway_hash})
}

impl Gateway {
    /// Read the config (and exec approvals) and store what changed; see the module docs.
    pub(crate) async fn snapshot_config(&self, trigger: &str) {
        let _one = self.config.lock.lock().await;
        if let Err(e) = self.snapshot_locked(trigger, None).await {
            tracing::warn!(error = %e, trigger, "config snapshot failed");
        }
    }

    pub(crate) async fn read_config(&self) -> Result<Read, GatewayError> {
        let v = self.link.call("config.get", json!({})).await?;
        let hash = v.get("hash").and_then(Value::as_str).unwrap_or_default().to_string();
        let config =
            v.get("parsed").filter(|p| p.is_object()).or_else(|| v.get("config")).cloned().unwrap_or(json!({}));
        let exec = match self.link.call("exec.approvals.get", json!({})).await {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::debug!(error = %e, "exec.approvals.get for a config snapshot failed");
                None
            }
        };
        let ids: Vec<String> = config
            .pointer("/agents/entries")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mut files = BTreeMap::new();
        for (id, got) in self.history_files(&ids).await {
            // Unreadable now: keep what the newest version holds, so nothing looks removed.
            let f = match got {
                Some(f) => f,
                None => self
                    .config
                    .versions
                    .latest(&id)?
                    .and_then(|v| v.content.get(files::FILES_KEY).cloned())
                    .and_then(|f| serde_json::from_value(f).ok())
                    .unwrap_or_default(),
            };
            files.insert(id, f);
        }
        Ok(Read { hash, config, exec, files })
    }

    /// Snapshot under the caller's [`ConfigSafety::lock`]. `made_by`: the actor when the
    /// caller knows the sidecar just wrote this config.
    pub(crate) async fn snapshot_locked(&self, trigger: &str, made_by: Option<&str>) -> Result<Read, GatewayError> {
        let read = self.read_config().await?;
        let cs = &self.config;
        let own = made_by.map(str::to_string).or_else(|| cs.own_actor(&read.hash));
        let (source, actor) = match &own {
            Some(a) => (Source::Clawbutler, format!("ClawButler ({a})")),
            None => (Source::Outside, OUTSIDE.to_string()),
        };
        let draft = Draft { gateway_hash: &read.hash, source, actor: &actor, trigger };
        let mut ids: BTreeSet<String> = read
            .config
            .pointer("/agents/entries")
            .and_then(Value::as_object)
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        ids.extend(self.registry.ids());
        ids.extend(cs.versions.agents()?.into_iter().filter(|a| a != scope::GLOBAL));
        let mut stored = Vec::new();
        for id in &ids {
            if let Some(v) = cs.versions.append(id, &read.agent_doc(id), &draft)? {
                stored.push(v);
            }
        }
        if let Some(v) = cs.versions.append(scope::GLOBAL, &scope::global_doc(&read.config), &draft)? {
            stored.push(v);
        }
        if !stored.is_empty() {
            cs.versions.flush().await?;
        }
        for v in &stored {
            self.audit_config(
                &v.agent,
                &v.actor,
                audit::Outcome::Snapshot,
                None,
                format!("config version {} of {} ({})", v.version, v.agent, v.changed_scopes.join(", ")),
                json!({"version": v.version, "source": v.source, "trigger": trigger, "gateway_hash": v.gateway_hash,
                       "changed_scopes": v.changed_scopes}),
            );
        }
        for id in &ids {
            let before = cs.drift_of(id);
            let now = self.compute_drift(id)?.map(|(b, l, changes)| AgentDrift {
                baseline: b.version,
                live: l.version,
                risk: max_risk(&changes),
                changes: changes.len(),
                wiring_lost: scope::wiring_lost(&b.content, &l.content, id),
            });
            let fresh = stored.iter().any(|v| &v.agent == id && v.source == Source::Outside);
            if let (true, Some(d)) = (fresh, &now) {
                self.audit_drift(id, d);
            }
            if before.is_some() || now.is_some() {
                cs.set_drift(id, now);
            }
        }
        Ok(read)
    }

    /// (baseline, live, changes) when the newest version differs from the baseline.
    fn compute_drift(&self, id: &str) -> Result<Option<(Version, Version, Vec<SemanticChange>)>, GatewayError> {
        let v = &self.config.versions;
        let (Some(b), Some(l)) = (v.baseline(id)?, v.latest(id)?) else { return Ok(None) };
        if b.version == l.version {
            return Ok(None);
        }
        let changes = drift_changes(semantic_diff(&b.content, &l.content));
        Ok((!changes.is_empty()).then_some((b, l, changes)))
    }

    fn audit_drift(&self, id: &str, d: &AgentDrift) {
        let risk = d.risk.map_or("none", Risk::as_str);
        let mut reason = format!(
            "config of agent {id} changed outside ClawButler: {} change(s) since version {}, worst {risk}",
            d.changes, d.baseline
        );
        if !d.wiring_lost.is_empty() {
            reason.push_str(&format!(
                "; ClawButler wiring removed ({}): the agent is UNGOVERNED",
                d.wiring_lost.join(", ")
            ));
        }
        let changes = self
            .compute_drift(id)
            .ok()
            .flatten()
            .map(|(_, _, c)| {
                c.iter().map(|c| json!({"path": c.path, "group": c.group, "risk": c.risk})).collect::<Vec<Value>>()
            })
            .unwrap_or_default();
        self.audit_config(
            id,
            OUTSIDE,
            audit::Outcome::Drifted,
            d.risk,
            reason,
            json!({"baseline_version": d.baseline, "live_version": d.live, "changes": changes,
                   "wiring_lost": d.wiring_lost, "suggested_version": d.baseline}),
        );
    }

    pub(crate) fn audit_config(
        &self,
        agent: &str,
        actor: &str,
        outcome: audit::Outcome,
        risk: Option<Risk>,
        reason: String,
        details: Value,
    ) {
        let ev = audit::AuditEvent {
            agent: (agent != scope::GLOBAL).then(|| agent.to_string()),
            actor: Some(actor.to_string()),
            outcome: Some(outcome),
            risk,
            reason: Some(reason),
            subject: json!({"agent": agent}),
            details,
            ..audit::AuditEvent::new(audit::RecordKind::Config)
        };
        if let Err(e) = self.parts.audit.append(ev) {
            tracing::error!(error = %e, "config audit append failed");
        }
    }

    /// The `/readyz` check: fails while some agent's ClawButler wiring drifted away.
    pub fn config_ready_check(&self) -> Option<(&'static str, bool, String)> {
        let bad = self.config.ungoverned();
        if bad.is_empty() {
            return Some(("config_wiring", true, "no agent's ClawButler wiring drifted away".into()));
        }
        let parts: Vec<String> = bad
            .iter()
            .map(|(a, lost)| {
                format!("agent {a} is UNGOVERNED: ClawButler wiring removed outside ClawButler ({})", lost.join(", "))
            })
            .collect();
        Some(("config_wiring", false, format!("{} (see /api/v1/agents/<id>/config/drift)", parts.join("; "))))
    }

    fn history_status(&self, agent: &str) -> Option<Value> {
        let d = self.config.drift_of(agent);
        let base = self.config.versions.baseline(agent).ok().flatten()?;
        Some(match d {
            None => json!({"drifted": false, "ungoverned": false, "baseline_version": base.version,
                           "live_version": base.version, "risk": null, "wiring_lost": []}),
            Some(d) => json!({"drifted": true, "ungoverned": !d.wiring_lost.is_empty(), "baseline_version": d.baseline,
                              "live_version": d.live, "risk": d.risk, "changes": d.changes,
                              "wiring_lost": d.wiring_lost, "suggested_version": d.baseline}),
        })
    }

    async fn drift_now(&self, agent: &str) -> Result<Value, governance::config_history::ConfigHistoryError> {
        use governance::config_history::ConfigHistoryError as E;
        if self.link.is_connected() {
            let _one = self.config.lock.lock().await;
            self.snapshot_locked("drift check", None).await.map_err(|e| E::Unavailable(e.to_string()))?;
        }
        let v = &self.config.versions;
        let base = v.baseline(agent).map_err(|e| E::Store(e.to_string()))?;
        let Some(base) = base else { return Err(E::NotFound(format!("no config version of agent '{agent}'"))) };
        let live = v.latest(agent).map_err(|e| E::Store(e.to_string()))?.unwrap_or_else(|| base.clone());
        let changes = if base.version == live.version {
            Vec::new()
        } else {
            drift_changes(semantic_diff(&base.content, &live.content))
        };
        let lost = scope::wiring_lost(&base.content, &live.content, agent);
        Ok(json!({
            "agent": agent, "drifted": !changes.is_empty(), "source": if self.link.is_connected() { "live" } else { "last_known" },
            "baseline": version_head(&base), "live": version_head(&live),
            "risk": max_risk(&changes), "changes": changes, "groups": grouped(&changes),
            "wiring_lost": lost, "ungoverned": !lost.is_empty(),
            "suggested_version": (!changes.is_empty()).then_some(base.version),
        }))
    }
}

impl governance::config_history::ConfigHistory for Gateway {
    fn versions(&self, agent: &str) -> Result<Value, governance::config_history::ConfigHistoryError> {
        use governance::config_history::ConfigHistoryError as E;
        let list = self.config.versions.list(agent).map_err(|e| E::Store(e.to_string()))?;
        if list.is_empty() {
            return Err(E::NotFound(format!("no config version of agent '{agent}'")));
        }
        let base = self.config.versions.baseline(agent).map_err(|e| E::Store(e.to_string()))?.map(|b| b.version);
        let items: Vec<Value> = list.iter().map(Version::head).collect();
        Ok(json!({"agent": agent, "baseline_version": base, "items": items}))
    }

    fn version(&self, agent: &str, version: u64) -> Result<Value, governance::config_history::ConfigHistoryError> {
        use governance::config_history::ConfigHistoryError as E;
        let v = self.config.versions.get(agent, version).map_err(|e| E::Store(e.to_string()))?;
        let v = v.ok_or_else(|| E::NotFound(format!("agent '{agent}' has no config version {version}")))?;
        serde_json::to_value(v).map_err(|e| E::Store(e.to_string()))
    }

    fn diff(&self, agent: &str, from: u64, to: u64) -> Result<Value, governance::config_history::ConfigHistoryError> {
        use governance::config_history::ConfigHistoryError as E;
        let get = |n: u64| {
            self.config
                .versions
                .get(agent, n)
                .map_err(|e| E::Store(e.to_string()))?
                .ok_or_else(|| E::NotFound(format!("agent '{agent}' has no config version {n}")))
        };
        let (a, b) = (get(from)?, get(to)?);
        let changes = semantic_diff(&a.content, &b.content);
        Ok(json!({"agent": agent, "from": version_head(&a), "to": version_head(&b), "risk": max_risk(&changes),
                  "changes": changes, "groups": grouped(&changes)}))
    }

    fn drift<'a>(&'a self, agent: &'a str) -> governance::config_history::HistoryFuture<'a> {
        Box::pin(self.drift_now(agent))
    }

    fn rollback<'a>(
        &'a self,
        agent: &'a str,
        to: u64,
        dry_run: bool,
        actor: &'a str,
    ) -> governance::config_history::HistoryFuture<'a> {
        Box::pin(self.rollback_agent(agent, to, dry_run, actor))
    }

    fn held_rollback(
        &self,
        agent: &str,
        approval_id: &str,
    ) -> Result<Value, governance::config_history::ConfigHistoryError> {
        Gateway::held_rollback(self, agent, approval_id)
    }

    fn accept<'a>(
        &'a self,
        agent: &'a str,
        version: Option<u64>,
        accept_ungoverned: bool,
        actor: &'a str,
    ) -> governance::config_history::HistoryFuture<'a> {
        Box::pin(self.accept_live(agent, version, accept_ungoverned, actor))
    }

    fn status(&self, agent: &str) -> Option<Value> {
        self.history_status(agent)
    }

    fn change_model<'a>(
        &'a self,
        c: governance::config_history::ModelChange<'a>,
    ) -> governance::config_history::HistoryFuture<'a> {
        Box::pin(self.change_model_agent(c.agent, c.patch, c.base_hash, c.actor))
    }

    fn held_model_change(&self, approval_id: &str) -> Result<Value, governance::config_history::ConfigHistoryError> {
        Gateway::held_model_change(self, approval_id)
    }
}

//! Rollback of one agent's slice to an earlier version: the plan (every path that changes,
//! what cannot be restored, whether the gateway must restart), save-before-restore (the live
//! config is snapshotted first, so the rollback is itself undoable), then one `config.patch`
//! with the baseHash read for the plan (a concurrent change is a conflict, never overwritten)
//! and, when the agent's exec-approvals entry differs, `exec.approvals.set` with its own hash.

use std::collections::BTreeMap;

use governance::config_history::ConfigHistoryError as E;
use serde_json::{json, Value};

use super::approval::Seen;
use super::classify::{max_risk, semantic_diff, Risk, REDACTED};
use super::files::FILES_KEY;
use super::scope::{EXEC_KEY, GLOBAL};
use super::{grouped, Gateway};
use crate::kill::{diff, restore_patch, Change};
use crate::GatewayError;

/// At most this many `config.schema.lookup` calls per plan (the rest is `unknown`).
const MAX_LOOKUPS: usize = 24;

/// The merge patch, its replace paths and the skipped paths that turn `current` (the
/// agent's live slice) into `target`, given the whole live `config` (bindings are one array
/// shared by every agent, so it is rebuilt whole: the others' entries, then the target's).
pub(crate) fn plan_patch(
    current: &Value,
    target: &Value,
    config: &Value,
    agent: &str,
) -> (Value, Vec<String>, Vec<Value>) {
    let mut changes: Vec<Change> = Vec::new();
    let mut skipped = Vec::new();
    let mut bindings = false;
    for c in diff(current, target) {
        match c.path.first().map(String::as_str) {
            // Not config keys: the exec entry and the files are written by their own RPCs.
            Some(EXEC_KEY) | Some(FILES_KEY) | Some("meta") => continue,
            Some("bindings") => bindings = true,
            _ => {
                if c.after.as_ref().is_some_and(|a| a.to_string().contains(REDACTED)) {
                    skipped.push(json!({"path": c.path.join("."),
                        "why": "a secret the gateway only shows redacted: set it again by hand"}));
                    continue;
                }
                // restore_patch puts `before` back where the config still holds `after`.
                changes.push(Change { path: c.path, before: c.after, after: c.before });
            }
        }
    }
    let (mut patch, mut replace, _) = restore_patch(&changes, current);
    if bindings {
        let mut all: Vec<Value> = config
            .get("bindings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|b| b.get("agentId").and_then(Value::as_str) != Some(agent))
            .cloned()
            .collect();
        all.extend(target.get("bindings").and_then(Value::as_array).into_iter().flatten().cloned());
        patch["bindings"] = Value::Array(all);
        replace.push("bindings".into());
    }
    (patch, replace, skipped)
}

pub(super) fn is_stale(e: &GatewayError) -> bool {
    matches!(e, GatewayError::Rpc { error, .. } if error.message.contains("changed since"))
}

impl Gateway {
    /// The reload kind (`hot`, `restart`, `none`, or `unknown`) of each changed path.
    async fn reload_kinds(&self, paths: &[String]) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (i, p) in paths.iter().enumerate() {
            let kind = if i >= MAX_LOOKUPS {
                "unknown".to_string()
            } else {
                match self.link.call("config.schema.lookup", json!({"path": p})).await {
                    Ok(v) => v.get("reloadKind").and_then(Value::as_str).unwrap_or("unknown").to_string(),
                    Err(e) => {
                        tracing::debug!(path = %p, error = %e, "config.schema.lookup failed");
                        "unknown".to_string()
                    }
                }
            };
            out.insert(p.clone(), kind);
        }
        out
    }

    /// See the module docs. `actor` is the control-API token name. A rollback whose plan holds
    /// a critical change is not applied here: it waits for a human (`approval.rs`), who lets
    /// [`Gateway::rollback_approved`] apply it.
    pub(crate) async fn rollback_agent(&self, agent: &str, to: u64, dry_run: bool, actor: &str) -> Result<Value, E> {
        self.rollback_inner(agent, to, dry_run, actor, None).await
    }

    /// Apply a rollback a human approved, as planned when it was asked for: only if the config
    /// is still what the approver saw (same gateway hash, same agent slice), else a conflict.
    pub(crate) async fn rollback_approved(&self, agent: &str, to: u64, actor: &str, seen: &Seen) -> Result<Value, E> {
        self.rollback_inner(agent, to, false, actor, Some(seen)).await
    }

    async fn rollback_inner(
        &self,
        agent: &str,
        to: u64,
        dry_run: bool,
        actor: &str,
        approved: Option<&Seen>,
    ) -> Result<Value, E> {
        if agent == GLOBAL {
            return Err(E::BadRequest(
                "the global slice cannot be rolled back (it holds every agent's shared settings): roll back an agent, \
                 or restore a backup with replace_scope"
                    .into(),
            ));
        }
        if !self.link.is_connected() {
            return Err(E::Unavailable("the gateway link is down: cannot read or change OpenClaw's config now".into()));
        }
        let target = self.config.versions.get(agent, to).map_err(|e| E::Store(e.to_string()))?;
        let target = target.ok_or_else(|| E::NotFound(format!("agent '{agent}' has no config version {to}")))?;
        let _one = self.config.lock.lock().await;
        // Save before restore: whatever is live now becomes a version first.
        let read = self.snapshot_locked("before rollback", None).await.map_err(|e| E::Unavailable(e.to_string()))?;
        let live = self.config.versions.latest(agent).map_err(|e| E::Store(e.to_string()))?;
        let live_version = live.as_ref().map(|v| v.version);
        let current = read.agent_doc(agent);
        let changes = semantic_diff(&current, &target.content);
        let (patch, replace, skipped) = plan_patch(&current, &target.content, &read.config, agent);
        let exec_change = current.get(EXEC_KEY) != target.content.get(EXEC_KEY);
        let paths: Vec<String> = changes
            .iter()
            .filter(|c| !c.path.starts_with(EXEC_KEY) && !c.path.starts_with(FILES_KEY))
            .map(|c| c.path.clone())
            .collect();
        let files_change = current.get(FILES_KEY) != target.content.get(FILES_KEY);
        let kinds = self.reload_kinds(&paths).await;
        let restart = kinds.values().any(|k| k == "restart");
        let plan = json!({
            "agent": agent, "to_version": to, "from_version": live_version, "dry_run": dry_run,
            "risk": max_risk(&changes), "changes": changes, "groups": grouped(&changes),
            "skipped": skipped, "patch": patch, "replace_paths": replace, "exec_approvals_change": exec_change,
            "workspace_files_change": files_change,
            "restart": {"required": restart, "reload_kinds": kinds}, "base_hash": read.hash,
        });
        let reason = format!("rollback of agent {agent} to version {to}: {} change(s)", changes.len());
        if dry_run {
            self.audit_config(agent, actor, audit::Outcome::RollbackPlanned, max_risk(&changes), reason, plan.clone());
            return Ok(plan);
        }
        if changes.is_empty() {
            return Ok(json!({"applied": false, "why": "the live config already equals that version", "plan": plan}));
        }
        // Every refusal past this point is audited with the plan, then answered.
        let risk = max_risk(&changes);
        let refuse = |conflict: bool, why: String, plan: Value| {
            let outcome = if conflict { audit::Outcome::RollbackConflict } else { audit::Outcome::RollbackFailed };
            self.audit_config(agent, actor, outcome, risk, why.clone(), plan);
            if conflict {
                E::Conflict(why)
            } else {
                E::Unavailable(why)
            }
        };
        match approved {
            Some(seen) if seen.hash != read.hash || seen.slice != current => {
                let why = format!(
                    "OpenClaw's config changed after this rollback was asked for (approval {}); the approval covered \
                     the config as it was then, so nothing was applied: check the drift and ask again",
                    seen.approval_id
                );
                return Err(refuse(true, why, plan));
            }
            Some(_) => {}
            None if max_risk(&changes) == Some(Risk::Critical) => {
                let seen = Seen { approval_id: String::new(), hash: read.hash.clone(), slice: current };
                return self.hold_rollback(agent, to, actor, plan, &changes, seen);
            }
            None => {}
        }
        let has_patch = patch.as_object().is_some_and(|o| !o.is_empty());
        if has_patch {
            let mut params = json!({"raw": patch.to_string(), "baseHash": read.hash,
                                    "note": format!("clawbutler rollback of {agent} to version {to} by {actor}")});
            if !replace.is_empty() {
                params["replacePaths"] = json!(replace);
            }
            match self.link.call("config.patch", params).await {
                Ok(v) => self.config.remember(v.get("hash").and_then(Value::as_str), actor),
                Err(e) if is_stale(&e) => {
                    let why = format!(
                        "OpenClaw's config changed since it was read for this rollback ({e}); nothing was \
                         overwritten: check the drift and retry"
                    );
                    return Err(refuse(true, why, plan));
                }
                Err(e) => {
                    let why = format!("OpenClaw refused the rollback: {e}");
                    return Err(refuse(false, why, plan));
                }
            }
        }
        if exec_change {
            if let Err(e) = self.restore_exec(agent, target.content.get(EXEC_KEY), read.exec.as_ref()).await {
                let why = format!("config restored, but the exec approvals entry was not: {e}");
                return Err(refuse(is_stale(&e), why, plan));
            }
        }
        if files_change {
            if let Err(e) = self.restore_files(agent, &current, &target.content).await {
                let why = format!("config restored, but the workspace files were not: {e}");
                return Err(refuse(e.to_string().contains("changed since"), why, plan));
            }
        }
        let after = self.snapshot_locked("rollback", Some(actor)).await.map_err(|e| E::Unavailable(e.to_string()))?;
        let now = after.agent_doc(agent);
        let left = semantic_diff(&now, &target.content);
        let new_version = self.config.versions.latest(agent).map_err(|e| E::Store(e.to_string()))?.map(|v| v.version);
        let result = json!({"applied": true, "restored_exactly": left.is_empty(), "not_restored": left,
                            "pre_rollback_version": live_version, "new_version": new_version, "plan": plan});
        self.audit_config(agent, actor, audit::Outcome::RolledBack, max_risk(&changes), reason, result.clone());
        Ok(result)
    }

    async fn restore_exec(
        &self,
        agent: &str,
        entry: Option<&Value>,
        answer: Option<&Value>,
    ) -> Result<(), GatewayError> {
        let Some(answer) = answer else {
            return Err(GatewayError::Attach("exec.approvals.get could not be read".into()));
        };
        let mut file = answer.get("file").cloned().filter(Value::is_object).unwrap_or(json!({}));
        if !file["agents"].is_object() {
            file["agents"] = json!({});
        }
        if let Some(agents) = file["agents"].as_object_mut() {
            match entry {
                Some(e) => agents.insert(agent.to_string(), e.clone()),
                None => agents.remove(agent),
            };
        }
        let hash = answer.get("hash").cloned().unwrap_or(Value::Null);
        self.link.call("exec.approvals.set", json!({"file": file, "baseHash": hash})).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patch_turns_the_live_slice_into_the_target() {
        let config = json!({"bindings": [{"agentId": "ops"}, {"agentId": "main", "match": {"channel": "x"}}],
                            "agents": {"entries": {"main": {"model": "direct/m", "tools": {"deny": ["exec"]}}}}});
        let current = json!({"agents": {"entries": {"main": {"model": "direct/m", "tools": {"deny": ["exec"]}}}},
                             "bindings": [{"agentId": "main", "match": {"channel": "x"}}],
                             "models": {"providers": {"direct": {"apiKey": "sk-new"}}}});
        let target = json!({"agents": {"entries": {"main": {"model": "cb-main/m", "modelPolicy": {"allow": ["cb-main/*"]}}}},
                            "models": {"providers": {"direct": {"apiKey": REDACTED}, "cb-main": {"baseUrl": "http://s/a/main/x/v1"}}}});
        let (patch, replace, skipped) = plan_patch(&current, &target, &config, "main");
        assert_eq!(patch["agents"]["entries"]["main"]["model"], "cb-main/m");
        assert_eq!(patch["agents"]["entries"]["main"]["tools"], Value::Null, "removed with null");
        assert_eq!(patch["models"]["providers"]["cb-main"]["baseUrl"], "http://s/a/main/x/v1");
        assert!(patch["models"]["providers"].get("direct").is_none(), "a redacted secret is never written back");
        assert_eq!(skipped.len(), 1);
        assert_eq!(patch["bindings"], json!([{"agentId": "ops"}]), "the other agents' bindings stay");
        assert!(
            replace.contains(&"bindings".to_string())
                && replace.contains(&"agents.entries.main.tools.deny".to_string())
        );
    }
}

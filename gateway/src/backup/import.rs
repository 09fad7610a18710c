//! Import of a package: open it (a wrong key, a damaged, truncated or newer package is refused
//! before anything is read from the gateway), preview every change per agent and section,
//! then (not a dry run) write a checkpoint `backup` package of the live gateway with the same
//! key, apply the config with one `config.patch` on the baseHash the preview was made from (a
//! concurrent change is a conflict: nothing is overwritten), then the workspace files and the
//! cron jobs. Runs under the config-safety lock, so the version that follows is ClawButler's.
//! A preview with a critical change is held for a human first (`hold.rs`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use governance::backups::{BackupError as E, ImportRequest};
use serde_json::{json, Value};

use super::hold::SeenImport;
use super::plan::{self, Scope, Strategy};
use super::{container, portable_job, refused, secret_of, secrets, Intent, Live};
use crate::config_safety::classify::{max_risk, Risk, REDACTED};
use crate::config_safety::scope::GLOBAL;
use crate::{Gateway, GatewayError};

type Files = BTreeMap<String, BTreeMap<String, String>>;

fn strategy(s: &str) -> Result<Strategy, E> {
    serde_json::from_value(json!(s))
        .map_err(|_| E::BadRequest(format!("unknown strategy '{s}': use merge, replace_scope or exact_restore")))
}

fn job_key(j: &Value) -> (String, String) {
    let s = |k: &str| j.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    (s("agentId"), s("name"))
}

/// The cron operations: (add, update [(id, job)], remove [id]).
fn cron_plan(
    live: &[Value],
    pkg: &[Value],
    strategy: Strategy,
    scope: &Scope,
) -> (Vec<Value>, Vec<(String, Value)>, Vec<String>) {
    let in_scope = |k: &(String, String)| match strategy {
        Strategy::ReplaceScope => scope.sections.iter().any(|s| s == "cron") || scope.agents.contains(&k.0),
        _ => true,
    };
    let live: BTreeMap<(String, String), (String, Value)> = live
        .iter()
        .map(|j| (job_key(j), (j.get("id").and_then(Value::as_str).unwrap_or_default().to_string(), portable_job(j))))
        .collect();
    let pkg: BTreeMap<(String, String), Value> = pkg.iter().map(|j| (job_key(j), j.clone())).collect();
    let (mut add, mut update, mut remove) = (Vec::new(), Vec::new(), Vec::new());
    for (k, j) in &pkg {
        match live.get(k) {
            None if in_scope(k) => add.push(j.clone()),
            Some((id, l)) if in_scope(k) && strategy != Strategy::Merge && l != j => {
                update.push((id.clone(), j.clone()))
            }
            _ => {}
        }
    }
    if strategy != Strategy::Merge {
        remove =
            live.iter().filter(|(k, _)| in_scope(k) && !pkg.contains_key(*k)).map(|(_, (id, _))| id.clone()).collect();
    }
    (add, update, remove)
}

/// The files to write: (agent, name, content).
fn files_plan(
    live: &Files,
    pkg: &Files,
    target: &Value,
    strategy: Strategy,
    scope: &Scope,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (agent, files) in pkg {
        if target.pointer(&format!("/agents/entries/{agent}")).is_none() {
            continue;
        }
        if strategy == Strategy::ReplaceScope && !scope.agents.contains(agent) {
            continue;
        }
        let have = live.get(agent);
        for (name, content) in files {
            let now = have.and_then(|h| h.get(name));
            let write = match strategy {
                Strategy::Merge => now.is_none(),
                _ => now != Some(content),
            };
            if write {
                out.push((agent.clone(), name.clone(), content.clone()));
            }
        }
    }
    out
}

/// Secret values in the package (real values where the live gateway shows a placeholder, and
/// values under secret-named keys): masked in every preview.
fn secret_values(pkg: &Value, live: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (_, _, named) = secrets::fill(&mut pkg.clone(), None);
    out.extend(named);
    fn walk(p: &Value, l: &Value, out: &mut Vec<String>) {
        match (p, l) {
            (Value::Object(po), Value::Object(lo)) => {
                for (k, v) in po {
                    if let Some(lv) = lo.get(k) {
                        walk(v, lv, out);
                    }
                }
            }
            (Value::String(s), Value::String(r)) if r == REDACTED && s != REDACTED => out.push(s.clone()),
            _ => {}
        }
    }
    walk(pkg, live, &mut out);
    out
}

fn is_stale(e: &GatewayError) -> bool {
    matches!(e, GatewayError::Rpc { error, .. } if error.message.contains("changed since"))
}

impl Gateway {
    /// See the module docs. An import whose preview holds a critical change is not applied
    /// here: it waits for a human (`hold.rs`), who lets it apply on the config they saw.
    pub(crate) async fn import_package(&self, req: ImportRequest, actor: &str) -> Result<Value, E> {
        self.import_inner(req, actor, None).await
    }

    pub(super) async fn import_inner(
        &self,
        req: ImportRequest,
        actor: &str,
        approved: Option<&SeenImport>,
    ) -> Result<Value, E> {
        let t0 = Instant::now();
        let strategy = strategy(&req.strategy)?;
        let scope = Scope { agents: req.agents.clone(), sections: req.sections.clone() };
        if strategy == Strategy::ReplaceScope && scope.agents.is_empty() && scope.sections.is_empty() {
            return Err(E::BadRequest("replace_scope needs `agents` or `sections` to replace".into()));
        }
        let bytes = self.package_bytes(&req.package)?;
        let secret = secret_of(&req.key)?;
        let len = bytes.len();
        let (manifest, payload) = match container::open_off_runtime(bytes, secret.clone()).await {
            Ok(x) => x,
            Err(e) => {
                let why = format!("package refused, nothing applied: {e}");
                self.audit_config(
                    GLOBAL,
                    actor,
                    audit::Outcome::ImportFailed,
                    None,
                    why.clone(),
                    json!({"bytes": len}),
                );
                return Err(refused(e));
            }
        };
        let intent = manifest.extra.get("intent").and_then(Value::as_str).unwrap_or("backup").to_string();
        let mut pkg_config = payload.get("config").cloned().unwrap_or(json!({}));
        let unfilled = secrets::resolve_references(&mut pkg_config, &req.secrets);
        let pkg_cron: Vec<Value> = payload.get("cron").and_then(Value::as_array).cloned().unwrap_or_default();
        let pkg_files: Files = serde_json::from_value(payload.get("files").cloned().unwrap_or(json!({})))
            .map_err(|e| E::Refused(format!("the package's files are unreadable: {e}")))?;
        if !self.link.is_connected() {
            return Err(E::Unavailable("the gateway link is down: cannot read or change OpenClaw's config now".into()));
        }
        let _one = self.config.lock.lock().await;
        let live = self.live_state().await.map_err(|e| E::Unavailable(e.to_string()))?;
        let target = plan::target(&live.config, &pkg_config, strategy, &scope);
        let (patch, replace, skipped) = plan::patch(&live.config, &target);
        let masked = secret_values(&pkg_config, &live.config);
        let (changes, by) = plan::preview(&live.config, &target, &masked);
        let (add, update, remove) = cron_plan(&live.cron, &pkg_cron, strategy, &scope);
        let files = files_plan(&live.files, &pkg_files, &target, strategy, &scope);
        let preview = json!({
            "package": manifest.extra.get("id"), "intent": intent, "strategy": strategy, "dry_run": req.dry_run,
            "risk": max_risk(&changes), "changes": changes, "by": by, "skipped": skipped,
            "unfilled_references": unfilled, "base_hash": live.hash,
            "cron": {"add": add.iter().map(super::plan_job_name).collect::<Vec<_>>(),
                     "update": update.iter().map(|(_, j)| super::plan_job_name(j)).collect::<Vec<_>>(),
                     "remove": remove},
            "files": files.iter().map(|(a, n, _)| json!({"agent": a, "name": n})).collect::<Vec<_>>(),
        });
        let summary = format!(
            "{} import of package {}: {} config change(s), {} file(s), {} cron change(s)",
            req.strategy,
            manifest.extra.get("id").and_then(Value::as_str).unwrap_or("(uploaded)"),
            changes.len(),
            files.len(),
            add.len() + update.len() + remove.len()
        );
        if req.dry_run {
            self.audit_config(
                GLOBAL,
                actor,
                audit::Outcome::ImportPlanned,
                max_risk(&changes),
                summary,
                preview.clone(),
            );
            return Ok(preview);
        }
        match approved {
            Some(seen) if !seen.still(&live.hash, &preview) => {
                let why = format!(
                    "OpenClaw's config, cron jobs or workspace files changed after this import was asked for \
                     (approval {}); the approval covered the gateway as it was then, so nothing was applied: \
                     preview again and ask again",
                    seen.approval_id
                );
                self.audit_config(
                    GLOBAL,
                    actor,
                    audit::Outcome::ImportConflict,
                    max_risk(&changes),
                    why.clone(),
                    preview,
                );
                return Err(E::Conflict(why));
            }
            Some(_) => {}
            None if max_risk(&changes) == Some(Risk::Critical) => {
                return self.hold_import(req, actor, preview, &changes, &summary);
            }
            None => {}
        }
        // A checkpoint of the live gateway first, so the import can be undone.
        let (checkpoint, cp_bytes, _) =
            self.build_package(&live, Intent::Backup, &secret, actor, Some("checkpoint before an import")).await?;
        self.backups.write(&checkpoint, &cp_bytes)?;
        self.apply_config(&live, &patch, &replace, actor, &preview).await?;
        let mut errors = Vec::new();
        // OpenClaw adds keys of its own after some writes (an agent's default workspace, the
        // default heartbeat and system agent when an agent appears): one more pass, planned
        // from what is live now with the same strategy, brings the config to the package's.
        let left = match self.reconcile(&pkg_config, strategy, &scope, actor, &preview).await {
            Ok(left) => left,
            Err(e) => {
                errors.push(format!("second pass: {e}"));
                Vec::new()
            }
        };
        // The files go where the agents' workspaces are now (the config may have moved them),
        // so they are planned again against what those workspaces hold.
        let mut now: Files = BTreeMap::new();
        for agent in pkg_files.keys().filter(|a| target.pointer(&format!("/agents/entries/{a}")).is_some()) {
            match self.agent_files(agent, |_| true, None).await {
                Ok(f) => {
                    now.insert(agent.clone(), f);
                }
                Err(e) => errors.push(format!("workspace files of {agent}: {e}")),
            }
        }
        for (agent, name, content) in &files_plan(&now, &pkg_files, &target, strategy, &scope) {
            if let Err(e) = self.write_file(agent, name, content).await {
                errors.push(format!("workspace file {name} of {agent}: {e}"));
            }
        }
        for j in &add {
            if let Err(e) = self.link.call("cron.add", j.clone()).await {
                errors.push(format!("cron.add {}: {e}", super::plan_job_name(j)));
            }
        }
        for (id, j) in &update {
            if let Err(e) = self.link.call("cron.update", json!({"id": id, "patch": j})).await {
                errors.push(format!("cron.update {id}: {e}"));
            }
        }
        for id in &remove {
            if let Err(e) = self.link.call("cron.remove", json!({"id": id})).await {
                errors.push(format!("cron.remove {id}: {e}"));
            }
        }
        if let Err(e) = self.snapshot_locked("import", Some(actor)).await {
            tracing::warn!(error = %e, "config snapshot after an import failed");
        }
        let result = json!({"applied": true, "complete": errors.is_empty(), "errors": errors,
                            "not_restored": left, "checkpoint": checkpoint,
                            "took_ms": t0.elapsed().as_millis() as u64, "preview": preview});
        let outcome = if errors.is_empty() { audit::Outcome::Imported } else { audit::Outcome::ImportFailed };
        self.audit_config(GLOBAL, actor, outcome, max_risk(&changes), summary, result.clone());
        Ok(result)
    }

    /// Re-read, and patch once more when the live config is not yet where the strategy aims;
    /// returns the paths that still differ (secrets the package does not hold excepted).
    async fn reconcile(
        &self,
        pkg: &Value,
        strategy: Strategy,
        scope: &Scope,
        actor: &str,
        preview: &Value,
    ) -> Result<Vec<String>, E> {
        let mut left = Vec::new();
        for pass in 0..2 {
            let v = self.link.call("config.get", json!({})).await.map_err(|e| E::Unavailable(e.to_string()))?;
            let hash = v.get("hash").and_then(Value::as_str).unwrap_or_default().to_string();
            let mut config = v.get("parsed").cloned().unwrap_or(json!({}));
            // Secrets show redacted: compare them with the gateway's file where it is readable.
            if let Ok(file) = self.config_file() {
                secrets::fill(&mut config, Some(&file));
            }
            let target = plan::target(&config, pkg, strategy, scope);
            let (patch, replace, skipped) = plan::patch(&config, &target);
            let skipped: Vec<&str> = skipped.iter().filter_map(|s| s["path"].as_str()).collect();
            left = plan::preview(&config, &target, &[])
                .0
                .into_iter()
                .filter(|c| {
                    !skipped.contains(&c.path.as_str()) && c.before.as_ref().and_then(Value::as_str) != Some(REDACTED)
                })
                .map(|c| c.path)
                .collect();
            if left.is_empty() || pass == 1 {
                break;
            }
            let live = Live { hash, config, cron: Vec::new(), files: Default::default() };
            self.apply_config(&live, &patch, &replace, actor, preview).await?;
        }
        Ok(left)
    }

    async fn apply_config(
        &self,
        live: &Live,
        patch: &Value,
        replace: &[String],
        actor: &str,
        preview: &Value,
    ) -> Result<(), E> {
        if patch.as_object().is_none_or(|o| o.is_empty()) {
            return Ok(());
        }
        let mut params = json!({"raw": patch.to_string(), "baseHash": live.hash,
                                "note": format!("clawbutler package import by {actor}")});
        if !replace.is_empty() {
            params["replacePaths"] = json!(replace);
        }
        match self.link.call("config.patch", params).await {
            Ok(v) => {
                self.config.remember(v.get("hash").and_then(Value::as_str), actor);
                Ok(())
            }
            Err(e) if is_stale(&e) => {
                let why = format!(
                    "OpenClaw's config changed since it was read for this import ({e}); nothing was overwritten: \
                     preview again and retry"
                );
                self.audit_config(GLOBAL, actor, audit::Outcome::ImportConflict, None, why.clone(), preview.clone());
                Err(E::Conflict(why))
            }
            Err(e) => {
                let why = format!("OpenClaw refused the import's config: {e}");
                self.audit_config(GLOBAL, actor, audit::Outcome::ImportFailed, None, why.clone(), preview.clone());
                Err(E::Unavailable(why))
            }
        }
    }

    /// `agents.files.set`, retried while a just-added agent is not loaded yet (the config
    /// reload is eventually consistent, `openclaw-gateway.md` §4).
    async fn write_file(&self, agent: &str, name: &str, content: &str) -> Result<(), GatewayError> {
        let t0 = Instant::now();
        loop {
            match self.link.call("agents.files.set", json!({"agentId": agent, "name": name, "content": content})).await
            {
                Err(GatewayError::Rpc { error, .. })
                    if error.message.contains("not found") && t0.elapsed() < Duration::from_secs(15) =>
                {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                r => return r.map(|_| ()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_plans_follow_the_strategy() {
        let live = vec![
            json!({"id": "1", "agentId": "main", "name": "a", "enabled": true}),
            json!({"id": "2", "agentId": "ops", "name": "b", "enabled": true}),
        ];
        let pkg = vec![
            json!({"agentId": "main", "name": "a", "enabled": false}),
            json!({"agentId": "main", "name": "c", "enabled": true}),
        ];
        let (add, update, remove) = cron_plan(&live, &pkg, Strategy::Merge, &Scope::default());
        assert_eq!((add.len(), update.len(), remove.len()), (1, 0, 0));
        let (add, update, remove) = cron_plan(&live, &pkg, Strategy::ExactRestore, &Scope::default());
        assert_eq!((add.len(), update[0].0.as_str(), remove), (1, "1", vec!["2".to_string()]));
        let scope = Scope { agents: vec!["ops".into()], sections: vec![] };
        let (add, update, remove) = cron_plan(&live, &pkg, Strategy::ReplaceScope, &scope);
        assert_eq!((add.len(), update.len(), remove), (0, 0, vec!["2".to_string()]));
    }

    #[test]
    fn a_refused_package_names_its_reason() {
        assert!(matches!(strategy("overwrite"), Err(E::BadRequest(_))));
        assert_eq!(strategy("exact_restore").ok(), Some(Strategy::ExactRestore));
    }
}

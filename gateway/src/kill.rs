//! The OpenClaw side of the kill switch. Kill, in order of urgency: abort the agent's active
//! runs (`sessions.abort`, so a streaming run ends within the 2 s promise), deny its pending
//! exec approvals, set `agents.entries.<id>.tools.deny: ["*"]` (config.patch + baseHash) and
//! disable its enabled cron jobs. What was there before is stored in the `gateway_kill` tree
//! before anything else is changed, so recover restores exactly that, even after a restart.
//! A second kill of a killed agent aborts runs again but never overwrites the stored "before".
//!
//! Two kinds of kill hold that change: a local kill (`/api/v1/agents/...`) and a fleet kill in
//! force on this sidecar (`fleet_kill.rs`). The record names its holders; a kill by the other
//! kind only adds itself as a holder (nothing is patched or paused twice), and a recover only
//! drops its own kind: OpenClaw is restored when the last holder lets go.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Gateway, GatewayError};

/// What a kill changed in OpenClaw, enough to undo it exactly.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct KillRecord {
    /// Config paths the kill's patch changed (its own keys and whatever the gateway
    /// normalised while rewriting the file), each with its value before and after.
    pub changes: Vec<Change>,
    /// Whether the tools patch was applied.
    pub config_patched: bool,
    /// Cron jobs the kill disabled (they were enabled).
    pub cron_disabled: Vec<String>,
    pub reason: String,
    pub actor: String,
    /// A local kill holds this change (records written before fleet kills existed: yes).
    #[serde(default = "yes")]
    pub local: bool,
    /// A fleet kill in force on this sidecar holds this change.
    #[serde(default)]
    pub fleet: bool,
}

fn yes() -> bool {
    true
}

/// Which kind of kill acts: see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    Local,
    Fleet,
}

impl KillRecord {
    fn holds(&self, by: Holder) -> bool {
        match by {
            Holder::Local => self.local,
            Holder::Fleet => self.fleet,
        }
    }

    fn set_holder(&mut self, by: Holder, on: bool) {
        match by {
            Holder::Local => self.local = on,
            Holder::Fleet => self.fleet = on,
        }
    }
}

/// `details` with `"fleet": true` when a fleet kill acts (the audit records tell them apart).
fn tagged(mut details: Value, by: Holder) -> Value {
    if by == Holder::Fleet {
        match details.as_object_mut() {
            Some(o) => {
                o.insert("fleet".into(), json!(true));
            }
            None => details = json!({"fleet": true, "details": details}),
        }
    }
    details
}

/// One changed config path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub path: Vec<String>,
    /// None = absent.
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Placeholder the gateway shows instead of secrets; never written back.
const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Every path where `before` and `after` differ (objects recursed, anything else a leaf).
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    diff_at(&mut Vec::new(), Some(before), Some(after), &mut out);
    out
}

fn diff_at(path: &mut Vec<String>, b: Option<&Value>, a: Option<&Value>, out: &mut Vec<Change>) {
    match (b, a) {
        (Some(Value::Object(bo)), Some(Value::Object(ao))) => {
            let keys: BTreeSet<&String> = bo.keys().chain(ao.keys()).collect();
            for k in keys {
                path.push(k.clone());
                diff_at(path, bo.get(k), ao.get(k), out);
                path.pop();
            }
        }
        (b, a) if b != a => out.push(Change { path: path.clone(), before: b.cloned(), after: a.cloned() }),
        _ => {}
    }
}

fn array_paths(path: &mut Vec<String>, v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(_) => out.push(path.join(".")),
        Value::Object(o) => {
            for (k, x) in o {
                path.push(k.clone());
                array_paths(path, x, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn get_path<'a>(doc: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(doc, |v, k| v.get(k))
}

fn set_path(doc: &mut Value, path: &[String], v: Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = doc;
    for k in parents {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(o) = cur.as_object_mut() else { return };
        cur = o.entry(k.clone()).or_insert_with(|| json!({}));
    }
    if let Some(o) = cur.as_object_mut() {
        o.insert(last.clone(), v);
    }
}

/// The merge patch (and replace paths) that puts back what the kill changed, skipping paths
/// someone changed since (current != after) and redacted secrets. Returns the skipped paths too.
pub fn restore_patch(changes: &[Change], current: &Value) -> (Value, Vec<String>, Vec<String>) {
    let mut patch = json!({});
    let (mut replace, mut skipped) = (Vec::new(), Vec::new());
    for c in changes {
        let dotted = c.path.join(".");
        let secret = c.before.as_ref().is_some_and(|b| b.to_string().contains(REDACTED));
        if get_path(current, &c.path) != c.after.as_ref() || secret {
            skipped.push(dotted);
            continue;
        }
        // The gateway refuses a merge patch that drops array entries unless each such array
        // path is named: the path itself, and every array inside what is being removed.
        if matches!(c.before, Some(Value::Array(_))) {
            replace.push(dotted);
        } else if let Some(after) = &c.after {
            array_paths(&mut c.path.clone(), after, &mut replace);
        }
        set_path(&mut patch, &c.path, c.before.clone().unwrap_or(Value::Null));
    }
    (patch, replace, skipped)
}

fn entries_patch(id: &str, entry: Value) -> Value {
    json!({"agents": {"entries": {id: entry}}})
}

impl Gateway {
    pub(crate) fn killed_ids(&self) -> Vec<String> {
        self.kills.iter().keys().filter_map(|k| k.ok()).filter_map(|k| String::from_utf8(k.to_vec()).ok()).collect()
    }

    pub(crate) fn record(&self, id: &str) -> Option<KillRecord> {
        let v = self.kills.get(id.as_bytes()).ok()??;
        serde_json::from_slice(&v).ok()
    }

    fn save(&self, id: &str, r: &KillRecord) -> Result<(), String> {
        let bytes = serde_json::to_vec(r).map_err(|e| e.to_string())?;
        self.kills.insert(id.as_bytes(), bytes).map_err(|e| e.to_string())?;
        self.kills.flush().map_err(|e| e.to_string())?;
        Ok(())
    }

    fn audit_kill(&self, id: &str, actor: &str, reason: &str, outcome: audit::Outcome, details: Value) {
        let ev = audit::AuditEvent {
            agent: Some(id.to_string()),
            actor: Some(actor.to_string()),
            reason: Some(reason.to_string()),
            outcome: Some(outcome),
            subject: json!({"agent": id}),
            details,
            ..audit::AuditEvent::new(audit::RecordKind::KillSwitch)
        };
        if let Err(e) = self.parts.audit.append(ev) {
            tracing::error!(error = %e, "kill switch audit append failed");
        }
    }

    /// Abort every active run of `id`; returns the session keys aborted.
    async fn abort_runs(&self, id: &str) -> Vec<Value> {
        let mut keys: BTreeSet<String> = self.registry.active_runs(id).into_iter().map(|(_, k)| k).collect();
        match self.link.call("sessions.list", json!({"activeOnly": true, "agentId": id})).await {
            Ok(v) => {
                for row in v.get("sessions").and_then(Value::as_array).into_iter().flatten() {
                    let mine = row.get("agentId").and_then(Value::as_str) == Some(id);
                    let active = row.get("hasActiveRun").and_then(Value::as_bool).unwrap_or(true);
                    if let (true, true, Some(k)) = (mine, active, row.get("key").and_then(Value::as_str)) {
                        keys.insert(k.to_string());
                    }
                }
            }
            Err(e) => tracing::warn!(agent = id, error = %e, "sessions.list for kill failed"),
        }
        let aborts = keys.iter().map(|k| async move {
            let r = self.link.call("sessions.abort", json!({"key": k, "clearQueued": true})).await;
            match r {
                Ok(v) => json!({"session": k, "result": v}),
                Err(e) => json!({"session": k, "error": e.to_string()}),
            }
        });
        futures_util::future::join_all(aborts).await
    }

    /// Read the config: (hash, parsed document).
    pub(crate) async fn config_get(&self) -> Result<(String, Value), GatewayError> {
        let v = self.link.call("config.get", json!({})).await?;
        let hash = v.get("hash").and_then(Value::as_str).unwrap_or_default().to_string();
        let doc = v.get("parsed").filter(|p| p.is_object()).or_else(|| v.get("config")).cloned().unwrap_or(json!({}));
        Ok((hash, doc))
    }

    /// `config.patch` with the current hash, retried once on a stale hash.
    pub(crate) async fn config_patch(
        &self,
        raw: &Value,
        replace: &[String],
        note: &str,
    ) -> Result<Value, GatewayError> {
        // Under the config-safety lock, so the snapshot of this write knows it was ours.
        let _own = self.config.lock.lock().await;
        let mut last = None;
        for _ in 0..2 {
            let (hash, _) = self.config_get().await?;
            let mut params = json!({"raw": raw.to_string(), "baseHash": hash, "note": note});
            if !replace.is_empty() {
                params["replacePaths"] = json!(replace);
            }
            match self.link.call("config.patch", params).await {
                Ok(v) => {
                    self.config.remember(v.get("hash").and_then(Value::as_str), "kill switch");
                    return Ok(v);
                }
                Err(GatewayError::Rpc { error, method }) if error.message.contains("changed since last load") => {
                    last = Some(GatewayError::Rpc { error, method });
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(GatewayError::Conflict { method: "config.patch".into() }))
    }

    /// Kill `id` in OpenClaw as a local kill; see the module docs.
    pub(crate) async fn kill_agent(&self, id: &str, reason: &str, actor: &str) -> Result<Value, String> {
        self.kill_as(id, reason, actor, Holder::Local).await
    }

    /// Kill `id` in OpenClaw on behalf of `by`; see the module docs.
    pub(crate) async fn kill_as(&self, id: &str, reason: &str, actor: &str, by: Holder) -> Result<Value, String> {
        let audit = |outcome, details| self.audit_kill(id, actor, reason, outcome, tagged(details, by));
        if !self.link.is_connected() {
            audit(audit::Outcome::GatewayPending, json!({"why": "gateway not connected"}));
            return Err("gateway not connected: model calls are blocked at the proxy; the OpenClaw side is applied when the link is back".into());
        }
        let _serial = self.kill_lock.lock().await;
        let aborted = self.abort_runs(id).await;
        audit(audit::Outcome::RunsAborted, json!({"sessions": aborted}));
        let denied = self.deny_exec_for_agent(id, reason, actor).await;
        let why = match by {
            Holder::Local => format!("kill switch: {reason}"),
            Holder::Fleet => format!("fleet kill switch: {reason}"),
        };
        let held = self.parts.broker.deny_all_for_agent(id, &why, actor).await;
        audit(
            audit::Outcome::ApprovalsDenied,
            json!({"openclaw_approvals": denied, "clawbutler_approvals": held.iter().map(|a| &a.id).collect::<Vec<_>>()}),
        );
        if let Some(mut r) = self.record(id) {
            // Already killed: the stored "before" must survive, so nothing is re-patched; this
            // kind of kill now holds the change too.
            if !r.holds(by) {
                r.set_holder(by, true);
                self.save(id, &r)?;
            }
            return Ok(json!({"aborted": aborted, "denied_approvals": denied, "already_killed": true,
                             "config_patched": r.config_patched, "cron_disabled": r.cron_disabled}));
        }
        let (_, before) = self.config_get().await.map_err(|e| e.to_string())?;
        let tools_before = before.pointer(&format!("/agents/entries/{}/tools", escape(id))).cloned();
        let mut rec = KillRecord { reason: reason.to_string(), actor: actor.to_string(), ..Default::default() };
        rec.set_holder(by, true);
        self.save(id, &rec)?;
        let replace = deny_replace_path(id, tools_before.as_ref());
        let patch = entries_patch(id, json!({"tools": {"deny": ["*"]}}));
        let patched = self.config_patch(&patch, &replace, &format!("clawbutler {why}")).await;
        if patched.is_ok() {
            let (_, after) = self.config_get().await.map_err(|e| e.to_string())?;
            rec.changes = diff(&before, &after);
            rec.config_patched = true;
        }
        self.save(id, &rec)?;
        audit(
            if patched.is_ok() { audit::Outcome::ToolsDenied } else { audit::Outcome::ToolsDenyFailed },
            json!({"patch": patch, "changes": rec.changes, "error": patched.as_ref().err().map(|e| e.to_string())}),
        );
        self.disable_cron(id, &mut rec).await;
        audit(audit::Outcome::CronDisabled, json!({"jobs": rec.cron_disabled}));
        Ok(json!({"aborted": aborted, "denied_approvals": denied, "config_patched": rec.config_patched,
                  "config_error": patched.err().map(|e| e.to_string()), "cron_disabled": rec.cron_disabled}))
    }

    /// Disable `id`'s enabled cron jobs, recording each one in `rec` (stored) as soon as it is
    /// disabled: a restart in the middle still knows exactly which to enable again.
    async fn disable_cron(&self, id: &str, rec: &mut KillRecord) {
        let list =
            match self.link.call("cron.list", json!({"agentId": id, "includeDisabled": true, "limit": 200})).await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(agent = id, error = %e, "cron.list for kill failed");
                    return;
                }
            };
        for job in list.get("jobs").and_then(Value::as_array).into_iter().flatten() {
            let mine = job.get("agentId").and_then(Value::as_str) == Some(id);
            let enabled = job.get("enabled").and_then(Value::as_bool) == Some(true);
            let Some(jid) = job.get("id").and_then(Value::as_str) else { continue };
            if !(mine && enabled) || rec.cron_disabled.iter().any(|j| j == jid) {
                continue;
            }
            match self.link.call("cron.update", json!({"id": jid, "patch": {"enabled": false}})).await {
                Ok(_) => {
                    rec.cron_disabled.push(jid.to_string());
                    if let Err(e) = self.save(id, rec) {
                        tracing::error!(agent = id, job = jid, error = %e, "storing a cron job the kill disabled failed");
                    }
                }
                Err(e) => tracing::warn!(agent = id, job = jid, error = %e, "cron.update (disable) failed"),
            }
        }
    }

    /// Undo exactly what the kill of `id` changed in OpenClaw (a local recover).
    pub(crate) async fn recover_agent(&self, id: &str, reason: &str, actor: &str) -> Result<Value, String> {
        self.recover_as(id, reason, actor, Holder::Local).await
    }

    /// `by` lets go of `id`'s kill; OpenClaw is restored once no other kind holds it.
    pub(crate) async fn recover_as(&self, id: &str, reason: &str, actor: &str, by: Holder) -> Result<Value, String> {
        let _serial = self.kill_lock.lock().await;
        let Some(mut rec) = self.record(id) else {
            return Ok(json!({"restored": false, "why": "no OpenClaw change recorded for this agent"}));
        };
        let other = match by {
            Holder::Local => Holder::Fleet,
            Holder::Fleet => Holder::Local,
        };
        if rec.holds(other) {
            // The other kind still stops the agent: OpenClaw stays as the kill left it.
            rec.set_holder(by, false);
            self.save(id, &rec)?;
            let why = match other {
                Holder::Fleet => "a fleet kill of this agent is still in force here",
                Holder::Local => "a local kill of this agent is still in force",
            };
            self.audit_kill(id, actor, reason, audit::Outcome::Unchanged, tagged(json!({"kept": why}), by));
            return Ok(json!({"restored": false, "why": why}));
        }
        if !self.link.is_connected() {
            return Err("gateway not connected: cannot restore the OpenClaw side yet; the agent stays blocked".into());
        }
        let mut errors = Vec::new();
        let mut skipped = Vec::new();
        if rec.config_patched && !rec.changes.is_empty() {
            let (_, current) = self.config_get().await.map_err(|e| e.to_string())?;
            let (raw, replace, skip) = restore_patch(&rec.changes, &current);
            skipped = skip;
            if raw.as_object().is_some_and(|o| !o.is_empty()) {
                match self.config_patch(&raw, &replace, &format!("clawbutler recover: {reason}")).await {
                    Ok(_) => {
                        // Done: a retry after a later failure must not patch again.
                        rec.config_patched = false;
                        self.save(id, &rec)?;
                        self.audit_kill(
                            id,
                            actor,
                            reason,
                            audit::Outcome::ConfigRestored,
                            tagged(json!({"patch": raw, "skipped_changed_since": skipped}), by),
                        )
                    }
                    Err(e) => errors.push(format!("config: {e}")),
                }
            }
        }
        let mut enabled = Vec::new();
        for jid in rec.cron_disabled.clone() {
            match self.link.call("cron.update", json!({"id": jid, "patch": {"enabled": true}})).await {
                Ok(_) => {
                    enabled.push(jid.clone());
                    rec.cron_disabled.retain(|j| j != &jid);
                    self.save(id, &rec)?;
                }
                Err(e) => errors.push(format!("cron {jid}: {e}")),
            }
        }
        self.audit_kill(id, actor, reason, audit::Outcome::CronRestored, tagged(json!({"jobs": enabled}), by));
        if !errors.is_empty() {
            // Keep the record so a later recover can finish the job; the proxy stays blocked.
            return Err(errors.join("; "));
        }
        self.kills.remove(id.as_bytes()).map_err(|e| e.to_string())?;
        let _ = self.kills.flush();
        Ok(json!({"restored": true, "cron_enabled": enabled, "skipped_changed_since": skipped}))
    }

    /// After a reconnect: agents killed while the link was down get their OpenClaw side now.
    pub(crate) async fn reapply_kills(&self) {
        let mut targets: Vec<(String, String, String)> =
            self.parts.kill.killed_agents().into_iter().map(|(id, e)| (id, e.reason, e.actor)).collect();
        if let Some(g) = self.parts.kill.global() {
            for id in self.registry.ids() {
                targets.push((id, g.reason.clone(), g.actor.clone()));
            }
        }
        for (id, reason, actor) in targets {
            if !self.record(&id).is_some_and(|r| r.local) {
                if let Err(e) = self.kill_agent(&id, &reason, &actor).await {
                    tracing::warn!(agent = %id, error = %e, "re-applying a kill after reconnect failed");
                }
            }
        }
    }
}

/// JSON pointer escaping of one segment.
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// When the agent already had a deny list, the kill's `["*"]` must replace it, not merge.
fn deny_replace_path(id: &str, tools_before: Option<&Value>) -> Vec<String> {
    match tools_before.and_then(|t| t.get("deny")) {
        Some(Value::Array(_)) => vec![format!("agents.entries.{id}.tools.deny")],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_its_holders_and_an_old_record_is_a_local_kill() {
        let old = json!({"changes": [], "config_patched": true, "cron_disabled": ["j1"], "reason": "r", "actor": "a"});
        let mut r: KillRecord = serde_json::from_value(old).unwrap();
        assert!(r.holds(Holder::Local) && !r.holds(Holder::Fleet), "written before fleet kills: local");
        r.set_holder(Holder::Fleet, true);
        r.set_holder(Holder::Local, false);
        let back: KillRecord = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert!(back.fleet && !back.local);
        assert_eq!(tagged(json!({"jobs": ["j1"]}), Holder::Fleet), json!({"jobs": ["j1"], "fleet": true}));
        assert_eq!(tagged(json!({"jobs": []}), Holder::Local), json!({"jobs": []}));
    }

    #[test]
    fn restore_undoes_exactly_what_kill_changed() {
        let before = json!({"agents": {"defaults": {"x": 1}, "entries": {"main": {"model": "m", "tools": {"deny": ["exec"]}}}},
                            "k": "__OPENCLAW_REDACTED__"});
        let after = json!({"agents": {"defaults": {"x": 1, "model": {"primary": "m"}},
                                      "entries": {"main": {"model": "m", "tools": {"deny": ["*"]}}}},
                           "k": "__OPENCLAW_REDACTED__"});
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 2, "{changes:?}");
        let (patch, replace, skipped) = restore_patch(&changes, &after);
        assert_eq!(
            patch,
            json!({"agents": {"defaults": {"model": null}, "entries": {"main": {"tools": {"deny": ["exec"]}}}}})
        );
        assert_eq!(replace, vec!["agents.entries.main.tools.deny".to_string()]);
        assert!(skipped.is_empty());
        // A path changed by someone else since the kill is left alone.
        let mut edited = after.clone();
        edited["agents"]["defaults"]["model"] = json!({"primary": "other"});
        let (patch, _, skipped) = restore_patch(&changes, &edited);
        assert_eq!(patch, json!({"agents": {"entries": {"main": {"tools": {"deny": ["exec"]}}}}}));
        assert_eq!(skipped, vec!["agents.defaults.model".to_string()]);
        assert_eq!(deny_replace_path("main", Some(&json!({"deny": ["exec"]}))), replace);
        // Removing an object that holds arrays names those arrays.
        let changes = diff(&json!({"e": {}}), &json!({"e": {"tools": {"deny": ["*"]}}}));
        let (patch, replace, _) = restore_patch(&changes, &json!({"e": {"tools": {"deny": ["*"]}}}));
        assert_eq!(patch, json!({"e": {"tools": null}}));
        assert_eq!(replace, vec!["e.tools.deny".to_string()]);
    }
}

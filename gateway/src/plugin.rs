//! The gateway side of the ClawButler OpenClaw plugin (docs/plugin.md):
//!
//! - Whether the plugin is loaded: `plugins.list` (its `runtime.state`; `health.plugins` goes
//!   stale after a hot disable), read on connect, on `config.changed` and every
//!   [`LIST_EVERY`], into `governance::PluginHealth`, where the plugin's heartbeats say
//!   whether it also answers.
//! - OpenClaw's native plugin approvals: when the gate answered a hold with `approve`, OpenClaw
//!   broadcasts `plugin.approval.requested`; the hold the gate parked for that run and tool
//!   call (`governance::Handoffs`) goes into the broker with the approval's id as
//!   `external_id` (the same inbox, grants and expiry as every hold), and the human's decision
//!   is sent with `plugin.approval.resolve`. Resolved in OpenClaw first (an approver in the
//!   chat): `plugin.approval.resolved` closes the broker approval. Mirrors `exec.rs`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use audit::{AuditEvent, Outcome, RecordKind};
use decision::ToolFamily;
use governance::approvals::Status;
use governance::plugin::Listed;
use serde_json::{json, Value};

use super::{Gateway, GatewayError};

/// The plugin's id in OpenClaw.
pub const PLUGIN_ID: &str = "clawbutler";

/// How often `plugins.list` is read besides on connect and config changes.
pub const LIST_EVERY: Duration = Duration::from_secs(30);

/// Native approvals in flight.
#[derive(Default)]
pub(crate) struct NativeState {
    /// OpenClaw approval id -> agent.
    pending: Mutex<HashMap<String, String>>,
    /// Ids this sidecar resolved (their `resolved` echo is not an outside resolution).
    ours: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// What a `plugins.list` answer says of the clawbutler plugin.
pub fn listed(answer: &Value) -> Listed {
    let rows = match answer {
        Value::Array(a) => a.clone(),
        other => ["plugins", "items", "entries"]
            .iter()
            .find_map(|k| other.get(*k).and_then(Value::as_array).cloned())
            .unwrap_or_default(),
    };
    let Some(p) = rows.iter().find(|r| r.get("id").and_then(Value::as_str) == Some(PLUGIN_ID)) else {
        return Listed::Missing;
    };
    let runtime = p.pointer("/runtime/state").and_then(Value::as_str).unwrap_or("unknown");
    if runtime == "active" {
        return Listed::Active { version: s(p, "version") };
    }
    Listed::Inactive {
        runtime_state: runtime.to_string(),
        enabled: p.get("enabled").and_then(Value::as_bool).unwrap_or(false),
        error: p.pointer("/runtime/error").map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string)),
    }
}

impl Gateway {
    /// Read `plugins.list` into the plugin health.
    pub(crate) async fn refresh_plugins(&self) {
        match self.link.call("plugins.list", json!({})).await {
            Ok(v) => self.parts.plugin_health.listed(self.link.url(), listed(&v)),
            Err(e) => tracing::debug!(error = %e, "plugins.list failed"),
        }
    }

    fn audit_native(&self, payload: &Value, actor: &str, outcome: Outcome, extra: Value) {
        let r = payload.get("request").unwrap_or(&Value::Null);
        let mut details = json!({"kind": "native_approval", "openclaw_approval_id": s(payload, "id"),
            "run_id": s(r, "runId"), "tool_call_id": s(r, "toolCallId"), "channel": s(r, "turnSourceChannel")});
        if let (Some(o), Value::Object(x)) = (details.as_object_mut(), extra) {
            o.extend(x);
        }
        let ev = AuditEvent {
            agent: s(r, "agentId"),
            session: s(r, "sessionKey"),
            actor: Some(actor.to_string()),
            outcome: Some(outcome),
            subject: json!({"tool": s(r, "toolName"), "title": s(r, "title")}),
            details,
            ..AuditEvent::new(RecordKind::Plugin)
        };
        if let Err(e) = self.parts.audit.append(ev) {
            tracing::error!(error = %e, "audit append failed for a native plugin approval");
        }
    }

    /// `plugin.approval.requested`: hold the gate's parked call in the broker, then resolve.
    pub(crate) async fn on_plugin_approval_requested(&self, payload: Value) {
        let r = payload.get("request").cloned().unwrap_or(Value::Null);
        if s(&r, "pluginId").as_deref() != Some(PLUGIN_ID) {
            return;
        }
        let (Some(id), Some(run_id), Some(call_id)) = (s(&payload, "id"), s(&r, "runId"), s(&r, "toolCallId")) else {
            return;
        };
        let Some(mut hold) = self.claim_native(&id, &run_id, &call_id) else {
            if !lock(&self.native.pending).contains_key(&id) && !lock(&self.native.ours).contains(&id) {
                // Not one the gate asked for (made before a restart, or already taken): it stays
                // OpenClaw's to decide in its own surfaces.
                let note = "no ClawButler hold is waiting for this approval; it is left to OpenClaw's approvers";
                self.audit_native(&payload, "system", Outcome::ResolvedElsewhere, json!({"note": note}));
            }
            return;
        };
        hold.external_id = Some(id.clone());
        let tool = s(&r, "toolName").unwrap_or_default();
        let command = hold.subject.pointer("/params/command").and_then(Value::as_str).map(str::to_string);
        let held = match self.parts.broker.hold(hold) {
            Ok(h) => h,
            Err(e) => {
                self.audit_native(&payload, "system", Outcome::Denied, json!({"error": e.to_string()}));
                self.resolve_native(&payload, &id, "deny").await;
                return;
            }
        };
        let approval_id = held.approval().id.clone();
        self.audit_native(&payload, "policy", Outcome::Held, json!({"approval_id": approval_id}));
        let res = held.await;
        if lock(&self.native.ours).contains(&id) || !lock(&self.native.pending).contains_key(&id) {
            return; // resolved in OpenClaw (or cancelled after a reconnect)
        }
        let allowed = res.is_allowed() && self.parts.kill.blocked(&res.approval.agent).is_none();
        if allowed && ToolFamily::of(&tool) == ToolFamily::Exec {
            if let Some(c) = command {
                self.parts.handoffs.approved_exec(&run_id, &call_id, &c, Duration::from_secs(120));
            }
        }
        let actor = res.approval.decided_by.clone().unwrap_or_else(|| "system".into());
        let outcome = if allowed { Outcome::Approved } else { res.approval.status.outcome() };
        self.audit_native(&payload, &actor, outcome, json!({"approval_id": approval_id}));
        self.resolve_native(&payload, &id, if allowed { "allow-once" } else { "deny" }).await;
    }

    /// The gate's parked hold for this approval, marking the approval as ours to decide;
    /// `None` when it is being decided already or the gate parked nothing for it.
    fn claim_native(&self, id: &str, run_id: &str, call_id: &str) -> Option<governance::approvals::HoldRequest> {
        let mut p = lock(&self.native.pending);
        if p.contains_key(id) || lock(&self.native.ours).contains(id) {
            return None;
        }
        let hold = self.parts.handoffs.take_native(run_id, call_id)?;
        p.insert(id.to_string(), hold.agent.clone());
        Some(hold)
    }

    async fn resolve_native(&self, payload: &Value, id: &str, decision: &str) {
        lock(&self.native.ours).insert(id.to_string());
        let outcome = self.link.call("plugin.approval.resolve", json!({"id": id, "decision": decision})).await;
        lock(&self.native.pending).remove(id);
        match outcome {
            Ok(_) => {
                let o = if decision == "allow-once" { Outcome::ResolvedAllowOnce } else { Outcome::ResolvedDeny };
                self.audit_native(payload, "clawbutler", o, Value::Null);
            }
            Err(e) => {
                let e = match e {
                    GatewayError::Rpc { error, .. } => error.message.clone(),
                    other => other.to_string(),
                };
                self.audit_native(
                    payload,
                    "clawbutler",
                    Outcome::ResolveFailed,
                    json!({"decision": decision, "error": e}),
                );
            }
        }
    }

    /// `plugin.approval.resolved`: close our approval if someone else decided in OpenClaw.
    pub(crate) async fn on_plugin_approval_resolved(&self, payload: Value) {
        let Some(id) = s(&payload, "id") else { return };
        if lock(&self.native.ours).remove(&id) {
            return;
        }
        if lock(&self.native.pending).remove(&id).is_none() {
            return;
        }
        let decision = payload.get("decision").and_then(Value::as_str).unwrap_or("");
        let by = s(&payload, "resolvedBy").unwrap_or_else(|| "openclaw".into());
        let status = match decision {
            "allow-once" | "allow-always" => Status::Allowed,
            "deny" if payload.get("resolvedBy").is_some_and(Value::is_null) => Status::Expired,
            "timeout" => Status::Expired,
            "cancelled" => Status::Cancelled,
            _ => Status::Denied,
        };
        let reason = format!("resolved in OpenClaw by {by}: {decision}");
        let actor = format!("openclaw:{by}");
        let closed = self.parts.broker.close_external(&id, status, Some(&reason), &actor).await;
        self.audit_native(
            &payload,
            &actor,
            Outcome::ResolvedElsewhere,
            json!({"decision": decision, "closed_approval": closed.ok().flatten().map(|c| c.approval.id)}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_list_answers() {
        let active = json!({"plugins": [{"id": "other"}, {"id": "clawbutler", "enabled": true, "state": "enabled",
            "origin": "config", "version": "0.1.0", "runtime": {"state": "active"}}]});
        assert_eq!(listed(&active), Listed::Active { version: Some("0.1.0".into()) });
        let off =
            json!([{"id": "clawbutler", "enabled": false, "state": "disabled", "runtime": {"state": "unloaded"}}]);
        assert_eq!(listed(&off), Listed::Inactive { runtime_state: "unloaded".into(), enabled: false, error: None });
        let failed = json!({"plugins": [{"id": "clawbutler", "enabled": true, "runtime": {"state": "service-failed", "error": "boom"}}]});
        assert!(matches!(listed(&failed), Listed::Inactive { error: Some(e), .. } if e == "boom"));
        assert_eq!(listed(&json!({"plugins": []})), Listed::Missing);
        assert_eq!(listed(&json!({})), Listed::Missing);
    }
}

//! Critical rollbacks wait for a human. A rollback whose plan holds a critical change
//! (permissions, tool policy, secrets, endpoints, the ClawButler wiring) is not applied when
//! an admin asks: it becomes an approval of kind `config_rollback` in the inbox (same broker,
//! expiry and audit as a held call), and the API answers 202 with where to poll. When a human
//! allows it, the rollback runs as any other (save-before-restore, `config.patch` + baseHash,
//! audited), but only on the config the approver saw: a config that changed in between is a
//! conflict and nothing is applied. Denied, expired or cancelled: nothing is applied either.
//!
//! Invariants: the approval's subject names paths and versions, never a config value (a
//! secret cannot reach the inbox or a notification); a held rollback is never applied twice
//! (one waiter per approval, and a record that leaves `awaiting_approval` once); a rollback
//! left waiting by a previous run is cancelled at start (`store::Versions::cancel_waiting`).

use std::sync::Arc;

use decision::{Action, CallKind, Decision};
use governance::approvals::{Held, HoldRequest};
use governance::config_history::ConfigHistoryError as E;
use serde_json::{json, Value};

use super::classify::{Risk, SemanticChange};
use super::store::{APPLYING, HELD};
use super::Gateway;

/// What the approver saw: the config a held rollback was planned on.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub approval_id: String,
    /// The `config.get` hash the plan was made from.
    pub hash: String,
    /// The agent's slice then (its exec-approvals entry included).
    pub slice: Value,
}

/// The policy rule named on the approval (no Rego decides this: config safety does).
const RULE: &str = "config_safety.critical_rollback";

/// The approval's subject: what would change, by path, group and risk; no value.
fn subject(agent: &str, from: Option<u64>, to: u64, actor: &str, plan: &Value, changes: &[SemanticChange]) -> Value {
    let critical: Vec<&str> = changes.iter().filter(|c| c.risk == Risk::Critical).map(|c| c.path.as_str()).collect();
    let from_txt = from.map_or_else(|| "the live config".to_string(), |v| format!("version {v}"));
    json!({
        "rollback": format!("roll back {agent}'s config from {from_txt} to version {to}"),
        "agent": agent, "from_version": from, "to_version": to, "requested_by": actor,
        "critical_paths": critical,
        "changes": changes.iter().map(|c| json!({"path": c.path, "group": c.group, "risk": c.risk})).collect::<Vec<_>>(),
        "skipped": plan["skipped"].as_array().into_iter().flatten().map(|s| s["path"].clone()).collect::<Vec<_>>(),
        "restart_required": plan["restart"]["required"],
    })
}

impl Gateway {
    /// Put a critical rollback in the approval inbox (see the module docs); the answer the
    /// API gives with 202.
    pub(super) fn hold_rollback(
        &self,
        agent: &str,
        to: u64,
        actor: &str,
        plan: Value,
        changes: &[SemanticChange],
        mut seen: Seen,
    ) -> Result<Value, E> {
        // The waiter needs the gateway beyond this request; gone means shutting down.
        let me = self.me.upgrade().ok_or_else(|| E::Unavailable("the sidecar is shutting down".into()))?;
        let from = plan["from_version"].as_u64();
        let subject = subject(agent, from, to, actor, &plan, changes);
        let critical = subject["critical_paths"].as_array().map_or(0, Vec::len);
        let reason = format!(
            "rollback of agent {agent} to version {to} holds {critical} critical change(s) ({}): a human must approve it",
            subject["critical_paths"].as_array().into_iter().flatten().filter_map(Value::as_str).take(3).collect::<Vec<_>>().join(", ")
        );
        let held = self
            .parts
            .broker
            .hold(HoldRequest {
                kind: CallKind::ConfigRollback,
                agent: agent.to_string(),
                session: None,
                trace_id: decision::new_trace_id(),
                decision: Decision::synthetic(Action::Hold, RULE, &reason, Risk::Critical),
                subject,
                cost_estimate_usd: None,
                external_id: None,
                grant_pattern: format!("to version {to}"),
                grant_args: None,
                cautions: Vec::new(),
            })
            .map_err(|e| E::Store(format!("the rollback could not be put in the approval inbox: {e}")))?;
        let a = held.approval().clone();
        seen.approval_id = a.id.clone();
        let poll = format!("/api/v1/agents/{agent}/config/versions/rollback/{}", a.id);
        let record = json!({
            "approval_id": a.id, "agent": agent, "to_version": to, "from_version": from,
            "requested_by": actor, "status": HELD, "created_at": a.created_at, "expires_at": a.expires_at,
            "risk": Risk::Critical, "base_hash": seen.hash,
        });
        // Without its record nobody could follow it: withdraw the approval (dropping the
        // waiter cancels it) and refuse.
        self.config.versions.put_held(&a.id, &record).map_err(|e| E::Store(e.to_string()))?;
        self.audit_config(
            agent,
            actor,
            audit::Outcome::RollbackHeld,
            Some(Risk::Critical),
            format!("{reason}; waiting in the approval inbox (approval {})", a.id),
            json!({"approval_id": a.id, "plan": plan}),
        );
        let (agent_c, actor_c) = (agent.to_string(), actor.to_string());
        tokio::spawn(async move { me.after_decision(held, agent_c, to, actor_c, seen).await });
        Ok(json!({
            "status": HELD, "applied": false, "approval_id": a.id, "approval": a,
            "poll": poll, "decide": format!("/api/v1/approvals/{}/decide", a.id),
            "expires_at": a.expires_at, "plan": plan,
        }))
    }

    /// Wait for the human, then apply (allowed) or record that nothing was applied.
    async fn after_decision(self: Arc<Self>, held: Held, agent: String, to: u64, requested_by: String, seen: Seen) {
        let res = held.await;
        let a = &res.approval;
        let id = a.id.clone();
        let update = |status: &str, extra: Value| {
            let mut rec = self.config.versions.held(&id).ok().flatten().unwrap_or_else(|| json!({"approval_id": id}));
            rec["status"] = Value::from(status);
            rec["decided_by"] = json!(a.decided_by);
            rec["decided_at"] = json!(a.decided_at);
            if let (Some(r), Some(e)) = (rec.as_object_mut(), extra.as_object()) {
                r.extend(e.clone());
            }
            if let Err(e) = self.config.versions.put_held(&id, &rec) {
                tracing::error!(error = %e, approval = %id, "storing a held rollback's outcome failed");
            }
        };
        if !res.is_allowed() {
            let why = format!("the rollback of agent {agent} to version {to} was not applied: {}", res.message());
            let by = a.decided_by.clone().unwrap_or_else(|| "system".into());
            self.audit_config(
                &agent,
                &by,
                audit::Outcome::RollbackRefused,
                Some(Risk::Critical),
                why.clone(),
                json!({"approval_id": id, "status": a.status.as_str(), "requested_by": requested_by}),
            );
            update(a.status.as_str(), json!({"why": why}));
            return;
        }
        let approver = a.decided_by.clone().unwrap_or_else(|| "system".into());
        let actor = format!("{requested_by}, approved by {approver}");
        update(APPLYING, json!({}));
        match self.rollback_approved(&agent, to, &actor, &seen).await {
            Ok(v) => update(
                if v["applied"] == true { "applied" } else { "not_needed" },
                json!({"restored_exactly": v["restored_exactly"], "new_version": v["new_version"],
                       "pre_rollback_version": v["pre_rollback_version"], "not_restored": v["not_restored"],
                       "why": v["why"]}),
            ),
            Err(E::Conflict(why)) => update("conflict", json!({"why": why})),
            Err(e) => update("failed", json!({"why": e.to_string()})),
        }
    }

    /// A held rollback's record, with its approval as it is now.
    pub(super) fn held_rollback(&self, agent: &str, approval_id: &str) -> Result<Value, E> {
        let rec = self.config.versions.held(approval_id).map_err(|e| E::Store(e.to_string()))?;
        let mut rec = rec
            .filter(|r| r["agent"] == agent)
            .ok_or_else(|| E::NotFound(format!("agent '{agent}' has no held rollback '{approval_id}'")))?;
        if let Some(o) = rec.as_object_mut() {
            o.remove("base_hash");
        }
        let approval = self.parts.broker.get(approval_id).map_err(|e| E::Store(e.to_string()))?;
        rec["approval"] = json!(approval.map(|a| json!({"id": a.id, "version": a.version, "status": a.status,
            "decided_by": a.decided_by, "decided_at": a.decided_at, "decision_reason": a.decision_reason,
            "expires_at": a.expires_at})));
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_safety::classify::semantic_diff;

    #[test]
    fn the_subject_names_paths_never_values() {
        let a = json!({"agents": {"entries": {"main": {"tools": {"deny": ["exec"]}}}},
                       "models": {"providers": {"cb-main": {"apiKey": "sk-live-secret", "baseUrl": "http://a"}}}});
        let b = json!({"agents": {"entries": {"main": {}}},
                       "models": {"providers": {"cb-main": {"apiKey": "sk-old-secret", "baseUrl": "http://b"}}}});
        let changes = semantic_diff(&a, &b);
        let plan = json!({"skipped": [{"path": "models.providers.cb-main.apiKey", "why": "x"}],
                          "restart": {"required": false}});
        let s = subject("main", Some(4), 2, "admin", &plan, &changes);
        let text = s.to_string();
        assert!(!text.contains("sk-live-secret") && !text.contains("sk-old-secret") && !text.contains("http://b"));
        assert_eq!(s["from_version"], 4);
        assert!(s["critical_paths"].as_array().unwrap().iter().any(|p| p == "agents.entries.main.tools"), "{s}");
        assert!(s["critical_paths"].as_array().unwrap().iter().any(|p| p == "models.providers.cb-main.baseUrl"));
        assert_eq!(s["rollback"], "roll back main's config from version 4 to version 2");
    }
}

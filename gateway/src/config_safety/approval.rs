//! Critical config changes wait for a human. A rollback or a backup import whose plan holds a
//! critical change (permissions, tool policy, secrets, endpoints, the ClawButler wiring) is not
//! applied when an admin asks: it becomes an approval (kind `config_rollback` or
//! `config_import`) in the inbox (same broker, expiry and audit as a held call), and the API
//! answers 202 with where to poll. When a human allows it, the change runs as any other
//! (`config.patch` + baseHash, audited), but only on the config the approver saw: a config
//! that changed in between is a conflict and nothing is applied. Denied, expired or
//! cancelled: nothing is applied either. [`Gateway::hold_change`] is the one helper both use;
//! each kind brings its subject, record and what to run once allowed.
//!
//! Invariants: the approval's subject names paths and versions, never a config value (a
//! secret cannot reach the inbox or a notification); a held change is never applied twice
//! (one waiter per approval, and a record that leaves `awaiting_approval` once); a change
//! left waiting by a previous run is cancelled at start (`store::Versions::cancel_waiting`);
//! what the apply step needs beyond the record (an import's key and package) lives only in
//! the waiter's memory, never in the store.

use std::future::Future;
use std::pin::Pin;
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

/// The policy rule named on a held rollback (no Rego decides this: config safety does).
const RULE: &str = "config_safety.critical_rollback";

/// How a held change ended once its waiter ran: the record's status and fields to add.
pub(crate) struct Settled {
    pub status: &'static str,
    pub extra: Value,
}

/// What runs once a human allowed the change: given the gateway, the actor
/// (`<who asked>, approved by <approver>`) and the approval id.
pub(crate) type Apply =
    Box<dyn FnOnce(Arc<Gateway>, String, String) -> Pin<Box<dyn Future<Output = Settled> + Send>> + Send>;

/// One change to hold: everything [`Gateway::hold_change`] needs from its kind.
pub(crate) struct HoldSpec {
    pub kind: CallKind,
    /// The approval's and the audit records' agent (`@global` for an import).
    pub agent: String,
    pub rule: &'static str,
    /// Why it waits, for the approval and the audit record.
    pub reason: String,
    /// What would change: paths, groups and risks, never a value.
    pub subject: Value,
    pub grant_pattern: String,
    /// The stored record's own fields; the approval id, status and times are added.
    pub record: Value,
    /// The poll path without the approval id.
    pub poll_prefix: String,
    pub held: audit::Outcome,
    pub refused: audit::Outcome,
    /// "the rollback of agent main to version 2", for the refusal's `why`.
    pub what: String,
    pub requested_by: String,
    /// The plan (or preview): audited with the hold and returned in the 202.
    pub plan_key: &'static str,
    pub plan: Value,
}

/// The change paths of each risk class named, for subjects.
pub(crate) fn critical_paths(changes: &[SemanticChange]) -> Vec<&str> {
    changes.iter().filter(|c| c.risk == Risk::Critical).map(|c| c.path.as_str()).collect()
}

/// Every change by path, group and risk: what a subject shows (no value).
pub(crate) fn change_heads(changes: &[SemanticChange]) -> Vec<Value> {
    changes.iter().map(|c| json!({"path": c.path, "group": c.group, "risk": c.risk})).collect()
}

/// The approval's subject: what would change, by path, group and risk; no value.
fn subject(agent: &str, from: Option<u64>, to: u64, actor: &str, plan: &Value, changes: &[SemanticChange]) -> Value {
    let from_txt = from.map_or_else(|| "the live config".to_string(), |v| format!("version {v}"));
    json!({
        "rollback": format!("roll back {agent}'s config from {from_txt} to version {to}"),
        "agent": agent, "from_version": from, "to_version": to, "requested_by": actor,
        "critical_paths": critical_paths(changes),
        "changes": change_heads(changes),
        "skipped": plan["skipped"].as_array().into_iter().flatten().map(|s| s["path"].clone()).collect::<Vec<_>>(),
        "restart_required": plan["restart"]["required"],
    })
}

/// "holds 3 critical change(s) (a, b, c)": the first three critical paths of a subject.
pub(crate) fn critical_summary(subject: &Value) -> String {
    let paths = subject["critical_paths"].as_array();
    format!(
        "{} critical change(s) ({})",
        paths.map_or(0, Vec::len),
        paths.into_iter().flatten().filter_map(Value::as_str).take(3).collect::<Vec<_>>().join(", ")
    )
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
        seen: Seen,
    ) -> Result<Value, E> {
        let from = plan["from_version"].as_u64();
        let subject = subject(agent, from, to, actor, &plan, changes);
        let reason = format!(
            "rollback of agent {agent} to version {to} holds {}: a human must approve it",
            critical_summary(&subject)
        );
        let spec = HoldSpec {
            kind: CallKind::ConfigRollback,
            agent: agent.to_string(),
            rule: RULE,
            reason,
            subject,
            grant_pattern: format!("to version {to}"),
            record: json!({"agent": agent, "to_version": to, "from_version": from, "base_hash": seen.hash}),
            poll_prefix: format!("/api/v1/agents/{agent}/config/versions/rollback"),
            held: audit::Outcome::RollbackHeld,
            refused: audit::Outcome::RollbackRefused,
            what: format!("the rollback of agent {agent} to version {to}"),
            requested_by: actor.to_string(),
            plan_key: "plan",
            plan,
        };
        let agent = agent.to_string();
        let apply: Apply = Box::new(move |me: Arc<Gateway>, actor: String, id: String| {
            Box::pin(async move {
                let seen = Seen { approval_id: id, ..seen };
                match me.rollback_approved(&agent, to, &actor, &seen).await {
                    Ok(v) => Settled {
                        status: if v["applied"] == true { "applied" } else { "not_needed" },
                        extra: json!({"restored_exactly": v["restored_exactly"], "new_version": v["new_version"],
                               "pre_rollback_version": v["pre_rollback_version"], "not_restored": v["not_restored"],
                               "why": v["why"]}),
                    },
                    Err(E::Conflict(why)) => Settled { status: "conflict", extra: json!({"why": why}) },
                    Err(e) => Settled { status: "failed", extra: json!({"why": e.to_string()}) },
                }
            })
        });
        self.hold_change(spec, apply).map_err(E::Store)
    }

    /// Hold one change (see the module docs): the approval, its stored record, the `held`
    /// audit record, and a waiter that runs `apply` once allowed (or records the refusal).
    /// Answers what the API gives with 202; `Err` is why it could not be held (a store error).
    pub(crate) fn hold_change(&self, spec: HoldSpec, apply: Apply) -> Result<Value, String> {
        // The waiter needs the gateway beyond this request; gone means shutting down.
        let me = self.me.upgrade().ok_or_else(|| "the sidecar is shutting down".to_string())?;
        let held = self
            .parts
            .broker
            .hold(HoldRequest {
                kind: spec.kind,
                agent: spec.agent.clone(),
                session: None,
                trace_id: decision::new_trace_id(),
                decision: Decision::synthetic(Action::Hold, spec.rule, &spec.reason, Risk::Critical),
                subject: spec.subject,
                cost_estimate_usd: None,
                external_id: None,
                grant_pattern: spec.grant_pattern,
                grant_args: None,
                cautions: Vec::new(),
            })
            .map_err(|e| format!("the change could not be put in the approval inbox: {e}"))?;
        let a = held.approval().clone();
        let poll = format!("{}/{}", spec.poll_prefix, a.id);
        let mut record = spec.record;
        record["approval_id"] = json!(a.id);
        record["requested_by"] = json!(spec.requested_by);
        record["status"] = json!(HELD);
        record["created_at"] = json!(a.created_at);
        record["expires_at"] = json!(a.expires_at);
        record["risk"] = json!(Risk::Critical);
        // Without its record nobody could follow it: refuse (dropping the waiter cancels the
        // approval).
        self.config.versions.put_held(&a.id, &record).map_err(|e| e.to_string())?;
        self.audit_config(
            &spec.agent,
            &spec.requested_by,
            spec.held,
            Some(Risk::Critical),
            format!("{}; waiting in the approval inbox (approval {})", spec.reason, a.id),
            json!({"approval_id": a.id, spec.plan_key: spec.plan.clone()}),
        );
        let waiter =
            Waiter { agent: spec.agent, requested_by: spec.requested_by, what: spec.what, refused: spec.refused };
        tokio::spawn(async move { me.after_decision(held, waiter, apply).await });
        Ok(json!({
            "status": HELD, "applied": false, "approval_id": a.id, "approval": a,
            "poll": poll, "decide": format!("/api/v1/approvals/{}/decide", a.id),
            "expires_at": a.expires_at, spec.plan_key: spec.plan,
        }))
    }

    /// Wait for the human, then apply (allowed) or record that nothing was applied.
    async fn after_decision(self: Arc<Self>, held: Held, w: Waiter, apply: Apply) {
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
                tracing::error!(error = %e, approval = %id, "storing a held change's outcome failed");
            }
        };
        if !res.is_allowed() {
            let why = format!("{} was not applied: {}", w.what, res.message());
            let by = a.decided_by.clone().unwrap_or_else(|| "system".into());
            self.audit_config(
                &w.agent,
                &by,
                w.refused,
                Some(Risk::Critical),
                why.clone(),
                json!({"approval_id": id, "status": a.status.as_str(), "requested_by": w.requested_by}),
            );
            update(a.status.as_str(), json!({"why": why}));
            return;
        }
        let approver = a.decided_by.clone().unwrap_or_else(|| "system".into());
        let actor = format!("{}, approved by {approver}", w.requested_by);
        update(APPLYING, json!({}));
        let done = apply(self.clone(), actor, id.clone()).await;
        update(done.status, done.extra);
    }

    /// A held change's record (if `keep` accepts it), with its approval as it is now; `None`
    /// when there is no such record.
    pub(crate) fn held_change(
        &self,
        approval_id: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> Result<Option<Value>, String> {
        let rec = self.config.versions.held(approval_id).map_err(|e| e.to_string())?;
        let Some(mut rec) = rec.filter(|r| keep(r)) else { return Ok(None) };
        if let Some(o) = rec.as_object_mut() {
            o.remove("base_hash");
        }
        let approval = self.parts.broker.get(approval_id).map_err(|e| e.to_string())?;
        rec["approval"] = json!(approval.map(|a| json!({"id": a.id, "version": a.version, "status": a.status,
            "decided_by": a.decided_by, "decided_at": a.decided_at, "decision_reason": a.decision_reason,
            "expires_at": a.expires_at})));
        Ok(Some(rec))
    }

    /// A held rollback's record, with its approval as it is now.
    pub(super) fn held_rollback(&self, agent: &str, approval_id: &str) -> Result<Value, E> {
        self.held_change(approval_id, |r| r["agent"] == agent && r.get("change").is_none())
            .map_err(E::Store)?
            .ok_or_else(|| E::NotFound(format!("agent '{agent}' has no held rollback '{approval_id}'")))
    }
}

/// What the waiter keeps of its [`HoldSpec`].
struct Waiter {
    agent: String,
    requested_by: String,
    what: String,
    refused: audit::Outcome,
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

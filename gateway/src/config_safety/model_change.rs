//! A savings suggestion's model change (`docs/cost.md`), confirmed by an admin: the previewed
//! merge patch, classified by the same risk table as a rollback. Without a critical change it
//! is one `config.patch` on the preview's hash now; with one (e.g. the model added to a
//! `modelPolicy.allow` that names models one by one: ClawButler's wiring) it waits in the
//! approval inbox as kind `config_change`, like a critical rollback, and runs on the same
//! hash once a human allowed it, so a config that changed in between is a conflict and
//! nothing is overwritten.

use std::sync::Arc;

use decision::CallKind;
use governance::config_history::ConfigHistoryError as E;
use serde_json::{json, Value};

use super::approval::{change_heads, critical_paths, critical_summary, Apply, HoldSpec, Settled};
use super::classify::{max_risk, semantic_diff, Risk, SemanticChange};
use super::rollback::is_stale;
use super::Gateway;

/// The rule named on a held model change.
const RULE: &str = "config_safety.critical_change";

/// Where a held model change is polled (`{approval_id}` appended).
const POLL: &str = "/api/v1/cost/suggestions/apply";

/// The record's `change` marker (rollbacks have none, imports `import`).
const CHANGE: &str = "model";

/// The agent's model ref the patch sets (`model` or `model.primary`).
fn model_ref(patch: &Value, agent: &str) -> String {
    let m = patch.pointer(&format!("/agents/entries/{agent}/model"));
    let m = m.and_then(|m| m.get("primary")).or(m);
    m.and_then(Value::as_str).unwrap_or("(unchanged)").to_string()
}

/// The approval's subject: what would change, by path, group and risk; no value but the
/// model ref (a model name, never a secret).
fn subject(agent: &str, to: &str, actor: &str, changes: &[SemanticChange]) -> Value {
    json!({
        "model_change": format!("move agent {agent} to model {to} (savings suggestion)"),
        "agent": agent, "to_model": to, "requested_by": actor,
        "critical_paths": critical_paths(changes),
        "changes": change_heads(changes),
    })
}

impl Gateway {
    /// Apply (or, when critical, hold) a confirmed model change: see the module docs.
    pub(crate) async fn change_model_agent(
        &self,
        agent: &str,
        patch: &Value,
        base: &str,
        actor: &str,
    ) -> Result<Value, E> {
        if !self.link.is_connected() {
            return Err(E::Unavailable("the gateway link is down: cannot change OpenClaw's config now".into()));
        }
        // The risk is judged on the slice the preview was planned from (the newest version).
        let slice = self
            .config
            .versions
            .latest(agent)
            .map_err(|e| E::Store(e.to_string()))?
            .map(|v| v.content)
            .ok_or_else(|| E::NotFound(format!("no config version of agent '{agent}'")))?;
        let mut target = slice.clone();
        crate::attach::plugin::merge(&mut target, patch);
        let changes = semantic_diff(&slice, &target);
        if max_risk(&changes) == Some(Risk::Critical) {
            return self.hold_model_change(agent, patch, base, actor, &changes);
        }
        self.apply_model_change(agent, patch, base, actor).await
    }

    /// One `config.patch` on `base`, under the config lock (so the version that follows is
    /// attributed to the actor), then a snapshot; audited.
    async fn apply_model_change(&self, agent: &str, patch: &Value, base: &str, actor: &str) -> Result<Value, E> {
        let _one = self.config.lock.lock().await;
        let params = json!({"raw": patch.to_string(), "baseHash": base,
                            "note": format!("clawbutler savings suggestion for {agent}, confirmed by {actor}")});
        let details = json!({"patch": patch, "base_hash": base});
        match self.link.call("config.patch", params).await {
            Ok(v) => self.config.remember(v.get("hash").and_then(Value::as_str), actor),
            Err(e) => {
                let (outcome, why, err): (_, String, fn(String) -> E) = if is_stale(&e) {
                    let why = format!(
                        "OpenClaw's config changed since the preview ({e}); nothing was overwritten: preview again"
                    );
                    (audit::Outcome::ModelChangeConflict, why, E::Conflict)
                } else {
                    (
                        audit::Outcome::ModelChangeFailed,
                        format!("OpenClaw refused the model change: {e}"),
                        E::Unavailable,
                    )
                };
                self.audit_config(agent, actor, outcome, None, why.clone(), details);
                return Err(err(why));
            }
        }
        let after =
            self.snapshot_locked("model change", Some(actor)).await.map_err(|e| E::Unavailable(e.to_string()))?;
        let new_version = self.config.versions.latest(agent).map_err(|e| E::Store(e.to_string()))?.map(|v| v.version);
        let result = json!({"applied": true, "new_version": new_version, "gateway_hash": after.hash});
        let reason = format!("model of agent {agent} changed to {} (savings suggestion)", model_ref(patch, agent));
        self.audit_config(
            agent,
            actor,
            audit::Outcome::ModelChanged,
            None,
            reason,
            json!({"patch": patch, "result": result}),
        );
        Ok(result)
    }

    /// Put a critical model change in the approval inbox; the answer the API gives with 202.
    fn hold_model_change(
        &self,
        agent: &str,
        patch: &Value,
        base: &str,
        actor: &str,
        changes: &[SemanticChange],
    ) -> Result<Value, E> {
        let to = model_ref(patch, agent);
        let subject = subject(agent, &to, actor, changes);
        let spec = HoldSpec {
            kind: CallKind::ConfigChange,
            agent: agent.to_string(),
            rule: RULE,
            reason: format!(
                "the move of agent {agent} to model {to} holds {}: a human must approve it",
                critical_summary(&subject)
            ),
            subject,
            grant_pattern: format!("model {to}"),
            record: json!({"change": CHANGE, "agent": agent, "to_model": to, "base_hash": base}),
            poll_prefix: POLL.to_string(),
            held: audit::Outcome::ModelChangeHeld,
            refused: audit::Outcome::ModelChangeRefused,
            what: format!("the move of agent {agent} to model {to}"),
            requested_by: actor.to_string(),
            plan_key: "patch",
            plan: patch.clone(),
        };
        let (agent, patch, base) = (agent.to_string(), patch.clone(), base.to_string());
        let apply: Apply = Box::new(move |me: Arc<Gateway>, actor: String, _id: String| {
            Box::pin(async move {
                match me.apply_model_change(&agent, &patch, &base, &actor).await {
                    Ok(v) => Settled {
                        status: "applied",
                        extra: json!({"new_version": v["new_version"], "gateway_hash": v["gateway_hash"]}),
                    },
                    Err(E::Conflict(why)) => Settled { status: "conflict", extra: json!({"why": why}) },
                    Err(e) => Settled { status: "failed", extra: json!({"why": e.to_string()}) },
                }
            })
        });
        self.hold_change(spec, apply).map_err(E::Store)
    }

    /// A held model change's record, with its approval as it is now.
    pub(super) fn held_model_change(&self, approval_id: &str) -> Result<Value, E> {
        self.held_change(approval_id, |r| r["change"] == CHANGE)
            .map_err(E::Store)?
            .ok_or_else(|| E::NotFound(format!("no held model change '{approval_id}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The savings patch is classified like any change: another model on the same sidecar
    /// provider is high (applied at once); adding it to a `modelPolicy.allow` that names
    /// models one by one touches the wiring, so it is critical (held).
    #[test]
    fn only_a_patch_that_touches_the_wiring_is_critical() {
        let slice = json!({"agents": {"entries": {"main": {"model": "cb-main/gpt-4o"}}},
                           "models": {"providers": {"cb-main": {"baseUrl": "http://s/a/main/x/v1",
                                                                "models": [{"id": "gpt-4o"}]}}}});
        let plain = json!({"agents": {"entries": {"main": {"model": "cb-main/gpt-4o-mini"}}},
                           "models": {"providers": {"cb-main": {"models": [{"id": "gpt-4o"}, {"id": "gpt-4o-mini"}]}}}});
        let risk = |slice: &Value, patch: &Value| {
            let mut t = slice.clone();
            crate::attach::plugin::merge(&mut t, patch);
            max_risk(&semantic_diff(slice, &t))
        };
        assert_eq!(risk(&slice, &plain), Some(Risk::High));
        let mut pinned = slice.clone();
        pinned["agents"]["entries"]["main"]["modelPolicy"] = json!({"allow": ["cb-main/gpt-4o"]});
        let mut patch = plain.clone();
        patch["agents"]["entries"]["main"]["modelPolicy"] = json!({"allow": ["cb-main/gpt-4o", "cb-main/gpt-4o-mini"]});
        let mut t = pinned.clone();
        crate::attach::plugin::merge(&mut t, &patch);
        let changes = semantic_diff(&pinned, &t);
        assert_eq!(critical_paths(&changes), ["agents.entries.main.modelPolicy.allow"]);
        let s = subject("main", &model_ref(&patch, "main"), "admin", &changes);
        assert_eq!(s["model_change"], "move agent main to model cb-main/gpt-4o-mini (savings suggestion)");
        assert!(!s.to_string().contains("http://s/a/main"), "no value in the subject: {s}");
        assert_eq!(
            model_ref(&json!({"agents": {"entries": {"main": {"model": {"primary": "cb-main/b"}}}}}), "main"),
            "cb-main/b"
        );
    }
}

//! OpenClaw exec approvals decided by ClawButler. Each `exec.approval.requested` becomes a
//! policy input of kind `exec`: allow -> `allow-once`, deny -> `deny`, hold -> an approval in
//! the broker (same inbox, grants and expiry as model holds) whose outcome is then sent with
//! `exec.approval.resolve`. Resolutions made elsewhere close the broker approval. After a
//! reconnect, `exec.approval.list` is reconciled: pending requests still held stay held, new
//! ones are decided by policy, and held ones gone from the gateway are cancelled. Nothing is
//! ever allowed because of a reconnect. Every step is audited with the OpenClaw approval id
//! and run id.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use audit::Outcome;
use decision::{Action, CallKind, Decision, ExecInput, PolicyInput};
use governance::approvals::{HoldRequest, Status};
use serde_json::{json, Value};

use super::{Gateway, GatewayError};

/// Exec approvals in flight at the gateway.
#[derive(Default)]
pub(crate) struct ExecState {
    /// OpenClaw approval id -> agent, for requests being decided or held.
    pending: Mutex<HashMap<String, String>>,
    /// Ids this sidecar resolved (their `resolved` echo is not an outside resolution).
    ours: Mutex<HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ExecState {
    /// Exec approvals of `agent` waiting now.
    pub(crate) fn pending_for(&self, agent: &str) -> usize {
        lock(&self.pending).values().filter(|a| *a == agent).count()
    }
}

/// The parts of a request payload the sidecar uses.
struct ExecRequest {
    id: String,
    agent: String,
    session: Option<String>,
    run_id: Option<String>,
    tool_call_id: Option<String>,
    exec: ExecInput,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn parse_request(payload: &Value) -> Option<ExecRequest> {
    let id = s(payload, "id")?;
    let r = payload.get("request").unwrap_or(&Value::Null);
    let argv: Vec<String> = r
        .get("commandArgv")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Some(ExecRequest {
        id,
        agent: s(r, "agentId").unwrap_or_else(|| "unknown".into()),
        session: s(r, "sessionKey"),
        run_id: s(r, "runId"),
        tool_call_id: s(r, "toolCallId"),
        exec: ExecInput {
            command: s(r, "command").unwrap_or_else(|| argv.join(" ")),
            argv,
            cwd: s(r, "cwd"),
            resolved_path: s(r, "resolvedPath"),
            workspace: None,
        },
    })
}

impl Gateway {
    fn ids(&self, r: &ExecRequest) -> Value {
        json!({"openclaw_approval_id": r.id, "run_id": r.run_id, "tool_call_id": r.tool_call_id})
    }

    fn audit_exec(&self, r: &ExecRequest, d: Option<&Decision>, actor: &str, outcome: Outcome, extra: Value) {
        let mut ev = match d {
            Some(d) => audit::AuditEvent::from_decision(audit::RecordKind::Exec, d),
            None => audit::AuditEvent::new(audit::RecordKind::Exec),
        };
        ev.agent = Some(r.agent.clone());
        ev.session = r.session.clone();
        ev.actor = Some(actor.to_string());
        ev.outcome = Some(outcome);
        ev.subject = json!({"command": r.exec.command, "argv": r.exec.argv, "cwd": r.exec.cwd, "resolved_path": r.exec.resolved_path});
        let mut details = self.ids(r);
        if let (Some(o), Value::Object(x)) = (details.as_object_mut(), extra) {
            o.extend(x);
        }
        ev.details = details;
        if let Err(e) = self.parts.audit.append(ev) {
            tracing::error!(error = %e, "exec audit append failed");
        }
    }

    /// Decide one requested exec approval (event or reconcile).
    pub(crate) async fn on_exec_requested(&self, payload: Value, reconciling: bool) {
        let Some(mut r) = parse_request(&payload) else {
            tracing::warn!(%payload, "exec.approval.requested without id dropped");
            return;
        };
        {
            let mut p = lock(&self.exec.pending);
            if p.contains_key(&r.id) || lock(&self.exec.ours).contains(&r.id) {
                return;
            }
            p.insert(r.id.clone(), r.agent.clone());
        }
        r.exec.workspace = self.registry.workspace(&r.agent);
        // OpenClaw sends canonical agent ids; anything else could name an agent the kill
        // switch and grants do not know under that spelling, so it is denied.
        if let Err(e) = decision::agent_id::check(&r.agent) {
            let d = Decision::synthetic(Action::Deny, "invalid_agent_id", &e.to_string(), decision::Risk::High);
            self.audit_exec(&r, Some(&d), "policy", Outcome::Denied, json!({"reconcile": reconciling}));
            self.resolve(&r, "deny").await;
            return;
        }
        if let Some(why) = self.parts.kill.blocked(&r.agent) {
            let d = Decision::synthetic(Action::Deny, "kill_switch", &why, decision::Risk::High);
            self.audit_exec(&r, Some(&d), "policy", Outcome::Denied, json!({"reconcile": reconciling}));
            self.resolve(&r, "deny").await;
            return;
        }
        // The same call approved by a human at the plugin gate a moment ago: not asked twice.
        if let (Some(run), Some(call)) = (&r.run_id, &r.tool_call_id) {
            if self.parts.handoffs.take_exec(run, call, &r.exec.command) {
                let d = Decision::synthetic(
                    Action::Allow,
                    "plugin_gate.approved",
                    "A human approved this exact command at the plugin gate for this tool call",
                    decision::Risk::Medium,
                );
                self.audit_exec(&r, Some(&d), "policy", Outcome::Allowed, json!({"reconcile": reconciling}));
                self.resolve(&r, "allow-once").await;
                return;
            }
        }
        let mut input = PolicyInput::new(CallKind::Exec, &r.agent, &decision::new_trace_id());
        input.session = r.session.clone();
        input.exec = Some(r.exec.clone());
        input.grants = self.parts.broker.grants_for(&r.agent);
        let d = self.parts.policy.evaluate(&input);
        match d.action {
            Action::Allow => {
                self.audit_exec(&r, Some(&d), "policy", Outcome::Allowed, json!({"reconcile": reconciling}));
                self.resolve(&r, "allow-once").await;
            }
            Action::Deny => {
                self.audit_exec(&r, Some(&d), "policy", Outcome::Denied, json!({"reconcile": reconciling}));
                self.resolve(&r, "deny").await;
            }
            Action::Hold => self.hold(r, d, input.trace_id.clone()).await,
        }
    }

    async fn hold(&self, r: ExecRequest, d: Decision, trace_id: String) {
        let held = self.parts.broker.hold(HoldRequest {
            kind: CallKind::Exec,
            agent: r.agent.clone(),
            session: r.session.clone(),
            trace_id,
            decision: d.clone(),
            subject: json!({"command": r.exec.command, "cwd": r.exec.cwd, "resolved_path": r.exec.resolved_path,
                            "openclaw_approval_id": r.id, "run_id": r.run_id}),
            cost_estimate_usd: None,
            external_id: Some(r.id.clone()),
            // Plain text: the broker escapes it, so "allow always" covers exactly this command.
            grant_pattern: r.exec.command.clone(),
            grant_args: None,
            cautions: Vec::new(),
        });
        let held = match held {
            Ok(h) => h,
            Err(e) => {
                // No approval could be stored: fail closed.
                self.audit_exec(&r, Some(&d), "system", Outcome::Denied, json!({"error": e.to_string()}));
                self.resolve(&r, "deny").await;
                return;
            }
        };
        self.audit_exec(&r, Some(&d), "policy", Outcome::Held, json!({"approval_id": held.approval().id}));
        let res = held.await;
        if lock(&self.exec.ours).contains(&r.id) || !lock(&self.exec.pending).contains_key(&r.id) {
            // Resolved elsewhere (another client, the kill switch, or gone after a reconnect).
            return;
        }
        let decision = if res.is_allowed() { "allow-once" } else { "deny" };
        let actor = res.approval.decided_by.clone().unwrap_or_else(|| "system".into());
        self.audit_exec(
            &r,
            Some(&d),
            &actor,
            if res.is_allowed() { Outcome::Approved } else { res.approval.status.outcome() },
            json!({"approval_id": res.approval.id}),
        );
        self.resolve(&r, decision).await;
    }

    /// Send a decision; waits for the link (never longer than the request's own life) if it
    /// is down, since the gateway keeps the request pending across our reconnects.
    async fn resolve(&self, r: &ExecRequest, decision: &str) {
        lock(&self.exec.ours).insert(r.id.clone());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.parts.broker.settings().ttl_s.max(60));
        let outcome = loop {
            match self.link.call("exec.approval.resolve", json!({"id": r.id, "decision": decision})).await {
                Ok(_) => break Ok(()),
                Err(GatewayError::NotConnected | GatewayError::Disconnected)
                    if tokio::time::Instant::now() < deadline =>
                {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    self.link.wait_connected(left).await;
                }
                Err(e) => break Err(e.to_string()),
            }
        };
        lock(&self.exec.pending).remove(&r.id);
        match outcome {
            Ok(()) => {
                let o = if decision == "allow-once" { Outcome::ResolvedAllowOnce } else { Outcome::ResolvedDeny };
                self.audit_exec(r, None, "clawbutler", o, Value::Null)
            }
            Err(e) => self.audit_exec(
                r,
                None,
                "clawbutler",
                Outcome::ResolveFailed,
                json!({"decision": decision, "error": e}),
            ),
        }
    }

    /// `exec.approval.resolved`: close our approval if someone else decided.
    pub(crate) async fn on_exec_resolved(&self, payload: Value) {
        let Some(r) = parse_request(&payload) else { return };
        if lock(&self.exec.ours).remove(&r.id) {
            return;
        }
        if lock(&self.exec.pending).remove(&r.id).is_none() {
            return;
        }
        let decision = payload.get("decision").and_then(Value::as_str).unwrap_or("");
        let by = s(&payload, "resolvedBy").unwrap_or_else(|| "openclaw".into());
        let status = match decision {
            "allow-once" | "allow-always" => Status::Allowed,
            "deny" if payload.get("resolvedBy").is_some_and(Value::is_null) => Status::Expired,
            _ => Status::Denied,
        };
        let reason = format!("resolved in OpenClaw by {by}: {decision}");
        let closed = self.parts.broker.close_external(&r.id, status, Some(&reason), &format!("openclaw:{by}")).await;
        self.audit_exec(
            &r,
            None,
            &format!("openclaw:{by}"),
            Outcome::ResolvedElsewhere,
            json!({
            "decision": decision, "closed_approval": closed.ok().flatten().map(|c| c.approval.id)}),
        );
    }

    /// After (re)connect: decide what is pending and close what vanished. Never allows.
    pub(crate) async fn reconcile_exec(&self) {
        let list = match self.link.call("exec.approval.list", json!({})).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "exec.approval.list failed");
                return;
            }
        };
        let items: Vec<Value> = match list {
            Value::Array(a) => a,
            other => other.get("approvals").and_then(Value::as_array).cloned().unwrap_or_default(),
        };
        let live: HashSet<String> = items.iter().filter_map(|i| s(i, "id")).collect();
        let gone: Vec<String> = lock(&self.exec.pending).keys().filter(|id| !live.contains(*id)).cloned().collect();
        for id in gone {
            lock(&self.exec.pending).remove(&id);
            let why = "no longer pending at the gateway after a reconnect";
            if let Ok(Some(_)) = self.parts.broker.close_external(&id, Status::Cancelled, Some(why), "system").await {
                tracing::info!(openclaw_approval = %id, "held exec approval cancelled: {why}");
            }
        }
        for item in items {
            if item.get("approvalKind").and_then(Value::as_str).is_some_and(|k| k != "exec") {
                continue;
            }
            self.on_exec_requested(item, true).await;
        }
    }

    /// Kill switch: deny the agent's exec approvals pending at the gateway.
    pub(crate) async fn deny_exec_for_agent(&self, agent: &str, reason: &str, actor: &str) -> Vec<String> {
        let Ok(list) = self.link.call("exec.approval.list", json!({})).await else { return Vec::new() };
        let items: Vec<Value> = match list {
            Value::Array(a) => a,
            other => other.get("approvals").and_then(Value::as_array).cloned().unwrap_or_default(),
        };
        let mut denied = Vec::new();
        for item in items {
            let Some(r) = parse_request(&item) else { continue };
            if r.agent != agent {
                continue;
            }
            let d = Decision::synthetic(Action::Deny, "kill_switch", reason, decision::Risk::High);
            self.audit_exec(&r, Some(&d), actor, Outcome::Denied, json!({"kill_switch": true}));
            self.resolve(&r, "deny").await;
            denied.push(r.id);
        }
        denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_payload_to_policy_fields() {
        let p = json!({"approvalKind":"exec","id":"a70","request":{"command":"echo hi","cwd":"/w","agentId":"main",
            "resolvedPath":"/usr/bin/echo","sessionKey":"agent:main:main","runId":"idem-1","toolCallId":"call_3"}});
        let r = parse_request(&p).unwrap();
        assert_eq!((r.id.as_str(), r.agent.as_str(), r.run_id.as_deref()), ("a70", "main", Some("idem-1")));
        assert_eq!(r.exec.command, "echo hi");
        assert_eq!(r.exec.resolved_path.as_deref(), Some("/usr/bin/echo"));
        let argv_only = json!({"id":"b","request":{"commandArgv":["ls","-la"]}});
        let r = parse_request(&argv_only).unwrap();
        assert_eq!((r.exec.command.as_str(), r.agent.as_str()), ("ls -la", "unknown"));
        assert!(parse_request(&json!({"request": {}})).is_none());
    }
}

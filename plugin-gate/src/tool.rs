//! `kind: "tool_call"`: one OpenClaw tool call, decided.
//!
//! 1. A retry of a call already answered (same run and tool-call id) gets the same answer.
//! 2. Nothing is decided that cannot be recorded: with the audit log down, block.
//! 3. A killed agent's calls are blocked.
//! 4. The policy decides an input of kind `plugin` (`input.rs`): allow (or rewrite, with the
//!    policy's `obligations.rewrite`), deny -> block with a reason the model reads, hold.
//! 5. A hold parks an approval in the broker and keeps the request open until a human
//!    decides; its expiry is set so it ends before the plugin gives up (`deadline`), and a
//!    client that goes away drops the wait, which cancels the approval. For runs from a
//!    channel configured for it, the hold is handed to OpenClaw's native approval instead
//!    (`approve`), and the gateway link resolves it when a human decides (`governance::plugin`).
//!
//! Every decision is one `plugin` audit record with OpenClaw's run and tool-call ids, on the
//! turn's trace, so the trace view shows the turn's model calls and tool calls in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{AuditEvent, Outcome, RecordKind};
use decision::{Action, CallKind, Decision, Risk, ToolFamily};
use governance::approvals::{HoldRequest, Resolution, Status};
use governance::plugin_tokens::PluginTokenInfo;
use http::{Response, StatusCode};
use serde_json::{json, Value};

use crate::http::{json_answer, ResBody};
use crate::input::{self, Prepared};
use crate::settings::OPENCLAW_MAX_HOOK_MS;
use crate::wire::{ToolAnswer, ToolCall};
use crate::Gate;

/// The rule of a block made because the agent is killed.
pub const KILL_RULE: &str = "kill_switch";

/// How long an exec approved at the gate stays valid for OpenClaw's own exec approval.
const EXEC_HANDOFF: Duration = Duration::from_secs(120);

/// Drops the approval's wait and records that the plugin went away, unless disarmed.
struct ClientGone {
    gate: Arc<Gate>,
    record: Option<AuditEvent>,
}

impl Drop for ClientGone {
    fn drop(&mut self) {
        if let Some(ev) = self.record.take() {
            self.gate.metrics.holds.with_label_values(&["client_gone"]).inc();
            if let Err(e) = self.gate.parts.audit.append(ev) {
                tracing::error!(error = %e, "audit append failed for a cancelled plugin hold");
            }
        }
    }
}

impl Gate {
    pub(crate) async fn tool_call(
        self: Arc<Self>,
        token: &PluginTokenInfo,
        req: ToolCall,
        started: Instant,
    ) -> Response<ResBody> {
        let key = match (&req.run_id, &req.tool_call_id) {
            (Some(r), Some(c)) => Some((r.clone(), c.clone())),
            _ => None,
        };
        if let Some((r, c)) = &key {
            if let Some(a) = self.memory.replay(r, c) {
                return json_answer(StatusCode::OK, &a, Some(&a.decision_id));
            }
        }
        let p = input::prepare(&self, token, &req);
        let answer = self.clone().decide_tool(&p, &req, started).await;
        if let Some((r, c)) = &key {
            let gate_ms = started.elapsed().as_secs_f64() * 1000.0;
            let remembered = answer.clone();
            self.memory.call(r, c, |call| {
                call.trace_id = Some(p.input.trace_id.clone());
                call.gate_ms = gate_ms;
                call.decision_id = Some(remembered.decision_id.clone());
                // A native approval's outcome is OpenClaw's to apply: a retry must ask again.
                if remembered.action != "approve" {
                    call.answer = Some((remembered, Instant::now()));
                }
            });
        }
        json_answer(StatusCode::OK, &answer, Some(&answer.decision_id))
    }

    async fn decide_tool(self: Arc<Self>, p: &Prepared, req: &ToolCall, started: Instant) -> ToolAnswer {
        let family = p.facts.family;
        if let Some(why) = self.audit_down() {
            let reason = format!(
                "ClawButler cannot record decisions right now ({why}), so this {} call was blocked (fail closed). Ask an operator to check the ClawButler audit log.",
                req.tool_name
            );
            let d = Decision::synthetic(Action::Deny, "audit_unavailable", &reason, Risk::High);
            return self.finish_block(p, &d, reason, started, "system").await;
        }
        if let Some(why) = self.parts.kill.blocked(&p.agent) {
            let reason = format!(
                "ClawButler stopped agent '{}' ({why}), so this {} call did not run. An operator must recover the agent first.",
                p.agent, req.tool_name
            );
            let d = Decision::synthetic(Action::Deny, KILL_RULE, &reason, Risk::High);
            return self.finish_block(p, &d, reason, started, "policy").await;
        }
        let d = self.parts.policy.evaluate(&p.input);
        match d.action {
            Action::Allow => self.finish_allow(p, &d, started, "policy", Outcome::Allowed, None).await,
            Action::Deny => {
                let reason = format!(
                    "ClawButler policy blocked this {} call: {} (rule {}, decision {}).",
                    req.tool_name, d.reason, d.rule, d.id
                );
                self.finish_block(p, &d, reason, started, "policy").await
            }
            Action::Hold => {
                self.metrics.decisions.with_label_values(&[family.as_str(), "hold"]).inc();
                self.hold(p, req, d, started).await
            }
        }
    }

    /// Record an allow (or rewrite) and answer it. A record that cannot be appended blocks.
    async fn finish_allow(
        &self,
        p: &Prepared,
        d: &Decision,
        started: Instant,
        actor: &str,
        outcome: Outcome,
        approval: Option<&str>,
    ) -> ToolAnswer {
        let rewrite = d.obligations.rewrite.clone().filter(|r| !r.is_empty());
        let outcome = if rewrite.is_some() && outcome == Outcome::Allowed { Outcome::Rewritten } else { outcome };
        let mut ev = self.record(p, d, actor, outcome, started);
        if let (Some(r), Some(o)) = (&rewrite, ev.details.as_object_mut()) {
            o.insert("rewrite".into(), Value::Object(input::bounded(r)));
        }
        if let (Some(a), Some(o)) = (approval, ev.details.as_object_mut()) {
            o.insert("approval_id".into(), json!(a));
        }
        if let Err(e) = self.parts.audit.append(ev) {
            let reason = format!(
                "ClawButler could not record its decision ({e}), so this {} call was blocked (fail closed).",
                p.tool_name
            );
            let deny = Decision::synthetic(Action::Deny, "audit_unavailable", &reason, Risk::High);
            return self.answer_block(p, &deny, reason, started);
        }
        let action = if rewrite.is_some() { "rewrite" } else { "allow" };
        self.metrics.decisions.with_label_values(&[p.facts.family.as_str(), action]).inc();
        if approval.is_none() {
            self.metrics.seconds.with_label_values(&["tool_call"]).observe(started.elapsed().as_secs_f64());
        }
        let mut a = ToolAnswer::new(action, d.id.as_str(), &d.rule);
        a.params = rewrite;
        a.approval_id = approval.map(str::to_string);
        a
    }

    /// Record a block durably (a refusal is never lost) and answer it.
    async fn finish_block(
        &self,
        p: &Prepared,
        d: &Decision,
        reason: String,
        started: Instant,
        actor: &str,
    ) -> ToolAnswer {
        let ev = self.record(p, d, actor, Outcome::Denied, started);
        if let Err(e) = self.parts.audit.append_durable(ev).await {
            tracing::error!(error = %e, "audit append failed for a plugin block (the call is blocked anyway)");
        }
        self.answer_block(p, d, reason, started)
    }

    fn answer_block(&self, p: &Prepared, d: &Decision, reason: String, started: Instant) -> ToolAnswer {
        self.metrics.decisions.with_label_values(&[p.facts.family.as_str(), "block"]).inc();
        self.metrics.seconds.with_label_values(&["tool_call"]).observe(started.elapsed().as_secs_f64());
        let mut a = ToolAnswer::new("block", d.id.as_str(), &d.rule);
        a.reason = Some(reason);
        a
    }

    /// The audit record of a decision about this call.
    pub(crate) fn record(
        &self,
        p: &Prepared,
        d: &Decision,
        actor: &str,
        outcome: Outcome,
        started: Instant,
    ) -> AuditEvent {
        AuditEvent {
            agent: Some(p.agent.clone()),
            session: p.input.session.clone(),
            trace_id: Some(p.input.trace_id.clone()),
            actor: Some(actor.to_string()),
            outcome: Some(outcome),
            subject: p.subject.clone(),
            details: p.details.clone(),
            latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            ..AuditEvent::from_decision(RecordKind::Plugin, d)
        }
    }

    /// How long the answer to a hold may wait: the plugin's own limit (from the request, its
    /// last heartbeat, or config) minus the answer margin, minus what has passed already.
    fn hold_budget(&self, p: &Prepared, req: &ToolCall, started: Instant) -> Duration {
        let limit = req
            .timeout_ms
            .or_else(|| self.parts.health.last_beat(&p.gateway).and_then(|b| b.timeout_ms))
            .unwrap_or(self.settings.hold_timeout_ms)
            .min(OPENCLAW_MAX_HOOK_MS);
        Duration::from_millis(limit.saturating_sub(self.settings.answer_margin_ms)).saturating_sub(started.elapsed())
    }

    async fn hold(self: Arc<Self>, p: &Prepared, req: &ToolCall, mut d: Decision, started: Instant) -> ToolAnswer {
        let budget = self.hold_budget(p, req, started);
        // The approval expires before the plugin gives up, so what the approver sees is true.
        let ttl_s = d.obligations.hold_ttl_s.unwrap_or(self.parts.broker.settings().ttl_s).min(budget.as_secs());
        if ttl_s == 0 {
            let reason = format!(
                "ClawButler needs a human's approval for this {} call ({}; rule {}), but the plugin waits only {} ms for an answer, too short to ask anyone. Ask an operator to raise plugins.entries.clawbutler.hooks.timeouts.before_tool_call.",
                req.tool_name,
                d.reason,
                d.rule,
                budget.as_millis()
            );
            let block = Decision { action: Action::Deny, reason: reason.clone(), ..d.clone() };
            return self.finish_block(p, &block, reason, started, "system").await;
        }
        d.obligations.hold_ttl_s = Some(ttl_s);
        let hreq = HoldRequest {
            kind: CallKind::Plugin,
            agent: p.agent.clone(),
            session: p.input.session.clone(),
            trace_id: p.input.trace_id.clone(),
            decision: d.clone(),
            subject: p.subject.clone(),
            cost_estimate_usd: None,
            external_id: None,
            grant_pattern: p.grant_pattern.clone(),
            grant_args: Some(p.grant_args.clone()),
            cautions: Vec::new(),
        };
        if let Some(native) = self.native_channel(p, req) {
            return self.native(p, req, d, hreq, ttl_s, native, started).await;
        }
        let held = match self.parts.broker.hold(hreq) {
            Ok(h) => h,
            Err(e) => {
                let reason = format!(
                    "ClawButler could not ask a human about this {} call ({e}), so it was blocked (fail closed). It needed approval because: {}",
                    req.tool_name, d.reason
                );
                let block = Decision { action: Action::Deny, reason: reason.clone(), ..d.clone() };
                return self.finish_block(p, &block, reason, started, "system").await;
            }
        };
        let approval_id = held.approval().id.clone();
        let mut held_ev = self.record(p, &d, "policy", Outcome::Held, started);
        if let Some(o) = held_ev.details.as_object_mut() {
            o.insert("approval_id".into(), json!(approval_id));
            o.insert("expires_in_s".into(), json!(ttl_s));
        }
        if let Err(e) = self.parts.audit.append(held_ev) {
            tracing::error!(error = %e, "audit append failed for a plugin hold");
        }
        let mut gone_ev = self.record(p, &d, "system", Outcome::Cancelled, started);
        gone_ev.reason = Some("the plugin closed the request while the call was held (the run was aborted)".into());
        if let Some(o) = gone_ev.details.as_object_mut() {
            o.insert("approval_id".into(), json!(approval_id));
        }
        let mut guard = ClientGone { gate: self.clone(), record: Some(gone_ev) };
        let res = tokio::select! {
            r = held => Some(r),
            _ = tokio::time::sleep(budget) => None,
        };
        guard.record = None;
        match res {
            Some(r) => self.after_hold(p, req, d, r, &approval_id, started).await,
            None => {
                // Only when the broker's own expiry did not fire first (it is set to end sooner).
                self.metrics.holds.with_label_values(&["expired"]).inc();
                let reason = format!(
                    "Nobody approved this {} call in time (ClawButler approval {approval_id}; the plugin stops waiting soon), so it did not run. It needed approval because: {}",
                    req.tool_name, d.reason
                );
                let block = Decision { action: Action::Deny, reason: reason.clone(), ..d.clone() };
                self.finish_block(p, &block, reason, started, "system").await
            }
        }
    }

    async fn after_hold(
        &self,
        p: &Prepared,
        req: &ToolCall,
        mut d: Decision,
        res: Resolution,
        approval_id: &str,
        started: Instant,
    ) -> ToolAnswer {
        let a = &res.approval;
        let actor = a.decided_by.clone().unwrap_or_else(|| "system".into());
        let label = match a.status {
            Status::Allowed => "allowed",
            Status::Denied => "denied",
            Status::Expired => "expired",
            _ => "cancelled",
        };
        self.metrics.holds.with_label_values(&[label]).inc();
        if res.is_allowed() {
            // A kill made while the call waited refuses it even when approved.
            if let Some(why) = self.parts.kill.blocked(&p.agent) {
                let reason = format!(
                    "ClawButler stopped agent '{}' ({why}) while this {} call waited; it did not run ({}).",
                    p.agent,
                    req.tool_name,
                    res.message()
                );
                let k = Decision::synthetic(Action::Deny, KILL_RULE, &reason, Risk::High);
                return self.finish_block(p, &k, reason, started, "policy").await;
            }
            if p.facts.family == ToolFamily::Exec {
                if let (Some(r), Some(c), Some(cmd)) =
                    (&req.run_id, &req.tool_call_id, req.params.get("command").and_then(Value::as_str))
                {
                    self.parts.handoffs.approved_exec(r, c, cmd, EXEC_HANDOFF);
                }
            }
            d.action = Action::Allow;
            d.reason = format!("{}; held because: {}", res.message(), d.reason);
            return self.finish_allow(p, &d, started, &actor, Outcome::Approved, Some(approval_id)).await;
        }
        let why = match a.status {
            Status::Denied => format!("{} denied it", actor),
            Status::Expired => "nobody approved it in time".to_string(),
            _ => "its approval was cancelled".to_string(),
        };
        let reason = format!(
            "ClawButler did not let this {} call run: {why} ({}). It needed approval because: {} (rule {}).",
            req.tool_name,
            res.message(),
            d.reason,
            d.rule
        );
        d.action = Action::Deny;
        d.reason = reason.clone();
        let ev = self.record(p, &d, &actor, a.status.outcome(), started);
        let mut ev = ev;
        if let Some(o) = ev.details.as_object_mut() {
            o.insert("approval_id".into(), json!(approval_id));
        }
        if let Err(e) = self.parts.audit.append_durable(ev).await {
            tracing::error!(error = %e, "audit append failed for a plugin hold outcome");
        }
        self.metrics.decisions.with_label_values(&[p.facts.family.as_str(), "block"]).inc();
        let mut ans = ToolAnswer::new("block", d.id.as_str(), &d.rule);
        ans.reason = Some(reason);
        ans.approval_id = Some(approval_id.to_string());
        ans
    }

    /// The run's channel when its hold should use OpenClaw's native approval.
    fn native_channel(&self, p: &Prepared, req: &ToolCall) -> Option<String> {
        let link = self.parts.link.as_ref()?;
        if governance::plugin::gateway_id(&link.gateway) != p.gateway || !(link.connected)() {
            return None;
        }
        let run = req.run.as_ref();
        let channel = req.requester.channel.clone().or_else(|| run.and_then(|r| r.channel.clone()))?;
        let trigger = run.and_then(|r| r.trigger.as_deref()).unwrap_or("user");
        (trigger == "user" && self.settings.native_for(&channel) && req.run_id.is_some() && req.tool_call_id.is_some())
            .then_some(channel)
    }

    #[allow(clippy::too_many_arguments)]
    async fn native(
        &self,
        p: &Prepared,
        req: &ToolCall,
        d: Decision,
        hreq: HoldRequest,
        ttl_s: u64,
        channel: String,
        started: Instant,
    ) -> ToolAnswer {
        let (Some(run_id), Some(call_id)) = (&req.run_id, &req.tool_call_id) else {
            // native_channel checked both.
            return ToolAnswer::new("block", d.id.as_str(), &d.rule);
        };
        self.parts.handoffs.expect_native(run_id, call_id, hreq, Duration::from_secs(ttl_s + 30));
        let mut ev = self.record(p, &d, "policy", Outcome::Held, started);
        if let Some(o) = ev.details.as_object_mut() {
            o.insert("native_approval".into(), json!({"channel": channel, "expires_in_s": ttl_s}));
        }
        if let Err(e) = self.parts.audit.append(ev) {
            let reason =
                format!("ClawButler could not record its decision ({e}), so this {} call was blocked.", req.tool_name);
            let deny = Decision::synthetic(Action::Deny, "audit_unavailable", &reason, Risk::High);
            return self.answer_block(p, &deny, reason, started);
        }
        self.metrics.decisions.with_label_values(&[p.facts.family.as_str(), "approve"]).inc();
        self.metrics.seconds.with_label_values(&["tool_call"]).observe(started.elapsed().as_secs_f64());
        let mut a = ToolAnswer::new("approve", d.id.as_str(), &d.rule);
        a.title = Some(format!("ClawButler: allow {} for agent {}?", req.tool_name, p.agent));
        a.description = Some(format!("{} (rule {}). {}", d.reason, d.rule, input::summary(p)));
        a.reason = Some(d.reason.clone());
        a.severity = Some(match d.risk {
            Risk::Low => "info",
            Risk::Medium | Risk::High => "warning",
            Risk::Critical => "critical",
        });
        a.timeout_ms = Some((ttl_s * 1000).min(OPENCLAW_MAX_HOOK_MS));
        a.allowed_decisions = Some(vec!["allow-once", "deny"]);
        a.timeout_reason = Some(format!(
            "Nobody approved this {} call in time (ClawButler rule {}), so it did not run.",
            req.tool_name, d.rule
        ));
        a
    }
}

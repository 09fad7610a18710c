//! `kind: "agent_run"`: may this turn start? Blocked when the agent is killed or a budget
//! breaker that applies to it is open, so OpenClaw sends no model request at all and the user
//! reads why ("Your message could not be sent: <message> (blocked by clawbutler)"). The
//! answer must be quick (the plugin waits about 9 s): nothing here waits on anything.
//!
//! It also remembers the run (its trace, workspace, trigger, channel) for the tool calls and
//! reports that follow, notes its trace id with its session key and trigger in the run index
//! (so the data path can tell the task type of the run's model calls), and records the turn
//! on its trace.

use std::time::Instant;

use audit::{AuditEvent, Outcome, RecordKind};
use decision::{Action, Decision, Risk};
use governance::budget::CallScope;
use governance::plugin_tokens::PluginTokenInfo;
use http::{Response, StatusCode};
use serde_json::json;

use crate::http::{json_answer, ResBody};
use crate::tool::KILL_RULE;
use crate::wire::{AgentRun, RunAnswer};
use crate::Gate;

impl Gate {
    pub(crate) async fn agent_run(
        &self,
        token: &PluginTokenInfo,
        req: AgentRun,
        started: Instant,
    ) -> Response<ResBody> {
        let trace_id = req.trace.valid_id().map(str::to_string).unwrap_or_else(decision::new_trace_id);
        if let Some(run_id) = &req.run_id {
            let t = trace_id.clone();
            self.memory.run(run_id, |r| {
                r.agent = Some(req.agent_id.clone());
                r.session = req.session_key.clone();
                r.trace_id = Some(t);
                r.workspace = req.workspace.clone();
                r.trigger = req.trigger.clone();
                r.channel = req.channel.clone();
            });
        }
        // The run's model calls carry this trace id in `traceparent`: the data path records them
        // with the run's session key and task type.
        if let (Some(t), Some(key)) = (req.trace.valid_id(), req.session_key.as_deref()) {
            self.parts.runs.note_trace(t, key, req.trigger.as_deref());
        }
        let model = req.model.id.clone().unwrap_or_default();
        let block = if let Some(why) = self.audit_down() {
            Some((
                "audit_unavailable",
                format!("ClawButler cannot record decisions right now ({why}), so this turn was not sent to the model. Ask an operator to check the ClawButler audit log."),
                Decision::synthetic(Action::Deny, "audit_unavailable", &why, Risk::High),
            ))
        } else if let Some(why) = self.parts.kill.blocked(&req.agent_id) {
            let message = format!(
                "ClawButler stopped agent '{}' ({why}). An operator must recover it before it can run again.",
                req.agent_id
            );
            Some(("agent_killed", message.clone(), Decision::synthetic(Action::Deny, KILL_RULE, &message, Risk::High)))
        } else {
            let scope = CallScope::model(&req.agent_id, &model, "");
            self.parts.budgets.check_open(&scope).map(|r| {
                let message = format!("ClawButler budget: {}", r.message());
                (
                    "budget_exceeded",
                    message.clone(),
                    Decision::synthetic(Action::Deny, "budget.exhausted", &message, Risk::Medium),
                )
            })
        };
        let details = json!({
            "kind": "agent_run", "run_id": req.run_id, "session_id": req.session_id, "gateway": token.gateway,
            "trigger": req.trigger, "channel": req.channel, "prompt_chars": req.prompt_chars,
        });
        let subject = json!({"turn": {"trigger": req.trigger, "channel": req.channel,
            "model": {"provider": req.model.provider, "id": req.model.id}, "workspace": req.workspace}});
        let (d, answer) = match block {
            Some((code, message, d)) => {
                let a = RunAnswer {
                    action: "block",
                    reason: Some(code),
                    message: Some(message),
                    category: Some("clawbutler"),
                    decision_id: d.id.to_string(),
                };
                (d, a)
            }
            None => {
                let d = Decision::synthetic(
                    Action::Allow,
                    "allow.agent_run",
                    "The agent may run (not killed, no open budget breaker)",
                    Risk::Low,
                );
                let a = RunAnswer {
                    action: "allow",
                    reason: None,
                    message: None,
                    category: None,
                    decision_id: d.id.to_string(),
                };
                (d, a)
            }
        };
        let ev = AuditEvent {
            agent: Some(req.agent_id.clone()),
            session: req.session_key.clone(),
            trace_id: Some(trace_id),
            actor: Some("policy".into()),
            outcome: Some(if d.action == Action::Allow { Outcome::Allowed } else { Outcome::Denied }),
            subject,
            details,
            latency_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
            ..AuditEvent::from_decision(RecordKind::Plugin, &d)
        };
        let answer = if d.action == Action::Allow {
            match self.parts.audit.append(ev) {
                Ok(_) => answer,
                Err(e) => RunAnswer {
                    action: "block",
                    reason: Some("audit_unavailable"),
                    message: Some(format!(
                        "ClawButler could not record this turn ({e}), so it was not sent to the model (fail closed)."
                    )),
                    category: Some("clawbutler"),
                    decision_id: d.id.to_string(),
                },
            }
        } else {
            if let Err(e) = self.parts.audit.append_durable(ev).await {
                tracing::error!(error = %e, "audit append failed for a blocked turn (it is blocked anyway)");
            }
            answer
        };
        self.metrics.turns.with_label_values(&[answer.action]).inc();
        self.metrics.seconds.with_label_values(&["agent_run"]).observe(started.elapsed().as_secs_f64());
        json_answer(StatusCode::OK, &answer, Some(&answer.decision_id))
    }
}

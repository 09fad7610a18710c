//! `POST /v1/decide/report`: what happened after a decision, as OpenClaw saw it, into the
//! audit log on the turn's trace. Reports are fire-and-forget for the plugin (it ignores the
//! answer), so nothing here waits: records are appended (durable at the next group commit)
//! and the usage cross-check runs in the background (`usage.rs`).
//!
//! - `tool_result`: the tool's outcome (ok, error, blocked) and how long it ran: OpenClaw's
//!   duration includes the time the gate held the call, so the record's `latency_ms` is the
//!   run time without it.
//! - `model_call`: one model call as OpenClaw timed it (no tokens: OpenClaw gives none).
//! - `llm_output`: the run's usage and cost as OpenClaw computed them (summed over the run),
//!   then compared with the sidecar's metering of the same trace.
//! - `approval_resolution`: how OpenClaw's native approval ended.
//! - `heartbeat`: the plugin is loaded and can reach the sidecar (health only, not audited).

use std::sync::Arc;

use audit::{AuditEvent, Outcome, RecordKind};
use governance::plugin::Beat;
use governance::plugin_tokens::PluginTokenInfo;
use serde_json::{json, Map, Value};

use crate::input::bounded;
use crate::wire::{Report, ReportKind};
use crate::Gate;

fn s(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_string)
}

fn n(m: &Map<String, Value>, k: &str) -> Option<u64> {
    m.get(k).and_then(Value::as_u64)
}

fn f(m: &Map<String, Value>, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

/// A bounded copy of any JSON value (reports carry tool parameters and results).
fn bounded_value(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Object(o)) => Value::Object(bounded(o)),
        Some(other) => {
            let mut m = Map::new();
            m.insert("v".into(), other.clone());
            bounded(&m).remove("v").unwrap_or(Value::Null)
        }
        None => Value::Null,
    }
}

impl Gate {
    pub(crate) fn report(self: &Arc<Self>, token: &PluginTokenInfo, r: Report) {
        self.metrics.reports.with_label_values(&[r.kind.as_str()]).inc();
        self.parts.health.touch(&token.gateway);
        let b = &r.body;
        if r.kind == ReportKind::Heartbeat {
            let beat = Beat {
                at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                via: "heartbeat".into(),
                plugin_version: s(b, "plugin"),
                pid: n(b, "pid"),
                registered_at: s(b, "registeredAt"),
                timeout_ms: n(b, "timeoutMs"),
                agent_run_timeout_ms: n(b, "agentRunTimeoutMs"),
            };
            self.parts.health.beat(&token.gateway, beat);
            return;
        }
        let run = r.run_id.as_deref().and_then(|id| self.memory.get_run(id));
        let call = match (&r.run_id, &r.tool_call_id) {
            (Some(run_id), Some(c)) => self.memory.get_call(run_id, c),
            _ => None,
        };
        let trace_id = r
            .trace
            .valid_id()
            .map(str::to_string)
            .or_else(|| call.as_ref().and_then(|c| c.trace_id.clone()))
            .or_else(|| run.as_ref().and_then(|r| r.trace_id.clone()));
        let agent = r.agent_id.clone().or_else(|| run.as_ref().and_then(|r| r.agent.clone()));
        let mut details = json!({
            "kind": r.kind.as_str(),
            "run_id": r.run_id,
            "gateway": token.gateway,
        });
        let mut ev = AuditEvent {
            agent,
            session: r.session_key.clone().or_else(|| run.as_ref().and_then(|r| r.session.clone())),
            trace_id: trace_id.clone(),
            actor: Some("openclaw".into()),
            outcome: Some(Outcome::Reported),
            decision_id: call.as_ref().and_then(|c| c.decision_id.clone()).map(decision::DecisionId::from),
            ..AuditEvent::new(RecordKind::Plugin)
        };
        let d = details.as_object_mut();
        match r.kind {
            ReportKind::ToolResult => {
                let duration = f(b, "durationMs");
                let gate_ms = call.as_ref().map_or(0.0, |c| c.gate_ms);
                ev.outcome = Some(match s(b, "outcome").as_deref() {
                    Some("ok") => Outcome::Completed,
                    Some("blocked") => Outcome::Denied,
                    _ => Outcome::Error,
                });
                ev.latency_ms = duration.map(|ms| (ms - gate_ms).max(0.0));
                ev.reason = s(b, "error");
                ev.subject = json!({"tool": r.tool_name, "params": bounded_value(b.get("params")),
                    "result": bounded_value(b.get("result"))});
                if let Some(d) = d {
                    d.insert("tool_call_id".into(), json!(r.tool_call_id));
                    d.insert("duration_ms".into(), json!(duration));
                    d.insert("gate_ms".into(), json!(gate_ms));
                    d.insert("status".into(), json!(s(b, "status")));
                    d.insert("denied_reason".into(), json!(s(b, "deniedReason")));
                }
            }
            ReportKind::ModelCall => {
                if let Some(id) = &r.run_id {
                    self.memory.run(id, |run| run.model_calls += 1);
                }
                ev.latency_ms = f(b, "durationMs");
                ev.outcome =
                    Some(if s(b, "outcome").as_deref() == Some("error") { Outcome::Error } else { Outcome::Reported });
                ev.subject =
                    json!({"model": {"provider": s(b, "provider"), "name": s(b, "model"), "api": s(b, "api")}});
                if let Some(d) = d {
                    for (k, out) in [
                        ("callId", "call_id"),
                        ("outcome", "outcome"),
                        ("errorCategory", "error_category"),
                        ("failureKind", "failure_kind"),
                        ("transport", "transport"),
                    ] {
                        d.insert(out.into(), json!(s(b, k)));
                    }
                    for (k, out) in [
                        ("timeToFirstByteMs", "ttfb_ms"),
                        ("requestPayloadBytes", "request_bytes"),
                        ("responseStreamBytes", "response_bytes"),
                    ] {
                        d.insert(out.into(), json!(f(b, k)));
                    }
                }
            }
            ReportKind::LlmOutput => {
                ev.subject = json!({"model": {"provider": s(b, "provider"), "name": s(b, "model"), "resolved": s(b, "resolvedRef")}});
                if let Some(d) = d {
                    d.insert("usage".into(), b.get("usage").cloned().unwrap_or(Value::Null));
                    d.insert("last_call_usage".into(), b.get("lastCallUsage").cloned().unwrap_or(Value::Null));
                    d.insert("stop_reason".into(), json!(s(b, "stopReason")));
                }
                if let (Some(run_id), Some(trace), Some(usage)) = (&r.run_id, &trace_id, &r.usage) {
                    let calls = run.as_ref().map_or(0, |r| r.model_calls);
                    crate::usage::spawn_check(
                        self.clone(),
                        ev.agent.clone(),
                        run_id.clone(),
                        trace.clone(),
                        usage.clone(),
                        calls,
                    );
                }
            }
            ReportKind::ApprovalResolution => {
                let resolution = s(b, "resolution");
                ev.outcome = Some(match resolution.as_deref() {
                    Some("allow-once" | "allow-always") => Outcome::Allowed,
                    Some("deny") => Outcome::Denied,
                    Some("timeout") => Outcome::Expired,
                    _ => Outcome::Cancelled,
                });
                ev.subject = json!({"tool": r.tool_name});
                if let Some(d) = d {
                    d.insert("tool_call_id".into(), json!(r.tool_call_id));
                    d.insert("resolution".into(), json!(resolution));
                    d.insert("decision_id".into(), json!(s(b, "decisionId")));
                }
            }
            ReportKind::Heartbeat => {}
        }
        if let Some(dropped) = n(b, "droppedBefore") {
            if let Some(d) = details.as_object_mut() {
                d.insert("dropped_before".into(), json!(dropped));
            }
        }
        ev.details = details;
        if let Err(e) = self.parts.audit.append(ev) {
            tracing::error!(error = %e, kind = r.kind.as_str(), "audit append failed for a plugin report");
        }
    }
}

//! The cost cross-check: OpenClaw's usage and cost of a run (its `llm_output`, summed over the
//! run's model calls, priced with the model costs in its own config) against what the sidecar
//! metered for the same trace (its `model_call` records: the proxy saw the same requests,
//! `traceparent` carries the run's trace id). A match is recorded; a mismatch is recorded with
//! both sides and the difference, counted, and shown on the trace
//! (`/api/v1/audit/trace/{id}`: `usage_check`). A run the sidecar metered nothing of is a
//! mismatch too: its model calls did not go through the sidecar.
//!
//! Token counts are compared as prompt and completion tokens: OpenClaw counts cached prompt
//! tokens apart (`input` excludes `cacheRead` and `cacheWrite`), the sidecar counts all of
//! them in `input_tokens`.

use std::sync::Arc;
use std::time::Duration;

use audit::{AuditEvent, AuditRecord, Outcome, RecordKind};
use serde_json::json;

use crate::wire::Usage;
use crate::Gate;

/// How long the check waits for the proxy's records of the run's calls to be indexed.
const WAIT_STEP: Duration = Duration::from_millis(500);
const WAIT_MAX: Duration = Duration::from_secs(10);

/// What the sidecar metered on one trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Metered {
    pub calls: u32,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    /// Calls whose cost the sidecar could not price.
    pub unpriced: u32,
}

/// Sum the model-call end records of a trace.
pub(crate) fn metered(records: &[AuditRecord]) -> Metered {
    let mut m = Metered::default();
    for r in records {
        if r.kind != Some(RecordKind::ModelCall) || r.outcome.as_deref() == Some("started") {
            continue;
        }
        let Some(u) = &r.usage else { continue };
        m.calls += 1;
        m.input_tokens += u.input_tokens;
        m.output_tokens += u.output_tokens;
        match r.cost_usd {
            Some(c) => m.cost_usd += c,
            None => m.unpriced += 1,
        }
    }
    m
}

/// Whether two costs agree within the tolerance (a fraction of the larger, or an absolute USD).
pub(crate) fn costs_agree(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= abs.max(rel * a.abs().max(b.abs()))
}

pub(crate) fn spawn_check(
    gate: Arc<Gate>,
    agent: Option<String>,
    run_id: String,
    trace_id: String,
    openclaw: Usage,
    calls: u32,
) {
    tokio::spawn(async move {
        let mut waited = Duration::ZERO;
        let records = loop {
            tokio::time::sleep(WAIT_STEP).await;
            waited += WAIT_STEP;
            let audit = gate.parts.audit.clone();
            let t = trace_id.clone();
            let recs = match tokio::task::spawn_blocking(move || audit.trace(&t)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "usage check: reading the trace failed");
                    return;
                }
                Err(_) => return,
            };
            // Every call OpenClaw reported has an end record by now, or we stop waiting.
            if metered(&recs).calls >= calls.max(1) || waited >= WAIT_MAX {
                break recs;
            }
        };
        gate.record_check(agent, &run_id, &trace_id, &openclaw, &metered(&records));
    });
}

impl Gate {
    fn record_check(&self, agent: Option<String>, run_id: &str, trace_id: &str, oc: &Usage, m: &Metered) {
        let oc_prompt = oc.input + oc.cache_read + oc.cache_write;
        let oc_cost = oc.cost.as_ref().and_then(|c| c.total);
        let mut problems = Vec::new();
        if m.calls == 0 {
            problems.push(
                "the sidecar metered no model call of this run (its model calls did not go through the sidecar)"
                    .to_string(),
            );
        } else {
            if oc_prompt != m.input_tokens {
                problems.push(format!("prompt tokens: OpenClaw {oc_prompt}, sidecar {}", m.input_tokens));
            }
            if oc.output != m.output_tokens {
                problems.push(format!("completion tokens: OpenClaw {}, sidecar {}", oc.output, m.output_tokens));
            }
            if m.unpriced > 0 {
                problems.push(format!("the sidecar has no price for {} of the run's calls", m.unpriced));
            }
            match oc_cost {
                Some(c)
                    if !costs_agree(
                        c,
                        m.cost_usd,
                        self.settings.usage_tolerance,
                        self.settings.usage_tolerance_usd,
                    ) =>
                {
                    problems.push(format!("cost: OpenClaw ${c:.6}, sidecar ${:.6}", m.cost_usd));
                }
                None => problems.push("OpenClaw reported no cost".to_string()),
                _ => {}
            }
        }
        let matched = problems.is_empty();
        let reason = if matched {
            format!(
                "OpenClaw's usage of run {run_id} matches the sidecar's metering: {} model calls, {} prompt and {} completion tokens, ${:.6}",
                m.calls, m.input_tokens, m.output_tokens, m.cost_usd
            )
        } else {
            format!("OpenClaw's usage of run {run_id} does not match the sidecar's metering: {}", problems.join("; "))
        };
        self.metrics.usage_checks.with_label_values(&[if matched { "match" } else { "mismatch" }]).inc();
        if !matched {
            tracing::warn!(run = run_id, trace = trace_id, "{reason}");
        }
        let ev = AuditEvent {
            agent,
            trace_id: Some(trace_id.to_string()),
            actor: Some("system".into()),
            outcome: Some(if matched { Outcome::UsageMatch } else { Outcome::UsageMismatch }),
            reason: Some(reason),
            details: json!({
                "kind": "usage_check",
                "run_id": run_id,
                "match": matched,
                "openclaw": {"prompt_tokens": oc_prompt, "input": oc.input, "cache_read": oc.cache_read,
                             "cache_write": oc.cache_write, "output": oc.output, "cost_usd": oc_cost},
                "sidecar": {"model_calls": m.calls, "prompt_tokens": m.input_tokens, "completion_tokens": m.output_tokens,
                            "cost_usd": m.cost_usd, "unpriced_calls": m.unpriced},
                "difference_usd": oc_cost.map(|c| c - m.cost_usd),
                "problems": problems,
            }),
            ..AuditEvent::new(RecordKind::Plugin)
        };
        if let Err(e) = self.parts.audit.append(ev) {
            tracing::error!(error = %e, "audit append failed for a usage check");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(outcome: &str, input: u64, output: u64, cost: Option<f64>) -> AuditRecord {
        AuditRecord {
            kind: Some(RecordKind::ModelCall),
            outcome: Some(outcome.into()),
            usage: Some(audit::Usage { input_tokens: input, output_tokens: output, ..Default::default() }),
            cost_usd: cost,
            ..Default::default()
        }
    }

    #[test]
    fn metered_sums_end_records_only() {
        let recs = vec![
            rec("started", 0, 0, None),
            rec("completed", 1000, 50, Some(0.001)),
            rec("completed", 1000, 50, Some(0.001)),
            AuditRecord { kind: Some(RecordKind::Plugin), ..rec("completed", 9, 9, Some(9.0)) },
        ];
        let m = metered(&recs);
        assert_eq!((m.calls, m.input_tokens, m.output_tokens, m.unpriced), (2, 2000, 100, 0));
        assert!((m.cost_usd - 0.002).abs() < 1e-12);
        assert!(costs_agree(0.0022, 0.0022000001, 0.01, 1e-6));
        assert!(!costs_agree(0.0022, 0.0011, 0.01, 1e-6));
        assert!(costs_agree(0.0, 0.0000005, 0.01, 1e-6));
    }
}

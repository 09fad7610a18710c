//! The plugin gate's metric families (docs/metrics.md). Label values come from enums
//! (`ToolFamily`, the answer's action, report kinds, refusal reasons), never from requests.

use decision::ToolFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::wire::ReportKind;

/// Actions a tool call is answered with (or parked as).
pub const ACTIONS: [&str; 5] = ["allow", "rewrite", "block", "hold", "approve"];

/// Why a request was refused before it was decided.
pub const REJECTIONS: [&str; 7] =
    ["unauthorized", "bad_request", "too_large", "body_timeout", "not_found", "method", "origin"];

/// How a held tool call ended.
pub const HOLD_OUTCOMES: [&str; 5] = ["allowed", "denied", "expired", "cancelled", "client_gone"];

pub(crate) struct Metrics {
    pub decisions: IntCounterVec,
    pub holds: IntCounterVec,
    pub turns: IntCounterVec,
    pub seconds: HistogramVec,
    pub reports: IntCounterVec,
    pub rejected: IntCounterVec,
    pub usage_checks: IntCounterVec,
    pub gateways: IntGaugeVec,
}

impl Metrics {
    pub fn register(r: &Registry) -> Result<Metrics, prometheus::Error> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "clawbutler_plugin_decisions_total",
                "Plugin-gate tool-call decisions, by tool family and answer",
            ),
            &["family", "action"],
        )?;
        let holds = IntCounterVec::new(
            Opts::new("clawbutler_plugin_hold_outcomes_total", "How held plugin-gate tool calls ended"),
            &["outcome"],
        )?;
        let turns = IntCounterVec::new(
            Opts::new("clawbutler_plugin_turns_total", "Plugin-gate turn checks (before_agent_run), by answer"),
            &["action"],
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "clawbutler_plugin_decide_seconds",
                "Time the decision endpoint took to answer, holds excluded, by request kind",
            )
            .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 0.5]),
            &["kind"],
        )?;
        let reports = IntCounterVec::new(
            Opts::new("clawbutler_plugin_reports_total", "Reports the plugin sent (tool results, usage, heartbeats)"),
            &["kind"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new("clawbutler_plugin_rejected_total", "Decision-endpoint requests refused before a decision"),
            &["reason"],
        )?;
        let usage_checks = IntCounterVec::new(
            Opts::new(
                "clawbutler_plugin_usage_checks_total",
                "Runs whose cost OpenClaw reported, compared with the sidecar's metering",
            ),
            &["result"],
        )?;
        let gateways = IntGaugeVec::new(
            Opts::new(
                "clawbutler_plugin_gateways",
                "Gateways where the plugin is expected, by whether it governs them",
            ),
            &["governance"],
        )?;
        for m in [&decisions, &holds, &turns, &reports, &rejected, &usage_checks] {
            r.register(Box::new(m.clone()))?;
        }
        r.register(Box::new(seconds.clone()))?;
        r.register(Box::new(gateways.clone()))?;
        for f in ToolFamily::ALL {
            for a in ACTIONS {
                decisions.with_label_values(&[f.as_str(), a]);
            }
        }
        for o in HOLD_OUTCOMES {
            holds.with_label_values(&[o]);
        }
        for a in ["allow", "block"] {
            turns.with_label_values(&[a]);
        }
        for k in ["tool_call", "agent_run"] {
            seconds.with_label_values(&[k]);
        }
        for k in ReportKind::ALL {
            reports.with_label_values(&[k.as_str()]);
        }
        for k in REJECTIONS {
            rejected.with_label_values(&[k]);
        }
        for k in ["match", "mismatch"] {
            usage_checks.with_label_values(&[k]);
        }
        for g in ["governed", "ungoverned", "pending"] {
            gateways.with_label_values(&[g]);
        }
        Ok(Metrics { decisions, holds, turns, seconds, reports, rejected, usage_checks, gateways })
    }
}

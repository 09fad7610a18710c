//! Policy metrics, registered on the registry the application passes in. Label values come
//! from enums only.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

use crate::engine::PolicyError;

/// Why an evaluation failed closed (label `cause` of `clawbutler_policy_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCause {
    /// The evaluation ran past the time limit.
    Timeout,
    /// regorus returned an error (conflicting outputs, builtin errors, ...).
    Engine,
    /// `decision` was undefined for the input.
    Undefined,
    /// `decision` was not a well-typed decision object.
    IllTyped,
    /// The input could not be converted for the engine.
    Input,
}

impl ErrorCause {
    /// Every cause.
    pub const ALL: [ErrorCause; 5] =
        [ErrorCause::Timeout, ErrorCause::Engine, ErrorCause::Undefined, ErrorCause::IllTyped, ErrorCause::Input];

    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCause::Timeout => "timeout",
            ErrorCause::Engine => "engine",
            ErrorCause::Undefined => "undefined",
            ErrorCause::IllTyped => "ill_typed",
            ErrorCause::Input => "input",
        }
    }
}

/// Handles to every policy metric.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub eval_seconds: Histogram,
    pub decisions: IntCounterVec,
    pub reloads: IntCounterVec,
    pub errors: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Metrics, PolicyError> {
        let eval_seconds = Histogram::with_opts(
            HistogramOpts::new("clawbutler_policy_eval_seconds", "Time to evaluate one policy decision")
                .buckets(vec![2e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 2.5e-2]),
        )
        .map_err(metric_err)?;
        let decisions = IntCounterVec::new(
            Opts::new("clawbutler_policy_decisions_total", "Policy decisions by call kind and action"),
            &["kind", "action"],
        )
        .map_err(metric_err)?;
        let reloads = IntCounterVec::new(
            Opts::new("clawbutler_policy_reload_total", "Bundle reload attempts by result"),
            &["result"],
        )
        .map_err(metric_err)?;
        let errors = IntCounterVec::new(
            Opts::new("clawbutler_policy_errors_total", "Evaluations that failed closed (deny policy_error), by cause"),
            &["cause"],
        )
        .map_err(metric_err)?;
        registry.register(Box::new(eval_seconds.clone())).map_err(metric_err)?;
        registry.register(Box::new(decisions.clone())).map_err(metric_err)?;
        registry.register(Box::new(reloads.clone())).map_err(metric_err)?;
        registry.register(Box::new(errors.clone())).map_err(metric_err)?;
        // Every series at 0 from the start: an alert on `increase(...)` sees the first failure
        // (a counter first scraped at 1 shows no increase).
        for c in ErrorCause::ALL {
            errors.with_label_values(&[c.as_str()]);
        }
        for r in ["ok", "error"] {
            reloads.with_label_values(&[r]);
        }
        Ok(Metrics { eval_seconds, decisions, reloads, errors })
    }
}

fn metric_err(e: prometheus::Error) -> PolicyError {
    PolicyError::Metrics(e.to_string())
}

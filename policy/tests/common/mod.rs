//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use policy::{BundleSource, EngineOptions, PolicyEngine};

/// A generous limit: debug builds on a loaded 2-core machine are slow, and only the timeout
/// test wants the limit to bite.
pub fn opts() -> EngineOptions {
    EngineOptions { eval_timeout: Duration::from_millis(500) }
}

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// A bundle whose decision is a fixed allow naming `rule`.
pub fn allow_policy(rule: &str) -> String {
    format!(
        "package clawbutler\n\ndecision := {{\"action\": \"allow\", \"rule\": \"{rule}\", \"reason\": \"ok\", \"risk\": \"low\"}}\n"
    )
}

pub fn engine_for(dir: &Path, reg: &prometheus::Registry) -> PolicyEngine {
    PolicyEngine::new(BundleSource::Dir(dir.to_path_buf()), serde_json::Value::Null, opts(), reg).unwrap()
}

/// Value of a counter/histogram-count sample with the given labels.
pub fn metric(reg: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    for mf in reg.gather() {
        if mf.name() != name {
            continue;
        }
        for m in mf.get_metric() {
            let ok = labels.iter().all(|(k, v)| m.get_label().iter().any(|l| l.name() == *k && l.value() == *v));
            if ok {
                if mf.get_field_type() == prometheus::proto::MetricType::HISTOGRAM {
                    return m.get_histogram().get_sample_count() as f64;
                }
                return m.get_counter().get_value();
            }
        }
    }
    0.0
}

pub fn exec_input(cmd: &str) -> serde_json::Value {
    serde_json::json!({
        "version": 1, "kind": "exec", "agent": "main", "trace_id": "t", "now": "2026-06-01T12:00:00Z",
        "exec": {"command": cmd, "argv": [], "cwd": "/w", "workspace": "/w"},
        "cost": {}, "budgets": [], "grants": []
    })
}

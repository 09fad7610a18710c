//! `[cost]`: the anomaly detector's knobs (`docs/cost.md`, `docs/config.md`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CostSettings {
    /// Off: no anomaly is raised (the aggregates and queries keep working).
    pub anomalies: bool,
    /// How many robust standard deviations above the median an hour must be.
    pub anomaly_k: f64,
    /// The baseline window, in days before the hour judged.
    pub baseline_days: u32,
    /// Active hours (hours with calls) a subject needs in its baseline before it is judged.
    pub min_history_hours: u32,
    /// Spend above the median, in USD per hour, below which nothing is raised.
    pub min_spend_usd: f64,
    /// Calls above the median per hour below which nothing is raised.
    pub min_calls: u64,
    /// How often the current and the last hour are judged, in seconds.
    pub evaluate_every_s: u64,
}

impl Default for CostSettings {
    fn default() -> Self {
        CostSettings {
            anomalies: true,
            anomaly_k: 6.0,
            baseline_days: 7,
            min_history_hours: 24,
            min_spend_usd: 0.10,
            min_calls: 20,
            evaluate_every_s: 60,
        }
    }
}

impl CostSettings {
    /// `(key, message)` of the first bad value.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, m: &str| Err((format!("cost.{k}"), m.to_string()));
        if !(self.anomaly_k.is_finite() && self.anomaly_k > 0.0) {
            return bad("anomaly_k", "must be a number above 0");
        }
        if !(1..=90).contains(&self.baseline_days) {
            return bad("baseline_days", "must be 1 to 90");
        }
        if self.min_history_hours == 0 || self.min_history_hours > self.baseline_days * 24 {
            return bad("min_history_hours", "must be 1 to baseline_days * 24");
        }
        if !(self.min_spend_usd.is_finite() && self.min_spend_usd >= 0.0) {
            return bad("min_spend_usd", "must be 0 or more");
        }
        if !(1..=86_400).contains(&self.evaluate_every_s) {
            return bad("evaluate_every_s", "must be 1 to 86400");
        }
        Ok(())
    }
}

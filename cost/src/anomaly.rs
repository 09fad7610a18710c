//! Anomalies: an agent's or a model's spend or call count in one hour far above its own
//! baseline. The baseline is the agent's (model's) *active* hours (hours with at least one
//! call) in the `baseline_days` before the hour; robust statistics, so one earlier spike does
//! not move it: median `m` and MAD (median absolute deviation, scaled by 1.4826 to estimate a
//! standard deviation for normal data). An hour is anomalous when its value exceeds all of
//!
//! * `m + k * max(1.4826 * MAD, 0.1 * m)` (k = `anomaly_k`, default 6: far outside normal
//!   variation; the 10% floor keeps perfectly even traffic, MAD = 0, from flagging noise),
//! * `2 * m` (at least double the usual),
//! * `m + min_spend_usd` (spend) or `m + min_calls` (calls): small absolute changes are not
//!   worth a page,
//!
//! and the subject has at least `min_history_hours` active hours of baseline. The current
//! (partial) hour is checked too: its value so far can only grow, so a spike is raised while
//! it happens. Each (hour, scope, subject, metric) is raised once, across restarts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::bucket::{nano_to_usd, Counts, Dims};
use crate::settings::CostSettings;
use crate::store::{Aggregates, Hours, TraceCost};
use crate::CostError;

/// Which series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Agent,
    Model,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Agent => "agent",
            Scope::Model => "model",
        }
    }
    fn of(self, d: &Dims) -> &str {
        match self {
            Scope::Agent => &d.agent,
            Scope::Model => &d.model,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// USD per hour.
    Spend,
    /// Model calls per hour.
    Calls,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Spend => "spend",
            Metric::Calls => "calls",
        }
    }
    fn value(self, c: &Counts) -> f64 {
        match self {
            Metric::Spend => nano_to_usd(c.cost_nano),
            Metric::Calls => c.calls as f64,
        }
    }
}

/// One raised anomaly, as stored and answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    pub id: String,
    /// Start of the hour (UTC).
    pub hour: String,
    pub detected_at: String,
    pub scope: Scope,
    pub subject: String,
    pub metric: Metric,
    /// The hour's value when detected (USD or calls).
    pub value: f64,
    pub baseline_median: f64,
    pub baseline_mad: f64,
    pub threshold: f64,
    /// Active hours in the baseline.
    pub history_hours: usize,
    /// Who spent it: agents, their models, the most expensive traces.
    pub top: Vec<TopAgent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopAgent {
    pub agent: String,
    pub calls: u64,
    pub cost_usd: f64,
    pub models: Vec<TopModel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopModel {
    pub model: String,
    pub calls: u64,
    pub cost_usd: f64,
    pub traces: Vec<TopTrace>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopTrace {
    pub trace_id: String,
    pub cost_usd: f64,
}

/// Median of `v` (sorted in place); 0 when empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The threshold for a baseline, or `None` when there is too little history.
pub fn threshold(s: &CostSettings, metric: Metric, baseline: &mut [f64]) -> Option<(f64, f64, f64)> {
    if baseline.len() < s.min_history_hours as usize {
        return None;
    }
    let m = median(baseline);
    let mut dev: Vec<f64> = baseline.iter().map(|x| (x - m).abs()).collect();
    let mad = median(&mut dev);
    let sigma = (1.4826 * mad).max(0.1 * m);
    let floor = match metric {
        Metric::Spend => s.min_spend_usd,
        Metric::Calls => s.min_calls as f64,
    };
    Some((m, mad, (m + s.anomaly_k * sigma).max(2.0 * m).max(m + floor)))
}

/// Per subject, its value in each hour of `[from, to]`.
fn series(hours: &Hours, scope: Scope, from: u32, to: u32) -> HashMap<String, HashMap<u32, Counts>> {
    let mut out: HashMap<String, HashMap<u32, Counts>> = HashMap::new();
    for (&h, buckets) in hours.range(from..=to) {
        for (d, c) in buckets {
            if c.calls == 0 {
                continue;
            }
            out.entry(scope.of(d).to_string()).or_default().entry(h).or_default().add(c);
        }
    }
    out
}

/// A candidate found by [`detect`] (not yet checked against what was raised before).
pub struct Found {
    pub hour: u32,
    pub scope: Scope,
    pub subject: String,
    pub metric: Metric,
    pub value: f64,
    pub median: f64,
    pub mad: f64,
    pub threshold: f64,
    pub history: usize,
}

/// Every anomalous (subject, metric) in `hour`.
pub fn detect(s: &CostSettings, hours: &Hours, hour: u32) -> Vec<Found> {
    let from = hour.saturating_sub(s.baseline_days.saturating_mul(24));
    let mut found = Vec::new();
    for scope in [Scope::Agent, Scope::Model] {
        for (subject, by_hour) in series(hours, scope, from, hour) {
            let Some(now) = by_hour.get(&hour) else { continue };
            for metric in [Metric::Spend, Metric::Calls] {
                let mut base: Vec<f64> =
                    by_hour.iter().filter(|(h, _)| **h < hour).map(|(_, c)| metric.value(c)).collect();
                let history = base.len();
                let Some((median, mad, threshold)) = threshold(s, metric, &mut base) else { continue };
                let value = metric.value(now);
                if value > threshold {
                    found.push(Found {
                        hour,
                        scope,
                        subject: subject.clone(),
                        metric,
                        value,
                        median,
                        mad,
                        threshold,
                        history,
                    });
                }
            }
        }
    }
    found.sort_by(|a, b| {
        (a.scope.as_str(), &a.subject, a.metric.as_str()).cmp(&(b.scope.as_str(), &b.subject, b.metric.as_str()))
    });
    found
}

/// The top contributors of an anomaly: agents, their models, the most expensive traces.
pub fn contributors(agg: &Aggregates, f: &Found) -> Result<Vec<TopAgent>, CostError> {
    let mut by: HashMap<String, HashMap<String, Counts>> = HashMap::new();
    agg.read(|hours| {
        if let Some(b) = hours.get(&f.hour) {
            for (d, c) in b {
                if f.scope.of(d) == f.subject && c.calls > 0 {
                    by.entry(d.agent.to_string()).or_default().entry(d.model.to_string()).or_default().add(c);
                }
            }
        }
    })?;
    let key = |c: &Counts| match f.metric {
        Metric::Spend => c.cost_nano,
        Metric::Calls => c.calls,
    };
    let mut agents = Vec::new();
    for (agent, models) in by {
        let mut total = Counts::default();
        models.values().for_each(|c| total.add(c));
        let mut ms: Vec<(String, Counts)> = models.into_iter().collect();
        ms.sort_by(|a, b| key(&b.1).cmp(&key(&a.1)).then_with(|| a.0.cmp(&b.0)));
        ms.truncate(5);
        let mut top_models = Vec::new();
        for (model, c) in ms {
            let traces = agg.top_traces(f.hour, &agent, &model)?;
            top_models.push(TopModel {
                model,
                calls: c.calls,
                cost_usd: nano_to_usd(c.cost_nano),
                traces: traces
                    .into_iter()
                    .map(|TraceCost { trace_id, cost_nano }| TopTrace { trace_id, cost_usd: nano_to_usd(cost_nano) })
                    .collect(),
            });
        }
        agents.push((
            key(&total),
            TopAgent { agent, calls: total.calls, cost_usd: nano_to_usd(total.cost_nano), models: top_models },
        ));
    }
    agents.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.agent.cmp(&b.1.agent)));
    Ok(agents.into_iter().take(5).map(|(_, a)| a).collect())
}

/// Key of a raised anomaly: hour (BE) + scope NUL metric NUL subject.
pub fn raised_key(hour: u32, scope: Scope, metric: Metric, subject: &str) -> Vec<u8> {
    let mut k = hour.to_be_bytes().to_vec();
    k.extend_from_slice(scope.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(metric.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(subject.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_robust() {
        let s = CostSettings::default();
        // Too little history: nothing is judged.
        assert!(threshold(&s, Metric::Spend, &mut [1.0; 10]).is_none());
        // Even traffic (MAD 0): the 10% floor and the doubling rule hold.
        let (m, mad, t) = threshold(&s, Metric::Spend, &mut [1.0; 48]).unwrap();
        assert_eq!((m, mad), (1.0, 0.0));
        assert!((t - 2.0).abs() < 1e-9, "{t}");
        // One earlier spike does not move the baseline.
        let mut v = vec![1.0; 47];
        v.push(500.0);
        assert!((threshold(&s, Metric::Spend, &mut v).unwrap().2 - 2.0).abs() < 1e-9);
        // Small absolute amounts never page.
        assert!((threshold(&s, Metric::Spend, &mut [0.001; 48]).unwrap().2 - 0.101).abs() < 1e-9);
    }
}

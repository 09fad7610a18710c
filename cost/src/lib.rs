//! Cost insight: where the money goes. The aggregates are fed from the audit log, the one
//! durable account of every metered call (`store`: hourly buckets by agent, model, upstream,
//! tool server and task type, with an exactly-once cursor); queries group them by a dimension
//! or a period (`query`); anomalies compare each hour with a robust baseline and are raised as
//! audit records (so they reach the SSE stream and notification routes) and a counter
//! (`anomaly`). The follower task (`tail`) keeps the aggregates up to date and judges the
//! hours. Savings suggestions (`savings`) price each agent's tokens on cheaper models and
//! judge the evidence counted beside the buckets (`evidence`). `docs/cost.md` is the user's
//! page.

pub mod anomaly;
pub mod bucket;
pub mod evidence;
pub mod query;
pub mod savings;
pub mod savings_patch;
pub mod settings;
pub mod store;
mod tail;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, Opts};

pub use anomaly::{Anomaly, Metric, Scope};
pub use query::{GroupBy, Query, Report};
pub use savings::{PriceBook, SuggestQuery, Suggestions};
pub use settings::CostSettings;
pub use tail::follow;

/// Errors of the cost store.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    #[error("cost store: {0}")]
    Store(#[from] storage::StoreError),
    #[error("cost store: {0}")]
    Sled(#[from] sled::Error),
    #[error("cost store: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cost metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cost audit: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("cost store: a lock was poisoned")]
    Poisoned,
    #[error("savings suggestions: no price table was given to the cost service")]
    NoPrices,
}

/// What time it is (injectable for tests).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// The cost service.
pub struct Cost {
    agg: store::Aggregates,
    raised: sled::Tree,
    settings: CostSettings,
    clock: Clock,
    audit: Arc<audit::AuditLog>,
    anomalies_total: IntCounterVec,
    /// The price table savings suggestions use (set by the binary, see [`Cost::set_prices`]).
    prices: std::sync::RwLock<Option<Arc<dyn PriceBook>>>,
}

impl Cost {
    /// Open the aggregates (trees `cost_buckets`, `cost_anomalies`) and register the metric.
    pub fn open(
        db: &storage::Store,
        audit: Arc<audit::AuditLog>,
        settings: CostSettings,
        clock: Clock,
        registry: &prometheus::Registry,
    ) -> Result<Cost, CostError> {
        let anomalies_total = IntCounterVec::new(
            Opts::new("clawbutler_cost_anomalies_total", "Cost anomalies raised, by scope and metric"),
            &["scope", "metric"],
        )?;
        for s in [Scope::Agent, Scope::Model] {
            for m in [Metric::Spend, Metric::Calls] {
                anomalies_total.with_label_values(&[s.as_str(), m.as_str()]);
            }
        }
        registry.register(Box::new(anomalies_total.clone()))?;
        Ok(Cost {
            agg: store::Aggregates::open(db.tree(storage::Tree::CostBuckets)?)?,
            raised: db.tree(storage::Tree::CostAnomalies)?,
            settings,
            clock,
            audit,
            anomalies_total,
            prices: std::sync::RwLock::new(None),
        })
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Add audit records (records at or below the cursor are skipped): owned, or shared as the
    /// log's live stream hands them out. Blocking.
    pub fn apply<R: std::borrow::Borrow<audit::AuditRecord>>(&self, recs: &[R]) -> Result<u64, CostError> {
        self.agg.apply(recs)
    }

    /// Add model and tool call records that are not in this sidecar's audit log (history
    /// imported from another install, or a test's simulated past): counted whatever their seq,
    /// without moving the cursor, so the log's own records are still counted once. The caller
    /// owns not adding the same record twice. Blocking.
    pub fn backfill(&self, recs: &[audit::AuditRecord]) -> Result<(), CostError> {
        self.agg.backfill(recs)
    }

    /// The highest audit seq the aggregates include.
    pub fn cursor(&self) -> u64 {
        self.agg.cursor()
    }

    /// Catch up with the audit log (everything durable now). Blocking.
    pub fn catch_up(&self) -> Result<u64, CostError> {
        let head = self.audit.head();
        while self.cursor() < head {
            let before = self.cursor();
            let recs = self.audit.read_from(before + 1, 1_000)?;
            if recs.is_empty() {
                break;
            }
            if self.apply(&recs)? == before {
                break;
            }
        }
        Ok(self.cursor())
    }

    /// Answer a query.
    pub fn query(&self, q: &Query) -> Result<Report, CostError> {
        self.agg.read(|h| query::run(h, q))
    }

    /// Give savings suggestions the price table in force.
    pub fn set_prices(&self, book: Arc<dyn PriceBook>) {
        if let Ok(mut p) = self.prices.write() {
            *p = Some(book);
        }
    }

    /// Savings suggestions over a window (`docs/cost.md`, "Savings suggestions").
    pub fn suggestions(&self, q: &SuggestQuery) -> Result<Suggestions, CostError> {
        let book = self.prices.read().map_err(|_| CostError::Poisoned)?.clone().ok_or(CostError::NoPrices)?;
        self.agg.read_with_evidence(|h, e| savings::run(h, e, book.as_ref(), q))
    }

    /// Judge the current and the last hour; raise what is new. Blocking. Returns what was raised.
    pub fn evaluate(&self) -> Result<Vec<Anomaly>, CostError> {
        if !self.settings.anomalies {
            return Ok(Vec::new());
        }
        let now = self.now();
        let cur = query::hour_range(now, now).0;
        let mut out = Vec::new();
        for hour in [cur.saturating_sub(1), cur] {
            let found = self.agg.read(|h| anomaly::detect(&self.settings, h, hour))?;
            for f in found {
                let key = anomaly::raised_key(f.hour, f.scope, f.metric, &f.subject);
                if self.raised.contains_key(&key)? {
                    continue;
                }
                let a = Anomaly {
                    id: uuid::Uuid::now_v7().to_string(),
                    hour: query::hour_start(f.hour).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    detected_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    scope: f.scope,
                    subject: f.subject.clone(),
                    metric: f.metric,
                    value: f.value,
                    baseline_median: f.median,
                    baseline_mad: f.mad,
                    threshold: f.threshold,
                    history_hours: f.history,
                    top: anomaly::contributors(&self.agg, &f)?,
                };
                self.raise(&key, &a)?;
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Record first, then remember it was raised: a crash between the two raises it again
    /// rather than never.
    fn raise(&self, key: &[u8], a: &Anomaly) -> Result<(), CostError> {
        let (unit, value, median) = match a.metric {
            Metric::Spend => ("USD", format!("${:.4}", a.value), format!("${:.4}", a.baseline_median)),
            Metric::Calls => ("calls", format!("{}", a.value), format!("{}", a.baseline_median)),
        };
        let ev = audit::AuditEvent {
            agent: (a.scope == Scope::Agent).then(|| a.subject.clone()),
            actor: Some("system".into()),
            outcome: Some(audit::Outcome::Anomaly),
            reason: Some(format!(
                "{} {} {}: {} in the hour from {}, baseline median {} ({unit} per active hour)",
                a.scope.as_str(),
                a.subject,
                a.metric.as_str(),
                value,
                a.hour,
                median
            )),
            subject: serde_json::json!({"scope": a.scope, "subject": a.subject, "metric": a.metric}),
            details: serde_json::to_value(a)?,
            ..audit::AuditEvent::new(audit::RecordKind::Cost)
        };
        self.audit.append(ev)?;
        self.raised.insert(key, serde_json::to_vec(a)?)?;
        self.anomalies_total.with_label_values(&[a.scope.as_str(), a.metric.as_str()]).inc();
        Ok(())
    }

    /// Raised anomalies whose hour is in `[since, until)`, newest first, at most `limit`.
    pub fn anomalies(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Anomaly>, CostError> {
        let (from, to) = query::hour_range(since, until);
        let mut out = Vec::new();
        for kv in self.raised.range(from.to_be_bytes()..to.to_be_bytes()).rev() {
            let (_, v) = kv?;
            if let Ok(a) = serde_json::from_slice::<Anomaly>(&v) {
                out.push(a);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Make the aggregates durable now (at shutdown).
    pub fn flush(&self) -> Result<(), CostError> {
        self.agg.flush()?;
        self.raised.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod savings_tests;
#[cfg(test)]
mod tests;

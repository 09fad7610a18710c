//! What a report says, gathered for one period: spend (from the cost aggregates, so its sums
//! are the cost API's for the same period), its trend against the period before, anomalies,
//! approvals and their waiting times, denials by rule, budget events (from the audit log) and
//! cron health (the live jobs through the gateway link, and the period's cron records).

use std::collections::BTreeMap;

use audit::{AuditRecord, RecordKind};
use chrono::{DateTime, Utc};
use cost::query::{Figures, Row};
use cost::GroupBy;
use decision::Action;
use serde::Serialize;
use serde_json::Value;

use crate::ReportsError;

/// Audit records read for one report, at most (a bound on the work; the report says so).
pub const MAX_RECORDS: usize = 1_000_000;
/// Rows per spend grouping (the most expensive first; the rest are summed in `rows_left_off`).
pub const MAX_ROWS: usize = 1_000;

/// A spend grouping: its rows and how many were left off.
#[derive(Debug, Clone, Serialize)]
pub struct Grouping {
    pub rows: Vec<Row>,
    pub rows_left_off: usize,
}

/// Approvals decided in the period, and how long they waited for it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Approvals {
    pub created: u64,
    /// Decided records by outcome (`allowed`, `denied`, `expired`, `cancelled`, ...).
    pub outcomes: BTreeMap<String, u64>,
    /// Seconds from creation to decision, over the decided ones.
    pub wait_median_s: Option<f64>,
    pub wait_p95_s: Option<f64>,
    pub wait_max_s: Option<f64>,
}

/// Refusals by the rule that made them.
#[derive(Debug, Clone, Serialize)]
pub struct RuleDenials {
    pub rule: String,
    pub count: u64,
    /// Agents refused by it, with their counts.
    pub agents: BTreeMap<String, u64>,
}

/// A budget record of the period.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetEvent {
    pub ts: String,
    pub budget: String,
    pub event: String,
    pub reason: String,
}

/// A cron job as the gateway link lists it.
#[derive(Debug, Clone, Serialize)]
pub struct CronJob {
    pub name: String,
    pub agent: String,
    pub enabled: bool,
    pub last_status: String,
    pub consecutive_failures: u64,
    pub cost_usd: Option<f64>,
}

/// Cron health: the jobs now, and the period's cron records by outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CronHealth {
    /// Whether a gateway is linked (without one there are no jobs to show).
    pub linked: bool,
    pub jobs: Vec<CronJob>,
    pub events: BTreeMap<String, u64>,
}

/// Everything one report shows.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    pub since: String,
    pub until: String,
    /// The IANA zone of the days, and the period's bounds as local times there.
    pub timezone: String,
    pub since_local: String,
    pub until_local: String,
    pub generated_at: String,
    pub totals: Figures,
    /// The same length of time just before `since`, for the trend.
    pub previous_totals: Figures,
    pub by_agent: Grouping,
    pub by_model: Grouping,
    pub by_task: Grouping,
    pub by_day: Vec<Row>,
    pub anomalies: Vec<cost::Anomaly>,
    pub approvals: Approvals,
    pub denials: Vec<RuleDenials>,
    pub budget_events: Vec<BudgetEvent>,
    pub cron: CronHealth,
    /// More audit records than [`MAX_RECORDS`]: the governance sections are partial.
    pub truncated: bool,
}

impl ReportData {
    /// Change of spend against the period before, in percent (`None` when that was zero).
    pub fn trend_pct(&self) -> Option<f64> {
        let before = self.previous_totals.cost_nano;
        (before > 0).then(|| (self.totals.cost_nano as f64 - before as f64) * 100.0 / before as f64)
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn grouping(
    c: &cost::Cost,
    by: GroupBy,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<cost::Report, ReportsError> {
    let q = cost::Query { by, split: None, since, until, agent: None, model: None, limit: MAX_ROWS };
    Ok(c.query(&q)?)
}

/// Gather the spend and governance sections (blocking: reads the aggregates and the log).
/// Cron jobs come separately (`with_cron`), as they need the gateway link.
pub fn gather(
    c: &cost::Cost,
    log: &audit::AuditLog,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> Result<ReportData, ReportsError> {
    let agent = grouping(c, GroupBy::Agent, since, until)?;
    let model = grouping(c, GroupBy::Model, since, until)?;
    let task = grouping(c, GroupBy::Task, since, until)?;
    let by_day = if tz == chrono_tz::UTC {
        grouping(c, GroupBy::Day, since, until)?.rows
    } else {
        // Local days: each day's totals over its own whole UTC hours (the zone was checked to
        // be whole hours off UTC), so a day's row is the cost API's for the same times.
        let mut rows = Vec::new();
        for (day, start, end) in crate::zone::days(tz, since, until) {
            let figures = grouping(c, GroupBy::Day, start, end)?.totals;
            rows.push(Row { key: day.to_string(), split: None, figures });
        }
        rows
    };
    let previous = grouping(c, GroupBy::Agent, since - (until - since), since)?;
    let anomalies = c.anomalies(since, until, MAX_ROWS)?;
    let mut g = Governance::default();
    let complete = g.scan(log, since, until)?;
    Ok(ReportData {
        since: rfc3339(since),
        until: rfc3339(until),
        timezone: tz.name().to_string(),
        since_local: crate::zone::local(tz, since),
        until_local: crate::zone::local(tz, until),
        generated_at: rfc3339(now),
        totals: agent.totals,
        previous_totals: previous.totals,
        by_agent: Grouping { rows: agent.rows, rows_left_off: agent.rows_left_off },
        by_model: Grouping { rows: model.rows, rows_left_off: model.rows_left_off },
        by_task: Grouping { rows: task.rows, rows_left_off: task.rows_left_off },
        by_day,
        anomalies,
        approvals: g.approvals(),
        denials: g.denials(),
        budget_events: g.budget_events,
        cron: CronHealth { events: g.cron_events, ..Default::default() },
        truncated: !complete,
    })
}

/// The governance sections, accumulated over the period's audit records.
#[derive(Default)]
struct Governance {
    created: u64,
    outcomes: BTreeMap<String, u64>,
    waits: Vec<f64>,
    denials: BTreeMap<String, RuleDenials>,
    budget_events: Vec<BudgetEvent>,
    cron_events: BTreeMap<String, u64>,
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?).ok().map(|t| t.with_timezone(&Utc))
}

impl Governance {
    /// Read every record of the kinds the report needs in `[since, until)`; false if cut short.
    fn scan(
        &mut self,
        log: &audit::AuditLog,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool, ReportsError> {
        let kinds = [
            RecordKind::Approval,
            RecordKind::ModelCall,
            RecordKind::Exec,
            RecordKind::ToolCall,
            RecordKind::Plugin,
            RecordKind::Budget,
            RecordKind::Cron,
        ];
        // The audit bound is inclusive; the period is not.
        let to = until - chrono::Duration::milliseconds(1);
        let mut read = 0;
        let mut complete = true;
        for kind in kinds {
            if !log.scan(kind, since, to, &mut read, MAX_RECORDS, &mut |r| self.add(r))? {
                complete = false;
                break;
            }
        }
        self.budget_events.sort_by(|a, b| a.ts.cmp(&b.ts));
        Ok(complete)
    }

    fn add(&mut self, r: &AuditRecord) {
        let outcome = r.outcome.clone().unwrap_or_default();
        match r.kind {
            Some(RecordKind::Approval) => {
                let a = &r.details["approval"];
                if outcome == "created" || outcome == "held" {
                    self.created += 1;
                    return;
                }
                if r.details["event"] != "approval.decided" {
                    return;
                }
                *self.outcomes.entry(outcome).or_default() += 1;
                let decided = time(&a["decided_at"]).or_else(|| time(&Value::String(r.ts.clone())));
                if let (Some(c), Some(d)) = (time(&a["created_at"]), decided) {
                    self.waits.push(((d - c).num_milliseconds().max(0) as f64) / 1000.0);
                }
            }
            Some(RecordKind::Budget) => {
                // Budget configuration changes are not events of the money.
                if matches!(outcome.as_str(), "upsert" | "delete") {
                    return;
                }
                self.budget_events.push(BudgetEvent {
                    ts: r.ts.clone(),
                    budget: r.subject["budget"].as_str().unwrap_or("-").to_string(),
                    event: outcome,
                    reason: r.reason.clone().unwrap_or_default(),
                });
            }
            Some(RecordKind::Cron) => *self.cron_events.entry(outcome).or_default() += 1,
            _ => {
                let refused =
                    r.action == Some(Action::Deny) && matches!(outcome.as_str(), "denied" | "budget_exceeded");
                if !refused {
                    return;
                }
                let rule = r.rule.clone().unwrap_or_else(|| "(none)".into());
                let d = self.denials.entry(rule.clone()).or_insert_with(|| RuleDenials {
                    rule,
                    count: 0,
                    agents: BTreeMap::new(),
                });
                d.count += 1;
                *d.agents.entry(r.agent.clone().unwrap_or_else(|| "-".into())).or_default() += 1;
            }
        }
    }

    fn approvals(&mut self) -> Approvals {
        self.waits.sort_by(f64::total_cmp);
        let at = |q: f64| -> Option<f64> {
            let n = self.waits.len();
            (n > 0).then(|| self.waits[((n as f64 * q).ceil() as usize).clamp(1, n) - 1])
        };
        Approvals {
            created: self.created,
            outcomes: std::mem::take(&mut self.outcomes),
            wait_median_s: at(0.5),
            wait_p95_s: at(0.95),
            wait_max_s: self.waits.last().copied(),
        }
    }

    fn denials(&mut self) -> Vec<RuleDenials> {
        let mut v: Vec<RuleDenials> = std::mem::take(&mut self.denials).into_values().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
        v
    }
}

/// The jobs of the linked gateway's `cron` list (`governance::cron::CronControl::list`).
pub fn cron_jobs(list: &Value) -> Vec<CronJob> {
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let s = |v: &Value| v.as_str().map(str::to_string);
    items
        .iter()
        .map(|j| CronJob {
            name: s(&j["name"]).or_else(|| s(&j["id"])).unwrap_or_default(),
            agent: s(&j["agent"]).unwrap_or_else(|| "main".into()),
            enabled: j["enabled"].as_bool().unwrap_or(true),
            last_status: s(&j["last_status"]).unwrap_or_else(|| "-".into()),
            consecutive_failures: j["consecutive_failures"].as_u64().unwrap_or(0),
            cost_usd: j["cost"]["usd"].as_f64(),
        })
        .collect()
}

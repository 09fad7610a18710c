//! The CSV: one table, one row per figure, so a spreadsheet can filter by `section` and sum a
//! column. Money is written exactly (`cost_usd` from the nano-dollar sums, nine decimals), so
//! the CSV's sums are the cost API's to the last digit. Text that a spreadsheet would run as a
//! formula (starting `=`, `+`, `-`, `@`: agent and model names come from requests) is written
//! with a leading `'`.

use cost::query::Figures;

use crate::data::ReportData;
use crate::ReportsError;

const HEADER: [&str; 12] = [
    "section",
    "key",
    "ts",
    "calls",
    "errors",
    "refused",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "count",
    "value",
    "detail",
];

/// Nano-dollars as an exact decimal.
pub fn usd(nano: u64) -> String {
    format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000)
}

fn text(s: &str) -> String {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if s.len() > 1 => format!("'{s}"),
        _ => s.to_string(),
    }
}

/// One row, by column name; absent columns are empty.
#[derive(Default)]
struct Line {
    section: &'static str,
    key: String,
    ts: String,
    figures: Option<Figures>,
    cost_usd: Option<String>,
    count: Option<u64>,
    value: Option<f64>,
    detail: String,
}

impl Line {
    fn cells(self) -> [String; 12] {
        let f = self.figures.as_ref();
        let n = |g: fn(&Figures) -> u64| f.map(|f| g(f).to_string()).unwrap_or_default();
        [
            self.section.to_string(),
            text(&self.key),
            self.ts,
            n(|f| f.calls),
            n(|f| f.errors),
            n(|f| f.refused),
            n(|f| f.input_tokens),
            n(|f| f.output_tokens),
            self.cost_usd.or_else(|| f.map(|f| usd(f.cost_nano))).unwrap_or_default(),
            self.count.map(|c| c.to_string()).unwrap_or_default(),
            self.value.map(|v| format!("{v}")).unwrap_or_default(),
            text(&self.detail),
        ]
    }
}

fn spend(section: &'static str, key: &str, f: &Figures) -> Line {
    Line { section, key: key.to_string(), figures: Some(f.clone()), ..Default::default() }
}

/// Render the CSV.
pub fn render(d: &ReportData) -> Result<Vec<u8>, ReportsError> {
    let mut lines = vec![
        // Bounds in UTC (`ts`) and as local times in the report's zone (`detail`).
        Line {
            section: "period",
            key: "since".into(),
            ts: d.since.clone(),
            detail: d.since_local.clone(),
            ..Default::default()
        },
        Line {
            section: "period",
            key: "until".into(),
            ts: d.until.clone(),
            detail: d.until_local.clone(),
            ..Default::default()
        },
        Line { section: "period", key: "timezone".into(), detail: d.timezone.clone(), ..Default::default() },
        Line { section: "period", key: "generated_at".into(), ts: d.generated_at.clone(), ..Default::default() },
        spend("total", "total", &d.totals),
        spend("previous_period", "total", &d.previous_totals),
        Line { section: "trend", key: "spend_change_pct".into(), value: d.trend_pct(), ..Default::default() },
    ];
    if d.truncated {
        lines.push(Line {
            section: "period",
            key: "truncated".into(),
            detail: format!("more than {} audit records: governance sections are partial", crate::data::MAX_RECORDS),
            ..Default::default()
        });
    }
    for (section, g) in [("agent", &d.by_agent), ("model", &d.by_model), ("task", &d.by_task)] {
        lines.extend(g.rows.iter().map(|r| spend(section, &r.key, &r.figures)));
        if g.rows_left_off > 0 {
            lines.push(Line {
                section,
                key: "(rows left off)".into(),
                count: Some(g.rows_left_off as u64),
                ..Default::default()
            });
        }
    }
    lines.extend(d.by_day.iter().map(|r| spend("day", &r.key, &r.figures)));
    for a in &d.anomalies {
        lines.push(Line {
            section: "anomaly",
            key: format!("{}:{}", a.scope.as_str(), a.subject),
            ts: a.hour.clone(),
            value: Some(a.value),
            detail: format!(
                "{} above its baseline: median {} per active hour, threshold {}",
                a.metric.as_str(),
                a.baseline_median,
                a.threshold
            ),
            ..Default::default()
        });
    }
    let ap = &d.approvals;
    lines.push(Line { section: "approvals", key: "created".into(), count: Some(ap.created), ..Default::default() });
    for (k, n) in &ap.outcomes {
        lines.push(Line { section: "approvals", key: k.clone(), count: Some(*n), ..Default::default() });
    }
    for (k, v) in [("wait_median_s", ap.wait_median_s), ("wait_p95_s", ap.wait_p95_s), ("wait_max_s", ap.wait_max_s)] {
        lines.push(Line { section: "approvals", key: k.into(), value: v, ..Default::default() });
    }
    for r in &d.denials {
        let agents: Vec<String> = r.agents.iter().map(|(a, n)| format!("{a}={n}")).collect();
        lines.push(Line {
            section: "denials",
            key: r.rule.clone(),
            count: Some(r.count),
            detail: agents.join("; "),
            ..Default::default()
        });
    }
    for e in &d.budget_events {
        lines.push(Line {
            section: "budget_event",
            key: e.budget.clone(),
            ts: e.ts.clone(),
            detail: format!("{}: {}", e.event, e.reason),
            ..Default::default()
        });
    }
    for j in &d.cron.jobs {
        lines.push(Line {
            section: "cron_job",
            key: j.name.clone(),
            count: Some(j.consecutive_failures),
            value: j.cost_usd,
            detail: format!(
                "agent={}; enabled={}; last_status={}; count=failures in a row; value=cost of recent runs (USD)",
                j.agent, j.enabled, j.last_status
            ),
            ..Default::default()
        });
    }
    for (k, n) in &d.cron.events {
        lines.push(Line { section: "cron_event", key: k.clone(), count: Some(*n), ..Default::default() });
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(HEADER)?;
    for l in lines {
        w.write_record(l.cells())?;
    }
    w.into_inner().map_err(|e| ReportsError::Render(e.to_string()))
}

//! The PDF: the same sections as the CSV, for people: a summary with the trend, spend per day
//! as a bar chart, tables by agent, model and task, anomalies, approvals and their waiting
//! times, denials by rule, budget events and cron health. Rendered in-process (pdf-writer),
//! no browser and no external tool.

mod layout;

use cost::query::{Figures, Row};
use layout::{Align, Col, Doc};
use Align::{Left as L, Right as R};

use crate::csv_out::usd;
use crate::data::{Grouping, ReportData};

fn money(f: &Figures) -> String {
    format!("${:.4}", f.cost_usd)
}

fn opt_usd(v: Option<f64>) -> String {
    v.map(|v| format!("${v:.6}")).unwrap_or_else(|| "-".into())
}

fn secs(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.1} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

// Each table's columns: header, width (points; a table spans the text width, 499), alignment.
const SPEND_COLS: [Col; 7] = [
    Col("", 150.0, L),
    Col("calls", 48.0, R),
    Col("errors", 44.0, R),
    Col("tokens in", 64.0, R),
    Col("tokens out", 64.0, R),
    Col("cost (USD)", 66.0, R),
    Col("per call", 63.0, R),
];
const ANOMALY_COLS: [Col; 6] = [
    Col("hour", 100.0, L),
    Col("subject", 100.0, L),
    Col("metric", 44.0, L),
    Col("value", 60.0, R),
    Col("baseline", 66.0, R),
    Col("top contributor", 129.0, L),
];
const DENIAL_COLS: [Col; 3] = [Col("rule", 200.0, L), Col("refused", 50.0, R), Col("agents", 249.0, L)];
const BUDGET_COLS: [Col; 4] =
    [Col("time", 110.0, L), Col("budget", 110.0, L), Col("event", 50.0, L), Col("reason", 229.0, L)];
const CRON_COLS: [Col; 6] = [
    Col("job", 140.0, L),
    Col("agent", 80.0, L),
    Col("enabled", 50.0, L),
    Col("last run", 70.0, L),
    Col("failures in a row", 85.0, R),
    Col("recent cost", 74.0, R),
];
const COUNT_COLS: [Col; 2] = [Col("", 200.0, L), Col("count", 80.0, R)];

fn spend_rows(rows: &[Row]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            let f = &r.figures;
            vec![
                r.key.clone(),
                f.calls.to_string(),
                f.errors.to_string(),
                f.input_tokens.to_string(),
                f.output_tokens.to_string(),
                money(f),
                opt_usd(f.avg_cost_per_call_usd),
            ]
        })
        .collect()
}

fn spend_table(doc: &mut Doc, title: &'static str, first: &'static str, g: &Grouping) {
    doc.heading(title);
    let mut cols = SPEND_COLS;
    cols[0] = Col(first, cols[0].1, Align::Left);
    doc.table(&cols, &spend_rows(&g.rows));
    if g.rows_left_off > 0 {
        doc.para(&format!("{} more rows in the CSV are left off here.", g.rows_left_off));
    }
}

/// Render the PDF.
pub fn render(d: &ReportData) -> Vec<u8> {
    let period = if d.timezone == "UTC" {
        format!("{} to {} (UTC)", d.since, d.until)
    } else {
        format!("{} to {} ({}; days begin at midnight there)", d.since_local, d.until_local, d.timezone)
    };
    let mut doc = Doc::new(format!("ClawButler cost and governance report, {period}"));
    doc.title("Cost and governance report");
    doc.para(&format!("Period: {period}. Generated {}.", d.generated_at));
    let t = &d.totals;
    let trend = match d.trend_pct() {
        Some(p) => format!("{p:+.1} % against the period before ({})", money(&d.previous_totals)),
        None => "no spend in the period before to compare with".into(),
    };
    doc.para(&format!(
        "Spend {} (exactly {} USD) over {} model calls ({} errors, {} refused), {} input and {} output tokens; \
         {} per call. Trend: {trend}.",
        money(t),
        usd(t.cost_nano),
        t.calls,
        t.errors,
        t.refused,
        t.input_tokens,
        t.output_tokens,
        opt_usd(t.avg_cost_per_call_usd),
    ));
    if d.truncated {
        doc.para("The period holds more audit records than one report reads: the governance sections are partial.");
    }
    doc.heading("Spend per day");
    let labels: Vec<String> = d.by_day.iter().map(|r| r.key.get(5..).unwrap_or(&r.key).to_string()).collect();
    let values: Vec<f64> = d.by_day.iter().map(|r| r.figures.cost_usd).collect();
    let max = values.iter().copied().fold(0.0, f64::max);
    doc.bars(&labels, &values, &format!("USD per day (highest ${max:.4})"));
    spend_table(&mut doc, "Spend by agent", "agent", &d.by_agent);
    spend_table(&mut doc, "Spend by model", "model", &d.by_model);
    spend_table(&mut doc, "Spend by task type", "task", &d.by_task);

    doc.heading("Anomalies");
    let rows: Vec<Vec<String>> = d
        .anomalies
        .iter()
        .map(|a| {
            let top = a.top.first().map(|t| {
                let m = t.models.first().map(|m| format!(" / {}", m.model)).unwrap_or_default();
                format!("{}{m}", t.agent)
            });
            vec![
                a.hour.clone(),
                format!("{} {}", a.scope.as_str(), a.subject),
                a.metric.as_str().to_string(),
                format!("{:.4}", a.value),
                format!("{:.4}", a.baseline_median),
                top.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    doc.table(&ANOMALY_COLS, &rows);

    doc.heading("Approvals");
    let ap = &d.approvals;
    let mut rows = vec![vec!["created".to_string(), ap.created.to_string()]];
    rows.extend(ap.outcomes.iter().map(|(k, n)| vec![k.clone(), n.to_string()]));
    doc.table(&COUNT_COLS, &rows);
    doc.para(&format!(
        "Waiting time from request to decision: median {}, 95th percentile {}, longest {}.",
        secs(ap.wait_median_s),
        secs(ap.wait_p95_s),
        secs(ap.wait_max_s)
    ));

    doc.heading("Denials by rule");
    let rows: Vec<Vec<String>> = d
        .denials
        .iter()
        .map(|r| {
            let agents: Vec<String> = r.agents.iter().map(|(a, n)| format!("{a} ({n})")).collect();
            vec![r.rule.clone(), r.count.to_string(), agents.join(", ")]
        })
        .collect();
    doc.table(&DENIAL_COLS, &rows);

    doc.heading("Budget events");
    let rows: Vec<Vec<String>> = d
        .budget_events
        .iter()
        .map(|e| vec![e.ts.clone(), e.budget.clone(), e.event.clone(), e.reason.clone()])
        .collect();
    doc.table(&BUDGET_COLS, &rows);

    doc.heading("Cron health");
    if !d.cron.linked {
        doc.para("No OpenClaw gateway is linked, so there are no cron jobs to show.");
    } else {
        let rows: Vec<Vec<String>> = d
            .cron
            .jobs
            .iter()
            .map(|j| {
                vec![
                    j.name.clone(),
                    j.agent.clone(),
                    if j.enabled { "yes".into() } else { "paused".into() },
                    j.last_status.clone(),
                    j.consecutive_failures.to_string(),
                    opt_usd(j.cost_usd),
                ]
            })
            .collect();
        doc.table(&CRON_COLS, &rows);
    }
    let events: Vec<String> = d.cron.events.iter().map(|(k, n)| format!("{k} {n}")).collect();
    doc.para(&format!(
        "Cron records in the period: {}.",
        if events.is_empty() { "none".to_string() } else { events.join(", ") }
    ));
    doc.finish("ClawButler cost and governance report")
}

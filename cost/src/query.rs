//! Cost queries over the hourly buckets: totals, per-call and per-1k-token averages, and rows
//! grouped by a dimension or a period (UTC). `since` is rounded down and `until` up to whole
//! hours (the buckets' resolution).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;

use crate::bucket::{nano_to_usd, Counts, Dims};
use crate::store::Hours;

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Agent,
    Model,
    Upstream,
    Tool,
    Task,
    Hour,
    Day,
    Week,
    Month,
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "agent" => GroupBy::Agent,
            "model" => GroupBy::Model,
            "upstream" => GroupBy::Upstream,
            "tool" => GroupBy::Tool,
            "task" => GroupBy::Task,
            "hour" => GroupBy::Hour,
            "day" => GroupBy::Day,
            "week" => GroupBy::Week,
            "month" => GroupBy::Month,
            _ => return None,
        })
    }

    pub fn is_period(self) -> bool {
        matches!(self, GroupBy::Hour | GroupBy::Day | GroupBy::Week | GroupBy::Month)
    }

    fn dim_arc(self, d: &Dims) -> Arc<str> {
        match self {
            GroupBy::Agent => d.agent.clone(),
            GroupBy::Model => d.model.clone(),
            GroupBy::Upstream => d.upstream.clone(),
            GroupBy::Tool => d.tool.clone(),
            _ => d.task.clone(),
        }
    }
}

/// The label of the period an hour falls in (UTC): `2026-12-03T05:00Z`, `2026-12-03`, the
/// ISO week's Monday `2026-11-30`, `2026-12`.
pub fn period(by: GroupBy, hour: u32) -> String {
    let day = i64::from(hour / 24);
    let date = NaiveDate::from_num_days_from_ce_opt(719_163 + day as i32).unwrap_or_default();
    match by {
        GroupBy::Hour => format!("{}T{:02}:00Z", date, hour % 24),
        GroupBy::Week => {
            // 1970-01-01 was a Thursday: Monday-based weekday index is (day + 3) % 7.
            let monday = date - chrono::Duration::days((day + 3).rem_euclid(7));
            monday.to_string()
        }
        GroupBy::Month => format!("{:04}-{:02}", date.year(), date.month()),
        _ => date.to_string(),
    }
}

/// A query.
#[derive(Debug, Clone)]
pub struct Query {
    pub by: GroupBy,
    /// A second, dimension grouping inside each row (`split=agent` with `by=day` stacks a chart).
    pub split: Option<GroupBy>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub agent: Option<String>,
    pub model: Option<String>,
    /// Most rows returned for a dimension grouping (the most expensive first).
    pub limit: usize,
}

/// Counters with their averages, as answered.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figures {
    pub calls: u64,
    pub errors: u64,
    pub refused: u64,
    pub tool_calls: u64,
    pub unknown_cost_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Exact sum, nano-dollars.
    pub cost_nano: u64,
    pub cost_usd: f64,
    /// Cost per model call (`null` without calls).
    pub avg_cost_per_call_usd: Option<f64>,
    /// Cost per 1,000 tokens, input and output together (`null` without tokens).
    pub cost_per_1k_tokens_usd: Option<f64>,
}

impl From<&Counts> for Figures {
    fn from(c: &Counts) -> Figures {
        let tokens = c.input_tokens + c.output_tokens;
        Figures {
            calls: c.calls,
            errors: c.errors,
            refused: c.refused,
            tool_calls: c.tool_calls,
            unknown_cost_calls: c.unknown_cost,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cost_nano: c.cost_nano,
            cost_usd: nano_to_usd(c.cost_nano),
            avg_cost_per_call_usd: (c.calls > 0).then(|| nano_to_usd(c.cost_nano) / c.calls as f64),
            cost_per_1k_tokens_usd: (tokens > 0).then(|| nano_to_usd(c.cost_nano) * 1000.0 / tokens as f64),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub by: GroupBy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<GroupBy>,
    pub since: String,
    pub until: String,
    pub totals: Figures,
    pub rows: Vec<Row>,
    /// Rows left out past `limit`.
    pub rows_left_off: usize,
}

/// The hour range `[from, to)` a query covers.
pub fn hour_range(since: DateTime<Utc>, until: DateTime<Utc>) -> (u32, u32) {
    let from = since.timestamp().div_euclid(3600).clamp(0, i64::from(u32::MAX)) as u32;
    let to = (until.timestamp() + 3599).div_euclid(3600).clamp(0, i64::from(u32::MAX)) as u32;
    (from, to.max(from))
}

pub fn hour_start(hour: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::from(hour) * 3600, 0).single().unwrap_or_default()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Answer `q` over `hours`. Groups are keyed by the buckets' shared names (`Arc<str>`, a
/// reference count, no copy) and a period label made once per hour: a 90-day scan touches
/// every bucket once without allocating per bucket.
pub fn run(hours: &Hours, q: &Query) -> Report {
    let (from, to) = hour_range(q.since, q.until);
    let mut totals = Counts::default();
    let mut groups: HashMap<(Arc<str>, Option<Arc<str>>), Counts> = HashMap::new();
    let mut last_label: Option<Arc<str>> = None;
    for (&hour, buckets) in hours.range(from..to) {
        let label = if q.by.is_period() {
            let l = period(q.by, hour);
            match &last_label {
                Some(prev) if **prev == *l => last_label.clone(),
                _ => {
                    last_label = Some(Arc::from(l));
                    last_label.clone()
                }
            }
        } else {
            None
        };
        for (d, c) in buckets {
            if q.agent.as_deref().is_some_and(|a| a != &*d.agent) || q.model.as_deref().is_some_and(|m| m != &*d.model)
            {
                continue;
            }
            totals.add(c);
            let key = match &label {
                Some(l) => l.clone(),
                None => q.by.dim_arc(d),
            };
            let split = q.split.map(|s| s.dim_arc(d));
            groups.entry((key, split)).or_default().add(c);
        }
    }
    // Periods without traffic are rows too (a chart needs them), when not split.
    if q.by.is_period() && q.split.is_none() {
        let mut h = from;
        while h < to {
            groups.entry((Arc::from(period(q.by, h)), None)).or_default();
            h += 1;
        }
    }
    let mut rows: Vec<Row> = groups
        .into_iter()
        .map(|((key, split), c)| Row {
            key: key.to_string(),
            split: split.map(|s| s.to_string()),
            figures: Figures::from(&c),
        })
        .collect();
    let mut left_off = 0;
    if q.by.is_period() {
        rows.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| b.figures.cost_nano.cmp(&a.figures.cost_nano)));
    } else {
        rows.sort_by(|a, b| {
            b.figures
                .cost_nano
                .cmp(&a.figures.cost_nano)
                .then_with(|| b.figures.calls.cmp(&a.figures.calls))
                .then_with(|| a.key.cmp(&b.key))
        });
        if rows.len() > q.limit {
            left_off = rows.len() - q.limit;
            rows.truncate(q.limit);
        }
    }
    Report {
        by: q.by,
        split: q.split,
        since: rfc3339(hour_start(from)),
        until: rfc3339(hour_start(to)),
        totals: Figures::from(&totals),
        rows,
        rows_left_off: left_off,
    }
}

/// Parse a query time: RFC 3339, a date (`2026-12-01`, midnight UTC), or a duration before
/// `now` (`90d`, `36h`, `2w`).
pub fn parse_time(s: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?));
    }
    let unit = s.chars().last()?;
    let n: i64 = s[..s.len() - unit.len_utf8()].parse().ok().filter(|n| *n >= 0 && *n <= 100_000)?;
    let hours = match unit {
        'h' => n,
        'd' => n * 24,
        'w' => n * 24 * 7,
        _ => return None,
    };
    Some(now - chrono::Duration::hours(hours))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_in_utc() {
        // 2026-12-03 is a Thursday; its ISO week starts Monday 2026-11-30.
        let h = (Utc.with_ymd_and_hms(2026, 12, 3, 5, 30, 0).unwrap().timestamp() / 3600) as u32;
        assert_eq!(period(GroupBy::Hour, h), "2026-12-03T05:00Z");
        assert_eq!(period(GroupBy::Day, h), "2026-12-03");
        assert_eq!(period(GroupBy::Week, h), "2026-11-30");
        assert_eq!(period(GroupBy::Month, h), "2026-12");
    }

    #[test]
    fn times_parse() {
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap();
        assert_eq!(parse_time("7d", now), Some(now - chrono::Duration::days(7)));
        assert_eq!(parse_time("2026-12-01", now), Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()));
        assert!(parse_time("7x", now).is_none());
        assert!(parse_time("", now).is_none());
        assert!(parse_time("-3d", now).is_none());
        assert!(parse_time("7日", now).is_none());
    }
}

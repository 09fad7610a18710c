//! Config: `[[reports]]` (schedules) and `[report_settings]` (`docs/config.md`).

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// How often a schedule makes a report; each covers the last whole period (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Every {
    Daily,
    Weekly,
    Monthly,
}

impl Every {
    pub fn parse(s: &str) -> Option<Every> {
        match s {
            "daily" => Some(Every::Daily),
            "weekly" => Some(Every::Weekly),
            "monthly" => Some(Every::Monthly),
            _ => None,
        }
    }

    /// The last whole period before `now`: yesterday, last ISO week (Monday to Monday), last
    /// calendar month; `[since, until)` in UTC.
    pub fn last_period(self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let midnight = |d: NaiveDate| Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN));
        let today = now.date_naive();
        match self {
            Every::Daily => (midnight(today) - Duration::days(1), midnight(today)),
            Every::Weekly => {
                let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
                (midnight(monday) - Duration::days(7), midnight(monday))
            }
            Every::Monthly => {
                let first = today.with_day(1).unwrap_or(today);
                let prev = (first - Duration::days(1)).with_day(1).unwrap_or(first);
                (midnight(prev), midnight(first))
            }
        }
    }
}

/// One scheduled report (`[[reports]]`, or `POST /api/v1/reports/schedules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Unique; letters, digits, `.`, `_`, `-`, at most 64.
    pub name: String,
    pub every: Every,
}

impl Schedule {
    pub fn validate(&self) -> Result<(), String> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(())
        } else {
            Err(format!("a schedule name is 1 to 64 letters, digits, '.', '_' or '-', not {:?}", self.name))
        }
    }
}

/// `[report_settings]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportSettings {
    /// How long a download link works, at most (seconds); a request may ask for less.
    pub link_ttl_s: u64,
    /// Reports kept; past it the oldest finished ones are removed with their files.
    pub keep: usize,
    /// Reports queued or running at once, at most; more are refused (429) until some finish.
    pub max_pending: usize,
}

impl Default for ReportSettings {
    fn default() -> Self {
        ReportSettings { link_ttl_s: 900, keep: 200, max_pending: 20 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_the_last_whole_ones() {
        // Thursday 2026-12-03 05:30 UTC.
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 5, 30, 0).unwrap();
        let t = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
        assert_eq!(Every::Daily.last_period(now), (t(2026, 12, 2), t(2026, 12, 3)));
        assert_eq!(Every::Weekly.last_period(now), (t(2026, 11, 23), t(2026, 11, 30)));
        assert_eq!(Every::Monthly.last_period(now), (t(2026, 11, 1), t(2026, 12, 1)));
        let jan = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(Every::Monthly.last_period(jan), (t(2026, 12, 1), t(2027, 1, 1)));
    }

    #[test]
    fn names_are_checked() {
        assert!(Schedule { name: "weekly-ops".into(), every: Every::Weekly }.validate().is_ok());
        assert!(Schedule { name: "".into(), every: Every::Daily }.validate().is_err());
        assert!(Schedule { name: "a/b".into(), every: Every::Daily }.validate().is_err());
    }
}

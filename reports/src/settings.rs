//! Config: `[[reports]]` (schedules) and `[report_settings]` (`docs/config.md`).

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use governance::budget::window::{midnight_utc, window_start, Window};
use serde::{Deserialize, Serialize};

/// How often a schedule makes a report; each covers the last whole period (in its zone).
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

    /// The last whole period before `now` in `tz`: yesterday, last ISO week (Monday to
    /// Monday), last calendar month, from local midnight to local midnight (the budget
    /// windows' calendar); `[since, until)` as UTC instants.
    pub fn last_period(self, now: DateTime<Utc>, tz: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let w = match self {
            Every::Daily => Window::Daily,
            Every::Weekly => Window::Weekly,
            Every::Monthly => Window::Monthly,
        };
        let current = window_start(w, now.with_timezone(&tz).date_naive());
        let previous = window_start(w, current - Duration::days(1));
        (midnight_utc(tz, previous), midnight_utc(tz, current))
    }
}

/// One scheduled report (`[[reports]]`, or `POST /api/v1/reports/schedules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Unique; letters, digits, `.`, `_`, `-`, at most 64.
    pub name: String,
    pub every: Every,
    /// IANA zone of its periods and days (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl Schedule {
    pub fn validate(&self) -> Result<(), String> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self.name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(format!("a schedule name is 1 to 64 letters, digits, '.', '_' or '-', not {:?}", self.name));
        }
        match &self.timezone {
            Some(z) => crate::zone::parse(z).map(|_| ()).map_err(|e| format!("schedule {:?}: {e}", self.name)),
            None => Ok(()),
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
    use chrono::TimeZone;

    #[test]
    fn periods_are_the_last_whole_ones() {
        // Thursday 2026-12-03 05:30 UTC.
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 5, 30, 0).unwrap();
        let t = |y, m, d| Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap();
        let utc = chrono_tz::UTC;
        assert_eq!(Every::Daily.last_period(now, utc), (t(2026, 12, 2), t(2026, 12, 3)));
        assert_eq!(Every::Weekly.last_period(now, utc), (t(2026, 11, 23), t(2026, 11, 30)));
        assert_eq!(Every::Monthly.last_period(now, utc), (t(2026, 11, 1), t(2026, 12, 1)));
        let jan = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(Every::Monthly.last_period(jan, utc), (t(2026, 12, 1), t(2027, 1, 1)));
    }

    #[test]
    fn periods_in_a_zone_begin_at_its_midnight() {
        let h = |y, m, d, hh| Utc.with_ymd_and_hms(y, m, d, hh, 0, 0).unwrap();
        // 05:30 UTC Thursday 2026-12-03 is 13:30 in Shanghai (UTC+8): yesterday there is
        // 2026-12-02, from 16:00 UTC the day before.
        let shanghai: Tz = "Asia/Shanghai".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 5, 30, 0).unwrap();
        assert_eq!(Every::Daily.last_period(now, shanghai), (h(2026, 12, 1, 16), h(2026, 12, 2, 16)));
        assert_eq!(Every::Weekly.last_period(now, shanghai), (h(2026, 11, 22, 16), h(2026, 11, 29, 16)));
        // 03:00 UTC on 2026-12-01 is still November 30 in New York (UTC-5): last month there
        // is October, ending at New York's midnight of November 1 (UTC-4, summer time).
        let ny: Tz = "America/New_York".parse().unwrap();
        let early = Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap();
        assert_eq!(Every::Monthly.last_period(early, ny), (h(2026, 10, 1, 4), h(2026, 11, 1, 4)));
        assert_eq!(Every::Daily.last_period(early, ny), (h(2026, 11, 29, 5), h(2026, 11, 30, 5)));
    }

    #[test]
    fn names_are_checked() {
        let s = |name: &str, tz: Option<&str>| Schedule {
            name: name.into(),
            every: Every::Weekly,
            timezone: tz.map(str::to_string),
        };
        assert!(s("weekly-ops", None).validate().is_ok());
        assert!(s("weekly-ops", Some("Europe/Berlin")).validate().is_ok());
        assert!(s("weekly-ops", Some("Berlin")).validate().unwrap_err().contains("IANA"));
        assert!(s("", None).validate().is_err());
        assert!(s("a/b", None).validate().is_err());
    }
}

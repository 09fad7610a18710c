//! Budget windows in a time zone: which window "now" falls in (its key) and when it resets.
//! The clock is injectable so rollover can be tested without waiting a day.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Budget window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Daily,
    Weekly,
    Monthly,
}

impl Window {
    /// Stable name, also the word OpenClaw recognises in "<window> limit reached".
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Daily => "daily",
            Window::Weekly => "weekly",
            Window::Monthly => "monthly",
        }
    }
}

/// The source of "now".
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// Wall-clock time.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// First day of the window containing `date` (also the reports' periods in a zone).
pub fn window_start(w: Window, date: NaiveDate) -> NaiveDate {
    match w {
        Window::Daily => date,
        Window::Weekly => date - Duration::days(date.weekday().num_days_from_monday() as i64),
        Window::Monthly => date.with_day(1).unwrap_or(date),
    }
}

/// First day of the next window.
fn next_start(w: Window, start: NaiveDate) -> NaiveDate {
    match w {
        Window::Daily => start + Duration::days(1),
        Window::Weekly => start + Duration::days(7),
        Window::Monthly => {
            let (y, m) = if start.month() == 12 { (start.year() + 1, 1) } else { (start.year(), start.month() + 1) };
            NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(start + Duration::days(31))
        }
    }
}

/// Local midnight of `d` in `tz` as UTC (the earliest instant if DST makes it ambiguous, the
/// first valid instant after it if midnight does not exist that day).
pub fn midnight_utc(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let naive = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    match tz.from_local_datetime(&naive).earliest() {
        Some(t) => t.with_timezone(&Utc),
        None => {
            let later = naive + Duration::hours(1);
            tz.from_local_datetime(&later)
                .earliest()
                .map_or_else(|| Utc.from_utc_datetime(&naive), |t| t.with_timezone(&Utc))
        }
    }
}

/// The window `now` falls in: a stable key (e.g. `2026-11-23`, `2026-W48`, `2026-11`) and
/// the instant it ends.
pub fn current(w: Window, tz: Tz, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
    let local = now.with_timezone(&tz).date_naive();
    let start = window_start(w, local);
    let key = match w {
        Window::Daily => start.format("%Y-%m-%d").to_string(),
        Window::Weekly => {
            let iso = start.iso_week();
            format!("{}-W{:02}", iso.year(), iso.week())
        }
        Window::Monthly => start.format("%Y-%m").to_string(),
    };
    (key, midnight_utc(tz, next_start(w, start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_weekly_monthly_keys_and_resets_in_utc() {
        let now = at("2026-11-23T18:30:00Z"); // a Monday
        assert_eq!(current(Window::Daily, Tz::UTC, now), ("2026-11-23".into(), at("2026-11-24T00:00:00Z")));
        assert_eq!(current(Window::Weekly, Tz::UTC, now), ("2026-W48".into(), at("2026-11-30T00:00:00Z")));
        assert_eq!(current(Window::Monthly, Tz::UTC, now), ("2026-11".into(), at("2026-12-01T00:00:00Z")));
        assert_eq!(current(Window::Monthly, Tz::UTC, at("2026-12-31T23:59:59Z")).1, at("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn time_zones_shift_the_boundary() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        // 18:30 UTC is already the next day in Shanghai (UTC+8).
        let (key, reset) = current(Window::Daily, tz, at("2026-11-23T18:30:00Z"));
        assert_eq!(key, "2026-11-24");
        assert_eq!(reset, at("2026-11-24T16:00:00Z"));
    }
}

//! A report's time zone: its days and a schedule's periods begin at local midnight there
//! (IANA names, e.g. `Asia/Shanghai`; default `UTC`). The cost figures are kept per UTC hour,
//! so a report's bounds stay whole UTC hours: a zone is accepted for a report only when its
//! offset is a whole number of hours at every hour of the period (a half-hour zone such as
//! `Asia/Kolkata` would cut days inside an hour: refused, never rounded silently).

use chrono::{DateTime, Duration, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use governance::budget::window::midnight_utc;

use crate::ReportsError;

/// The zone named `name`, or a 400 naming it.
pub fn parse(name: &str) -> Result<Tz, ReportsError> {
    name.parse::<Tz>().map_err(|_| {
        ReportsError::BadRequest(format!("timezone must be an IANA time zone name (e.g. Europe/Berlin), not {name:?}"))
    })
}

/// Refuse a zone whose offset is not a whole number of hours somewhere in `[since, until)`.
pub fn check_whole_hours(tz: Tz, since: DateTime<Utc>, until: DateTime<Utc>) -> Result<(), ReportsError> {
    let mut t = since;
    while t < until {
        let off = tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc();
        if off % 3600 != 0 {
            return Err(ReportsError::BadRequest(format!(
                "{tz} is UTC{:+03}:{:02} at {}: the cost figures are kept per UTC hour, so a report's days \
                 can only begin on a whole hour; use a zone with a whole-hour offset or UTC",
                off / 3600,
                (off % 3600).abs() / 60,
                crate::ts(t)
            )));
        }
        t += Duration::hours(1);
    }
    Ok(())
}

/// `v` as an instant: a plain date (`2026-12-01`) is local midnight in `tz`; anything else as
/// the cost API reads it (RFC 3339, a duration back from `now`).
pub fn parse_time(v: &str, now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        Ok(d) => Some(midnight_utc(tz, d)),
        Err(_) => cost::query::parse_time(v, now),
    }
}

/// The local days `[since, until)` touches, each as (its date, its start, its end), clipped to
/// the period.
pub fn days(tz: Tz, since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<(NaiveDate, DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut day = since.with_timezone(&tz).date_naive();
    let mut start = since;
    while start < until {
        let next = day.succ_opt().unwrap_or(day);
        let end = midnight_utc(tz, next).min(until);
        if end <= start {
            break;
        }
        out.push((day, start, end));
        (day, start) = (next, end);
    }
    out
}

/// A UTC instant as local time with its offset (`2026-12-01T08:00:00+08:00`).
pub fn local(tz: Tz, t: DateTime<Utc>) -> String {
    t.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn days_begin_at_local_midnight_across_a_dst_change() {
        let berlin = parse("Europe/Berlin").unwrap();
        // Europe/Berlin leaves summer time on 2026-10-25 (a 25-hour day).
        let d = days(berlin, at("2026-10-23T22:00:00Z"), at("2026-10-26T23:00:00Z"));
        let got: Vec<(String, String, String)> =
            d.iter().map(|(d, s, e)| (d.to_string(), crate::ts(*s), crate::ts(*e))).collect();
        assert_eq!(
            got,
            [
                ("2026-10-24".into(), "2026-10-23T22:00:00Z".into(), "2026-10-24T22:00:00Z".into()),
                ("2026-10-25".into(), "2026-10-24T22:00:00Z".into(), "2026-10-25T23:00:00Z".into()),
                ("2026-10-26".into(), "2026-10-25T23:00:00Z".into(), "2026-10-26T23:00:00Z".into()),
            ]
        );
        assert_eq!(
            parse_time("2026-12-01", at("2026-12-03T00:00:00Z"), parse("Asia/Shanghai").unwrap()),
            Some(at("2026-11-30T16:00:00Z"))
        );
        assert_eq!(local(parse("Asia/Shanghai").unwrap(), at("2026-11-30T16:00:00Z")), "2026-12-01T00:00:00+08:00");
    }

    #[test]
    fn unknown_and_half_hour_zones_are_refused() {
        assert!(matches!(parse("Mars/Olympus"), Err(ReportsError::BadRequest(m)) if m.contains("Mars/Olympus")));
        let kolkata = parse("Asia/Kolkata").unwrap();
        let e = check_whole_hours(kolkata, at("2026-12-01T00:00:00Z"), at("2026-12-02T00:00:00Z")).unwrap_err();
        assert!(e.to_string().contains("UTC+05:30"), "{e}");
        assert!(check_whole_hours(
            parse("America/New_York").unwrap(),
            at("2026-03-01T00:00:00Z"),
            at("2026-04-01T00:00:00Z")
        )
        .is_ok());
    }
}

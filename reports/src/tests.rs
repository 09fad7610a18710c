//! Reports over a real audit log and cost store in a temp dir, with an injectable clock:
//! figures equal the cost queries', approvals' waiting times and denials come from the log,
//! links work once and expire, a report cut by a restart is failed and retried, schedules make
//! one report per period.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use audit::{AuditEvent, AuditRecord, Outcome, RecordKind};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;

use super::*;

struct Fixture {
    reports: Arc<Reports>,
    cost: Arc<cost::Cost>,
    audit: Arc<audit::AuditLog>,
    clock: Arc<AtomicI64>,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

use tokio::sync::watch;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(s, 0).single().unwrap()
}

async fn fixture(schedules: Vec<Schedule>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = storage::Store::open(&dir.path().join("state")).unwrap();
    let reg = prometheus::Registry::new();
    let audit = Arc::new(audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &reg).unwrap());
    let clock = Arc::new(AtomicI64::new(Utc::now().timestamp()));
    let c2 = clock.clone();
    let cost = Arc::new(
        cost::Cost::open(&db, audit.clone(), Default::default(), Arc::new(move || at(c2.load(Ordering::SeqCst))), &reg)
            .unwrap(),
    );
    let (tx, rx) = watch::channel(false);
    let parts =
        Parts { db, audit: audit.clone(), cost: cost.clone(), agents: None, data_dir: dir.path().to_path_buf() };
    let settings = ReportSettings { link_ttl_s: 60, ..Default::default() };
    let (reports, _tasks) = Reports::start(parts, settings, schedules, rx).unwrap();
    Fixture { reports, cost, audit, clock, _shutdown: tx, _dir: dir }
}

/// Calls over three days, three agents, two models (backfilled: the log cannot be written in
/// the past).
fn history(f: &Fixture, end: i64) {
    let mut recs = Vec::new();
    for h in 0..72 {
        for (i, agent) in ["main", "ops", "=cmd"].iter().enumerate() {
            let t = at(end - 3600 * (h + 1) + 60 * i as i64);
            recs.push(AuditRecord {
                ts: t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                kind: Some(RecordKind::ModelCall),
                agent: Some(agent.to_string()),
                subject: json!({"model": if h % 2 == 0 { "m-a" } else { "m-b" }, "upstream": "up"}),
                usage: Some(audit::Usage { input_tokens: 100 + h as u64, output_tokens: 7, ..Default::default() }),
                cost_usd: Some(0.000_123_457 * (i + 1) as f64 + h as f64 * 1e-6),
                outcome: Some("completed".into()),
                ..Default::default()
            });
        }
    }
    f.cost.backfill(&recs).unwrap();
}

async fn wait_status(f: &Fixture, id: &str, want: Status) -> Report {
    for _ in 0..400 {
        let r = f.reports.get(id).unwrap().unwrap();
        if r.status == want {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("report {id} never {want:?}: {:?}", f.reports.get(id).unwrap());
}

fn csv_rows(bytes: &[u8]) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(bytes).records().map(|r| r.unwrap()).collect()
}

/// Sum of `cost_usd` of one section, in nano-dollars, and its keys.
fn section(rows: &[csv::StringRecord], name: &str) -> (u64, Vec<String>) {
    let nano = |s: &str| {
        let (a, b) = s.split_once('.').unwrap();
        a.parse::<u64>().unwrap() * 1_000_000_000 + b.parse::<u64>().unwrap()
    };
    let mine: Vec<_> = rows.iter().filter(|r| &r[0] == name).collect();
    (mine.iter().map(|r| nano(&r[8])).sum(), mine.iter().map(|r| r[1].to_string()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_equal_the_cost_queries_and_governance_comes_from_the_log() {
    let f = fixture(Vec::new()).await;
    let end = f.clock.load(Ordering::SeqCst) / 3600 * 3600;
    history(&f, end);
    // An approval that waited 90 s, one that expired after 300 s, a denial, a budget event.
    for (outcome, wait) in [(Outcome::Allowed, 90), (Outcome::Expired, 300)] {
        let created = at(end - 600);
        let a = json!({"created_at": created.to_rfc3339(), "decided_at": (created + chrono::Duration::seconds(wait)).to_rfc3339()});
        f.audit
            .append(AuditEvent {
                outcome: Some(outcome),
                details: json!({"event": "approval.decided", "approval": a}),
                ..AuditEvent::new(RecordKind::Approval)
            })
            .unwrap();
    }
    f.audit
        .append(AuditEvent {
            agent: Some("ops".into()),
            action: Some(decision::Action::Deny),
            rule: Some("no_rm_rf".into()),
            outcome: Some(Outcome::Denied),
            ..AuditEvent::new(RecordKind::Exec)
        })
        .unwrap();
    f.audit.flush().unwrap();
    let now = f.clock.load(Ordering::SeqCst);
    let r = f.reports.create(at(end - 48 * 3600), at(now), "tester", None, chrono_tz::UTC).unwrap();
    let r = wait_status(&f, &r.id, Status::Done).await;
    assert_eq!(r.attempts, 1);

    let q = |by| cost::Query {
        by,
        split: None,
        since: at(end - 48 * 3600),
        until: at(now),
        agent: None,
        model: None,
        limit: 1000,
    };
    let link = f.reports.link(&r.id, Format::Csv, None).unwrap();
    let token = link.url.rsplit('/').next().unwrap().to_string();
    let csv = f.reports.download(&token).unwrap().bytes;
    let rows = csv_rows(&csv);
    for (by, name) in [(cost::GroupBy::Agent, "agent"), (cost::GroupBy::Model, "model"), (cost::GroupBy::Day, "day")] {
        let api = f.cost.query(&q(by)).unwrap();
        let (sum, keys) = section(&rows, name);
        assert_eq!(sum, api.totals.cost_nano, "{name}");
        assert_eq!(keys.len(), api.rows.len(), "{name}");
    }
    assert!(section(&rows, "total").0 > 0);
    // A name a spreadsheet would run as a formula is written as text.
    assert!(section(&rows, "agent").1.contains(&"'=cmd".to_string()), "{rows:?}");
    let find = |s: &str, k: &str| rows.iter().find(|r| &r[0] == s && &r[1] == k).unwrap().clone();
    assert_eq!(&find("approvals", "allowed")[9], "1");
    assert_eq!(&find("approvals", "wait_max_s")[10], "300");
    assert_eq!(&find("approvals", "wait_median_s")[10], "90");
    assert_eq!(&find("denials", "no_rm_rf")[11], "ops=1");

    // The link worked once.
    assert!(matches!(f.reports.download(&token), Err(ReportsError::Link(notifier::LinkError::Used))));
    // A link expires.
    let pdf = f.reports.link(&r.id, Format::Pdf, Some(5)).unwrap();
    let pdf_token = pdf.url.rsplit('/').next().unwrap().to_string();
    f.clock.fetch_add(6, Ordering::SeqCst);
    assert!(matches!(f.reports.download(&pdf_token), Err(ReportsError::Link(notifier::LinkError::Expired))));
    let pdf = f.reports.link(&r.id, Format::Pdf, None).unwrap();
    let bytes = f.reports.download(pdf.url.rsplit('/').next().unwrap()).unwrap().bytes;
    assert!(bytes.starts_with(b"%PDF-"), "not a PDF");
    assert!(matches!(f.reports.link(&r.id, Format::Pdf, Some(61)), Err(ReportsError::BadRequest(_))));
    assert!(matches!(f.reports.download("forged"), Err(ReportsError::Link(notifier::LinkError::Invalid))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_cut_by_a_restart_fails_and_a_retry_makes_it() {
    let f = fixture(Vec::new()).await;
    let now = f.clock.load(Ordering::SeqCst);
    let r = f.reports.create(at(now - 3600), at(now), "tester", None, chrono_tz::UTC).unwrap();
    wait_status(&f, &r.id, Status::Done).await;
    // As if the sidecar stopped mid-generation.
    f.reports
        .update(&r.id, |r| {
            r.status = Status::Running;
            Ok(true)
        })
        .unwrap();
    assert!(matches!(f.reports.retry(&r.id), Err(ReportsError::Conflict(_))));
    f.reports.recover().unwrap();
    let failed = f.reports.get(&r.id).unwrap().unwrap();
    assert_eq!(failed.status, Status::Failed);
    assert!(failed.error.unwrap().contains("restart"));
    assert!(matches!(f.reports.link(&r.id, Format::Csv, None), Err(ReportsError::Conflict(_))));
    f.reports.retry(&r.id).unwrap();
    let done = wait_status(&f, &r.id, Status::Done).await;
    assert_eq!(done.attempts, 2);
    assert!(done.error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_makes_one_report_per_period() {
    let f = fixture(vec![Schedule { name: "daily-cost".into(), every: Every::Daily, timezone: None }]).await;
    f.reports.add_schedule(Schedule { name: "monthly".into(), every: Every::Monthly, timezone: None }).unwrap();
    assert!(matches!(
        f.reports.add_schedule(Schedule { name: "daily-cost".into(), every: Every::Weekly, timezone: None }),
        Err(ReportsError::Conflict(_))
    ));
    assert!(matches!(f.reports.remove_schedule("daily-cost"), Err(ReportsError::Conflict(_))));
    // The scheduler's first pass may have run already; later passes add nothing new.
    f.reports.run_schedules().unwrap();
    let (list, _) = f.reports.list(100, None).unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(f.reports.run_schedules().unwrap(), 0);
    let daily = list.iter().find(|r| r.schedule.as_deref() == Some("daily-cost")).unwrap();
    let now = at(f.clock.load(Ordering::SeqCst));
    let (since, until) = Every::Daily.last_period(now, chrono_tz::UTC);
    assert_eq!((daily.since.as_str(), daily.until.as_str()), (ts(since).as_str(), ts(until).as_str()));
    // A day later, one more daily report (made by this pass or by the scheduler's, if its
    // first pass only ran now: either way listed once a pass returns).
    f.clock.fetch_add(86_400, Ordering::SeqCst);
    f.reports.run_schedules().unwrap();
    let (list, _) = f.reports.list(100, None).unwrap();
    let dailies = list.iter().filter(|r| r.schedule.as_deref() == Some("daily-cost")).count();
    assert_eq!(dailies, 2, "{list:?}");
    assert_eq!(f.reports.run_schedules().unwrap(), 0);
}

/// Passes at once (the scheduler's and ones asked for): each returns only when every ended
/// period's report is listed, and each period is made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_returns_only_when_every_ended_period_is_listed() {
    for _ in 0..10 {
        let f = fixture(Vec::new()).await;
        for (name, every) in [("d", Every::Daily), ("w", Every::Weekly), ("m", Every::Monthly)] {
            f.reports.add_schedule(Schedule { name: name.into(), every, timezone: None }).unwrap();
        }
        let passes: Vec<_> = (0..4)
            .map(|_| {
                let r = f.reports.clone();
                std::thread::spawn(move || {
                    r.run_schedules().unwrap();
                    r.list(100, None).unwrap().0.len()
                })
            })
            .collect();
        for p in passes {
            assert_eq!(p.join().unwrap(), 3);
        }
        assert_eq!(f.reports.list(100, None).unwrap().0.len(), 3);
    }
}

/// A report in a zone: its days begin at local midnight (Asia/Shanghai, UTC+8: 16:00 UTC), each
/// day's row is the cost query's for exactly those hours, and the header names the zone; a
/// scheduled report in the zone covers yesterday there. A half-hour zone is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_in_a_zone_cuts_days_at_its_midnight() {
    let f = fixture(Vec::new()).await;
    // Now: 2026-12-03 05:30 UTC, 13:30 in Shanghai; calls every hour for three days before.
    let now = Utc.with_ymd_and_hms(2026, 12, 3, 5, 30, 0).unwrap().timestamp();
    f.clock.store(now, Ordering::SeqCst);
    let end = now / 3600 * 3600;
    history(&f, end);
    let shanghai = zone::parse("Asia/Shanghai").unwrap();
    let since = zone::parse_time("2026-12-01", at(now), shanghai).unwrap();
    assert_eq!(since, Utc.with_ymd_and_hms(2026, 11, 30, 16, 0, 0).unwrap());
    let r = f.reports.create(since, at(end), "tester", None, shanghai).unwrap();
    assert_eq!(r.timezone, "Asia/Shanghai");
    let r = wait_status(&f, &r.id, Status::Done).await;
    let token = f.reports.link(&r.id, Format::Csv, None).unwrap().url.rsplit('/').next().unwrap().to_string();
    let rows = csv_rows(&f.reports.download(&token).unwrap().bytes);
    let find = |s: &str, k: &str| rows.iter().find(|r| &r[0] == s && &r[1] == k).unwrap().clone();
    assert_eq!(&find("period", "timezone")[11], "Asia/Shanghai");
    assert_eq!(&find("period", "since")[11], "2026-12-01T00:00:00+08:00");
    assert_eq!(&find("period", "until")[11], "2026-12-03T13:00:00+08:00");
    let days: Vec<String> = rows.iter().filter(|r| &r[0] == "day").map(|r| r[1].to_string()).collect();
    assert_eq!(days, ["2026-12-01", "2026-12-02", "2026-12-03"]);
    // Each local day equals the cost query over its own UTC hours: 2026-12-01 is
    // 2026-11-30T16:00Z to 2026-12-01T16:00Z.
    let h = |d, hh| Utc.with_ymd_and_hms(2026, 12, d, hh, 0, 0).unwrap();
    let bounds = [(since, h(1, 16)), (h(1, 16), h(2, 16)), (h(2, 16), at(end))];
    for (day, (from, to)) in days.iter().zip(bounds) {
        let q = cost::Query {
            by: cost::GroupBy::Day,
            split: None,
            since: from,
            until: to,
            agent: None,
            model: None,
            limit: 10,
        };
        let want = f.cost.query(&q).unwrap().totals;
        let row = find("day", day);
        assert_eq!(row[3].parse::<u64>().unwrap(), want.calls, "{day}");
        assert_eq!(section(std::slice::from_ref(&row), "day").0, want.cost_nano, "{day}");
    }
    // 2026-12-01 in Shanghai holds 24 hours of three agents' calls.
    assert_eq!(&find("day", "2026-12-01")[3], "72");
    let pdf = f.reports.link(&r.id, Format::Pdf, None).unwrap();
    let bytes = f.reports.download(pdf.url.rsplit('/').next().unwrap()).unwrap().bytes;
    assert!(bytes.windows(13).any(|w| w == b"Asia/Shanghai"), "the PDF names the zone");

    // A schedule in the zone: yesterday there.
    f.reports
        .add_schedule(Schedule { name: "daily-sh".into(), every: Every::Daily, timezone: Some("Asia/Shanghai".into()) })
        .unwrap();
    f.reports.run_schedules().unwrap();
    let (list, _) = f.reports.list(100, None).unwrap();
    let daily = list.iter().find(|r| r.schedule.as_deref() == Some("daily-sh")).unwrap();
    assert_eq!(
        (daily.since.as_str(), daily.until.as_str(), daily.timezone.as_str()),
        ("2026-12-01T16:00:00Z", "2026-12-02T16:00:00Z", "Asia/Shanghai")
    );
    // Half-hour zones cannot be cut on the hourly figures.
    let kolkata = zone::parse("Asia/Kolkata").unwrap();
    assert!(matches!(f.reports.create(since, at(end), "tester", None, kolkata), Err(ReportsError::BadRequest(_))));
}

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};

use super::*;

struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.0.load(Ordering::SeqCst), 0).single().unwrap_or_default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: storage::Store,
    audit: Arc<audit::AuditLog>,
    clock: Arc<ManualClock>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = storage::Store::open(&dir.path().join("state")).unwrap();
    let audit = Arc::new(
        audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &prometheus::Registry::new())
            .unwrap(),
    );
    // 2026-11-23T12:00:00Z
    let clock = Arc::new(ManualClock(AtomicI64::new(1_795_435_200)));
    Fixture { _dir: dir, db, audit, clock }
}

fn budgets(f: &Fixture, cfg: &[BudgetConfig]) -> Arc<Budgets> {
    Arc::new(
        Budgets::open_with_clock(&f.db, cfg, f.audit.clone(), &prometheus::Registry::new(), f.clock.clone()).unwrap(),
    )
}

fn daily(scope: &str, limit: f64) -> BudgetConfig {
    BudgetConfig {
        id: None,
        scope: scope.into(),
        window: Window::Daily,
        limit_usd: limit,
        warn_at: None,
        timezone: None,
        fleet: false,
    }
}

const MAIN: CallScope<'static> = CallScope { agent: "main", model: "gpt-4o-mini", upstream: "openai", mcp_server: "" };

#[test]
fn reservations_never_overshoot_under_concurrency() {
    let f = fixture();
    let b = budgets(&f, &[daily("agent:main", 1.0)]);
    // 1,000 threads each try to reserve $0.01: exactly 100 fit.
    let handles: Vec<_> = (0..1000)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || b.reserve(&MAIN, 0.01).ok())
        })
        .collect();
    let held: Vec<Reservation> = handles.into_iter().filter_map(|h| h.join().unwrap()).collect();
    assert_eq!(held.len(), 100);
    for r in held {
        r.settle(Charge::Usd(0.01));
    }
    let v = b.get("agent:main@daily").unwrap();
    assert!((v.spent_usd - 1.0).abs() < 1e-9, "{v:?}");
    assert!(v.open);
    let r = b.check_open(&MAIN).unwrap();
    assert!(r.message().contains("daily limit reached for agent:main"), "{}", r.message());
    assert_eq!(r.retry_after_s, 12 * 3600);
}

#[test]
fn settle_charges_the_real_cost_even_above_the_reservation_and_drop_charges_all() {
    let f = fixture();
    let b = budgets(&f, &[daily("global", 10.0)]);
    assert_eq!(b.reserve(&MAIN, 1.0).unwrap().settle(Charge::Usd(0.25)), 0.25);
    // The estimate was short: the real cost is charged all the same.
    assert_eq!(b.reserve(&MAIN, 1.0).unwrap().settle(Charge::Usd(5.0)), 5.0);
    assert_eq!(b.reserve(&MAIN, 1.0).unwrap().settle(Charge::Reserved), 1.0); // unknown cost
    drop(b.reserve(&MAIN, 0.5).unwrap());
    let v = b.get("global@daily").unwrap();
    assert!((v.spent_usd - 6.75).abs() < 1e-9, "{v:?}");
    assert_eq!(v.reserved_usd, 0.0);
}

#[test]
fn an_under_estimated_call_opens_the_breaker_on_its_real_cost() {
    // The reproduction of issue 12: calls reserved at $0.00002 each that really cost $1.50
    // ("n": 100) against a $0.01 budget. The first one opens the breaker.
    let f = fixture();
    let b = budgets(&f, &[daily("agent:main", 0.01)]);
    let r = b.reserve(&MAIN, 0.000_02).unwrap();
    assert_eq!(r.settle(Charge::Usd(1.5)), 1.5);
    let v = b.get("agent:main@daily").unwrap();
    assert!(v.open && (v.spent_usd - 1.5).abs() < 1e-9, "{v:?}");
    assert!(b.check_open(&MAIN).is_some());
    assert!(b.reserve(&MAIN, 0.000_02).is_err());
}

#[test]
fn a_call_that_does_not_fit_is_refused_with_what_it_needed() {
    let f = fixture();
    let b = budgets(&f, &[daily("model:gpt-4o-mini", 1.0), daily("upstream:other", 0.0)]);
    let _held = b.reserve(&MAIN, 0.9).unwrap();
    let r = b.reserve(&MAIN, 0.2).unwrap_err();
    assert_eq!(r.needed_usd, Some(0.2));
    assert!(r.message().contains("daily limit reached for model:gpt-4o-mini"));
    // A budget of another scope does not apply.
    assert!(b.check_open(&MAIN).is_none());
}

#[test]
fn spend_survives_restart_and_window_rollover_resets() {
    let f = fixture();
    {
        let b = budgets(&f, &[daily("agent:main", 1.0)]);
        b.reserve(&MAIN, 1.0).unwrap().settle(Charge::Usd(1.0));
        assert!(b.check_open(&MAIN).is_some());
    }
    f.db.flush().unwrap();
    let b = budgets(&f, &[daily("agent:main", 1.0)]);
    assert!(b.check_open(&MAIN).is_some(), "spend lost across restart");
    assert!((b.get("agent:main@daily").unwrap().spent_usd - 1.0).abs() < 1e-9);
    // Next day: the breaker closes by itself.
    f.clock.0.fetch_add(13 * 3600, Ordering::SeqCst);
    assert!(b.check_open(&MAIN).is_none());
    let v = b.get("agent:main@daily").unwrap();
    assert_eq!(v.spent_usd, 0.0);
    assert_eq!(v.window_key, "2026-11-24");
}

#[test]
fn manual_reset_closes_the_breaker_and_is_audited() {
    let f = fixture();
    let b = budgets(&f, &[daily("agent:main", 0.5)]);
    b.reserve(&MAIN, 0.5).unwrap().settle(Charge::Usd(0.5));
    assert!(b.check_open(&MAIN).is_some());
    b.reset("agent:main@daily", "raised by ops", "alice").unwrap();
    assert!(b.check_open(&MAIN).is_none());
    f.audit.flush().unwrap();
    let page =
        f.audit.search(&audit::AuditQuery { kind: Some(audit::RecordKind::Budget), ..Default::default() }).unwrap();
    let outcomes: Vec<_> = page.items.iter().filter_map(|r| r.outcome.clone()).collect();
    assert!(outcomes.contains(&"reset".to_string()), "{outcomes:?}");
    assert!(outcomes.contains(&"open".to_string()), "{outcomes:?}");
    assert!(outcomes.contains(&"warn".to_string()), "{outcomes:?}");
}

#[test]
fn api_budgets_persist_and_config_budgets_are_read_only() {
    let f = fixture();
    {
        let b = budgets(&f, &[daily("global", 5.0)]);
        b.upsert(daily("agent:ops", 2.0), "admin").unwrap();
        assert!(matches!(b.upsert(daily("global", 9.0), "admin"), Err(BudgetError::ConfigManaged(_))));
        assert!(matches!(b.delete("global@daily", "admin"), Err(BudgetError::ConfigManaged(_))));
    }
    let b = budgets(&f, &[daily("global", 5.0)]);
    assert_eq!(b.get("agent:ops@daily").unwrap().limit_usd, 2.0);
    b.delete("agent:ops@daily", "admin").unwrap();
    assert!(b.get("agent:ops@daily").is_none());
}

#[test]
fn bad_definitions_name_the_budget() {
    let f = fixture();
    let e = Budgets::open(&f.db, &[daily("team:x", 1.0)], f.audit.clone(), &prometheus::Registry::new())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("team:x@daily") && e.contains("scope"), "{e}");
}

#[test]
fn mcp_server_budgets_cover_only_that_servers_tool_calls() {
    let f = fixture();
    let b = budgets(&f, &[daily("mcp:search", 1.0), daily("agent:main", 10.0)]);
    let search = CallScope::tool("main", "search");
    let other = CallScope::tool("main", "files");
    // A tool call of the server is charged to its own budget and to the agent's.
    b.reserve(&search, 1.0).unwrap().settle(Charge::Usd(1.0));
    assert!(b.check_open(&search).is_some_and(|r| r.budget_id == "mcp:search@daily"));
    assert!(b.reserve(&search, 0.01).is_err());
    // Another server's tools and the agent's model calls are not under it.
    assert!(b.check_open(&other).is_none());
    assert!(b.check_open(&MAIN).is_none());
    assert!((b.get("agent:main@daily").unwrap().spent_usd - 1.0).abs() < 1e-9);
    assert_eq!(b.snapshot(&other).len(), 1, "only the agent budget applies to another server");
}

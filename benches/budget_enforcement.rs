//! Budget enforcement cost per call: the breaker check, the policy-input snapshot, the
//! reservation against every applicable budget and the settle with the real cost, with four
//! budgets applying (global, agent, model, upstream). Criterion reports the mean; a plain loop
//! afterwards prints p50/p99 (target: <= 20 us p99 added to a call).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, Criterion};
use governance::budget::{BudgetConfig, Budgets, CallScope, Window};

fn budgets() -> (tempfile::TempDir, Arc<Budgets>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = storage::Store::open(&dir.path().join("state")).expect("store");
    let reg = prometheus::Registry::new();
    let audit =
        Arc::new(audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &reg).expect("audit"));
    let cfg: Vec<BudgetConfig> = ["global", "agent:main", "model:gpt-4o-mini", "upstream:openai"]
        .iter()
        .map(|s| BudgetConfig {
            id: None,
            scope: s.to_string(),
            window: Window::Daily,
            limit_usd: 1e9,
            warn_at: Some(1.0),
            timezone: None,
            fleet: false,
        })
        .collect();
    let b = Arc::new(Budgets::open(&db, &cfg, audit, &reg).expect("budgets"));
    (dir, b)
}

const CALL: CallScope<'static> = CallScope { agent: "main", model: "gpt-4o-mini", upstream: "openai", mcp_server: "" };

fn one(b: &Arc<Budgets>) {
    assert!(b.check_open(&CALL).is_none());
    let snap = b.snapshot(&CALL);
    assert_eq!(snap.len(), 4);
    let r = b.reserve(&CALL, 0.01).expect("fits");
    r.settle(governance::budget::Charge::Usd(0.004));
}

fn bench(c: &mut Criterion) {
    let (_dir, b) = budgets();
    c.bench_function("budget_check_snapshot_reserve_settle_4_budgets", |bn| bn.iter(|| one(&b)));
}

criterion_group!(benches, bench);

fn main() {
    benches();
    let (_dir, b) = budgets();
    for _ in 0..10_000 {
        one(&b);
    }
    let mut lat: Vec<u128> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            one(&b);
            t.elapsed().as_nanos()
        })
        .collect();
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "budget enforcement per call (4 budgets): p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us",
        p(0.5),
        p(0.99),
        p(0.999)
    );
    Criterion::default().configure_from_args().final_summary();
}

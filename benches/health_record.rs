//! The data path's cost of feeding agent health: `HealthTracker::record_call` once per
//! forwarded call (a sharded-map read and one compare-and-swap; a lock only when the state
//! changes). Measured alone and with two threads recording for the same agent at once (the
//! contended case), with a mix of 1 failure in 10 so the state never changes. Criterion
//! reports the mean; plain loops afterwards print p50/p99 per call.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failed setup panics

use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, Criterion};
use governance::health::{CallFailure, HealthTracker};

fn tracker() -> (tempfile::TempDir, Arc<HealthTracker>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = storage::Store::open(&dir.path().join("state")).expect("store");
    let reg = prometheus::Registry::new();
    let audit =
        Arc::new(audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &reg).expect("audit"));
    (dir, Arc::new(HealthTracker::new(audit, &reg).expect("tracker")))
}

fn one(t: &HealthTracker, i: u64) {
    let r = if i.is_multiple_of(10) { Err(CallFailure::Status(503)) } else { Ok(()) };
    t.record_call("main", "openai", r);
}

fn bench(c: &mut Criterion) {
    let (_dir, t) = tracker();
    let mut i = 0u64;
    c.bench_function("health_record_call", |b| {
        b.iter(|| {
            i += 1;
            one(&t, i)
        })
    });
}

criterion_group!(benches, bench);

fn percentiles(label: &str, mut lat: Vec<u128>) {
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    println!("{label}: p50 {} ns, p99 {} ns, p99.9 {} ns", p(0.5), p(0.99), p(0.999));
}

fn main() {
    benches();
    let (_dir, t) = tracker();
    let sample = |t: &HealthTracker| -> Vec<u128> {
        (0..200_000u64)
            .map(|i| {
                let s = Instant::now();
                one(t, i);
                s.elapsed().as_nanos()
            })
            .collect()
    };
    percentiles("record_call, one thread", sample(&t));
    let other = {
        let t = t.clone();
        std::thread::spawn(move || sample(&t))
    };
    let mine = sample(&t);
    let theirs = other.join().unwrap();
    percentiles("record_call, two threads on one agent", mine.into_iter().chain(theirs).collect());
    Criterion::default().configure_from_args().final_summary();
}

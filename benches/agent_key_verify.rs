//! Per-agent key check cost per data-path call (`AgentKeys::verify`: salted SHA-256 of the
//! presented key against the agent's keys, no I/O), with 3 keys on the agent and 100 agents in
//! the store. Criterion reports the mean; a plain loop prints p50/p99 (target: well under the
//! 0.3 ms p50 the whole data path may add).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

use std::time::Instant;

use criterion::{criterion_group, Criterion};
use governance::agent_keys::Verdict;
use governance::AgentKeys;

fn keys() -> (tempfile::TempDir, AgentKeys, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = storage::Store::open(&dir.path().join("state")).expect("store");
    let keys = AgentKeys::open(&db).expect("keys");
    for i in 0..100 {
        keys.create(&format!("agent-{i}"), None, "bench").expect("create");
    }
    keys.create("main", None, "bench").expect("create");
    keys.create("main", None, "bench").expect("create");
    let (secret, _) = keys.create("main", None, "bench").expect("create");
    (dir, keys, secret)
}

fn bench(c: &mut Criterion) {
    let (_dir, k, secret) = keys();
    c.bench_function("agent_key_verify_valid_third_of_3", |b| {
        b.iter(|| assert!(matches!(k.verify("main", &secret), Verdict::Valid(_))))
    });
    let wrong = format!("cbk_{}", "0".repeat(64));
    c.bench_function("agent_key_verify_wrong_3", |b| {
        b.iter(|| assert_eq!(k.verify("main", &wrong), Verdict::Mismatch))
    });
}

criterion_group!(benches, bench);

fn main() {
    benches();
    let (_dir, k, secret) = keys();
    let mut lat: Vec<u128> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            assert!(matches!(k.verify("main", &secret), Verdict::Valid(_)));
            t.elapsed().as_nanos()
        })
        .collect();
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!("agent key verify (3 keys, valid is the last): p50 {:.2} us, p99 {:.2} us", p(0.5), p(0.99));
    Criterion::default().configure_from_args().final_summary();
}

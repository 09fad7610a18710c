//! Audit log throughput: sustained ~1 KB appends with durable group commit, and offline
//! verification. Set `AUDIT_BENCH_1M=1` to also write and verify one real 1,000,000-record log
//! (in `AUDIT_BENCH_DIR`, default /tmp; `AUDIT_BENCH_KEEP=1` keeps it, so
//! `cargo run --release -p audit --example audit_verify -- <dir>/audit` can re-time verify).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::{verify_dir, AuditEvent, AuditLog, AuditSettings, RecordKind};
use criterion::{criterion_group, Criterion, Throughput};

fn event(i: u64) -> AuditEvent {
    let words = "the agent asked the model to summarise the quarterly report and draft a reply ";
    AuditEvent {
        decision_id: Some(format!("0190f3a2-7b1c-7d4e-9f00-{i:012}").into()),
        bundle_revision: Some("3f1c9a0d2b7e".into()),
        trace_id: Some(format!("trace-{}", i / 4)),
        agent: Some(format!("agent-{}", i % 16)),
        session: Some(format!("session-{}", i % 64)),
        action: Some(decision::Action::Allow),
        rule: Some("model.default_allow".into()),
        risk: Some(decision::Risk::Low),
        reason: Some("allowed by default".into()),
        subject: serde_json::json!({"model": "gpt-4o-mini", "upstream": "openai", "prompt_excerpt": words.repeat(8)}),
        usage: Some(audit::Usage { input_tokens: 1200, output_tokens: 300, ..Default::default() }),
        cost_usd: Some(0.00042),
        latency_ms: Some(812.5),
        actor: Some("policy".into()),
        outcome: Some(audit::Outcome::Completed),
        ..AuditEvent::new(RecordKind::ModelCall)
    }
}

fn open(dir: &Path) -> AuditLog {
    let db = storage::Store::open(&dir.join("db")).expect("store");
    AuditLog::open(&dir.join("audit"), &AuditSettings::default(), &db, &prometheus::Registry::new()).expect("open")
}

fn bench_append(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tmp");
    let log = Arc::new(open(tmp.path()));
    let line = serde_json::to_vec(&event(0)).map(|v| v.len()).unwrap_or(0);
    println!("record payload ~{line} bytes");
    const N: u64 = 10_000;
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    // Two producer threads append (group commit batches them); the iteration ends with a
    // flush, so every record is fsynced before the clock stops.
    g.bench_function("append_1k_durable_group_commit", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for t in 0..2u64 {
                    let log = &log;
                    s.spawn(move || {
                        for i in 0..N / 2 {
                            log.append(event(t * N + i)).expect("append");
                        }
                    });
                }
            });
            log.flush().expect("flush");
        })
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    g.bench_function("append_durable_64_tasks", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::new();
                for t in 0..64u64 {
                    let log = log.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in 0..N / 64 {
                            log.append_durable(event(t * N + i)).await.expect("durable");
                        }
                    }));
                }
                for t in tasks {
                    t.await.expect("task");
                }
            })
        })
    });
    g.finish();
}

fn bench_verify(c: &mut Criterion) {
    const N: u64 = 50_000;
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let log = open(tmp.path());
        for i in 0..N {
            log.append(event(i)).expect("append");
        }
    }
    let dir = tmp.path().join("audit");
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10);
    g.bench_function("verify_50k", |b| b.iter(|| assert!(verify_dir(&dir, None).ok)));
    g.finish();
    let t = Instant::now();
    assert!(verify_dir(&dir, None).ok);
    let per = t.elapsed().as_secs_f64() / N as f64;
    println!("verify: {:.2} us/record -> extrapolated 1M records: {:.2} s", per * 1e6, per * 1e6);
}

/// One real 1M-record run (opt-in: writes ~1 GB).
fn one_million() {
    if std::env::var("AUDIT_BENCH_1M").is_err() {
        return;
    }
    const N: u64 = 1_000_000;
    let tmp = tempfile::tempdir_in(std::env::var("AUDIT_BENCH_DIR").unwrap_or_else(|_| "/tmp".into())).expect("tmp");
    let t = Instant::now();
    {
        let log = open(tmp.path());
        for i in 0..N {
            log.append(event(i)).expect("append");
        }
        log.flush().expect("flush");
    }
    let w = t.elapsed();
    let dir = tmp.path().join("audit");
    let tmp = if std::env::var("AUDIT_BENCH_KEEP").is_ok() {
        println!("keeping {}", tmp.path().display());
        let _ = tmp.keep();
        None
    } else {
        Some(tmp)
    };
    let bytes: u64 =
        std::fs::read_dir(&dir).expect("dir").filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum();
    println!(
        "1M append: {:.2} s = {:.0} records/s ({} MB on disk)",
        w.as_secs_f64(),
        N as f64 / w.as_secs_f64(),
        bytes >> 20
    );
    let t = Instant::now();
    let rep = verify_dir(&dir, None);
    println!(
        "1M verify: {:.2} s, ok={} records={} checkpoints={}",
        t.elapsed().as_secs_f64(),
        rep.ok,
        rep.records,
        rep.checkpoints
    );
    drop(tmp);
}

criterion_group!(benches, bench_append, bench_verify);

fn main() {
    benches();
    one_million();
    Criterion::default().configure_from_args().final_summary();
}

//! One policy decision on the shipped bundle, for a typical model call and a typical exec
//! approval, plus a one-rule bundle (the engine's fixed cost: input conversion, VM call,
//! output parsing, metrics). Targets (design §7): p99 <= 50 us, p50 <= 10 us. Criterion
//! reports mean/median; the percentile pass below measures p50/p99/p99.9 over 100k evaluations
//! per input.

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use policy::{
    BundleSource, CallKind, CostInput, EngineOptions, ExecInput, ModelInput, PolicyEngine, PolicyInput, PolicySettings,
};

fn engine() -> PolicyEngine {
    let settings = PolicySettings {
        model_allowlist: vec!["gpt-4o".into(), "gpt-4o-mini".into(), "claude-*".into()],
        max_call_usd: Some(2.0),
        workspace_roots: vec!["/srv/agents".into()],
        ..PolicySettings::default()
    };
    PolicyEngine::new(BundleSource::Embedded, settings.data(), EngineOptions::default(), &prometheus::Registry::new())
        .expect("shipped bundle compiles")
}

/// A bundle whose decision is a constant: what every decision costs besides the policy itself.
fn trivial_engine(dir: &std::path::Path) -> PolicyEngine {
    std::fs::write(
        dir.join("p.rego"),
        "package clawbutler\n\ndecision := {\"action\": \"allow\", \"rule\": \"r\", \"reason\": \"x\", \"risk\": \"low\"}\n",
    )
    .expect("write trivial policy");
    PolicyEngine::new(
        BundleSource::Dir(dir.to_path_buf()),
        serde_json::Value::Null,
        EngineOptions::default(),
        &prometheus::Registry::new(),
    )
    .expect("trivial bundle compiles")
}

fn model_call() -> PolicyInput {
    let mut i = PolicyInput::new(CallKind::ModelCall, "main", "4bf92f3577b34da6a3ce929d0e0e4736");
    i.model = Some(ModelInput {
        upstream: "openai".into(),
        upstream_kind: "openai".into(),
        endpoint: "chat_completions".into(),
        name: "gpt-4o".into(),
        max_tokens: Some(4096),
        stream: true,
        tools: vec!["exec".into(), "read".into(), "write".into()],
    });
    i.cost = CostInput { estimate_usd: Some(0.0412) };
    i.budgets.push(policy::BudgetInput {
        id: "agent:main@daily".into(),
        scope: "agent:main".into(),
        window: "daily".into(),
        spent_usd: 1.25,
        limit_usd: 5.0,
        remaining_usd: 3.75,
    });
    i
}

fn exec_call() -> PolicyInput {
    let mut i = PolicyInput::new(CallKind::Exec, "main", "4bf92f3577b34da6a3ce929d0e0e4737");
    i.exec = Some(ExecInput {
        command: "git commit -am 'fix tests' && cargo test -p policy".into(),
        argv: vec![],
        cwd: Some("/srv/agents/main/repo".into()),
        resolved_path: Some("/usr/bin/git".into()),
        workspace: Some("/srv/agents/main".into()),
    });
    i
}

/// An allowed command that misses the `_exec_plain` fast path (a redirect), so every exec rule runs.
fn exec_redirect_call() -> PolicyInput {
    let mut i = exec_call();
    if let Some(e) = i.exec.as_mut() {
        e.command = "cargo build --release > build.log 2>&1".into();
    }
    i
}

fn bench(c: &mut Criterion) {
    let e = engine();
    let (m, x, r) = (model_call(), exec_call(), exec_redirect_call());
    for input in [&m, &x, &r] {
        let d = e.evaluate(input);
        assert_eq!(d.action, policy::Action::Allow, "{d:?}");
    }
    c.bench_function("decision/model_call", |b| b.iter(|| e.evaluate(black_box(&m))));
    c.bench_function("decision/exec", |b| b.iter(|| e.evaluate(black_box(&x))));
    c.bench_function("decision/exec_redirect", |b| b.iter(|| e.evaluate(black_box(&r))));
    let dir = tempfile::tempdir().expect("tempdir");
    let t = trivial_engine(dir.path());
    c.bench_function("decision/trivial", |b| b.iter(|| t.evaluate(black_box(&m))));
}

fn percentiles(_c: &mut Criterion) {
    // Skipped under `cargo test --benches`, which runs each bench once as a smoke test.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (shipped, trivial) = (engine(), trivial_engine(dir.path()));
    for (name, e, input) in [
        ("model_call", &shipped, model_call()),
        ("exec", &shipped, exec_call()),
        ("exec_redirect", &shipped, exec_redirect_call()),
        ("trivial_exec", &trivial, exec_call()),
        ("trivial", &trivial, model_call()),
    ] {
        for _ in 0..10_000 {
            black_box(e.evaluate(&input));
        }
        let mut samples: Vec<u64> = (0..100_000)
            .map(|_| {
                let t = Instant::now();
                black_box(e.evaluate(black_box(&input)));
                t.elapsed().as_nanos() as u64
            })
            .collect();
        samples.sort_unstable();
        let q = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)] as f64 / 1000.0;
        println!(
            "decision/{name} percentiles over {} evals: p50 {:.1} us, p90 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            samples.len(),
            q(0.50),
            q(0.90),
            q(0.99),
            q(0.999),
            q(1.0)
        );
    }
}

criterion_group!(benches, bench, percentiles);
criterion_main!(benches);

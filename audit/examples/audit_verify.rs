//! Time `verify_dir` on an existing log, reporting wall and CPU time (the bench machine is
//! shared, so CPU time is the steadier number): `cargo run --release -p audit --example
//! audit_verify -- <audit dir> [runs]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

use std::path::PathBuf;
use std::time::Instant;

fn cpu_secs() -> f64 {
    // /proc/self/stat fields 14 and 15: user and system time in clock ticks (100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    tick(11) + tick(12)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: audit_verify <audit dir> [runs]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    for _ in 0..runs {
        let (t, c) = (Instant::now(), cpu_secs());
        let rep = audit::verify_dir(&dir, None);
        println!(
            "verify: {:.2} s wall, {:.2} s cpu, ok={} records={}",
            t.elapsed().as_secs_f64(),
            cpu_secs() - c,
            rep.ok,
            rep.records
        );
    }
}

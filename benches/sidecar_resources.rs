//! Resource figures for sizing (`deploy/kubernetes/`, `docs/operations.md`): the release
//! `clawbutler serve` binary runs as its own process (policy and audit on, default config)
//! in front of a fast local upstream; its resident memory (`VmRSS`, peak `VmHWM`) and CPU
//! (`utime + stime` from `/proc/<pid>/stat`) are read while idle and under open-loop load at
//! each rate in `MEASURE_RPS`.
//!
//! Run: `cargo bench --bench sidecar_resources`. Env: `MEASURE_RPS` (`500,2000`),
//! `MEASURE_SECS` per rate (20), `MEASURE_IDLE_SECS` (10). Linux only (`/proc`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

#[path = "common/openloop.rs"]
mod openloop;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openloop::{env, ms, one, pct, phase, BODY};
use testkit::upstream::{ScriptedUpstream, UpstreamOptions};

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32, tick: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick
}

/// (`VmRSS`, `VmHWM`) in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let secs = env("MEASURE_SECS", 20);
        let idle = env("MEASURE_IDLE_SECS", 10);
        let rates: Vec<u64> = std::env::var("MEASURE_RPS")
            .unwrap_or_else(|_| "500,2000".into())
            .split(',')
            .filter_map(|r| r.trim().parse().ok())
            .collect();
        let tick: f64 = String::from_utf8(Command::new("getconf").arg("CLK_TCK").output().expect("getconf").stdout)
            .expect("utf8")
            .trim()
            .parse()
            .expect("CLK_TCK");
        let up = ScriptedUpstream::start_with(UpstreamOptions { record: false, ..Default::default() }).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (data, control) = (free_addr(), free_addr());
        let cfg = testkit::rig::SidecarConfig::new(&dir.path().join("data"))
            .listen(&data, &control)
            .upstreams(&up.base_url());
        let path = dir.path().join("clawbutler.toml");
        std::fs::write(&path, cfg.to_toml()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_clawbutler"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("CLAWBUTLER_LOG", "warn")
            .env_remove("CLAWBUTLER_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clawbutler serve");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&control).is_err() {
            assert!(Instant::now() < deadline, "sidecar did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let client = openloop::client();
        let url = format!("http://{data}/a/bench/fake/v1/chat/completions");
        println!("release `clawbutler serve`, default config (policy + audit on), fast local upstream, open loop");
        println!(
            "{:<10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>8}",
            "load", "RSS MiB", "peak MiB", "CPU cores", "p50 ms", "p99 ms", "errors"
        );
        let c0 = cpu_secs(pid, tick);
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let (rss, peak) = rss_mib(pid);
        let cores = (cpu_secs(pid, tick) - c0) / idle as f64;
        println!("{:<10} {rss:>9.1} {peak:>9.1} {cores:>10.3} {:>9} {:>9} {:>8}", "idle", "-", "-", "-");
        for _ in 0..200 {
            let _ = one(&client, &url, BODY).await;
        }
        for rps in rates {
            let (c0, t0) = (cpu_secs(pid, tick), Instant::now());
            let mut p = phase(&client, &url, rps, secs).await;
            let cores = (cpu_secs(pid, tick) - c0) / t0.elapsed().as_secs_f64();
            let (rss, peak) = rss_mib(pid);
            let (p50, p99) = (pct(&mut p.lat, 0.5), pct(&mut p.lat, 0.99));
            let load = format!("{rps} req/s");
            println!(
                "{load:<10} {rss:>9.1} {peak:>9.1} {cores:>10.3} {:>9.3} {:>9.3} {:>8}",
                ms(p50),
                ms(p99),
                p.errors
            );
        }
        let (rss, _) = rss_mib(pid);
        let audit = dir_size(&dir.path().join("data/audit"));
        println!("after the load: RSS {rss:.1} MiB; audit log {:.1} MiB", audit as f64 / 1048576.0);
        let _ = child.kill();
        let _ = child.wait();
    });
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| rd.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}

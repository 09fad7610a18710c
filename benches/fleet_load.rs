//! Fleet benchmark (docs/fleet.md "Measured"): the sidecar's added latency with fleet mode on
//! vs off, in one run, and the central lease takes per second.
//!
//! Three paths to one scripted upstream, measured in interleaved open-loop phases: `direct`,
//! `fleet off` (a sidecar without `[fleet]`, a local daily budget on the agent) and `fleet on`
//! (a sidecar in fleet mode on a throwaway PostgreSQL on loopback, the same budget with
//! `fleet = true`: every call carves its worst case out of a lease). Then `take_sized` in a
//! loop from 3 pools x 8 tasks, all on one budget row (the hot-row bound) and each task on its
//! own row.
//!
//! Run: `scripts/load.sh fleet` (`cargo bench --bench fleet_load`). Env: `LOAD_RPS` (1000),
//! `LOAD_SECS` per phase (5), `LOAD_ROUNDS` (3), `TAKE_SECS` (5), `FLEET_EXTRA` (more `[fleet]`
//! keys for the fleet-on sidecar, e.g. `audit_ship_ms = 3600000` to take the shipper out). Needs PostgreSQL
//! (`scripts/install-postgres.sh`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failure panics

#[path = "common/openloop.rs"]
mod openloop;

use std::time::{Duration, Instant};

use clawbutler::app::Sidecar;
use fleet::budget::{self, Ask, Sized};
use fleet::{Connector, FleetSettings};
use openloop::{env, ms, one, pct, phase, HttpClient, BODY};
use testkit::postgres::PgCluster;
use testkit::upstream::{ScriptedUpstream, UpstreamOptions};

const TABLES: &str = "[prices.\"gpt-4o-mini\"]\ninput = 0.15\noutput = 0.6\n\
    [[budgets]]\nscope = \"agent:bench\"\nwindow = \"daily\"\nlimit_usd = 1000000.0\n";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let pg = PgCluster::start(&testkit::postgres::find_bin().expect("PostgreSQL: run scripts/install-postgres.sh"));
        let up = ScriptedUpstream::start_with(UpstreamOptions { record: false, ..Default::default() }).await;
        let (off_dir, on_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let cfg = |d: &std::path::Path| testkit::rig::SidecarConfig::new(d).upstreams(&up.base_url());
        let off = Sidecar::start(cfg(off_dir.path()).table(TABLES).build()).await.expect("sidecar, fleet off");
        let fleet_tables = format!(
            "{}fleet = true\n{}",
            TABLES,
            pg.fleet_table("bench-on", &std::env::var("FLEET_EXTRA").unwrap_or_default())
        );
        let on = Sidecar::start(cfg(on_dir.path()).table(&fleet_tables).build()).await.expect("sidecar, fleet on");
        let client: HttpClient = openloop::client();
        let url = |s: &Sidecar| format!("http://{}/a/bench/fake/v1/chat/completions", s.data_addr);
        let paths = [
            ("direct", format!("{}/v1/chat/completions", up.base_url())),
            ("fleet off", url(&off)),
            ("fleet on", url(&on)),
        ];
        calls_fleet_on_vs_off(&client, &paths).await;
        let leases = pg.psql("SELECT count(*) FROM fleet_lease WHERE sidecar_id = 'bench-on'");
        let spent =
            pg.psql("SELECT spent_micro + held_micro FROM fleet_budget WHERE budget_id LIKE 'agent:bench@daily/%'");
        println!(
            "fleet on: {} leases taken centrally; fleet-wide spent + held {} micro-USD",
            leases.trim(),
            spent.trim()
        );
        central_takes(&pg).await;
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "load average during the run (1, 5, 15 min): {}",
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        off.shutdown().await;
        on.shutdown().await;
    });
}

async fn calls_fleet_on_vs_off(client: &HttpClient, paths: &[(&str, String)]) {
    let (rps, secs, rounds) = (env("LOAD_RPS", 1000), env("LOAD_SECS", 5), env("LOAD_ROUNDS", 3));
    for _ in 0..500 {
        for (_, u) in paths {
            one(client, u, BODY).await.expect("warm-up call");
        }
    }
    let mut all: Vec<(Vec<Duration>, u64)> = vec![(Vec::new(), 0); paths.len()];
    for _ in 0..rounds {
        for (i, (_, u)) in paths.iter().enumerate() {
            let p = phase(client, u, rps, secs).await;
            all[i].0.extend(p.lat);
            all[i].1 += p.errors;
        }
    }
    println!("non-streaming, open loop at {rps} req/s, {rounds} x {secs} s per path, interleaved, policy + audit on");
    println!("{:<10} {:>9} {:>9} {:>9} {:>9} {:>7}", "path", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors");
    let mut stats = Vec::new();
    for ((name, _), (v, errs)) in paths.iter().zip(all.iter_mut()) {
        let s = [pct(v, 0.5), pct(v, 0.9), pct(v, 0.99), pct(v, 0.999)].map(ms);
        println!("{name:<10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7}", s[0], s[1], s[2], s[3], errs);
        stats.push(s);
    }
    let (d, off, on) = (stats[0], stats[1], stats[2]);
    println!(
        "added by the sidecar: fleet off p50 {:+.3} p99 {:+.3} ms; fleet on p50 {:+.3} p99 {:+.3} ms; \
         fleet on - off: p50 {:+.3} ms, p90 {:+.3} ms, p99 {:+.3} ms",
        off[0] - d[0],
        off[2] - d[2],
        on[0] - d[0],
        on[2] - d[2],
        on[0] - off[0],
        on[1] - off[1],
        on[2] - off[2]
    );
}

/// `take_sized` from 3 pools x 8 tasks for `TAKE_SECS`: on one row, then each task on its own.
async fn central_takes(pg: &PgCluster) {
    let s = FleetSettings { database_url: pg.url(), sidecar_id: "bench".into(), pool_size: 8, ..Default::default() };
    let pools: Vec<_> = (0..3).map(|_| Connector::new(&s).unwrap().pool(&s).unwrap()).collect();
    let run_for = Duration::from_secs(env("TAKE_SECS", 5));
    for spread in [false, true] {
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for (p, pool) in pools.iter().enumerate() {
            for t in 0..8 {
                let pool = pool.clone();
                let row = if spread { format!("bench-{spread}/{p}-{t}") } else { "bench/1".to_string() };
                tasks.push(tokio::spawn(async move {
                    let budgets = vec![(row, i64::MAX / 4)];
                    let mut n = 0u64;
                    while t0.elapsed() < run_for {
                        let id = format!("{spread}-p{p}-t{t}-{n}");
                        let ask = Ask {
                            lease_id: &id,
                            sidecar_id: "bench",
                            budgets: &budgets,
                            min_micro: 1,
                            max_micro: 1,
                            parts: 1,
                            live_ms: 10_000,
                            ttl_ms: 60_000,
                        };
                        assert_eq!(budget::take_sized(&pool, &ask).await.unwrap(), Sized::Granted(1));
                        n += 1;
                    }
                    n
                }));
            }
        }
        let mut takes = 0;
        for t in tasks {
            takes += t.await.unwrap();
        }
        let secs = t0.elapsed().as_secs_f64();
        let rows = if spread { "24 budget rows (one per task)" } else { "one budget row" };
        println!(
            "central lease takes, 3 pools x 8 tasks on {rows}: {takes} in {secs:.1} s = {:.0}/s",
            takes as f64 / secs
        );
    }
}

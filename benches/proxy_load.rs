//! Load benchmark: the same load sent straight to a fast local upstream and through the
//! sidecar (policy and audit on), side by side in one run. Prints p50/p99 added latency at a
//! fixed request rate (open loop, latency measured from the scheduled send time so a stall is
//! never hidden), the throughput ratio, and the added time to first byte of a stream.
//!
//! Run: `cargo bench --bench proxy_load` (or `scripts/load.sh`). Env: `LOAD_RPS` (2000),
//! `LOAD_SECS` per phase (5), `LOAD_ROUNDS` (3), `LOAD_TRACES=1` (also through sidecars with
//! OpenTelemetry traces on: one exporting to a collector that answers, one to a hung collector).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

#[path = "common/openloop.rs"]
mod openloop;

use std::time::Duration;

use clawbutler::app::Sidecar;
use openloop::{env, ms, one, pct, phase, ttfb, HttpClient, BODY};
use testkit::upstream::{ScriptedUpstream, UpstreamOptions};

/// The binary's allocator (`src/main.rs`), so the sidecar in this process allocates as it does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let rps = env("LOAD_RPS", 2000);
        let secs = env("LOAD_SECS", 5);
        let rounds = env("LOAD_ROUNDS", 3);
        let up = ScriptedUpstream::start_with(UpstreamOptions { record: false, ..Default::default() }).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = testkit::rig::SidecarConfig::new(dir.path()).upstreams(&up.base_url());
        let sidecar = Sidecar::start(cfg.build()).await.expect("sidecar");
        let client: HttpClient = openloop::client();
        let direct = format!("{}/v1/chat/completions", up.base_url());
        let url = |s: &Sidecar| format!("http://{}/a/bench/fake/v1/chat/completions", s.data_addr);
        let mut paths = vec![("direct", direct), ("sidecar", url(&sidecar))];
        // `LOAD_TRACES=1`: two more sidecars with `[telemetry]` on, one exporting to a collector
        // that answers at once, one to a collector that never answers (export timeout 2 s).
        let mut traced = Vec::new();
        if env("LOAD_TRACES", 0) == 1 {
            for (name, hung) in [("traces on", false), ("traces hung", true)] {
                let collector = otlp_collector(hung).await;
                let d = tempfile::tempdir().expect("tempdir");
                let cfg = testkit::rig::SidecarConfig::new(d.path())
                    .upstreams(&up.base_url())
                    .table(&format!("[telemetry]\nendpoint = \"http://{collector}\"\nexport_timeout_ms = 2000\n"));
                let s = Sidecar::start(cfg.build()).await.expect("traced sidecar");
                paths.push((name, url(&s)));
                traced.push((s, d));
            }
        }
        // Warm every path (connections, policy engine per thread, audit writer).
        for _ in 0..500 {
            for (_, u) in &paths {
                let _ = one(&client, u, BODY).await;
            }
        }
        let mut all: Vec<(Vec<Duration>, u64, Duration)> = vec![(Vec::new(), 0, Duration::ZERO); paths.len()];
        for _ in 0..rounds {
            for (i, (_, u)) in paths.iter().enumerate() {
                let p = phase(&client, u, rps, secs).await;
                all[i].0.extend(p.lat);
                all[i].1 += p.errors;
                all[i].2 += p.wall;
            }
        }
        println!("non-streaming, open loop at {rps} req/s, {rounds} x {secs} s per path, policy + audit on");
        println!("{:<12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>7}", "path", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "req/s", "errors");
        let mut stats = Vec::new();
        for ((name, _), (v, errs, wall)) in paths.iter().zip(all.iter_mut()) {
            let thr = v.len() as f64 / wall.as_secs_f64();
            let s = (pct(v, 0.5), pct(v, 0.9), pct(v, 0.99), pct(v, 0.999));
            println!("{name:<12} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10.0} {:>7}", ms(s.0), ms(s.1), ms(s.2), ms(s.3), thr, errs);
            stats.push((s, thr));
        }
        let d = stats[0];
        for ((name, _), p) in paths.iter().zip(&stats).skip(1) {
            println!(
                "added by {name}: p50 {:+.3} ms, p90 {:+.3} ms, p99 {:+.3} ms; throughput ratio {:.3}",
                ms(p.0 .0) - ms(d.0 .0),
                ms(p.0 .1) - ms(d.0 .1),
                ms(p.0 .2) - ms(d.0 .2),
                p.1 / d.1
            );
        }
        for (s, _) in &traced {
            let m = testkit::http::get(&format!("http://{}/metrics", s.control_addr), &[]).await.text();
            let spans: Vec<&str> = m.lines().filter(|l| l.starts_with("clawbutler_trace_spans_")).collect();
            println!("{}: {}", s.data_addr, spans.join("; "));
        }

        let n = env("LOAD_STREAMS", 1000);
        let direct_s = format!("{}/v1/chat/completions", up.base_url());
        let proxied_s = format!("http://{}/a/bench/fake/v1/chat/completions", sidecar.data_addr);
        let (mut ds, mut ps) = (Vec::new(), Vec::new());
        for _ in 0..n {
            if let Ok(t) = ttfb(&client, &direct_s).await {
                ds.push(t);
            }
            if let Ok(t) = ttfb(&client, &proxied_s).await {
                ps.push(t);
            }
        }
        let (d50, d99, p50, p99) = (pct(&mut ds, 0.5), pct(&mut ds, 0.99), pct(&mut ps, 0.5), pct(&mut ps, 0.99));
        println!("streaming time to first byte ({n} sequential streams each): direct p50 {:.3} ms p99 {:.3} ms; sidecar p50 {:.3} ms p99 {:.3} ms; added p50 {:+.3} ms, p99 {:+.3} ms",
            ms(d50), ms(d99), ms(p50), ms(p99), ms(p50) - ms(d50), ms(p99) - ms(d99));
        sidecar.shutdown().await;
    });
}

/// A loopback OTLP/HTTP collector: answers every export with an empty success at once, or
/// (`hung`) accepts connections and never answers.
async fn otlp_collector(hung: bool) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((io, _)) = l.accept().await {
            if hung {
                held.push(io);
                continue;
            }
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                        bytes::Bytes::new(),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    addr
}

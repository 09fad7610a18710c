//! Load benchmark: the same load sent straight to a fast local upstream and through the
//! sidecar (policy and audit on), side by side in one run. Prints p50/p99 added latency at a
//! fixed request rate (open loop, latency measured from the scheduled send time so a stall is
//! never hidden), the throughput ratio, and the added time to first byte of a stream.
//!
//! Run: `cargo bench --bench proxy_load` (or `scripts/load.sh`). Env: `LOAD_RPS` (2000),
//! `LOAD_SECS` per phase (5), `LOAD_ROUNDS` (3).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clawbutler::app::Sidecar;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use testkit::upstream::{ScriptedUpstream, UpstreamOptions};
use tokio::sync::Mutex;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const BODY: &str = r#"{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are a helpful agent."},{"role":"user","content":"Say hello to the benchmark."}]}"#;
const STREAM_BODY: &str = r#"{"model":"gpt-4o-mini","max_tokens":64,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Stream a hello."}]}"#;

async fn one(client: &HttpClient, url: &str, body: &'static str) -> Result<(), String> {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-bench")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("status {}", res.status()));
    }
    res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Time to the first body byte of a streamed reply.
async fn ttfb(client: &HttpClient, url: &str) -> Result<Duration, String> {
    let t0 = Instant::now();
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(STREAM_BODY.as_bytes())))
        .map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let mut body = res.into_body();
    let first = loop {
        match body.frame().await {
            Some(Ok(f)) if f.is_data() => break t0.elapsed(),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("empty stream".into()),
        }
    };
    while let Some(f) = body.frame().await {
        f.map_err(|e| e.to_string())?;
    }
    Ok(first)
}

struct Phase {
    lat: Vec<Duration>,
    errors: u64,
    wall: Duration,
}

/// Open-loop load at `rps` for `secs`.
async fn phase(client: &HttpClient, url: &str, rps: u64, secs: u64) -> Phase {
    let lat = Arc::new(Mutex::new(Vec::with_capacity((rps * secs) as usize)));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let period = Duration::from_nanos(1_000_000_000 / rps);
    let start = Instant::now();
    let mut handles = Vec::with_capacity((rps * secs) as usize);
    for i in 0..rps * secs {
        let due = start + period * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let (client, url, lat, errors) = (client.clone(), url.to_string(), lat.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            match one(&client, &url, BODY).await {
                Ok(()) => lat.lock().await.push(due.elapsed()),
                Err(_) => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let wall = start.elapsed();
    let lat = std::mem::take(&mut *lat.lock().await);
    Phase { lat, errors: errors.load(std::sync::atomic::Ordering::Relaxed), wall }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

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
        let client: HttpClient = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
        let direct = format!("{}/v1/chat/completions", up.base_url());
        let proxied = format!("http://{}/a/bench/fake/v1/chat/completions", sidecar.data_addr);
        // Warm both paths (connections, policy engine per thread, audit writer).
        for _ in 0..500 {
            let _ = one(&client, &direct, BODY).await;
            let _ = one(&client, &proxied, BODY).await;
        }
        let (mut d_all, mut p_all) = (Vec::new(), Vec::new());
        let (mut d_err, mut p_err, mut d_wall, mut p_wall) = (0, 0, Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let d = phase(&client, &direct, rps, secs).await;
            let p = phase(&client, &proxied, rps, secs).await;
            d_all.extend(d.lat);
            p_all.extend(p.lat);
            d_err += d.errors;
            p_err += p.errors;
            d_wall += d.wall;
            p_wall += p.wall;
        }
        let (dn, pn) = (d_all.len() as f64, p_all.len() as f64);
        println!("non-streaming, open loop at {rps} req/s, {rounds} x {secs} s per path, policy + audit on");
        println!("{:<10} {:>9} {:>9} {:>9} {:>9} {:>10}", "path", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "req/s");
        let rows = [("direct", &mut d_all, dn / d_wall.as_secs_f64()), ("sidecar", &mut p_all, pn / p_wall.as_secs_f64())];
        let mut stats = Vec::new();
        for (name, v, thr) in rows {
            let s = (pct(v, 0.5), pct(v, 0.9), pct(v, 0.99), pct(v, 0.999));
            println!("{name:<10} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>10.0}", ms(s.0), ms(s.1), ms(s.2), ms(s.3), thr);
            stats.push((s, thr));
        }
        let (d, p) = (stats[0], stats[1]);
        println!(
            "added by the sidecar: p50 {:+.3} ms, p90 {:+.3} ms, p99 {:+.3} ms; throughput ratio {:.3}; errors direct {d_err}, sidecar {p_err}",
            ms(p.0 .0) - ms(d.0 .0),
            ms(p.0 .1) - ms(d.0 .1),
            ms(p.0 .2) - ms(d.0 .2),
            p.1 / d.1
        );

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

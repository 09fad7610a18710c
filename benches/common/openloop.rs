//! Open-loop load shared by the load benchmarks (`proxy_load`, `sidecar_resources`): calls are
//! sent at fixed times, and latency is measured from the scheduled send time, so a stall is
//! never hidden (no coordinated omission).

#![allow(dead_code)] // each benchmark uses part of it

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;

pub type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub const BODY: &str = r#"{"model":"gpt-4o-mini","max_tokens":64,"messages":[{"role":"system","content":"You are a helpful agent."},{"role":"user","content":"Say hello to the benchmark."}]}"#;
pub const STREAM_BODY: &str = r#"{"model":"gpt-4o-mini","max_tokens":64,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Stream a hello."}]}"#;

pub async fn one(client: &HttpClient, url: &str, body: &'static str) -> Result<(), String> {
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
pub async fn ttfb(client: &HttpClient, url: &str) -> Result<Duration, String> {
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

pub struct Phase {
    pub lat: Vec<Duration>,
    pub errors: u64,
    pub wall: Duration,
}

/// Open-loop load at `rps` for `secs`.
pub async fn phase(client: &HttpClient, url: &str, rps: u64, secs: u64) -> Phase {
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

pub fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A pooled plain-HTTP client for the load.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http()
}

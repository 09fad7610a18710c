//! Plugin-gate load benchmark: `POST /v1/decide` tool-call decisions as the OpenClaw plugin
//! sends them (token check, the shipped bundle's plugin rules, audit on), open loop at a fixed
//! rate: a request is sent every `1/PLUGIN_RPS` s whether or not earlier ones have been
//! answered, so a slow answer shows in the tail instead of slowing the load down. Prints
//! p50/p99/max end to end (client send to full answer), answered and failed counts.
//!
//! The mix: reads inside the workspace (allow), writes inside it (allow), and an `exec` of a
//! harmless command, round robin, each with its own tool-call id.
//!
//! Run: `cargo bench --bench plugin_decide` (or `scripts/load.sh plugin`). Env: `PLUGIN_RPS`
//! (1000), `PLUGIN_SECS` (10).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failure panics

use std::time::{Duration, Instant};

use bytes::Bytes;
use clawbutler::app::Sidecar;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn request(i: u64) -> Value {
    let (tool, params) = match i % 3 {
        0 => ("read", json!({"path": "/srv/agents/main/notes.txt"})),
        1 => ("write", json!({"path": "/srv/agents/main/out.txt", "content": "benchmark"})),
        _ => ("exec", json!({"command": "ls -la"})),
    };
    json!({"version": 1, "kind": "tool_call", "agentId": "main", "sessionKey": "agent:main:main",
        "sessionId": "s-1", "runId": format!("run-{}", i / 100), "toolCallId": format!("call-{i}"),
        "toolName": tool, "params": params, "requester": {"senderIsOwner": true},
        "workspace": "/srv/agents/main", "run": {"trigger": "user"}, "timeoutMs": 599000})
}

async fn decide(client: &HttpClient, url: &str, token: &str, body: Value) -> Result<String, String> {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status();
    let bytes = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    Ok(v["action"].as_str().unwrap_or("?").to_string())
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (rps, secs) = (env("PLUGIN_RPS", 1000).max(1), env("PLUGIN_SECS", 10).max(1));
        let dir = tempfile::tempdir().unwrap();
        let cfg = testkit::rig::SidecarConfig::new(dir.path());
        let sidecar = Sidecar::start(cfg.build()).await.expect("sidecar");
        let r = testkit::http::post_json(
            &format!("http://{}/api/v1/plugin-tokens", sidecar.control_addr),
            &testkit::rig::bearer(testkit::rig::ADMIN),
            &json!({"gateway": "ws://bench:18789", "label": "bench"}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let token = r.json()["token"].as_str().unwrap().to_string();
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let client: HttpClient = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(64).build(conn);
        let url = format!("http://{}/v1/decide", sidecar.data_addr);
        // Warm up (connections, prepared engines).
        for i in 0..300 {
            decide(&client, &url, &token, request(i)).await.unwrap();
        }
        let total = rps * secs;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rps));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let started = Instant::now();
        for i in 0..total {
            tick.tick().await;
            let (client, url, token, tx) = (client.clone(), url.clone(), token.clone(), tx.clone());
            tokio::spawn(async move {
                let t0 = Instant::now();
                let r = decide(&client, &url, &token, request(1_000 + i)).await;
                let _ = tx.send((t0.elapsed(), r));
            });
        }
        drop(tx);
        let (mut lat, mut failed, mut actions) = (Vec::new(), Vec::new(), std::collections::BTreeMap::new());
        while let Some((d, r)) = rx.recv().await {
            match r {
                Ok(a) => {
                    lat.push(d);
                    *actions.entry(a).or_insert(0u64) += 1;
                }
                Err(e) => failed.push(e),
            }
        }
        let wall = started.elapsed();
        lat.sort();
        println!(
            "plugin /v1/decide, open loop {rps}/s for {secs} s: {} answered in {:.1} s ({:.0}/s), {} failed",
            lat.len(),
            wall.as_secs_f64(),
            lat.len() as f64 / wall.as_secs_f64(),
            failed.len()
        );
        println!("  actions: {actions:?}");
        if !lat.is_empty() {
            println!(
                "  end to end: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
                ms(pct(&lat, 0.5)),
                ms(pct(&lat, 0.99)),
                ms(*lat.last().unwrap())
            );
        }
        if let Some(e) = failed.first() {
            println!("  first failure: {e}");
        }
        let _ = sidecar.shutdown().await;
    });
}

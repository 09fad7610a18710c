//! MCP load benchmark: `tools/call` sent straight to a fast local MCP server and through the
//! sidecar's `/mcp/agent/{agent}` (token check, policy, audit and result masking on), in
//! alternating rounds of one run. One pooled keep-alive client, one MCP session per target,
//! calls one after another; prints p50/p99 of each and the added latency.
//!
//! The fast server answers `initialize`, `tools/list` and `tools/call` with fixed JSON on a
//! socket with `TCP_NODELAY` (without it pooled clients see 40 ms delayed-ACK steps).
//!
//! Run: `cargo bench --bench mcp_load` (or `scripts/load.sh mcp`). Env: `MCP_CALLS` per round
//! (2000), `MCP_ROUNDS` (3), `MCP_SPIN_US` (the sidecar's `[proxy] spin_us`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a failure panics

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clawbutler::app::Sidecar;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The binary's allocator (`src/main.rs`), so the sidecar in this process allocates as it does.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The fast MCP server's answer to one message.
fn answer(body: &[u8]) -> http::Response<Full<Bytes>> {
    let msg: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let id = msg.get("id").cloned();
    let result = match msg["method"].as_str().unwrap_or("") {
        "initialize" => json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                               "serverInfo": {"name": "fast", "version": "1"}}),
        "tools/list" => json!({"tools": [{"name": "echo", "description": "echo",
                               "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]}),
        "tools/call" => {
            json!({"content": [{"type": "text", "text": format!("echo: {}", msg["params"]["arguments"]["text"])}]})
        }
        _ => json!({}),
    };
    let mut b = http::Response::builder().header("mcp-session-id", "fast-1");
    match id {
        None => b.status(202).body(Full::new(Bytes::new())).unwrap(),
        Some(id) => {
            b = b.header("content-type", "application/json");
            let out = json!({"jsonrpc": "2.0", "id": id, "result": result});
            b.body(Full::new(Bytes::from(out.to_string()))).unwrap()
        }
    }
}

async fn fast_server() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { continue };
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    if req.method() != http::Method::POST {
                        return Ok::<_, Infallible>(
                            http::Response::builder().status(405).body(Full::new(Bytes::new())).unwrap(),
                        );
                    }
                    let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                    Ok(answer(&body))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(s), svc).await;
            });
        }
    });
    addr
}

/// One MCP session on `url`: its id after `initialize` + `notifications/initialized`.
async fn open(client: &HttpClient, url: &str, token: &str) -> String {
    let (_, headers) = post(client, url, token, None, json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}))
    .await;
    let sid = headers.get("mcp-session-id").unwrap().to_str().unwrap().to_string();
    post(client, url, token, Some(&sid), json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    sid
}

async fn post(client: &HttpClient, url: &str, token: &str, sid: Option<&str>, msg: Value) -> (Bytes, http::HeaderMap) {
    let mut b = http::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .header("authorization", format!("Bearer {token}"));
    if let Some(s) = sid {
        b = b.header("mcp-session-id", s);
    }
    let res = client.request(b.body(Full::new(Bytes::from(msg.to_string()))).unwrap()).await.unwrap();
    assert!(res.status().is_success(), "{} from {url}", res.status());
    let headers = res.headers().clone();
    (res.into_body().collect().await.unwrap().to_bytes(), headers)
}

/// `n` calls one after another; their latencies.
async fn round(client: &HttpClient, url: &str, token: &str, sid: &str, name: &str, n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let msg = json!({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                         "params": {"name": name, "arguments": {"text": "hello benchmark"}}});
        let t0 = Instant::now();
        let (body, _) = post(client, url, token, Some(sid), msg).await;
        lat.push(t0.elapsed());
        assert!(body.windows(5).any(|w| w == b"echo:"), "{}", String::from_utf8_lossy(&body));
    }
    lat
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let (calls, rounds) = (env("MCP_CALLS", 2000), env("MCP_ROUNDS", 3));
        let fast = fast_server().await;
        let dir = tempfile::tempdir().unwrap();
        // `MCP_SPIN_US` sets `[proxy] spin_us` (default 200; 0 compares with threads that sleep).
        let spin = std::env::var("MCP_SPIN_US").map(|v| format!("[proxy]\nspin_us = {v}\n")).unwrap_or_default();
        let cfg = testkit::rig::SidecarConfig::new(dir.path()).table(&format!(
            "{spin}[[mcp_servers]]\nname = \"fast\"\ntransport = \"streamable-http\"\nurl = \"http://{fast}/mcp\"\n"
        ));
        let sidecar = Sidecar::start(cfg.build()).await.expect("sidecar");
        let r = testkit::http::post_json(
            &format!("http://{}/api/v1/agents/bench/mcp-tokens", sidecar.control_addr),
            &testkit::rig::bearer(testkit::rig::ADMIN),
            &json!({}),
        )
        .await;
        let token = r.json()["token"].as_str().unwrap().to_string();
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let client: HttpClient = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(8).build(conn);
        let direct_url = format!("http://{fast}/mcp");
        let proxied_url = format!("http://{}/mcp/agent/bench", sidecar.data_addr);
        let direct_sid = open(&client, &direct_url, &token).await;
        let proxied_sid = open(&client, &proxied_url, &token).await;
        // Warm up both paths (connections, the session's upstream session, the tool list).
        round(&client, &direct_url, &token, &direct_sid, "echo", 200).await;
        round(&client, &proxied_url, &token, &proxied_sid, "fast__echo", 200).await;
        let (mut direct, mut proxied) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            direct.extend(round(&client, &direct_url, &token, &direct_sid, "echo", calls).await);
            proxied.extend(round(&client, &proxied_url, &token, &proxied_sid, "fast__echo", calls).await);
        }
        let (d50, d99) = (pct(&mut direct, 0.5), pct(&mut direct, 0.99));
        let (p50, p99) = (pct(&mut proxied, 0.5), pct(&mut proxied, 0.99));
        println!("MCP tools/call, {} calls per path ({rounds} rounds, sequential, keep-alive):", direct.len());
        println!("  direct : p50 {:8.1} us  p99 {:8.1} us", us(d50), us(d99));
        println!("  sidecar: p50 {:8.1} us  p99 {:8.1} us", us(p50), us(p99));
        println!(
            "  added  : p50 {:8.1} us  p99 {:8.1} us  (ratio p50 {:.2}x, p99 {:.2}x)",
            us(p50) - us(d50),
            us(p99) - us(d99),
            us(p50) / us(d50),
            us(p99) / us(d99)
        );
        let metrics = testkit::http::get(&format!("http://{}/metrics", sidecar.control_addr), &[]).await.text();
        for l in metrics.lines().filter(|l| l.starts_with("clawbutler_mcp_overhead_seconds_")) {
            println!("  {l}");
        }
        let _ = sidecar.shutdown().await;
    });
}

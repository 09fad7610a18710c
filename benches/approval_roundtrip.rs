//! Approval round trip, machine time (no human): a sidecar in process with policy and audit
//! on, a scripted upstream, and real HTTP on both listeners.
//!
//! - "hold -> SSE": from sending a model call the policy holds until its `approval` event
//!   arrives on `/api/v1/events` (policy, hold creation, durable audit record, SSE).
//! - "decision -> release": from sending the decision POST until the held call's response
//!   arrives at its client (durable decision, release, forward to the upstream and back).
//!
//! Prints p50/p99 over ROUNDS sequential rounds. Target: p99 <= 30 ms (design §7).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

use std::time::{Duration, Instant};

use bytes::Bytes;
use clawbutler::app::Sidecar;
use http::Method;
use serde_json::{json, Value};
use testkit::http::{post_json, send_streaming, StreamingResponse};
use testkit::rig::{bundle_dir, SidecarConfig, ADMIN, HOLD_RULE};
use testkit::upstream::ScriptedUpstream;

const ROUNDS: usize = 300;
/// Reads SSE frames until an event of `name` arrives; returns its data.
async fn next_event(res: &mut StreamingResponse, buf: &mut String, name: &str) -> Value {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.lines().any(|l| l == format!("event: {name}")) {
                let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap_or("null");
                return serde_json::from_str(data).unwrap_or(Value::Null);
            }
        }
        let chunk = res.next_chunk().await.expect("event stream ended");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let up = ScriptedUpstream::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = SidecarConfig::new(&dir.path().join("data"))
            .upstreams(&up.base_url())
            .policy_dir(&bundle_dir(dir.path(), &[("zz_bench_hold.rego", HOLD_RULE)]));
        let sidecar = Sidecar::start(cfg.build()).await.expect("sidecar");
        let control = format!("http://{}", sidecar.control_addr);
        let data = format!("http://{}/a/bench/fake/v1/chat/completions", sidecar.data_addr);
        let auth = format!("Bearer {ADMIN}");
        let mut sse = send_streaming(
            Method::GET,
            &format!("{control}/api/v1/events?kind=approval"),
            &[("authorization", &auth)],
            Bytes::new(),
        )
        .await;
        let mut buf = String::new();
        let (mut to_sse, mut to_release) = (Vec::new(), Vec::new());
        for i in 0..ROUNDS + 20 {
            let body = json!({"model": "needs-approval-bench", "messages": [{"role": "user", "content": "MARK:b"}]});
            let url = data.clone();
            let t0 = Instant::now();
            let held = tokio::spawn(async move {
                let r = post_json(&url, &[], &body).await;
                (Instant::now(), r.status)
            });
            let ev = next_event(&mut sse, &mut buf, "approval").await;
            let t_seen = Instant::now();
            let id = ev["details"]["approval"]["id"].as_str().expect("approval id").to_string();
            let t_post = Instant::now();
            let r = post_json(
                &format!("{control}/api/v1/approvals/{id}/decision"),
                &[("authorization", &auth)],
                &json!({"decision": "allow-once", "expected_version": 1}),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let (t_done, status) = held.await.expect("held call");
            assert_eq!(status, 200);
            if i >= 20 {
                // The first rounds warm up connections, caches and the engine.
                to_sse.push((t_seen - t0).as_secs_f64() * 1e3);
                to_release.push((t_done - t_post).as_secs_f64() * 1e3);
            }
        }
        println!("approval_roundtrip ({ROUNDS} rounds, policy + durable audit on):");
        println!(
            "  hold created -> event on SSE:     p50 {:.2} ms  p99 {:.2} ms",
            pct(&mut to_sse, 0.5),
            pct(&mut to_sse, 0.99)
        );
        println!(
            "  decision POST -> held call released: p50 {:.2} ms  p99 {:.2} ms",
            pct(&mut to_release, 0.5),
            pct(&mut to_release, 0.99)
        );
        drop(sse);
        tokio::time::sleep(Duration::from_millis(10)).await;
        sidecar.shutdown().await;
    });
}

//! A hung real OpenClaw 2026.9.6 gateway, as the sidecar sees it.
//!
//! - SIGSTOP to the gateway's process group (a hung host: sockets open, nothing answers):
//!   within 10 s the link is down, agent `main` is `offline` and `/readyz` fails on the
//!   `gateway` check; after SIGCONT the link is back within the backoff, `main` is `healthy`,
//!   and an exec approval that was pending all along is still pending, is not approved by
//!   the reconnect, and runs once a human approves it.
//! - The same with the gateway's port black-holed by a TCP relay that stops forwarding
//!   without closing anything.
//!
//! Both run the link with its default ping settings (2 s interval, 5 s pong deadline) and
//! print the detection and reconnect times of each cycle and their median.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::blackhole::Blackhole;
use testkit::http::{get, post_json};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::{bearer, SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

use super::wait_until;

/// The link's detection bound with default settings, and what the issue promises.
const DETECT_WITHIN: Duration = Duration::from_secs(10);
/// `reconnect_max_ms` of these tests, plus room for the handshake on a loaded 2-core box.
const BACKOFF_MAX_MS: u64 = 2000;
const RECONNECT_WITHIN: Duration = Duration::from_millis(BACKOFF_MAX_MS + 4000);
const CYCLES: usize = 3;

fn openclaw_config(data: SocketAddr) -> Value {
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "cb-main": {
                "baseUrl": format!("http://{data}/a/main/fake/v1"), "apiKey": "k-main", "api": "openai-completions",
                "timeoutSeconds": 120,
                "models": [{"id": "gpt-4o-mini", "name": "gpt-4o-mini", "reasoning": false, "input": ["text"],
                            "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
                            "contextWindow": 128000, "maxTokens": 4096}]
            }
        }},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": {
            "main": {"model": "cb-main/gpt-4o-mini", "modelPolicy": {"allow": ["cb-main/*"]}}
        }},
    })
}

/// A real gateway with `main` wired through the sidecar, whose link goes to the gateway or
/// through a black-hole relay in front of it.
struct Setup {
    gw: Arc<Gateway>,
    up: ScriptedUpstream,
    sidecar: clawbutler::app::Sidecar,
    control: String,
    _dir: tempfile::TempDir,
    relay: Option<Blackhole>,
}

async fn setup(test: &str, token_env: &str, throughrelay: bool) -> Option<Setup> {
    let install = find_or_skip(test)?;
    let up = ScriptedUpstream::start().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Arc::new(Gateway::start(&install, openclaw_config(data)).await);
    eprintln!("openclaw gateway ready in {:?} at {}", gw.started_in(), gw.ws_url());
    std::env::set_var(token_env, gw.token());
    let relay = if throughrelay {
        Some(Blackhole::start(format!("127.0.0.1:{}", gw.port()).parse().unwrap()).await)
    } else {
        None
    };
    let url = relay.as_ref().map_or_else(|| gw.ws_url(), Blackhole::ws_url);
    let dir = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(dir.path())
        .listen(&data.to_string(), "127.0.0.1:0")
        .upstreams(&up.base_url())
        .table(&format!(
            "[gateway]\nurl = \"{url}\"\ntoken_env = \"{token_env}\"\nreconnect_initial_ms = 500\nreconnect_max_ms = {BACKOFF_MAX_MS}"
        ))
        .build();
    let sidecar = clawbutler::app::Sidecar::start(cfg).await.expect("sidecar starts");
    let control = format!("http://{}", sidecar.control_addr);
    let link = sidecar.gateway.clone().unwrap().link().clone();
    assert!(link.wait_connected(Duration::from_secs(30)).await, "link up:\n{}", gw.log_tail(40));
    let s = Setup { gw, up, sidecar, control, _dir: dir, relay };
    s.wait_health("main", "healthy", Duration::from_secs(15)).await;
    Some(s)
}

impl Setup {
    fn link(&self) -> Arc<gateway::Link> {
        self.sidecar.gateway.clone().unwrap().link().clone()
    }

    async fn api(&self, path: &str) -> Value {
        let r = get(&format!("{}{path}", self.control), &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    }

    async fn wait_health(&self, agent: &str, want: &str, within: Duration) {
        let url = format!("{}/api/v1/agents/{agent}", self.control);
        wait_until(&format!("{agent} {want}"), within, || {
            let url = url.clone();
            async move { get(&url, &bearer(ADMIN)).await.json()["health"] == want }
        })
        .await;
    }

    /// How long until the link is down.
    async fn detect(&self, since: Instant) -> Duration {
        let link = self.link();
        while link.is_connected() {
            assert!(
                since.elapsed() < Duration::from_secs(30),
                "link still up 30 s after the hang:\n{}",
                self.gw.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        since.elapsed()
    }

    /// How long until the link is back.
    async fn reconnect(&self, since: Instant) -> Duration {
        assert!(self.link().wait_connected(Duration::from_secs(60)).await, "link back:\n{}", self.gw.log_tail(40));
        since.elapsed()
    }

    /// What an operator sees while the link is down.
    async fn assert_down_everywhere(&self, why: &str) {
        self.wait_health("main", "offline", Duration::from_secs(2)).await;
        let main = self.api("/api/v1/agents/main").await;
        assert!(main["health_reason"].as_str().unwrap().contains(why), "{main}");
        let ready = get(&format!("{}/readyz", self.control), &[]).await;
        assert_eq!(ready.status, 503, "{}", ready.text());
        let checks = ready.json()["checks"].clone();
        let gw = checks.as_array().unwrap().iter().find(|c| c["name"] == "gateway").cloned().unwrap();
        assert_eq!(gw["ok"], false, "{checks}");
        assert!(gw["detail"].as_str().unwrap().contains(why), "{gw}");
        let metrics = get(&format!("{}/metrics", self.control), &[]).await.text();
        assert!(metrics.contains("clawbutler_gateway_connected 0"));
        // Audit records are searchable once written and indexed (group commit), a moment later.
        for (query, outcome) in [("kind=health&agent=main", "offline"), ("kind=gateway", "disconnected")] {
            let url = format!("{}/api/v1/audit?{query}", self.control);
            wait_until(&format!("audit {query} {outcome}"), Duration::from_secs(5), || {
                let url = url.clone();
                async move {
                    let items = get(&url, &bearer(ADMIN)).await.json()["items"].clone();
                    items.as_array().is_some_and(|i| i.iter().any(|r| r["outcome"] == outcome))
                }
            })
            .await;
        }
    }

    async fn finish(self) {
        let Setup { gw, up, sidecar, .. } = self;
        drop(gw);
        sidecar.shutdown().await;
        up.shutdown().await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The single pending ClawButler approval of `main`, once it appears.
async fn pending_exec(s: &Setup) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body = s.api("/api/v1/approvals?status=pending&agent=main").await;
        if let Some(a) = body["items"].as_array().and_then(|i| i.first()) {
            return a.clone();
        }
        assert!(Instant::now() < deadline, "no pending approval:\n{}", s.gw.log_tail(40));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_sigstop_gateway_goes_offline_within_10s_and_comes_back_without_approving_anything() {
    let Some(s) = setup("e2e_sigstop", "CLAWBUTLER_E2E_HEALTH_STOP_TOKEN", false).await else { return };
    let link = s.link();
    let workspace = PathBuf::from(s.api("/api/v1/agents/main").await["workspace"].as_str().unwrap().to_string());

    // An exec approval that stays pending across the hang.
    let ea = link.call("exec.approvals.get", json!({})).await.expect("exec.approvals.get");
    link.call(
        "exec.approvals.set",
        json!({"file": {"version": 1, "defaults": {"security": "allowlist", "ask": "on-miss", "askFallback": "deny"}},
               "baseHash": ea["hash"]}),
    )
    .await
    .expect("exec.approvals.set");
    let gw = s.gw.clone();
    let turn =
        tokio::spawn(async move { gw.agent_turn("main", "RUN_EXEC: rm -rf junk-h && touch after-hang.txt").await });
    let a = pending_exec(&s).await;
    assert_eq!(a["kind"], "exec", "{a}");
    let id = a["id"].as_str().unwrap().to_string();

    let (mut detect, mut back) = (Vec::new(), Vec::new());
    for cycle in 0..CYCLES {
        s.gw.signal("STOP");
        let t0 = Instant::now();
        let d = s.detect(t0).await;
        eprintln!("cycle {cycle}: SIGSTOP detected after {d:?}");
        assert!(d <= DETECT_WITHIN, "a hung gateway must be noticed within 10 s, took {d:?}");
        if cycle == 0 {
            s.assert_down_everywhere("no pong").await;
            let now = s.api(&format!("/api/v1/approvals/{id}")).await;
            assert_eq!(now["status"], "pending", "the approval is not lost while the gateway hangs: {now}");
        }
        s.gw.signal("CONT");
        let t1 = Instant::now();
        let r = s.reconnect(t1).await;
        eprintln!("cycle {cycle}: link back {r:?} after SIGCONT");
        assert!(r <= RECONNECT_WITHIN, "reconnect took {r:?}");
        s.wait_health("main", "healthy", Duration::from_secs(15)).await;
        detect.push(d);
        back.push(r);
    }
    eprintln!(
        "SIGSTOP: detection p50 {:?} (all {detect:?}); reconnect after SIGCONT p50 {:?} (all {back:?})",
        median(detect.clone()),
        median(back.clone())
    );

    // Nothing was approved by the reconnects: still pending here and at the gateway.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = s.api(&format!("/api/v1/approvals/{id}")).await;
    assert_eq!(now["status"], "pending", "{now}");
    let at_gateway = link.call("exec.approval.list", json!({})).await.expect("exec.approval.list");
    let ext = now["external_id"].as_str().unwrap();
    assert!(at_gateway.to_string().contains(ext), "still pending at the gateway: {at_gateway}");
    assert!(!workspace.join("after-hang.txt").exists(), "nothing ran without a human");

    // A human approves it: it runs.
    let r = post_json(
        &format!("{}/api/v1/approvals/{id}/decision", s.control),
        &bearer(ADMIN),
        &json!({"decision": "allow-once", "expected_version": now["version"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let turn = turn.await.unwrap();
    assert!(turn.ok(), "{}", turn.describe());
    assert!(workspace.join("after-hang.txt").exists(), "the approved command ran");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_black_holed_gateway_port_goes_offline_within_10s_and_comes_back() {
    let Some(s) = setup("e2e_black_hole", "CLAWBUTLER_E2E_HEALTH_HOLE_TOKEN", true).await else { return };
    let (mut detect, mut back) = (Vec::new(), Vec::new());
    for cycle in 0..CYCLES {
        let hole = s.relay.as_ref().unwrap();
        hole.stop_forwarding();
        let t0 = Instant::now();
        let d = s.detect(t0).await;
        eprintln!("cycle {cycle}: black hole detected after {d:?}");
        assert!(d <= DETECT_WITHIN, "a black-holed gateway must be noticed within 10 s, took {d:?}");
        if cycle == 0 {
            s.assert_down_everywhere("no pong").await;
        }
        hole.resume();
        let t1 = Instant::now();
        let r = s.reconnect(t1).await;
        eprintln!("cycle {cycle}: link back {r:?} after the path reopened");
        assert!(r <= RECONNECT_WITHIN, "reconnect took {r:?}");
        s.wait_health("main", "healthy", Duration::from_secs(15)).await;
        detect.push(d);
        back.push(r);
    }
    eprintln!(
        "black hole: detection p50 {:?} (all {detect:?}); reconnect p50 {:?} (all {back:?})",
        median(detect.clone()),
        median(back.clone())
    );
    s.finish().await;
}

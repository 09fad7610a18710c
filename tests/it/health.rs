//! Health that tells the truth, as an operator and an approver see it.
//!
//! In process: an agent whose upstream fails turns `degraded` (API, SSE `health` event,
//! audit, metric) and `healthy` again when its calls succeed, with no gateway configured; a
//! frozen gateway (the fake, holding its socket open and silent) is declared dead by the
//! ping deadline, not the tick, and takes its agents `offline` with `/readyz` failing on the
//! gateway check; calls that will certainly be refused are refused before a human is asked,
//! and the approval of one that may be refused later says why.
//!
//! End to end (`e2e`): a real OpenClaw gateway frozen with SIGSTOP and black-holed by a TCP
//! relay.

mod e2e;

use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::{GatewayError, GatewaySettings, Link, LinkEvent};
use http::Method;
use serde_json::{json, Value};
use testkit::fake_gateway::{Cmd, FakeGateway, TOKEN};
use testkit::http::{get, post_json, send_streaming, StreamingResponse};
use testkit::rig::{bearer, chat, reply_text, Rig, SidecarConfig, ADMIN};
pub(crate) use testkit::wait::until as wait_until;
use tokio::sync::watch;

async fn agent(control: &str, id: &str) -> Value {
    let r = get(&format!("{control}/api/v1/agents/{id}"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The SSE stream of `health` events.
struct HealthEvents {
    res: StreamingResponse,
    buf: String,
}

impl HealthEvents {
    async fn open(control: &str) -> HealthEvents {
        let url = format!("{control}/api/v1/events?kind=health");
        let res = send_streaming(Method::GET, &url, &bearer(ADMIN), Bytes::new()).await;
        assert_eq!(res.status, 200);
        HealthEvents { res, buf: String::new() }
    }

    /// The next `health` event's record, within `wait`.
    async fn next(&mut self, wait: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if block.lines().any(|l| l == "event: health") {
                    let data = block.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                    return serde_json::from_str(data).unwrap();
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.next_chunk()).await;
            let chunk = chunk.unwrap_or_else(|_| panic!("no health event within {wait:?}")).expect("stream open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_upstream_degrades_an_agent_seen_only_on_the_data_path_and_successes_heal_it() {
    let rig = Rig::start("").await;
    let control = format!("http://{}", rig.sidecar.control_addr);
    let url = rig.url("/a/main/fake/v1/chat/completions");
    let mut events = HealthEvents::open(&control).await;

    let ok = post_json(&url, &[], &chat("gpt-4o-mini", "hello")).await;
    assert_eq!(ok.status, 200);
    let list = get(&rig.control("/api/v1/agents"), &bearer(ADMIN)).await.json();
    assert_eq!(list["gateway"]["configured"], false);
    assert_eq!(list["items"][0]["id"], "main", "an agent seen only on the data path is listed: {list}");
    assert_eq!(list["items"][0]["health"], "healthy");

    for i in 0..3 {
        let r = post_json(&url, &[], &chat("gpt-4o-mini", &format!("FAIL500 try {i}"))).await;
        assert_eq!(r.status, 500, "the upstream's error passes through");
    }
    let ev = events.next(Duration::from_secs(5)).await;
    assert_eq!((ev["agent"].as_str(), ev["outcome"].as_str()), (Some("main"), Some("degraded")), "{ev}");
    let main = agent(&control, "main").await;
    assert_eq!(main["health"], "degraded", "{main}");
    let reason = main["health_reason"].as_str().unwrap();
    assert!(reason.contains("3 of its last 4 calls failed") && reason.contains("HTTP 500"), "{reason}");
    assert!(main["health_since"].as_str().is_some_and(|s| s.starts_with("20")), "{main}");
    assert!(rig.metrics().await.contains("clawbutler_agents{health=\"degraded\"} 1"));

    for i in 0..3 {
        let r = post_json(&url, &[], &chat("gpt-4o-mini", &format!("fine again {i}"))).await;
        assert_eq!(r.status, 200);
    }
    let ev = events.next(Duration::from_secs(5)).await;
    assert_eq!(ev["outcome"], "healthy", "{ev}");
    assert!(ev["reason"].as_str().unwrap().contains("last 3 calls succeeded"), "{ev}");
    assert_eq!(agent(&control, "main").await["health"], "healthy");
    // Searchable once indexed, a moment after the event.
    wait_until("two health records", Duration::from_secs(5), || async {
        rig.audit("kind=health&agent=main").await.len() >= 2
    })
    .await;
    let records = rig.audit("kind=health&agent=main").await;
    assert_eq!(records.len(), 2, "one audit record per change: {records:?}");
    assert!(rig.metrics().await.contains("clawbutler_agents{health=\"healthy\"} 1"));
}

fn fast_settings() -> GatewaySettings {
    GatewaySettings {
        reconnect_initial_ms: 100,
        reconnect_max_ms: 400,
        request_timeout_ms: 300,
        ping_interval_ms: 100,
        pong_timeout_ms: 400,
        token_env: "FAKE_GATEWAY_TOKEN".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_frozen_gateway_is_declared_dead_by_the_pong_deadline_not_the_tick() {
    let gw = FakeGateway::start().await;
    // Ticks every minute: only the pings can notice a hang within a second.
    gw.shared.tick_ms.store(60_000, std::sync::atomic::Ordering::SeqCst);
    let metrics = prometheus::Registry::new();
    let link = Link::new(&fast_settings(), &gw.url(), Some(TOKEN.into()), None, &metrics).unwrap();
    let mut events = link.subscribe();
    let (_stop, rx) = watch::channel(false);
    link.spawn(rx);
    assert!(link.wait_connected(Duration::from_secs(5)).await);

    // Answered pings keep it up well past several pong deadlines.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(link.is_connected() && gw.sessions() == 1, "an answering gateway stays linked");

    // A request with no answer fails at its deadline, naming the method; pings still answered.
    let t = Instant::now();
    match link.call("never", json!({})).await {
        Err(GatewayError::Timeout { method, .. }) => assert_eq!(method, "never"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2), "request deadline kept: {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(link.is_connected(), "a slow method is not a dead link");

    gw.cmd(Cmd::Freeze);
    let frozen = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Ok(LinkEvent::Disconnected)) => break,
            Ok(Ok(_)) => {}
            other => panic!("no disconnect after the freeze: {other:?}"),
        }
    }
    let after = frozen.elapsed();
    eprintln!("frozen fake gateway declared dead after {after:?} (ping 100 ms, pong deadline 400 ms)");
    assert!(after >= Duration::from_millis(400) && after < Duration::from_millis(2000), "{after:?}");
    assert!(link.last_error().unwrap().contains("no pong within 400 ms"), "{:?}", link.last_error());
    // The fake serves new connections: the link comes back on its own.
    assert!(link.wait_connected(Duration::from_secs(5)).await);
    assert_eq!(gw.sessions(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_gateway_takes_its_agents_offline_and_readyz_names_the_gateway() {
    const ENV: &str = "HEALTH_FAKE_GATEWAY_TOKEN";
    std::env::set_var(ENV, TOKEN);
    let gw = FakeGateway::start().await;
    gw.shared.tick_ms.store(60_000, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    // The first reconnect waits >= 1.5 s, so the down state can be read before it is back.
    let cfg = SidecarConfig::new(dir.path())
        .upstreams("http://127.0.0.1:9")
        .table(&format!(
            "[gateway]\nurl = \"{}\"\ntoken_env = \"{ENV}\"\nreconnect_initial_ms = 3000\nreconnect_max_ms = 4000\n\
             ping_interval_ms = 100\npong_timeout_ms = 500",
            gw.url()
        ))
        .build();
    let sidecar = clawbutler::app::Sidecar::start(cfg).await.unwrap();
    let control = format!("http://{}", sidecar.control_addr);
    let link = sidecar.gateway.clone().unwrap().link().clone();
    assert!(link.wait_connected(Duration::from_secs(5)).await);
    wait_until("main listed", Duration::from_secs(5), || async {
        get(&format!("{control}/api/v1/agents/main"), &bearer(ADMIN)).await.status == 200
    })
    .await;
    assert_eq!(agent(&control, "main").await["health"], "healthy");
    let mut events = HealthEvents::open(&control).await;

    gw.cmd(Cmd::Freeze);
    let ev = events.next(Duration::from_secs(5)).await;
    assert_eq!((ev["agent"].as_str(), ev["outcome"].as_str()), (Some("main"), Some("offline")), "{ev}");
    assert!(ev["reason"].as_str().unwrap().contains("no pong"), "{ev}");
    let main = agent(&control, "main").await;
    assert_eq!(main["health"], "offline");
    let ready = get(&format!("{control}/readyz"), &[]).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let check = ready.json()["checks"].as_array().unwrap().iter().find(|c| c["name"] == "gateway").cloned().unwrap();
    assert_eq!(check["ok"], false);
    assert!(check["detail"].as_str().unwrap().contains("no pong"), "{check}");
    let metrics = get(&format!("{control}/metrics"), &[]).await.text();
    assert!(metrics.contains("clawbutler_gateway_connected 0"));
    let audit_url = format!("{control}/api/v1/audit?kind=gateway");
    wait_until("the disconnect audited with its reason", Duration::from_secs(5), || {
        let url = audit_url.clone();
        async move {
            let r = get(&url, &bearer(ADMIN)).await.json();
            let down = r["items"].as_array().unwrap().iter().find(|i| i["outcome"] == "disconnected").cloned();
            down.is_some_and(|d| d["reason"].as_str().unwrap_or_default().contains("no pong"))
        }
    })
    .await;

    // It reconnects and re-reads the roster: healthy again.
    let ev = events.next(Duration::from_secs(10)).await;
    assert_eq!(ev["outcome"], "healthy", "{ev}");
    assert_eq!(get(&format!("{control}/readyz"), &[]).await.status, 200);
    sidecar.shutdown().await;
}

/// The held-call rig: budgets for `rich` (tight), `broke` (limit 0: its breaker is open).
/// `needs-approval-priced` and `spendy` cost $1 per output token, nothing for input.
const BUDGETS: &str = "[prices.\"needs-approval-priced\"]\ninput = 0.0\noutput = 1000000.0\n\
    [prices.\"spendy\"]\ninput = 0.0\noutput = 1000000.0\n\
    [[budgets]]\nscope = \"agent:rich\"\nwindow = \"daily\"\nlimit_usd = 10.0\n\
    [[budgets]]\nscope = \"agent:broke\"\nwindow = \"daily\"\nlimit_usd = 0.0\n";

fn capped(model: &str, prompt: &str, max_tokens: u64) -> Value {
    json!({"model": model, "max_tokens": max_tokens, "stream": false, "messages": [{"role": "user", "content": prompt}]})
}

/// A call that must be answered at once (a held one would wait for a human).
async fn at_once(rig: &Rig, agent: &str, body: Value) -> testkit::http::HttpResponse {
    let url = rig.url(&format!("/a/{agent}/fake/v1/chat/completions"));
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), post_json(&url, &[], &body))
        .await
        .unwrap_or_else(|_| panic!("{agent}'s call was held instead of refused: {body}"));
    eprintln!("{agent}: refused in {:?}", t.elapsed());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certain_refusals_come_before_holds_and_approvals_show_what_may_still_refuse() {
    let rig = Rig::holding("", BUDGETS).await;
    let approvals = |agent: &str| {
        let url = rig.control(&format!("/api/v1/approvals?agent={agent}"));
        async move { get(&url, &bearer(ADMIN)).await.json()["items"].as_array().cloned().unwrap_or_default() }
    };

    // An unpriced model under a budget: refused with the budget's reason, nobody asked.
    let r = at_once(&rig, "rich", capped("needs-approval-unpriced", "hello", 5)).await;
    assert_eq!(r.header("x-clawbutler-action"), Some("deny"));
    assert!(reply_text(&r.json()).contains("has no price"), "{}", r.text());
    assert!(approvals("rich").await.is_empty(), "no approval for a call that cannot go ahead");

    // A worst case above the budget's whole limit ($11 > $10): it can never fit.
    let r = at_once(&rig, "rich", capped("needs-approval-priced", "hello", 11)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("daily limit reached"), "{}", r.text());
    assert!(approvals("rich").await.is_empty());

    // An open breaker, and a killed agent.
    let r = at_once(&rig, "broke", capped("needs-approval-priced", "hello", 1)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let k = post_json(&rig.control("/api/v1/agents/stopped/kill"), &bearer(ADMIN), &json!({"reason": "runaway"})).await;
    assert_eq!(k.status, 200, "{}", k.text());
    let r = at_once(&rig, "stopped", chat("needs-approval-1", "hello")).await;
    assert!(reply_text(&r.json()).contains("kill switch"), "{}", r.text());
    for a in ["broke", "stopped"] {
        assert!(approvals(a).await.is_empty(), "no approval for {a}");
    }

    // Spend about half: a held call for the rest and one dollar more would not fit now, but
    // may once the window resets or the budget is raised. It is held, and the approval says
    // why it may still be refused.
    let spend = post_json(&rig.url("/a/rich/fake/v1/chat/completions"), &[], &capped("spendy", "spend", 9)).await;
    assert_eq!(spend.status, 200, "{}", spend.text());
    let b = get(&rig.control("/api/v1/budgets/agent:rich@daily"), &bearer(ADMIN)).await.json();
    let spent = b["spent_usd"].as_f64().unwrap();
    assert!((1.0..9.0).contains(&spent), "spent {spent}");
    let cap = (10.0 - spent).floor() as u64 + 1;
    let held = rig.url("/a/rich/fake/v1/chat/completions");
    let call = tokio::spawn(async move { post_json(&held, &[], &capped("needs-approval-priced", "tight", cap)).await });
    let a = rig.wait_pending("rich", 1).await.remove(0);
    let c = &a["cautions"][0];
    assert_eq!((c["kind"].as_str(), c["budget"].as_str()), (Some("budget"), Some("agent:rich@daily")), "{a}");
    assert_eq!(c["used_pct"].as_f64().unwrap(), (spent * 100.0 / 10.0 * 10.0).round() / 10.0, "{a}");
    assert!(c["message"].as_str().unwrap().contains("may refuse"), "{a}");
    // Approved, it is then refused by the budget, as the caution said it might be.
    let d = rig
        .decide(
            ADMIN,
            a["id"].as_str().unwrap(),
            &json!({"decision": "allow-once", "expected_version": a["version"]}),
            None,
        )
        .await;
    assert_eq!(d.status, 200, "{}", d.text());
    assert_eq!(call.await.unwrap().status, 429);

    // Held, then the agent is killed: the approval is denied and the call refused with the
    // kill's reason; nobody is left to approve a call that cannot go ahead.
    let late = rig.call("late", "needs-approval-1", "wait for me");
    let a = rig.wait_pending("late", 1).await.remove(0);
    let k = post_json(&rig.control("/api/v1/agents/late/kill"), &bearer(ADMIN), &json!({"reason": "stop now"})).await;
    assert_eq!(k.status, 200);
    let r = tokio::time::timeout(Duration::from_secs(5), late).await.expect("answered at once").unwrap();
    assert!(reply_text(&r.json()).contains("stop now"), "{}", r.text());
    let now = get(&rig.control(&format!("/api/v1/approvals/{}", a["id"].as_str().unwrap())), &bearer(ADMIN)).await;
    assert_eq!(now.json()["status"], "denied", "{}", now.text());

    // An upstream whose calls fail: the approval of a call to it says so.
    for i in 0..3 {
        let r = post_json(
            &rig.url("/a/flaky/fake/v1/chat/completions"),
            &[],
            &chat("gpt-4o-mini", &format!("FAIL500 {i}")),
        )
        .await;
        assert_eq!(r.status, 500);
    }
    let held = rig.call("other", "needs-approval-1", "over a failing upstream");
    let a = rig.wait_pending("other", 1).await.remove(0);
    let c = a["cautions"].as_array().unwrap().iter().find(|c| c["kind"] == "upstream").cloned();
    let c = c.unwrap_or_else(|| panic!("upstream caution: {a}"));
    assert_eq!((c["upstream"].as_str(), c["failed"].as_u64()), (Some("fake"), Some(3)), "{c}");
    let d = rig
        .decide(ADMIN, a["id"].as_str().unwrap(), &json!({"decision": "deny", "expected_version": a["version"]}), None)
        .await;
    assert_eq!(d.status, 200, "{}", d.text());
    assert!(held.await.unwrap().status.is_success());
}

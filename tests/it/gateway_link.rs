//! The gateway link's supervision against a fake OpenClaw gateway started in the test.
//!
//! The fake (`gateway_link/fake.rs`, a tokio-tungstenite server on 127.0.0.1:0) speaks enough
//! of protocol v4: it sends `connect.challenge`, checks the `connect` request (client id, mode,
//! role, scopes, caps, token), answers `hello-ok` with a short `policy.tickIntervalMs`, ticks,
//! answers requests (some out of order, `agent` twice) and can be told to stop ticking, push
//! raw frames, close with a code, drop TCP connections right after accepting them, or stop
//! listening. Every duration is shortened through `GatewaySettings` and `tickIntervalMs`, so
//! nothing waits for real-world timeouts. Timing assertions use lower bounds the link
//! guarantees (a backoff delay is at least half its ceiling) and generous upper bounds, since
//! debug builds share 2 cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::{GatewayError, GatewaySettings, Link, LinkEvent};
use serde_json::{json, Value};
use testkit::fake_gateway::{event, Cmd, FakeGateway, Mode, TICK_MS, TOKEN};
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message;

/// A running link under test.
struct Client {
    link: Arc<Link>,
    metrics: prometheus::Registry,
    events: broadcast::Receiver<LinkEvent>,
    _stop: watch::Sender<bool>,
}

fn settings(initial_ms: u64, max_ms: u64) -> GatewaySettings {
    GatewaySettings {
        reconnect_initial_ms: initial_ms,
        reconnect_max_ms: max_ms,
        request_timeout_ms: 5_000,
        max_frame_bytes: 64 * 1024,
        token_env: "FAKE_GATEWAY_TOKEN".into(),
        ..Default::default()
    }
}

fn start_link(gw: &FakeGateway, token: &str, s: GatewaySettings) -> Client {
    let metrics = prometheus::Registry::new();
    let link = Link::new(&s, &gw.url(), Some(token.into()), None, &metrics).unwrap();
    let events = link.subscribe();
    let (stop, rx) = watch::channel(false);
    link.spawn(rx);
    Client { link, metrics, events, _stop: stop }
}

impl Client {
    fn gauge(&self) -> f64 {
        let fams = self.metrics.gather();
        let fam = fams.iter().find(|f| f.name() == "clawbutler_gateway_connected").expect("gauge registered");
        fam.get_metric()[0].get_gauge().get_value()
    }

    /// The next event matching `want`, skipping others; panics after `within`.
    async fn next_event(
        &mut self,
        what: &str,
        within: Duration,
        mut want: impl FnMut(&LinkEvent) -> bool,
    ) -> LinkEvent {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => panic!("no {what} within {within:?}"),
                Ok(Ok(e)) if want(&e) => return e,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("event stream: {e}"),
            }
        }
    }

    async fn connected(&mut self) {
        self.next_event("Connected", Duration::from_secs(5), |e| matches!(e, LinkEvent::Connected)).await;
    }

    async fn disconnected(&mut self, within: Duration) {
        self.next_event("Disconnected", within, |e| matches!(e, LinkEvent::Disconnected)).await;
    }
}

async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn concurrent_requests_answered_out_of_order_each_get_their_own_answer() {
    let gw = FakeGateway::start().await;
    let mut c = start_link(&gw, TOKEN, settings(50, 400));
    c.connected().await;
    assert!(gw.shared.rejected.lock().unwrap().is_empty(), "connect accepted as gateway-client/backend");

    let call = |tag: &'static str, delay: u64| {
        let link = c.link.clone();
        async move { link.call("echo", json!({"tag": tag, "delay_ms": delay})).await }
    };
    let (slow, mid, fast) = tokio::join!(call("slow", 300), call("mid", 150), call("fast", 0));
    assert_eq!(gw.shared.answered.lock().unwrap().clone(), ["fast", "mid", "slow"], "the fake answered out of order");
    assert_eq!(slow.unwrap()["tag"], "slow");
    assert_eq!(mid.unwrap()["tag"], "mid");
    assert_eq!(fast.unwrap()["tag"], "fast");

    let err = c.link.call("fail", json!({})).await.unwrap_err();
    match err {
        GatewayError::Rpc { method, error } => {
            assert_eq!((method.as_str(), error.code.as_str()), ("fail", "UNAVAILABLE"))
        }
        other => panic!("expected an Rpc error, got {other}"),
    }
}

#[tokio::test]
async fn a_method_that_answers_twice_gives_call_the_ack_and_call_final_the_result() {
    let gw = FakeGateway::start().await;
    let mut c = start_link(&gw, TOKEN, settings(50, 400));
    c.connected().await;

    let fin = c.link.call_final("agent", json!({"message": "hi"}), Duration::from_secs(5)).await.unwrap();
    assert_eq!((fin["status"].as_str(), fin["result"]["text"].as_str()), (Some("ok"), Some("done")));

    // `call` is "first answer": the ack. The late final must not confuse later requests.
    let ack = c.link.call("agent", json!({"message": "hi"})).await.unwrap();
    assert_eq!(ack["status"], "accepted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let next = c.link.call("echo", json!({"tag": "after"})).await.unwrap();
    assert_eq!(next["tag"], "after");
    assert!(c.link.is_connected());
}

#[tokio::test]
async fn silent_gateway_is_declared_dead_within_two_ticks_then_reconnected() {
    let gw = FakeGateway::start().await;
    // The first reconnect waits >= 150 ms, so the gauge can be read while the link is down.
    let mut c = start_link(&gw, TOKEN, settings(300, 600));
    c.connected().await;
    assert_eq!(c.gauge(), 1.0);

    // While ticks flow the link stays up well past 2 x tickIntervalMs.
    tokio::time::sleep(Duration::from_millis(5 * TICK_MS)).await;
    assert!(c.link.is_connected() && gw.sessions() == 1, "ticking link stays up");

    gw.cmd(Cmd::StopTicks);
    let stopped = Instant::now();
    c.disconnected(Duration::from_secs(3)).await;
    let after = stopped.elapsed();
    assert_eq!(c.gauge(), 0.0, "gauge drops with the link");
    assert!(!c.link.is_connected());
    // Dead at last tick + 2 x tick; the last tick came at most one interval before the stop.
    let (lo, hi) = (Duration::from_millis(TICK_MS - 50), Duration::from_millis(2 * TICK_MS + 500));
    assert!(after >= lo && after <= hi, "declared dead {after:?} after ticks stopped (want {lo:?}..{hi:?})");
    assert!(c.link.last_error().unwrap().contains("no tick"), "{:?}", c.link.last_error());

    c.connected().await;
    assert_eq!((gw.sessions(), c.gauge()), (2, 1.0));
    wait_until("the dead socket closed by the link", Duration::from_secs(2), || {
        gw.shared.client_closed.lock().unwrap().contains(&1)
    })
    .await;
    assert!(c.link.last_error().is_none());
}

#[tokio::test]
async fn close_1012_fails_pending_requests_and_reconnects_after_backoff() {
    let gw = FakeGateway::start().await;
    let mut c = start_link(&gw, TOKEN, settings(200, 1000));
    c.connected().await;

    let link = c.link.clone();
    let pending = tokio::spawn(async move { link.call("never", json!({})).await });
    wait_until("the pending request reached the gateway", Duration::from_secs(2), || {
        gw.methods_in(1).contains(&"never".to_string())
    })
    .await;
    gw.cmd(Cmd::Send(event("shutdown", json!({"reason": "gateway restarting", "restartExpectedMs": 100}), Some(99))));
    gw.cmd(Cmd::Close(1012, "service restart"));
    let closed = Instant::now();

    let r = tokio::time::timeout(Duration::from_secs(2), pending).await.expect("pending request ended").unwrap();
    assert!(matches!(r, Err(GatewayError::Disconnected)), "pending request failed with Disconnected: {r:?}");
    c.disconnected(Duration::from_secs(2)).await;
    assert_eq!(c.gauge(), 0.0);
    assert!(c.link.last_error().unwrap().contains("1012"), "{:?}", c.link.last_error());
    assert!(matches!(c.link.call("echo", json!({})).await, Err(GatewayError::NotConnected)));

    c.connected().await;
    let second = gw.accepted()[1];
    // The first delay after a good session is in [initial/2, initial].
    assert!(second.duration_since(closed) >= Duration::from_millis(100), "reconnected only after the backoff delay");
    assert_eq!((gw.sessions(), c.gauge()), (2, 1.0));
    c.link.call("agents.list", json!({})).await.unwrap();
    assert_eq!(gw.methods_in(2), ["agents.list"]);
}

#[tokio::test]
async fn refused_connections_are_retried_with_growing_capped_backoff() {
    let gw = FakeGateway::start().await;
    let (initial, max) = (40u64, 160u64);
    let mut c = start_link(&gw, TOKEN, settings(initial, max));
    c.connected().await;

    // Phase 1: the gateway accepts TCP and drops it, so each attempt is counted.
    gw.set_mode(Mode::DropTcp);
    gw.cmd(Cmd::Close(1012, "service restart"));
    c.disconnected(Duration::from_secs(2)).await;
    // Capped, 9 attempts take about 1.2 s; uncapped, the last gaps alone would be >= 2.5 + 5 s.
    wait_until("9 refused attempts", Duration::from_secs(6), || gw.accepted().len() >= 10).await;
    gw.set_mode(Mode::Down);
    let attempts = gw.accepted()[1..10].to_vec();
    for (i, w) in attempts.windows(2).enumerate() {
        // Gap i follows failure i+1: its ceiling is min(initial x 2^(i+1), max), its delay >= half that.
        let ceiling = (initial << (i + 1)).min(max);
        let gap = w[1].duration_since(w[0]);
        assert!(gap >= Duration::from_millis(ceiling / 2), "gap {i} = {gap:?} below half of {ceiling} ms");
        // Loose: scheduling on a loaded 2-core box; uncapped, gap 7 would be >= 5 s.
        assert!(gap <= Duration::from_millis(ceiling + 1500), "gap {i} = {gap:?} is not capped at {max} ms");
    }
    assert!(!c.link.is_connected() && c.gauge() == 0.0);

    // Phase 2: nothing listens (connection refused); the link keeps trying and comes back.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(c.link.last_error().unwrap().starts_with("connect failed"), "{:?}", c.link.last_error());
    gw.set_mode(Mode::Serve);
    c.connected().await;
    assert_eq!((gw.sessions(), c.gauge()), (2, 1.0));
}

#[tokio::test]
async fn oversized_malformed_binary_and_unexpected_frames_are_dropped_and_the_link_stays_up() {
    let gw = FakeGateway::start().await;
    *gw.shared.noise_before_challenge.lock().unwrap() = true;
    let mut c = start_link(&gw, TOKEN, settings(50, 400));
    c.connected().await;

    let big = event("big", json!({"pad": "x".repeat(100 * 1024)}), Some(50));
    gw.cmd(Cmd::Send(big));
    for bad in [
        "{not json",
        "[1,2]",
        "\"just a string\"",
        r#"{"type":"req","id":"1","method":"agents.list"}"#,
        r#"{"type":"hello","id":"1"}"#,
        r#"{"type":"res","id":"1"}"#,
        r#"{"type":"res","ok":true}"#,
        r#"{"type":"res","id":"cb-9999","ok":true,"payload":{}}"#,
        r#"{"type":"event","payload":{}}"#,
        r#"{"type":"event","event":"tick","seq":-1}"#,
        &format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
    ] {
        gw.send_text(bad);
    }
    gw.cmd(Cmd::Send(Message::binary(vec![0u8, 159, 146, 150])));
    gw.cmd(Cmd::Send(Message::Ping(vec![1, 2, 3].into())));
    gw.cmd(Cmd::Send(event("marker", json!({"n": 1}), Some(51))));

    // Events arrive in order: the marker proves everything before it was read, and only
    // well-formed events within the size limit were passed on.
    let mut seen = Vec::new();
    c.next_event("marker", Duration::from_secs(5), |e| {
        if let LinkEvent::Event(ev) = e {
            seen.push(ev.event.clone());
        }
        matches!(e, LinkEvent::Event(ev) if ev.event == "marker")
    })
    .await;
    assert!(!seen.iter().any(|e| e == "big"), "oversized event dropped: {seen:?}");
    assert!(c.link.is_connected() && gw.sessions() == 1, "still the first session");
    assert_eq!(c.link.call("echo", json!({"tag": "alive"})).await.unwrap()["tag"], "alive");
    assert!(c.events.try_recv().map_or(true, |e| !matches!(e, LinkEvent::Disconnected)));
    wait_until("pong", Duration::from_secs(2), || gw.shared.pongs.lock().unwrap().contains(&vec![1, 2, 3])).await;
}

#[tokio::test]
async fn wrong_token_is_reported_clearly_and_retried_with_backoff() {
    let gw = FakeGateway::start().await;
    let c = start_link(&gw, "not-the-token", settings(100, 400));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let rejected = gw.shared.rejected.lock().unwrap().clone();
    assert!(rejected.iter().all(|r| r.starts_with("AUTH_TOKEN_MISMATCH")), "{rejected:?}");
    // Delays 50-100, 100-200, 200-400, 200-400 ms...: at most ~8 attempts in 1.5 s, a hot loop
    // would make hundreds.
    assert!((2..=9).contains(&rejected.len()), "{} attempts in 1.5 s", rejected.len());
    let attempts = gw.accepted();
    for w in attempts.windows(2) {
        assert!(w[1].duration_since(w[0]) >= Duration::from_millis(50), "attempts spaced by the backoff");
    }
    let why = c.link.last_error().expect("failure recorded");
    for part in ["AUTH_TOKEN_MISMATCH", "token mismatch", "$FAKE_GATEWAY_TOKEN"] {
        assert!(why.contains(part), "'{why}' names {part}");
    }
    assert!(!c.link.is_connected() && c.gauge() == 0.0 && gw.sessions() == 0);

    // It keeps retrying: once the gateway accepts that token, the link comes up.
    *gw.shared.token.lock().unwrap() = "not-the-token".into();
    assert!(c.link.wait_connected(Duration::from_secs(3)).await);
    assert!(c.link.last_error().is_none() && c.gauge() == 1.0);
}

/// The whole sidecar over the fake: state is re-read after a reconnect and nothing is
/// auto-approved because of it; `/readyz` and the gauge follow the link.
#[tokio::test]
async fn sidecar_rereads_agents_and_reconciles_exec_approvals_after_reconnect() {
    use testkit::http::get;
    use testkit::rig::{Rig, ADMIN};

    const ENV: &str = "CLAWBUTLER_TEST_GATEWAY_LINK_TOKEN";
    std::env::set_var(ENV, TOKEN);
    let gw = FakeGateway::start().await;
    *gw.shared.approvals.lock().unwrap() = json!([{"id": "ap-1", "approvalKind": "exec", "createdAtMs": 1,
        "request": {"command": "sudo ls", "commandArgv": ["sudo", "ls"], "agentId": "main",
                    "sessionKey": "agent:main:main", "runId": "run-1", "toolCallId": "call-1"}}]);
    let rig = Rig::start(&format!(
        "[gateway]\nurl = \"{}\"\ntoken_env = \"{ENV}\"\nreconnect_initial_ms = 100\nreconnect_max_ms = 400\n",
        gw.url()
    ))
    .await;
    let auth = format!("Bearer {ADMIN}");
    let api = |path: &str| {
        let (url, auth) = (rig.control(path), auth.clone());
        async move { get(&url, &[("authorization", auth.as_str())]).await.json() }
    };
    let agent_ids = |v: Value| -> Vec<String> {
        v["items"].as_array().into_iter().flatten().filter_map(|a| a["id"].as_str().map(String::from)).collect()
    };
    let pending_exec = || async {
        let v = api("/api/v1/approvals?status=pending&agent=main").await;
        v["items"].as_array().map_or(0, Vec::len)
    };

    wait_until("first session re-read", Duration::from_secs(10), || {
        let m = gw.methods_in(1);
        m.contains(&"agents.list".into()) && m.contains(&"exec.approval.list".into())
    })
    .await;
    assert_eq!(agent_ids(api("/api/v1/agents").await), ["main"]);
    for _ in 0..200 {
        if pending_exec().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(pending_exec().await, 1, "'sudo ls' is held in the inbox");
    assert!(rig.metrics().await.contains("clawbutler_gateway_connected 1"));

    // The gateway restarts: closes with 1012 and refuses connections for a while.
    *gw.shared.agents.lock().unwrap() = json!([{"id": "main"}, {"id": "ops", "name": "Ops"}]);
    gw.set_mode(Mode::Down);
    gw.cmd(Cmd::Close(1012, "service restart"));
    let mut down_seen = false;
    for _ in 0..200 {
        let r = get(&rig.control("/readyz"), &[]).await;
        if r.status == 503 {
            let body = r.json();
            let check = body["checks"].as_array().unwrap().iter().find(|c| c["name"] == "gateway").unwrap().clone();
            assert_eq!(check["ok"], false);
            down_seen = rig.metrics().await.contains("clawbutler_gateway_connected 0");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(down_seen, "/readyz and the gauge report the link down");
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.set_mode(Mode::Serve);

    wait_until("second session re-read", Duration::from_secs(10), || {
        let m = gw.methods_in(2);
        m.contains(&"agents.list".into()) && m.contains(&"exec.approval.list".into())
    })
    .await;
    for _ in 0..200 {
        if agent_ids(api("/api/v1/agents").await).len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(agent_ids(api("/api/v1/agents").await), ["main", "ops"]);
    assert_eq!(get(&rig.control("/readyz"), &[]).await.status, 200);
    assert_eq!(pending_exec().await, 1, "the held approval stays held, not duplicated");
    let resolves: Vec<String> = gw.all_methods().into_iter().filter(|m| m == "exec.approval.resolve").collect();
    assert!(resolves.is_empty(), "nothing resolved because of the reconnect: {resolves:?}");
    rig.sidecar.shutdown().await;
}

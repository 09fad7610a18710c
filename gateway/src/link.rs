//! The supervised WebSocket link to one OpenClaw gateway (protocol v4).
//!
//! One supervisor task owns the connection: connect, wait for `connect.challenge`, send
//! `connect` as `gateway-client`/`backend` (optionally signed with the device key), read
//! `hello-ok`, then pump frames until the socket closes, a read fails, a ping goes
//! unanswered past `pong_timeout_ms` (`liveness.rs`: a hung gateway or a black-holed network
//! sends no FIN and no close frame), or no `tick` arrived for 2 x `tickIntervalMs` (a
//! backstop). Then every pending request fails with `Disconnected`, the
//! `clawbutler_gateway_connected` gauge drops to 0, the socket is dropped, and it reconnects
//! after a capped, jittered exponential backoff (or the gateway's `retryAfterMs`). Nothing is
//! replayed: consumers get `LinkEvent::Connected` and re-read what they need.
//!
//! Requests are correlated by id only; answers may come out of order, and `call_final`
//! waits past an `accepted` ack for the second answer with the same id. Every request has a
//! deadline; one that passes it also makes the link ping at once, so a gateway that stopped
//! answering is told apart from one that is merely slow to answer that method.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use prometheus::{IntGauge, Opts};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use super::backoff::Backoff;
use super::device::{Device, SignInput};
use super::frame::{self, Event, Frame, RpcError};
use super::liveness::{Due, Liveness};
use super::settings::GatewaySettings;
use super::GatewayError;

/// Client identity the gateway keeps scopes for on loopback without a device (reference §2.3).
pub const CLIENT_ID: &str = "gateway-client";
/// See [`CLIENT_ID`].
pub const CLIENT_MODE: &str = "backend";
/// Scopes requested on connect.
pub const SCOPES: [&str; 4] = ["operator.read", "operator.write", "operator.admin", "operator.approvals"];
/// Capabilities advertised (approval events are only delivered to approval-capable clients).
pub const CAPS: [&str; 2] = ["approvals", "exec-approvals"];

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_TICK_MS: u64 = 30_000;

/// What consumers of the link see.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// A new session passed `hello-ok`; re-read state.
    Connected,
    /// The session ended; pending requests failed.
    Disconnected,
    /// A server event.
    Event(Arc<Event>),
}

struct Pending {
    tx: mpsc::UnboundedSender<Result<Value, RpcError>>,
}

/// The link; cheap to share behind an `Arc`.
pub struct Link {
    settings: GatewaySettings,
    url: String,
    token: Option<String>,
    device: Option<Device>,
    out: Mutex<Option<mpsc::UnboundedSender<Message>>>,
    pending: Mutex<HashMap<String, Pending>>,
    next_id: AtomicU64,
    connected: watch::Sender<bool>,
    events: broadcast::Sender<LinkEvent>,
    gauge: IntGauge,
    hello: RwLock<Option<Arc<Value>>>,
    down_since: Mutex<Option<Instant>>,
    /// Why the last connect attempt or session failed; cleared by a successful handshake.
    last_error: Mutex<Option<String>>,
    /// Woken when a request missed its deadline: the session pings at once.
    probe: tokio::sync::Notify,
}

/// How one session ended.
enum End {
    Shutdown,
    Closed(String),
}

impl Link {
    /// A link to `url` (not yet running; see [`Link::spawn`]).
    pub fn new(
        settings: &GatewaySettings,
        url: &str,
        token: Option<String>,
        device: Option<Device>,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Link>, GatewayError> {
        let gauge = IntGauge::with_opts(Opts::new(
            "clawbutler_gateway_connected",
            "1 while the OpenClaw gateway link is up (past hello-ok), else 0",
        ))?;
        registry.register(Box::new(gauge.clone()))?;
        let (connected, _) = watch::channel(false);
        let (events, _) = broadcast::channel(4096);
        Ok(Arc::new(Link {
            settings: settings.clone(),
            url: url.to_string(),
            token,
            device,
            out: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            connected,
            events,
            gauge,
            hello: RwLock::new(None),
            down_since: Mutex::new(Some(Instant::now())),
            last_error: Mutex::new(None),
            probe: tokio::sync::Notify::new(),
        }))
    }

    /// The gateway URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the link is up now.
    pub fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }

    /// How long the link has been down (None while up).
    pub fn down_for(&self) -> Option<Duration> {
        lock(&self.down_since).map(|t| t.elapsed())
    }

    /// Why the link is (or last was) down: the last failed connect or lost session, `None`
    /// after a successful handshake. Shown in `/readyz` so a wrong token is visible there.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    /// The last `hello-ok` payload.
    pub fn hello(&self) -> Option<Arc<Value>> {
        self.hello.read().map(|h| h.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LinkEvent> {
        self.events.subscribe()
    }

    /// Wait until connected (true) or `timeout` passes (false).
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c)).await.is_ok_and(|r| r.is_ok())
    }

    /// One request, first answer.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, GatewayError> {
        self.request(method, params, false, Duration::from_millis(self.settings.request_timeout_ms)).await
    }

    /// One request whose method answers twice (`accepted`, then the result): the final answer.
    pub async fn call_final(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, GatewayError> {
        self.request(method, params, true, timeout).await
    }

    async fn request(
        &self,
        method: &str,
        params: Value,
        expect_final: bool,
        timeout: Duration,
    ) -> Result<Value, GatewayError> {
        let id = format!("cb-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, mut rx) = mpsc::unbounded_channel();
        lock(&self.pending).insert(id.clone(), Pending { tx });
        let _guard = PendingGuard { link: self, id: id.clone() };
        let sent = lock(&self.out)
            .as_ref()
            .is_some_and(|out| out.send(Message::text(frame::request(&id, method, &params))).is_ok());
        if !sent {
            return Err(GatewayError::NotConnected);
        }
        let wait = async {
            loop {
                match rx.recv().await {
                    None => return Err(GatewayError::Disconnected),
                    Some(Err(e)) => return Err(GatewayError::Rpc { method: method.to_string(), error: Box::new(e) }),
                    Some(Ok(v)) => {
                        let ack = v.get("status").and_then(Value::as_str) == Some("accepted");
                        if !(expect_final && ack) {
                            return Ok(v);
                        }
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            self.probe.notify_one();
            GatewayError::Timeout { method: method.to_string(), after: timeout }
        })?
    }

    /// Run the supervisor until `shutdown` turns true.
    pub fn spawn(self: &Arc<Self>, mut shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let link = self.clone();
        tokio::spawn(async move {
            let mut backoff = Backoff::new(link.settings.reconnect_initial_ms, link.settings.reconnect_max_ms);
            loop {
                if *shutdown.borrow() {
                    break;
                }
                let mut retry_after = None;
                let failure = match link.handshake().await {
                    Ok((ws, tick_ms)) => {
                        backoff.reset();
                        *lock(&link.last_error) = None;
                        let end = link.session(ws, tick_ms, &mut shutdown).await;
                        match end {
                            End::Shutdown => break,
                            End::Closed(why) => {
                                tracing::warn!(url = %link.url, why = %why, "gateway link lost");
                                // The reason first, so whoever sees the link go down can say why.
                                *lock(&link.last_error) = Some(format!("link lost: {why}"));
                                link.mark_down();
                                format!("link lost: {why}")
                            }
                        }
                    }
                    Err(GatewayError::Rpc { error, .. }) => {
                        retry_after = error.retry_after_ms.map(Duration::from_millis);
                        let why = link.refusal(&error);
                        tracing::warn!(url = %link.url, error = %why, "gateway refused connect");
                        why
                    }
                    Err(e) => {
                        tracing::warn!(url = %link.url, error = %e, "gateway connect failed");
                        format!("connect failed: {e}")
                    }
                };
                *lock(&link.last_error) = Some(failure);
                let delay = backoff.next_delay();
                // The gateway's own hint (e.g. 500 ms while it starts) beats our guess.
                let delay = retry_after.map_or(delay, |r| r.max(Duration::from_millis(100)));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => break,
                }
            }
            link.mark_down();
        })
    }

    /// A refused `connect` in words an operator can act on: credential problems name the
    /// variable the token comes from, since retrying cannot fix them.
    fn refusal(&self, e: &RpcError) -> String {
        let detail = e.details.get("code").and_then(Value::as_str).unwrap_or_default();
        if detail.starts_with("AUTH_") || detail.starts_with("DEVICE_") || e.code == "NOT_PAIRED" {
            format!(
                "gateway rejected our credentials ({}): {}; check the token in ${} (or the device pairing)",
                if detail.is_empty() { &e.code } else { detail },
                e.message,
                self.settings.token_env
            )
        } else {
            format!("gateway refused connect: {e}")
        }
    }

    fn ws_config(&self) -> WebSocketConfig {
        // tungstenite's own limit would kill the connection; ours drops the one frame instead.
        let cap = self.settings.max_frame_bytes.saturating_mul(2).max(1 << 20);
        WebSocketConfig::default().max_message_size(Some(cap)).max_frame_size(Some(cap))
    }

    /// Connect and authenticate; returns the socket and the tick interval.
    async fn handshake(&self) -> Result<(Ws, u64), GatewayError> {
        let connect = tokio_tungstenite::connect_async_with_config(self.url.as_str(), Some(self.ws_config()), false);
        let (mut ws, _) = tokio::time::timeout(HANDSHAKE_TIMEOUT, connect)
            .await
            .map_err(|_| GatewayError::Handshake("timed out connecting".into()))?
            .map_err(|e| GatewayError::Handshake(e.to_string()))?;
        let max = self.settings.max_frame_bytes;
        let challenge = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            loop {
                match next_frame(&mut ws, max).await? {
                    Frame::Event(e) if e.event == "connect.challenge" => return Ok::<Value, GatewayError>(e.payload),
                    other => tracing::debug!(?other, "frame before connect.challenge dropped"),
                }
            }
        })
        .await
        .map_err(|_| GatewayError::Handshake("no connect.challenge".into()))??;
        let params = self.connect_params(&challenge);
        ws.send(Message::text(frame::request("connect", "connect", &params)))
            .await
            .map_err(|e| GatewayError::Handshake(e.to_string()))?;
        let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            loop {
                match next_frame(&mut ws, max).await? {
                    Frame::Res(r) if r.id == "connect" => {
                        return r
                            .result
                            .map_err(|error| GatewayError::Rpc { method: "connect".into(), error: Box::new(error) })
                    }
                    other => tracing::debug!(?other, "frame before hello-ok dropped"),
                }
            }
        })
        .await
        .map_err(|_| GatewayError::Handshake("no answer to connect".into()))??;
        if let (Some(dev), Some(t)) = (&self.device, hello.pointer("/auth/deviceToken").and_then(Value::as_str)) {
            if let Err(e) = dev.store_token(t) {
                tracing::warn!(error = %e, "could not persist the gateway device token");
            }
        }
        let granted: Vec<&str> = hello
            .pointer("/auth/scopes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !granted.contains(&"operator.admin") && !granted.contains(&"operator.approvals") {
            tracing::warn!(?granted, "gateway granted no approval/admin scope: kill and exec approvals will fail");
        }
        let tick = hello.pointer("/policy/tickIntervalMs").and_then(Value::as_u64).unwrap_or(DEFAULT_TICK_MS).max(1);
        match self.hello.write() {
            Ok(mut h) => *h = Some(Arc::new(hello)),
            Err(p) => *p.into_inner() = Some(Arc::new(hello)),
        }
        Ok((ws, tick))
    }

    fn connect_params(&self, challenge: &Value) -> Value {
        let nonce = challenge.get("nonce").and_then(Value::as_str).unwrap_or_default();
        let ts = challenge.get("ts").and_then(Value::as_u64).unwrap_or_default();
        let device_token = self.device.as_ref().and_then(|d| d.stored_token());
        let mut auth = serde_json::Map::new();
        if let Some(t) = &self.token {
            auth.insert("token".into(), json!(t));
        } else if let Some(t) = &device_token {
            auth.insert("deviceToken".into(), json!(t));
        }
        let mut p = json!({
            "minProtocol": 4, "maxProtocol": 4,
            "client": {"id": CLIENT_ID, "version": env!("CARGO_PKG_VERSION"), "platform": "linux",
                       "mode": CLIENT_MODE, "displayName": "ClawButler"},
            "role": "operator", "scopes": SCOPES, "caps": CAPS, "auth": auth,
        });
        if let Some(dev) = &self.device {
            let token = self.token.as_deref().or(device_token.as_deref()).unwrap_or("");
            let proof = dev.prove(&SignInput {
                client_id: CLIENT_ID,
                client_mode: CLIENT_MODE,
                role: "operator",
                scopes: &SCOPES,
                signed_at: ts,
                token,
                nonce,
                platform: "linux",
                device_family: "",
            });
            p["device"] = json!(proof);
        }
        p
    }

    async fn session(&self, ws: Ws, tick_ms: u64, shutdown: &mut watch::Receiver<bool>) -> End {
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
        *lock(&self.out) = Some(tx);
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        *lock(&self.down_since) = None;
        self.gauge.set(1);
        self.connected.send_replace(true);
        let _ = self.events.send(LinkEvent::Connected);
        tracing::info!(url = %self.url, "gateway link up");

        let dead_after = Duration::from_millis(tick_ms.saturating_mul(2));
        let mut last_tick = tokio::time::Instant::now();
        let mut live = Liveness::new(
            Duration::from_millis(self.settings.ping_interval_ms),
            Duration::from_millis(self.settings.pong_timeout_ms),
            last_tick,
        );
        let max = self.settings.max_frame_bytes;
        let end = loop {
            tokio::select! {
                _ = shutdown.changed() => break End::Shutdown,
                _ = tokio::time::sleep_until(last_tick + dead_after) => {
                    break End::Closed(format!("no tick for {} ms (dead link)", dead_after.as_millis()));
                }
                _ = tokio::time::sleep_until(live.wake_at()) => match live.due(tokio::time::Instant::now()) {
                    Due::Ping(payload) => {
                        if !self.send(Message::Ping(payload.into())) {
                            break End::Closed("writer gone".into());
                        }
                    }
                    Due::Dead(why) => break End::Closed(why),
                    Due::Nothing => {}
                },
                _ = self.probe.notified() => live.probe(tokio::time::Instant::now()),
                msg = stream.next() => {
                    live.on_frame();
                    match msg {
                        None => break End::Closed("socket ended".into()),
                        Some(Err(e)) => break End::Closed(e.to_string()),
                        Some(Ok(Message::Text(t))) => match frame::parse(t.as_str(), max) {
                            Ok(Frame::Res(r)) => self.deliver(r),
                            Ok(Frame::Event(e)) => {
                                if e.event == "tick" {
                                    last_tick = tokio::time::Instant::now();
                                }
                                let _ = self.events.send(LinkEvent::Event(Arc::new(e)));
                            }
                            Err(e) => tracing::warn!(error = %e, "gateway frame dropped"),
                        },
                        Some(Ok(Message::Close(f))) => {
                            break End::Closed(f.map_or("closed".into(), |f| format!("closed {} {}", u16::from(f.code), f.reason)));
                        }
                        Some(Ok(Message::Binary(b))) => tracing::warn!(bytes = b.len(), "binary gateway frame dropped"),
                        // Pongs (and pings, answered by tungstenite) only prove liveness.
                        Some(Ok(_)) => {}
                    }
                },
            }
        };
        *lock(&self.out) = None;
        writer.abort();
        end
    }

    /// Queue a frame for the writer; false when the session has no writer any more.
    fn send(&self, m: Message) -> bool {
        lock(&self.out).as_ref().is_some_and(|out| out.send(m).is_ok())
    }

    fn deliver(&self, r: frame::Response) {
        let ack = r.is_ack();
        let mut pending = lock(&self.pending);
        let Some(p) = pending.get(&r.id) else {
            tracing::debug!(id = %r.id, "answer to no pending request dropped");
            return;
        };
        // A sender whose caller has gone is removed; an ack keeps the entry for the final.
        if p.tx.send(r.result).is_err() || !ack {
            pending.remove(&r.id);
        }
    }

    fn mark_down(&self) {
        // The gauge first: whoever sees the link down (`/readyz`) sees the gauge at 0 too.
        self.gauge.set(0);
        let was_up = self.connected.send_replace(false);
        *lock(&self.out) = None;
        // Dropping the senders wakes every waiting caller with `Disconnected`.
        lock(&self.pending).clear();
        let mut d = lock(&self.down_since);
        if d.is_none() {
            *d = Some(Instant::now());
        }
        drop(d);
        if was_up {
            let _ = self.events.send(LinkEvent::Disconnected);
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_frame(ws: &mut Ws, max: usize) -> Result<Frame, GatewayError> {
    loop {
        match ws.next().await {
            None => return Err(GatewayError::Handshake("socket closed during handshake".into())),
            Some(Err(e)) => return Err(GatewayError::Handshake(e.to_string())),
            Some(Ok(Message::Text(t))) => match frame::parse(t.as_str(), max) {
                Ok(f) => return Ok(f),
                Err(e) => tracing::warn!(error = %e, "gateway frame dropped during handshake"),
            },
            Some(Ok(Message::Close(f))) => {
                let why = f.map_or("closed".into(), |f| format!("closed {} {}", u16::from(f.code), f.reason));
                return Err(GatewayError::Handshake(why));
            }
            Some(Ok(_)) => {}
        }
    }
}

struct PendingGuard<'a> {
    link: &'a Link,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.link.pending).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

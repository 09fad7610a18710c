//! A fake OpenClaw gateway (protocol v4) for the link tests: challenge, a checked `connect`,
//! `hello-ok` with a short tick, ticks, scripted answers, and knobs to misbehave (see
//! [`Cmd`] and [`Mode`]). It records what it saw so tests can assert on it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub const TOKEN: &str = "fake-gateway-token";
pub const TICK_MS: u64 = 200;

/// How the fake treats new TCP connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Speak the protocol.
    Serve,
    /// Accept and drop at once (counted, so backoff is observable).
    DropTcp,
    /// Not listening at all: connection refused.
    Down,
}

/// Instructions to the fake's current session.
pub enum Cmd {
    Send(Message),
    StopTicks,
    Close(u16, &'static str),
    /// Hang as a frozen process would: read nothing (so answer no ping), send nothing, keep
    /// the socket open.
    Freeze,
}

/// What the fake serves and what it saw.
pub struct Shared {
    pub token: Mutex<String>,
    pub agents: Mutex<Value>,
    pub approvals: Mutex<Value>,
    /// What `plugins.list` answers (default: no plugins).
    pub plugins: Mutex<Value>,
    /// OpenClaw's config, when a test serves one: `config.get` answers it with a hash of its
    /// revision, and `config.patch` merges a patch only on that hash (else "changed since",
    /// as the real gateway). `None` (the default): both answer a bare `ok`.
    pub config: Mutex<Option<FakeConfig>>,
    /// Send garbage before `connect.challenge` (the handshake must skip it).
    pub noise_before_challenge: Mutex<bool>,
    /// Accept time of every TCP connection.
    pub accepted: Mutex<Vec<Instant>>,
    /// Why each refused `connect` was refused.
    pub rejected: Mutex<Vec<String>>,
    /// (session number, method, params) of each request after `hello-ok`.
    pub calls: Mutex<Vec<(usize, String, Value)>>,
    /// `echo` tags in the order they were answered.
    pub answered: Mutex<Vec<String>>,
    /// Sessions the client closed (it gave up on them).
    pub client_closed: Mutex<Vec<usize>>,
    /// Pong payloads received (the real gateway drops clients that do not answer pings).
    pub pongs: Mutex<Vec<Vec<u8>>>,
    /// `policy.tickIntervalMs` sent in `hello-ok` (and the tick period); default [`TICK_MS`].
    pub tick_ms: std::sync::atomic::AtomicU64,
    /// Sessions that passed `hello-ok`.
    pub sessions: AtomicUsize,
    pub current: Mutex<Option<mpsc::UnboundedSender<Cmd>>>,
}

/// The config a fake serves, and its revision (the hash is `rev-<n>`).
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub doc: Value,
    pub rev: u64,
}

impl FakeConfig {
    pub fn hash(&self) -> String {
        format!("rev-{}", self.rev)
    }
}

/// RFC 7396 merge patch (what `config.patch` applies; `null` removes).
fn merge_patch(doc: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = json!({});
    }
    let o = doc.as_object_mut().unwrap();
    for (k, v) in p {
        if v.is_null() {
            o.remove(k);
        } else {
            merge_patch(o.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

pub struct FakeGateway {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub mode: watch::Sender<Mode>,
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            token: Mutex::new(TOKEN.into()),
            agents: Mutex::new(json!([{"id": "main", "name": "Main", "model": "fake/gpt", "workspace": "/w/main"}])),
            approvals: Mutex::new(json!([])),
            plugins: Mutex::new(json!({"plugins": []})),
            config: Mutex::new(None),
            noise_before_challenge: Mutex::new(false),
            accepted: Mutex::default(),
            rejected: Mutex::default(),
            calls: Mutex::default(),
            answered: Mutex::default(),
            client_closed: Mutex::default(),
            pongs: Mutex::default(),
            tick_ms: std::sync::atomic::AtomicU64::new(TICK_MS),
            sessions: AtomicUsize::new(0),
            current: Mutex::default(),
        });
        let (mode, rx) = watch::channel(Mode::Serve);
        tokio::spawn(accept_loop(addr, listener, shared.clone(), rx));
        FakeGateway { addr, shared, mode }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Serve `doc` as OpenClaw's config (a new revision, as an outside edit would make).
    pub fn set_config(&self, doc: Value) {
        let mut c = self.shared.config.lock().unwrap();
        let rev = c.as_ref().map_or(1, |c| c.rev + 1);
        *c = Some(FakeConfig { doc, rev });
    }

    /// The config served now.
    pub fn config(&self) -> Option<FakeConfig> {
        self.shared.config.lock().unwrap().clone()
    }

    pub fn set_mode(&self, m: Mode) {
        self.mode.send_replace(m);
    }

    pub fn cmd(&self, c: Cmd) {
        let cur = self.shared.current.lock().unwrap();
        assert!(cur.as_ref().expect("a live session").send(c).is_ok(), "session task alive");
    }

    pub fn send_text(&self, s: impl Into<String>) {
        self.cmd(Cmd::Send(Message::text(s.into())));
    }

    pub fn sessions(&self) -> usize {
        self.shared.sessions.load(Ordering::SeqCst)
    }

    pub fn accepted(&self) -> Vec<Instant> {
        self.shared.accepted.lock().unwrap().clone()
    }

    pub fn methods_in(&self, session: usize) -> Vec<String> {
        let calls = self.shared.calls.lock().unwrap();
        calls.iter().filter(|c| c.0 == session).map(|c| c.1.clone()).collect()
    }

    pub fn all_methods(&self) -> Vec<String> {
        self.shared.calls.lock().unwrap().iter().map(|c| c.1.clone()).collect()
    }
}

async fn bind_again(addr: SocketAddr) -> TcpListener {
    // SO_REUSEADDR: the port has connections in TIME_WAIT from the previous listener.
    let s = TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(true).unwrap();
    s.bind(addr).unwrap();
    s.listen(64).unwrap()
}

async fn accept_loop(addr: SocketAddr, first: TcpListener, shared: Arc<Shared>, mut mode: watch::Receiver<Mode>) {
    let mut listener = Some(first);
    loop {
        let m = *mode.borrow_and_update();
        if m == Mode::Down {
            listener = None;
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => bind_again(addr).await,
        };
        tokio::select! {
            r = l.accept() => {
                if let Ok((tcp, _)) = r {
                    shared.accepted.lock().unwrap().push(Instant::now());
                    if m == Mode::Serve {
                        tokio::spawn(session(tcp, shared.clone()));
                    }
                }
            }
            c = mode.changed() => if c.is_err() { return },
        }
        listener = Some(l);
    }
}

pub fn event(name: &str, payload: Value, seq: Option<u64>) -> Message {
    let mut e = json!({"type": "event", "event": name, "payload": payload});
    if let Some(s) = seq {
        e["seq"] = json!(s);
    }
    Message::text(e.to_string())
}

fn res_ok(id: &str, payload: Value) -> Message {
    Message::text(json!({"type": "res", "id": id, "ok": true, "payload": payload}).to_string())
}

fn res_err(id: &str, code: &str, message: &str, details: Value) -> Message {
    let error = json!({"code": code, "message": message, "details": details});
    Message::text(json!({"type": "res", "id": id, "ok": false, "error": error}).to_string())
}

/// What is wrong with a `connect` request, if anything (reference §0, §2).
fn check_connect(req: &Value, token: &str) -> Result<(), (&'static str, String)> {
    let p = &req["params"];
    let invalid = |m: String| Err(("INVALID_REQUEST", m));
    if req["type"] != "req" || req["method"] != "connect" {
        return invalid(format!("first frame must be connect: {req}"));
    }
    if p["minProtocol"].as_u64() > Some(4) || p["maxProtocol"].as_u64() < Some(4) {
        return invalid("protocol mismatch".into());
    }
    if p["client"]["id"] != "gateway-client" || p["client"]["mode"] != "backend" || p["role"] != "operator" {
        return invalid(format!("client {} / {} / role {}", p["client"]["id"], p["client"]["mode"], p["role"]));
    }
    let has = |k: &str, want: &[&str]| want.iter().all(|w| p[k].as_array().is_some_and(|a| a.contains(&json!(w))));
    if !has("scopes", &["operator.read", "operator.write", "operator.admin", "operator.approvals"]) {
        return invalid(format!("scopes {}", p["scopes"]));
    }
    if !has("caps", &["approvals", "exec-approvals"]) {
        return invalid(format!("caps {}", p["caps"]));
    }
    if p["auth"]["token"] != token {
        return Err(("AUTH_TOKEN_MISMATCH", "unauthorized: gateway token mismatch".into()));
    }
    Ok(())
}

async fn session(tcp: TcpStream, shared: Arc<Shared>) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
    let (mut sink, mut stream) = ws.split();
    if *shared.noise_before_challenge.lock().unwrap() {
        let _ = sink.send(Message::text("{garbage")).await;
        let _ = sink.send(event("tick", json!({"ts": 1}), Some(1))).await;
    }
    let challenge = json!({"nonce": "n-1", "ts": 1_795_473_282_813u64, "capabilities": []});
    let _ = sink.send(event("connect.challenge", challenge, None)).await;
    let connect: Value = match stream.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(t.as_str()).unwrap_or(Value::Null),
        _ => return,
    };
    let expected = shared.token.lock().unwrap().clone();
    if let Err((code, msg)) = check_connect(&connect, &expected) {
        shared.rejected.lock().unwrap().push(format!("{code}: {msg}"));
        let (top, details) = match code {
            "AUTH_TOKEN_MISMATCH" => ("INVALID_REQUEST", json!({"code": code, "authReason": "token_mismatch"})),
            _ => (code, json!({})),
        };
        let id = connect["id"].as_str().unwrap_or("connect");
        let _ = sink.send(res_err(id, top, &msg, details)).await;
        let close = CloseFrame { code: 1008.into(), reason: msg.into() };
        let _ = sink.send(Message::Close(Some(close))).await;
        return;
    }
    let hello = json!({"type": "hello-ok", "protocol": 4, "server": {"version": "fake"},
        "auth": {"method": "token", "role": "operator",
                 "scopes": ["operator.admin", "operator.read", "operator.write", "operator.approvals"]},
        "policy": {"maxPayload": 26_214_400, "tickIntervalMs": shared.tick_ms.load(Ordering::SeqCst)}});
    let _ = sink.send(res_ok(connect["id"].as_str().unwrap_or("connect"), hello)).await;
    let n = shared.sessions.fetch_add(1, Ordering::SeqCst) + 1;
    let (tx, mut rx) = mpsc::unbounded_channel();
    *shared.current.lock().unwrap() = Some(tx.clone());
    let mut seq = 1;
    let _ = sink.send(event("health", json!({"ok": true}), Some(seq))).await;
    let mut ticking = true;
    let mut ticks = tokio::time::interval(Duration::from_millis(shared.tick_ms.load(Ordering::SeqCst)));
    loop {
        tokio::select! {
            c = rx.recv() => match c {
                Some(Cmd::Send(m)) => { let _ = sink.send(m).await; }
                Some(Cmd::StopTicks) => ticking = false,
                Some(Cmd::Freeze) => {
                    // Hold both halves, touch neither, until the client goes away (never).
                    let _held = (sink, stream);
                    std::future::pending::<()>().await;
                    return;
                }
                Some(Cmd::Close(code, why)) => {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code: code.into(), reason: why.into() }))).await;
                    return;
                }
                None => return,
            },
            _ = ticks.tick(), if ticking => {
                seq += 1;
                let _ = sink.send(event("tick", json!({"ts": seq}), Some(seq))).await;
            }
            m = stream.next() => match m {
                Some(Ok(Message::Text(t))) => answer(&shared, n, &tx, serde_json::from_str(t.as_str()).unwrap_or_default()),
                Some(Ok(Message::Pong(p))) => shared.pongs.lock().unwrap().push(p.to_vec()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    shared.client_closed.lock().unwrap().push(n);
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Answer one request: `echo` after `delay_ms`, `agent` twice, `never` not at all.
fn answer(shared: &Arc<Shared>, n: usize, tx: &mpsc::UnboundedSender<Cmd>, req: Value) {
    let id = req["id"].as_str().unwrap_or_default().to_string();
    let method = req["method"].as_str().unwrap_or_default().to_string();
    shared.calls.lock().unwrap().push((n, method.clone(), req["params"].clone()));
    let send = |m: Message| {
        let _ = tx.send(Cmd::Send(m));
    };
    match method.as_str() {
        "agents.list" => send(res_ok(&id, json!({"agents": shared.agents.lock().unwrap().clone()}))),
        "exec.approval.list" => send(res_ok(&id, shared.approvals.lock().unwrap().clone())),
        "plugins.list" => send(res_ok(&id, shared.plugins.lock().unwrap().clone())),
        "echo" => {
            let (tx, shared, tag) = (tx.clone(), shared.clone(), req["params"]["tag"].clone());
            let delay = Duration::from_millis(req["params"]["delay_ms"].as_u64().unwrap_or(0));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                shared.answered.lock().unwrap().push(tag.as_str().unwrap_or_default().into());
                let _ = tx.send(Cmd::Send(res_ok(&id, json!({"tag": tag}))));
            });
        }
        "agent" => {
            let run = format!("run-{id}");
            send(res_ok(&id, json!({"status": "accepted", "runId": run})));
            let tx = tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let _ =
                    tx.send(Cmd::Send(res_ok(&id, json!({"status": "ok", "runId": run, "result": {"text": "done"}}))));
            });
        }
        "config.get" | "config.patch" if shared.config.lock().unwrap().is_some() => {
            let mut guard = shared.config.lock().unwrap();
            let Some(c) = guard.as_mut() else { return };
            if method == "config.get" {
                send(res_ok(&id, json!({"hash": c.hash(), "parsed": c.doc, "config": c.doc})));
            } else if req["params"]["baseHash"].as_str() != Some(c.hash().as_str()) {
                let msg = "config changed since last load; re-run config.get and retry";
                send(res_err(&id, "INVALID_REQUEST", msg, json!({})));
            } else {
                let patch: Value =
                    serde_json::from_str(req["params"]["raw"].as_str().unwrap_or("{}")).unwrap_or_default();
                merge_patch(&mut c.doc, &patch);
                c.rev += 1;
                send(res_ok(&id, json!({"ok": true, "hash": c.hash()})));
            }
        }
        "fail" => send(res_err(&id, "UNAVAILABLE", "agent unavailable during gateway suspension", json!({}))),
        "never" => {}
        _ => send(res_ok(&id, json!({"ok": true}))),
    }
}

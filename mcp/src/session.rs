//! MCP sessions, minted by the sidecar. The `Mcp-Session-Id` is 32 random bytes
//! (base64url), bound to the agent of the URL and to the credential that opened it (the MCP
//! token's id); a request naming it with another agent or token is answered as if the
//! session did not exist (404), and the credential is checked on every request anyway (the
//! id alone is never a credential). Each session has its own upstream sessions (one per
//! server the agent sees), never shown to the client.
//!
//! Sessions live in memory: after a restart a client gets 404 and starts a new session
//! (OpenClaw does so at its next turn), so an MCP session's context (what was called, whether
//! a secret came back) can never be lost while the session goes on. A session with a call
//! or hold in flight is never closed for being idle.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use dashmap::DashMap;
use decision::McpCallInput;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::sse::Out;
use crate::upstream::Slot;
use crate::State;

/// How many earlier calls the policy input carries.
pub(crate) const CONTEXT_CALLS: usize = 100;

/// Notifications kept for a client that has no GET stream open (oldest dropped beyond).
const QUEUED_MAX: usize = 256;

/// A call (or hold) in flight, by its request id.
pub(crate) struct Inflight {
    pub cancel: CancellationToken,
}

/// Which server owns which resource, template and prompt (from the last lists).
#[derive(Default)]
pub(crate) struct Routing {
    /// Resource URI → server (config index).
    pub resources: std::collections::HashMap<String, usize>,
    /// URI template → server.
    pub templates: Vec<(String, usize)>,
    /// Exposed prompt name → (server, the server's own name).
    pub prompts: std::collections::HashMap<String, (usize, String)>,
}

/// What happened earlier in the session (for `input.mcp`).
#[derive(Default)]
pub(crate) struct CallContext {
    pub calls: VecDeque<McpCallInput>,
    pub secret_seen: bool,
}

pub(crate) struct Session {
    pub id: String,
    pub agent: String,
    /// The MCP token that opened it (`open` for a token-less agent).
    pub key_id: String,
    /// The negotiated protocol version.
    pub protocol: String,
    /// The client's capabilities as it declared them.
    pub client_caps: Value,
    pub client_name: String,
    /// One per server the agent sees, in config order.
    pub slots: Vec<Slot>,
    pub inflight: DashMap<String, Inflight>,
    get_stream: Mutex<Option<mpsc::Sender<Out>>>,
    queued: Mutex<VecDeque<Bytes>>,
    /// Requests sent to the client (from upstreams), waiting for its answer.
    pub reverse: DashMap<String, oneshot::Sender<Result<Value, Value>>>,
    reverse_seq: AtomicU64,
    pub context: Mutex<CallContext>,
    pub catalog: Mutex<Option<Arc<Catalog>>>,
    pub routing: Mutex<Routing>,
    /// Hash of the tool list the client was last given (0: never listed).
    pub listed_hash: AtomicU64,
    last_used: Mutex<Instant>,
    /// Calls, holds and server requests in flight.
    pub busy: AtomicUsize,
    pub closed: CancellationToken,
}

/// Counts a call as in flight while it lives.
pub(crate) struct Busy(Arc<Session>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// A fresh session id: 32 random bytes, base64url without padding (visible ASCII only).
pub(crate) fn mint_id() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| e.to_string())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        agent: &str,
        key_id: &str,
        protocol: &str,
        client_caps: Value,
        client_name: String,
        slots: Vec<Slot>,
    ) -> Session {
        Session {
            id,
            agent: agent.to_string(),
            key_id: key_id.to_string(),
            protocol: protocol.to_string(),
            client_caps,
            client_name,
            slots,
            inflight: DashMap::new(),
            get_stream: Mutex::new(None),
            queued: Mutex::new(VecDeque::new()),
            reverse: DashMap::new(),
            reverse_seq: AtomicU64::new(0),
            context: Mutex::new(CallContext::default()),
            catalog: Mutex::new(None),
            routing: Mutex::new(Routing::default()),
            listed_hash: AtomicU64::new(0),
            last_used: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            closed: CancellationToken::new(),
        }
    }

    pub fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().map(|t| t.elapsed()).unwrap_or_default()
    }

    /// Mark a call in flight until the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }

    /// The slot of the server with config index `server`, if the agent sees it.
    pub fn slot_of(&self, server: usize) -> Option<&Slot> {
        self.slots.iter().find(|s| s.server.index == server)
    }

    /// What the sidecar declares to upstreams: the client's own elicitation, sampling and
    /// roots capabilities (requests from upstreams are routed back to it), nothing else.
    pub fn upstream_caps(&self) -> rmcp::model::ClientCapabilities {
        let mut keep = serde_json::Map::new();
        for k in ["elicitation", "sampling", "roots"] {
            if let Some(v) = self.client_caps.get(k).filter(|v| v.is_object()) {
                keep.insert(k.to_string(), v.clone());
            }
        }
        serde_json::from_value(Value::Object(keep)).unwrap_or_default()
    }

    /// Whether the client declared capability `name`.
    pub fn client_has(&self, name: &str) -> bool {
        self.client_caps.get(name).is_some_and(Value::is_object)
    }

    /// Send a message on the GET stream, or keep it until one opens.
    pub fn notify(&self, msg: Bytes) {
        let tx = self.get_stream.lock().ok().and_then(|g| g.clone());
        if let Some(tx) = tx {
            match tx.try_send(Out::Event(msg)) {
                Ok(()) => return,
                Err(
                    mpsc::error::TrySendError::Full(Out::Event(m)) | mpsc::error::TrySendError::Closed(Out::Event(m)),
                ) => self.queue(m),
                Err(_) => {}
            }
            return;
        }
        self.queue(msg);
    }

    fn queue(&self, msg: Bytes) {
        if let Ok(mut q) = self.queued.lock() {
            if q.len() >= QUEUED_MAX {
                q.pop_front();
            }
            q.push_back(msg);
        }
    }

    /// Open the GET stream (a newer one replaces an older one), starting with what was queued.
    pub fn open_get_stream(&self) -> mpsc::Receiver<Out> {
        let (tx, rx) = mpsc::channel(QUEUED_MAX + 16);
        let queued: Vec<Bytes> = self.queued.lock().map(|mut q| q.drain(..).collect()).unwrap_or_default();
        for m in queued {
            let _ = tx.try_send(Out::Event(m));
        }
        if let Ok(mut g) = self.get_stream.lock() {
            *g = Some(tx);
        }
        rx
    }

    /// A fresh id for a request to the client: `cb-<n>` (never a number, so it cannot collide
    /// with the client's own ids in its logs).
    pub fn next_reverse_id(&self) -> String {
        format!("cb-{}", self.reverse_seq.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// The session context for the policy input; the earlier calls only `with_calls` (the
    /// bundle may read them: `PolicyEngine::reads_mcp_calls`).
    pub fn policy_context(&self, with_calls: bool) -> (Vec<McpCallInput>, bool) {
        match self.context.lock() {
            Ok(c) if with_calls => (c.calls.iter().cloned().collect(), c.secret_seen),
            Ok(c) => (Vec::new(), c.secret_seen),
            Err(_) => (Vec::new(), true),
        }
    }

    /// Remember a decided call.
    pub fn record(&self, call: McpCallInput) {
        if let Ok(mut c) = self.context.lock() {
            c.secret_seen |= call.secret;
            if c.calls.len() >= CONTEXT_CALLS {
                c.calls.pop_front();
            }
            c.calls.push_back(call);
        }
    }
}

/// The open sessions.
#[derive(Default)]
pub(crate) struct Sessions {
    map: DashMap<String, Arc<Session>>,
}

impl Sessions {
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.map.get(id).map(|e| e.value().clone())
    }

    pub fn all(&self) -> Vec<Arc<Session>> {
        self.map.iter().map(|e| e.value().clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn insert(&self, st: &State, s: Arc<Session>) {
        self.map.insert(s.id.clone(), s);
        st.metrics.sessions.set(self.map.len() as i64);
    }

    fn remove(&self, st: &State, id: &str) -> Option<Arc<Session>> {
        let s = self.map.remove(id).map(|(_, s)| s);
        st.metrics.sessions.set(self.map.len() as i64);
        s
    }

    /// The idle session unused the longest (to make room), if any.
    pub fn oldest_idle(&self) -> Option<Arc<Session>> {
        self.map
            .iter()
            .filter(|e| e.value().busy.load(Ordering::Acquire) == 0)
            .max_by_key(|e| e.value().idle_for())
            .map(|e| e.value().clone())
    }
}

/// End a session: its calls and holds are cancelled (holds withdrawn), its upstream
/// sessions closed (stdio children stopped), its streams ended.
pub(crate) fn close(st: &State, id: &str, reason: &str) -> bool {
    let Some(s) = st.sessions.remove(st, id) else { return false };
    tracing::info!(agent = %s.agent, reason, "MCP session closed");
    s.closed.cancel();
    for e in s.inflight.iter() {
        e.value().cancel.cancel();
    }
    s.reverse.clear();
    for slot in &s.slots {
        slot.close();
    }
    if let Ok(mut g) = s.get_stream.lock() {
        *g = None;
    }
    true
}

/// Close sessions idle past `session_idle_ttl_s` with nothing in flight.
pub(crate) fn reap_idle(st: &Arc<State>) {
    let ttl = Duration::from_secs(st.settings.session_idle_ttl_s);
    for s in st.sessions.all() {
        if s.busy.load(Ordering::Acquire) == 0 && s.idle_for() >= ttl {
            close(st, &s.id, "idle");
        }
    }
}

/// Close every session.
pub(crate) fn close_all(st: &State, reason: &str) {
    for s in st.sessions.all() {
        close(st, &s.id, reason);
    }
}

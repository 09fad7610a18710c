//! The upstream MCP servers: their config and health ([`Server`]), and per MCP session one
//! client connection to each server the agent sees ([`Slot`] → [`Conn`]), made with rmcp
//! (`connect.rs`) and reconnected after a failure once `reconnect_after_s` has passed.
//!
//! Invariant: a server that fails never takes a session down. Its slot holds the failure, its
//! tools leave the agent's list, its health (and `clawbutler_mcp_upstream_up`) shows why, and
//! every other server of the session keeps working. Every use of rmcp is in this module
//! (and `reverse.rs` for the types of requests from upstreams), so an rmcp upgrade touches
//! only these files.

mod conn;
mod connect;
mod direct;
mod handler;
mod raw;
mod wire;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::Serialize;

use crate::config::McpServerConfig;
use crate::metrics::Metrics;
use crate::session::Session;
use crate::State;

pub(crate) use conn::{CallRoute, Conn, Forwarded};
pub(crate) use connect::{http_client, raw_client};
pub(crate) use raw::RawClient;

/// Three-state health of one server (plus `unknown` before anything was tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    Unknown,
    Healthy,
    /// Connects work but calls time out or fail at the transport.
    Degraded,
    /// Connecting fails.
    Offline,
}

/// What is known of a server's health.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Health {
    pub state: HealthState,
    pub reason: Option<String>,
    /// RFC 3339 time the state began.
    pub since: String,
    /// RFC 3339 time of the last successful connect or call.
    pub last_ok: Option<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One `[[mcp_servers]]` entry (its `${VAR}`s resolved) and its health.
pub(crate) struct Server {
    /// Position in `[[mcp_servers]]`.
    pub index: usize,
    pub cfg: McpServerConfig,
    /// The entry as written (`${VAR}`s unresolved): what the control API shows.
    pub written: McpServerConfig,
    include: globset::GlobSet,
    exclude: globset::GlobSet,
    health: Mutex<Health>,
    up: prometheus::IntGauge,
    errors: prometheus::IntCounterVec,
    /// The tools this server listed last (any session), for the control API.
    pub last_tools: Mutex<Vec<rmcp::model::Tool>>,
}

fn globs(patterns: &[String]) -> globset::GlobSet {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        // Checked by config::validate; a pattern that still fails to build matches nothing.
        if let Ok(g) = globset::GlobBuilder::new(p).literal_separator(false).build() {
            b.add(g);
        }
    }
    b.build().unwrap_or_else(|_| globset::GlobSet::empty())
}

impl Server {
    pub fn new(index: usize, cfg: McpServerConfig, written: McpServerConfig, metrics: &Metrics) -> Server {
        let up = metrics.up.with_label_values(&[&cfg.name]);
        up.set(0);
        Server {
            index,
            include: globs(&cfg.tool_filter.include),
            exclude: globs(&cfg.tool_filter.exclude),
            cfg,
            written,
            health: Mutex::new(Health { state: HealthState::Unknown, reason: None, since: now(), last_ok: None }),
            up,
            errors: metrics.upstream_errors.clone(),
            last_tools: Mutex::new(Vec::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Whether the tool filter offers `tool`.
    pub fn offers(&self, tool: &str) -> bool {
        (self.cfg.tool_filter.include.is_empty() || self.include.is_match(tool)) && !self.exclude.is_match(tool)
    }

    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set_health(&self, state: HealthState, reason: Option<String>) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if state == HealthState::Healthy {
            h.last_ok = Some(now());
        }
        if h.state != state || h.reason != reason {
            if h.state != state {
                h.since = now();
                tracing::info!(server = %self.cfg.name, state = ?state, reason = reason.as_deref().unwrap_or(""), "MCP server health changed");
            }
            h.state = state;
            h.reason = reason;
        }
        self.up.set(i64::from(state == HealthState::Healthy));
    }

    /// A connect or call worked.
    pub fn ok(&self) {
        let fast = self.health.lock().map(|h| h.state == HealthState::Healthy).unwrap_or(false);
        if fast {
            // The usual case: one lock, no allocation besides the timestamp.
            if let Ok(mut h) = self.health.lock() {
                h.last_ok = Some(now());
            }
            return;
        }
        self.set_health(HealthState::Healthy, None);
    }

    /// Connecting failed.
    pub fn offline(&self, why: &str) {
        self.errors.with_label_values(&[&self.cfg.name, "connect"]).inc();
        self.set_health(HealthState::Offline, Some(why.to_string()));
    }

    /// A call failed at the transport or timed out (`class`: `timeout`, `closed`, `protocol`).
    pub fn degraded(&self, class: &'static str, why: &str) {
        self.errors.with_label_values(&[&self.cfg.name, class]).inc();
        self.set_health(HealthState::Degraded, Some(why.to_string()));
    }
}

/// A session's connection to one server: connected on first use, replaced after it dies.
pub(crate) struct Slot {
    pub server: Arc<Server>,
    ready: RwLock<Option<Arc<Conn>>>,
    /// Held while connecting (one attempt at a time); the last failure and when it happened.
    connecting: tokio::sync::Mutex<Option<(Instant, String)>>,
}

impl Slot {
    pub fn new(server: Arc<Server>) -> Slot {
        Slot { server, ready: RwLock::new(None), connecting: tokio::sync::Mutex::new(None) }
    }

    /// The live connection, if there is one.
    pub fn current(&self) -> Option<Arc<Conn>> {
        let c = self.ready.read().ok()?.clone()?;
        (!c.is_closed()).then_some(c)
    }

    /// The connection, connecting (or reconnecting) when there is none. A failure within
    /// `reconnect_after_s` of the last one is answered from it without a new attempt.
    pub async fn get(&self, st: &Arc<State>, sess: &Arc<Session>) -> Result<Arc<Conn>, String> {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let mut failed = self.connecting.lock().await;
        if let Some(c) = self.current() {
            return Ok(c);
        }
        if let Some((at, why)) = failed.as_ref() {
            if at.elapsed() < std::time::Duration::from_secs(st.settings.reconnect_after_s) {
                return Err(why.clone());
            }
        }
        if let Some(old) = self.ready.write().ok().and_then(|mut r| r.take()) {
            old.close();
        }
        match connect::connect(st, sess, &self.server).await {
            Ok(c) => {
                self.server.ok();
                *failed = None;
                if let Ok(mut r) = self.ready.write() {
                    *r = Some(c.clone());
                }
                Ok(c)
            }
            Err(why) => {
                tracing::warn!(server = %self.server.name(), agent = %sess.agent, error = %why, "connecting to an MCP server failed");
                self.server.offline(&why);
                *failed = Some((Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    /// Close the connection (its upstream session, or its child process), in the background.
    pub fn close(&self) {
        if let Some(c) = self.ready.write().ok().and_then(|mut r| r.take()) {
            c.close();
        }
    }
}

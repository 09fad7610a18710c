//! Agent health that reflects behaviour, for every agent the sidecar sees: the ones the
//! gateway link lists and the ones seen only on the data path.
//!
//! - `offline`: the agent is in the gateway's roster and the link is down, or the gateway
//!   no longer lists it.
//! - `degraded`: its last run errored (a gateway `lifecycle` error that was not an abort),
//!   or its recent outcomes fail: 3 or more of the last 10 forwarded model calls and tool
//!   calls failed (upstream error status, timeout, unreachable upstream, cut or idle stream,
//!   a tool or exec that failed), until the last 3 succeeded in a row (`window.rs`).
//! - `healthy` otherwise.
//!
//! Every change is one `health` audit record (and so one SSE event) with the reason, and the
//! time of the change is kept to show "for how long". The data path reports each call's end
//! through [`HealthTracker::record_call`]: a sharded-map read and one compare-and-swap, with
//! a lock only when the derived state changes. A periodic [`HealthTracker::sweep`] catches
//! changes that need no new outcome (failures forgotten after 10 quiet minutes).

pub mod window;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use prometheus::{IntGaugeVec, Opts};
use serde::Serialize;
use serde_json::json;

use crate::agents::Health;
use window::{Counts, Window};

/// Agents tracked at most (agent ids come from request paths; the map must stay bounded).
pub const MAX_AGENTS: usize = 10_000;

/// Why one forwarded model call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallFailure {
    /// The upstream answered with this non-2xx status.
    Status(u16),
    /// No answer within the upstream timeout.
    Timeout,
    /// The upstream could not be reached.
    Unreachable,
    /// The response stream broke off.
    StreamCut,
    /// The response stream went silent past the idle timeout.
    StreamIdle,
}

impl CallFailure {
    fn encode(self) -> u32 {
        match self {
            CallFailure::Status(s) => (1 << 16) | u32::from(s),
            CallFailure::Timeout => 2 << 16,
            CallFailure::Unreachable => 3 << 16,
            CallFailure::StreamCut => 4 << 16,
            CallFailure::StreamIdle => 5 << 16,
        }
    }

    fn decode(v: u32) -> Option<CallFailure> {
        Some(match v >> 16 {
            1 => CallFailure::Status((v & 0xffff) as u16),
            2 => CallFailure::Timeout,
            3 => CallFailure::Unreachable,
            4 => CallFailure::StreamCut,
            5 => CallFailure::StreamIdle,
            _ => return None,
        })
    }

    /// In words, for reasons.
    pub fn describe(self) -> String {
        match self {
            CallFailure::Status(s) => format!("upstream answered HTTP {s}"),
            CallFailure::Timeout => "upstream timed out".into(),
            CallFailure::Unreachable => "upstream unreachable".into(),
            CallFailure::StreamCut => "response stream cut".into(),
            CallFailure::StreamIdle => "response stream went idle".into(),
        }
    }
}

/// Marker in `last_failure` for a tool failure (its text is in `tool_failure`).
const TOOL_FAILURE: u32 = 9 << 16;

const MEMBER: u8 = 1;
const GONE: u8 = 2;
const RUN_ERROR: u8 = 4;

/// An agent's health as shown by the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthView {
    pub health: Health,
    /// Why it is in this state (None while it never changed).
    pub reason: Option<String>,
    /// RFC 3339 time it entered this state (or was first seen).
    pub since: String,
    /// RFC 3339 time of its last call through the sidecar or event from the gateway.
    pub last_activity: Option<String>,
}

#[derive(Debug)]
struct Report {
    health: Health,
    reason: Option<String>,
    since_ms: i64,
}

#[derive(Debug)]
struct Entry {
    window: Window,
    /// The last failure ([`CallFailure::encode`] or [`TOOL_FAILURE`]); 0 = none.
    last_failure: AtomicU32,
    tool_failure: Mutex<Option<String>>,
    flags: AtomicU8,
    run_error: Mutex<Option<String>>,
    /// The reported health as a number, for the hot path's comparison.
    shown: AtomicU8,
    report: Mutex<Report>,
    last_activity_ms: AtomicI64,
}

fn code(h: Health) -> u8 {
    match h {
        Health::Healthy => 0,
        Health::Degraded => 1,
        Health::Offline => 2,
    }
}

fn name(h: Health) -> &'static str {
    match h {
        Health::Healthy => "healthy",
        Health::Degraded => "degraded",
        Health::Offline => "offline",
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Entry {
    fn new(now: i64) -> Entry {
        Entry {
            window: Window::default(),
            last_failure: AtomicU32::new(0),
            tool_failure: Mutex::new(None),
            flags: AtomicU8::new(0),
            run_error: Mutex::new(None),
            shown: AtomicU8::new(code(Health::Healthy)),
            report: Mutex::new(Report { health: Health::Healthy, reason: None, since_ms: now }),
            last_activity_ms: AtomicI64::new(0),
        }
    }

    /// The health the inputs say, without building a reason (hot path).
    fn derive(&self, link_down: bool, counts: Counts) -> Health {
        let f = self.flags.load(Ordering::Acquire);
        if f & GONE != 0 || (f & MEMBER != 0 && link_down) {
            Health::Offline
        } else if f & RUN_ERROR != 0 || counts.degraded() {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    fn touch(&self, now: i64) {
        self.last_activity_ms.fetch_max(now, Ordering::Relaxed);
    }
}

/// The tracker; see the module docs. Shared behind an `Arc`.
pub struct HealthTracker {
    agents: DashMap<String, Arc<Entry>>,
    upstreams: DashMap<String, Window>,
    link_down: AtomicBool,
    link_reason: Mutex<String>,
    audit: Arc<audit::AuditLog>,
    gauge: IntGaugeVec,
    full_warned: AtomicBool,
}

impl HealthTracker {
    /// A tracker writing its changes to `audit` and its gauge to `registry`.
    pub fn new(
        audit: Arc<audit::AuditLog>,
        registry: &prometheus::Registry,
    ) -> Result<HealthTracker, prometheus::Error> {
        let gauge = IntGaugeVec::new(
            Opts::new("clawbutler_agents", "Agents the sidecar knows, by health (healthy, degraded, offline)"),
            &["health"],
        )?;
        registry.register(Box::new(gauge.clone()))?;
        for h in [Health::Healthy, Health::Degraded, Health::Offline] {
            gauge.with_label_values(&[name(h)]).set(0);
        }
        Ok(HealthTracker {
            agents: DashMap::new(),
            upstreams: DashMap::new(),
            link_down: AtomicBool::new(false),
            link_reason: Mutex::new(String::new()),
            audit,
            gauge,
            full_warned: AtomicBool::new(false),
        })
    }

    fn entry(&self, agent: &str, now: i64) -> Option<Arc<Entry>> {
        if let Some(e) = self.agents.get(agent) {
            return Some(e.clone());
        }
        if self.agents.len() >= MAX_AGENTS {
            if !self.full_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(max = MAX_AGENTS, "health tracker full: new agents are not tracked");
            }
            return None;
        }
        let e = self.agents.entry(agent.to_string()).or_insert_with(|| {
            self.gauge.with_label_values(&[name(Health::Healthy)]).inc();
            Arc::new(Entry::new(now))
        });
        Some(e.clone())
    }

    fn record(&self, agent: &str, e: &Entry, failed: bool, now: i64) {
        e.touch(now);
        let counts = e.window.push(failed, now);
        if code(e.derive(self.link_down.load(Ordering::Acquire), counts)) != e.shown.load(Ordering::Acquire) {
            self.settle(agent, e, now);
        }
    }

    /// The end of one forwarded model call of `agent` through `upstream` (the data path's
    /// hot path). Calls the sidecar refused, and calls the client abandoned, are not outcomes.
    pub fn record_call(&self, agent: &str, upstream: &str, result: Result<(), CallFailure>) {
        let now = now_ms();
        match self.upstreams.get(upstream) {
            Some(w) => {
                w.push(result.is_err(), now);
            }
            None => {
                self.upstreams.entry(upstream.to_string()).or_default().push(result.is_err(), now);
            }
        }
        let Some(e) = self.entry(agent, now) else { return };
        if let Err(f) = result {
            e.last_failure.store(f.encode(), Ordering::Relaxed);
        }
        self.record(agent, &e, result.is_err(), now);
    }

    /// A tool (or exec) call of `agent` ended, as the gateway reported it.
    pub fn record_tool(&self, agent: &str, result: Result<(), String>) {
        let now = now_ms();
        let Some(e) = self.entry(agent, now) else { return };
        if let Err(why) = &result {
            *lock(&e.tool_failure) = Some(why.clone());
            e.last_failure.store(TOOL_FAILURE, Ordering::Relaxed);
        }
        self.record(agent, &e, result.is_err(), now);
    }

    /// Activity that is no outcome (a gateway event).
    pub fn touch(&self, agent: &str) {
        let now = now_ms();
        if let Some(e) = self.entry(agent, now) {
            e.touch(now);
        }
    }

    /// A run of `agent` ended: `Some(error)` when it errored (aborts are not errors).
    pub fn run_ended(&self, agent: &str, error: Option<&str>) {
        let now = now_ms();
        let Some(e) = self.entry(agent, now) else { return };
        e.touch(now);
        *lock(&e.run_error) = error.map(str::to_string);
        match error {
            Some(_) => e.flags.fetch_or(RUN_ERROR, Ordering::AcqRel),
            None => e.flags.fetch_and(!RUN_ERROR, Ordering::AcqRel),
        };
        self.settle(agent, &e, now);
    }

    /// The gateway link went up or down (`reason` says why it is down).
    pub fn link_changed(&self, up: bool, reason: &str) {
        *lock(&self.link_reason) = reason.to_string();
        self.link_down.store(!up, Ordering::Release);
        self.settle_all(|e| e.flags.load(Ordering::Acquire) & MEMBER != 0);
    }

    /// The gateway's roster (`agents.list`): these agents are its members; former members it
    /// no longer lists are gone (offline).
    pub fn roster(&self, ids: &[String]) {
        let now = now_ms();
        for id in ids {
            if let Some(e) = self.entry(id, now) {
                e.flags.fetch_or(MEMBER, Ordering::AcqRel);
                e.flags.fetch_and(!GONE, Ordering::AcqRel);
            }
        }
        for kv in self.agents.iter() {
            if !ids.iter().any(|i| i == kv.key()) && kv.value().flags.load(Ordering::Acquire) & MEMBER != 0 {
                kv.value().flags.fetch_and(!MEMBER, Ordering::AcqRel);
                kv.value().flags.fetch_or(GONE, Ordering::AcqRel);
            }
        }
        self.settle_all(|_| true);
    }

    /// Re-derive every agent (old outcomes forgotten); the app calls this every few seconds.
    pub fn sweep(&self) {
        let now = now_ms();
        let down = self.link_down.load(Ordering::Acquire);
        self.settle_all(|e| code(e.derive(down, e.window.counts(now))) != e.shown.load(Ordering::Acquire));
    }

    fn settle_all(&self, pick: impl Fn(&Entry) -> bool) {
        let now = now_ms();
        // Collect first: settle writes audit records and must not hold a shard lock meanwhile.
        let picked: Vec<(String, Arc<Entry>)> =
            self.agents.iter().filter(|kv| pick(kv.value())).map(|kv| (kv.key().clone(), kv.value().clone())).collect();
        for (id, e) in picked {
            self.settle(&id, &e, now);
        }
    }

    /// Derive the health with its reason and, when it changed, report it (one audit record).
    fn settle(&self, agent: &str, e: &Entry, now: i64) {
        let mut r = lock(&e.report);
        let counts = e.window.counts(now);
        let health = e.derive(self.link_down.load(Ordering::Acquire), counts);
        if health == r.health {
            // Same state, maybe another cause (link down, then removed from the roster): the
            // reason shown follows, without a new event.
            if health != Health::Healthy && r.reason.is_some() {
                r.reason = Some(self.reason(e, health, r.health, counts));
            }
            return;
        }
        let reason = self.reason(e, health, r.health, counts);
        let from = r.health;
        *r = Report { health, reason: Some(reason.clone()), since_ms: now };
        e.shown.store(code(health), Ordering::Release);
        drop(r);
        self.gauge.with_label_values(&[name(from)]).dec();
        self.gauge.with_label_values(&[name(health)]).inc();
        tracing::info!(agent, from = name(from), to = name(health), reason = %reason, "agent health changed");
        let ev = audit::AuditEvent {
            agent: Some(agent.to_string()),
            actor: Some("system".into()),
            outcome: Some(match health {
                Health::Healthy => audit::Outcome::Healthy,
                Health::Degraded => audit::Outcome::Degraded,
                Health::Offline => audit::Outcome::Offline,
            }),
            reason: Some(reason),
            risk: Some(match health {
                Health::Healthy => decision::Risk::Low,
                Health::Degraded => decision::Risk::Medium,
                Health::Offline => decision::Risk::High,
            }),
            subject: json!({"agent": agent}),
            details: json!({
                "from": name(from), "to": name(health),
                "failed": counts.failed_of_last(window::WINDOW), "of_last": counts.considered(),
            }),
            ..audit::AuditEvent::new(audit::RecordKind::Health)
        };
        if let Err(err) = self.audit.append(ev) {
            tracing::error!(error = %err, "audit append failed for a health change");
        }
    }

    fn reason(&self, e: &Entry, now: Health, was: Health, counts: Counts) -> String {
        let f = e.flags.load(Ordering::Acquire);
        match now {
            Health::Offline if f & GONE != 0 => "the gateway no longer lists this agent (agents.list)".into(),
            Health::Offline => format!("gateway link down: {}", lock(&self.link_reason)),
            Health::Degraded if f & RUN_ERROR != 0 => {
                format!("its last run failed: {}", lock(&e.run_error).as_deref().unwrap_or("error"))
            }
            Health::Degraded => {
                let last = match e.last_failure.load(Ordering::Relaxed) {
                    TOOL_FAILURE => lock(&e.tool_failure).clone().unwrap_or_else(|| "a tool call failed".into()),
                    v => CallFailure::decode(v).map_or_else(|| "unknown".into(), CallFailure::describe),
                };
                format!(
                    "{} of its last {} calls failed (threshold {}); last failure: {last}",
                    counts.failed_of_last(window::WINDOW),
                    counts.considered(),
                    window::DEGRADED_FAILURES
                )
            }
            Health::Healthy if was == Health::Offline => "the gateway link is up and lists the agent".into(),
            Health::Healthy if counts.n == 0 => "no failure in the last 10 minutes".into(),
            Health::Healthy => format!(
                "its last {} calls succeeded and its last run did not fail",
                window::RECOVER_AFTER.min(counts.n)
            ),
        }
    }

    /// One agent's health.
    pub fn view(&self, agent: &str) -> Option<HealthView> {
        let e = self.agents.get(agent)?.clone();
        Some(view_of(&e))
    }

    /// Every tracked agent with its health, by id.
    pub fn views(&self) -> Vec<(String, HealthView)> {
        let mut v: Vec<(String, HealthView)> =
            self.agents.iter().map(|kv| (kv.key().clone(), view_of(kv.value()))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// `(failed, of_last)` when the upstream's recent calls fail by the same rule as an agent's.
    pub fn upstream_failing(&self, upstream: &str) -> Option<(u32, u32)> {
        let c = self.upstreams.get(upstream)?.counts(now_ms());
        c.degraded().then(|| (c.failed_of_last(window::WINDOW), c.considered()))
    }
}

fn view_of(e: &Entry) -> HealthView {
    let r = lock(&e.report);
    let last = e.last_activity_ms.load(Ordering::Relaxed);
    HealthView {
        health: r.health,
        reason: r.reason.clone(),
        since: rfc3339(r.since_ms),
        last_activity: (last > 0).then(|| rfc3339(last)),
    }
}

#[cfg(test)]
mod tests;

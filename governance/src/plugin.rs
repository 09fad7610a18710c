//! What the plugin gate (the `plugin-gate` crate, serving `/v1/decide`) and the gateway link
//! share, so that neither depends on the other (as `agents.rs` does for the control API):
//!
//! - [`PluginHealth`]: per gateway, whether its ClawButler plugin is loaded (the link reads
//!   `plugins.list`) and answering (the plugin's heartbeats and decision requests arrive
//!   with that gateway's token). Both are needed: `health.plugins` goes stale after a hot
//!   disable, and a loaded plugin with a wrong token answers nothing.
//! - [`Handoffs`]: calls decided in one place and finished in another. A hold the gate
//!   answers with OpenClaw's native approval (`requireApproval`) is parked here until the
//!   link sees the matching `plugin.approval.requested`; an `exec` tool call a human approved
//!   at the gate is noted here so the exec approval OpenClaw then asks for is not held again.
//!
//! Keys are OpenClaw's `(runId, toolCallId)`; tool-call ids are compared with everything but
//! ASCII letters and digits removed, since OpenClaw strips them from the model's ids in some
//! places and not in others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::approvals::HoldRequest;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A gateway's id as tokens, the link and heartbeats name it: trimmed, without a trailing
/// `/`, scheme and host lower-cased (`WS://LOCALHOST:1/` is `ws://localhost:1`).
pub fn gateway_id(s: &str) -> String {
    let s = s.trim().trim_end_matches('/');
    match s.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
            let path = if path.is_empty() { String::new() } else { format!("/{path}") };
            format!("{}://{}{path}", scheme.to_ascii_lowercase(), host.to_ascii_lowercase())
        }
        None => s.to_string(),
    }
}

/// `toolCallId` without anything but ASCII letters and digits.
pub fn call_key(run_id: &str, tool_call_id: &str) -> (String, String) {
    (run_id.to_string(), tool_call_id.chars().filter(char::is_ascii_alphanumeric).collect())
}

/// What a heartbeat (or a decision request, which proves the same) told about a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    /// RFC 3339 time it arrived.
    pub at: String,
    /// `heartbeat` or `request`.
    pub via: String,
    pub plugin_version: Option<String>,
    pub pid: Option<u64>,
    /// When the plugin was (re)registered in OpenClaw.
    pub registered_at: Option<String>,
    /// The plugin's limits: how long it waits for a tool-call decision / a turn check.
    pub timeout_ms: Option<u64>,
    pub agent_run_timeout_ms: Option<u64>,
}

/// What `plugins.list` said of the `clawbutler` plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Listed {
    /// Listed with `runtime.state == "active"`.
    Active { version: Option<String> },
    /// Listed, but not running (`disabled`, `unloaded`, `service-failed`), with OpenClaw's error.
    Inactive { runtime_state: String, enabled: bool, error: Option<String> },
    /// Not listed at all: not installed.
    Missing,
}

/// Whether a gateway's built-in tools are governed by the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Governance {
    /// Loaded and answering.
    Governed,
    /// Missing, disabled, or not answering: built-in tools run without ClawButler.
    Ungoverned,
    /// Not known yet: the sidecar started recently and no heartbeat is due yet.
    Pending,
}

impl Governance {
    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Governance::Governed => "governed",
            Governance::Ungoverned => "ungoverned",
            Governance::Pending => "pending",
        }
    }
}

/// One gateway's plugin, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginView {
    pub gateway: String,
    pub governance: Governance,
    /// Why, in words (what to check when ungoverned).
    pub reason: String,
    /// From `plugins.list`, when the link read it.
    pub listed: Option<Listed>,
    pub last_beat: Option<Beat>,
    /// Seconds since the last heartbeat or request.
    pub beat_age_s: Option<u64>,
}

struct Seen {
    beat: Beat,
    at: Instant,
}

/// Per-gateway plugin health; see the module docs.
pub struct PluginHealth {
    started: Instant,
    /// The heartbeat period the plugins are configured with (`[plugin] heartbeat_s`).
    heartbeat: Duration,
    beats: Mutex<HashMap<String, Seen>>,
    listed: Mutex<HashMap<String, Listed>>,
}

impl PluginHealth {
    /// Health for plugins that beat every `heartbeat` (0 = they do not; then only requests count).
    pub fn new(heartbeat: Duration) -> PluginHealth {
        PluginHealth { started: Instant::now(), heartbeat, beats: Mutex::default(), listed: Mutex::default() }
    }

    /// How long a plugin may stay silent before it counts as not answering: 2.5 heartbeat
    /// periods (one lost beat is not an outage), at least 10 s.
    pub fn silence_limit(&self) -> Duration {
        (self.heartbeat * 5 / 2).max(Duration::from_secs(10))
    }

    /// A heartbeat or request from `gateway`'s plugin.
    pub fn beat(&self, gateway: &str, beat: Beat) {
        lock(&self.beats).insert(gateway_id(gateway), Seen { beat, at: Instant::now() });
    }

    /// A request proves the plugin answers; it keeps the last heartbeat's details.
    pub fn touch(&self, gateway: &str) {
        let mut beats = lock(&self.beats);
        let id = gateway_id(gateway);
        match beats.get_mut(&id) {
            Some(s) => s.at = Instant::now(),
            None => {
                let beat = Beat {
                    at: rfc3339_now(),
                    via: "request".into(),
                    plugin_version: None,
                    pid: None,
                    registered_at: None,
                    timeout_ms: None,
                    agent_run_timeout_ms: None,
                };
                beats.insert(id, Seen { beat, at: Instant::now() });
            }
        }
    }

    /// What the link read from `plugins.list` for `gateway`.
    pub fn listed(&self, gateway: &str, l: Listed) {
        lock(&self.listed).insert(gateway_id(gateway), l);
    }

    /// The last heartbeat of `gateway`'s plugin, if any.
    pub fn last_beat(&self, gateway: &str) -> Option<Beat> {
        lock(&self.beats).get(&gateway_id(gateway)).map(|s| s.beat.clone())
    }

    /// The plugin of `gateway` now (see [`Governance`]).
    pub fn view(&self, gateway: &str) -> PluginView {
        let id = gateway_id(gateway);
        let listed = lock(&self.listed).get(&id).cloned();
        let (last_beat, age) = match lock(&self.beats).get(&id) {
            Some(s) => (Some(s.beat.clone()), Some(s.at.elapsed())),
            None => (None, None),
        };
        let limit = self.silence_limit();
        let (governance, reason) = match (&listed, age) {
            (Some(Listed::Missing), _) => (
                Governance::Ungoverned,
                "the clawbutler plugin is not installed in this gateway (plugins.list does not list it)".to_string(),
            ),
            (Some(Listed::Inactive { runtime_state, enabled, error }), _) => (
                Governance::Ungoverned,
                format!(
                    "the clawbutler plugin is {runtime_state}{} in OpenClaw{}",
                    if *enabled { "" } else { " (enabled: false)" },
                    error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                ),
            ),
            (_, Some(a)) if a <= limit => {
                (Governance::Governed, format!("loaded and answering (last heard from {} s ago)", a.as_secs()))
            }
            (_, None) if self.started.elapsed() <= limit => (
                Governance::Pending,
                format!(
                    "waiting for the plugin's first heartbeat (the sidecar started {} s ago)",
                    self.started.elapsed().as_secs()
                ),
            ),
            (l, a) => (
                Governance::Ungoverned,
                format!(
                    "{}not answering: nothing heard from it for {} (a wrong plugin token, or the sidecar's decision URL \
                     unreachable from the gateway)",
                    if matches!(l, Some(Listed::Active { .. })) { "loaded but " } else { "" },
                    a.map_or_else(|| format!("{} s, since the sidecar started", self.started.elapsed().as_secs()), |a| {
                        format!("{} s", a.as_secs())
                    })
                ),
            ),
        };
        PluginView { gateway: id, governance, reason, listed, last_beat, beat_age_s: age.map(|a| a.as_secs()) }
    }
}

/// A hold waiting for OpenClaw's native approval to appear on the gateway link.
pub struct NativeHold {
    /// What to park in the broker once the approval's id is known (`external_id` is set then).
    pub hold: HoldRequest,
    /// Past this the entry is dropped (OpenClaw's approval would have expired).
    pub until: Instant,
}

/// Handoffs between the gate and the link; see the module docs.
#[derive(Default)]
pub struct Handoffs {
    native: Mutex<HashMap<(String, String), NativeHold>>,
    /// Exec tool calls a human approved at the gate: key -> (command, until).
    exec: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl Handoffs {
    /// Park `hold` until the link sees the native approval of `(run_id, tool_call_id)`.
    pub fn expect_native(&self, run_id: &str, tool_call_id: &str, hold: HoldRequest, ttl: Duration) {
        let mut m = lock(&self.native);
        let now = Instant::now();
        m.retain(|_, v| v.until > now);
        m.insert(call_key(run_id, tool_call_id), NativeHold { hold, until: now + ttl });
    }

    /// The parked hold of a native approval the link saw, taken (each is used once).
    pub fn take_native(&self, run_id: &str, tool_call_id: &str) -> Option<HoldRequest> {
        let mut m = lock(&self.native);
        let v = m.remove(&call_key(run_id, tool_call_id))?;
        (v.until > Instant::now()).then_some(v.hold)
    }

    /// Native approvals parked and not yet seen.
    pub fn native_pending(&self) -> usize {
        let now = Instant::now();
        lock(&self.native).values().filter(|v| v.until > now).count()
    }

    /// A human approved `command` for this exec tool call at the gate.
    pub fn approved_exec(&self, run_id: &str, tool_call_id: &str, command: &str, ttl: Duration) {
        let mut m = lock(&self.exec);
        let now = Instant::now();
        m.retain(|_, v| v.1 > now);
        m.insert(call_key(run_id, tool_call_id), (command.to_string(), now + ttl));
    }

    /// Whether the exec approval OpenClaw asks for (same run, tool call and command) was
    /// already approved at the gate; taken, so it answers once.
    pub fn take_exec(&self, run_id: &str, tool_call_id: &str, command: &str) -> bool {
        let mut m = lock(&self.exec);
        match m.remove(&call_key(run_id, tool_call_id)) {
            Some((c, until)) => c == command && until > Instant::now(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(via: &str) -> Beat {
        Beat {
            at: rfc3339_now(),
            via: via.into(),
            plugin_version: Some("0.1.0".into()),
            pid: Some(7),
            registered_at: None,
            timeout_ms: Some(599_000),
            agent_run_timeout_ms: Some(9_000),
        }
    }

    #[test]
    fn gateway_ids_are_normalised() {
        assert_eq!(gateway_id(" WS://LocalHost:18789/ "), "ws://localhost:18789");
        assert_eq!(gateway_id("wss://GW.example/path"), "wss://gw.example/path");
        assert_eq!(gateway_id("prod-1"), "prod-1");
    }

    #[test]
    fn governed_needs_a_listing_that_is_active_and_a_recent_beat() {
        let h = PluginHealth::new(Duration::from_secs(60));
        assert_eq!(h.view("ws://gw").governance, Governance::Pending, "just started, nothing due yet");
        h.listed("ws://gw", Listed::Active { version: Some("0.1.0".into()) });
        assert_eq!(h.view("ws://gw").governance, Governance::Pending);
        h.beat("WS://GW/", beat("heartbeat"));
        let v = h.view("ws://gw");
        assert_eq!(v.governance, Governance::Governed, "{v:?}");
        assert_eq!(v.last_beat.unwrap().timeout_ms, Some(599_000));
        h.listed("ws://gw", Listed::Inactive { runtime_state: "unloaded".into(), enabled: false, error: None });
        let v = h.view("ws://gw");
        assert_eq!(v.governance, Governance::Ungoverned, "a disabled plugin does not govern, however recent its beat");
        assert!(v.reason.contains("unloaded") && v.reason.contains("enabled: false"), "{}", v.reason);
        h.listed("ws://gw", Listed::Missing);
        assert!(h.view("ws://gw").reason.contains("not installed"));
        // A gateway without a link (no listing): beats alone decide.
        h.touch("ws://other");
        assert_eq!(h.view("ws://other").governance, Governance::Governed);
        assert_eq!(h.view("ws://other").last_beat.unwrap().via, "request");
    }

    #[test]
    fn silence_past_the_limit_is_ungoverned() {
        let h = PluginHealth {
            started: Instant::now() - Duration::from_secs(100),
            heartbeat: Duration::from_secs(1),
            beats: Mutex::default(),
            listed: Mutex::default(),
        };
        assert_eq!(h.silence_limit(), Duration::from_secs(10));
        h.listed("gw", Listed::Active { version: None });
        let v = h.view("gw");
        assert_eq!(v.governance, Governance::Ungoverned);
        assert!(v.reason.starts_with("loaded but not answering"), "{}", v.reason);
        lock(&h.beats)
            .insert("gw".into(), Seen { beat: beat("heartbeat"), at: Instant::now() - Duration::from_secs(11) });
        assert_eq!(h.view("gw").governance, Governance::Ungoverned);
        h.touch("gw");
        assert_eq!(h.view("gw").governance, Governance::Governed);
    }

    #[test]
    fn exec_handoff_matches_run_call_and_command_once() {
        let h = Handoffs::default();
        h.approved_exec("run-1", "call_7", "sudo ls", Duration::from_secs(60));
        assert!(!h.take_exec("run-1", "call7", "sudo ls -la"), "another command");
        h.approved_exec("run-1", "call_7", "sudo ls", Duration::from_secs(60));
        assert!(h.take_exec("run-1", "call7", "sudo ls"), "ids compared without punctuation");
        assert!(!h.take_exec("run-1", "call7", "sudo ls"), "once");
        h.approved_exec("run-1", "c", "x", Duration::ZERO);
        assert!(!h.take_exec("run-1", "c", "x"), "expired");
    }
}

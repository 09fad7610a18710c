//! Which OpenClaw run a model call belongs to, so the call's audit record can say the run's
//! session key and task type (interactive, heartbeat, sub-agent, cron) and cost by task type
//! stays a pure function of the log. A model request itself names no run: it carries a W3C
//! `traceparent` whose trace id is the run's, and, with `compat.sendSessionAffinityHeaders`,
//! the session's prompt-cache key (OpenClaw's session id). Two sources fill the index:
//!
//! - the plugin gate, from the ClawButler plugin's `before_agent_run` (run trace id, session
//!   key, trigger). That hook is a gate OpenClaw awaits before the run's first model call, so
//!   the entry is always there in time, and it is per run: exact. Preferred.
//! - the gateway link, from `agent` events (`sessionId`, `sessionKey`, `isHeartbeat`). Per
//!   session, not per run: a heartbeat run in the agent's main session shares the session id
//!   with the user's turns, so the entry says what the session's latest run was (OpenClaw
//!   runs one turn of a session at a time, so that is the run a call of the session belongs
//!   to while it lasts). Used when the plugin is not installed.
//!
//! A call neither source knows (yet) stays unknown: nothing is guessed. Both maps are bounded:
//! at most [`MAX_ENTRIES`] each (the least recently noted forgotten first) and an entry not
//! noted again for [`TTL`] is dropped, so memory stays under about 2 MB whatever the traffic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use decision::TaskType;

/// Entries per map.
pub const MAX_ENTRIES: usize = 4096;
/// How long an entry lives without being noted again.
pub const TTL: Duration = Duration::from_secs(24 * 3600);

/// Where a call's run was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunSource {
    /// The run's trace id, from the plugin's `before_agent_run`.
    PluginTrace,
    /// The session id, from the gateway link's `agent` events.
    GatewaySession,
}

impl RunSource {
    /// Stored name (`details.task_source`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunSource::PluginTrace => "plugin_trace",
            RunSource::GatewaySession => "gateway_session",
        }
    }
}

/// What is known of a call's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub session_key: String,
    pub task: TaskType,
    pub source: RunSource,
}

/// A map that forgets its least recently noted entries past a size and an age.
struct Lru {
    cap: usize,
    ttl: Duration,
    next: u64,
    map: HashMap<String, (RunInfo, Instant, u64)>,
    /// Stamp -> key, oldest first.
    order: BTreeMap<u64, String>,
}

impl Lru {
    fn new(cap: usize, ttl: Duration) -> Lru {
        Lru { cap, ttl, next: 0, map: HashMap::new(), order: BTreeMap::new() }
    }

    fn put(&mut self, key: &str, info: RunInfo, now: Instant) {
        if let Some((_, _, stamp)) = self.map.remove(key) {
            self.order.remove(&stamp);
        }
        self.expire(now);
        while self.map.len() >= self.cap {
            let Some((_, old)) = self.order.pop_first() else { break };
            self.map.remove(&old);
        }
        self.next += 1;
        self.order.insert(self.next, key.to_string());
        self.map.insert(key.to_string(), (info, now, self.next));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((&stamp, key)) = self.order.first_key_value() {
            let stale = self.map.get(key).is_none_or(|(_, at, _)| now.duration_since(*at) >= self.ttl);
            if !stale {
                break;
            }
            let key = key.clone();
            self.order.remove(&stamp);
            self.map.remove(&key);
        }
    }

    fn get(&self, key: &str, now: Instant) -> Option<&RunInfo> {
        self.map.get(key).filter(|(_, at, _)| now.duration_since(*at) < self.ttl).map(|(i, _, _)| i)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

struct Maps {
    by_trace: Lru,
    by_session: Lru,
}

/// See the module docs. Shared by the plugin gate, the gateway link and the data path.
pub struct RunIndex {
    maps: Mutex<Maps>,
}

impl Default for RunIndex {
    fn default() -> Self {
        RunIndex::with_bounds(MAX_ENTRIES, TTL)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RunIndex {
    /// An index with other bounds (tests).
    pub fn with_bounds(cap: usize, ttl: Duration) -> RunIndex {
        RunIndex { maps: Mutex::new(Maps { by_trace: Lru::new(cap, ttl), by_session: Lru::new(cap, ttl) }) }
    }

    /// A run's start as the plugin saw it: its trace id, session key and trigger. Ignored
    /// when the trace id is empty or the run's task type cannot be told.
    pub fn note_trace(&self, trace_id: &str, session_key: &str, trigger: Option<&str>) {
        let Some(task) = TaskType::of_run(session_key, false, trigger) else { return };
        if trace_id.is_empty() {
            return;
        }
        let info = RunInfo { session_key: session_key.to_string(), task, source: RunSource::PluginTrace };
        lock(&self.maps).by_trace.put(trace_id, info, Instant::now());
    }

    /// A run of a session as the gateway link saw it. `start` is true for the run's
    /// lifecycle start, the event that carries the run's `isHeartbeat`: it replaces what was
    /// known of the session. Other events only fill in a session not known yet (the link
    /// came up mid-run), so a later event without the flag never turns a heartbeat run
    /// interactive.
    pub fn note_session(&self, session_id: &str, session_key: &str, heartbeat: bool, start: bool) {
        let Some(task) = TaskType::of_run(session_key, heartbeat, None) else { return };
        if session_id.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut maps = lock(&self.maps);
        if !start && maps.by_session.get(session_id, now).is_some() {
            return;
        }
        let info = RunInfo { session_key: session_key.to_string(), task, source: RunSource::GatewaySession };
        maps.by_session.put(session_id, info, now);
    }

    /// The run of a model call with trace id `trace_id` and OpenClaw session id `session`:
    /// by trace first (exact, per run), else by session; None when neither is known.
    pub fn resolve(&self, trace_id: &str, session: Option<&str>) -> Option<RunInfo> {
        let now = Instant::now();
        let maps = lock(&self.maps);
        maps.by_trace.get(trace_id, now).or_else(|| session.and_then(|s| maps.by_session.get(s, now))).cloned()
    }

    /// Entries held (traces, sessions).
    pub fn sizes(&self) -> (usize, usize) {
        let maps = lock(&self.maps);
        (maps.by_trace.len(), maps.by_session.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_wins_over_a_session_and_unknown_stays_unknown() {
        let idx = RunIndex::default();
        assert_eq!(idx.resolve("t1", Some("s1")), None, "nothing known: nothing guessed");
        idx.note_session("s1", "agent:main:main", false, true);
        let by_session = idx.resolve("t1", Some("s1")).unwrap();
        assert_eq!((by_session.task, by_session.source), (TaskType::Interactive, RunSource::GatewaySession));
        idx.note_trace("t1", "agent:main:main", Some("heartbeat"));
        let by_trace = idx.resolve("t1", Some("s1")).unwrap();
        assert_eq!((by_trace.task, by_trace.source), (TaskType::Heartbeat, RunSource::PluginTrace));
        assert_eq!(idx.resolve("t2", None), None);
        assert_eq!(idx.resolve("t2", Some("other")), None);
        // Neither a bare id nor an empty key is a session key: not noted.
        idx.note_session("s2", "0b8e-uuid", false, true);
        idx.note_trace("", "agent:main:main", None);
        assert_eq!(idx.sizes(), (1, 1));
    }

    #[test]
    fn the_latest_run_of_a_session_counts_and_later_events_do_not_undo_a_heartbeat() {
        let idx = RunIndex::default();
        idx.note_session("s1", "agent:main:main", true, true);
        idx.note_session("s1", "agent:main:main", false, false);
        assert_eq!(idx.resolve("t", Some("s1")).unwrap().task, TaskType::Heartbeat);
        idx.note_session("s1", "agent:main:main", false, true);
        assert_eq!(idx.resolve("t", Some("s1")).unwrap().task, TaskType::Interactive);
        // A session first seen mid-run is filled in from any event.
        idx.note_session("s2", "agent:main:subagent:9", false, false);
        assert_eq!(idx.resolve("t", Some("s2")).unwrap().task, TaskType::Subagent);
    }

    #[test]
    fn bounded_by_size_and_age() {
        let idx = RunIndex::with_bounds(3, Duration::from_secs(3600));
        for i in 0..5 {
            idx.note_trace(&format!("t{i}"), "agent:main:main", Some("user"));
        }
        assert_eq!(idx.sizes().0, 3);
        assert_eq!(idx.resolve("t0", None), None, "the oldest forgotten first");
        assert_eq!(idx.resolve("t1", None), None);
        assert!(idx.resolve("t4", None).is_some());
        // Noting again refreshes: t2 outlives t3 now.
        idx.note_trace("t2", "agent:main:main", Some("user"));
        idx.note_trace("t5", "agent:main:main", Some("user"));
        assert!(idx.resolve("t2", None).is_some());
        assert_eq!(idx.resolve("t3", None), None);

        let idx = RunIndex::with_bounds(10, Duration::from_millis(30));
        idx.note_session("s", "agent:main:main", false, true);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(idx.resolve("t", Some("s")), None, "expired");
        idx.note_session("s2", "agent:main:main", false, true);
        assert_eq!(idx.sizes().1, 1, "the expired entry was dropped");
    }
}

//! The evidence behind a savings suggestion (`docs/cost.md`, "Savings suggestions"), counted as
//! the audit log is followed, beside the hourly buckets and in the same sled batch: for every
//! model call's end, its tokens by price class (so another model's price can be applied to the
//! same tokens), whether its answer was short, whether its request offered tools and its answer
//! used one, whether it failed, and whether it was a retry.
//!
//! Stored under its own key prefix (`e` + the bucket's hour and dims), so the 64-byte buckets
//! and the cost queries are unchanged, and a build without this module ignores the keys. The
//! value starts with a version byte; a call counted before this existed has no evidence, so
//! every share is over [`Evidence::calls`], never over the bucket's calls.

use std::collections::HashMap;
use std::sync::Arc;

use audit::AuditRecord;

use crate::bucket::{self, Dims};

/// An answer of at most this many output tokens is a short call.
pub const SHORT_OUTPUT_TOKENS: u64 = 256;
/// A call that starts at most this long after an errored call of the same agent and session
/// ended is a retry of it.
pub const RETRY_WINDOW_S: i64 = 60;
/// Pending errors kept for retry detection (the oldest go first past it).
const MAX_PENDING: usize = 10_000;

/// Evidence counters of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Model calls that ended (however), counted with evidence.
    pub calls: u64,
    /// Of those, the ones that completed.
    pub completed: u64,
    /// Of those, the ones that did not complete (upstream error, timeout, cancelled, unknown).
    pub errors: u64,
    /// Calls that were retries (see [`RETRY_WINDOW_S`]).
    pub retries: u64,
    /// Completed calls whose answer had at most [`SHORT_OUTPUT_TOKENS`] output tokens.
    pub short: u64,
    /// Calls whose request offered no tool.
    pub tool_free: u64,
    /// Calls whose answer asked for a tool call.
    pub tool_use: u64,
    /// All prompt tokens (cached and cache writes included), of calls with usage.
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
    /// Server-side tool calls the upstream billed per call.
    pub server_tool_calls: u64,
}

/// The encoding's version byte.
const VERSION: u8 = 1;
const FIELDS: usize = 12;

impl Evidence {
    pub const BYTES: usize = 1 + FIELDS * 8;

    fn fields(&self) -> [u64; FIELDS] {
        [
            self.calls,
            self.completed,
            self.errors,
            self.retries,
            self.short,
            self.tool_free,
            self.tool_use,
            self.input_tokens,
            self.cached_input_tokens,
            self.cache_write_tokens,
            self.output_tokens,
            self.server_tool_calls,
        ]
    }

    fn from_fields(f: [u64; FIELDS]) -> Evidence {
        let [calls, completed, errors, retries, short, tool_free, tool_use, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, server_tool_calls] =
            f;
        Evidence {
            calls,
            completed,
            errors,
            retries,
            short,
            tool_free,
            tool_use,
            input_tokens,
            cached_input_tokens,
            cache_write_tokens,
            output_tokens,
            server_tool_calls,
        }
    }

    pub fn add(&mut self, o: &Evidence) {
        let (a, b) = (self.fields(), o.fields());
        *self = Evidence::from_fields(std::array::from_fn(|i| a[i].saturating_add(b[i])));
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Evidence::BYTES);
        out.push(VERSION);
        for v in self.fields() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// `None` for a value of another version or length (skipped with a warning at open).
    pub fn decode(b: &[u8]) -> Option<Evidence> {
        if b.len() != Evidence::BYTES || b[0] != VERSION {
            return None;
        }
        Some(Evidence::from_fields(std::array::from_fn(|i| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[1 + i * 8..9 + i * 8]);
            u64::from_le_bytes(a)
        })))
    }

    /// The tokens as a usage, to price them on any model.
    pub fn usage(&self) -> audit::Usage {
        audit::Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cache_write_tokens: self.cache_write_tokens,
            server_tool_calls: self.server_tool_calls,
        }
    }
}

/// Evidence key: the bucket's key with `e` for `b`.
pub fn key(hour: u32, d: &Dims) -> Vec<u8> {
    let mut k = bucket::bucket_key(hour, d);
    k[0] = b'e';
    k
}

pub fn decode_key(k: &[u8]) -> Option<(u32, Dims)> {
    let mut b = k.to_vec();
    *b.first_mut().filter(|c| **c == b'e')? = b'b';
    bucket::decode_bucket_key(&b)
}

/// What a model call's end record adds, before retry detection. `None` for any other record.
pub fn of(rec: &AuditRecord) -> Option<Evidence> {
    if rec.kind != Some(audit::RecordKind::ModelCall) {
        return None;
    }
    let outcome = rec.outcome.as_deref()?;
    if matches!(outcome, "started" | "denied" | "budget_exceeded") {
        return None;
    }
    let completed = outcome == "completed";
    let mut e = Evidence { calls: 1, ..Default::default() };
    if completed {
        e.completed = 1;
    } else {
        e.errors = 1;
    }
    let offered = rec.subject.get("tools").and_then(|t| t.as_array()).is_some_and(|t| !t.is_empty());
    e.tool_free = u64::from(!offered);
    let d = &rec.details;
    let asked = d.get("tool_calls").and_then(|v| v.as_u64()).unwrap_or(0) > 0
        || matches!(d.get("finish_reason").and_then(|v| v.as_str()), Some("tool_calls" | "tool_use" | "function_call"));
    e.tool_use = u64::from(asked);
    if let Some(u) = &rec.usage {
        e.input_tokens = u.input_tokens;
        e.cached_input_tokens = u.cached_input_tokens;
        e.cache_write_tokens = u.cache_write_tokens;
        e.output_tokens = u.output_tokens;
        e.server_tool_calls = u.server_tool_calls;
        e.short = u64::from(completed && u.output_tokens <= SHORT_OUTPUT_TOKENS);
    }
    Some(e)
}

/// Errored calls that a retry may still follow: (agent, session) -> when it ended (ms since
/// the epoch). Persisted with the batch (`r` keys), so a retry across a restart still counts.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    map: HashMap<(Arc<str>, String), i64>,
}

fn ms_of(ts: &str) -> Option<i64> {
    crate::bucket::ts_ms(ts)
}

fn pending_key(agent: &str, session: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + agent.len() + session.len());
    k.push(b'r');
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k.extend_from_slice(session.as_bytes());
    k
}

impl Pending {
    /// Load one stored entry (`r` key); false when unreadable.
    pub fn load(&mut self, k: &[u8], v: &[u8]) -> bool {
        let Some(rest) = k.strip_prefix(b"r") else { return false };
        let Ok(text) = std::str::from_utf8(rest) else { return false };
        let (Some((agent, session)), Ok(b)) = (text.split_once('\0'), <[u8; 8]>::try_from(v)) else { return false };
        self.map.insert((Arc::from(agent), session.to_string()), i64::from_be_bytes(b));
        true
    }

    /// Judge one model call's end: is it a retry (it started within the window after an
    /// errored call of its agent and session ended)? A retry answers one error only. If this
    /// call failed, it becomes the error a next call may retry. Changed entries go to `dirty`.
    pub fn observe(&mut self, rec: &AuditRecord, errored: bool, dirty: &mut Vec<(Arc<str>, String)>) -> bool {
        let (Some(agent), Some(session), Some(end)) = (rec.agent.as_deref(), rec.session.as_deref(), ms_of(&rec.ts))
        else {
            return false;
        };
        let start = end - rec.latency_ms.filter(|l| l.is_finite() && *l > 0.0).map_or(0, |l| l.round() as i64);
        let k = (Arc::<str>::from(agent), session.to_string());
        let retry = self.map.get(&k).is_some_and(|&e| start >= e && start - e <= RETRY_WINDOW_S * 1000);
        if retry {
            self.map.remove(&k);
        }
        if errored {
            self.map.insert(k.clone(), end);
        }
        if retry || errored {
            dirty.push(k);
        }
        retry
    }

    /// Forget errors no call can retry any more (ended before `now_ms` - window), and the
    /// oldest past [`MAX_PENDING`].
    pub fn prune(&mut self, now_ms: i64, dirty: &mut Vec<(Arc<str>, String)>) {
        let cutoff = now_ms - RETRY_WINDOW_S * 1000;
        let mut gone: Vec<(Arc<str>, String)> =
            self.map.iter().filter(|(_, &t)| t < cutoff).map(|(k, _)| k.clone()).collect();
        if self.map.len() - gone.len() > MAX_PENDING {
            let mut rest: Vec<(&(Arc<str>, String), &i64)> = self.map.iter().filter(|(_, &t)| t >= cutoff).collect();
            rest.sort_by_key(|(_, &t)| t);
            let over = rest.len() - MAX_PENDING;
            gone.extend(rest.into_iter().take(over).map(|(k, _)| k.clone()));
        }
        for k in gone {
            self.map.remove(&k);
            dirty.push(k);
        }
    }

    /// Put the dirty entries' state (value or removal) into `batch`.
    pub fn write(&self, dirty: &[(Arc<str>, String)], batch: &mut sled::Batch) {
        for k in dirty {
            let key = pending_key(&k.0, &k.1);
            match self.map.get(k) {
                Some(t) => batch.insert(key, &t.to_be_bytes()[..]),
                None => batch.remove(key),
            }
        }
    }

    /// The latest end time of a record, for pruning.
    pub fn record_ms(rec: &AuditRecord) -> Option<i64> {
        ms_of(&rec.ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(ts: &str, outcome: &str, latency_ms: f64) -> AuditRecord {
        AuditRecord {
            ts: ts.into(),
            kind: Some(audit::RecordKind::ModelCall),
            agent: Some("main".into()),
            session: Some("s1".into()),
            outcome: Some(outcome.into()),
            latency_ms: Some(latency_ms),
            ..Default::default()
        }
    }

    #[test]
    fn encoding_round_trips_and_refuses_other_versions() {
        let e = Evidence { calls: 3, retries: 1, server_tool_calls: u64::MAX, ..Default::default() };
        let b = e.encode();
        assert_eq!(b.len(), Evidence::BYTES);
        assert_eq!(Evidence::decode(&b), Some(e));
        let mut other = b.clone();
        other[0] = 2;
        assert_eq!(Evidence::decode(&other), None);
        assert_eq!(Evidence::decode(&b[..64]), None);
        let d =
            Dims { agent: "a".into(), model: "m".into(), upstream: "u".into(), tool: "-".into(), task: "cron".into() };
        assert_eq!(decode_key(&bucket::bucket_key(7, &d)), None, "a bucket key is not evidence");
        assert_eq!(decode_key(&key(7, &d)), Some((7, d)));
    }

    #[test]
    fn a_call_shows_short_tool_free_and_tool_use() {
        let mut r = call("2026-12-01T00:00:00Z", "completed", 10.0);
        r.usage = Some(audit::Usage {
            input_tokens: 900,
            cached_input_tokens: 400,
            output_tokens: 256,
            ..Default::default()
        });
        r.subject = json!({"model": "m", "tools": []});
        r.details = json!({"finish_reason": "tool_calls", "tool_calls": 1});
        let e = of(&r).unwrap();
        assert_eq!((e.calls, e.completed, e.short, e.tool_free, e.tool_use), (1, 1, 1, 1, 1));
        assert_eq!((e.input_tokens, e.cached_input_tokens, e.output_tokens), (900, 400, 256));
        r.subject = json!({"model": "m", "tools": ["exec"]});
        r.details = json!({"finish_reason": "stop"});
        r.usage.as_mut().unwrap().output_tokens = 257;
        let e = of(&r).unwrap();
        assert_eq!((e.short, e.tool_free, e.tool_use), (0, 0, 0));
        assert!(of(&call("2026-12-01T00:00:00Z", "started", 0.0)).is_none());
        assert!(of(&call("2026-12-01T00:00:00Z", "denied", 0.0)).is_none());
        assert_eq!(of(&call("2026-12-01T00:00:00Z", "upstream_error", 0.0)).unwrap().errors, 1);
    }

    #[test]
    fn a_retry_starts_within_the_window_after_an_error_ended() {
        let mut p = Pending::default();
        let mut dirty = Vec::new();
        assert!(!p.observe(&call("2026-12-01T00:00:10Z", "upstream_error", 5_000.0), true, &mut dirty));
        // Started at 00:00:09, before the error ended: a concurrent call, not a retry.
        assert!(!p.observe(&call("2026-12-01T00:00:11Z", "completed", 2_000.0), false, &mut dirty));
        // Started at 00:01:05, 55 s after: a retry; it answers the error, the next is not one.
        assert!(p.observe(&call("2026-12-01T00:01:07Z", "completed", 2_000.0), false, &mut dirty));
        assert!(!p.observe(&call("2026-12-01T00:01:08Z", "completed", 100.0), false, &mut dirty));
        // 61 s after an error: too late.
        p.observe(&call("2026-12-01T00:02:00Z", "upstream_error", 0.0), true, &mut dirty);
        assert!(!p.observe(&call("2026-12-01T00:03:01Z", "completed", 0.0), false, &mut dirty));
        // Another session is never a retry of this one.
        p.observe(&call("2026-12-01T00:04:00Z", "upstream_error", 0.0), true, &mut dirty);
        let mut other = call("2026-12-01T00:04:01Z", "completed", 0.0);
        other.session = Some("s2".into());
        assert!(!p.observe(&other, false, &mut dirty));
        // Stored and loaded back, then pruned.
        let mut batch = sled::Batch::default();
        p.write(&dirty, &mut batch);
        let t = sled::Config::new().temporary(true).open().unwrap().open_tree("t").unwrap();
        t.apply_batch(batch).unwrap();
        let mut q = Pending::default();
        for kv in t.iter() {
            let (k, v) = kv.unwrap();
            assert!(q.load(&k, &v));
        }
        assert_eq!(q.map, p.map);
        let mut gone = Vec::new();
        q.prune(Pending::record_ms(&call("2026-12-01T00:06:00Z", "completed", 0.0)).unwrap(), &mut gone);
        assert!(q.map.is_empty() && !gone.is_empty());
    }
}

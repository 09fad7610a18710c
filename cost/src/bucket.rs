//! What one audit record adds to the aggregates: its hourly bucket key ([`Dims`] at an hour)
//! and its [`Counts`]. Money is integer nano-dollars (the budget ledger's unit), so sums never
//! drift.

use audit::{AuditRecord, RecordKind};
use decision::TaskType;
use std::sync::Arc;

/// A bucket's dimensions (besides its hour). `-` stands for "does not apply".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dims {
    pub agent: Arc<str>,
    pub model: Arc<str>,
    pub upstream: Arc<str>,
    /// The MCP tool server, for tool calls.
    pub tool: Arc<str>,
    /// `interactive`, `cron`, `heartbeat`, `subagent` or `unknown`.
    pub task: Arc<str>,
}

/// Longest dimension value kept (longer ones are cut on a char boundary).
const MAX_DIM_BYTES: usize = 128;

/// The model name used for models beyond the per-hour key cap (`store::MAX_KEYS_PER_HOUR`).
pub const OTHER_MODEL: &str = "(other)";

fn dim(s: Option<&str>) -> Arc<str> {
    let s = s.filter(|s| !s.is_empty()).unwrap_or("-");
    let mut end = s.len().min(MAX_DIM_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // NUL separates the dimensions in a key. Names almost never hold one: copy them once.
    let s = &s[..end];
    if s.contains('\0') {
        Arc::from(s.replace('\0', "\u{fffd}"))
    } else {
        Arc::from(s)
    }
}

/// Counters of one bucket. Fixed-size little-endian encoding, [`Counts::BYTES`] long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Model calls that were forwarded and ended (however they ended).
    pub calls: u64,
    /// Of those, the ones that did not complete (upstream error, timeout, cancelled, unknown).
    pub errors: u64,
    /// Of those, the ones whose cost is unknown (`cost_usd` absent).
    pub unknown_cost: u64,
    /// Model calls refused before they were sent (policy, budget, kill switch).
    pub refused: u64,
    /// MCP tool calls that ended.
    pub tool_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Real cost, nano-dollars.
    pub cost_nano: u64,
}

impl Counts {
    pub const BYTES: usize = 64;

    pub fn add(&mut self, o: &Counts) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.unknown_cost += o.unknown_cost;
        self.refused += o.refused;
        self.tool_calls += o.tool_calls;
        self.input_tokens += o.input_tokens;
        self.output_tokens += o.output_tokens;
        self.cost_nano += o.cost_nano;
    }

    fn fields(&self) -> [u64; 8] {
        [
            self.calls,
            self.errors,
            self.unknown_cost,
            self.refused,
            self.tool_calls,
            self.input_tokens,
            self.output_tokens,
            self.cost_nano,
        ]
    }

    pub fn encode(&self) -> [u8; Counts::BYTES] {
        let mut out = [0u8; Counts::BYTES];
        for (i, v) in self.fields().iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<Counts> {
        if b.len() != Counts::BYTES {
            return None;
        }
        let f = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(a)
        };
        Some(Counts {
            calls: f(0),
            errors: f(1),
            unknown_cost: f(2),
            refused: f(3),
            tool_calls: f(4),
            input_tokens: f(5),
            output_tokens: f(6),
            cost_nano: f(7),
        })
    }
}

/// USD (as recorded, f64) to nano-dollars. Negative or non-finite values count as 0.
pub fn usd_to_nano(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1e9).round() as u64
    } else {
        0
    }
}

/// Nano-dollars to USD for display.
pub fn nano_to_usd(n: u64) -> f64 {
    n as f64 / 1e9
}

/// The task type of a call's record: `details.task_type` when the data path knew the call's
/// run (`governance::runs`: by trace id from the plugin, or by session id from the gateway's
/// `agent` events) or a face set it; else from the record's session when it is an OpenClaw
/// session key (`decision::TaskType`) or an isolated cron run's key; else `unknown` (a bare
/// session id says nothing).
pub fn task_type(rec: &AuditRecord) -> &'static str {
    if let Some(t) = rec.details.get("task_type").and_then(|v| v.as_str()).and_then(TaskType::parse) {
        return t.as_str();
    }
    let Some(s) = rec.session.as_deref() else { return "unknown" };
    // An isolated cron run's model calls carry `session_id: openclaw-cron-<hash>` (seen on
    // the wire from OpenClaw 2026.9.6; `gateway::cron` joins them to their job).
    if s.starts_with("openclaw-cron-") {
        return TaskType::Cron.as_str();
    }
    TaskType::from_session_key(s).map_or("unknown", TaskType::as_str)
}

/// One record's contribution: hour (since the epoch), dims, counts, and its trace and cost for
/// the top-traces list. `None` for records that are not a model or tool call's end.
pub struct Contribution {
    pub hour: u32,
    pub dims: Dims,
    pub counts: Counts,
    pub trace: Option<String>,
}

/// Hours since the Unix epoch of an RFC 3339 timestamp.
pub fn hour_of(ts: &str) -> Option<u32> {
    u32::try_from(ts_ms(ts)?.div_euclid(3_600_000)).ok()
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp. Each record's is read three
/// times (its hour, its retry evidence, the batch's latest), and records the writer stamped in
/// the same millisecond share one: the thread remembers the last text and its value.
pub(crate) fn ts_ms(ts: &str) -> Option<i64> {
    thread_local! {
        static LAST: std::cell::RefCell<(String, Option<i64>)> = const { std::cell::RefCell::new((String::new(), None)) };
    }
    let parse = |ts: &str| chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp_millis());
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else { return parse(ts) };
        // The empty start (`""`, `None`) is what parsing `""` gives, so it needs no flag.
        if last.0 != ts {
            let ms = parse(ts);
            last.0.clear();
            last.0.push_str(ts);
            last.1 = ms;
        }
        last.1
    })
}

pub fn contribution(rec: &AuditRecord) -> Option<Contribution> {
    let kind = rec.kind?;
    let outcome = rec.outcome.as_deref()?;
    let mut c = Counts::default();
    let s = |k: &str| rec.subject.get(k).and_then(|v| v.as_str());
    let dims = match kind {
        RecordKind::ModelCall => {
            match outcome {
                "started" => return None,
                "denied" | "budget_exceeded" => c.refused = 1,
                _ => {
                    c.calls = 1;
                    if outcome != "completed" {
                        c.errors = 1;
                    }
                    if let Some(u) = &rec.usage {
                        c.input_tokens = u.input_tokens;
                        c.output_tokens = u.output_tokens;
                    }
                    match rec.cost_usd {
                        Some(usd) => c.cost_nano = usd_to_nano(usd),
                        None => c.unknown_cost = 1,
                    }
                }
            }
            Dims {
                agent: dim(rec.agent.as_deref()),
                model: dim(s("model")),
                upstream: dim(s("upstream")),
                tool: dim(None),
                task: Arc::from(task_type(rec)),
            }
        }
        RecordKind::ToolCall if s("server").is_some() => {
            if outcome == "started" {
                return None;
            }
            c.tool_calls = 1;
            Dims {
                agent: dim(rec.agent.as_deref()),
                model: dim(None),
                upstream: dim(None),
                tool: dim(s("server")),
                task: Arc::from(task_type(rec)),
            }
        }
        _ => return None,
    };
    Some(Contribution { hour: hour_of(&rec.ts)?, dims, counts: c, trace: rec.trace_id.clone() })
}

/// Bucket key: `b` + hour (u32 BE, so keys sort by time) + the dims joined by NUL.
pub fn bucket_key(hour: u32, d: &Dims) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + d.agent.len() + d.model.len() + d.upstream.len() + d.tool.len() + 16);
    k.push(b'b');
    k.extend_from_slice(&hour.to_be_bytes());
    for (i, part) in [&d.agent, &d.model, &d.upstream, &d.tool, &d.task].iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(part.as_bytes());
    }
    k
}

pub fn decode_bucket_key(k: &[u8]) -> Option<(u32, Dims)> {
    if k.len() < 5 || k[0] != b'b' {
        return None;
    }
    let hour = u32::from_be_bytes([k[1], k[2], k[3], k[4]]);
    let text = std::str::from_utf8(&k[5..]).ok()?;
    let mut it = text.split('\0').map(Arc::<str>::from);
    let dims = Dims { agent: it.next()?, model: it.next()?, upstream: it.next()?, tool: it.next()?, task: it.next()? };
    Some((hour, dims))
}

/// Top-traces key: `t` + hour + agent NUL model.
pub fn traces_key(hour: u32, agent: &str, model: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(6 + agent.len() + model.len());
    k.push(b't');
    k.extend_from_slice(&hour.to_be_bytes());
    k.extend_from_slice(agent.as_bytes());
    k.push(0);
    k.extend_from_slice(model.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_timestamps_read_as_parsing_them_again() {
        let fresh = |ts: &str| chrono::DateTime::parse_from_rfc3339(ts).ok().map(|t| t.timestamp_millis());
        let a = "2026-12-04T20:41:07.123Z";
        let b = "2026-12-04T21:00:00.000+01:00";
        let seq = [a, a, b, "not a time", a, "", "", b, b, "1969-12-31T23:59:59.500Z", a];
        for ts in seq {
            assert_eq!(ts_ms(ts), fresh(ts), "{ts:?}");
            let hour = fresh(ts).and_then(|ms| u32::try_from(ms.div_euclid(1000).div_euclid(3600)).ok());
            assert_eq!(hour_of(ts), hour, "{ts:?}");
        }
        assert_eq!(hour_of(a), Some(499_004)); // `date -d 2026-12-04T20:41:07Z +%s` / 3600
        assert_eq!(hour_of("1969-12-31T23:59:59.500Z"), None);
    }

    #[test]
    fn dimension_names_are_cut_at_a_char_boundary_and_never_hold_the_separator() {
        assert_eq!(&*dim(None), "-");
        assert_eq!(&*dim(Some("")), "-");
        assert_eq!(&*dim(Some("gpt-4o")), "gpt-4o");
        assert_eq!(&*dim(Some("a\0b")), "a\u{fffd}b");
        let long = "é".repeat(100); // 200 bytes, two per char
        let cut = dim(Some(&long));
        assert_eq!(cut.len(), MAX_DIM_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = format!("x{long}"); // the limit falls inside a char: cut before it
        assert_eq!(dim(Some(&odd)).len(), MAX_DIM_BYTES - 1);
    }

    #[test]
    fn keys_round_trip_and_counts_encode() {
        let d = Dims {
            agent: "main".into(),
            model: "gpt-x".into(),
            upstream: "openai".into(),
            tool: "-".into(),
            task: "cron".into(),
        };
        let k = bucket_key(491_000, &d);
        assert_eq!(decode_bucket_key(&k), Some((491_000, d)));
        let c = Counts { calls: 3, cost_nano: u64::MAX, ..Default::default() };
        assert_eq!(Counts::decode(&c.encode()), Some(c));
        assert_eq!(usd_to_nano(0.001043), 1_043_000);
        assert_eq!(usd_to_nano(f64::NAN), 0);
        assert_eq!(hour_of("1970-01-01T02:59:59.999Z"), Some(2));
    }

    #[test]
    fn task_types_from_session_keys() {
        let r = |s: &str| AuditRecord { session: Some(s.into()), ..Default::default() };
        assert_eq!(task_type(&r("agent:main:cron:nightly")), "cron");
        assert_eq!(task_type(&r("agent:main:subagent:1")), "subagent");
        assert_eq!(task_type(&r("agent:main:main")), "interactive");
        assert_eq!(task_type(&r("0b8e-uuid")), "unknown");
        assert_eq!(task_type(&r("openclaw-cron-0a713e0edf210ba0f7ab6253a3d86624")), "cron");
        // What the data path stamped wins over the bare session id; a foreign value does not.
        let stamped = |t: &str| AuditRecord {
            session: Some("0b8e-uuid".into()),
            details: serde_json::json!({"task_type": t}),
            ..Default::default()
        };
        assert_eq!(task_type(&stamped("heartbeat")), "heartbeat");
        assert_eq!(task_type(&stamped("interactive")), "interactive");
        assert_eq!(task_type(&stamped("bogus")), "unknown");
    }
}

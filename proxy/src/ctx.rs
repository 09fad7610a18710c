//! Per-call context: created at the edge, shared by every layer, read back by the edge and the
//! metrics layer once the response is ready.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use decision::{Action, Decision, DecisionId};

use crate::route::{Dialect, Endpoint, Route};

/// Shared per-call state.
#[derive(Debug)]
pub struct CallCtx {
    /// W3C trace id (32 lowercase hex) from `traceparent`, or a new one.
    pub trace_id: String,
    /// Decision id, fixed at entry so every response (errors included) can carry it.
    pub decision_id: DecisionId,
    pub started: Instant,
    pub dialect: Dialect,
    /// Endpoint and upstream name, once routed (for metric labels).
    pub labels: OnceLock<(Endpoint, Arc<str>)>,
    /// The action finally taken.
    pub action: OnceLock<Action>,
    /// What the audit gate said (`Unaudited`: the log could not write and `[audit]
    /// on_failure = "continue_unaudited"` let the call through; it is already counted).
    pub admission: OnceLock<audit::Admission>,
    /// Nanoseconds spent waiting for the upstream's response headers.
    upstream_ns: AtomicU64,
    /// Nanoseconds the call was parked waiting for a human (not sidecar overhead).
    held_ns: AtomicU64,
    /// The call's root span (`[telemetry]`); a no-op when traces are off.
    pub trace: telemetry::SpanCx,
}

impl CallCtx {
    /// A context for a request with these headers and path.
    pub fn new(headers: &http::HeaderMap, path: &str) -> CallCtx {
        CallCtx::traced(headers, &http::Method::POST, path, &telemetry::Telemetry::disabled())
    }

    /// A context whose call gets a root span when `telemetry` is on. The trace id is the
    /// span's (the caller's, from a valid `traceparent`, or a new one), so logs, audit
    /// records and exported spans name the same trace.
    pub fn traced(
        headers: &http::HeaderMap,
        method: &http::Method,
        path: &str,
        telemetry: &telemetry::Telemetry,
    ) -> CallCtx {
        let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok());
        let trace = telemetry.root("call", traceparent, || {
            // A method outside the known set is named `_OTHER` (semantic conventions): no
            // free text from the request.
            let m = match *method {
                http::Method::GET => "GET",
                http::Method::POST => "POST",
                http::Method::PUT => "PUT",
                http::Method::DELETE => "DELETE",
                _ => "_OTHER",
            };
            vec![telemetry::Attr::new("http.request.method", m)]
        });
        CallCtx {
            trace_id: trace.trace_id().or_else(|| trace_id_from(headers)).unwrap_or_else(decision::new_trace_id),
            decision_id: DecisionId::new(),
            started: Instant::now(),
            dialect: Dialect::from_path(path),
            labels: OnceLock::new(),
            action: OnceLock::new(),
            admission: OnceLock::new(),
            upstream_ns: AtomicU64::new(0),
            held_ns: AtomicU64::new(0),
            trace,
        }
    }

    /// Record time spent waiting on the upstream.
    pub fn add_upstream(&self, d: std::time::Duration) {
        self.upstream_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Record time spent parked for a human decision.
    pub fn add_held(&self, d: std::time::Duration) {
        self.held_ns.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Time outside the sidecar's control (upstream + human), in seconds.
    pub fn external_secs(&self) -> f64 {
        (self.upstream_ns.load(Ordering::Relaxed) + self.held_ns.load(Ordering::Relaxed)) as f64 / 1e9
    }

    /// Milliseconds waited for the upstream's headers.
    pub fn upstream_ms(&self) -> f64 {
        self.upstream_ns.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// The trace id of a valid `traceparent` header (version 00), if any.
pub fn trace_id_from(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = v.trim().split('-');
    let (ver, tid, sid, _flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if ver.len() != 2 || ver == "ff" || !hex(tid, 32) || !hex(sid, 16) || tid.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(tid.to_ascii_lowercase())
}

/// What the body layer learned from the request JSON.
#[derive(Debug, Clone, Default)]
pub struct BodyInfo {
    pub model: String,
    pub stream: bool,
    /// The largest output cap the request names (`max_tokens`, `max_completion_tokens`,
    /// `max_output_tokens`): upstreams differ in which one they honour.
    pub max_tokens: Option<u64>,
    /// The client asked for `stream_options.include_usage`.
    pub include_usage: bool,
    /// Byte range of the top-level `stream_options` value, so a field can be spliced into it
    /// without re-serialising the rest of the body.
    pub stream_options_span: Option<std::ops::Range<usize>>,
    pub tools: Vec<String>,
    /// What multiplies the cost, and what the body cannot bound (see `estimate`).
    pub features: crate::estimate::Features,
}

/// A routed call with its body read: what every layer after the body layer handles.
#[derive(Debug)]
pub struct CallRequest {
    pub ctx: Arc<CallCtx>,
    pub route: Route,
    pub parts: http::request::Parts,
    pub body: Bytes,
    pub info: BodyInfo,
    /// OpenClaw session id, when a header carries it.
    pub session: Option<String>,
    /// Set by the policy layer.
    pub decision: Option<Decision>,
    /// Worst-case cost estimate in USD (None = unknown price).
    pub estimate_usd: Option<f64>,
    /// Budget reservation held while the call runs (settled by the forwarder).
    pub reservation: Option<governance::budget::Reservation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parsing() {
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".parse().unwrap());
        assert_eq!(trace_id_from(&h).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        h.insert("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
        assert_eq!(trace_id_from(&h), None);
        h.insert("traceparent", "garbage".parse().unwrap());
        assert_eq!(trace_id_from(&h), None);
        assert_eq!(decision::new_trace_id().len(), 32);
    }
}

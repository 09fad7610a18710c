//! `/api/v1/events`: a Server-Sent Events stream of the audit log as it is written
//! (approvals, decisions, grants, budgets and every other record). Each event's `id` is the
//! record's audit `seq`; a client reconnecting with `Last-Event-ID: N` first gets every
//! record after N from the log, in order, then live ones, with no gap and no duplicate.
//! Without `Last-Event-ID` (or with an empty one) the stream starts at the present.
//! `Last-Event-ID` is read strictly: 1 to 20 ASCII digits that fit a u64, else 400
//! problem+json. An id beyond the log's head (a client of a data dir that was reset, or a
//! made-up one) resumes from the present, said in a first `: resumed ...` comment. Every
//! catch-up is bounded by the head it started from, and a stream's work stops as soon as its
//! client is gone (checked before each chunk of the log is read, and on every send); the
//! number of live streams is the gauge `clawbutler_event_streams`. A `: heartbeat` comment is sent
//! every `[approvals] events_heartbeat_ms` (default 15 s). Filters: `agent`, `kind` (record
//! kind or event name, comma-separated), `risk`. Auth is the usual bearer header (the UI
//! reads the stream with fetch, not EventSource).
//!
//! Event names: `approval` (a hold was created), `decision` (an approval was allowed,
//! denied, expired or cancelled), `grant`, `budget`, `health` (an agent's health changed),
//! `audit` (everything else); `data` is the audit record as JSON.
//!
//! One event is not a record: `audit_health` (no `id`, so it never moves `Last-Event-ID`),
//! sent when the audit log stops or starts being able to write, or free space crosses the
//! warning threshold; `data` is the log's health (`audit::AuditHealth`). It is also sent at
//! connect while the log is not writing or space is low. It passes the `kind` filter as
//! `audit_health`. While the log cannot write it is the only way the stream learns of it:
//! records resume, with no gap, once it writes again.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use audit::{AuditLog, AuditRecord, RecordKind};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use super::Routes;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::AppState;

/// Records read from the log per catch-up step.
const CATCH_UP_CHUNK: usize = 500;

/// The events route.
pub fn routes() -> Routes {
    Routes::default().route("/api/v1/events", get(events))
}

/// Which records a client wants.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    pub agent: Option<String>,
    pub kind: Option<String>,
    pub risk: Option<String>,
}

/// The SSE event name of a record.
pub fn event_name(r: &AuditRecord) -> &'static str {
    match r.kind {
        Some(RecordKind::Approval) => {
            if r.details.get("event").and_then(|e| e.as_str()) == Some("approval.created") {
                "approval"
            } else {
                "decision"
            }
        }
        Some(RecordKind::Grant) => "grant",
        Some(RecordKind::Budget) => "budget",
        Some(RecordKind::Health) => "health",
        Some(RecordKind::Governance) => "governance",
        Some(RecordKind::Config) if r.outcome.as_deref() == Some("drifted") => "config_drift",
        _ => "audit",
    }
}

impl EventFilter {
    fn keeps_health(&self) -> bool {
        self.kind.as_deref().is_none_or(|k| k.split(',').map(str::trim).any(|x| x == "audit_health"))
    }

    fn keeps(&self, r: &AuditRecord) -> bool {
        let kind_ok = self.kind.as_deref().is_none_or(|k| {
            let name = event_name(r);
            let rk = r.kind.map(|k| k.as_str()).unwrap_or("");
            k.split(',').map(str::trim).any(|x| x == name || x == rk)
        });
        kind_ok
            && self.agent.as_deref().is_none_or(|a| r.agent.as_deref() == Some(a))
            && self.risk.as_deref().is_none_or(|x| r.risk.map(|k| k.as_str()) == Some(x))
    }
}

/// The `audit_health` event (not a record: no `id`).
fn health_frame(h: &audit::AuditHealth) -> Bytes {
    let data = serde_json::to_string(h).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: audit_health\ndata: {data}\n\n"))
}

fn frame(r: &AuditRecord) -> Bytes {
    let data = serde_json::to_string(r).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {}\nevent: {}\ndata: {}\n\n", r.seq, event_name(r), data))
}

/// The `clawbutler_event_streams` gauge (registered once, by the app).
pub fn streams_gauge(registry: &prometheus::Registry) -> Result<prometheus::IntGauge, prometheus::Error> {
    let g = prometheus::IntGauge::new("clawbutler_event_streams", "Live /api/v1/events streams being served")?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Where a stream starts: after `from`, with an optional note for the client.
#[derive(Debug, PartialEq, Eq)]
pub struct Resume {
    pub from: u64,
    pub note: Option<String>,
}

/// Read a `Last-Event-ID` against the log's durable head (see the module docs).
pub fn resume_point(header: Option<&HeaderValue>, head: u64) -> Result<Resume, Problem> {
    let bad =
        || Problem::bad_request("Last-Event-ID must be an audit seq: 1 to 20 digits, at most 18446744073709551615");
    let raw = match header {
        None => return Ok(Resume { from: head, note: None }),
        Some(v) => v.to_str().map_err(|_| bad())?.trim(),
    };
    if raw.is_empty() {
        return Ok(Resume { from: head, note: None });
    }
    if raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = raw.parse().map_err(|_| bad())?;
    if n > head {
        let note = format!("resumed from the present: Last-Event-ID {n} is beyond the log head {head}");
        return Ok(Resume { from: head, note: Some(note) });
    }
    Ok(Resume { from: n, note: None })
}

async fn events(
    _c: Caller,
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(filter) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    // Subscribe before reading the head, so nothing written in between is missed.
    let sub = s.audit.subscribe();
    let resume = resume_point(headers.get("last-event-id"), s.audit.head())?;
    let heartbeat = Duration::from_millis(s.broker.settings().events_heartbeat_ms.max(10));
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let stream = Stream { audit: s.audit.clone(), filter, tx, _live: LiveGuard::new(s.event_streams.clone()) };
    tokio::spawn(pump(stream, sub, resume, heartbeat, s.broker.closing()));
    let body =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx)) },
        );
    let mut res = Response::new(Body::from_stream(body));
    let h = res.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

/// Counts a stream in `clawbutler_event_streams` for as long as its pump runs.
struct LiveGuard(prometheus::IntGauge);

impl LiveGuard {
    fn new(g: prometheus::IntGauge) -> LiveGuard {
        g.inc();
        LiveGuard(g)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One client's stream: what it reads, what it wants, where it goes.
struct Stream {
    audit: Arc<AuditLog>,
    filter: EventFilter,
    tx: mpsc::Sender<Bytes>,
    _live: LiveGuard,
}

/// The client hung up.
struct Gone;

impl Stream {
    async fn send(&self, b: Bytes) -> Result<(), Gone> {
        self.tx.send(b).await.map_err(|_| Gone)
    }

    /// Send every record after `*last` up to `upto` (inclusive) from the log. Bounded: it
    /// never reads past `upto`, stops when a chunk makes no progress (pruned or missing
    /// records), and checks the client is still there before each chunk.
    async fn catch_up(&self, last: &mut u64, upto: u64) -> Result<(), Gone> {
        while *last < upto {
            if self.tx.is_closed() {
                return Err(Gone);
            }
            let a = self.audit.clone();
            let from = *last + 1; // cannot overflow: *last < upto
            let recs = match tokio::task::spawn_blocking(move || a.read_from(from, CATCH_UP_CHUNK)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "events: reading the audit log failed");
                    return Err(Gone);
                }
                Err(_) => return Err(Gone),
            };
            let before = *last;
            for r in recs {
                if r.seq > upto {
                    *last = upto;
                    return Ok(());
                }
                if r.seq > *last {
                    *last = r.seq;
                    if self.filter.keeps(&r) {
                        self.send(frame(&r)).await?;
                    }
                }
            }
            if *last == before {
                return Ok(());
            }
        }
        Ok(())
    }
}

async fn pump(
    st: Stream,
    mut sub: broadcast::Receiver<Arc<AuditRecord>>,
    resume: Resume,
    heartbeat: Duration,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    let _ = run(&st, &mut sub, resume, heartbeat, &mut closing).await;
}

async fn run(
    st: &Stream,
    sub: &mut broadcast::Receiver<Arc<AuditRecord>>,
    resume: Resume,
    heartbeat: Duration,
    closing: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), Gone> {
    if *closing.borrow_and_update() {
        return Ok(());
    }
    st.send(Bytes::from_static(b": connected\n\n")).await?;
    if let Some(note) = &resume.note {
        st.send(Bytes::from(format!(": {note}\n\n"))).await?;
    }
    let mut health = st.audit.health_events();
    let mut health_open = true;
    {
        let now = health.borrow_and_update().clone();
        if (now.state != audit::WriterState::Ok || now.disk.low) && st.filter.keeps_health() {
            st.send(health_frame(&now)).await?;
        }
    }
    let mut last = resume.from;
    st.catch_up(&mut last, st.audit.head()).await?;
    let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        tokio::select! {
            changed = health.changed(), if health_open => match changed {
                Ok(()) => {
                    let now = health.borrow_and_update().clone();
                    if st.filter.keeps_health() {
                        st.send(health_frame(&now)).await?;
                    }
                }
                Err(_) => health_open = false,
            },
            r = sub.recv() => match r {
                Ok(rec) => {
                    if rec.seq <= last {
                        continue;
                    }
                    // A gap (records the broadcast did not carry): read them from the log.
                    st.catch_up(&mut last, rec.seq.saturating_sub(1)).await?;
                    if rec.seq > last {
                        last = rec.seq;
                        if st.filter.keeps(&rec) {
                            st.send(frame(&rec)).await?;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => st.catch_up(&mut last, st.audit.head()).await?,
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = hb.tick() => st.send(Bytes::from_static(b": heartbeat\n\n")).await?,
            _ = st.tx.closed() => return Err(Gone),
            // Shutdown: end the stream so the control listener can drain.
            // (It only ever turns true; a dropped sender means the broker is gone.)
            _ = closing.changed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn last_event_id_is_read_strictly() {
        let head = 41;
        assert_eq!(resume_point(None, head).unwrap(), Resume { from: 41, note: None });
        assert_eq!(resume_point(Some(&hv("")), head).unwrap(), Resume { from: 41, note: None });
        assert_eq!(resume_point(Some(&hv("0")), head).unwrap(), Resume { from: 0, note: None });
        assert_eq!(resume_point(Some(&hv(" 7 ")), head).unwrap(), Resume { from: 7, note: None });
        assert_eq!(resume_point(Some(&hv("41")), head).unwrap(), Resume { from: 41, note: None });
        for beyond in ["42", "18446744073709551615"] {
            let r = resume_point(Some(&hv(beyond)), head).unwrap();
            assert_eq!(r.from, 41, "{beyond}");
            assert!(r.note.unwrap().contains(beyond));
        }
        for bad in ["abc", "-1", "+5", "1e3", "5 5", "18446744073709551616", "000000000000000000001", "0x10"] {
            let p = resume_point(Some(&hv(bad)), head).unwrap_err();
            assert_eq!(p.status, http::StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}

//! `/api/v1/events`: a Server-Sent Events stream of the audit log as it is written
//! (approvals, decisions, grants, budgets and every other record). Each event's `id` is the
//! record's audit `seq`; a client reconnecting with `Last-Event-ID: N` first gets every
//! record after N from the log, in order, then live ones, with no gap and no duplicate.
//! Without `Last-Event-ID` the stream starts at the present. A `: heartbeat` comment is sent
//! every `[approvals] events_heartbeat_ms` (default 15 s). Filters: `agent`, `kind` (record
//! kind or event name, comma-separated), `risk`. Auth is the usual bearer header (the UI
//! reads the stream with fetch, not EventSource).
//!
//! Event names: `approval` (a hold was created), `decision` (an approval was allowed,
//! denied, expired or cancelled), `grant`, `budget`, `health` (an agent's health changed),
//! `audit` (everything else); `data` is the audit record as JSON.

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
        _ => "audit",
    }
}

impl EventFilter {
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

fn frame(r: &AuditRecord) -> Bytes {
    let data = serde_json::to_string(r).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {}\nevent: {}\ndata: {}\n\n", r.seq, event_name(r), data))
}

async fn events(
    _c: Caller,
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let Query(filter) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let last = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|x| x.trim().parse::<u64>().ok())
                .ok_or_else(|| Problem::bad_request("Last-Event-ID must be an audit seq (a number)"))?,
        ),
        None => None,
    };
    // Subscribe before reading the log, so nothing written in between is missed.
    let sub = s.audit.subscribe();
    let start = last.unwrap_or_else(|| s.audit.head());
    let heartbeat = Duration::from_millis(s.broker.settings().events_heartbeat_ms.max(10));
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(pump(s.audit.clone(), sub, start, filter, heartbeat, tx, s.broker.closing()));
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx)) },
        );
    let mut res = Response::new(Body::from_stream(stream));
    let h = res.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(res)
}

/// Send every record after `*last` up to `upto` (inclusive; None = the durable head) from
/// the log. Err = the client is gone.
async fn catch_up(
    audit: &Arc<AuditLog>,
    last: &mut u64,
    upto: Option<u64>,
    filter: &EventFilter,
    tx: &mpsc::Sender<Bytes>,
) -> Result<(), ()> {
    loop {
        let a = audit.clone();
        let from = *last + 1;
        let recs = tokio::task::spawn_blocking(move || a.read_from(from, CATCH_UP_CHUNK))
            .await
            .map_err(|_| ())?
            .map_err(|e| tracing::warn!(error = %e, "events: reading the audit log failed"))?;
        if recs.is_empty() {
            return Ok(());
        }
        for r in recs {
            if upto.is_some_and(|u| r.seq > u) {
                return Ok(());
            }
            if r.seq > *last {
                *last = r.seq;
                if filter.keeps(&r) {
                    tx.send(frame(&r)).await.map_err(|_| ())?;
                }
            }
        }
    }
}

async fn pump(
    audit: Arc<AuditLog>,
    mut sub: broadcast::Receiver<Arc<AuditRecord>>,
    mut last: u64,
    filter: EventFilter,
    heartbeat: Duration,
    tx: mpsc::Sender<Bytes>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    if *closing.borrow_and_update() || tx.send(Bytes::from_static(b": connected\n\n")).await.is_err() {
        return;
    }
    if catch_up(&audit, &mut last, None, &filter, &tx).await.is_err() {
        return;
    }
    let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        tokio::select! {
            r = sub.recv() => match r {
                Ok(rec) => {
                    if rec.seq <= last {
                        continue;
                    }
                    if rec.seq > last + 1 && catch_up(&audit, &mut last, Some(rec.seq - 1), &filter, &tx).await.is_err() {
                        return;
                    }
                    if rec.seq > last {
                        last = rec.seq;
                        if filter.keeps(&rec) && tx.send(frame(&rec)).await.is_err() {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if catch_up(&audit, &mut last, None, &filter, &tx).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = hb.tick() => {
                if tx.send(Bytes::from_static(b": heartbeat\n\n")).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
            // Shutdown: end the stream so the control listener can drain.
            // (It only ever turns true; a dropped sender means the broker is gone.)
            _ = closing.changed() => return,
        }
    }
}

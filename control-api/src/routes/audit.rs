//! `/api/v1/audit`: search with cursor pagination, one record, a trace's chain, and a live
//! verification of the log (any role).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::Json;

use super::Routes;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::AppState;

/// The audit routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/audit", get(search))
        .route("/api/v1/audit/verify", get(verify))
        .route("/api/v1/audit/trace/{trace_id}", get(trace))
        .route("/api/v1/audit/{seq}", get(one))
}

fn internal(e: audit::AuditError) -> Problem {
    match e {
        audit::AuditError::BadQuery(m) => Problem::bad_request(m),
        e => Problem::internal(e.to_string()),
    }
}

/// Check the query parameters serde cannot: a cursor is a record number (a `next_cursor`),
/// a limit is 1 to `MAX_LIMIT`. An empty cursor means none.
fn checked(mut q: audit::AuditQuery) -> Result<audit::AuditQuery, Problem> {
    if q.cursor.as_deref() == Some("") {
        q.cursor = None;
    }
    if let Some(c) = &q.cursor {
        if c.len() > 20 || !c.bytes().all(|b| b.is_ascii_digit()) || c.parse::<u64>().is_err() {
            return Err(Problem::bad_request("cursor must be a next_cursor value (a record number)"));
        }
    }
    if q.limit.is_some_and(|l| !(1..=audit::MAX_LIMIT).contains(&l)) {
        return Err(Problem::bad_request(format!("limit must be 1 to {}", audit::MAX_LIMIT)));
    }
    Ok(q)
}

async fn search(
    _c: Caller,
    State(s): State<AppState>,
    q: Result<Query<audit::AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<audit::AuditPage>, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let q = checked(q)?;
    let audit = s.audit.clone();
    tokio::task::spawn_blocking(move || audit.search(&q))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map(Json)
        .map_err(internal)
}

async fn one(
    _c: Caller,
    State(s): State<AppState>,
    Path(seq): Path<String>,
) -> Result<Json<audit::AuditRecord>, Problem> {
    let seq: u64 = seq.parse().map_err(|_| Problem::bad_request(format!("'{seq}' is not a record number")))?;
    s.audit.get(seq).map_err(internal)?.map(Json).ok_or_else(|| Problem::not_found(format!("no audit record {seq}")))
}

async fn trace(
    _c: Caller,
    State(s): State<AppState>,
    Path(trace_id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let items = s.audit.trace(&trace_id).map_err(internal)?;
    // The plugin gate's cross-check of OpenClaw's reported cost against the sidecar's metering
    // of this trace (the latest, when the run was reported; docs/plugin.md).
    let usage_check = items
        .iter()
        .rev()
        .find(|r| {
            r.kind == Some(audit::RecordKind::Plugin)
                && r.details.get("kind").and_then(serde_json::Value::as_str) == Some("usage_check")
        })
        .map(|r| {
            let mut v = r.details.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("reason".into(), serde_json::json!(r.reason));
                o.insert("seq".into(), serde_json::json!(r.seq));
            }
            v
        });
    Ok(Json(serde_json::json!({ "trace_id": trace_id, "items": items, "usage_check": usage_check })))
}

async fn verify(c: Caller, State(s): State<AppState>) -> Result<Json<audit::VerifyReport>, Problem> {
    let audit = s.audit.clone();
    let report =
        tokio::task::spawn_blocking(move || audit.verify()).await.map_err(|e| Problem::internal(e.to_string()))?;
    if !report.ok {
        // A failed verification is itself recorded (and so notified: `audit.verify_failed`).
        let ev = audit::AuditEvent {
            actor: Some(c.name.clone()),
            outcome: Some(audit::Outcome::Error),
            rule: Some("audit.verify".into()),
            risk: Some(decision::Risk::Critical),
            reason: Some(report.errors.first().cloned().unwrap_or_else(|| "audit verification failed".into())),
            details: serde_json::json!({
                "event": "audit.verify_failed", "first_bad_seq": report.first_bad_seq,
                "bad_checkpoint": report.bad_checkpoint, "records": report.records, "errors": report.errors,
            }),
            ..audit::AuditEvent::new(audit::RecordKind::Config)
        };
        if let Err(e) = s.audit.append(ev) {
            tracing::error!(error = %e, "audit append failed for a failed verification");
        }
    }
    Ok(Json(report))
}

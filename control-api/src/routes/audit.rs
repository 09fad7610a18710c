//! `/api/v1/audit`: search with cursor pagination, one record, a trace's chain, and a live
//! verification of the log (any role).

use axum::extract::{Path, Query, RawQuery, State};
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

/// Where a search looks: this sidecar's log (default) or, with `scope=fleet`, the central
/// audit trail of every sidecar (fleet mode; `sidecar=<id>` narrows it to one).
struct Scope {
    fleet: bool,
    sidecar: Option<String>,
}

/// Split `scope` and `sidecar` off the query string; the rest is the local search's filters.
fn scope_of(raw: Option<&str>) -> Result<(Scope, audit::AuditQuery), Problem> {
    let mut scope = Scope { fleet: false, sidecar: None };
    let mut rest = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("scope", "fleet") => scope.fleet = true,
            ("scope", "local") => scope.fleet = false,
            ("scope", v) => return Err(Problem::bad_request(format!("scope must be local or fleet, not {v:?}"))),
            ("sidecar", v) => scope.sidecar = Some(v.to_string()),
            _ => rest.push(pair),
        }
    }
    if scope.sidecar.is_some() && !scope.fleet {
        return Err(Problem::bad_request("sidecar filters a fleet search: add scope=fleet"));
    }
    let uri: http::Uri =
        format!("/?{}", rest.join("&")).parse().map_err(|_| Problem::bad_request("bad query string"))?;
    let Query(q) = Query::<audit::AuditQuery>::try_from_uri(&uri).map_err(|e| Problem::bad_request(e.body_text()))?;
    Ok((scope, q))
}

async fn search(
    _c: Caller,
    State(s): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, Problem> {
    let (scope, q) = scope_of(raw.as_deref())?;
    if scope.fleet {
        return fleet_search(&s, q, scope.sidecar.as_deref()).await;
    }
    let q = checked(q)?;
    let audit = s.audit.clone();
    let page = tokio::task::spawn_blocking(move || audit.search(&q))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map_err(internal)?;
    Ok(Json(serde_json::to_value(page).map_err(|e| Problem::internal(e.to_string()))?))
}

/// A fleet search: the same filters, answered from the central audit trail in PostgreSQL.
/// Each item carries `sidecar_id`; the cursor is the fleet search's own.
async fn fleet_search(
    s: &AppState,
    mut q: audit::AuditQuery,
    sidecar: Option<&str>,
) -> Result<Json<serde_json::Value>, Problem> {
    let f = s
        .fleet
        .as_deref()
        .ok_or_else(|| Problem::bad_request("scope=fleet needs fleet mode: this sidecar has no [fleet] section"))?;
    if q.cursor.as_deref() == Some("") {
        q.cursor = None;
    }
    if q.limit.is_some_and(|l| !(1..=audit::MAX_LIMIT).contains(&l)) {
        return Err(Problem::bad_request(format!("limit must be 1 to {}", audit::MAX_LIMIT)));
    }
    let page = f.audit_search(&q, sidecar).await.map_err(|e| match e {
        fleet::FleetError::Invalid(m) => Problem::bad_request(m),
        e => {
            let mut p = Problem::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "Fleet database unavailable",
                format!(
                    "the central audit trail cannot be searched now ({e}); this sidecar's own log can (scope=local)"
                ),
            );
            p.retry_after_s = Some(5);
            p
        }
    })?;
    Ok(Json(serde_json::to_value(page).map_err(|e| Problem::internal(e.to_string()))?))
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

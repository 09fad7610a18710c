//! `/api/v1/reports`: cost and governance reports, CSV and PDF (`docs/cost.md`, "Reports").
//! A viewer lists reports and asks for a download link; an approver creates and retries
//! (generation reads up to a million audit records, so not every reader may start one); an
//! admin manages schedules. The download itself takes no bearer token: the link's signed,
//! single-use, expiring token is the credential, so a link can be handed to someone.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use http::{header, StatusCode};
use reports::{Format, ReportsError, Schedule};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

const MAX_LIST: usize = 200;

pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/reports", get(list).post(create))
        .route("/api/v1/reports/schedules", get(schedules).post(add_schedule))
        .route("/api/v1/reports/schedules/{name}", delete(remove_schedule))
        .route("/api/v1/reports/download/{token}", get(download))
        .route("/api/v1/reports/{id}", get(one))
        .route("/api/v1/reports/{id}/retry", post(retry))
        .route("/api/v1/reports/{id}/link", post(link))
}

fn problem(e: ReportsError) -> Problem {
    use notifier::LinkError;
    match e {
        ReportsError::NotFound(m) => Problem::not_found(m),
        ReportsError::Conflict(m) => Problem::conflict(m),
        ReportsError::BadRequest(m) => Problem::bad_request(m),
        ReportsError::Busy(m) => Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", m),
        ReportsError::Link(LinkError::Invalid) => Problem::not_found("this download link is not valid"),
        ReportsError::Link(l @ (LinkError::Expired | LinkError::Used)) => {
            Problem::new(StatusCode::GONE, "Gone", format!("{l}; ask for a new download link"))
        }
        other => Problem::internal(other.to_string()),
    }
}

fn body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Problem> {
    if b.is_empty() {
        return serde_json::from_slice(b"{}").map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")));
    }
    serde_json::from_slice(b).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

fn check_id(id: &str) -> Result<(), Problem> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| Problem::not_found(format!("no report {id:?}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    since: Option<String>,
    until: Option<String>,
    /// IANA zone of the report's days (default UTC); a plain date is midnight there.
    timezone: Option<String>,
}

async fn create(State(s): State<AppState>, caller: Caller, b: Bytes) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Approver)?;
    let b: CreateBody = body(&b)?;
    let tz = reports::zone::parse(b.timezone.as_deref().unwrap_or("UTC")).map_err(problem)?;
    let now = s.reports.now();
    // A plain date is local midnight in the zone; the rest as the cost API reads it.
    let mut p = HashMap::new();
    for (k, v) in [("since", b.since), ("until", b.until)] {
        if let Some(v) = v {
            let t = reports::zone::parse_time(&v, now, tz).ok_or_else(|| {
                Problem::bad_request(format!(
                    "{k} must be an RFC 3339 time, a date (2026-12-01) or a duration back from now (36h, 7d, 2w), not {v:?}"
                ))
            })?;
            p.insert(k.to_string(), t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
    }
    let (since, until) = super::cost::range(&p, now)?;
    if until > now + chrono::Duration::hours(1) {
        return Err(Problem::bad_request("until must not be in the future"));
    }
    let r = s.reports.create(since, until, &caller.name, None, tz).map_err(problem)?;
    Ok((StatusCode::ACCEPTED, Json(json!(r))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    caller: Caller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    super::page_limit(q.limit, MAX_LIST)?;
    let cursor = super::id_cursor(q.cursor)?;
    let (items, next) = s.reports.list(q.limit.unwrap_or(50), cursor.as_deref()).map_err(problem)?;
    Ok(Json(json!({"items": items, "next_cursor": next})))
}

async fn one(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    check_id(&id)?;
    match s.reports.get(&id).map_err(problem)? {
        Some(r) => Ok(Json(json!(r))),
        None => Err(Problem::not_found(format!("no report {id}"))),
    }
}

async fn retry(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Approver)?;
    check_id(&id)?;
    let r = s.reports.retry(&id).map_err(problem)?;
    Ok((StatusCode::ACCEPTED, Json(json!(r))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    format: String,
    ttl_s: Option<u64>,
}

async fn link(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    b: Bytes,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    check_id(&id)?;
    let b: LinkBody = body(&b)?;
    let format = Format::parse(&b.format)
        .ok_or_else(|| Problem::bad_request(format!("format must be csv or pdf, not {:?}", b.format)))?;
    let l = s.reports.link(&id, format, b.ttl_s).map_err(problem)?;
    Ok(Json(json!(l)))
}

async fn download(State(s): State<AppState>, Path(token): Path<String>) -> Result<Response, Problem> {
    let r = s.reports.clone();
    let d = tokio::task::spawn_blocking(move || r.download(&token))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map_err(problem)?;
    let name = format!("clawbutler-report-{}.{}", d.report, d.format.as_str());
    let headers = [
        (header::CONTENT_TYPE, d.format.content_type().to_string()),
        (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        (header::CACHE_CONTROL, "no-store".to_string()),
    ];
    Ok((headers, d.bytes).into_response())
}

async fn schedules(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let items: Vec<Value> = s
        .reports
        .schedules()
        .map_err(problem)?
        .into_iter()
        .map(|(sc, source)| {
            json!({"name": sc.name, "every": sc.every, "timezone": sc.timezone.as_deref().unwrap_or("UTC"), "source": source})
        })
        .collect();
    Ok(Json(json!({"items": items, "next_cursor": null})))
}

async fn add_schedule(
    State(s): State<AppState>,
    caller: Caller,
    b: Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Admin)?;
    let sc: Schedule = body(&b)?;
    s.reports.add_schedule(sc.clone()).map_err(problem)?;
    let tz = sc.timezone.as_deref().unwrap_or("UTC");
    Ok((StatusCode::CREATED, Json(json!({"name": sc.name, "every": sc.every, "timezone": tz, "source": "api"}))))
}

async fn remove_schedule(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Role::Admin)?;
    s.reports.remove_schedule(&name).map_err(problem)?;
    Ok(StatusCode::NO_CONTENT)
}

//! `/api/v1/cron/jobs...`: OpenClaw's cron jobs under governance (`docs/cron.md`). Viewers
//! read (jobs with state and cost, run history); approvers may also pause and resume
//! (disable / enable), the lever an on-call person needs at night; creating, editing,
//! removing and running a job now need an admin. Every change goes to OpenClaw with the job's
//! `expectedConfigRevision` (the caller's `expected_revision`, or the one read just before),
//! so a job changed concurrently answers 409 and is not overwritten. The jobs are kept by the
//! gateway link (`gateway::cron`), reached through
//! [`governance::agents::AgentControl::cron`].

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::Json;
use governance::cron::{CronChange, CronControl, CronError};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::Routes;
use crate::{AppState, Caller, Problem, Role};

/// Largest page of run history (OpenClaw's own cap).
const MAX_RUNS: u32 = 200;

/// The cron routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/cron/jobs", get(list).post(create))
        .route("/api/v1/cron/jobs/{id}", get(one).patch(update).delete(remove))
        .route("/api/v1/cron/jobs/{id}/runs", get(runs))
        .route("/api/v1/cron/jobs/{id}/run", post(run_now))
        .route("/api/v1/cron/jobs/{id}/enable", post(enable))
        .route("/api/v1/cron/jobs/{id}/disable", post(disable))
}

/// `?agent=` of the list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub agent: Option<String>,
}

/// `?limit=&offset=` of the run history.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// Body of an update: OpenClaw's patch fields and the revision the caller saw.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub patch: Value,
    #[serde(default)]
    pub expected_revision: Option<String>,
}

/// Optional body of enable / disable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToggleBody {
    #[serde(default)]
    pub expected_revision: Option<String>,
}

fn problem(e: CronError) -> Problem {
    match e {
        CronError::NotFound(d) => Problem::not_found(d),
        CronError::BadRequest(d) => Problem::bad_request(d),
        CronError::Conflict(d) => Problem::new(StatusCode::CONFLICT, "Cron job changed concurrently", d),
        CronError::Unavailable(d) => Problem::new(StatusCode::BAD_GATEWAY, "Gateway unavailable", d),
        CronError::AuditUnavailable(d) => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Audit log unavailable", format!("nothing was changed: {d}"))
        }
    }
}

fn cron(s: &AppState) -> Result<&dyn CronControl, Problem> {
    s.agents
        .as_ref()
        .and_then(|c| c.cron())
        .ok_or_else(|| Problem::not_found("no cron jobs: no OpenClaw gateway is linked ([gateway] url is not set)"))
}

fn check_id(id: &str) -> Result<(), Problem> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(Problem::bad_request("a job id is 1-256 characters without control characters"));
    }
    Ok(())
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

/// A change to OpenClaw that cannot be recorded is not made.
fn audit_ready(s: &AppState) -> Result<(), Problem> {
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))
}

fn number(v: Option<&str>, name: &str, default: u32, max: u32) -> Result<u32, Problem> {
    match v {
        None | Some("") => Ok(default),
        Some(t) => match t.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(Problem::bad_request(format!("{name} must be a whole number from 0 to {max}"))),
        },
    }
}

async fn list(State(s): State<AppState>, caller: Caller, Query(q): Query<ListQuery>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    if let Some(a) = q.agent.as_deref() {
        decision::agent_id::check(a).map_err(|e| Problem::bad_request(e.to_string()))?;
    }
    cron(&s)?.list(q.agent.as_deref()).await.map(Json).map_err(problem)
}

async fn one(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    check_id(&id)?;
    cron(&s)?.get(&id).await.map(Json).map_err(problem)
}

async fn runs(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    check_id(&id)?;
    let limit = number(q.limit.as_deref(), "limit", 20, MAX_RUNS)?.max(1);
    let offset = number(q.offset.as_deref(), "offset", 0, u32::MAX)?;
    cron(&s)?.runs(&id, limit, offset).await.map(Json).map_err(problem)
}

async fn create(
    State(s): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Admin)?;
    let c = cron(&s)?;
    let job: Value = json_body(&body)?;
    audit_ready(&s)?;
    c.create(job, &caller.name).await.map(|v| (StatusCode::CREATED, Json(v))).map_err(problem)
}

async fn update(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    check_id(&id)?;
    let c = cron(&s)?;
    let b: UpdateBody = json_body(&body)?;
    audit_ready(&s)?;
    c.change(&id, CronChange::Update(b.patch), b.expected_revision, &caller.name).await.map(Json).map_err(problem)
}

async fn remove(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    check_id(&id)?;
    let c = cron(&s)?;
    audit_ready(&s)?;
    c.remove(&id, &caller.name).await.map(Json).map_err(problem)
}

async fn run_now(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    check_id(&id)?;
    let c = cron(&s)?;
    audit_ready(&s)?;
    c.run_now(&id, &caller.name).await.map(Json).map_err(problem)
}

async fn toggle(s: AppState, caller: Caller, id: String, body: &[u8], on: bool) -> Result<Json<Value>, Problem> {
    caller.require(Role::Approver)?;
    check_id(&id)?;
    let c = cron(&s)?;
    let b: ToggleBody = if body.iter().all(u8::is_ascii_whitespace) { ToggleBody::default() } else { json_body(body)? };
    audit_ready(&s)?;
    c.change(&id, CronChange::Enabled(on), b.expected_revision, &caller.name).await.map(Json).map_err(problem)
}

async fn enable(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    toggle(s, caller, id, &body, true).await
}

async fn disable(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    toggle(s, caller, id, &body, false).await
}

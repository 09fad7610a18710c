//! `/api/v1/agents/{id}/config/...`: an agent's config versions, their semantic diff, drift
//! against the version ClawButler made or accepted, and rollback (`docs/config-safety.md`).
//! Viewers read; rolling back (even a dry run, which reads the gateway and is audited) and
//! accepting drift need an admin. A critical rollback answers 202: it waits in the approval
//! inbox, and `.../rollback/{approval}` says how it ended. The global slice is `@global`. The history is kept by the gateway link (`gateway::config_safety`), reached
//! through [`governance::agents::AgentControl::config_history`].

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::Json;
use governance::config_history::{ConfigHistory, ConfigHistoryError};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::agents::parse;
use super::Routes;
use crate::{AppState, Caller, Problem, Role};

/// The config-history routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/agents/{id}/config/versions", get(list))
        .route("/api/v1/agents/{id}/config/versions/diff", get(diff))
        .route("/api/v1/agents/{id}/config/versions/drift", get(drift))
        .route("/api/v1/agents/{id}/config/versions/rollback", post(rollback))
        .route("/api/v1/agents/{id}/config/versions/rollback/{approval}", get(held_rollback))
        .route("/api/v1/agents/{id}/config/versions/accept", post(accept))
        .route("/api/v1/agents/{id}/config/versions/{v}", get(one))
}

/// `?from=&to=` of a diff.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    pub from: u64,
    pub to: u64,
}

/// Body of a rollback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    pub to: u64,
    #[serde(default)]
    pub dry_run: bool,
}

/// Body of an accept (the live config becomes the baseline).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// The live version the caller looked at; another one is a 409.
    #[serde(default)]
    pub version: Option<u64>,
    /// Accept even a config that lost ClawButler's wiring (the agent stays ungoverned).
    #[serde(default)]
    pub accept_ungoverned: bool,
}

/// The history key of the global slice (every section but the agent entries), served beside
/// the agents' histories.
const GLOBAL: &str = "@global";

pub(super) fn problem(e: ConfigHistoryError) -> Problem {
    match e {
        ConfigHistoryError::NotFound(d) => Problem::not_found(d),
        ConfigHistoryError::BadRequest(d) => Problem::bad_request(d),
        ConfigHistoryError::Conflict(d) => Problem::new(StatusCode::CONFLICT, "Config changed concurrently", d),
        ConfigHistoryError::Unavailable(d) => Problem::new(StatusCode::BAD_GATEWAY, "Gateway unavailable", d),
        ConfigHistoryError::Store(d) => Problem::store_failed(d),
    }
}

fn history<'a>(s: &'a AppState, id: &str) -> Result<&'a dyn ConfigHistory, Problem> {
    if id != GLOBAL {
        decision::agent_id::check(id).map_err(|e| Problem::bad_request(e.to_string()))?;
    }
    s.agents.as_ref().and_then(|c| c.config_history()).ok_or_else(|| {
        Problem::not_found("no config history: no OpenClaw gateway is linked ([gateway] url is not set)")
    })
}

async fn list(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    history(&s, &id)?.versions(&id).map(Json).map_err(problem)
}

async fn one(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, v)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let h = history(&s, &id)?;
    let n: u64 = v.parse().map_err(|_| Problem::bad_request(format!("'{v}' is not a version number")))?;
    h.version(&id, n).map(Json).map_err(problem)
}

async fn diff(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    history(&s, &id)?.diff(&id, q.from, q.to).map(Json).map_err(problem)
}

async fn drift(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    history(&s, &id)?.drift(&id).await.map(Json).map_err(problem)
}

async fn rollback(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Admin)?;
    let h = history(&s, &id)?;
    let b: RollbackBody = parse(&body)?;
    if !b.dry_run {
        // A change to OpenClaw that cannot be recorded is not made.
        s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))?;
    }
    let v = h.rollback(&id, b.to, b.dry_run, &caller.name).await.map_err(problem)?;
    // A critical rollback waits for a human: accepted, not done.
    let code = if v["status"] == "awaiting_approval" { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((code, Json(v)))
}

async fn held_rollback(
    State(s): State<AppState>,
    caller: Caller,
    Path((id, approval)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let h = history(&s, &id)?;
    if approval.len() > 64 || !approval.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Problem::bad_request(format!("'{approval}' is not an approval id")));
    }
    h.held_rollback(&id, &approval).map(Json).map_err(problem)
}

async fn accept(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let h = history(&s, &id)?;
    let b: AcceptBody = if body.is_empty() { AcceptBody::default() } else { parse(&body)? };
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))?;
    h.accept(&id, b.version, b.accept_ungoverned, &caller.name).await.map(Json).map_err(problem)
}

//! `/api/v1/agents/{id}/config/...`: an agent's config versions, their semantic diff, drift
//! against the version ClawButler made or accepted, and rollback (`docs/config-safety.md`).
//! Viewers read; rolling back (even a dry run, which reads the gateway and is audited) needs
//! an admin. The history is kept by the gateway link (`gateway::config_safety`), reached
//! through [`governance::agents::AgentControl::config_history`].

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::Json;
use governance::config_history::{ConfigHistory, ConfigHistoryError};
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use super::Routes;
use crate::{AppState, Caller, Problem, Role};

/// The config-history routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/agents/{id}/config/versions", get(list))
        .route("/api/v1/agents/{id}/config/versions/diff", get(diff))
        .route("/api/v1/agents/{id}/config/versions/drift", get(drift))
        .route("/api/v1/agents/{id}/config/versions/rollback", post(rollback))
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
    decision::agent_id::check(id).map_err(|e| Problem::bad_request(e.to_string()))?;
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
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let h = history(&s, &id)?;
    let b: RollbackBody =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?;
    if !b.dry_run {
        // A change to OpenClaw that cannot be recorded is not made.
        s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))?;
    }
    h.rollback(&id, b.to, b.dry_run, &caller.name).await.map(Json).map_err(problem)
}

//! `/api/v1/backups`: encrypted gateway backups (`.cbpkg`, `docs/config-safety.md`
//! "Backups"). Viewers list stored packages and read their manifests (no secret in them);
//! creating, downloading, inspecting and importing (even a preview, which decrypts the
//! package and reads the gateway) need an admin. The packages are kept by the gateway link
//! (`gateway::backup`), reached through [`governance::agents::AgentControl::backups`]. An
//! import with a critical change waits for a human (202, then `GET .../import/{approval}`).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use governance::backups::{BackupError, Backups, CreateRequest, ImportRequest, InspectRequest};
use http::{header, StatusCode};
use serde_json::Value;

use super::Routes;
use crate::{AppState, Caller, Problem, Role};

/// The backup routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/backups", get(list).post(create))
        .route("/api/v1/backups/inspect", post(inspect))
        .route("/api/v1/backups/import", post(import))
        .route("/api/v1/backups/import/{approval}", get(held_import))
        .route("/api/v1/backups/{id}", get(one))
        .route("/api/v1/backups/{id}/download", get(download))
}

fn problem(e: BackupError) -> Problem {
    match e {
        BackupError::NotFound(d) => Problem::not_found(d),
        BackupError::BadRequest(d) => Problem::bad_request(d),
        BackupError::Refused(d) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Package refused", d),
        BackupError::Conflict(d) => Problem::new(StatusCode::CONFLICT, "Config changed concurrently", d),
        BackupError::Unavailable(d) => Problem::new(StatusCode::BAD_GATEWAY, "Gateway unavailable", d),
        BackupError::Store(d) => Problem::store_failed(d),
    }
}

fn backups(s: &AppState) -> Result<&dyn Backups, Problem> {
    s.agents.as_ref().and_then(|c| c.backups()).ok_or_else(|| {
        Problem::not_found("no gateway backups: no OpenClaw gateway is linked ([gateway] url is not set)")
    })
}

fn body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(b).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    backups(&s)?.list().map(Json).map_err(problem)
}

async fn one(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    backups(&s)?.manifest(&id).map(Json).map_err(problem)
}

async fn create(State(s): State<AppState>, caller: Caller, b: axum::body::Bytes) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let h = backups(&s)?;
    let req: CreateRequest = body(&b)?;
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))?;
    let v = h.create(req, &caller.name).await.map_err(problem)?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn download(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let bytes = backups(&s)?.bytes(&id).map_err(problem)?;
    let disposition = format!("attachment; filename=\"{id}.cbpkg\"");
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        bytes,
    )
        .into_response())
}

async fn inspect(State(s): State<AppState>, caller: Caller, b: axum::body::Bytes) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let h = backups(&s)?;
    let req: InspectRequest = body(&b)?;
    h.inspect(req).await.map(Json).map_err(problem)
}

async fn import(
    State(s): State<AppState>,
    caller: Caller,
    b: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Admin)?;
    let h = backups(&s)?;
    let req: ImportRequest = body(&b)?;
    if !req.dry_run {
        // A change to OpenClaw that cannot be recorded is not made.
        s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))?;
    }
    let v = h.import(req, &caller.name).await.map_err(problem)?;
    // A critical import waits for a human: accepted, not done.
    let code = if v["status"] == "awaiting_approval" { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((code, Json(v)))
}

async fn held_import(
    State(s): State<AppState>,
    caller: Caller,
    Path(approval): Path<String>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let h = backups(&s)?;
    if approval.len() > 64 || !approval.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Problem::bad_request(format!("'{approval}' is not an approval id")));
    }
    h.held_import(&approval).map(Json).map_err(problem)
}

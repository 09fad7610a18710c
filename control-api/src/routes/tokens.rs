//! `/api/v1/tokens` (admin only): list tokens (never their secrets), create one (its secret is
//! in the response, once), revoke one. Every change is an audit record with the admin's
//! token name as actor. `/api/v1/whoami` (any role): the calling token's name and role, so a
//! client (the web UI) offers only what the role may do.

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The token routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{id}", delete(revoke))
        .route("/api/v1/whoami", get(whoami))
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({ "name": caller.name, "role": caller.role }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    name: String,
    role: Role,
}

async fn record(s: &AppState, actor: &str, outcome: audit::Outcome, details: Value) -> Result<(), Problem> {
    let ev = audit::AuditEvent {
        actor: Some(actor.to_string()),
        outcome: Some(outcome),
        details,
        ..audit::AuditEvent::new(audit::RecordKind::Auth)
    };
    s.audit.append_durable(ev).await.map(|_| ()).map_err(|e| Problem::internal(e.to_string()))
}

async fn list(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let mut items = s.tokens.list();
    items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

async fn create(caller: Caller, State(s): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Admin)?;
    let req: CreateToken =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?;
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Problem::bad_request("name must be 1 to 100 characters"));
    }
    let (secret, rec) = s.tokens.create(name, req.role).map_err(|e| Problem::internal(e.to_string()))?;
    record(&s, &caller.name, audit::Outcome::TokenCreated, json!({"token": rec})).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": rec.id, "name": rec.name, "role": rec.role, "created_at": rec.created_at,
            "token": secret,
            "note": "the token is shown only this once; store it now",
        })),
    ))
}

async fn revoke(caller: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    if id.len() < 8 {
        return Err(Problem::bad_request("give the token id (8 hex characters, as listed)"));
    }
    let all = s.tokens.list();
    let Some(target) = all.iter().find(|t| t.id.starts_with(&id) || id.starts_with(&t.id)).cloned() else {
        return Err(Problem::not_found(format!("no token with id {id}")));
    };
    if target.role == Role::Admin && all.iter().filter(|t| t.role == Role::Admin).count() == 1 {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Conflict",
            "this is the last admin token; create another admin token before revoking it",
        ));
    }
    if !s.tokens.revoke(&target.id).map_err(|e| Problem::internal(e.to_string()))? {
        return Err(Problem::not_found(format!("no token with id {id}")));
    }
    record(&s, &caller.name, audit::Outcome::TokenRevoked, json!({"token": target})).await?;
    Ok(Json(json!({ "revoked": target })))
}

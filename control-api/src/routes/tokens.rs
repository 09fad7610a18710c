//! `/api/v1/tokens` (admin only): list tokens (never their secrets), create one (its secret is
//! in the response, once, with `Cache-Control: no-store`; its name is checked and unique, see
//! `auth::check_name`: 400 or 409), revoke one. Every change is an audit record with the admin's
//! token name as actor. `/api/v1/whoami` (any role): the calling token's name and role, so a
//! client (the web UI) offers only what the role may do.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Json;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Routes;
use crate::auth::{Caller, Role, TokenError};
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

/// Record a token change durably. `applied`: what already happened if the record fails
/// (the problem says so), `None` when the caller undoes the change itself.
async fn record(
    s: &AppState,
    actor: &str,
    outcome: audit::Outcome,
    details: Value,
    applied: Option<&str>,
) -> Result<(), Problem> {
    let ev = audit::AuditEvent {
        actor: Some(actor.to_string()),
        outcome: Some(outcome),
        details,
        ..audit::AuditEvent::new(audit::RecordKind::Auth)
    };
    s.audit.append_durable(ev).await.map(|_| ()).map_err(|e| Problem::audit(&e, applied))
}

/// Token changes must be recorded: refused while the audit log cannot write.
fn audit_ready(s: &AppState) -> Result<(), Problem> {
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))
}

async fn list(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let mut items = s.tokens.list();
    items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

async fn create(caller: Caller, State(s): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let req: CreateToken =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?;
    audit_ready(&s)?;
    let (secret, rec) = s.tokens.create(&req.name, req.role).map_err(|e| match e {
        TokenError::BadName(_) => Problem::bad_request(e.to_string()),
        TokenError::DuplicateName(_) => Problem::conflict(e.to_string()),
        TokenError::Store(e) => Problem::store_failed(e),
        e => Problem::internal(e.to_string()),
    })?;
    if let Err(p) = record(&s, &caller.name, audit::Outcome::TokenCreated, json!({"token": rec}), None).await {
        // A token nobody can see the record of must not work: take it back.
        if let Err(e) = s.tokens.revoke(&rec.id) {
            tracing::error!(error = %e, token = %rec.id, "revoking a token whose creation could not be recorded failed");
        }
        return Err(p);
    }
    let mut res = (
        StatusCode::CREATED,
        Json(json!({
            "id": rec.id, "name": rec.name, "role": rec.role, "created_at": rec.created_at,
            "token": secret,
            "note": "the token is shown only this once; store it now",
        })),
    )
        .into_response();
    // The body carries a secret: no cache may keep it.
    res.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn revoke(caller: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    audit_ready(&s)?;
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
    if !s.tokens.revoke(&target.id).map_err(|e| match e {
        TokenError::Store(e) => Problem::store_failed(e),
        e => Problem::internal(e.to_string()),
    })? {
        return Err(Problem::not_found(format!("no token with id {id}")));
    }
    // Revoked stays revoked (the safe side); the caller learns the record is missing.
    let revoked = Some("the token was revoked");
    record(&s, &caller.name, audit::Outcome::TokenRevoked, json!({"token": target}), revoked).await?;
    Ok(Json(json!({ "revoked": target })))
}

//! The OpenClaw plugin gate (docs/plugin.md): `GET /api/v1/plugins` shows, per gateway where
//! the plugin is expected (or was heard from), whether its built-in tools are governed and
//! why (viewer); `GET|POST /api/v1/plugin-tokens` lists or creates the per-gateway tokens the
//! plugin presents to `/v1/decide` (the secret is in the creation answer, once, with
//! `Cache-Control: no-store`), `DELETE /api/v1/plugin-tokens/{id}` revokes one (admin). Every
//! token change is an `auth` audit record naming the gateway, the token id and the admin;
//! secrets never reach the audit log.

use axum::extract::{Path, Query, State};
use axum::http::header::{HeaderValue, CACHE_CONTROL};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Json;
use bytes::Bytes;
use governance::plugin_tokens::{PluginTokenError, PluginTokenInfo};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The plugin routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/plugins", get(status))
        .route("/api/v1/plugin-tokens", get(list).post(create))
        .route("/api/v1/plugin-tokens/{id}", delete(revoke))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFilter {
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    /// Defaults to the linked gateway (`[gateway] url`).
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

fn store_problem(e: PluginTokenError) -> Problem {
    match e {
        PluginTokenError::Invalid(m) => Problem::bad_request(m),
        other => Problem::internal(other.to_string()),
    }
}

async fn record(s: &AppState, actor: &str, outcome: audit::Outcome, t: &PluginTokenInfo) -> Result<(), Problem> {
    let ev = audit::AuditEvent {
        actor: Some(actor.to_string()),
        outcome: Some(outcome),
        subject: json!({"plugin_token": t.id, "gateway": t.gateway}),
        details: json!({"plugin_token": t}),
        ..audit::AuditEvent::new(audit::RecordKind::Auth)
    };
    s.audit.append_durable(ev).await.map(|_| ()).map_err(|e| Problem::internal(e.to_string()))
}

async fn status(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    Ok(Json(json!({
        "items": (s.plugins)(),
        "next_cursor": null,
        "linked_gateway": s.linked_gateway,
    })))
}

async fn list(
    caller: Caller,
    State(s): State<AppState>,
    q: Result<Query<TokenFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let Query(f) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    Ok(Json(json!({ "items": s.plugin_tokens.list(f.gateway.as_deref()), "next_cursor": null })))
}

async fn create(caller: Caller, State(s): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    let req: CreateToken = if body.iter().all(u8::is_ascii_whitespace) {
        CreateToken::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?
    };
    let Some(gateway) = req.gateway.or_else(|| s.linked_gateway.clone()) else {
        return Err(Problem::bad_request(
            "gateway is required: no [gateway] url is configured to default to (give the gateway's URL or a name)",
        ));
    };
    let (secret, info) = s.plugin_tokens.create(&gateway, req.label.as_deref(), &caller.name).map_err(store_problem)?;
    record(&s, &caller.name, audit::Outcome::Created, &info).await?;
    let mut body = json!(info);
    body["token"] = json!(secret);
    body["note"] = json!("the token is shown only this once; give it to the gateway's ClawButler plugin now");
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn revoke(caller: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let Some(info) = s.plugin_tokens.revoke(&id).map_err(store_problem)? else {
        return Err(Problem::not_found(format!("no plugin token with id {id}")));
    };
    record(&s, &caller.name, audit::Outcome::Revoked, &info).await?;
    Ok(Json(json!({ "revoked": info })))
}

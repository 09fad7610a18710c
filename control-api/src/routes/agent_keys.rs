//! Per-agent data-path keys (admin only): `GET /api/v1/agent-keys[?agent=A]` lists every key
//! (never a secret), `GET|POST /api/v1/agents/{id}/keys` lists or creates one agent's keys
//! (the secret is in the creation answer, once, with `Cache-Control: no-store`), `DELETE
//! /api/v1/agents/{id}/keys/{key_id}` revokes one. Every change is an `auth` audit record
//! (outcome `created` / `revoked`) naming the agent, the key id and the admin; secrets never
//! reach the audit log. See docs/security.md.
//!
//! Per-agent MCP tokens (what `/mcp/agent/{id}` checks, docs/mcp.md) are served the same way
//! under `/api/v1/mcp-tokens` and `/api/v1/agents/{id}/mcp-tokens[/{token_id}]`: the same
//! handlers, picked by the `MCP` const parameter.

use axum::extract::{Path, Query, State};
use axum::http::header::{HeaderValue, CACHE_CONTROL};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Json;
use bytes::Bytes;
use governance::agent_keys::{AgentKeyError, AgentKeyInfo};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The agent-key and MCP-token routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/agent-keys", get(list_all::<false>))
        .route("/api/v1/agents/{id}/keys", get(list_agent::<false>).post(create::<false>))
        .route("/api/v1/agents/{id}/keys/{key_id}", delete(revoke::<false>))
        .route("/api/v1/mcp-tokens", get(list_all::<true>))
        .route("/api/v1/agents/{id}/mcp-tokens", get(list_agent::<true>).post(create::<true>))
        .route("/api/v1/agents/{id}/mcp-tokens/{key_id}", delete(revoke::<true>))
}

/// The store a route works on: MCP tokens or data-path keys.
fn store<const MCP: bool>(s: &AppState) -> &governance::AgentKeys {
    if MCP {
        &s.mcp_tokens
    } else {
        &s.agent_keys
    }
}

/// What the audit record and messages call one.
fn noun<const MCP: bool>() -> &'static str {
    if MCP {
        "mcp_token"
    } else {
        "agent_key"
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFilter {
    agent: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    #[serde(default)]
    label: Option<String>,
}

fn agent_id(id: &str) -> Result<(), Problem> {
    decision::agent_id::check(id).map_err(|e| Problem::bad_request(e.to_string()))
}

fn store_problem(e: AgentKeyError) -> Problem {
    match e {
        AgentKeyError::Invalid(m) => Problem::bad_request(m),
        AgentKeyError::Store(e) => Problem::store_failed(e),
        other => Problem::internal(other.to_string()),
    }
}

/// Record a key change durably; `applied`: what already happened if the record fails.
async fn record<const MCP: bool>(
    s: &AppState,
    actor: &str,
    outcome: audit::Outcome,
    key: &AgentKeyInfo,
    applied: Option<&str>,
) -> Result<(), Problem> {
    let ev = audit::AuditEvent {
        agent: Some(key.agent.clone()),
        actor: Some(actor.to_string()),
        outcome: Some(outcome),
        subject: json!({ noun::<MCP>(): key.id }),
        details: json!({ noun::<MCP>(): key }),
        ..audit::AuditEvent::new(audit::RecordKind::Auth)
    };
    s.audit.append_durable(ev).await.map(|_| ()).map_err(|e| Problem::audit(&e, applied))
}

/// Key changes must be recorded: refused while the audit log cannot write.
fn audit_ready(s: &AppState) -> Result<(), Problem> {
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))
}

fn page(items: Vec<AgentKeyInfo>) -> Json<Value> {
    Json(json!({ "items": items, "next_cursor": null }))
}

async fn list_all<const MCP: bool>(
    caller: Caller,
    State(s): State<AppState>,
    q: Result<Query<KeyFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let Query(f) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    if let Some(a) = &f.agent {
        agent_id(a)?;
    }
    Ok(page(store::<MCP>(&s).list(f.agent.as_deref())))
}

async fn list_agent<const MCP: bool>(
    caller: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    agent_id(&id)?;
    Ok(page(store::<MCP>(&s).list(Some(&id))))
}

async fn create<const MCP: bool>(
    caller: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Role::Admin)?;
    agent_id(&id)?;
    let req: CreateKey = if body.iter().all(u8::is_ascii_whitespace) {
        CreateKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?
    };
    audit_ready(&s)?;
    let (secret, info) = store::<MCP>(&s).create(&id, req.label.as_deref(), &caller.name).map_err(store_problem)?;
    if let Err(p) = record::<MCP>(&s, &caller.name, audit::Outcome::Created, &info, None).await {
        // A key whose creation is not on record must not work: take it back.
        if let Err(e) = store::<MCP>(&s).revoke(&id, &info.id) {
            tracing::error!(error = %e, key = %info.id, "revoking a key whose creation could not be recorded failed");
        }
        return Err(p);
    }
    let mut body = json!(info);
    if MCP {
        body["token"] = json!(secret);
        body["note"] = json!("the token is shown only this once; give it to the agent's MCP server entry now");
    } else {
        body["key"] = json!(secret);
        body["note"] = json!("the key is shown only this once; give it to the agent's provider now");
    }
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

async fn revoke<const MCP: bool>(
    caller: Caller,
    State(s): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    agent_id(&id)?;
    audit_ready(&s)?;
    let Some(info) = store::<MCP>(&s).revoke(&id, &key_id).map_err(store_problem)? else {
        let what = if MCP { "MCP token" } else { "key" };
        return Err(Problem::not_found(format!("agent '{id}' has no {what} with id {key_id}")));
    };
    // Revoked stays revoked (the safe side); the caller learns the record is missing.
    record::<MCP>(&s, &caller.name, audit::Outcome::Revoked, &info, Some("the key was revoked")).await?;
    Ok(Json(json!({ "revoked": info })))
}

//! `/api/v1/grants`: standing grants ("allow always"), each with its breadth and a sentence
//! saying what it lets through. Anyone with a token lists; approvers create and revoke.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::StatusCode;
use proxy::approvals::ScopeInput;
use serde::Deserialize;
use serde_json::{json, Value};

use super::approvals::problem;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The grant routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/grants", get(list).post(create)).route("/api/v1/grants/{id}", get(one).delete(revoke))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFilter {
    agent: Option<String>,
    kind: Option<String>,
}

async fn list(
    _c: Caller,
    State(s): State<AppState>,
    q: Result<Query<GrantFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(f) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let now = chrono::Utc::now();
    let items: Vec<Value> = s
        .broker
        .grants()
        .iter()
        .rev()
        .filter(|g| f.agent.as_deref().is_none_or(|a| g.scope.agent == a))
        .filter(|g| f.kind.as_deref().is_none_or(|k| g.scope.kind.as_str() == k))
        .map(|g| {
            let mut v = json!(g);
            v["expired"] = json!(g.expired(now));
            v
        })
        .collect();
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

async fn one(_c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    s.broker.grant(&id).map(|g| Json(json!(g))).ok_or_else(|| Problem::not_found(format!("no grant '{id}'")))
}

async fn create(caller: Caller, State(s): State<AppState>, body: Bytes) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Approver)?;
    let input: ScopeInput =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?;
    let g = s.broker.create_grant(&input, &caller.name).await.map_err(problem)?;
    Ok((StatusCode::CREATED, Json(json!(g))))
}

async fn revoke(caller: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Approver)?;
    let g = s.broker.revoke_grant(&id, &caller.name).await.map_err(problem)?;
    Ok(Json(json!({ "revoked": g })))
}

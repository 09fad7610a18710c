//! `/api/v1/grants`: standing grants ("allow always"), each with its breadth and a sentence
//! saying what it lets through. Anyone with a token lists; approvers create and revoke.
//!
//! In fleet mode (`[fleet]`) grants are the fleet's (`fleet::grants`): listed from the
//! database with the sidecar that created each (`sidecar`, `fleet: true`), created and
//! revoked there through any sidecar; grants this sidecar stored before it joined the fleet
//! are listed beside them (`fleet: false`, this sidecar's id) and apply here only. A database
//! that does not answer is 503 problem+json.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::Json;
use bytes::Bytes;
use governance::approvals::{BrokerError, Grant, ScopeInput};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::approvals::problem;
use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The grant routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/grants", get(list).post(create))
        .route("/api/v1/grants/{id}", get(one).delete(revoke))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFilter {
    agent: Option<String>,
    kind: Option<String>,
    /// Page size (default 100, at most 500).
    limit: Option<usize>,
    /// The `next_cursor` of the previous page: grants older than that one.
    cursor: Option<String>,
}

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 500;

async fn list(
    _c: Caller,
    State(s): State<AppState>,
    q: Result<Query<GrantFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(mut f) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    f.cursor = super::id_cursor(f.cursor.take())?;
    let limit = f.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(Problem::bad_request(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let now = chrono::Utc::now();
    // Newest first. Ids are UUID v7 (time-ordered), so a cursor is a position even after the
    // grant it names was revoked.
    let keep = |g: &Grant| {
        f.cursor.as_deref().is_none_or(|c| g.id.as_str() < c)
            && f.agent.as_deref().is_none_or(|a| g.scope.agent == a)
            && f.kind.as_deref().is_none_or(|k| g.scope.kind.as_str() == k)
    };
    let own = s.broker.grants();
    let mut page: Vec<(Grant, bool)> =
        own.iter().rev().filter(|g| keep(g)).take(limit + 1).map(|g| (g.clone(), false)).collect();
    if let Some(fl) = s.fleet.as_deref() {
        let fleet = fl
            .grants()
            .list(f.agent.as_deref(), f.kind.as_deref(), f.cursor.as_deref(), limit + 1)
            .await
            .map_err(unavailable)?;
        page.extend(fleet.into_iter().map(|g| (g, true)));
        page.sort_by(|a, b| b.0.id.cmp(&a.0.id));
    }
    let next_cursor = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|(g, _)| g.id.clone())
    } else {
        None
    };
    let items: Vec<Value> = page
        .iter()
        .map(|(g, in_fleet)| {
            let mut v = json!(g);
            v["expired"] = json!(g.expired(now));
            if let Some(fl) = s.fleet.as_deref() {
                v["fleet"] = json!(in_fleet);
                if !in_fleet {
                    v["sidecar"] = json!(fl.sidecar_id());
                }
            }
            v
        })
        .collect();
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}

/// The fleet database did not answer: 503 problem+json (nothing was changed).
fn unavailable(e: fleet::FleetError) -> Problem {
    problem(BrokerError::Unavailable(e.to_string()))
}

async fn one(_c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let own = s.broker.grants().iter().find(|g| g.id == id).cloned();
    let g = match (own, s.fleet.as_deref()) {
        (Some(g), _) => Some(g),
        (None, Some(fl)) => fl.grants().get(&id).await.map_err(unavailable)?,
        (None, None) => None,
    };
    g.map(|g| Json(json!(g))).ok_or_else(|| Problem::not_found(format!("no grant '{id}'")))
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

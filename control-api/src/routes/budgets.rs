//! `/api/v1/budgets`: list and inspect (any role); create, replace, delete and reset (admin,
//! with every change audited under the token's name). A change is refused while the audit
//! log cannot write, and is on disk (store flushed, record fsynced) before it is answered.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Json;
use governance::budget::{BudgetConfig, BudgetError, BudgetView};
use serde::Deserialize;

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The budget routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/budgets", get(list).put(put_body))
        .route("/api/v1/budgets/{id}", get(one).put(put_id).delete(delete))
        .route("/api/v1/budgets/{id}/reset", post(reset))
}

fn problem(e: BudgetError) -> Problem {
    match e {
        BudgetError::NotFound(_) => Problem::not_found(e.to_string()),
        BudgetError::ConfigManaged(_) => Problem::new(http::StatusCode::CONFLICT, "Managed by config", e.to_string()),
        BudgetError::Invalid { .. } => Problem::bad_request(e.to_string()),
        BudgetError::Store(e) => Problem::store_failed(e),
        _ => Problem::internal(e.to_string()),
    }
}

/// Budget changes must be recorded: refused while the audit log cannot write.
fn audit_ready(s: &AppState) -> Result<(), Problem> {
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))
}

/// After a change: spend on disk and its record fsynced, before the caller is answered. If
/// that fails the answer names what was applied (its record waits in memory and is written
/// once the disk takes writes again).
async fn durable<T>(s: &AppState, applied: &'static str, v: T) -> Result<T, Problem> {
    let (budgets, audit) = (s.budgets.clone(), s.audit.clone());
    tokio::task::spawn_blocking(move || {
        budgets.sync().map_err(|e| {
            let mut p = problem(e);
            p.detail = format!("{applied}, but it could not be stored: {}", p.detail);
            p
        })?;
        audit.flush().map_err(|e| Problem::audit(&e, Some(applied)))
    })
    .await
    .map_err(|e| Problem::internal(e.to_string()))??;
    Ok(v)
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> Result<T, Problem> {
    b.map(|Json(v)| v).map_err(|e| Problem::bad_request(e.body_text()))
}

async fn list(_c: Caller, State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "items": s.budgets.list(), "next_cursor": null }))
}

async fn one(_c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<BudgetView>, Problem> {
    s.budgets.get(&id).map(Json).ok_or_else(|| Problem::not_found(format!("budget {id} not found")))
}

async fn put_body(
    c: Caller,
    State(s): State<AppState>,
    b: JsonBody<BudgetConfig>,
) -> Result<Json<BudgetView>, Problem> {
    c.require(Role::Admin)?;
    audit_ready(&s)?;
    let v = s.budgets.upsert(body(b)?, &c.name).map_err(problem)?;
    durable(&s, "the budget was saved", Json(v)).await
}

async fn put_id(
    c: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
    b: JsonBody<BudgetConfig>,
) -> Result<Json<BudgetView>, Problem> {
    c.require(Role::Admin)?;
    let mut cfg = body(b)?;
    if cfg.id.as_ref().is_some_and(|x| *x != id) {
        return Err(Problem::bad_request("the body's id differs from the path's"));
    }
    cfg.id = Some(id);
    audit_ready(&s)?;
    let v = s.budgets.upsert(cfg, &c.name).map_err(problem)?;
    durable(&s, "the budget was saved", Json(v)).await
}

async fn delete(c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<http::StatusCode, Problem> {
    c.require(Role::Admin)?;
    audit_ready(&s)?;
    s.budgets.delete(&id, &c.name).map_err(problem)?;
    durable(&s, "the budget was deleted", http::StatusCode::NO_CONTENT).await
}

/// Body of a reset.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetBody {
    reason: String,
}

async fn reset(
    c: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
    b: JsonBody<ResetBody>,
) -> Result<Json<BudgetView>, Problem> {
    c.require(Role::Admin)?;
    let r = body(b)?;
    if r.reason.trim().is_empty() {
        return Err(Problem::bad_request("a reason is required to reset a budget"));
    }
    audit_ready(&s)?;
    let v = s.budgets.reset(&id, r.reason.trim(), &c.name).map_err(problem)?;
    durable(&s, "the budget was reset", Json(v)).await
}

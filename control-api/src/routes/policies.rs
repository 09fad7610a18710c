//! `/api/v1/policies`: what is loaded (any role), reload (admin), dry-run eval (any role).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The policy routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/policies", get(status))
        .route("/api/v1/policies/reload", post(reload))
        .route("/api/v1/policies/eval", post(eval))
}

async fn status(_c: Caller, State(s): State<AppState>) -> Json<policy::PolicyStatus> {
    Json(s.policy.status())
}

async fn reload(c: Caller, State(s): State<AppState>) -> Result<Json<policy::PolicyStatus>, Problem> {
    c.require(Role::Admin)?;
    s.policy
        .reload()
        .map(Json)
        .map_err(|e| Problem::new(http::StatusCode::UNPROCESSABLE_ENTITY, "Policy bundle rejected", e.to_string()))
}

async fn eval(
    _c: Caller,
    State(s): State<AppState>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<policy::Decision>, Problem> {
    let Json(input) = body.map_err(|e| Problem::bad_request(e.body_text()))?;
    Ok(Json(s.policy.evaluate_value(&input)))
}

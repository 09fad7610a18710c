//! `/api/v1/policies`: what is loaded (any role), reload (admin), dry-run eval (any role).

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The policy routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/policies", get(status))
        .route("/api/v1/policies/reload", post(reload))
        .route("/api/v1/policies/eval", post(eval))
}

async fn status(_c: Caller, State(s): State<AppState>) -> Json<policy::PolicyStatus> {
    Json(s.policy.status())
}

async fn reload(c: Caller, State(s): State<AppState>) -> Result<Json<policy::PolicyStatus>, Problem> {
    c.require(Role::Admin)?;
    // A reload changes what decides every call: refused while it cannot be recorded.
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))?;
    let before = s.policy.revision();
    let result = s.policy.reload_by(policy::ReloadTrigger::Api);
    let ev = audit::AuditEvent {
        bundle_revision: Some(s.policy.revision()),
        actor: Some(c.name.clone()),
        outcome: Some(if result.is_ok() { audit::Outcome::Reloaded } else { audit::Outcome::Error }),
        reason: result.as_ref().err().map(|e| e.to_string()),
        details: serde_json::json!({"previous_revision": before, "trigger": "api"}),
        ..audit::AuditEvent::new(audit::RecordKind::PolicyReload)
    };
    if let Err(e) = s.audit.append_durable(ev).await {
        tracing::error!(error = %e, "audit append failed for a policy reload");
        let what = if result.is_ok() { "the policies were reloaded" } else { "the reload was refused" };
        return Err(Problem::audit(&e, Some(what)));
    }
    // On error the last good bundle keeps serving; the caller sees why the new one was refused.
    result
        .map(Json)
        .map_err(|e| Problem::new(http::StatusCode::UNPROCESSABLE_ENTITY, "Policy bundle rejected", e.to_string()))
}

async fn eval(
    _c: Caller,
    State(s): State<AppState>,
    body: Result<Json<serde_json::Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<decision::Decision>, Problem> {
    let Json(input) = body.map_err(|e| Problem::bad_request(e.body_text()))?;
    Ok(Json(s.policy.evaluate_value(&input)))
}

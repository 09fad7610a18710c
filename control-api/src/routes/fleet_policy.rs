//! `/api/v1/fleet/policy`: the policy rollout (docs/fleet.md, "Policy rollout"). A POST
//! (admin) publishes a bundle signed with the fleet's key (what `clawbutler policy publish`
//! sends): this sidecar verifies the signature and runs the bundle's tests first, so a bad
//! bundle is refused here (422) and never reaches the fleet; a good one is stored and every
//! sidecar applies it. A GET (viewer) shows the newest bundle and each sidecar's policy: the
//! revision serving, the bundle applied, the last refusal and why.

use axum::extract::State;
use axum::routing::get;
use axum::Json;
use serde_json::{json, Value};

use super::agents::{audit_ready, parse};
use super::fleet::{db_err, fleet_of};
use super::Routes;
use crate::{AppState, Caller, Problem, Role};

/// The rollout routes.
pub fn routes() -> Routes {
    Routes::default().route("/api/v1/fleet/policy", get(status).post(publish))
}

async fn status(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let f = fleet_of(&s)?;
    let newest = f.rollout().newest().await.map_err(db_err)?;
    let sidecars: Vec<Value> = f
        .rollout()
        .states()
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|(id, policy)| json!({ "id": id, "policy": policy }))
        .collect();
    Ok(Json(json!({ "newest": newest, "sidecars": sidecars, "this_sidecar": f.sidecar_id() })))
}

async fn publish(State(s): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let f = fleet_of(&s)?;
    let bundle: policy::SignedBundle = parse(&body)?;
    // A publication changes what decides every call of the fleet: refused while it cannot be
    // recorded here.
    audit_ready(&s)?;
    let result = f.rollout().publish(&bundle, &caller.name).await;
    let details = match &result {
        Ok(row) => json!({"fleet": true, "action": "publish", "seq": row.seq, "digest": row.digest}),
        Err(_) => json!({"fleet": true, "action": "publish", "digest": bundle.digest()}),
    };
    let ev = audit::AuditEvent {
        actor: Some(caller.name.clone()),
        outcome: Some(if result.is_ok() { audit::Outcome::Reloaded } else { audit::Outcome::Error }),
        reason: result.as_ref().err().map(|e| e.to_string()),
        details,
        ..audit::AuditEvent::new(audit::RecordKind::PolicyReload)
    };
    let recorded = match s.audit.append_durable(ev).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "audit append failed for a fleet policy publication");
            false
        }
    };
    match result {
        Ok(row) => {
            let mut v = json!(row);
            if !recorded {
                v["audit_recorded"] = json!(false);
            }
            Ok(Json(v))
        }
        Err(fleet::FleetError::Refused(why)) => Err(Problem::new(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            "Policy bundle refused",
            format!("{why}; nothing was published, every sidecar keeps its policy"),
        )),
        Err(e) => Err(db_err(e)),
    }
}

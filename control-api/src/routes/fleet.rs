//! `/api/v1/fleet/...`: the fleet of sidecars sharing one PostgreSQL database (docs/fleet.md).
//! The sidecar registry, and the fleet kill switch: a kill or recover made here is stored
//! centrally and applied by every sidecar (LISTEN/NOTIFY, with polling as the safety net)
//! through its own kill switch, so the agent's calls are refused everywhere the way a local
//! kill refuses them. Without `[fleet]` these routes answer 404.

use axum::extract::State;
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::agents::{agent_id, audit, audit_ready, parse, reason_of};
use super::Routes;
use crate::{AppState, Caller, Problem, Role};

/// The fleet routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/fleet/sidecars", get(sidecars))
        .route("/api/v1/fleet/kills", get(kills))
        .route("/api/v1/fleet/kill", post(kill))
        .route("/api/v1/fleet/recover", post(recover))
}

/// Body of a fleet kill: `agent` (that agent everywhere), `sidecar` (every agent of that
/// sidecar's gateway), neither = the whole fleet.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBody {
    agent: Option<String>,
    sidecar: Option<String>,
    reason: Option<String>,
}

/// Body of a fleet recover: `agent` or `sidecar` as for a kill, neither = every fleet kill;
/// `confirm` must be `true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    agent: Option<String>,
    sidecar: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    confirm: bool,
}

/// The scope a body names; a sidecar must be a member of the fleet (a typo would otherwise
/// stop nothing while looking like it stopped something).
async fn target<'a>(
    f: &fleet::Fleet,
    agent: &'a Option<String>,
    sidecar: &'a Option<String>,
) -> Result<Option<fleet::KillScope<'a>>, Problem> {
    match (agent, sidecar) {
        (Some(_), Some(_)) => Err(Problem::bad_request("name an agent or a sidecar, not both")),
        (Some(a), None) => {
            agent_id(a)?;
            Ok(Some(fleet::KillScope::Agent(a)))
        }
        (None, Some(sc)) => {
            let known = f.sidecars().await.map_err(db_err)?.iter().any(|r| &r.id == sc);
            if !known {
                return Err(Problem::not_found(format!(
                    "no sidecar {sc:?} in this fleet (GET /api/v1/fleet/sidecars)"
                )));
            }
            Ok(Some(fleet::KillScope::Sidecar(sc)))
        }
        (None, None) => Ok(None),
    }
}

pub(super) fn fleet_of(s: &AppState) -> Result<&fleet::Fleet, Problem> {
    s.fleet.as_deref().ok_or_else(|| Problem::not_found("fleet mode is off: this sidecar has no [fleet] section"))
}

pub(super) fn db_err(e: fleet::FleetError) -> Problem {
    match e {
        fleet::FleetError::AgentId(e) => Problem::bad_request(e.to_string()),
        e => Problem::new(http::StatusCode::SERVICE_UNAVAILABLE, "Fleet database unavailable", e.to_string()),
    }
}

async fn sidecars(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let f = fleet_of(&s)?;
    let items = f.sidecars().await.map_err(db_err)?;
    Ok(Json(json!({ "items": items, "this_sidecar": f.sidecar_id(), "next_cursor": null })))
}

/// Every fleet scope ever set, plus what this sidecar applies now.
async fn kills(caller: Caller, State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let items = fleet_of(&s)?.kills().await.map_err(db_err)?;
    let applied = s.kill.fleet();
    Ok(Json(json!({
        "items": items,
        "applied": {
            "global": applied.global,
            "agents": applied.agents,
            "unreachable": applied.unreachable,
        },
        "next_cursor": null,
    })))
}

async fn kill(State(s): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let f = fleet_of(&s)?;
    let b: KillBody = parse(&body)?;
    let reason = reason_of(b.reason)?;
    let scope = target(f, &b.agent, &b.sidecar).await?.unwrap_or(fleet::KillScope::Fleet);
    let row = f.set_kill(scope, true, &reason, &caller.name).await.map_err(db_err)?;
    let details = json!({"fleet": true, "sidecar_id": f.sidecar_id(), "epoch": row.epoch, "target_sidecar": b.sidecar});
    let recorded = audit(&s, b.agent.as_deref(), &caller.name, audit::Outcome::BlockedAtProxy, &reason, details).await;
    let mut v = json!(row);
    if !recorded {
        v["audit_recorded"] = json!(false);
    }
    Ok(Json(v))
}

async fn recover(State(s): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let f = fleet_of(&s)?;
    let b: RecoverBody = parse(&body)?;
    let reason = reason_of(b.reason)?;
    if !b.confirm {
        return Err(Problem::bad_request("recover needs \"confirm\": true"));
    }
    let scope = target(f, &b.agent, &b.sidecar).await?;
    audit_ready(&s)?;
    let mut v = match scope {
        Some(scope) => json!(f.set_kill(scope, false, &reason, &caller.name).await.map_err(db_err)?),
        None => json!({ "items": f.recover_all(&reason, &caller.name).await.map_err(db_err)? }),
    };
    let details = json!({"fleet": true, "sidecar_id": f.sidecar_id(), "target_sidecar": b.sidecar});
    let recorded =
        audit(&s, b.agent.as_deref(), &caller.name, audit::Outcome::UnblockedAtProxy, &reason, details).await;
    if !recorded {
        v["audit_recorded"] = json!(false);
    }
    Ok(Json(v))
}

//! `/api/v1/agents`: the agents OpenClaw runs, their health, and the kill switch.
//!
//! The list is the gateway's roster (with model, workspace, runs and pending exec approvals),
//! plus agents seen only on the data path, plus killed agents nobody has seen. Health, its
//! reason and since when come from the health tracker (`governance::health`) for all of them.
//!
//! The kill flag itself lives in governance's `KillSwitch`, so killing works (and blocks model
//! calls at once) even without a gateway link. When a link is configured, an [`AgentControl`]
//! (implemented by the `gateway` crate) lists the agents and carries
//! the kill to OpenClaw: it aborts active runs, denies pending exec approvals, blocks tools and
//! disables cron jobs, and on recover restores exactly what it changed.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use governance::agents::{AgentSummary, Health};
use governance::health::HealthView;

use super::Routes;
use crate::{AppState, Caller, Problem, Role};

/// The agent routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/agents", get(list))
        .route("/api/v1/agents/kill", post(kill_all))
        .route("/api/v1/agents/recover", post(recover_all))
        .route("/api/v1/agents/{id}", get(get_one))
        .route("/api/v1/agents/{id}/kill", post(kill))
        .route("/api/v1/agents/{id}/recover", post(recover))
}

/// Body of a kill.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillBody {
    pub reason: Option<String>,
}

/// Body of a recover: `confirm` must be `true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    pub reason: Option<String>,
    #[serde(default)]
    pub confirm: bool,
}

fn view(s: &AppState, a: Option<AgentSummary>, id: &str) -> Value {
    let entry = s.kill.agent_entry(id);
    let global = s.kill.global();
    let killed = entry.is_some() || global.is_some();
    let listed = a.is_some();
    let mut v = match a {
        Some(a) => serde_json::to_value(a).unwrap_or_else(|_| json!({})),
        None => json!({"id": id, "name": id, "health": "offline", "last_activity": null}),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("killed".into(), json!(killed));
        o.insert("kill".into(), serde_json::to_value(entry.or(global)).unwrap_or(Value::Null));
        // A fleet kill in force here (refused at the proxy like a local one).
        o.insert("fleet_kill".into(), serde_json::to_value(s.kill.fleet_entry(id)).unwrap_or(Value::Null));
        // What a kill (local or fleet) holds changed in OpenClaw, to be undone on recover.
        o.insert("openclaw_kill".into(), s.agents.as_ref().and_then(|c| c.kill_record(id)).unwrap_or(Value::Null));
        // Which of its paths go through ClawButler (null: no gateway, or not computed yet).
        o.insert("governance".into(), s.agents.as_ref().and_then(|c| c.governance(id)).unwrap_or(Value::Null));
        // The linked gateway's plugin decides this agent's built-in tools (docs/plugin.md).
        let tools = match (listed, linked_plugin(s)) {
            (true, Some(p)) => json!({"governance": p.governance, "reason": p.reason}),
            (true, None) => json!({"governance": "unknown", "reason":
                "the ClawButler plugin is not expected on this gateway (no plugin token, [plugin] required is off)"}),
            (false, _) => json!({"governance": "unknown", "reason": "not an agent of the linked gateway"}),
        };
        o.insert("built_in_tools".into(), tools);
        // Drift of its OpenClaw config from the version ClawButler made or accepted
        // (`config-safety.md`); `ungoverned` when ClawButler's wiring drifted away.
        let drift = s.agents.as_ref().and_then(|c| c.config_history()).and_then(|h| h.status(id));
        o.insert("config_drift".into(), drift.unwrap_or(Value::Null));
    }
    v
}

/// The linked gateway's plugin, if a gateway is linked.
fn linked_plugin(s: &AppState) -> Option<governance::plugin::PluginView> {
    let id = s.linked_gateway.as_ref()?;
    (s.plugins)().into_iter().find(|p| &p.gateway == id)
}

/// An agent the gateway does not list: what the health tracker knows of it (seen on the data
/// path), or nothing at all (killed before anyone saw it).
fn bare(id: &str, h: Option<HealthView>) -> AgentSummary {
    let (health, reason, since, last_activity) = match h {
        Some(h) => (h.health, h.reason, Some(h.since), h.last_activity),
        None => (
            Health::Offline,
            Some("never seen: no call through the sidecar, not in a gateway roster".into()),
            None,
            None,
        ),
    };
    AgentSummary {
        id: id.to_string(),
        name: id.to_string(),
        health,
        health_reason: reason,
        health_since: since,
        last_activity,
        model: None,
        workspace: None,
        active_runs: 0,
        pending_approvals: 0,
        spend_usd: None,
    }
}

fn one(s: &AppState, id: &str) -> Option<AgentSummary> {
    s.agents.as_ref().and_then(|c| c.get(id)).or_else(|| s.health.view(id).map(|h| bare(id, Some(h))))
}

async fn list(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    let mut agents = s.agents.as_ref().map(|c| c.list()).unwrap_or_default();
    // Agents seen only on the data path, and agents killed before anyone saw them.
    for (id, h) in s.health.views() {
        if !agents.iter().any(|a| a.id == id) {
            agents.push(bare(&id, Some(h)));
        }
    }
    for (id, _) in s.kill.killed_agents() {
        if !agents.iter().any(|a| a.id == id) {
            agents.push(bare(&id, None));
        }
    }
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    let items: Vec<Value> = agents.into_iter().map(|a| view(&s, Some(a.clone()), &a.id)).collect();
    Ok(Json(json!({
        "items": items,
        "next_cursor": null,
        "gateway": {"configured": s.agents.is_some(), "connected": s.agents.as_ref().is_some_and(|c| c.connected()),
                    "plugin": linked_plugin(&s)},
    })))
}

async fn get_one(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    caller.require(Role::Viewer)?;
    agent_id(&id)?;
    let a = one(&s, &id);
    if a.is_none() && s.kill.agent_entry(&id).is_none() {
        return Err(Problem::not_found(format!("no agent '{id}'")));
    }
    Ok(Json(view(&s, a.or_else(|| Some(bare(&id, None))), &id)))
}

/// Agent ids are OpenClaw's canonical spelling (`decision::agent_id`); a kill under another
/// spelling would block a name no call can use.
pub(crate) fn agent_id(id: &str) -> Result<(), Problem> {
    decision::agent_id::check(id).map_err(|e| Problem::bad_request(e.to_string()))
}

pub(crate) fn reason_of(r: Option<String>) -> Result<String, Problem> {
    r.map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Problem::bad_request("'reason' is required and must not be empty"))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

/// Record a kill-switch action durably; returns whether it was recorded. A kill takes effect
/// whether or not its record can be written (failing closed needs no record); the answer then
/// carries `"audit_recorded": false`. Recovering is refused beforehand while the log cannot
/// write ([`audit_ready`]).
pub(crate) async fn audit(
    s: &AppState,
    agent: Option<&str>,
    actor: &str,
    outcome: audit::Outcome,
    reason: &str,
    details: Value,
) -> bool {
    let ev = audit::AuditEvent {
        agent: agent.map(str::to_string),
        actor: Some(actor.to_string()),
        outcome: Some(outcome),
        reason: Some(reason.to_string()),
        subject: json!({"agent": agent.unwrap_or("*")}),
        details,
        ..audit::AuditEvent::new(audit::RecordKind::KillSwitch)
    };
    match s.audit.append_durable(ev).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "kill switch audit append failed; the action stands");
            false
        }
    }
}

/// Recovering lets an agent through again: refused while the audit log cannot record it.
pub(crate) fn audit_ready(s: &AppState) -> Result<(), Problem> {
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))
}

/// Mark an answer whose records could not all be written.
fn unrecorded(mut v: Value, recorded: bool) -> Value {
    if !recorded {
        v["audit_recorded"] = json!(false);
    }
    v
}

fn incomplete(id: &str, e: &str) -> Problem {
    Problem::new(
        http::StatusCode::BAD_GATEWAY,
        "Recover incomplete",
        format!("could not restore agent {id} in OpenClaw ({e}); it stays blocked, retry when fixed"),
    )
}

fn store_err(e: governance::kill::KillError) -> Problem {
    Problem::store_failed(format!("kill switch store: {e}"))
}

/// A kill is in force in memory even when storing it failed; say so.
fn kill_store_err(e: governance::kill::KillError) -> Problem {
    let mut p = Problem::store_failed(format!("kill switch store: {e}"));
    p.detail =
        format!("the kill is in force now, but could not be stored and would not survive a restart: {}", p.detail);
    p
}

async fn kill(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    agent_id(&id)?;
    let reason = reason_of(parse::<KillBody>(&body)?.reason)?;
    // Block at the proxy first: this is the <= 100 ms promise and must not wait for OpenClaw.
    let fresh = s.kill.kill(&id, governance::kill::KillEntry::now(&reason, &caller.name)).map_err(kill_store_err)?;
    let mut recorded =
        audit(&s, Some(&id), &caller.name, audit::Outcome::BlockedAtProxy, &reason, json!({"already_killed": !fresh}))
            .await;
    // Its held calls can no longer go ahead: nobody should be asked about them (with or
    // without a gateway, and even while the link is down).
    let denied = s.broker.deny_all_for_agent(&id, &format!("kill switch: {reason}"), &caller.name).await;
    if !denied.is_empty() {
        let ids: Vec<&str> = denied.iter().map(|a| a.id.as_str()).collect();
        recorded &= audit(
            &s,
            Some(&id),
            &caller.name,
            audit::Outcome::ApprovalsDenied,
            &reason,
            json!({"clawbutler_approvals": ids}),
        )
        .await;
    }
    let gateway = match &s.agents {
        Some(c) => c.kill(&id, &reason, &caller.name).await.unwrap_or_else(|e| json!({"error": e})),
        None => json!({"configured": false}),
    };
    let mut v = view(&s, one(&s, &id), &id);
    v["gateway"] = gateway;
    Ok(Json(unrecorded(v, recorded)))
}

/// The reason of a recover body, refused without an explicit `"confirm": true`.
fn confirmed_reason(body: &[u8]) -> Result<String, Problem> {
    let b: RecoverBody = parse(body)?;
    let reason = reason_of(b.reason)?;
    if !b.confirm {
        return Err(Problem::bad_request("recover needs \"confirm\": true"));
    }
    Ok(reason)
}

async fn recover(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    agent_id(&id)?;
    let reason = confirmed_reason(&body)?;
    audit_ready(&s)?;
    // OpenClaw first, so the agent does not get model calls back before its tools are
    // restored; if that fails the agent stays blocked and the caller is told why.
    let gateway = match &s.agents {
        Some(c) => c.recover(&id, &reason, &caller.name).await.map_err(|e| incomplete(&id, &e))?,
        None => json!({"configured": false}),
    };
    let was = s.kill.recover(&id).map_err(store_err)?;
    let recorded =
        audit(&s, Some(&id), &caller.name, audit::Outcome::UnblockedAtProxy, &reason, json!({"was_killed": was})).await;
    let mut v = view(&s, one(&s, &id), &id);
    v["gateway"] = gateway;
    Ok(Json(unrecorded(v, recorded)))
}

async fn kill_all(State(s): State<AppState>, caller: Caller, body: axum::body::Bytes) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let reason = reason_of(parse::<KillBody>(&body)?.reason)?;
    s.kill.kill_all(governance::kill::KillEntry::now(&reason, &caller.name)).map_err(kill_store_err)?;
    let mut recorded = audit(&s, None, &caller.name, audit::Outcome::GlobalBlockedAtProxy, &reason, Value::Null).await;
    let denied = s.broker.deny_all(&format!("kill switch: {reason}"), &caller.name).await;
    if !denied.is_empty() {
        let ids: Vec<&str> = denied.iter().map(|a| a.id.as_str()).collect();
        recorded &= audit(
            &s,
            None,
            &caller.name,
            audit::Outcome::ApprovalsDenied,
            &reason,
            json!({"clawbutler_approvals": ids}),
        )
        .await;
    }
    let gateway = match &s.agents {
        Some(c) => c.kill_all(&reason, &caller.name).await.unwrap_or_else(|e| json!({"error": e})),
        None => json!({"configured": false}),
    };
    Ok(Json(unrecorded(json!({"killed": true, "kill": s.kill.global(), "gateway": gateway}), recorded)))
}

async fn recover_all(
    State(s): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Json<Value>, Problem> {
    caller.require(Role::Admin)?;
    let reason = confirmed_reason(&body)?;
    audit_ready(&s)?;
    let gateway = match &s.agents {
        Some(c) => c.recover_all(&reason, &caller.name).await.map_err(|e| incomplete("*", &e))?,
        None => json!({"configured": false}),
    };
    let agents = s.kill.recover_all().map_err(store_err)?;
    let recorded =
        audit(&s, None, &caller.name, audit::Outcome::GlobalUnblockedAtProxy, &reason, json!({"agents": agents})).await;
    Ok(Json(unrecorded(json!({"killed": false, "recovered_agents": agents, "gateway": gateway}), recorded)))
}

//! `/api/v1/cost/suggestions`: savings suggestions (any role), and
//! `/api/v1/cost/suggestions/preview`: the dry-run `config.patch` that would move an agent to
//! a suggested model, planned from its newest config version (config safety; a linked gateway
//! is needed); `/api/v1/cost/suggestions/apply`: that change, when an admin confirms the
//! preview they saw (its `base_hash`; a concurrent change is a 409), audited; a change that
//! touches ClawButler's wiring waits in the approval inbox (202, polled at
//! `/api/v1/cost/suggestions/apply/{approval}`) like a critical rollback (`docs/cost.md`,
//! "Savings suggestions"). Nothing is ever applied automatically.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Json;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::cost::{internal, limit, params, range, Params};
use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/cost/suggestions", get(list))
        .route("/api/v1/cost/suggestions/preview", get(preview))
        .route("/api/v1/cost/suggestions/apply", post(apply))
        .route("/api/v1/cost/suggestions/apply/{approval}", get(held))
}

async fn suggestions(s: &AppState, q: cost::SuggestQuery) -> Result<cost::Suggestions, Problem> {
    let c = s.cost.clone();
    let r =
        tokio::task::spawn_blocking(move || c.suggestions(&q)).await.map_err(|e| Problem::internal(e.to_string()))?;
    r.map_err(internal)
}

async fn list(_c: Caller, State(s): State<AppState>, p: Params) -> Result<Json<cost::Suggestions>, Problem> {
    let p = params(p, &["since", "until", "agent", "limit"])?;
    let (since, until) = range(&p, s.cost.now())?;
    let q = cost::SuggestQuery { since, until, agent: p.get("agent").cloned(), limit: limit(&p)? };
    suggestions(&s, q).await.map(Json)
}

/// The dry run of moving `agent` to `model`: the preview's JSON (see `docs/cost.md`).
async fn plan(s: &AppState, p: &HashMap<String, String>, agent: &str, model: &str) -> Result<Value, Problem> {
    decision::agent_id::check(agent).map_err(|e| Problem::bad_request(format!("agent: {e}")))?;
    // Only a model the suggestions offer this agent: priced, cheaper, of the same family.
    let (since, until) = range(p, s.cost.now())?;
    let sug = suggestions(s, cost::SuggestQuery { since, until, agent: Some(agent.to_string()), limit: 1_000 }).await?;
    let Some(item) = sug.items.iter().find(|i| i.candidates.iter().any(|c| c.model == model)) else {
        return Err(Problem::bad_request(format!(
            "model {model:?} is not a suggested cheaper model for agent {agent:?} in this window (see /api/v1/cost/suggestions)"
        )));
    };
    let history = s.agents.as_ref().and_then(|a| a.config_history()).ok_or_else(|| {
        Problem::not_found(
            "no preview: no OpenClaw gateway is linked ([gateway] url is not set); change the agent's model in OpenClaw by hand",
        )
    })?;
    let gone = |e: governance::config_history::ConfigHistoryError| Problem::not_found(e.to_string());
    let versions = history.versions(agent).map_err(gone)?;
    let newest = versions["items"][0]["version"]
        .as_u64()
        .ok_or_else(|| Problem::not_found(format!("no config version of agent '{agent}'")))?;
    let v = history.version(agent, newest).map_err(gone)?;
    let plan = cost::savings_patch::plan(&v["content"], agent, model)
        .map_err(|why| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Cannot plan the change", why))?;
    let saving = item.candidates.iter().find(|c| c.model == model).map(|c| json!(c));
    Ok(json!({
        "dry_run": true,
        "applied": false,
        "agent": agent,
        "task": item.task,
        "model": item.model,
        "to_model": model,
        "saving": saving,
        "verdict": item.verdict,
        "from_version": newest,
        "base_hash": v["gateway_hash"],
        "model_ref_before": plan.model_ref_before,
        "model_ref_after": plan.model_ref_after,
        "patch": plan.patch,
        "changes": plan.changes,
        "notes": plan.notes,
    }))
}

async fn preview(_c: Caller, State(s): State<AppState>, p: Params) -> Result<Json<Value>, Problem> {
    let p = params(p, &["agent", "model", "since", "until"])?;
    let need =
        |k: &str| p.get(k).filter(|v| !v.is_empty()).ok_or_else(|| Problem::bad_request(format!("{k} is required")));
    let (agent, model) = (need("agent")?.clone(), need("model")?.clone());
    plan(&s, &p, &agent, &model).await.map(Json)
}

/// Body of an apply: what the admin saw in the preview, and the confirmation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyBody {
    agent: String,
    model: String,
    /// The preview's `base_hash`: the config the admin looked at.
    base_hash: String,
    #[serde(default)]
    confirm: bool,
    /// The preview's window (default the last 7 days): the model must be a candidate in it.
    since: Option<String>,
    until: Option<String>,
}

async fn apply(
    caller: Caller,
    State(s): State<AppState>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), Problem> {
    caller.require(Role::Admin)?;
    let b: ApplyBody =
        serde_json::from_slice(&body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))?;
    if !b.confirm {
        return Err(Problem::bad_request("confirm must be true: applying changes OpenClaw's config"));
    }
    // A change to OpenClaw that cannot be recorded is not made.
    s.audit.require(audit::Face::Control).map_err(|u| Problem::audit_unavailable(&u, None))?;
    let window: HashMap<String, String> = [("since", &b.since), ("until", &b.until)]
        .into_iter()
        .filter_map(|(k, v)| Some((k.into(), v.clone()?)))
        .collect();
    let preview = plan(&s, &window, &b.agent, &b.model).await?;
    if preview["base_hash"].as_str() != Some(b.base_hash.as_str()) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Config changed concurrently",
            "the agent's config changed since this preview: preview again and confirm what it shows",
        ));
    }
    let history = s.agents.as_ref().and_then(|a| a.config_history()).ok_or_else(|| Problem::not_found("no gateway"))?;
    let result = history
        .change_model(governance::config_history::ModelChange {
            agent: &b.agent,
            patch: &preview["patch"],
            base_hash: &b.base_hash,
            actor: &caller.name,
        })
        .await
        .map_err(super::config_history::problem)?;
    if result["status"] == "awaiting_approval" {
        let mut held = result;
        held["preview"] = preview;
        return Ok((StatusCode::ACCEPTED, Json(held)));
    }
    Ok((StatusCode::OK, Json(json!({"applied": true, "result": result, "preview": preview}))))
}

/// A model change that waited for approval (any role, like a held rollback).
async fn held(_c: Caller, State(s): State<AppState>, Path(approval): Path<String>) -> Result<Json<Value>, Problem> {
    if approval.len() > 64 || !approval.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(Problem::bad_request(format!("'{approval}' is not an approval id")));
    }
    let history = s.agents.as_ref().and_then(|a| a.config_history()).ok_or_else(|| {
        Problem::not_found("no held model change: no OpenClaw gateway is linked ([gateway] url is not set)")
    })?;
    history.held_model_change(&approval).map(Json).map_err(super::config_history::problem)
}

//! `/api/v1/cost/suggestions`: savings suggestions (any role), and
//! `/api/v1/cost/suggestions/preview`: the dry-run `config.patch` that would move an agent to
//! a suggested model, planned from its newest config version (config safety; a linked gateway
//! is needed). Nothing here changes OpenClaw's config (`docs/cost.md`, "Savings suggestions").

use axum::extract::State;
use axum::routing::get;
use axum::Json;
use http::StatusCode;
use serde_json::{json, Value};

use super::cost::{internal, limit, params, range, Params};
use super::Routes;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::AppState;

pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/cost/suggestions", get(list))
        .route("/api/v1/cost/suggestions/preview", get(preview))
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

async fn preview(_c: Caller, State(s): State<AppState>, p: Params) -> Result<Json<Value>, Problem> {
    let p = params(p, &["agent", "model", "since", "until"])?;
    let need =
        |k: &str| p.get(k).filter(|v| !v.is_empty()).ok_or_else(|| Problem::bad_request(format!("{k} is required")));
    let (agent, model) = (need("agent")?.clone(), need("model")?.clone());
    decision::agent_id::check(&agent).map_err(|e| Problem::bad_request(format!("agent: {e}")))?;
    // Only a model the suggestions offer this agent: priced, cheaper, of the same family.
    let (since, until) = range(&p, s.cost.now())?;
    let sug = suggestions(&s, cost::SuggestQuery { since, until, agent: Some(agent.clone()), limit: 1_000 }).await?;
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
    let versions = history.versions(&agent).map_err(gone)?;
    let newest = versions["items"][0]["version"]
        .as_u64()
        .ok_or_else(|| Problem::not_found(format!("no config version of agent '{agent}'")))?;
    let v = history.version(&agent, newest).map_err(gone)?;
    let plan = cost::savings_patch::plan(&v["content"], &agent, &model)
        .map_err(|why| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Cannot plan the change", why))?;
    let saving = item.candidates.iter().find(|c| c.model == model).map(|c| json!(c));
    Ok(Json(json!({
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
    })))
}

//! `/api/v1/cost`: spend from the sidecar's own metering, grouped by agent, model, upstream,
//! tool server, task type or period, with totals and averages; `/api/v1/cost/anomalies`: the
//! anomalies raised. Any role reads. Unknown or malformed parameters are refused (400) with
//! the parameter named, never ignored (`docs/cost.md`).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::Json;
use chrono::{DateTime, Utc};
use cost::{GroupBy, Report};

use super::Routes;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::AppState;

/// Longest range a query may cover.
const MAX_DAYS: i64 = 400;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/cost", get(report))
        .route("/api/v1/cost/anomalies", get(anomalies))
        .route("/api/v1/cost/crosscheck", get(super::cost_check::crosscheck))
}

pub(super) type Params = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

pub(super) fn params(p: Params, allowed: &[&str]) -> Result<HashMap<String, String>, Problem> {
    let Query(p) = p.map_err(|e| Problem::bad_request(e.body_text()))?;
    if let Some(k) = p.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Problem::bad_request(format!("unknown parameter {k:?}; known: {}", allowed.join(", "))));
    }
    Ok(p)
}

pub(crate) fn range(
    p: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), Problem> {
    let time = |k: &str, default: DateTime<Utc>| match p.get(k) {
        None => Ok(default),
        Some(v) => cost::query::parse_time(v, now).ok_or_else(|| {
            Problem::bad_request(format!(
                "{k} must be an RFC 3339 time, a date (2026-12-01) or a duration back from now (36h, 7d, 2w), not {v:?}"
            ))
        }),
    };
    let until = time("until", now)?;
    let since = time("since", until - chrono::Duration::days(7))?;
    if since >= until {
        return Err(Problem::bad_request("since must be before until"));
    }
    if until - since > chrono::Duration::days(MAX_DAYS) {
        return Err(Problem::bad_request(format!("a query covers at most {MAX_DAYS} days")));
    }
    Ok((since, until))
}

pub(super) fn internal(e: cost::CostError) -> Problem {
    Problem::internal(e.to_string())
}

async fn report(_c: Caller, State(s): State<AppState>, p: Params) -> Result<Json<Report>, Problem> {
    let p = params(p, &["by", "split", "since", "until", "agent", "model", "limit"])?;
    let by = match p.get("by") {
        None => GroupBy::Agent,
        Some(v) => GroupBy::parse(v).ok_or_else(|| {
            Problem::bad_request(format!(
                "by must be agent, model, upstream, tool, task, hour, day, week or month, not {v:?}"
            ))
        })?,
    };
    let split = match p.get("split") {
        None => None,
        Some(v) => Some(GroupBy::parse(v).filter(|g| !g.is_period()).ok_or_else(|| {
            Problem::bad_request(format!("split must be agent, model, upstream, tool or task, not {v:?}"))
        })?),
    };
    let limit = limit(&p)?;
    let (since, until) = range(&p, s.cost.now())?;
    if by == GroupBy::Hour && until - since > chrono::Duration::days(31) {
        return Err(Problem::bad_request("by=hour covers at most 31 days; use day, week or month"));
    }
    let q =
        cost::Query { by, split, since, until, agent: p.get("agent").cloned(), model: p.get("model").cloned(), limit };
    let c = s.cost.clone();
    let r = tokio::task::spawn_blocking(move || c.query(&q)).await.map_err(|e| Problem::internal(e.to_string()))?;
    r.map(Json).map_err(internal)
}

async fn anomalies(_c: Caller, State(s): State<AppState>, p: Params) -> Result<Json<serde_json::Value>, Problem> {
    let p = params(p, &["since", "until", "limit"])?;
    let now = s.cost.now();
    let p2: HashMap<String, String> = {
        let mut m = p.clone();
        m.entry("since".into()).or_insert_with(|| "30d".into());
        m
    };
    let (since, until) = range(&p2, now)?;
    let limit = limit(&p)?;
    let items = s.cost.anomalies(since, until, limit).map_err(internal)?;
    Ok(Json(serde_json::json!({ "items": items, "next_cursor": null })))
}

/// `limit`: 1 to `MAX_LIMIT`, `DEFAULT_LIMIT` when absent.
pub(super) fn limit(p: &HashMap<String, String>) -> Result<usize, Problem> {
    match p.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| Problem::bad_request(format!("limit must be 1 to {MAX_LIMIT}, not {v:?}"))),
    }
}

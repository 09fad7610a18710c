//! `GET /api/v1/cost/crosscheck`: the sidecar's metering beside OpenClaw's own usage records,
//! per agent and UTC day (`governance::usage`), so calls that bypassed the sidecar show up.
//! Any role reads. Needs a linked gateway (404 without one); an agent whose records OpenClaw
//! cannot give is listed under `errors`, never shown as zeros.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use governance::usage::{compare, SidecarDay, Verdict};
use serde_json::{json, Value};

use super::cost::{params, range, Params};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::AppState;

/// Most days one cross-check covers (one `usage.cost` read per agent covers them all).
const MAX_DAYS: i64 = 92;

pub(super) async fn crosscheck(_c: Caller, State(s): State<AppState>, p: Params) -> Result<Json<Value>, Problem> {
    let p = params(p, &["since", "until", "agent"])?;
    let usage = s.agents.as_ref().and_then(|a| a.usage()).ok_or_else(|| {
        Problem::not_found("no cross-check: no OpenClaw gateway is linked ([gateway] url is not set)")
    })?;
    let (since, until) = range(&p, s.cost.now())?;
    if until - since > chrono::Duration::days(MAX_DAYS) {
        return Err(Problem::bad_request(format!("a cross-check covers at most {MAX_DAYS} days")));
    }
    // Whole UTC days: OpenClaw books by day.
    let first = since.date_naive();
    let last = (until - chrono::Duration::nanoseconds(1)).date_naive();
    let from = first.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(since);
    let to = last.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc()).unwrap_or(until);
    let mine = sidecar_days(&s, from, to, p.get("agent").cloned()).await?;
    let agents: BTreeSet<String> = match p.get("agent") {
        Some(a) => [a.clone()].into(),
        None => {
            let linked = s.agents.as_ref().map(|a| a.list()).unwrap_or_default();
            linked.into_iter().map(|a| a.id).chain(mine.keys().cloned()).filter(|a| a != "-").collect()
        }
    };
    let (start, end) = (first.format("%Y-%m-%d").to_string(), last.format("%Y-%m-%d").to_string());
    // Every agent at once: OpenClaw may take seconds to refresh its usage cache.
    let answers = join_all(agents.iter().map(|a| usage.daily(a, &start, &end))).await;
    let (mut items, mut errors) = (Vec::new(), Vec::new());
    let empty = BTreeMap::new();
    for (agent, answer) in agents.iter().zip(answers) {
        match answer {
            Ok(theirs) => items.extend(compare(agent, mine.get(agent).unwrap_or(&empty), &theirs)),
            Err(e) => errors.push(json!({"agent": agent, "error": e})),
        }
    }
    let mismatches = items.iter().filter(|r| r.verdict != Verdict::Match).count();
    Ok(Json(json!({
        "since": start, "until": end, "agents": agents.len(),
        "mismatches": mismatches, "items": items, "errors": errors,
    })))
}

/// The sidecar's model-call figures per agent and day.
async fn sidecar_days(
    s: &AppState,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    agent: Option<String>,
) -> Result<HashMap<String, BTreeMap<String, SidecarDay>>, Problem> {
    let q = cost::Query {
        by: cost::GroupBy::Day,
        split: Some(cost::GroupBy::Agent),
        since,
        until,
        agent,
        model: None,
        limit: usize::MAX,
    };
    let c = s.cost.clone();
    let r = tokio::task::spawn_blocking(move || c.query(&q))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map_err(|e| Problem::internal(e.to_string()))?;
    let mut out: HashMap<String, BTreeMap<String, SidecarDay>> = HashMap::new();
    for row in r.rows {
        let Some(agent) = row.split else { continue };
        let f = &row.figures;
        let day = SidecarDay {
            calls: f.calls,
            input_tokens: f.input_tokens,
            output_tokens: f.output_tokens,
            cost_usd: f.cost_usd,
        };
        out.entry(agent).or_default().insert(row.key, day);
    }
    Ok(out)
}

//! `clawbutler cost suggest --apply [--agent A] [--task T] [--model M] [--yes] [--wait]`:
//! apply one savings suggestion through the same API the Cost page uses. It picks exactly
//! one suggestion (`--agent`, `--task` narrow the list; more than one left is refused with
//! the list), plans it (`GET /api/v1/cost/suggestions/preview`: the dry run, always shown),
//! and only with `--yes` confirms it (`POST /api/v1/cost/suggestions/apply` on the preview's
//! `base_hash`, admin). A change held for approval is followed like a held rollback
//! (`config_held.rs`).

use serde_json::{json, Value};

use super::client::{enc, ApiClient};
use super::config_cmd::{out, s};
use super::config_held as held;
use super::cost_suggest_cmd::{print_preview, SuggestArgs};
use super::CliResult;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The one suggestion `a` names (and the model to move to), or why not.
fn pick(v: &Value, a: &SuggestArgs) -> Result<(String, String), Error> {
    let items: Vec<&Value> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|i| a.task.as_deref().is_none_or(|t| i["task"] == t))
        .filter(|i| {
            a.model.as_deref().is_none_or(|m| i["candidates"].as_array().into_iter().flatten().any(|c| c["model"] == m))
        })
        .collect();
    let line = |i: &Value| format!("--agent {} --task {} (model {})", s(&i["agent"]), s(&i["task"]), s(&i["model"]));
    match items.as_slice() {
        [] => Err(format!(
            "no suggestion matches{}{}{}: see `clawbutler cost suggest`",
            a.agent.as_deref().map(|x| format!(" agent {x}")).unwrap_or_default(),
            a.task.as_deref().map(|x| format!(" task {x}")).unwrap_or_default(),
            a.model.as_deref().map(|x| format!(" with candidate {x}")).unwrap_or_default(),
        )
        .into()),
        [one] => {
            let model = match &a.model {
                Some(m) => m.clone(),
                None => one["candidates"][0]["model"].as_str().ok_or("the suggestion has no candidate")?.to_string(),
            };
            Ok((s(&one["agent"]), model))
        }
        many => Err(format!(
            "{} suggestions match; pick one:\n  {}",
            many.len(),
            many.iter().map(|i| line(i)).collect::<Vec<_>>().join("\n  ")
        )
        .into()),
    }
}

/// Run `clawbutler cost suggest --apply`; `q` is the suggestions query (window, agent).
pub async fn run(client: &ApiClient, a: &SuggestArgs, q: &str) -> CliResult {
    let list = client.get(&format!("/api/v1/cost/suggestions?{q}&limit=1000")).await?;
    let (agent, model) = pick(&list, a)?;
    let preview = client
        .get(&format!("/api/v1/cost/suggestions/preview?{q}&agent={}&model={}", enc(&agent), enc(&model)))
        .await?;
    if !a.yes {
        if !out(&preview, a.json) {
            print_preview(&preview);
            println!("verdict: {}; to apply it: the same command with --yes (admin)", s(&preview["verdict"]));
        }
        return Ok(0);
    }
    let body = json!({"agent": agent, "model": model, "base_hash": preview["base_hash"], "confirm": true,
                      "since": a.window.since, "until": a.window.until});
    let v = client.post("/api/v1/cost/suggestions/apply", &body).await?;
    if v["status"] == "awaiting_approval" {
        return held::follow(client, held::Change::Model(&agent), &v, a.wait.wait, a.json).await;
    }
    if !out(&v, a.json) {
        println!(
            "APPLIED: agent {agent} {} -> {}; config version {}",
            s(&preview["model_ref_before"]),
            s(&preview["model_ref_after"]),
            s(&v["result"]["new_version"])
        );
    }
    Ok(0)
}

//! `clawbutler cost [--by agent|model|upstream|tool|task|day|week|month] [--since 7d]`: spend
//! from the running sidecar's metering (`GET /api/v1/cost`), as a table or JSON;
//! `clawbutler cost suggest`: savings suggestions (`cost_suggest_cmd`).

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{enc, ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// Arguments of `clawbutler cost`.
#[derive(Debug, Args)]
pub struct CostArgs {
    /// Group rows by agent, model, upstream, tool, task, hour, day, week or month.
    #[arg(long, default_value = "agent")]
    by: String,
    #[command(flatten)]
    pub(super) window: Window,
    /// Only this agent's calls.
    #[arg(long)]
    pub(super) agent: Option<String>,
    /// Only this model's calls.
    #[arg(long)]
    model: Option<String>,
    /// Compare the sidecar's metering with OpenClaw's own usage records per agent and day
    /// (exit status 1 when a day does not match).
    #[arg(long, conflicts_with_all = ["by", "model"])]
    crosscheck: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) api: ApiArgs,
    #[command(subcommand)]
    command: Option<CostCmd>,
}

/// The time window of a cost command.
#[derive(Debug, Args)]
pub struct Window {
    /// Start: a duration back from now (36h, 7d, 2w), a date or an RFC 3339 time.
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// End (default now), same forms as --since.
    #[arg(long)]
    pub until: Option<String>,
}

/// Subcommands of `clawbutler cost`.
#[derive(Debug, Subcommand)]
pub enum CostCmd {
    /// Savings suggestions: cheaper models per agent and task type, with the evidence (never applied).
    Suggest(super::cost_suggest_cmd::SuggestArgs),
}

fn line(key: &str, r: &Value) -> String {
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    let usd = |k: &str| r[k].as_f64().map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into());
    format!(
        "{:<32} {:>9} {:>7} {:>12} {:>12} {:>14} {:>12} {:>12}",
        key,
        n("calls"),
        n("errors"),
        n("input_tokens"),
        n("output_tokens"),
        usd("cost_usd"),
        usd("avg_cost_per_call_usd"),
        usd("cost_per_1k_tokens_usd"),
    )
}

/// Run `clawbutler cost`.
pub async fn run(cli: &Cli, a: &CostArgs) -> CliResult {
    if a.crosscheck {
        return super::cost_check_cmd::run(cli, a).await;
    }
    if let Some(CostCmd::Suggest(s)) = &a.command {
        return super::cost_suggest_cmd::run(cli, s).await;
    }
    let mut path = format!("/api/v1/cost?by={}&since={}", enc(&a.by), enc(&a.window.since));
    for (k, v) in [("until", &a.window.until), ("agent", &a.agent), ("model", &a.model)] {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    let v = ApiClient::from_cli(cli, &a.api)?.get(&path).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!(
        "{} to {}, by {}",
        v["since"].as_str().unwrap_or("?"),
        v["until"].as_str().unwrap_or("?"),
        v["by"].as_str().unwrap_or("?")
    );
    println!(
        "{:<32} {:>9} {:>7} {:>12} {:>12} {:>14} {:>12} {:>12}",
        a.by, "calls", "errors", "input_tok", "output_tok", "cost_usd", "usd/call", "usd/1k_tok"
    );
    for r in v["rows"].as_array().into_iter().flatten() {
        println!("{}", line(r["key"].as_str().unwrap_or("?"), r));
    }
    println!("{}", line("TOTAL", &v["totals"]));
    if let Some(n) = v["rows_left_off"].as_u64().filter(|n| *n > 0) {
        println!("({n} more rows; use --json with a narrower query)");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_encoded() {
        assert_eq!(super::super::client::enc("gpt-4o mini/x:1"), "gpt-4o%20mini%2Fx%3A1");
    }
}

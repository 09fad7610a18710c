//! `clawbutler budgets list` and `clawbutler budgets reset <id> --reason ...`, against the
//! running sidecar's control API (the ledger lives in its locked store).

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// Budget subcommands.
#[derive(Debug, Subcommand)]
pub enum BudgetsCmd {
    /// Show every budget: spend, limit, window, breaker state.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Zero the current window's spend and close the breaker (admin).
    Reset {
        /// Budget id, e.g. agent:main@daily.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn row(b: &Value) -> String {
    let f = |k: &str| b[k].as_f64().unwrap_or(0.0);
    format!(
        "{:<28} {:<8} {:>10.4} {:>10.4} {:>6} {}",
        b["id"].as_str().unwrap_or("?"),
        b["window"].as_str().unwrap_or("?"),
        f("spent_usd"),
        f("limit_usd"),
        if b["open"].as_bool() == Some(true) { "OPEN" } else { "ok" },
        b["resets_at"].as_str().unwrap_or("")
    )
}

/// Run a budgets subcommand.
pub async fn run(cli: &Cli, c: &BudgetsCmd) -> CliResult {
    match c {
        BudgetsCmd::List { api, json } => {
            let v = ApiClient::from_cli(cli, api)?.get("/api/v1/budgets").await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("{:<28} {:<8} {:>10} {:>10} {:>6} resets_at", "id", "window", "spent_usd", "limit_usd", "state");
            for b in v["items"].as_array().into_iter().flatten() {
                println!("{}", row(b));
            }
            Ok(0)
        }
        BudgetsCmd::Reset { id, reason, api } => {
            let path = format!("/api/v1/budgets/{id}/reset");
            let v = ApiClient::from_cli(cli, api)?.post(&path, &json!({ "reason": reason })).await?;
            println!("{}", row(&v));
            Ok(0)
        }
    }
}

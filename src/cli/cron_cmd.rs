//! `clawbutler cron list|show|runs|enable|disable|run|create|remove`: OpenClaw's cron jobs
//! under governance, through the running sidecar's control API (`docs/cron.md`).

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{enc, ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// Cron subcommands.
#[derive(Debug, Subcommand)]
pub enum CronCmd {
    /// Every job: schedule, agent, enabled, last and next run, failures in a row, cost.
    List {
        /// Only this agent's jobs.
        #[arg(long)]
        agent: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One job, as JSON.
    Show {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// A job's run history, newest first, each run with its cost.
    Runs {
        id: String,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Resume a job (approver).
    Enable {
        id: String,
        /// Refuse (409) if the job's configRevision is no longer this one.
        #[arg(long)]
        revision: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Pause a job (approver).
    Disable {
        id: String,
        /// Refuse (409) if the job's configRevision is no longer this one.
        #[arg(long)]
        revision: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run a job now (admin).
    Run {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Create an agent-turn job (admin): `--name n --agent a --every 1h|--cron "0 * * * *" --message m`.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "main")]
        agent: String,
        /// Interval: 30s, 10m, 1h, 1d.
        #[arg(long, conflicts_with = "cron")]
        every: Option<String>,
        /// A cron expression.
        #[arg(long)]
        cron: Option<String>,
        /// What the agent is told on each run.
        #[arg(long)]
        message: String,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove a job (admin).
    Remove {
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `30s`, `10m`, `1h`, `1d` in milliseconds.
fn every_ms(s: &str) -> Option<u64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = n.parse().ok()?;
    let mul = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(mul).filter(|v| *v > 0)
}

fn schedule_text(s: &Value) -> String {
    match s["kind"].as_str() {
        Some("every") => format!("every {}s", s["everyMs"].as_u64().unwrap_or(0) / 1000),
        Some("cron") => format!("cron {}", s["expr"].as_str().unwrap_or("?")),
        Some("at") => format!("at {}", s["at"]),
        Some(k) => k.to_string(),
        None => "?".into(),
    }
}

fn row(j: &Value) -> String {
    let t = |k: &str| j[k].as_str().unwrap_or("-").to_string();
    let cost = j["cost"]["usd"].as_f64().map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into());
    let paused = if j["budget_paused"].is_object() { " (budget)" } else { "" };
    format!(
        "{:<36} {:<10} {:<18} {:<8} {:<24} {:<24} {:>5} {:>12}",
        t("id"),
        t("agent"),
        schedule_text(&j["schedule"]),
        format!("{}{paused}", if j["enabled"] == true { "on" } else { "off" }),
        t("last_run_at"),
        t("next_run_at"),
        j["consecutive_failures"].as_u64().unwrap_or(0),
        cost
    )
}

/// Run a cron subcommand.
pub async fn run(cli: &Cli, c: &CronCmd) -> CliResult {
    let job_path = |id: &str| format!("/api/v1/cron/jobs/{}", enc(id));
    match c {
        CronCmd::List { agent, json, api } => {
            let path = match agent {
                Some(a) => format!("/api/v1/cron/jobs?agent={}", enc(a)),
                None => "/api/v1/cron/jobs".to_string(),
            };
            let v = ApiClient::from_cli(cli, api)?.get(&path).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!(
                "{:<36} {:<10} {:<18} {:<8} {:<24} {:<24} {:>5} {:>12}",
                "id", "agent", "schedule", "enabled", "last_run_at", "next_run_at", "fails", "cost_usd"
            );
            for j in v["items"].as_array().into_iter().flatten() {
                println!("{}", row(j));
            }
            Ok(0)
        }
        CronCmd::Show { id, api } => {
            let v = ApiClient::from_cli(cli, api)?.get(&job_path(id)).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(0)
        }
        CronCmd::Runs { id, limit, offset, json, api } => {
            let path = format!("{}/runs?limit={limit}&offset={offset}", job_path(id));
            let v = ApiClient::from_cli(cli, api)?.get(&path).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("{:<26} {:<8} {:>10} {:>8} {:>12}  error", "at", "status", "duration", "calls", "cost_usd");
            for r in v["items"].as_array().into_iter().flatten() {
                println!(
                    "{:<26} {:<8} {:>10} {:>8} {:>12}  {}",
                    r["at"].as_str().unwrap_or("-"),
                    r["status"].as_str().unwrap_or("-"),
                    r["duration_ms"].as_u64().map(|d| format!("{d}ms")).unwrap_or_else(|| "-".into()),
                    r["model_calls"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                    r["cost_usd"].as_f64().map(|v| format!("{v:.6}")).unwrap_or_else(|| "-".into()),
                    r["error"].as_str().unwrap_or("")
                );
            }
            if let Some(n) = v["next_offset"].as_u64() {
                println!("more: --offset {n}");
            }
            Ok(0)
        }
        CronCmd::Enable { id, revision, api } | CronCmd::Disable { id, revision, api } => {
            let verb = if matches!(c, CronCmd::Enable { .. }) { "enable" } else { "disable" };
            let body = json!({ "expected_revision": revision });
            let v = ApiClient::from_cli(cli, api)?.post(&format!("{}/{verb}", job_path(id)), &body).await?;
            println!("{}", row(&v));
            Ok(0)
        }
        CronCmd::Run { id, api } => {
            let v = ApiClient::from_cli(cli, api)?.post(&format!("{}/run", job_path(id)), &json!({})).await?;
            println!("enqueued run {}", v["run_id"].as_str().unwrap_or("?"));
            Ok(0)
        }
        CronCmd::Create { name, agent, every, cron, message, disabled, api } => {
            let schedule = match (every, cron) {
                (Some(e), None) => match every_ms(e) {
                    Some(ms) => json!({"kind": "every", "everyMs": ms}),
                    None => {
                        eprintln!("--every '{e}' must be a number with s, m, h or d (30s, 10m, 1h)");
                        return Ok(2);
                    }
                },
                (None, Some(x)) => json!({"kind": "cron", "expr": x}),
                _ => {
                    eprintln!("give --every or --cron");
                    return Ok(2);
                }
            };
            let job = json!({"name": name, "agentId": agent, "enabled": !disabled, "schedule": schedule,
                             "sessionTarget": "isolated", "wakeMode": "now",
                             "payload": {"kind": "agentTurn", "message": message}, "delivery": {"mode": "none"}});
            let v = ApiClient::from_cli(cli, api)?.post("/api/v1/cron/jobs", &job).await?;
            println!("{}", row(&v));
            Ok(0)
        }
        CronCmd::Remove { id, api } => {
            ApiClient::from_cli(cli, api)?.delete(&job_path(id)).await?;
            println!("removed {id}");
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_bad_ones_are_refused() {
        assert_eq!(every_ms("30s"), Some(30_000));
        assert_eq!(every_ms("1h"), Some(3_600_000));
        assert_eq!(every_ms("0m"), None);
        assert_eq!(every_ms("5x"), None);
        assert_eq!(every_ms("h"), None);
    }
}

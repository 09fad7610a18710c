//! `clawbutler config rollback`, `clawbutler backup restore` and `clawbutler cost suggest
//! --apply` when the change holds a critical change: the sidecar put it in the approval inbox
//! (HTTP 202). Say so, say how to decide it, and with `--wait` follow it until a human
//! decided and the sidecar applied it (or did not).

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::Value;

use super::client::ApiClient;
use super::config_cmd::{out, s};
use super::CliResult;

/// How often `--wait` asks.
const POLL: Duration = Duration::from_millis(500);

/// Statuses a held rollback does not leave by itself.
fn settled(status: &str) -> bool {
    !matches!(status, "awaiting_approval" | "applying")
}

/// `--wait [SECONDS]` of every command whose change may be held for approval.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Wait for the approval's outcome (at most this long, e.g. 300 s; default 1800).
    #[arg(long, num_args = 0..=1, default_missing_value = "1800", value_name = "SECONDS")]
    pub wait: Option<u64>,
}

/// Which held change is followed.
pub enum Change<'a> {
    /// A rollback of this agent.
    Rollback(&'a str),
    /// A backup import.
    Import,
    /// A savings suggestion's model change of this agent.
    Model(&'a str),
}

/// Print the held answer; with `wait`, poll until it settled (exit 0 applied, 1 not
/// applied); without, exit 4 (waiting).
pub async fn follow(client: &ApiClient, change: Change<'_>, v: &Value, wait: Option<u64>, json: bool) -> CliResult {
    let id = s(&v["approval_id"]);
    if !json {
        let what = match change {
            Change::Rollback(agent) => format!("the rollback of {agent} to version {}", s(&v["plan"]["to_version"])),
            Change::Import => format!("the {}", s(&v["approval"]["subject"]["import"])),
            Change::Model(agent) => format!("the move of {agent} to {}", s(&v["approval"]["subject"]["to_model"])),
        };
        println!("WAITING FOR APPROVAL: {what} holds critical change(s); nothing is changed until a human approves it");
        for c in v["approval"]["subject"]["critical_paths"].as_array().into_iter().flatten() {
            println!("  critical: {}", s(c));
        }
        println!("  approval {id}, expires {}", s(&v["expires_at"]));
        println!("  approve: clawbutler approvals approve {id}   (or in the UI's inbox)");
        println!("  follow:  GET {}", s(&v["poll"]));
    }
    let Some(secs) = wait else {
        out(v, json);
        return Ok(super::config_cmd::EXIT_WAITING);
    };
    let path = s(&v["poll"]);
    let t0 = Instant::now();
    let last = loop {
        let now = client.get(&path).await?;
        if settled(now["status"].as_str().unwrap_or("")) || t0.elapsed() >= Duration::from_secs(secs) {
            break now;
        }
        tokio::time::sleep(POLL).await;
    };
    let status = last["status"].as_str().unwrap_or("").to_string();
    if !out(&last, json) {
        match (status.as_str(), &change) {
            ("applied" | "incomplete", Change::Import) => {
                println!(
                    "{}: approved by {}; checkpoint before the import: {} (restore it to undo)",
                    if status == "applied" { "IMPORTED" } else { "IMPORTED, INCOMPLETE" },
                    s(&last["decided_by"]),
                    s(&last["checkpoint"])
                );
                for e in last["errors"].as_array().into_iter().flatten() {
                    println!("  NOT APPLIED: {}", s(e));
                }
            }
            ("applied", Change::Rollback(agent)) => println!(
                "APPLIED: approved by {}; {agent} is at version {} (restored exactly: {}); the state before is version {}",
                s(&last["decided_by"]),
                s(&last["new_version"]),
                s(&last["restored_exactly"]),
                s(&last["pre_rollback_version"])
            ),
            ("applied", Change::Model(agent)) => println!(
                "APPLIED: approved by {}; {agent}'s config is at version {}",
                s(&last["decided_by"]),
                s(&last["new_version"])
            ),
            ("not_needed", _) => println!("NOTHING TO DO: {}", s(&last["why"])),
            (x, _) if !settled(x) => println!("STILL WAITING after {secs} s: approval {id} is {x}"),
            (x, _) => println!("NOT APPLIED ({x}): {}", s(&last["why"])),
        }
    }
    Ok(match status.as_str() {
        "applied" | "not_needed" => 0,
        x if !settled(x) => super::config_cmd::EXIT_WAITING,
        _ => 1,
    })
}

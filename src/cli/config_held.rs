//! `clawbutler config rollback` when the rollback holds a critical change: the sidecar put it
//! in the approval inbox (HTTP 202). Say so, say how to decide it, and with `--wait` follow
//! it until a human decided and the sidecar applied it (or did not).

use std::time::{Duration, Instant};

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

/// Print the held answer; with `wait`, poll until it settled (exit 0 applied, 1 not
/// applied); without, exit 4 (waiting).
pub async fn follow(client: &ApiClient, agent: &str, v: &Value, wait: Option<u64>, json: bool) -> CliResult {
    let id = s(&v["approval_id"]);
    if !json {
        let plan = &v["plan"];
        println!(
            "WAITING FOR APPROVAL: the rollback of {agent} to version {} holds critical change(s); nothing is \
             changed until a human approves it",
            s(&plan["to_version"])
        );
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
        match status.as_str() {
            "applied" => println!(
                "APPLIED: approved by {}; {agent} is at version {} (restored exactly: {}); the state before is version {}",
                s(&last["decided_by"]),
                s(&last["new_version"]),
                s(&last["restored_exactly"]),
                s(&last["pre_rollback_version"])
            ),
            "not_needed" => println!("NOTHING TO DO: {}", s(&last["why"])),
            x if !settled(x) => println!("STILL WAITING after {secs} s: approval {id} is {x}"),
            x => println!("NOT APPLIED ({x}): {}", s(&last["why"])),
        }
    }
    Ok(match status.as_str() {
        "applied" | "not_needed" => 0,
        x if !settled(x) => super::config_cmd::EXIT_WAITING,
        _ => 1,
    })
}

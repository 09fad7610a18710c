//! `clawbutler notify test <route>` and `clawbutler notify deliveries`, against the running
//! sidecar's control API (the channels and their secrets live in that process).

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// Notification subcommands.
#[derive(Debug, Subcommand)]
pub enum NotifyCmd {
    /// Send a test message through every channel of a route now (admin); exits 1 when any
    /// channel failed.
    Test {
        /// Route id, e.g. approvers.
        route: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON instead of one line per channel.
        #[arg(long)]
        json: bool,
    },
    /// Show the latest deliveries (newest first).
    Deliveries {
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// Only this status (delivered, failed, suppressed, retrying, queued, abandoned).
        #[arg(long)]
        status: Option<String>,
        /// How many (1 to 500).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn row(d: &Value) -> String {
    let s = |k: &str| d[k].as_str().unwrap_or("").to_string();
    let note = match (s("reason"), s("last_error")) {
        (r, e) if !r.is_empty() && !e.is_empty() => format!("{r}: {e}"),
        (r, e) => format!("{r}{e}"),
    };
    format!(
        "{:<24} {:<20} {:<10} {:<10} {:>2}  {:<22} {}",
        s("created_at"),
        s("channel"),
        s("channel_kind"),
        s("status"),
        d["attempts"].as_u64().unwrap_or(0),
        s("event"),
        note
    )
}

fn header() -> String {
    format!("{:<24} {:<20} {:<10} {:<10} {:>2}  {:<22} note", "created_at", "channel", "kind", "status", "n", "event")
}

/// A query-string value (ids and status words are plain; anything else is percent-encoded).
fn q(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Run a notify subcommand.
pub async fn run(cli: &Cli, c: &NotifyCmd) -> CliResult {
    match c {
        NotifyCmd::Test { route, api, json } => {
            let path = format!("/api/v1/notifications/routes/{}/test", q(route));
            let v = ApiClient::from_cli(cli, api)?.post(&path, &json!({})).await?;
            let items = v["items"].as_array().cloned().unwrap_or_default();
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", header());
                for d in &items {
                    println!("{}", row(d));
                }
                println!("{} of {} channels delivered", v["delivered"].as_u64().unwrap_or(0), items.len());
            }
            let all = items.iter().all(|d| d["status"] == "delivered");
            Ok(if all && !items.is_empty() { 0 } else { 1 })
        }
        NotifyCmd::Deliveries { route, status, limit, api } => {
            let mut path = format!("/api/v1/notifications/deliveries?limit={limit}");
            if let Some(r) = route {
                path.push_str(&format!("&route={}", q(r)));
            }
            if let Some(s) = status {
                path.push_str(&format!("&status={}", q(s)));
            }
            let v = ApiClient::from_cli(cli, api)?.get(&path).await?;
            println!("{}", header());
            for d in v["items"].as_array().into_iter().flatten() {
                println!("{}", row(d));
            }
            Ok(0)
        }
    }
}

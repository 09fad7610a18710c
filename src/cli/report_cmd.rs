//! `clawbutler report create|list|download`: cost and governance reports through the running
//! sidecar (`/api/v1/reports`, `docs/cost.md`, "Reports").

use std::time::Duration;

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{enc, ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// `clawbutler report ...`.
#[derive(Debug, Subcommand)]
pub enum ReportCmd {
    /// Queue a report of a period (approver); --wait until it is done or failed.
    Create {
        /// Start: a duration back from now (36h, 7d, 2w), a date or an RFC 3339 time.
        #[arg(long, default_value = "7d")]
        since: String,
        /// End (default now), same forms as --since.
        #[arg(long)]
        until: Option<String>,
        /// IANA time zone of the report's days (e.g. Asia/Shanghai; default UTC); a date in
        /// --since/--until is midnight there.
        #[arg(long)]
        timezone: Option<String>,
        /// Wait for the report (at most 10 minutes).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The reports, newest first.
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Download a done report's CSV or PDF (through a single-use link).
    Download {
        id: String,
        #[arg(long, default_value = "pdf")]
        format: String,
        /// Where to write it (default clawbutler-report-<id>.<format>).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn line(r: &Value) -> String {
    let s = |k: &str| r[k].as_str().unwrap_or("-").to_string();
    format!("{:<36}  {:<7}  {:<20}  {:<20}  {}", s("id"), s("status"), s("since"), s("until"), s("requested_by"))
}

/// Run `clawbutler report ...`.
pub async fn run(cli: &Cli, c: &ReportCmd) -> CliResult {
    match c {
        ReportCmd::Create { since, until, timezone, wait, api } => {
            let client = ApiClient::from_cli(cli, api)?;
            let mut body = json!({"since": since});
            if let Some(u) = until {
                body["until"] = json!(u);
            }
            if let Some(z) = timezone {
                body["timezone"] = json!(z);
            }
            let mut r = client.post("/api/v1/reports", &body).await?;
            let id = r["id"].as_str().unwrap_or_default().to_string();
            for _ in 0..1200 {
                if !*wait || matches!(r["status"].as_str(), Some("done" | "failed")) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                r = client.get(&format!("/api/v1/reports/{}", enc(&id))).await?;
            }
            println!("{}", line(&r));
            if let Some(e) = r["error"].as_str() {
                eprintln!("failed: {e} (retry: POST /api/v1/reports/{id}/retry)");
                return Ok(1);
            }
            Ok(0)
        }
        ReportCmd::List { limit, json, api } => {
            let v = ApiClient::from_cli(cli, api)?.get(&format!("/api/v1/reports?limit={limit}")).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
            println!("{:<36}  {:<7}  {:<20}  {:<20}  requested by", "id", "status", "since", "until");
            for r in v["items"].as_array().into_iter().flatten() {
                println!("{}", line(r));
            }
            Ok(0)
        }
        ReportCmd::Download { id, format, output, api } => {
            let client = ApiClient::from_cli(cli, api)?;
            let link = client.post(&format!("/api/v1/reports/{}/link", enc(id)), &json!({"format": format})).await?;
            let url = link["url"].as_str().unwrap_or_default();
            let bytes = client.get_bytes(url).await?;
            let path = output.clone().unwrap_or_else(|| format!("clawbutler-report-{id}.{format}").into());
            std::fs::write(&path, &bytes)?;
            println!("{} ({} bytes)", path.display(), bytes.len());
            Ok(0)
        }
    }
}

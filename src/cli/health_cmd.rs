//! `clawbutler health [--ready]`: ask the running sidecar's `/livez` (or `/readyz`) and exit 0
//! when it answers 2xx, 1 otherwise. For container healthchecks (`HEALTHCHECK` in
//! deploy/container/Containerfile), where the image has no curl.

use clap::Args;

use super::client::{ApiArgs, ApiClient, ClientError};
use super::{Cli, CliResult};

/// Flags of `health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Check `/readyz` (ready to take calls) instead of `/livez` (the process answers).
    #[arg(long)]
    pub ready: bool,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Exit 0 when healthy, 1 when it answers otherwise or not at all (the reason on stderr).
pub async fn run(cli: &Cli, a: &HealthArgs) -> CliResult {
    let client = ApiClient::from_cli(cli, &a.api)?;
    let path = if a.ready { "/readyz" } else { "/livez" };
    match client.get(path).await {
        Ok(v) => {
            println!("{}", v["status"].as_str().unwrap_or("ok"));
            Ok(0)
        }
        Err(e @ (ClientError::Api { .. } | ClientError::Connect { .. } | ClientError::Json(_))) => {
            eprintln!("clawbutler health: {e}");
            Ok(1)
        }
        Err(e) => Err(e.into()),
    }
}

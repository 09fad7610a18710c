//! `clawbutler attach|detach --gateway WS_URL [--token-env VAR] [--dry-run]`: rewire an
//! OpenClaw gateway through this sidecar, or put it back (see `gateway::attach`).

use clap::Args;

use super::{Cli, CliResult};
use gateway::attach;

/// Arguments shared by attach and detach.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Gateway WebSocket URL, e.g. ws://127.0.0.1:18789.
    #[arg(long)]
    pub gateway: String,
    /// Environment variable holding the gateway token (default: `[gateway] token_env`).
    #[arg(long)]
    pub token_env: Option<String>,
    /// Print the diff and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Run attach (`detach == false`) or detach.
pub async fn run(cli: &Cli, a: &AttachArgs, detach: bool) -> CliResult {
    let cfg = cli.load_config()?;
    let token_env = a.token_env.clone().unwrap_or_else(|| cfg.gateway.token_env.clone());
    let data_dir = cfg.server.data_dir.clone();
    let (link, stop) = attach::connect(&a.gateway, &token_env, &data_dir).await?;
    let listen = cfg.listen_addr()?;
    // A wildcard listen address is reached over loopback from a local gateway.
    let sidecar =
        if listen.ip().is_unspecified() { format!("127.0.0.1:{}", listen.port()) } else { listen.to_string() };
    let result = if detach {
        attach::detach(&link, &data_dir, a.dry_run).await
    } else {
        let ups: Vec<attach::UpstreamRef> = cfg
            .upstreams
            .iter()
            .map(|u| attach::UpstreamRef {
                name: u.name.clone(),
                url: u.url.clone(),
                holds_key: u.api_key_env.is_some(),
            })
            .collect();
        attach::attach(&link, &ups, &sidecar, &data_dir, a.dry_run).await
    };
    let _ = stop.send(true);
    for line in result? {
        println!("{line}");
    }
    Ok(0)
}

//! `clawbutler status --gateway WS_URL [--token-env VAR] [--json] [--allow-partial]`: the
//! governance report of a gateway as it is now (`gateway::attach::report`), and what drifted
//! since `attach` (its record in the data dir keeps the report it ended with). Exits
//! [`UNGOVERNED`](super::attach_cmd::UNGOVERNED) when some agent's model path is outside the
//! sidecar, unless `--allow-partial`.

use clap::Args;
use serde_json::json;

use super::attach_cmd::{sidecar_addr, GatewayArgs, UNGOVERNED};
use super::{Cli, CliResult};
use gateway::attach;

/// `status` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub gw: GatewayArgs,
    /// Print the report as JSON (`{report, drift}`).
    #[arg(long)]
    pub json: bool,
    /// Exit 0 even when some agent's model path is outside the sidecar.
    #[arg(long)]
    pub allow_partial: bool,
}

/// Run status.
pub async fn run(cli: &Cli, a: &StatusArgs) -> CliResult {
    let cfg = cli.load_config()?;
    let token_env = a.gw.token_env.clone().unwrap_or_else(|| cfg.gateway.token_env.clone());
    let addr = sidecar_addr(&cfg)?;
    let (link, stop) = attach::connect(&a.gw.gateway, &token_env, &cfg.server.data_dir).await?;
    let state = attach::read_state(&link).await;
    let _ = stop.send(true);
    let report = state?.report(&addr, None);
    let baseline = attach::load_record(&cfg.server.data_dir, &a.gw.gateway)?.and_then(|r| r.report);
    let drift = baseline.as_ref().map(|b| attach::report::drift(b, &report)).unwrap_or_default();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json!({"report": report, "drift": drift}))?);
    } else {
        for line in report.render() {
            println!("{line}");
        }
        match (&baseline, drift.is_empty()) {
            (None, _) => println!("no attach record for {} in this data dir: nothing to compare with", a.gw.gateway),
            (Some(_), true) => println!("no drift since attach"),
            (Some(_), false) => {
                println!("drift since attach:");
                for d in &drift {
                    println!("  {}", d.render());
                }
            }
        }
    }
    Ok(if report.ungoverned_agents().is_empty() || a.allow_partial { 0 } else { UNGOVERNED })
}

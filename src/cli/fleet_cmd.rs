//! `clawbutler fleet ...`: the fleet of sidecars sharing one PostgreSQL database, through any
//! member's control API (docs/fleet.md): the registry and the fleet kill switch; and
//! `fleet keygen`, which makes the fleet's policy signing key (offline, no sidecar needed).

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// Fleet subcommands.
#[derive(Debug, Subcommand)]
pub enum FleetCmd {
    /// List the fleet's sidecars: id, version, last heartbeat, stale or not.
    Sidecars {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop an agent on every sidecar of the fleet, or every agent of one sidecar's gateway
    /// (`--sidecar`); neither: the whole fleet (admin).
    Kill {
        /// Agent id; omit to stop every agent on every sidecar (or on `--sidecar`).
        agent: Option<String>,
        /// A sidecar id (`fleet sidecars`): stop every agent of that sidecar's gateway.
        #[arg(long, conflicts_with = "agent")]
        sidecar: Option<String>,
        /// Why (recorded in the audit log and shown in refusals).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Make the fleet's policy signing key: a private key file (keep it with whoever publishes)
    /// and the public key to put in every sidecar's `[fleet] policy_keys`.
    Keygen {
        /// The private key file to create (PKCS#8 PEM, mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Lift a fleet kill of an agent or of a sidecar (`--sidecar`); neither: every fleet kill
    /// (admin).
    Recover {
        /// Agent id; omit to lift every fleet kill (or the `--sidecar` one).
        agent: Option<String>,
        /// A sidecar id: lift the kill of that sidecar's gateway.
        #[arg(long, conflicts_with = "agent")]
        sidecar: Option<String>,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn print(v: &Value) -> CliResult {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(0)
}

/// Run a fleet subcommand.
pub async fn run(cli: &Cli, c: &FleetCmd) -> CliResult {
    match c {
        FleetCmd::Sidecars { api } => print(&ApiClient::from_cli(cli, api)?.get("/api/v1/fleet/sidecars").await?),
        FleetCmd::Kill { agent, sidecar, reason, api } => {
            let body = json!({ "agent": agent, "sidecar": sidecar, "reason": reason });
            print(&ApiClient::from_cli(cli, api)?.post("/api/v1/fleet/kill", &body).await?)
        }
        FleetCmd::Keygen { out } => {
            let key = audit::keys::create_private_file(out).map_err(|e| format!("{}: {e}", out.display()))?;
            let public = audit::keys::public_hex(&key.verifying_key());
            println!("private key written to {} (keep it secret: it can change every sidecar's policy)", out.display());
            println!("public key: {public}");
            println!("add to [fleet] of every sidecar:\npolicy_keys = [\"{public}\"]");
            Ok(0)
        }
        FleetCmd::Recover { agent, sidecar, reason, api } => {
            let body = json!({ "agent": agent, "sidecar": sidecar, "reason": reason, "confirm": true });
            print(&ApiClient::from_cli(cli, api)?.post("/api/v1/fleet/recover", &body).await?)
        }
    }
}

//! `clawbutler token create|list|revoke`: works on the data dir's store directly, so it runs
//! while the sidecar is stopped (the store is locked while it runs).

use clap::Subcommand;
use control_api::{Role, TokenStore};

use super::{Cli, CliResult};

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token and print it once.
    Create {
        /// viewer, approver or admin.
        #[arg(long)]
        role: Role,
        /// A name for the audit log's actor field.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id (first 8+ hex chars shown by `list`).
    Revoke { id: String },
}

fn open(cli: &Cli) -> Result<(storage::Store, TokenStore), Box<dyn std::error::Error + Send + Sync>> {
    let cfg = cli.load_config()?;
    let path = cfg.server.data_dir.join("state");
    let db = storage::Store::open(&path).map_err(|e| {
        format!("cannot open {} ({e}); if the sidecar is running, stop it first or use the control API", path.display())
    })?;
    let store = TokenStore::open(&db)?;
    Ok((db, store))
}

/// Run a token subcommand.
pub fn run(cli: &Cli, c: &TokenCmd) -> CliResult {
    let (_db, store) = open(cli)?;
    match c {
        TokenCmd::Create { role, name } => {
            let (secret, rec) = store.create(name, *role)?;
            eprintln!("created {} token '{}' (id {}); it is shown only once:", rec.role.as_str(), rec.name, rec.id);
            println!("{secret}");
        }
        TokenCmd::List => {
            for t in store.list() {
                println!("{}\t{}\t{}\t{}", t.id, t.role.as_str(), t.name, t.created_at);
            }
        }
        TokenCmd::Revoke { id } => {
            if !store.revoke(id)? {
                return Err(format!("no token with id {id}").into());
            }
            println!("revoked {id}");
        }
    }
    Ok(0)
}

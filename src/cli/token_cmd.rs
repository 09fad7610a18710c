//! `clawbutler token create|list|revoke`. Against a running sidecar they go through its
//! control API (an admin token from `--token` or `CLAWBUTLER_TOKEN`), like `approvals` and
//! `budgets`. When the control API cannot be reached (the sidecar is stopped), or with
//! `--offline`, they work on the data dir's store directly; the store is locked while a
//! sidecar runs, so the two never race.

use clap::{Args, Subcommand};
use control_api::{Role, TokenStore};
use serde_json::{json, Value};

use super::client::{ApiArgs, ApiClient, ClientError};
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
        #[command(flatten)]
        how: Reach,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        how: Reach,
    },
    /// Revoke a token by its id (first 8+ hex chars shown by `list`).
    Revoke {
        id: String,
        #[command(flatten)]
        how: Reach,
    },
}

/// How to reach the tokens: the control API, or the store of a stopped sidecar.
#[derive(Debug, Clone, Args)]
pub struct Reach {
    #[command(flatten)]
    api: ApiArgs,
    /// Work on the data dir's store directly (the sidecar must be stopped).
    #[arg(long)]
    offline: bool,
}

/// Run a token subcommand.
pub async fn run(cli: &Cli, c: &TokenCmd) -> CliResult {
    let how = match c {
        TokenCmd::Create { how, .. } | TokenCmd::List { how } | TokenCmd::Revoke { how, .. } => how,
    };
    if how.offline {
        return offline(cli, c);
    }
    let client = ApiClient::from_cli(cli, &how.api)?;
    match online(&client, c).await {
        Err(e) if is_unreachable(e.as_ref()) => {
            eprintln!("note: {e}; the sidecar looks stopped, so working on its store directly");
            offline(cli, c)
        }
        other => other,
    }
}

fn is_unreachable(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    matches!(e.downcast_ref::<ClientError>(), Some(ClientError::Connect { .. }))
}

async fn online(client: &ApiClient, c: &TokenCmd) -> CliResult {
    match c {
        TokenCmd::Create { role, name, .. } => {
            let v = client.post("/api/v1/tokens", &json!({"name": name, "role": role})).await?;
            print_created(&v);
        }
        TokenCmd::List { .. } => {
            let v = client.get("/api/v1/tokens").await?;
            for t in v["items"].as_array().into_iter().flatten() {
                let f = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                println!("{}\t{}\t{}\t{}", f("id"), f("role"), f("name"), f("created_at"));
            }
        }
        TokenCmd::Revoke { id, .. } => {
            client.delete(&format!("/api/v1/tokens/{id}")).await?;
            println!("revoked {id}");
        }
    }
    Ok(0)
}

fn print_created(v: &Value) {
    let f = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    eprintln!("created {} token '{}' (id {}); it is shown only once:", f("role"), f("name"), f("id"));
    println!("{}", f("token"));
}

fn open(cli: &Cli) -> Result<(storage::Store, TokenStore), Box<dyn std::error::Error + Send + Sync>> {
    let cfg = cli.load_config()?;
    let path = cfg.server.data_dir.join("state");
    let db = storage::Store::open(&path).map_err(|e| {
        format!(
            "cannot open {} ({e}); if the sidecar is running, use its control API (--token or CLAWBUTLER_TOKEN)",
            path.display()
        )
    })?;
    let store = TokenStore::open(&db, &cfg.server.data_dir)?;
    Ok((db, store))
}

fn offline(cli: &Cli, c: &TokenCmd) -> CliResult {
    let (_db, store) = open(cli)?;
    match c {
        TokenCmd::Create { role, name, .. } => {
            let (secret, rec) = store.create(name, *role)?;
            print_created(&json!({"role": rec.role.as_str(), "name": rec.name, "id": rec.id, "token": secret}));
        }
        TokenCmd::List { .. } => {
            for t in store.list() {
                println!("{}\t{}\t{}\t{}", t.id, t.role.as_str(), t.name, t.created_at);
            }
        }
        TokenCmd::Revoke { id, .. } => {
            if !store.revoke(id)? {
                return Err(format!("no token with id {id}").into());
            }
            println!("revoked {id}");
        }
    }
    Ok(0)
}

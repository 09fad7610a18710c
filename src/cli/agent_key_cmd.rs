//! `clawbutler agent-key create|list|revoke`: per-agent data-path keys (docs/security.md).
//! Like `token`, they go through the running sidecar's control API (an admin token from
//! `--token` or `CLAWBUTLER_TOKEN`) and fall back to the data dir's store when the sidecar is
//! stopped (or with `--offline`). `attach` and `detach` use the same [`Keys`] handle.

use clap::{Args, Subcommand};
use governance::agent_keys::AgentKeyInfo;
use governance::AgentKeys;
use serde_json::json;

use super::client::{ApiArgs, ApiClient, ClientError};
use super::{Cli, CliResult};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Agent-key subcommands.
#[derive(Debug, Subcommand)]
pub enum AgentKeyCmd {
    /// Create a key for an agent and print it once (give it to the agent's provider).
    Create {
        /// The agent id (OpenClaw's canonical spelling, e.g. `main`).
        agent: String,
        /// What uses it (shown in lists).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        how: KeyReach,
    },
    /// List keys (never their secrets).
    List {
        /// Only this agent's keys.
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        how: KeyReach,
    },
    /// Revoke a key of an agent by id (or all its keys with `--all`).
    Revoke {
        agent: String,
        /// The key id shown by `list`.
        id: Option<String>,
        /// Revoke every key of the agent.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[command(flatten)]
        how: KeyReach,
    },
}

/// How to reach the keys: the control API, or the store of a stopped sidecar.
#[derive(Debug, Clone, Args)]
pub struct KeyReach {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Work on the data dir's store directly (the sidecar must be stopped).
    #[arg(long)]
    pub offline: bool,
}

/// Where keys are managed for one command.
pub enum Keys {
    /// A running sidecar's control API.
    Api(Box<ApiClient>),
    /// The store of a stopped sidecar (held open for the command's life).
    Store(storage::Store, AgentKeys),
}

impl KeyReach {
    /// The control API as an admin when the sidecar answers; `None` with `--offline` or when
    /// it looks stopped (the caller then works on [`open_state_store`]). Who we are is asked
    /// first, so a missing or non-admin token fails before anything changes. `what` names the
    /// objects in messages ("agent keys", "MCP tokens", ...).
    pub async fn admin_api(&self, cli: &Cli, what: &str) -> Result<Option<ApiClient>, BoxError> {
        if self.offline {
            return Ok(None);
        }
        let client = ApiClient::from_cli(cli, &self.api)?;
        match client.get("/api/v1/whoami").await {
            Err(e @ ClientError::Connect { .. }) => {
                eprintln!("note: {e}; the sidecar looks stopped, so working on its store directly");
                Ok(None)
            }
            Err(e) => Err(format!("{what}: {e}").into()),
            Ok(who) if who["role"] != "admin" => Err(format!(
                "{what} need an admin token; token '{}' has role {} (pass --token or set CLAWBUTLER_TOKEN)",
                who["name"].as_str().unwrap_or("?"),
                who["role"].as_str().unwrap_or("?")
            )
            .into()),
            Ok(_) => Ok(Some(client)),
        }
    }
}

/// The state store of a stopped sidecar (its data dir from the config), and that config.
pub fn open_state_store(cli: &Cli) -> Result<(storage::Store, crate::config::Config), BoxError> {
    let cfg = cli.load_config()?;
    let path = cfg.server.data_dir.join("state");
    let db = storage::Store::open(&path).map_err(|e| {
        format!(
            "cannot open {} ({e}); if the sidecar is running, use its control API (--token or CLAWBUTLER_TOKEN)",
            path.display()
        )
    })?;
    Ok((db, cfg))
}

fn open_store(cli: &Cli) -> Result<Keys, BoxError> {
    let (db, _) = open_state_store(cli)?;
    let keys = AgentKeys::open(&db)?;
    Ok(Keys::Store(db, keys))
}

impl Keys {
    /// The control API when it answers, else (or with `offline`) the store.
    pub async fn reach(cli: &Cli, how: &KeyReach) -> Result<Keys, BoxError> {
        match how.admin_api(cli, "agent keys").await? {
            Some(client) => Ok(Keys::Api(Box::new(client))),
            None => open_store(cli),
        }
    }

    /// Create a key; returns the secret (once) and its record.
    pub async fn create(&self, agent: &str, label: Option<&str>) -> Result<(String, AgentKeyInfo), BoxError> {
        match self {
            Keys::Api(c) => {
                let v = c.post(&format!("/api/v1/agents/{agent}/keys"), &json!({"label": label})).await?;
                let secret = v["key"].as_str().ok_or("the control API answered no key")?.to_string();
                Ok((secret, serde_json::from_value(v)?))
            }
            Keys::Store(_, k) => Ok(k.create(agent, label, "cli")?),
        }
    }

    /// Keys of an agent (or all).
    pub async fn list(&self, agent: Option<&str>) -> Result<Vec<AgentKeyInfo>, BoxError> {
        match self {
            Keys::Api(c) => {
                let path = match agent {
                    Some(a) => format!("/api/v1/agents/{a}/keys"),
                    None => "/api/v1/agent-keys".to_string(),
                };
                let v = c.get(&path).await?;
                Ok(serde_json::from_value(v["items"].clone())?)
            }
            Keys::Store(_, k) => {
                if let Some(a) = agent {
                    decision::agent_id::check(a)?;
                }
                Ok(k.list(agent))
            }
        }
    }

    /// Revoke one key; `false` when it did not exist.
    pub async fn revoke(&self, agent: &str, id: &str) -> Result<bool, BoxError> {
        match self {
            Keys::Api(c) => match c.delete(&format!("/api/v1/agents/{agent}/keys/{id}")).await {
                Ok(_) => Ok(true),
                Err(ClientError::Api { status, .. }) if status == http::StatusCode::NOT_FOUND => Ok(false),
                Err(e) => Err(e.into()),
            },
            Keys::Store(_, k) => Ok(k.revoke(agent, id)?.is_some()),
        }
    }
}

fn print_created(secret: &str, info: &AgentKeyInfo) {
    eprintln!("created key {} for agent '{}'; it is shown only once:", info.id, info.agent);
    println!("{secret}");
}

/// Run an agent-key subcommand.
pub async fn run(cli: &Cli, c: &AgentKeyCmd) -> CliResult {
    let how = match c {
        AgentKeyCmd::Create { how, .. } | AgentKeyCmd::List { how, .. } | AgentKeyCmd::Revoke { how, .. } => how,
    };
    let keys = Keys::reach(cli, how).await?;
    match c {
        AgentKeyCmd::Create { agent, label, .. } => {
            let (secret, info) = keys.create(agent, label.as_deref()).await?;
            print_created(&secret, &info);
        }
        AgentKeyCmd::List { agent, .. } => {
            for k in keys.list(agent.as_deref()).await? {
                let label = k.label.as_deref().unwrap_or("-");
                println!("{}\t{}\t{}\t{}\t{}", k.agent, k.id, k.created_at, k.created_by, label);
            }
        }
        AgentKeyCmd::Revoke { agent, id, all, .. } => {
            let ids: Vec<String> = match (id, all) {
                (Some(id), false) => vec![id.clone()],
                (None, true) => keys.list(Some(agent)).await?.into_iter().map(|k| k.id).collect(),
                _ => return Err("give a key id, or --all".into()),
            };
            for id in &ids {
                if !keys.revoke(agent, id).await? {
                    return Err(format!("agent '{agent}' has no key with id {id}").into());
                }
                println!("revoked {agent} {id}");
            }
            if ids.is_empty() {
                println!("agent '{agent}' has no keys");
            }
        }
    }
    Ok(0)
}

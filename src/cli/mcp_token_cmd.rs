//! `clawbutler mcp-token create|list|revoke`: per-agent MCP tokens, the bearer an agent's MCP
//! server entry sends to `/mcp/agent/<agent>` (docs/mcp.md). Like `agent-key`, they go
//! through the running sidecar's control API (an admin token from `--token` or
//! `CLAWBUTLER_TOKEN`) and fall back to the data dir's store when the sidecar is stopped (or
//! with `--offline`).

use clap::Subcommand;
use governance::agent_keys::AgentKeyInfo;
use governance::AgentKeys;
use serde_json::json;

use super::agent_key_cmd::{open_state_store, KeyReach};
use super::client::{ApiClient, ClientError};
use super::{Cli, CliResult};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// MCP-token subcommands.
#[derive(Debug, Subcommand)]
pub enum McpTokenCmd {
    /// Create a token for an agent and print it once (put it in the agent's MCP server entry).
    Create {
        /// The agent id (OpenClaw's canonical spelling, e.g. `main`).
        agent: String,
        /// What uses it (shown in lists).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        how: KeyReach,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this agent's tokens.
        #[arg(long)]
        agent: Option<String>,
        #[command(flatten)]
        how: KeyReach,
    },
    /// Revoke a token of an agent by id (or all its tokens with `--all`).
    Revoke {
        agent: String,
        /// The token id shown by `list`.
        id: Option<String>,
        /// Revoke every token of the agent.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[command(flatten)]
        how: KeyReach,
    },
}

/// Where tokens are managed for one command.
enum Tokens {
    Api(Box<ApiClient>),
    /// The store of a stopped sidecar (held open for the command's life).
    Store {
        _db: storage::Store,
        tokens: AgentKeys,
    },
}

fn open_store(cli: &Cli) -> Result<Tokens, BoxError> {
    let (db, _) = open_state_store(cli)?;
    let tokens = AgentKeys::open_mcp_tokens(&db)?;
    Ok(Tokens::Store { _db: db, tokens })
}

impl Tokens {
    async fn reach(cli: &Cli, how: &KeyReach) -> Result<Tokens, BoxError> {
        match how.admin_api(cli, "MCP tokens").await? {
            Some(client) => Ok(Tokens::Api(Box::new(client))),
            None => open_store(cli),
        }
    }

    async fn create(&self, agent: &str, label: Option<&str>) -> Result<(String, AgentKeyInfo), BoxError> {
        match self {
            Tokens::Api(c) => {
                let v = c.post(&format!("/api/v1/agents/{agent}/mcp-tokens"), &json!({"label": label})).await?;
                let secret = v["token"].as_str().ok_or("the control API answered no token")?.to_string();
                Ok((secret, serde_json::from_value(v)?))
            }
            Tokens::Store { tokens: t, .. } => Ok(t.create(agent, label, "cli")?),
        }
    }

    async fn list(&self, agent: Option<&str>) -> Result<Vec<AgentKeyInfo>, BoxError> {
        match self {
            Tokens::Api(c) => {
                let path = match agent {
                    Some(a) => format!("/api/v1/agents/{a}/mcp-tokens"),
                    None => "/api/v1/mcp-tokens".to_string(),
                };
                let v = c.get(&path).await?;
                Ok(serde_json::from_value(v["items"].clone())?)
            }
            Tokens::Store { tokens: t, .. } => {
                if let Some(a) = agent {
                    decision::agent_id::check(a)?;
                }
                Ok(t.list(agent))
            }
        }
    }

    async fn revoke(&self, agent: &str, id: &str) -> Result<bool, BoxError> {
        match self {
            Tokens::Api(c) => match c.delete(&format!("/api/v1/agents/{agent}/mcp-tokens/{id}")).await {
                Ok(_) => Ok(true),
                Err(ClientError::Api { status, .. }) if status == http::StatusCode::NOT_FOUND => Ok(false),
                Err(e) => Err(e.into()),
            },
            Tokens::Store { tokens: t, .. } => Ok(t.revoke(agent, id)?.is_some()),
        }
    }
}

/// Run an mcp-token subcommand.
pub async fn run(cli: &Cli, c: &McpTokenCmd) -> CliResult {
    let how = match c {
        McpTokenCmd::Create { how, .. } | McpTokenCmd::List { how, .. } | McpTokenCmd::Revoke { how, .. } => how,
    };
    let tokens = Tokens::reach(cli, how).await?;
    match c {
        McpTokenCmd::Create { agent, label, .. } => {
            let (secret, info) = tokens.create(agent, label.as_deref()).await?;
            eprintln!("created MCP token {} for agent '{}'; it is shown only once:", info.id, info.agent);
            println!("{secret}");
        }
        McpTokenCmd::List { agent, .. } => {
            for t in tokens.list(agent.as_deref()).await? {
                let label = t.label.as_deref().unwrap_or("-");
                println!("{}\t{}\t{}\t{}\t{}", t.agent, t.id, t.created_at, t.created_by, label);
            }
        }
        McpTokenCmd::Revoke { agent, id, all, .. } => {
            let ids: Vec<String> = match (id, all) {
                (Some(id), false) => vec![id.clone()],
                (None, true) => tokens.list(Some(agent)).await?.into_iter().map(|t| t.id).collect(),
                _ => return Err("give a token id, or --all".into()),
            };
            for id in &ids {
                if !tokens.revoke(agent, id).await? {
                    return Err(format!("agent '{agent}' has no MCP token with id {id}").into());
                }
                println!("revoked {agent} {id}");
            }
            if ids.is_empty() {
                println!("agent '{agent}' has no MCP tokens");
            }
        }
    }
    Ok(0)
}

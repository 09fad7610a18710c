//! `clawbutler plugin-token create|list|revoke`: the per-gateway tokens the ClawButler OpenClaw
//! plugin presents to `/v1/decide` (docs/plugin.md). Like `agent-key`, they go through the
//! running sidecar's control API (an admin token from `--token` or `CLAWBUTLER_TOKEN`) and
//! fall back to the data dir's store when the sidecar is stopped (or with `--offline`).
//! `attach` uses the same [`PluginTokensReach`] handle.

use clap::Subcommand;
use governance::plugin_tokens::PluginTokenInfo;
use governance::PluginTokens;
use serde_json::json;

use super::agent_key_cmd::{open_state_store, KeyReach};
use super::client::{ApiClient, ClientError};
use super::{Cli, CliResult};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Plugin-token subcommands.
#[derive(Debug, Subcommand)]
pub enum PluginTokenCmd {
    /// Create a token for a gateway's plugin and print it once.
    Create {
        /// The gateway (its WebSocket URL, as in `[gateway] url`, or a name); default: the
        /// configured `[gateway] url`.
        #[arg(long)]
        gateway: Option<String>,
        /// What uses it (shown in lists).
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        how: KeyReach,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this gateway's tokens.
        #[arg(long)]
        gateway: Option<String>,
        #[command(flatten)]
        how: KeyReach,
    },
    /// Revoke a token by id: the plugin using it is refused (401) from now on.
    Revoke {
        id: String,
        #[command(flatten)]
        how: KeyReach,
    },
}

/// Where plugin tokens are managed for one command.
pub enum PluginTokensReach {
    /// A running sidecar's control API.
    Api(Box<ApiClient>),
    /// The store of a stopped sidecar (held open for the command's life).
    Store(storage::Store, PluginTokens, Option<String>),
}

fn open_store(cli: &Cli) -> Result<PluginTokensReach, BoxError> {
    let (db, cfg) = open_state_store(cli)?;
    let tokens = PluginTokens::open(&db)?;
    Ok(PluginTokensReach::Store(db, tokens, cfg.gateway.url.clone()))
}

impl PluginTokensReach {
    /// The control API when it answers, else (or with `offline`) the store.
    pub async fn reach(cli: &Cli, how: &KeyReach) -> Result<PluginTokensReach, BoxError> {
        match how.admin_api(cli, "plugin tokens").await? {
            Some(client) => Ok(PluginTokensReach::Api(Box::new(client))),
            None => open_store(cli),
        }
    }

    /// Create a token; returns the secret (once) and its record.
    pub async fn create(
        &self,
        gateway: Option<&str>,
        label: Option<&str>,
    ) -> Result<(String, PluginTokenInfo), BoxError> {
        match self {
            PluginTokensReach::Api(c) => {
                let v = c.post("/api/v1/plugin-tokens", &json!({"gateway": gateway, "label": label})).await?;
                let secret = v["token"].as_str().ok_or("the control API answered no token")?.to_string();
                Ok((secret, serde_json::from_value(v)?))
            }
            PluginTokensReach::Store(_, t, linked) => {
                let g = gateway
                    .map(str::to_string)
                    .or_else(|| linked.clone())
                    .ok_or("give --gateway (no [gateway] url is configured to default to)")?;
                Ok(t.create(&g, label, "cli")?)
            }
        }
    }

    /// Tokens (of one gateway, or all).
    pub async fn list(&self, gateway: Option<&str>) -> Result<Vec<PluginTokenInfo>, BoxError> {
        match self {
            PluginTokensReach::Api(c) => {
                let path = match gateway {
                    Some(g) => format!("/api/v1/plugin-tokens?gateway={}", encode(g)),
                    None => "/api/v1/plugin-tokens".to_string(),
                };
                Ok(serde_json::from_value(c.get(&path).await?["items"].clone())?)
            }
            PluginTokensReach::Store(_, t, _) => Ok(t.list(gateway)),
        }
    }

    /// Revoke one token; `false` when it did not exist.
    pub async fn revoke(&self, id: &str) -> Result<bool, BoxError> {
        match self {
            PluginTokensReach::Api(c) => match c.delete(&format!("/api/v1/plugin-tokens/{}", encode(id))).await {
                Ok(_) => Ok(true),
                Err(ClientError::Api { status, .. }) if status == http::StatusCode::NOT_FOUND => Ok(false),
                Err(e) => Err(e.into()),
            },
            PluginTokensReach::Store(_, t, _) => Ok(t.revoke(id)?.is_some()),
        }
    }
}

/// Percent-encode a query or path value (gateway URLs carry `:` and `/`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Run a plugin-token subcommand.
pub async fn run(cli: &Cli, c: &PluginTokenCmd) -> CliResult {
    let how = match c {
        PluginTokenCmd::Create { how, .. } | PluginTokenCmd::List { how, .. } | PluginTokenCmd::Revoke { how, .. } => {
            how
        }
    };
    let tokens = PluginTokensReach::reach(cli, how).await?;
    match c {
        PluginTokenCmd::Create { gateway, label, .. } => {
            let (secret, info) = tokens.create(gateway.as_deref(), label.as_deref()).await?;
            eprintln!("created plugin token {} for gateway {}; it is shown only once:", info.id, info.gateway);
            println!("{secret}");
        }
        PluginTokenCmd::List { gateway, .. } => {
            for t in tokens.list(gateway.as_deref()).await? {
                let label = t.label.as_deref().unwrap_or("-");
                println!("{}\t{}\t{}\t{}\t{}", t.id, t.gateway, t.created_at, t.created_by, label);
            }
        }
        PluginTokenCmd::Revoke { id, .. } => {
            if !tokens.revoke(id).await? {
                return Err(format!("no plugin token with id {id}").into());
            }
            println!("revoked {id}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn gateway_urls_are_encoded_for_the_query() {
        assert_eq!(super::encode("ws://127.0.0.1:18789"), "ws%3A%2F%2F127.0.0.1%3A18789");
    }
}

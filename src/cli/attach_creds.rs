//! The credentials `attach` creates besides per-agent keys, and `detach` revokes: one MCP
//! token per agent it gives a `cb-<agent>` MCP entry, and one plugin token for the gateway.
//! Like the keys they go through the running sidecar's control API, or the store of a
//! stopped one (the same open store as the keys: a sled store opens once per process).

use gateway::attach::{IssuedKey, IssuedPluginToken, KeyRef};
use governance::{AgentKeys, PluginTokens};
use serde_json::json;

use super::agent_key_cmd::Keys;
use super::client::ClientError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Create an MCP token for `agent`.
pub async fn create_mcp_token(k: &Keys, agent: &str, label: &str) -> Result<IssuedKey, BoxError> {
    let (secret, id) = match k {
        Keys::Api(c) => {
            let v = c.post(&format!("/api/v1/agents/{agent}/mcp-tokens"), &json!({"label": label})).await?;
            let secret = v["token"].as_str().ok_or("the control API answered no MCP token")?.to_string();
            let id = v["id"].as_str().ok_or("the control API answered no MCP token id")?.to_string();
            (secret, id)
        }
        Keys::Store(db, _) => {
            let (secret, info) = AgentKeys::open_mcp_tokens(db)?.create(agent, Some(label), "cli")?;
            (secret, info.id)
        }
    };
    Ok(IssuedKey { key: KeyRef { agent: agent.to_string(), id }, secret })
}

/// Revoke an MCP token; `false` when it did not exist.
pub async fn revoke_mcp_token(k: &Keys, r: &KeyRef) -> Result<bool, BoxError> {
    match k {
        Keys::Api(c) => match c.delete(&format!("/api/v1/agents/{}/mcp-tokens/{}", r.agent, r.id)).await {
            Ok(_) => Ok(true),
            Err(ClientError::Api { status, .. }) if status == http::StatusCode::NOT_FOUND => Ok(false),
            Err(e) => Err(e.into()),
        },
        Keys::Store(db, _) => Ok(AgentKeys::open_mcp_tokens(db)?.revoke(&r.agent, &r.id)?.is_some()),
    }
}

/// Create the plugin token for `gateway`.
pub async fn create_plugin_token(k: &Keys, gateway: &str, label: &str) -> Result<IssuedPluginToken, BoxError> {
    match k {
        Keys::Api(c) => {
            let v = c.post("/api/v1/plugin-tokens", &json!({"gateway": gateway, "label": label})).await?;
            let secret = v["token"].as_str().ok_or("the control API answered no plugin token")?.to_string();
            let id = v["id"].as_str().ok_or("the control API answered no plugin token id")?.to_string();
            Ok(IssuedPluginToken { id, secret })
        }
        Keys::Store(db, _) => {
            let (secret, info) = PluginTokens::open(db)?.create(gateway, Some(label), "cli")?;
            Ok(IssuedPluginToken { id: info.id, secret })
        }
    }
}

/// Revoke a plugin token; `false` when it did not exist.
pub async fn revoke_plugin_token(k: &Keys, id: &str) -> Result<bool, BoxError> {
    match k {
        // Ids are 12 hex characters: nothing to encode.
        Keys::Api(c) => match c.delete(&format!("/api/v1/plugin-tokens/{id}")).await {
            Ok(_) => Ok(true),
            Err(ClientError::Api { status, .. }) if status == http::StatusCode::NOT_FOUND => Ok(false),
            Err(e) => Err(e.into()),
        },
        Keys::Store(db, _) => Ok(PluginTokens::open(db)?.revoke(id)?.is_some()),
    }
}

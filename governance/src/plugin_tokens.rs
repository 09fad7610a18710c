//! Plugin tokens: the credential the ClawButler plugin inside an OpenClaw gateway presents to
//! the decision endpoint (`POST /v1/decide`, docs/plugin.md). One token per gateway: it says
//! which gateway a decision request or a heartbeat comes from (the plugin sends no gateway
//! id, and OpenClaw gives plugins none), so the registry can tell each gateway's plugin apart.
//! Admins create and revoke them through the control API and `clawbutler plugin-token`;
//! `attach` creates one when it installs the plugin.
//!
//! Invariants (as for per-agent keys, `agent_keys.rs`):
//! - A secret is shown once, when created, and never stored: the `plugin_tokens` tree keeps a
//!   random 16-byte salt and SHA-256(salt || secret) per token. The secret is
//!   `cbp_<id>_<64 hex>`: the id finds the one stored hash to compare (no scan), the 32
//!   random bytes are what an attacker would have to guess.
//! - The in-memory copy is replaced under a lock after every write, so the decision endpoint
//!   reads without I/O and a revoked token fails from the moment `revoke` returns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::secret::{check_text, random_hex, Hashed, SecretError};

/// Every secret starts with this, so a stray one is recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "cbp_";

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginTokenInfo {
    /// 12 hex characters.
    pub id: String,
    /// The gateway this token's plugin runs in (its WebSocket URL, or a name the operator
    /// chose): heartbeats and decisions made with the token are that gateway's.
    pub gateway: String,
    /// Free text naming what uses it, e.g. `attach`.
    #[serde(default)]
    pub label: Option<String>,
    pub created_at: String,
    /// Token name (or `cli`) of whoever created it.
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    info: PluginTokenInfo,
    /// Hex salt and hex SHA-256(salt || secret).
    salt: String,
    hash: String,
}

/// Errors of the token store.
#[derive(Debug, thiserror::Error)]
pub enum PluginTokenError {
    #[error("plugin token store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("plugin token store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("no randomness available: {0}")]
    Random(String),
    #[error("{0}")]
    Invalid(String),
}

struct Loaded {
    info: PluginTokenInfo,
    secret: Hashed,
}

/// The `plugin_tokens` tree with an in-memory copy by id.
pub struct PluginTokens {
    tree: sled::Tree,
    cache: ArcSwap<HashMap<String, Loaded>>,
    write: Mutex<()>,
}

impl From<SecretError> for PluginTokenError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Random(m) => PluginTokenError::Random(m),
            SecretError::Invalid(m) => PluginTokenError::Invalid(m),
        }
    }
}

impl PluginTokens {
    /// Open the tree and load every token.
    pub fn open(store: &storage::Store) -> Result<PluginTokens, PluginTokenError> {
        let t = PluginTokens {
            tree: store.tree(storage::Tree::PluginTokens)?,
            cache: ArcSwap::default(),
            write: Mutex::new(()),
        };
        t.refresh()?;
        Ok(t)
    }

    fn refresh(&self) -> Result<(), PluginTokenError> {
        let mut by_id = HashMap::new();
        for kv in self.tree.iter() {
            let (_, v) = kv?;
            let s: Stored = serde_json::from_slice(&v)?;
            let secret = Hashed::from_hex(&s.salt, &s.hash);
            by_id.insert(s.info.id.clone(), Loaded { info: s.info, secret });
        }
        self.cache.store(Arc::new(by_id));
        Ok(())
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Create a token for `gateway`; the secret is returned once.
    pub fn create(
        &self,
        gateway: &str,
        label: Option<&str>,
        actor: &str,
    ) -> Result<(String, PluginTokenInfo), PluginTokenError> {
        let gateway = crate::plugin::gateway_id(&check_text("gateway", gateway, true)?.unwrap_or_default());
        let label = match label {
            Some(l) => check_text("label", l, false)?,
            None => None,
        };
        let id = random_hex(6)?;
        let secret = format!("{TOKEN_PREFIX}{id}_{}", random_hex(32)?);
        let (salt, hash) = Hashed::mint(&secret)?;
        let info = PluginTokenInfo {
            id: id.clone(),
            gateway,
            label,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            created_by: actor.to_string(),
        };
        let stored = Stored { info: info.clone(), salt, hash };
        let _w = self.locked();
        self.tree.insert(id.as_bytes(), serde_json::to_vec(&stored)?)?;
        self.tree.flush()?;
        self.refresh()?;
        Ok((secret, info))
    }

    /// Every token (optionally of one gateway), oldest first.
    pub fn list(&self, gateway: Option<&str>) -> Vec<PluginTokenInfo> {
        let mut out: Vec<PluginTokenInfo> = self
            .cache
            .load()
            .values()
            .filter(|t| gateway.is_none_or(|g| crate::plugin::gateway_id(g) == t.info.gateway))
            .map(|t| t.info.clone())
            .collect();
        out.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        out
    }

    /// The gateways that have a token (the plugin is expected there).
    pub fn gateways(&self) -> Vec<String> {
        let mut g: Vec<String> = self.cache.load().values().map(|t| t.info.gateway.clone()).collect();
        g.sort();
        g.dedup();
        g
    }

    /// Revoke one token; returns it if it existed. Requests with it fail from now on.
    pub fn revoke(&self, id: &str) -> Result<Option<PluginTokenInfo>, PluginTokenError> {
        let _w = self.locked();
        let old = self.tree.remove(id.as_bytes())?;
        self.tree.flush()?;
        self.refresh()?;
        Ok(match old {
            Some(v) => Some(serde_json::from_slice::<Stored>(&v)?.info),
            None => None,
        })
    }

    /// The token a presented secret is, if any (no I/O: one hash).
    pub fn verify(&self, secret: &str) -> Option<PluginTokenInfo> {
        let rest = secret.strip_prefix(TOKEN_PREFIX)?;
        let (id, _) = rest.split_once('_')?;
        let all = self.cache.load();
        let t = all.get(id)?;
        t.secret.matches(secret).then(|| t.info.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn open(dir: &std::path::Path) -> PluginTokens {
        PluginTokens::open(&storage::Store::open(dir).unwrap()).unwrap()
    }

    #[test]
    fn a_token_works_until_revoked_and_names_its_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let t = open(dir.path());
        let (a, info) = t.create("ws://127.0.0.1:18789", Some("attach"), "admin").unwrap();
        let (b, _) = t.create("ws://10.0.0.2:18789", None, "admin").unwrap();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 12 + 1 + 64, "{a}");
        assert_eq!(t.verify(&a), Some(info.clone()));
        assert_eq!(t.verify(&b).map(|i| i.gateway), Some("ws://10.0.0.2:18789".to_string()));
        assert_eq!(t.verify(&a[..a.len() - 1]), None);
        let forged = format!("{TOKEN_PREFIX}{}_{}", info.id, "0".repeat(64));
        assert_eq!(t.verify(&forged), None, "right id, wrong secret");
        assert_eq!(t.verify("cbk_x"), None);
        assert_eq!(t.verify(""), None);
        assert_eq!(t.gateways(), ["ws://10.0.0.2:18789", "ws://127.0.0.1:18789"]);
        assert_eq!(t.list(Some("ws://127.0.0.1:18789")), vec![info.clone()]);
        assert_eq!(t.revoke(&info.id).unwrap(), Some(info.clone()));
        assert_eq!(t.verify(&a), None);
        assert_eq!(t.revoke(&info.id).unwrap(), None);
        assert_eq!(t.list(None).len(), 1);
    }

    #[test]
    fn secrets_are_stored_salted_and_hashed_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, info) = open(dir.path()).create("gw", None, "admin").unwrap();
        let db = storage::Store::reopen(dir.path()).unwrap();
        let tree = db.tree(storage::Tree::PluginTokens).unwrap();
        let plain_hash = hex::encode(Sha256::digest(secret.as_bytes()));
        for kv in tree.iter() {
            let (k, v) = kv.unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
            assert!(!text.contains(&secret) && !text.contains(&secret[secret.len() - 64..]), "secret stored");
            assert!(!text.contains(&plain_hash), "unsalted hash stored");
        }
        assert_eq!(PluginTokens::open(&db).unwrap().verify(&secret), Some(info));
    }

    #[test]
    fn bad_gateways_and_labels_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = open(dir.path());
        assert!(t.create(" ", None, "admin").is_err());
        assert!(t.create("gw\n2", None, "admin").is_err());
        assert!(t.create(&"g".repeat(201), None, "admin").is_err());
        assert!(t.create("gw", Some("a\u{7}"), "admin").is_err());
        assert!(t.list(None).is_empty());
    }
}

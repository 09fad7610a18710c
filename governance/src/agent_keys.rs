//! Per-agent keys: the credential that binds a data-path call to an agent. OpenClaw sends no
//! agent identity, so the path `/a/<agent>/...` names the agent; a key created for that agent
//! (and only for it) proves the caller is the agent's own provider, not any local process
//! that can type a path. The data path checks it (`proxy/src/auth.rs`), `clawbutler attach`
//! creates one per agent and wires it into the agent's `cb-<agent>` provider, `detach` revokes
//! it, and admins manage them through the control API and `clawbutler agent-key`.
//!
//! Invariants:
//! - A secret is shown once, when created, and never stored: the `agent_keys` tree keeps a
//!   random 16-byte salt and SHA-256(salt || secret) per key. Secrets are 32 random bytes,
//!   so an offline guess of a stored hash is hopeless; the salt keeps equal secrets (there
//!   are none) and precomputed tables useless.
//! - A key belongs to exactly one agent: verifying looks only at that agent's keys, so a
//!   valid key presented on another agent's path is refused like an unknown one.
//! - The in-memory copy is replaced under a lock after every write, so the data path reads
//!   without I/O and never sees a stale set after a revoke returns.
//!
//! The same store, in its own tree with its own prefix ([`AgentKeys::open_mcp_tokens`]), keeps
//! the per-agent MCP bearer tokens the MCP endpoint checks (`/mcp/agent/<agent>`): a model
//! key is not an MCP token and the reverse, so each can be handed out and revoked alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::secret::{check_text, random_hex, Hashed, SecretError};

/// Every secret starts with this, so a stray one is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "cbk_";

/// The prefix of per-agent MCP tokens ([`AgentKeys::open_mcp_tokens`]).
pub const MCP_TOKEN_PREFIX: &str = "cbm_";

/// A key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentKeyInfo {
    /// 12 hex characters, unique per agent.
    pub id: String,
    pub agent: String,
    /// Free text naming what uses it, e.g. `attach ws://127.0.0.1:18789`.
    #[serde(default)]
    pub label: Option<String>,
    pub created_at: String,
    /// Token name (or `cli`) of whoever created it.
    pub created_by: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    info: AgentKeyInfo,
    /// Hex salt and hex SHA-256(salt || secret).
    salt: String,
    hash: String,
}

/// What checking a presented secret found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The secret is this agent's key with this id.
    Valid(String),
    /// The agent has no key at all.
    NoKeys,
    /// The agent has keys; this is none of them (another agent's key, revoked, or junk).
    Mismatch,
}

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum AgentKeyError {
    #[error("agent key store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("agent key store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("no randomness available: {0}")]
    Random(String),
    #[error("{0}")]
    Invalid(String),
}

/// A stored key ready to check.
struct Loaded {
    info: AgentKeyInfo,
    secret: Hashed,
}

impl Loaded {
    fn matches(&self, secret: &str) -> bool {
        self.secret.matches(secret)
    }
}

/// The `agent_keys` tree with an in-memory copy by agent.
pub struct AgentKeys {
    tree: sled::Tree,
    prefix: &'static str,
    cache: ArcSwap<HashMap<String, Vec<Loaded>>>,
    write: Mutex<()>,
}

impl From<SecretError> for AgentKeyError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Random(m) => AgentKeyError::Random(m),
            SecretError::Invalid(m) => AgentKeyError::Invalid(m),
        }
    }
}

impl AgentKeys {
    /// Open the tree and load every key.
    pub fn open(store: &storage::Store) -> Result<AgentKeys, AgentKeyError> {
        AgentKeys::open_tree(store, storage::Tree::AgentKeys, KEY_PREFIX)
    }

    /// Open the per-agent MCP tokens (same rules, their own tree and prefix `cbm_`).
    pub fn open_mcp_tokens(store: &storage::Store) -> Result<AgentKeys, AgentKeyError> {
        AgentKeys::open_tree(store, storage::Tree::McpTokens, MCP_TOKEN_PREFIX)
    }

    fn open_tree(
        store: &storage::Store,
        tree: storage::Tree,
        prefix: &'static str,
    ) -> Result<AgentKeys, AgentKeyError> {
        let keys = AgentKeys { tree: store.tree(tree)?, prefix, cache: ArcSwap::default(), write: Mutex::new(()) };
        keys.refresh()?;
        Ok(keys)
    }

    fn refresh(&self) -> Result<(), AgentKeyError> {
        let mut by_agent: HashMap<String, Vec<Loaded>> = HashMap::new();
        for kv in self.tree.iter() {
            let (_, v) = kv?;
            let s: Stored = serde_json::from_slice(&v)?;
            let secret = Hashed::from_hex(&s.salt, &s.hash);
            by_agent.entry(s.info.agent.clone()).or_default().push(Loaded { info: s.info, secret });
        }
        self.cache.store(Arc::new(by_agent));
        Ok(())
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Create a key for `agent` (a canonical agent id); the secret is returned once.
    pub fn create(
        &self,
        agent: &str,
        label: Option<&str>,
        actor: &str,
    ) -> Result<(String, AgentKeyInfo), AgentKeyError> {
        decision::agent_id::check(agent).map_err(|e| AgentKeyError::Invalid(e.to_string()))?;
        let label = match label {
            Some(l) => check_text("label", l, false)?,
            None => None,
        };
        let secret = format!("{}{}", self.prefix, random_hex(32)?);
        let (salt, hash) = Hashed::mint(&secret)?;
        let info = AgentKeyInfo {
            id: random_hex(6)?,
            agent: agent.to_string(),
            label,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            created_by: actor.to_string(),
        };
        let stored = Stored { info: info.clone(), salt, hash };
        let _w = self.locked();
        self.tree.insert(format!("{agent}/{}", info.id).as_bytes(), serde_json::to_vec(&stored)?)?;
        self.tree.flush()?;
        self.refresh()?;
        Ok((secret, info))
    }

    /// Keys of `agent` (or of every agent), oldest first.
    pub fn list(&self, agent: Option<&str>) -> Vec<AgentKeyInfo> {
        let all = self.cache.load();
        let mut out: Vec<AgentKeyInfo> = all
            .iter()
            .filter(|(a, _)| agent.is_none_or(|x| x == a.as_str()))
            .flat_map(|(_, v)| v.iter().map(|s| s.info.clone()))
            .collect();
        out.sort_by(|a, b| (&a.agent, &a.created_at, &a.id).cmp(&(&b.agent, &b.created_at, &b.id)));
        out
    }

    /// Revoke one key of `agent`; returns it if it existed. Calls with it fail from now on.
    pub fn revoke(&self, agent: &str, id: &str) -> Result<Option<AgentKeyInfo>, AgentKeyError> {
        let _w = self.locked();
        let old = self.tree.remove(format!("{agent}/{id}").as_bytes())?;
        self.tree.flush()?;
        self.refresh()?;
        Ok(match old {
            Some(v) => Some(serde_json::from_slice::<Stored>(&v)?.info),
            None => None,
        })
    }

    /// Whether `agent` has any key.
    pub fn has_keys(&self, agent: &str) -> bool {
        self.cache.load().get(agent).is_some_and(|v| !v.is_empty())
    }

    /// Check a presented secret against `agent`'s keys only (no I/O).
    pub fn verify(&self, agent: &str, secret: &str) -> Verdict {
        let all = self.cache.load();
        let Some(keys) = all.get(agent).filter(|v| !v.is_empty()) else { return Verdict::NoKeys };
        if !secret.starts_with(self.prefix) {
            return Verdict::Mismatch;
        }
        keys.iter().find(|k| k.matches(secret)).map_or(Verdict::Mismatch, |k| Verdict::Valid(k.info.id.clone()))
    }

    /// The agent whose key `secret` is, if any (a slow scan over every agent: for telling
    /// "another agent's key" from "no key" on a refused call, never on the hot path).
    pub fn owner(&self, secret: &str) -> Option<String> {
        if !secret.starts_with(self.prefix) {
            return None;
        }
        let all = self.cache.load();
        all.iter().find(|(_, keys)| keys.iter().any(|k| k.matches(secret))).map(|(a, _)| a.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn open(dir: &std::path::Path) -> AgentKeys {
        AgentKeys::open(&storage::Store::open(dir).unwrap()).unwrap()
    }

    #[test]
    fn a_key_works_only_for_its_agent_and_only_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let keys = open(dir.path());
        assert_eq!(keys.verify("main", "cbk_x"), Verdict::NoKeys);
        let (main, info) = keys.create("main", Some("attach ws://gw"), "admin").unwrap();
        let (other, _) = keys.create("other", None, "admin").unwrap();
        assert!(main.starts_with(KEY_PREFIX) && main.len() == KEY_PREFIX.len() + 64);
        assert_eq!(keys.verify("main", &main), Verdict::Valid(info.id.clone()));
        assert_eq!(keys.verify("main", &other), Verdict::Mismatch, "another agent's key");
        assert_eq!(keys.verify("other", &main), Verdict::Mismatch);
        assert_eq!(keys.verify("main", "sk-real-upstream-key"), Verdict::Mismatch);
        assert_eq!(keys.verify("main", &main[..main.len() - 1]), Verdict::Mismatch);
        assert_eq!(keys.list(Some("main")), vec![info.clone()]);
        assert_eq!(keys.list(None).len(), 2);
        assert_eq!(keys.revoke("main", &info.id).unwrap(), Some(info));
        assert_eq!(keys.verify("main", &main), Verdict::NoKeys);
        assert!(keys.has_keys("other"));
    }

    #[test]
    fn secrets_are_stored_salted_and_hashed_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, info) = {
            let keys = open(dir.path());
            keys.create("main", None, "admin").unwrap()
        };
        let db = storage::Store::reopen(dir.path()).unwrap();
        let tree = db.tree(storage::Tree::AgentKeys).unwrap();
        let plain_hash = hex::encode(Sha256::digest(secret.as_bytes()));
        for kv in tree.iter() {
            let (k, v) = kv.unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
            assert!(!text.contains(&secret) && !text.contains(&secret[KEY_PREFIX.len()..]), "secret stored");
            assert!(!text.contains(&plain_hash), "unsalted hash stored");
        }
        let keys = AgentKeys::open(&db).unwrap();
        assert_eq!(keys.verify("main", &secret), Verdict::Valid(info.id));
    }

    #[test]
    fn mcp_tokens_are_a_separate_set_with_their_own_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let db = storage::Store::open(dir.path()).unwrap();
        let keys = AgentKeys::open(&db).unwrap();
        let tokens = AgentKeys::open_mcp_tokens(&db).unwrap();
        let (key, _) = keys.create("main", None, "admin").unwrap();
        let (token, info) = tokens.create("main", Some("cb-main"), "admin").unwrap();
        assert!(token.starts_with(MCP_TOKEN_PREFIX) && key.starts_with(KEY_PREFIX));
        assert_eq!(tokens.verify("main", &token), Verdict::Valid(info.id.clone()));
        assert_eq!(tokens.verify("main", &key), Verdict::Mismatch, "a model key is not an MCP token");
        assert_eq!(keys.verify("main", &token), Verdict::Mismatch, "an MCP token is not a model key");
        assert_eq!(tokens.owner(&token).as_deref(), Some("main"));
        assert_eq!(tokens.owner(&key), None);
        assert_eq!(keys.list(None).len(), 1);
        assert_eq!(AgentKeys::open_mcp_tokens(&db).unwrap().list(None), vec![info]);
    }

    #[test]
    fn bad_agent_ids_and_labels_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let keys = open(dir.path());
        for agent in ["MAIN", "main.", "..", "", "a/b"] {
            assert!(keys.create(agent, None, "admin").is_err(), "{agent}");
        }
        assert!(keys.create("main", Some("line\nbreak"), "admin").is_err());
        assert!(keys.list(None).is_empty());
    }
}

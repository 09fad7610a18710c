//! Bearer tokens with roles. Tokens are random, shown once, and stored only as SHA-256
//! hashes in sled; a request's role comes from its token's record.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// What a token may do; each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// + decide approvals.
    Approver,
    /// + policies, budgets, tokens, kill switch.
    Admin,
}

impl Role {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "approver" => Ok(Role::Approver),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role '{other}' (viewer, approver, admin)")),
        }
    }
}

/// A stored token (its secret is never stored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    /// First 8 hex chars of the hash, to tell tokens apart in lists.
    pub id: String,
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Refuse unless the caller has at least `need`.
    pub fn require(&self, need: Role) -> Result<(), Problem> {
        if self.role >= need {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "token '{}' has role {}; this needs {}",
                self.name,
                self.role.as_str(),
                need.as_str()
            )))
        }
    }
}

/// Errors of the token store.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("token store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("no randomness available: {0}")]
    Random(String),
}

/// Hashed tokens in the `tokens` tree.
#[derive(Clone)]
pub struct TokenStore {
    tree: sled::Tree,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl TokenStore {
    /// Open the `tokens` tree.
    pub fn open(store: &storage::Store) -> Result<TokenStore, TokenError> {
        Ok(TokenStore { tree: store.tree(storage::Tree::Tokens)? })
    }

    /// Whether no token exists yet (first start).
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Store a given secret (seeded admin token); idempotent.
    pub fn insert(&self, secret: &str, name: &str, role: Role) -> Result<TokenRecord, TokenError> {
        let h = hash(secret);
        let rec = TokenRecord {
            name: name.to_string(),
            role,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            id: h[..8].to_string(),
        };
        self.tree.insert(h.as_bytes(), serde_json::to_vec(&rec)?)?;
        self.tree.flush()?;
        Ok(rec)
    }

    /// Create a new random token; the secret is returned once and never stored.
    pub fn create(&self, name: &str, role: Role) -> Result<(String, TokenRecord), TokenError> {
        let mut b = [0u8; 24];
        getrandom::getrandom(&mut b).map_err(|e| TokenError::Random(e.to_string()))?;
        let secret = format!("cbt_{}", hex::encode(b));
        let rec = self.insert(&secret, name, role)?;
        Ok((secret, rec))
    }

    /// Look a presented secret up.
    pub fn verify(&self, secret: &str) -> Option<TokenRecord> {
        let v = self.tree.get(hash(secret).as_bytes()).ok()??;
        serde_json::from_slice(&v).ok()
    }

    /// All tokens (without secrets).
    pub fn list(&self) -> Vec<TokenRecord> {
        self.tree.iter().values().filter_map(|v| v.ok()).filter_map(|v| serde_json::from_slice(&v).ok()).collect()
    }

    /// Revoke by id prefix; returns whether one was removed.
    pub fn revoke(&self, id: &str) -> Result<bool, TokenError> {
        for kv in self.tree.iter() {
            let (k, _) = kv?;
            if k.starts_with(id.as_bytes()) && id.len() >= 8 {
                self.tree.remove(k)?;
                self.tree.flush()?;
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The caller of a request with this `Authorization` header.
pub fn authenticate(store: &TokenStore, header: Option<&http::HeaderValue>) -> Result<Caller, Problem> {
    let v = header.ok_or_else(|| Problem::unauthorized("missing bearer token (Authorization: Bearer <token>)"))?;
    let secret = v
        .to_str()
        .ok()
        .and_then(|s| s.strip_prefix("Bearer ").or_else(|| s.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| Problem::unauthorized("Authorization must be 'Bearer <token>'"))?;
    let rec = store.verify(secret).ok_or_else(|| Problem::unauthorized("unknown or revoked token"))?;
    Ok(Caller { name: rec.name, role: rec.role })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_hashed_and_roles_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let db = storage::Store::open(dir.path()).unwrap();
        let s = TokenStore::open(&db).unwrap();
        let (secret, rec) = s.create("alice", Role::Approver).unwrap();
        // The secret itself is nowhere in the store.
        for kv in s.tree.iter() {
            let (k, v) = kv.unwrap();
            assert!(!String::from_utf8_lossy(&k).contains(&secret));
            assert!(!String::from_utf8_lossy(&v).contains(&secret));
        }
        let hv = http::HeaderValue::from_str(&format!("Bearer {secret}")).unwrap();
        let c = authenticate(&s, Some(&hv)).unwrap();
        assert_eq!(c.role, Role::Approver);
        assert!(c.require(Role::Viewer).is_ok());
        assert!(c.require(Role::Admin).is_err());
        assert!(authenticate(&s, None).is_err());
        assert!(s.revoke(&rec.id).unwrap());
        assert!(authenticate(&s, Some(&hv)).is_err());
    }
}

//! Bearer tokens with roles. Tokens are random, shown once, and stored only as keyed hashes
//! in sled: HMAC-SHA256 under a per-install key (`token-hmac.key`, 0600, in the data dir), so
//! a copy of the store alone cannot be used to guess a human-chosen token offline. Stores
//! written before the key existed hold unsalted SHA-256 hashes; such a token still works and
//! is re-keyed on its first successful use. A request's role comes from its token's record.
//! Token names are shown to other admins and written in the audit log as actors, so they are
//! checked ([`check_name`]) and unique, compared without case.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
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
    #[error("token hashing key {path}: {source}")]
    Key { path: std::path::PathBuf, source: std::io::Error },
    #[error("token name {0}")]
    BadName(String),
    #[error("a token named '{0}' already exists; names are unique (compared without case)")]
    DuplicateName(String),
}

/// File name of the per-install token hashing key, in the data dir.
pub const KEY_FILE: &str = "token-hmac.key";

/// Longest token name, in characters.
pub const NAME_MAX: usize = 64;

/// Check a token name: 1 to [`NAME_MAX`] characters, no control or invisible formatting
/// characters (bidi overrides, zero-width spaces), no markup characters (`< > & " ' \``), no
/// leading or trailing space. The message says what is wrong.
pub fn check_name(name: &str) -> Result<(), TokenError> {
    let bad = |why: &str| Err(TokenError::BadName(why.to_string()));
    let n = name.chars().count();
    if n == 0 || n > NAME_MAX {
        return bad(&format!("must be 1 to {NAME_MAX} characters"));
    }
    if name.trim() != name {
        return bad("must not start or end with white space");
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || invisible(*c)) {
        return bad(&format!("must not contain control or invisible characters (found U+{:04X})", c as u32));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '<' | '>' | '&' | '"' | '\'' | '`')) {
        return bad(&format!("must not contain markup characters (found '{c}')"));
    }
    Ok(())
}

/// Format characters that change how text looks without being seen (Unicode Cf, the ones
/// that matter in names).
fn invisible(c: char) -> bool {
    matches!(c as u32, 0x00AD | 0x061C | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB)
}

/// Hashed tokens in the `tokens` tree.
#[derive(Clone)]
pub struct TokenStore {
    tree: sled::Tree,
    /// HMAC-SHA256 keyed with the install's key, ready to clone per hash.
    mac: Hmac<Sha256>,
    /// Serialises name checks with inserts, so two creates cannot take one name.
    names: Arc<Mutex<()>>,
}

/// The unsalted SHA-256 of stores written before the hashing key (read only, to migrate).
fn legacy_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Load the hashing key from `dir`, creating it (0600) on first use.
fn load_or_create_key(dir: &Path) -> Result<[u8; 32], TokenError> {
    let path = dir.join(KEY_FILE);
    let err = |source| TokenError::Key { path: path.clone(), source };
    match std::fs::read(&path) {
        Ok(b) => {
            return <[u8; 32]>::try_from(b.as_slice()).map_err(|_| {
                err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a 32-byte key (was it edited?)"))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| TokenError::Random(e.to_string()))?;
    // Temp name then rename: a crash never leaves a half-written key.
    let tmp = dir.join(format!("{KEY_FILE}.tmp"));
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(err)?;
    f.write_all(&key).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok(key)
}

impl TokenStore {
    /// Open the `tokens` tree; the hashing key lives in `key_dir` (the data dir).
    pub fn open(store: &storage::Store, key_dir: &Path) -> Result<TokenStore, TokenError> {
        let key = load_or_create_key(key_dir)?;
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|e| TokenError::Key {
            path: key_dir.join(KEY_FILE),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        Ok(TokenStore { tree: store.tree(storage::Tree::Tokens)?, mac, names: Arc::new(Mutex::new(())) })
    }

    fn hash(&self, secret: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(secret.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether no token exists yet (first start).
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Store a given secret (seeded admin token); idempotent. The name is not checked
    /// (seeded names are the sidecar's own).
    pub fn insert(&self, secret: &str, name: &str, role: Role) -> Result<TokenRecord, TokenError> {
        let h = self.hash(secret);
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

    /// Create a new random token; the secret is returned once and never stored. The name is
    /// checked ([`check_name`]) and must be unique.
    pub fn create(&self, name: &str, role: Role) -> Result<(String, TokenRecord), TokenError> {
        check_name(name)?;
        let _g = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let lower = name.to_lowercase();
        if self.list().iter().any(|t| t.name.to_lowercase() == lower) {
            return Err(TokenError::DuplicateName(name.to_string()));
        }
        let mut b = [0u8; 24];
        getrandom::getrandom(&mut b).map_err(|e| TokenError::Random(e.to_string()))?;
        let secret = format!("cbt_{}", hex::encode(b));
        let rec = self.insert(&secret, name, role)?;
        Ok((secret, rec))
    }

    /// Look a presented secret up. A token stored the old way (unsalted SHA-256) is found
    /// too, and moved to its keyed hash on the spot.
    pub fn verify(&self, secret: &str) -> Option<TokenRecord> {
        if let Some(v) = self.tree.get(self.hash(secret).as_bytes()).ok()? {
            return serde_json::from_slice(&v).ok();
        }
        let old = legacy_hash(secret);
        let v = self.tree.get(old.as_bytes()).ok()??;
        let rec: TokenRecord = serde_json::from_slice(&v).ok()?;
        let moved = self
            .tree
            .insert(self.hash(secret).as_bytes(), v)
            .and_then(|_| self.tree.remove(old.as_bytes()))
            .and_then(|_| self.tree.flush());
        if let Err(e) = moved {
            // The token still works (the old hash is still there or the new one is).
            tracing::warn!(error = %e, id = %rec.id, "re-keying a token's hash failed");
        }
        Some(rec)
    }

    /// All tokens (without secrets).
    pub fn list(&self) -> Vec<TokenRecord> {
        self.tree.iter().values().filter_map(|v| v.ok()).filter_map(|v| serde_json::from_slice(&v).ok()).collect()
    }

    /// Revoke by id (8+ hex chars, as listed); returns whether one was removed.
    pub fn revoke(&self, id: &str) -> Result<bool, TokenError> {
        if id.len() < 8 {
            return Ok(false);
        }
        for kv in self.tree.iter() {
            let (k, v) = kv?;
            // The id is the start of the hash the token was created with; a re-keyed token
            // keeps its id while its key changes, so match on the record.
            let rec_id = serde_json::from_slice::<TokenRecord>(&v).map(|r| r.id).unwrap_or_default();
            if (!rec_id.is_empty() && (rec_id.starts_with(id) || id.starts_with(&rec_id)))
                || k.starts_with(id.as_bytes())
            {
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
    use std::os::unix::fs::PermissionsExt;

    fn open(dir: &Path) -> (storage::Store, TokenStore) {
        let db = storage::Store::open(&dir.join("state")).unwrap();
        let s = TokenStore::open(&db, dir).unwrap();
        (db, s)
    }

    #[test]
    fn tokens_are_hashed_and_roles_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, s) = open(dir.path());
        let (secret, rec) = s.create("alice", Role::Approver).unwrap();
        // The secret itself is nowhere in the store, nor its unsalted hash.
        for kv in s.tree.iter() {
            let (k, v) = kv.unwrap();
            assert!(!String::from_utf8_lossy(&k).contains(&secret));
            assert!(!String::from_utf8_lossy(&v).contains(&secret));
            assert_ne!(&k[..], legacy_hash(&secret).as_bytes());
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

    #[test]
    fn the_hashing_key_is_per_install_private_and_stable() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let (_da, sa) = open(a.path());
        let (_db, sb) = open(b.path());
        assert_ne!(sa.hash("same-secret"), sb.hash("same-secret"), "two installs, two keys");
        let mode = std::fs::metadata(a.path().join(KEY_FILE)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let h = sa.hash("same-secret");
        drop((_da, sa));
        let (_da, sa) = open(a.path());
        assert_eq!(sa.hash("same-secret"), h, "the key survives a restart");
    }

    #[test]
    fn a_token_stored_the_old_way_works_and_is_rekeyed_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, s) = open(dir.path());
        let secret = "human-chosen-admin-token";
        let old = legacy_hash(secret);
        let rec = TokenRecord {
            name: "ops".into(),
            role: Role::Admin,
            created_at: "2026-01-01T00:00:00Z".into(),
            id: old[..8].into(),
        };
        s.tree.insert(old.as_bytes(), serde_json::to_vec(&rec).unwrap()).unwrap();
        let got = s.verify(secret).expect("the old hash still verifies");
        assert_eq!((got.name.as_str(), got.role, got.id.as_str()), ("ops", Role::Admin, &old[..8]));
        assert!(s.tree.get(old.as_bytes()).unwrap().is_none(), "the unsalted hash is gone");
        assert!(s.tree.get(s.hash(secret).as_bytes()).unwrap().is_some());
        assert_eq!(s.verify(secret).unwrap().id, old[..8], "still works after the move");
        // The listed id still revokes it.
        assert!(s.revoke(&old[..8]).unwrap());
        assert!(s.verify(secret).is_none());
    }

    #[test]
    fn names_are_checked_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, s) = open(dir.path());
        s.create("Alice (on-call)", Role::Viewer).unwrap();
        s.create("运维", Role::Viewer).unwrap();
        for bad in [
            "",
            " admin",
            "admin ",
            "ad\nmin",
            "ad\u{7}min",
            "first-admin\u{202E}",
            "zero\u{200B}width",
            "<b>admin</b>",
            "a&b",
            "x\"y",
            &"n".repeat(NAME_MAX + 1),
        ] {
            assert!(matches!(s.create(bad, Role::Viewer), Err(TokenError::BadName(_))), "{bad:?}");
        }
        assert!(matches!(s.create("alice (ON-CALL)", Role::Admin), Err(TokenError::DuplicateName(_))));
        s.insert("seed", "first-admin", Role::Admin).unwrap();
        assert!(matches!(s.create("First-Admin", Role::Viewer), Err(TokenError::DuplicateName(_))));
    }
}

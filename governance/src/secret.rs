//! What the credential stores share ([`crate::agent_keys`], [`crate::plugin_tokens`]): how a
//! secret is minted, salted and hashed, how a presented one is compared, and how the free text
//! stored beside it is checked. Each store keeps its own tree, prefix, key layout and lookup;
//! the rules for the secret itself live here once.
//!
//! Invariants: a secret is never stored, only a random 16-byte salt and SHA-256(salt ||
//! secret), both hex; comparing takes the same time however many bytes match.

use sha2::{Digest, Sha256};

/// Why minting or checking failed; each store turns it into its own error.
#[derive(Debug)]
pub(crate) enum SecretError {
    /// The OS gave no randomness.
    Random(String),
    /// Text a caller supplied is not acceptable (the message says why).
    Invalid(String),
}

/// `n` random bytes as hex.
pub(crate) fn random_hex(n: usize) -> Result<String, SecretError> {
    let mut b = vec![0u8; n];
    getrandom::getrandom(&mut b).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(hex::encode(b))
}

/// A stored secret: salt and hash, decoded once when loaded.
pub(crate) struct Hashed {
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl Hashed {
    /// Salt and hash `secret` for storing: (hex salt, hex hash).
    pub(crate) fn mint(secret: &str) -> Result<(String, String), SecretError> {
        let salt = random_hex(16)?;
        let salt_bytes = hex::decode(&salt).map_err(|e| SecretError::Random(e.to_string()))?;
        Ok((salt, hex::encode(digest(&salt_bytes, secret))))
    }

    /// From the stored hex. A record whose salt or hash is not hex matches nothing (an empty
    /// hash never equals a digest), but its store still lists it, so it can be seen and revoked.
    pub(crate) fn from_hex(salt: &str, hash: &str) -> Hashed {
        Hashed { salt: hex::decode(salt).unwrap_or_default(), hash: hex::decode(hash).unwrap_or_default() }
    }

    /// Whether `secret` is the one stored.
    pub(crate) fn matches(&self, secret: &str) -> bool {
        same(&digest(&self.salt, secret), &self.hash)
    }
}

fn digest(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// Equal without an early exit (the time does not tell how many bytes matched).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Trimmed free text (a label, a gateway name): at most 200 characters, no control characters;
/// empty is `None`, or refused when `required`.
pub(crate) fn check_text(what: &str, s: &str, required: bool) -> Result<Option<String>, SecretError> {
    let t = s.trim();
    if t.is_empty() {
        return if required { Err(SecretError::Invalid(format!("{what} must not be empty"))) } else { Ok(None) };
    }
    if t.chars().count() > 200 || t.chars().any(char::is_control) {
        return Err(SecretError::Invalid(format!("{what} must be at most 200 characters, without control characters")));
    }
    Ok(Some(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_hash_matches_its_secret_only() {
        let (salt, hash) = Hashed::mint("cbk_secret").unwrap();
        let h = Hashed::from_hex(&salt, &hash);
        assert!(h.matches("cbk_secret"));
        assert!(!h.matches("cbk_secreT") && !h.matches(""));
        let (salt2, hash2) = Hashed::mint("cbk_secret").unwrap();
        assert_ne!((salt, hash), (salt2, hash2), "a fresh salt per secret");
        assert!(!Hashed::from_hex("zz", "zz").matches(""), "bad hex matches nothing");
    }

    #[test]
    fn text_is_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(check_text("label", "  a b ", false).unwrap().as_deref(), Some("a b"));
        assert!(check_text("label", " ", false).unwrap().is_none());
        assert!(check_text("gateway", " ", true).is_err());
        assert!(check_text("label", "a\nb", false).is_err());
        assert!(check_text("label", &"x".repeat(201), false).is_err());
    }
}

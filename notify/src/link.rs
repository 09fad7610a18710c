//! Action links: `<public_url>/n/<token>` opens one approval in the UI. The token is signed
//! (HMAC-SHA256 under `notify-link.key`, 32 random bytes kept 0600 in the data dir), expires
//! (at the approval's expiry, at most `link_ttl_s`), and works once: opening it records its
//! nonce in `storage::Tree::NotifyLinks`, atomically, so a second open is refused. The link
//! only navigates: deciding still needs a signed-in token with the approver role.
//!
//! Token layout (base64url, no padding): version (1 byte, 1) | approval id (16 bytes, UUID) |
//! expiry (8 bytes, unix seconds, big endian) | nonce (16 bytes) | MAC (32 bytes) over the rest.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not valid")]
    Invalid,
    #[error("this link has expired")]
    Expired,
    #[error("this link was already used")]
    Used,
    #[error("the link store failed")]
    Store,
}

const BODY: usize = 1 + 16 + 8 + 16;
const LEN: usize = BODY + 32;

/// What a valid link points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkClaims {
    pub approval_id: String,
    pub expires_unix: i64,
    nonce: [u8; 16],
}

/// Issues and checks action links.
#[derive(Clone)]
pub struct LinkSigner {
    key: [u8; 32],
    used: sled::Tree,
}

/// Read a 32-byte hex key file, or create it (0600) with fresh random bytes.
pub fn load_or_create_key(path: &Path) -> std::io::Result<[u8; 32]> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let mut k = [0u8; 32];
        if hex::decode_to_slice(text.trim(), &mut k).is_ok() {
            return Ok(k);
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not 64 hex digits", path.display()),
        ));
    }
    let mut k = [0u8; 32];
    getrandom::getrandom(&mut k).map_err(|e| std::io::Error::other(e.to_string()))?;
    write_private(path, hex::encode(k).as_bytes())?;
    Ok(k)
}

/// Write a 0600 file atomically (temp file, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl LinkSigner {
    pub fn new(key: [u8; 32], used: sled::Tree) -> LinkSigner {
        LinkSigner { key, used }
    }

    fn mac(&self, body: &[u8]) -> [u8; 32] {
        // HMAC accepts any key length; a 32-byte key cannot fail.
        let mut m = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return [0; 32],
        };
        m.update(body);
        m.finalize().into_bytes().into()
    }

    /// A token for `approval_id` (a UUID) valid until `expires_unix`.
    pub fn issue(&self, approval_id: &str, expires_unix: i64) -> Option<String> {
        let id = uuid::Uuid::parse_str(approval_id).ok()?;
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).ok()?;
        let mut b = Vec::with_capacity(LEN);
        b.push(1u8);
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(&expires_unix.to_be_bytes());
        b.extend_from_slice(&nonce);
        let mac = self.mac(&b);
        b.extend_from_slice(&mac);
        Some(URL_SAFE_NO_PAD.encode(b))
    }

    /// Parse and verify a token (signature, then expiry, then use), without using it.
    pub fn check(&self, token: &str, now_unix: i64) -> Result<LinkClaims, LinkError> {
        let raw = URL_SAFE_NO_PAD.decode(token.as_bytes()).map_err(|_| LinkError::Invalid)?;
        if raw.len() != LEN || raw[0] != 1 {
            return Err(LinkError::Invalid);
        }
        let (body, mac) = raw.split_at(BODY);
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|_| LinkError::Invalid)?;
        m.update(body);
        m.verify_slice(mac).map_err(|_| LinkError::Invalid)?;
        let id = uuid::Uuid::from_slice(&body[1..17]).map_err(|_| LinkError::Invalid)?;
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&body[17..25]);
        let expires_unix = i64::from_be_bytes(exp);
        let mut nonce = [0u8; 16];
        nonce.copy_from_slice(&body[25..41]);
        if now_unix >= expires_unix {
            return Err(LinkError::Expired);
        }
        if self.used.contains_key(nonce).map_err(|_| LinkError::Store)? {
            return Err(LinkError::Used);
        }
        Ok(LinkClaims { approval_id: id.to_string(), expires_unix, nonce })
    }

    /// Verify and use a token: exactly one caller ever gets `Ok` for it.
    pub fn consume(&self, token: &str, now_unix: i64) -> Result<LinkClaims, LinkError> {
        let c = self.check(token, now_unix)?;
        let swapped = self
            .used
            .compare_and_swap(c.nonce, None::<&[u8]>, Some(&c.expires_unix.to_be_bytes()[..]))
            .map_err(|_| LinkError::Store)?;
        if swapped.is_err() {
            return Err(LinkError::Used);
        }
        self.used.flush().map_err(|_| LinkError::Store)?;
        Ok(c)
    }

    /// Forget used nonces whose links have expired anyway (they can no longer be replayed).
    pub fn prune(&self, now_unix: i64) {
        for (k, v) in self.used.iter().filter_map(|x| x.ok()) {
            let exp = <[u8; 8]>::try_from(v.as_ref()).map(i64::from_be_bytes).unwrap_or(0);
            if exp <= now_unix {
                let _ = self.used.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> (LinkSigner, tempfile::TempDir) {
        let d = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let key = load_or_create_key(&d.path().join("k")).unwrap();
        assert_eq!(load_or_create_key(&d.path().join("k")).unwrap(), key, "the key is kept");
        (LinkSigner::new(key, db.open_tree("used").unwrap()), d)
    }

    #[test]
    fn a_link_opens_once_and_not_after_expiry() {
        let (s, _d) = signer();
        let id = uuid::Uuid::now_v7().to_string();
        let t = s.issue(&id, 1_000).unwrap();
        assert_eq!(s.check(&t, 999).unwrap().approval_id, id);
        assert_eq!(s.check(&t, 1_000), Err(LinkError::Expired));
        assert_eq!(s.consume(&t, 10).unwrap().approval_id, id);
        assert_eq!(s.consume(&t, 10), Err(LinkError::Used));
        assert_eq!(s.check(&t, 10), Err(LinkError::Used));
        // A changed byte breaks the signature.
        let mut raw = URL_SAFE_NO_PAD.decode(s.issue(&id, 1_000).unwrap()).unwrap();
        raw[20] ^= 1;
        assert_eq!(s.check(&URL_SAFE_NO_PAD.encode(raw), 10), Err(LinkError::Invalid));
        assert_eq!(s.check("nonsense", 10), Err(LinkError::Invalid));
        s.prune(2_000);
        assert_eq!(s.used.len(), 0);
    }
}

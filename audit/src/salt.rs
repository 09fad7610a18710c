//! The per-install masking salt. Masked values keep a short hash so equal values correlate;
//! keyed with a secret that never leaves the box, that hash cannot be brute-forced offline
//! from the log (or an export) alone, which matters for small spaces such as phone numbers.
//!
//! The hash is HMAC-SHA256(salt, value). The salt is 32 random bytes stored as hex in
//! `audit-mask.salt` (mode 0600) next to the log, created on first open.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::AuditError;

/// File name of the masking salt inside the log directory.
pub const SALT_FILE: &str = "audit-mask.salt";

/// SHA-256 block size, the HMAC padding width.
const BLOCK: usize = 64;

/// A per-install secret keying the short hash of masked values.
///
/// Holds the HMAC inner and outer states already primed with the key, so each masked value
/// costs two hash finalisations and no key schedule.
#[derive(Clone)]
pub struct Salt {
    inner: Sha256,
    outer: Sha256,
}

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, not even derived state.
        f.write_str("Salt(..)")
    }
}

impl Salt {
    /// A salt from raw key bytes (any length; HMAC hashes keys longer than 64 bytes).
    pub fn from_bytes(key: &[u8]) -> Salt {
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let pad = |b: u8| {
            let mut h = Sha256::new();
            h.update(k.map(|x| x ^ b));
            h
        };
        Salt { inner: pad(0x36), outer: pad(0x5c) }
    }

    /// HMAC-SHA256(salt, value).
    pub fn mac(&self, value: &[u8]) -> [u8; 32] {
        let mut inner = self.inner.clone();
        inner.update(value);
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }

    /// Load the salt from `dir`, creating it on first open. Tightens the file to 0600 if
    /// someone loosened it.
    pub fn load_or_create(dir: &Path) -> Result<Salt, AuditError> {
        let path = dir.join(SALT_FILE);
        if path.exists() {
            let meta = fs::metadata(&path)?;
            if meta.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            }
            let text = fs::read_to_string(&path)?;
            let mut raw = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut raw)
                .map_err(|e| AuditError::Key(format!("{SALT_FILE} is not 64 hex digits: {e}")))?;
            return Ok(Salt::from_bytes(&raw));
        }
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).map_err(|e| AuditError::Key(format!("mask salt: {e}")))?;
        // Temp name then rename: a crash never leaves a half-written salt, which would
        // silently change every masked hash after it.
        let tmp = dir.join(format!("{SALT_FILE}.tmp"));
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{}\n", hex::encode(raw)).as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        crate::segment::sync_dir(dir)?;
        Ok(Salt::from_bytes(&raw))
    }
}

#[cfg(test)]
mod tests {
    use super::Salt;

    #[test]
    fn matches_rfc4231_hmac_sha256() {
        // RFC 4231 test case 2.
        let mac = Salt::from_bytes(b"Jefe").mac(b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // Test case 6: a key longer than the block is hashed first.
        let mac = Salt::from_bytes(&[0xaa; 131]).mac(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(hex::encode(mac), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    }
}

//! The Ed25519 checkpoint signing key: generated in the log directory on first start.
//! `audit-signing.key` (PKCS#8 PEM, mode 0600) stays private; `audit-pubkey.pem` (SPKI PEM,
//! readable by `openssl pkey -pubin`) is what auditors take away.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::AuditError;

/// File name of the private key inside the log directory.
pub const PRIVATE_KEY_FILE: &str = "audit-signing.key";
/// File name of the exported public key inside the log directory.
pub const PUBLIC_KEY_FILE: &str = "audit-pubkey.pem";

fn key_err(e: impl std::fmt::Display) -> AuditError {
    AuditError::Key(e.to_string())
}

/// Load the signing key from `dir`, creating it (and the public key file) on first start.
pub fn load_or_create(dir: &Path) -> Result<SigningKey, AuditError> {
    let path = dir.join(PRIVATE_KEY_FILE);
    let key = if path.exists() {
        let pem = fs::read_to_string(&path)?;
        SigningKey::from_pkcs8_pem(&pem).map_err(key_err)?
    } else {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(key_err)?;
        let key = SigningKey::from_bytes(&seed);
        let pem = key.to_pkcs8_pem(Default::default()).map_err(key_err)?;
        // Write to a temp name then rename, so a crash never leaves a half-written key.
        let tmp = dir.join(format!("{PRIVATE_KEY_FILE}.tmp"));
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        key
    };
    let pubpath = dir.join(PUBLIC_KEY_FILE);
    let pubpem = key.verifying_key().to_public_key_pem(Default::default()).map_err(key_err)?;
    if fs::read_to_string(&pubpath).ok().as_deref() != Some(pubpem.as_str()) {
        fs::write(&pubpath, pubpem.as_bytes())?;
    }
    crate::segment::sync_dir(dir)?;
    Ok(key)
}

/// Read a public key given as SPKI PEM or as 64 hex digits.
pub fn load_public(path: &Path) -> Result<VerifyingKey, AuditError> {
    let text = fs::read_to_string(path)?;
    let t = text.trim();
    if t.len() == 64 {
        let mut raw = [0u8; 32];
        if hex::decode_to_slice(t, &mut raw).is_ok() {
            return VerifyingKey::from_bytes(&raw).map_err(key_err);
        }
    }
    VerifyingKey::from_public_key_pem(t).map_err(key_err)
}

/// Short identifier of a key: first 16 hex digits of sha256(raw public key).
pub fn key_id(key: &VerifyingKey) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

//! The Ed25519 checkpoint signing key: generated in the log directory on first start.
//! `audit-signing.key` (PKCS#8 PEM, mode 0600) stays private; `audit-pubkey.pem` (SPKI PEM,
//! readable by `openssl pkey -pubin`) is the key in force; `audit-pubkeys.pem` holds every
//! public key the log has been signed with, oldest first, and is what auditors take away.
//!
//! Rotation (`AuditLog::rotate_key`): the new private key is first written to
//! `audit-signing.key.next`; the writer then signs a checkpoint naming the new public key
//! (`next_key`) with the old key, and only then moves the new key into place. A crash in
//! between is finished at the next open: the staged key is promoted when the last checkpoint
//! names it, and removed otherwise.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::checkpoint::Checkpoint;
use crate::AuditError;

/// File name of the private key inside the log directory.
pub const PRIVATE_KEY_FILE: &str = "audit-signing.key";
/// File name of the exported public key inside the log directory.
pub const PUBLIC_KEY_FILE: &str = "audit-pubkey.pem";
/// Every public key the log was signed with, oldest first (PEM blocks).
pub const HISTORY_FILE: &str = "audit-pubkeys.pem";
/// A new private key waiting for its rotation checkpoint.
const STAGED_FILE: &str = "audit-signing.key.next";

fn key_err(e: impl std::fmt::Display) -> AuditError {
    AuditError::Key(e.to_string())
}

/// Load the signing key from `dir`, creating it (and the public key files) on first start.
pub fn load_or_create(dir: &Path) -> Result<SigningKey, AuditError> {
    finish_staged(dir)?;
    let path = dir.join(PRIVATE_KEY_FILE);
    let key = if path.exists() {
        let pem = fs::read_to_string(&path)?;
        SigningKey::from_pkcs8_pem(&pem).map_err(key_err)?
    } else {
        let key = generate()?;
        write_private(dir, &path, &key)?;
        key
    };
    publish(dir, &key)?;
    Ok(key)
}

/// A new random signing key.
pub(crate) fn generate() -> Result<SigningKey, AuditError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(key_err)?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Write a private key to `path` (0600): a temp name, fsync, rename, so a crash never leaves
/// a half-written key.
fn write_private(dir: &Path, path: &Path, key: &SigningKey) -> Result<(), AuditError> {
    let pem = key.to_pkcs8_pem(Default::default()).map_err(key_err)?;
    let tmp = dir.join(format!("{PRIVATE_KEY_FILE}.tmp"));
    let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    crate::segment::sync_dir(dir)?;
    Ok(())
}

/// `audit-pubkey.pem` = this key; `audit-pubkeys.pem` ends with it.
fn publish(dir: &Path, key: &SigningKey) -> Result<(), AuditError> {
    let pubpem = key.verifying_key().to_public_key_pem(Default::default()).map_err(key_err)?;
    let pubpath = dir.join(PUBLIC_KEY_FILE);
    if fs::read_to_string(&pubpath).ok().as_deref() != Some(pubpem.as_str()) {
        fs::write(&pubpath, pubpem.as_bytes())?;
    }
    let hist = dir.join(HISTORY_FILE);
    let mut known = fs::read_to_string(&hist).unwrap_or_default();
    if !known.contains(pubpem.trim()) {
        if !known.is_empty() && !known.ends_with('\n') {
            known.push('\n');
        }
        known.push_str(&pubpem);
        let tmp = dir.join(format!("{HISTORY_FILE}.tmp"));
        fs::write(&tmp, known.as_bytes())?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &hist)?;
    }
    crate::segment::sync_dir(dir)?;
    Ok(())
}

/// A new signing key in a new file `path` (PKCS#8 PEM, 0600; an existing file is never
/// overwritten): the fleet's policy key (`clawbutler fleet keygen`) is made this way.
pub fn create_private_file(path: &Path) -> Result<SigningKey, AuditError> {
    let key = generate()?;
    let pem = key.to_pkcs8_pem(Default::default()).map_err(key_err)?;
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    Ok(key)
}

/// Read a private key file (PKCS#8 PEM) made by [`create_private_file`] or [`load_or_create`].
pub fn load_private(path: &Path) -> Result<SigningKey, AuditError> {
    let pem = fs::read_to_string(path)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| AuditError::Key(format!("{}: {e}", path.display())))
}

/// Rotation, step 1: keep the new key where a crash cannot lose it.
pub(crate) fn stage(dir: &Path, key: &SigningKey) -> Result<(), AuditError> {
    write_private(dir, &dir.join(STAGED_FILE), key)
}

/// Rotation, step 3 (after the rotation checkpoint is fsynced): the new key is in force.
pub(crate) fn promote(dir: &Path, key: &SigningKey) -> Result<(), AuditError> {
    fs::rename(dir.join(STAGED_FILE), dir.join(PRIVATE_KEY_FILE))?;
    publish(dir, key)
}

/// The raw public key as 64 hex digits (a rotation checkpoint's `next_key`).
pub fn public_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Finish or undo a rotation a crash interrupted (see the module docs).
fn finish_staged(dir: &Path) -> Result<(), AuditError> {
    let staged = dir.join(STAGED_FILE);
    if !staged.exists() {
        return Ok(());
    }
    let key = SigningKey::from_pkcs8_pem(&fs::read_to_string(&staged)?).map_err(key_err)?;
    let cps = fs::read(dir.join(crate::segment::CHECKPOINT_FILE)).unwrap_or_default();
    let last = crate::segment::lines(&cps).0.last().and_then(|(_, l)| serde_json::from_slice::<Checkpoint>(l).ok());
    if last.and_then(|c| c.next_key).as_deref() == Some(public_hex(&key.verifying_key()).as_str()) {
        tracing::warn!("finishing an audit key rotation a stop interrupted");
        promote(dir, &key)
    } else {
        fs::remove_file(&staged)?;
        crate::segment::sync_dir(dir)?;
        Ok(())
    }
}

/// Every public key in a file: PEM blocks (`audit-pubkeys.pem`, or one `audit-pubkey.pem`)
/// or lines of 64 hex digits.
pub fn load_public_set(path: &Path) -> Result<Vec<VerifyingKey>, AuditError> {
    parse_public_set(&fs::read_to_string(path)?, &path.display().to_string())
}

/// Every public key in a text (PEM blocks or lines of 64 hex digits, as `load_public_set`
/// reads them); `what` names the source in the error.
pub fn parse_public_set(text: &str, what: &str) -> Result<Vec<VerifyingKey>, AuditError> {
    const END: &str = "-----END PUBLIC KEY-----";
    let mut out = Vec::new();
    if text.contains(END) {
        for block in text.split_inclusive(END).filter(|b| b.contains("-----BEGIN")) {
            out.push(VerifyingKey::from_public_key_pem(block.trim()).map_err(key_err)?);
        }
    } else {
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(line, &mut raw).map_err(key_err)?;
            out.push(VerifyingKey::from_bytes(&raw).map_err(key_err)?);
        }
    }
    if out.is_empty() {
        return Err(AuditError::Key(format!("no public key in {what}")));
    }
    Ok(out)
}

/// The keys stored next to a log: the history when there is one, else the key in force.
pub fn local_keys(dir: &Path) -> Result<Vec<VerifyingKey>, AuditError> {
    let hist = dir.join(HISTORY_FILE);
    let path = if hist.exists() { hist } else { dir.join(PUBLIC_KEY_FILE) };
    load_public_set(&path)
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

//! The `.cbpkg` container (`docs/config-safety.md`, "Backup package format"): a cleartext,
//! authenticated manifest and an AES-256-GCM encrypted JSON payload.
//!
//! ```text
//! offset   size  field
//! 0        6     magic "CBPKG\0"
//! 6        2     format version, u16 big-endian (this build writes and reads 1)
//! 8        4     manifest length M, u32 big-endian (at most 1 MiB)
//! 12       M     manifest: UTF-8 JSON (kdf, key_check, sealed_bytes, intent, time, summary)
//! 12+M     12    AES-GCM nonce
//! 24+M     rest  payload ciphertext followed by the 16-byte GCM tag
//! ```
//!
//! Bytes `0..24+M` are the GCM associated data, so a flipped byte anywhere (header, manifest,
//! nonce, ciphertext, tag) fails the tag check. The key is scrypt(passphrase, salt) or a
//! 32-byte key file; `key_check` (8 bytes of SHA-256 over a label and the key) tells a wrong
//! key apart from a damaged package. Nothing is returned before the tag verified.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The magic bytes.
pub const MAGIC: &[u8; 6] = b"CBPKG\0";
/// The format version this build writes and the newest it reads.
pub const FORMAT: u16 = 1;
const HEADER: usize = 12;
const NONCE: usize = 12;
const TAG: usize = 16;
const MAX_MANIFEST: usize = 1 << 20;
/// scrypt cost written by default: N = 2^15, r = 8, p = 1 (32 MiB).
pub const DEFAULT_LOG_N: u8 = 15;
const KEY_CHECK_LABEL: &[u8] = b"clawbutler cbpkg key check v1";

/// Why a package cannot be written or opened. Every variant means nothing was decrypted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PackageError {
    #[error("not a ClawButler backup package (.cbpkg): the file does not start with the CBPKG magic")]
    NotAPackage,
    #[error("the package is truncated: {what} needs {need} bytes, the file has {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    #[error(
        "the package is format {found}, newer than this ClawButler reads ({FORMAT}): upgrade ClawButler to open it"
    )]
    NewerFormat { found: u16 },
    #[error("the package manifest is unreadable: {0}")]
    Manifest(String),
    #[error("wrong passphrase or key file for this package (or its manifest was altered)")]
    WrongKey,
    #[error("the package is damaged or was tampered with: its authentication tag does not match")]
    Tampered,
    #[error("key: {0}")]
    Key(String),
    #[error("the package payload is unreadable: {0}")]
    Payload(String),
}

/// How the key is derived, as stored in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kdf {
    /// scrypt over the passphrase.
    Scrypt { salt: String, log_n: u8, r: u32, p: u32 },
    /// A 32-byte key file, used as is.
    KeyFile,
}

/// The key material a caller gives.
#[derive(Clone)]
pub enum Secret {
    Passphrase(String),
    Key([u8; 32]),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Passphrase(_) => "Secret::Passphrase(..)",
            Secret::Key(_) => "Secret::Key(..)",
        })
    }
}

/// A key file's bytes: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes (whitespace
/// around the text is ignored).
pub fn parse_key_file(bytes: &[u8]) -> Result<[u8; 32], PackageError> {
    if bytes.len() == 32 {
        let mut k = [0u8; 32];
        k.copy_from_slice(bytes);
        return Ok(k);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad_key_file())?.trim();
    let raw = hex::decode(text)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
        .ok_or_else(bad_key_file)?;
    <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| bad_key_file())
}

fn bad_key_file() -> PackageError {
    PackageError::Key("a key file holds exactly 32 bytes: raw, as 64 hex digits, or as base64".into())
}

/// The cleartext manifest. `extra` carries the intent, time and summary (not secret: they
/// name agents and sections, never values).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u16,
    pub kdf: Kdf,
    /// Hex of the first 8 bytes of SHA-256(label || key).
    pub key_check: String,
    /// Length of the ciphertext with its tag: tells a truncated file from a tampered one.
    pub sealed_bytes: u64,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

fn key_check(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(KEY_CHECK_LABEL);
    h.update(key);
    hex::encode(&h.finalize()[..8])
}

fn derive(secret: &Secret, kdf: &Kdf) -> Result<[u8; 32], PackageError> {
    match (secret, kdf) {
        (Secret::Key(k), Kdf::KeyFile) => Ok(*k),
        (Secret::Passphrase(p), Kdf::Scrypt { salt, log_n, r, p: par }) => {
            // The manifest is read before it is authenticated: bound the work it can ask for.
            if !(10..=20).contains(log_n) || *r == 0 || *r > 16 || *par == 0 || *par > 4 {
                return Err(PackageError::Manifest(format!(
                    "scrypt parameters out of range (log_n {log_n}, r {r}, p {par})"
                )));
            }
            let salt = base64::engine::general_purpose::STANDARD
                .decode(salt)
                .map_err(|e| PackageError::Manifest(format!("scrypt salt: {e}")))?;
            let params = scrypt::Params::new(*log_n, *r, *par, 32)
                .map_err(|e| PackageError::Manifest(format!("scrypt parameters: {e}")))?;
            let mut out = [0u8; 32];
            scrypt::scrypt(p.as_bytes(), &salt, &params, &mut out).map_err(|e| PackageError::Key(e.to_string()))?;
            Ok(out)
        }
        (Secret::Key(_), Kdf::Scrypt { .. }) => {
            Err(PackageError::Key("this package is locked with a passphrase, not a key file".into()))
        }
        (Secret::Passphrase(_), Kdf::KeyFile) => {
            Err(PackageError::Key("this package is locked with a key file, not a passphrase".into()))
        }
    }
}

fn random<const N: usize>() -> Result<[u8; N], PackageError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| PackageError::Key(format!("no randomness: {e}")))?;
    Ok(b)
}

/// Seal `payload` with `secret`; `extra` goes into the manifest. `log_n` is the scrypt cost
/// for a passphrase (tests use a small one).
pub fn seal(
    payload: &Value,
    extra: serde_json::Map<String, Value>,
    secret: &Secret,
    log_n: u8,
) -> Result<Vec<u8>, PackageError> {
    let kdf = match secret {
        Secret::Passphrase(p) if p.is_empty() => return Err(PackageError::Key("the passphrase is empty".into())),
        Secret::Passphrase(_) => {
            Kdf::Scrypt { salt: base64::engine::general_purpose::STANDARD.encode(random::<16>()?), log_n, r: 8, p: 1 }
        }
        Secret::Key(_) => Kdf::KeyFile,
    };
    let key = derive(secret, &kdf)?;
    let plain = serde_json::to_vec(payload).map_err(|e| PackageError::Payload(e.to_string()))?;
    let sealed_bytes = (plain.len() + TAG) as u64;
    let manifest = Manifest { format: FORMAT, kdf, key_check: key_check(&key), sealed_bytes, extra };
    let m = serde_json::to_vec(&manifest).map_err(|e| PackageError::Manifest(e.to_string()))?;
    if m.len() > MAX_MANIFEST {
        return Err(PackageError::Manifest("the manifest is larger than 1 MiB".into()));
    }
    let nonce = random::<NONCE>()?;
    let mut out = Vec::with_capacity(HEADER + m.len() + NONCE + plain.len() + TAG);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_be_bytes());
    out.extend_from_slice(&(m.len() as u32).to_be_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(&nonce);
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| PackageError::Key(e.to_string()))?;
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: &plain, aad: &out })
        .map_err(|_| PackageError::Payload("encryption failed".into()))?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// The manifest alone, and where the encrypted part starts (no key needed; not yet
/// authenticated: only [`open`] vouches for it).
pub fn read_manifest(bytes: &[u8]) -> Result<(Manifest, usize), PackageError> {
    let have = bytes.len();
    if have < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(if have < MAGIC.len() && MAGIC.starts_with(bytes) {
            PackageError::Truncated { what: "the header", need: HEADER, have }
        } else {
            PackageError::NotAPackage
        });
    }
    if have < HEADER {
        return Err(PackageError::Truncated { what: "the header", need: HEADER, have });
    }
    let format = u16::from_be_bytes([bytes[6], bytes[7]]);
    if format > FORMAT {
        return Err(PackageError::NewerFormat { found: format });
    }
    if format == 0 {
        return Err(PackageError::Manifest("format version 0 does not exist".into()));
    }
    let m = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if m > MAX_MANIFEST {
        return Err(PackageError::Manifest(format!("manifest length {m} is over the 1 MiB limit")));
    }
    let body = HEADER + m + NONCE + TAG;
    if have < body {
        return Err(PackageError::Truncated { what: "the manifest, nonce and tag", need: body, have });
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes[HEADER..HEADER + m]).map_err(|e| PackageError::Manifest(e.to_string()))?;
    if manifest.format != format {
        return Err(PackageError::Manifest(format!(
            "the manifest says format {} but the header says {format}",
            manifest.format
        )));
    }
    let at = HEADER + m;
    let sealed = have - at - NONCE;
    if (sealed as u64) < manifest.sealed_bytes {
        let need = at + NONCE + usize::try_from(manifest.sealed_bytes).unwrap_or(usize::MAX);
        return Err(PackageError::Truncated { what: "the encrypted payload", need, have });
    }
    Ok((manifest, at))
}

/// [`seal`] on tokio's blocking pool. A passphrase's scrypt holds a core for a noticeable
/// time (log_n 15: 32 MiB of memory-hard work); on a runtime worker it would stall every task
/// queued behind it, the gateway link's heartbeat answers among them, and the link would give up.
pub async fn seal_off_runtime(
    payload: Value,
    extra: serde_json::Map<String, Value>,
    secret: Secret,
    log_n: u8,
) -> Result<Vec<u8>, PackageError> {
    tokio::task::spawn_blocking(move || seal(&payload, extra, &secret, log_n)).await.map_err(stopped)?
}

/// [`open`] on tokio's blocking pool, for the reason given at [`seal_off_runtime`].
pub async fn open_off_runtime(bytes: Vec<u8>, secret: Secret) -> Result<(Manifest, Value), PackageError> {
    tokio::task::spawn_blocking(move || open(&bytes, &secret)).await.map_err(stopped)?
}

fn stopped(e: tokio::task::JoinError) -> PackageError {
    PackageError::Key(format!("the key derivation stopped before it finished: {e}"))
}

/// Open a package: its manifest and decrypted payload, or why not.
pub fn open(bytes: &[u8], secret: &Secret) -> Result<(Manifest, Value), PackageError> {
    let (manifest, at) = read_manifest(bytes)?;
    let key = derive(secret, &manifest.kdf)?;
    if key_check(&key) != manifest.key_check {
        return Err(PackageError::WrongKey);
    }
    let nonce = &bytes[at..at + NONCE];
    let aad = &bytes[..at + NONCE];
    let cipher = Aes256Gcm::new_from_slice(&key).map_err(|e| PackageError::Key(e.to_string()))?;
    let plain = cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: &bytes[at + NONCE..], aad })
        .map_err(|_| PackageError::Tampered)?;
    let payload = serde_json::from_slice(&plain).map_err(|e| PackageError::Payload(e.to_string()))?;
    Ok((manifest, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extra() -> serde_json::Map<String, Value> {
        json!({"intent": "backup", "summary": {"agents": ["main"]}}).as_object().cloned().unwrap_or_default()
    }

    fn pass() -> Secret {
        Secret::Passphrase("correct horse".into())
    }

    fn sealed() -> (Value, Vec<u8>) {
        let payload = json!({"config": {"models": {"providers": {"x": {"apiKey": "sk-planted-123"}}}}});
        let bytes = seal(&payload, extra(), &pass(), 10).unwrap();
        (payload, bytes)
    }

    #[test]
    fn round_trip_with_a_passphrase_and_with_a_key_file() {
        let (payload, bytes) = sealed();
        assert_eq!(&bytes[..6], MAGIC);
        assert!(!String::from_utf8_lossy(&bytes).contains("sk-planted-123"), "the payload is encrypted");
        let (m, back) = open(&bytes, &pass()).unwrap();
        assert_eq!((back, m.extra["intent"].clone()), (payload.clone(), json!("backup")));
        let key = parse_key_file(hex::encode([7u8; 32]).as_bytes()).unwrap();
        let bytes = seal(&payload, extra(), &Secret::Key(key), 10).unwrap();
        assert_eq!(open(&bytes, &Secret::Key(key)).unwrap().1, payload);
        assert!(matches!(open(&bytes, &pass()), Err(PackageError::Key(_))), "a passphrase on a key-file package");
    }

    #[test]
    fn a_wrong_passphrase_is_named_as_such() {
        let (_, bytes) = sealed();
        assert_eq!(open(&bytes, &Secret::Passphrase("wrong".into())).unwrap_err(), PackageError::WrongKey);
        let other = parse_key_file(&[1u8; 32]).unwrap();
        let keyed = seal(&json!({}), extra(), &Secret::Key(parse_key_file(&[2u8; 32]).unwrap()), 10).unwrap();
        assert_eq!(open(&keyed, &Secret::Key(other)).unwrap_err(), PackageError::WrongKey);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let (_, bytes) = sealed();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            let e = open(&bad, &pass());
            assert!(e.is_err(), "byte {i} flipped was accepted");
        }
        // A flip in the ciphertext or tag is a tamper, not a key problem.
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x80;
        assert_eq!(open(&bad, &pass()).unwrap_err(), PackageError::Tampered);
        let (_, at) = read_manifest(&bytes).unwrap();
        let mut bad = bytes.clone();
        bad[at + NONCE + 1] ^= 0x10;
        assert_eq!(open(&bad, &pass()).unwrap_err(), PackageError::Tampered);
    }

    #[test]
    fn every_truncation_is_refused() {
        let (_, bytes) = sealed();
        for n in 0..bytes.len() {
            assert!(open(&bytes[..n], &pass()).is_err(), "a package cut at {n} bytes was accepted");
        }
        assert!(matches!(open(&bytes[..8], &pass()), Err(PackageError::Truncated { .. })));
        assert!(matches!(open(&bytes[..40], &pass()), Err(PackageError::Truncated { .. })));
        assert!(matches!(open(&bytes[..bytes.len() - 1], &pass()), Err(PackageError::Truncated { .. })));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(open(&longer, &pass()).unwrap_err(), PackageError::Tampered, "a trailing byte");
        assert_eq!(open(b"PK\x03\x04 a zip", &pass()).unwrap_err(), PackageError::NotAPackage);
    }

    #[test]
    fn a_newer_format_is_refused_before_any_key_work() {
        let (_, mut bytes) = sealed();
        bytes[6..8].copy_from_slice(&2u16.to_be_bytes());
        let e = open(&bytes, &Secret::Passphrase("wrong".into())).unwrap_err();
        assert_eq!(e, PackageError::NewerFormat { found: 2 });
        assert!(e.to_string().contains("newer than this ClawButler reads (1)"), "{e}");
    }

    #[test]
    fn key_files_parse_raw_hex_and_base64() {
        let k = [9u8; 32];
        assert_eq!(parse_key_file(&k).unwrap(), k);
        assert_eq!(parse_key_file(format!("{}\n", hex::encode(k)).as_bytes()).unwrap(), k);
        let b64 = base64::engine::general_purpose::STANDARD.encode(k);
        assert_eq!(parse_key_file(b64.as_bytes()).unwrap(), k);
        assert!(matches!(parse_key_file(b"too short"), Err(PackageError::Key(_))));
    }
}

//! Bundles published to a fleet (docs/fleet.md, "Policy rollout"). Whoever publishes
//! (`clawbutler policy publish DIR`) signs the bundle with the fleet's Ed25519 key; every
//! sidecar verifies it against the public keys of its `[fleet] policy_keys` before the bundle
//! reaches the engine, then runs the bundle's own tests and swaps only if they all pass.
//!
//! The signature covers the digest: SHA-256 over every file (path and contents, each
//! length-prefixed, sorted by path, tests included, so the tests a sidecar runs are the ones
//! that were signed) and the publication time. The time is what lets a sidecar refuse an
//! older signed bundle replayed into the database: it only moves forward.

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::{self, BundleFile};
use crate::engine::{BundleSource, PolicyError};

/// Most files a published bundle may hold.
pub const MAX_FILES: usize = 1_000;
/// Most bytes (paths and contents) a published bundle may hold (the JSON of one fits the
/// control API's 2 MiB body limit).
pub const MAX_BYTES: usize = 1 << 20;

/// What the signature is made over: this prefix, then the digest in hex.
const CONTEXT: &str = "clawbutler fleet policy bundle v1\n";

/// One file of a published bundle, relative to the bundle root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub contents: String,
}

/// A bundle as published: its files, when, and the fleet key's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBundle {
    pub files: Vec<FileEntry>,
    /// RFC 3339, the publisher's clock; signed.
    pub published_at: String,
    /// Ed25519 signature in hex (128 digits).
    pub signature: String,
}

impl SignedBundle {
    /// Read every `.rego` and `data.json` file under `dir` (tests included) and sign.
    pub fn from_dir(dir: &Path, key: &SigningKey, at: DateTime<Utc>) -> Result<SignedBundle, PolicyError> {
        let files = bundle::read_files(&BundleSource::Dir(dir.to_path_buf()))?;
        let files = files.into_iter().map(|f| FileEntry { path: f.path, contents: f.contents }).collect();
        let b = SignedBundle::sign(files, at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), key);
        b.validate()?;
        Ok(b)
    }

    /// Sign `files` (sorted by path here) published at `published_at`.
    pub fn sign(mut files: Vec<FileEntry>, published_at: String, key: &SigningKey) -> SignedBundle {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut b = SignedBundle { files, published_at, signature: String::new() };
        b.signature = hex::encode(key.sign(b.message().as_bytes()).to_bytes());
        b
    }

    /// SHA-256 (hex) of the files and the publication time: the bundle's identity.
    pub fn digest(&self) -> String {
        let mut files: Vec<&FileEntry> = self.files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut h = Sha256::new();
        for f in files {
            for part in [f.path.as_bytes(), f.contents.as_bytes()] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part);
            }
        }
        h.update((self.published_at.len() as u64).to_le_bytes());
        h.update(self.published_at.as_bytes());
        hex::encode(h.finalize())
    }

    fn message(&self) -> String {
        format!("{CONTEXT}{}", self.digest())
    }

    /// Paths, sizes and the publication time are sane (before anything else looks at it).
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |m: String| Err(PolicyError::Load(m));
        if self.files.len() > MAX_FILES {
            return bad(format!("the bundle has {} files; at most {MAX_FILES}", self.files.len()));
        }
        let bytes: usize = self.files.iter().map(|f| f.path.len() + f.contents.len()).sum();
        if bytes > MAX_BYTES {
            return bad(format!("the bundle is {bytes} bytes; at most {MAX_BYTES}"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for f in &self.files {
            let p = &f.path;
            let name = p.rsplit('/').next().unwrap_or_default();
            let clean = !p.starts_with('/')
                && !p.contains('\\')
                && p.split('/').all(|s| !s.is_empty() && s != "." && s != ".." && !s.starts_with('.'))
                && (name.ends_with(".rego") || name == "data.json");
            if !clean {
                return bad(format!("file path {p:?}: want a relative path to a .rego or data.json file"));
            }
            if !seen.insert(p.as_str()) {
                return bad(format!("file path {p:?} appears twice"));
            }
        }
        self.published()?;
        Ok(())
    }

    /// The signed publication time.
    pub fn published(&self) -> Result<DateTime<Utc>, PolicyError> {
        DateTime::parse_from_rfc3339(&self.published_at)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| PolicyError::Load(format!("published_at {:?}: {e}", self.published_at)))
    }

    /// Check the signature against `keys` (any one may have signed). Fails closed: no key
    /// configured, a malformed signature and a wrong one are all refusals.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<(), PolicyError> {
        let refuse = |m: &str| Err(PolicyError::Signature(m.to_string()));
        if keys.is_empty() {
            return refuse(
                "this sidecar has no fleet policy key ([fleet] policy_keys), so it applies no published bundle",
            );
        }
        let mut raw = [0u8; 64];
        if hex::decode_to_slice(&self.signature, &mut raw).is_err() {
            return refuse("the signature is not 128 hex digits");
        }
        let sig = Signature::from_bytes(&raw);
        let msg = self.message();
        if keys.iter().any(|k| k.verify(msg.as_bytes(), &sig).is_ok()) {
            Ok(())
        } else {
            refuse("the signature does not match the bundle under any fleet policy key: not signed with the fleet's key, or altered since")
        }
    }

    /// The engine's in-memory form, labelled for status and audit.
    pub fn into_published(self, label: String) -> Published {
        let files = self.files.into_iter().map(|f| BundleFile { path: f.path, contents: f.contents }).collect();
        Published { label, files }
    }
}

/// A verified bundle ready for [`crate::PolicyEngine::apply_published`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    label: String,
    files: Vec<BundleFile>,
}

impl Published {
    /// `fleet bundle #3 sha256:0a1b2c3d4e5f`.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub(crate) fn files(&self) -> &[BundleFile] {
        &self.files
    }
}

/// A public key given as 64 hex digits (what `clawbutler fleet keygen` prints).
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, PolicyError> {
    let mut raw = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut raw)
        .map_err(|_| PolicyError::Signature(format!("policy key {hex_key:?}: want 64 hex digits")))?;
    VerifyingKey::from_bytes(&raw).map_err(|e| PolicyError::Signature(format!("policy key {hex_key:?}: {e}")))
}

/// Run the bundle's own tests: every one must pass, and there must be at least one (a
/// published bundle proves itself before any sidecar serves it).
pub(crate) fn check_tests(source: &BundleSource) -> Result<(), PolicyError> {
    let report = crate::testing::run_tests(source, &serde_json::Value::Null)?;
    if report.results.is_empty() {
        return Err(PolicyError::Tests(
            "the bundle has no tests (rules named test_* in *_test.rego files); a published bundle must carry them"
                .into(),
        ));
    }
    if report.failed() > 0 {
        let failed: Vec<String> = report
            .results
            .iter()
            .filter(|r| !r.passed)
            .take(5)
            .map(|r| format!("{}: data.{}.{}", r.file, r.package, r.name))
            .collect();
        return Err(PolicyError::Tests(format!(
            "{} of {} tests failed: {}",
            report.failed(),
            report.results.len(),
            failed.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    fn bundle(k: &SigningKey) -> SignedBundle {
        let files = vec![
            FileEntry { path: "b.rego".into(), contents: "package clawbutler\n".into() },
            FileEntry { path: "a/data.json".into(), contents: "{}".into() },
        ];
        SignedBundle::sign(files, "2026-12-03T14:00:00.000Z".into(), k)
    }

    #[test]
    fn a_signature_verifies_only_under_its_key_and_only_unaltered() {
        let b = bundle(&key(1));
        assert_eq!(b.files[0].path, "a/data.json", "sorted");
        b.verify(&[key(2).verifying_key(), key(1).verifying_key()]).unwrap();
        let e = b.verify(&[key(2).verifying_key()]).unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
        assert!(b.verify(&[]).unwrap_err().to_string().contains("policy_keys"));
        let mut altered = b.clone();
        altered.files[1].contents.push_str("deny := true\n");
        assert!(altered.verify(&[key(1).verifying_key()]).is_err());
        let mut later = b.clone();
        later.published_at = "2026-12-04T14:00:00.000Z".into();
        assert!(later.verify(&[key(1).verifying_key()]).is_err(), "the time is signed too");
        let mut garbled = b;
        garbled.signature = "zz".into();
        assert!(garbled.verify(&[key(1).verifying_key()]).unwrap_err().to_string().contains("hex"));
    }

    #[test]
    fn paths_must_be_relative_bundle_files() {
        for p in ["../x.rego", "/etc/x.rego", "a/./b.rego", ".hidden.rego", "x.txt", "a//b.rego"] {
            let mut b = bundle(&key(1));
            b.files[0].path = p.into();
            assert!(b.validate().is_err(), "{p}");
        }
        let mut b = bundle(&key(1));
        b.files[0].path = "b.rego".into();
        assert!(b.validate().unwrap_err().to_string().contains("twice"));
        assert!(bundle(&key(1)).validate().is_ok());
        assert_eq!(parse_public_key(&hex::encode(key(1).verifying_key().as_bytes())).unwrap(), key(1).verifying_key());
        assert!(parse_public_key("abc").is_err());
    }
}

//! Signed checkpoints: every N records / T seconds / clean close / segment rotation, the writer
//! appends one line to `checkpoints.jsonl` committing to the records since the previous one.
//!
//! The line is the canonical JSON (sorted keys, compact) of the fields below with
//! `,"sig":"<128 hex>"` inserted before the final `}`; `sig` is Ed25519 over the canonical bytes
//! without `sig`. `prev_checkpoint` is sha256 of the previous checkpoint's full line (without
//! newline), chaining checkpoints so none can be dropped or reordered unnoticed. A rotation
//! checkpoint (`next_key`) hands signing over to a new key (see `keys`, `docs/audit.md`).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Length of the `,"sig":"<128 hex>"}` suffix of a checkpoint line.
const SIG_SUFFIX_LEN: usize = 8 + 128 + 2;

/// One signed checkpoint. Fields are in alphabetical order: serde output is canonical.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// 1-based checkpoint number.
    pub checkpoint: u64,
    /// First seq covered (= previous checkpoint's `last_seq` + 1).
    pub first_seq: u64,
    /// `hash` of the record `last_seq` (the chain head), or the previous head if the range is empty.
    pub head_hash: String,
    /// `keys::key_id` of the signing key.
    pub key_id: String,
    /// Last seq covered; `last_seq < first_seq` means no new records (a pruning-only checkpoint).
    pub last_seq: u64,
    /// RFC 6962 root over the hashes of records `first_seq..=last_seq` (see `merkle`).
    pub merkle_root: String,
    /// A key rotation: the successor's raw Ed25519 public key (64 hex). This checkpoint is
    /// signed with the retiring key, vouching for the new one; every later checkpoint must be
    /// signed with the new key, and one signed with the retired key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key: Option<String>,
    /// sha256 of the previous checkpoint line, `GENESIS_HASH` for the first.
    pub prev_checkpoint: String,
    /// `hash` of record `pruned_through` (what the first kept record's `prev_hash` must be).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_head_hash: Option<String>,
    /// Segment files removed under retention by this checkpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pruned_segments: Vec<String>,
    /// Records up to and including this seq may be absent (removed by retention). Carried
    /// forward by every later checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_through: Option<u64>,
    /// When it was made (RFC 3339 UTC, ms).
    pub ts: String,
    /// Hex Ed25519 signature over the canonical bytes without `sig`.
    #[serde(default, skip_serializing)]
    pub sig: String,
}

impl Checkpoint {
    /// Sign and return the stored line (with newline); sets `sig`.
    pub fn sign(&mut self, key: &SigningKey) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = serde_json::to_vec(self)?;
        self.sig = hex::encode(key.sign(&line).to_bytes());
        line.pop();
        line.extend_from_slice(b",\"sig\":\"");
        line.extend_from_slice(self.sig.as_bytes());
        line.extend_from_slice(b"\"}\n");
        Ok(line)
    }

    /// Check `sig` against `key` over this checkpoint's canonical bytes.
    pub fn signature_ok(&self, key: &VerifyingKey) -> bool {
        let Ok(body) = serde_json::to_vec(self) else { return false };
        let mut raw = [0u8; 64];
        if hex::decode_to_slice(&self.sig, &mut raw).is_err() {
            return false;
        }
        key.verify(&body, &Signature::from_bytes(&raw)).is_ok()
    }

    /// Whether a stored line (without newline) is byte-identical to what `sign` would write
    /// for the parsed checkpoint (rejects any edit a lenient JSON parser would forgive).
    pub fn line_is_canonical(&self, line: &[u8]) -> bool {
        let Ok(body) = serde_json::to_vec(self) else { return false };
        line.len() == body.len() - 1 + SIG_SUFFIX_LEN && line.starts_with(&body[..body.len() - 1])
    }
}

/// sha256 of a checkpoint line (without newline), hex: the next checkpoint's `prev_checkpoint`.
pub fn line_hash(line: &[u8]) -> String {
    hex::encode(Sha256::digest(line))
}

/// Whether a line looks like a checkpoint (canonical checkpoint lines start with this key,
/// which no record has).
pub fn is_checkpoint_line(line: &[u8]) -> bool {
    line.starts_with(b"{\"checkpoint\":") && serde_json::from_slice::<Checkpoint>(line).is_ok()
}

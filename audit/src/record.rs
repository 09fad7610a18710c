//! What is stored: one `AuditRecord` per line, its canonical form and its chain hash.
//!
//! Canonical form (the bytes that are hashed): the record as a JSON object without the `hash`
//! member, object keys sorted by UTF-8 bytes at every depth, absent fields omitted (never
//! `null`), no whitespace, serde_json string escaping and number formatting. The stored line is
//! exactly that canonical text with `,"hash":"<64 hex>"` inserted before the final `}`, so the
//! canonical bytes can be recovered either by re-serialising or by cutting the fixed-size suffix.
//!
//! `hash = sha256(raw 32 bytes of prev_hash || canonical bytes)`; the first record uses 32 zero
//! bytes as `prev_hash`.

use decision::{Action, Risk};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::{RecordKind, Usage};

/// `prev_hash` of the first record ever written.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Length of the `,"hash":"<64 hex>"}` suffix every stored line ends with.
pub(crate) const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// One stored, masked, hash-chained audit record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Gapless, starts at 1.
    pub seq: u64,
    /// RFC 3339 UTC with milliseconds, e.g. `2025-01-31T12:00:00.123Z`; never decreases.
    pub ts: String,
    pub kind: Option<RecordKind>,
    pub decision_id: Option<String>,
    pub bundle_revision: Option<String>,
    pub trace_id: Option<String>,
    pub agent: Option<String>,
    pub session: Option<String>,
    pub action: Option<Action>,
    pub rule: Option<String>,
    pub risk: Option<Risk>,
    pub reason: Option<String>,
    /// Model / tool / command and its details, masked.
    #[serde(default)]
    pub subject: serde_json::Value,
    pub usage: Option<Usage>,
    pub cost_usd: Option<f64>,
    /// What the call added to each budget that applies to it (absent: nothing charged).
    /// Absent in records written before the field existed, whose canonical form is unchanged.
    #[serde(default)]
    pub charged_usd: Option<f64>,
    pub latency_ms: Option<f64>,
    pub actor: Option<String>,
    pub outcome: Option<String>,
    /// Kind-specific extras, masked.
    #[serde(default)]
    pub details: serde_json::Value,
    /// Hex sha256 of the previous record (`GENESIS_HASH` for seq 1).
    pub prev_hash: String,
    /// Hex sha256(prev_hash bytes || canonical bytes).
    pub hash: String,
}

/// The record without `hash`, fields in alphabetical order: serialising it with serde_json
/// yields the canonical bytes directly (nested objects are key-sorted by `mask::canonicalize`).
#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    action: &'a Option<Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle_revision: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    charged_usd: &'a Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: &'a Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision_id: &'a Option<String>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    details: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: &'a Option<RecordKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ms: &'a Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: &'a Option<String>,
    prev_hash: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: &'a Option<Risk>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: &'a Option<String>,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: &'a Option<String>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    subject: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_id: &'a Option<String>,
    ts: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: &'a Option<Usage>,
}

impl AuditRecord {
    /// Canonical bytes of this record (everything but `hash`). Nested `subject`/`details` must
    /// already be key-sorted, which the writer guarantees.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(1024);
        self.write_canonical(&mut out)?;
        Ok(out)
    }

    /// Append the canonical bytes to `out`.
    fn write_canonical(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let body = Body {
            action: &self.action,
            actor: &self.actor,
            agent: &self.agent,
            bundle_revision: &self.bundle_revision,
            charged_usd: &self.charged_usd,
            cost_usd: &self.cost_usd,
            decision_id: &self.decision_id,
            details: &self.details,
            kind: &self.kind,
            latency_ms: &self.latency_ms,
            outcome: &self.outcome,
            prev_hash: &self.prev_hash,
            reason: &self.reason,
            risk: &self.risk,
            rule: &self.rule,
            seq: self.seq,
            session: &self.session,
            subject: &self.subject,
            trace_id: &self.trace_id,
            ts: &self.ts,
            usage: &self.usage,
        };
        serde_json::to_writer(out, &body)
    }

    /// Set `hash` from `prev_hash` and the canonical bytes, and return the stored line
    /// (with trailing newline).
    #[cfg(test)]
    pub(crate) fn seal(&mut self) -> Result<Vec<u8>, serde_json::Error> {
        let mut line = Vec::new();
        self.seal_into(&mut line, None)?;
        Ok(line)
    }

    /// Set `hash` and append the stored line (with trailing newline) to `out`, which is
    /// usually the whole group-commit batch; returns the raw hash. `prev` is `prev_hash`'s raw
    /// bytes when the caller has them (the writer, from the record it sealed just before),
    /// which spares decoding the hex.
    pub(crate) fn seal_into(
        &mut self,
        out: &mut Vec<u8>,
        prev: Option<&[u8; 32]>,
    ) -> Result<[u8; 32], serde_json::Error> {
        debug_assert!(prev.is_none_or(|p| hex::encode(p) == self.prev_hash));
        let start = out.len();
        self.write_canonical(out)?;
        let raw = match prev {
            Some(prev) => chain_hash_after(prev, &out[start..]),
            None => chain_hash(&self.prev_hash, &out[start..]),
        };
        // Into a fixed buffer: `hex::encode` collects a `String` char by char, which cost ~2,000
        // instructions per record (a tenth of sealing one without the SHA-256).
        let mut text = [0u8; 64];
        hex::encode_to_slice(raw, &mut text).map_err(serde::ser::Error::custom)?;
        self.hash = std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?.to_owned();
        out.pop(); // the closing '}' of the canonical object
        out.extend_from_slice(b",\"hash\":\"");
        out.extend_from_slice(self.hash.as_bytes());
        out.extend_from_slice(b"\"}\n");
        Ok(raw)
    }
}

/// `sha256(prev || canonical)` where `prev` is the hex `prev_hash` decoded to 32 bytes. A
/// malformed `prev_hash` hashes as its raw text, which can never match a real chain.
pub fn chain_hash(prev_hash: &str, canonical: &[u8]) -> [u8; 32] {
    let mut prev = [0u8; 32];
    match hex::decode_to_slice(prev_hash, &mut prev) {
        Ok(()) => chain_hash_after(&prev, canonical),
        Err(_) => {
            let mut h = Sha256::new();
            h.update(prev_hash.as_bytes());
            h.update(canonical);
            h.finalize().into()
        }
    }
}

/// `sha256(prev || canonical)` with `prev` already decoded.
fn chain_hash_after(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

/// Recompute a stored line's hash (line without its newline). Uses the fixed-suffix fast path
/// when the line has the writer's layout, else re-canonicalises via `serde_json::Value`.
pub(crate) fn recompute_line_hash(line: &[u8], prev_hash: &str) -> Option<[u8; 32]> {
    if line.len() > HASH_SUFFIX_LEN && line.ends_with(b"\"}") {
        let cut = line.len() - HASH_SUFFIX_LEN;
        if line[cut..].starts_with(b",\"hash\":\"") {
            let mut prev = [0u8; 32];
            let mut h = Sha256::new();
            match hex::decode_to_slice(prev_hash, &mut prev) {
                Ok(()) => h.update(prev),
                Err(_) => h.update(prev_hash.as_bytes()),
            }
            h.update(&line[..cut]);
            h.update(b"}");
            return Some(h.finalize().into());
        }
    }
    let mut v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.as_object_mut()?.remove("hash");
    crate::mask::canonicalize(&mut v);
    let bytes = serde_json::to_vec(&v).ok()?;
    Some(chain_hash(prev_hash, &bytes))
}

/// The writer-layout fast path of `recompute_line_hash`, with `prev_hash` already decoded.
/// `None` if the line does not end with the fixed `,"hash":"…"}` suffix.
pub(crate) fn line_hash_fast(line: &[u8], prev: &[u8; 32]) -> Option<[u8; 32]> {
    if line.len() <= HASH_SUFFIX_LEN || !line.ends_with(b"\"}") {
        return None;
    }
    let cut = line.len() - HASH_SUFFIX_LEN;
    if !line[cut..].starts_with(b",\"hash\":\"") {
        return None;
    }
    let mut h = Sha256::new();
    h.update(prev);
    h.update(&line[..cut]);
    h.update(b"}");
    Some(h.finalize().into())
}

/// The chain fields of a stored line, parsed without building the whole record.
#[derive(Deserialize)]
pub(crate) struct LineMeta<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub prev_hash: &'a str,
    #[serde(borrow)]
    pub hash: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_serialisation_equals_sorted_canonical_form() {
        let mut r = AuditRecord {
            seq: 7,
            ts: "2025-01-01T00:00:00.000Z".into(),
            kind: Some(RecordKind::ModelCall),
            decision_id: Some("d".into()),
            bundle_revision: Some("b".into()),
            trace_id: Some("t".into()),
            agent: Some("a".into()),
            session: Some("s".into()),
            action: Some(Action::Deny),
            rule: Some("r".into()),
            risk: Some(Risk::High),
            reason: Some("why \"quoted\" é".into()),
            subject: serde_json::json!({"a": 1, "b": [1.5, "x"]}),
            usage: Some(Usage {
                input_tokens: 1,
                output_tokens: 2,
                cached_input_tokens: 3,
                cache_write_tokens: 4,
                server_tool_calls: 2,
            }),
            cost_usd: Some(0.0012),
            charged_usd: Some(0.0015),
            latency_ms: Some(12.5),
            actor: Some("policy".into()),
            outcome: Some("denied".into()),
            details: serde_json::json!({"k": null}),
            prev_hash: GENESIS_HASH.into(),
            hash: String::new(),
        };
        let line = r.seal().unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        v.as_object_mut().unwrap().remove("hash");
        crate::mask::canonicalize(&mut v);
        assert_eq!(serde_json::to_vec(&v).unwrap(), r.canonical_bytes().unwrap());
        let trimmed = &line[..line.len() - 1];
        assert_eq!(hex::encode(recompute_line_hash(trimmed, GENESIS_HASH).unwrap()), r.hash);
        let back: AuditRecord = serde_json::from_slice(trimmed).unwrap();
        assert_eq!(back, r);
    }
}

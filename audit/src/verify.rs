//! Offline verification of a log directory or an exported JSON-lines file: chain continuity,
//! record hashes, checkpoint chain, Ed25519 signatures, Merkle roots, and truncation below a
//! signed checkpoint. Stops at the first break and names the first bad seq.

use std::fmt;
use std::fs;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, Checkpoint};
use crate::keychain::KeyChain;
use crate::record::{line_hash_fast, recompute_line_hash, LineMeta, GENESIS_HASH};
use crate::segment::{self, CHECKPOINT_FILE};
use crate::{keys, merkle};

/// Result of a verification; `ok` is false as soon as anything is wrong.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// Records checked.
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Checkpoints whose chain and signature were checked.
    pub checkpoints: u64,
    /// Highest seq covered by a valid signed checkpoint.
    pub signed_through: Option<u64>,
    /// Records before this seq were removed under retention (recorded by a checkpoint).
    pub pruned_through: Option<u64>,
    /// The first record that is missing, altered, duplicated or out of place.
    pub first_bad_seq: Option<u64>,
    /// The first checkpoint that is altered, missing or badly signed.
    pub bad_checkpoint: Option<u64>,
    /// Key id of the first key that signed (the one given, or the oldest stored).
    pub key_id: Option<String>,
    /// Every key that signed, oldest first (more than one after a key rotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_used: Vec<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => format!("seq {a}..={b}"),
            _ => "no records".to_string(),
        };
        if self.ok {
            writeln!(f, "audit log OK: {} records ({range}), {} signed checkpoints", self.records, self.checkpoints)?;
        } else {
            let at = self.first_bad_seq.map(|s| format!(" at seq {s}")).unwrap_or_default();
            let cp = self.bad_checkpoint.map(|c| format!(" (checkpoint {c})")).unwrap_or_default();
            writeln!(f, "audit log FAILED{at}{cp}: {} records checked ({range})", self.records)?;
        }
        if let Some(s) = self.signed_through {
            let tail = self.last_seq.map_or(0, |l| l.saturating_sub(s));
            writeln!(f, "  signed through seq {s}; {tail} later records are chained but not yet signed")?;
        }
        if let Some(p) = self.pruned_through {
            writeln!(f, "  records up to seq {p} removed under retention (recorded in a signed checkpoint)")?;
        }
        if self.keys_used.len() > 1 {
            writeln!(f, "  key ids {} (rotated)", self.keys_used.join(" -> "))?;
        } else if let Some(k) = &self.key_id {
            writeln!(f, "  key id {k}")?;
        }
        for e in &self.errors {
            writeln!(f, "  error: {e}")?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

/// A parsed record line, reduced to what the chain check needs (raw bytes, no allocation).
struct Meta {
    seq: u64,
    /// `prev_hash` decoded; `None` if it is not 64 lowercase hex digits (so it matches nothing).
    prev: Option<[u8; 32]>,
    /// `hash` decoded (zeros if malformed, in which case `hash_ok` is false).
    hash: [u8; 32],
    hash_ok: bool,
}

enum Item {
    Rec(Meta),
    Bad(String),
    Checkpoint,
}

/// Decode 64 lowercase hex digits (the only form the writer produces).
fn raw_hash(hex_text: &str) -> Option<[u8; 32]> {
    let lower = hex_text.len() == 64 && hex_text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut raw = [0u8; 32];
    (lower && hex::decode_to_slice(hex_text, &mut raw).is_ok()).then_some(raw)
}

fn parse_line(line: &[u8]) -> Item {
    if line.starts_with(b"{\"checkpoint\":") {
        return Item::Checkpoint;
    }
    match serde_json::from_slice::<LineMeta>(line) {
        Ok(m) => {
            let prev = raw_hash(m.prev_hash);
            let stored = raw_hash(m.hash);
            let computed = match prev {
                Some(p) => line_hash_fast(line, &p).or_else(|| recompute_line_hash(line, m.prev_hash)),
                None => recompute_line_hash(line, m.prev_hash),
            };
            let hash_ok = stored.is_some() && computed.is_some() && stored == computed;
            Item::Rec(Meta { seq: m.seq, prev, hash: stored.unwrap_or_default(), hash_ok })
        }
        Err(e) => Item::Bad(format!("unparseable line: {e}")),
    }
}

/// Parse and hash every line of `buf`; the expensive part, split over two threads.
fn parse_lines(lines: &[(usize, &[u8])]) -> Vec<Item> {
    let work = |ls: &[(usize, &[u8])]| -> Vec<Item> { ls.iter().map(|(_, line)| parse_line(line)).collect() };
    if lines.len() < 2048 {
        return work(lines);
    }
    let (a, b) = lines.split_at(lines.len() / 2);
    std::thread::scope(|s| {
        let hb = s.spawn(|| work(b));
        let mut out = work(a);
        out.extend(hb.join().unwrap_or_default());
        out
    })
}

/// Streaming verifier state.
struct Verifier {
    rep: VerifyReport,
    cps: Vec<Checkpoint>,
    next_cp: usize,
    prev: Option<(u64, [u8; 32])>,
    leaves: Vec<[u8; 32]>,
    leaves_from: u64,
    /// Exports may start mid-log: an unanchored first record is a warning, not an error.
    trust_start: bool,
}

impl Verifier {
    fn fail(&mut self, seq: Option<u64>, msg: String) {
        self.rep.ok = false;
        if self.rep.first_bad_seq.is_none() {
            self.rep.first_bad_seq = seq;
        }
        self.rep.errors.push(msg);
    }

    fn failed(&self) -> bool {
        !self.rep.errors.is_empty()
    }

    /// Returns false to stop.
    fn record(&mut self, m: Meta) -> bool {
        let expected = match &self.prev {
            Some((s, _)) => s + 1,
            None => m.seq,
        };
        if self.prev.is_none() {
            self.start(&m);
            if self.failed() {
                return false;
            }
        }
        if m.seq != expected {
            let what = if m.seq < expected { "duplicate or out of order" } else { "missing record(s)" };
            self.fail(Some(expected), format!("expected seq {expected}, found seq {m} ({what})", m = m.seq));
            return false;
        }
        if let Some((_, p)) = &self.prev {
            if m.prev.as_ref() != Some(p) {
                self.fail(Some(m.seq), format!("seq {}: prev_hash does not match the previous record's hash", m.seq));
                return false;
            }
        }
        if !m.hash_ok {
            self.fail(Some(m.seq), format!("seq {}: content does not match its hash", m.seq));
            return false;
        }
        self.rep.records += 1;
        self.rep.first_seq.get_or_insert(m.seq);
        self.rep.last_seq = Some(m.seq);
        self.leaves.push(m.hash);
        self.prev = Some((m.seq, m.hash));
        self.close_checkpoints(m.seq);
        !self.failed()
    }

    /// Anchor the first record: genesis, a retention checkpoint, or (for exports) trust.
    fn start(&mut self, m: &Meta) {
        self.leaves_from = m.seq;
        // Skip checkpoints entirely before the first record (pruned ranges).
        while self.next_cp < self.cps.len() && self.cps[self.next_cp].last_seq < m.seq {
            self.next_cp += 1;
        }
        if m.seq == 1 {
            if m.prev != Some([0u8; 32]) {
                self.fail(Some(1), "seq 1 does not start from the genesis hash".into());
            }
            return;
        }
        let anchor = self.cps.iter().rev().find(|c| c.pruned_through == Some(m.seq - 1));
        match anchor {
            Some(c) if c.pruned_head_hash.as_deref().and_then(raw_hash).is_some_and(|h| m.prev == Some(h)) => {
                self.rep.pruned_through = Some(m.seq - 1);
            }
            Some(_) => {
                self.fail(Some(m.seq), format!("seq {}: prev_hash does not match the pruning checkpoint", m.seq))
            }
            None if self.cps.is_empty() || self.trust_start => {
                self.rep.warnings.push(format!("log starts at seq {} with no checkpoint to anchor it", m.seq))
            }
            None => self.fail(
                Some(1),
                format!("records before seq {} are missing and no checkpoint records their removal", m.seq),
            ),
        }
    }

    /// Check every checkpoint that ends at `seq`.
    fn close_checkpoints(&mut self, seq: u64) {
        while let Some(c) = self.cps.get(self.next_cp) {
            if c.last_seq > seq {
                break;
            }
            if c.last_seq >= c.first_seq {
                let head = self.prev.as_ref().map(|(_, h)| *h);
                if head.is_none() || head != raw_hash(&c.head_hash) {
                    self.rep.bad_checkpoint = Some(c.checkpoint);
                    self.fail(Some(seq), format!("checkpoint {} head hash differs from record {seq}", c.checkpoint));
                    return;
                }
                if c.first_seq >= self.leaves_from {
                    let skip = (c.first_seq - self.leaves_from) as usize;
                    let root = self.leaves.get(skip..).map(merkle::root).map(hex::encode);
                    if root.as_deref() != Some(c.merkle_root.as_str()) {
                        self.rep.bad_checkpoint = Some(c.checkpoint);
                        self.fail(
                            Some(c.first_seq),
                            format!(
                                "checkpoint {}: Merkle root of seq {}..={} differs",
                                c.checkpoint, c.first_seq, c.last_seq
                            ),
                        );
                        return;
                    }
                }
            }
            self.rep.signed_through = Some(c.last_seq);
            self.leaves.clear();
            self.leaves_from = c.last_seq + 1;
            self.next_cp += 1;
        }
    }

    fn finish(&mut self) {
        if let Some(c) = self.cps.get(self.next_cp) {
            if c.last_seq >= c.first_seq {
                let at = self.prev.as_ref().map_or(c.first_seq, |(s, _)| s + 1);
                self.fail(
                    Some(at),
                    format!(
                        "log truncated: checkpoint {} covers up to seq {} but records end before seq {at}",
                        c.checkpoint, c.last_seq
                    ),
                );
            }
        }
        if self.rep.errors.is_empty() {
            self.rep.ok = true;
        }
    }
}

/// Read a whole file into `buf` (cleared first, capacity reused).
fn read_into(path: &Path, mut buf: Vec<u8>) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    buf.clear();
    let mut f = fs::File::open(path)?;
    let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
    buf.reserve(len.saturating_sub(buf.capacity()));
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

impl Verifier {
    /// Check one segment's lines; false to stop.
    fn segment(&mut self, buf: &[u8], path: &Path, last: bool) -> bool {
        let (lines, torn) = segment::lines(buf);
        for item in parse_lines(&lines) {
            let go = match item {
                Item::Rec(m) => self.record(m),
                Item::Bad(e) => {
                    let at = self.prev.as_ref().map_or(1, |(s, _)| s + 1);
                    self.fail(Some(at), format!("{}: {e}", path.display()));
                    false
                }
                Item::Checkpoint => {
                    let at = self.prev.as_ref().map_or(1, |(s, _)| s + 1);
                    self.fail(Some(at), format!("{}: checkpoint line inside a segment", path.display()));
                    false
                }
            };
            if !go {
                return false;
            }
        }
        if torn.is_some() {
            if last {
                self.rep.warnings.push(
                    "last segment ends with an incomplete line (being written, or torn by a crash; cut on next open)"
                        .into(),
                );
            } else {
                let at = self.prev.as_ref().map_or(1, |(s, _)| s + 1);
                self.fail(Some(at), format!("{}: truncated line", path.display()));
                return false;
            }
        }
        true
    }
}

/// Check the checkpoint chain and signatures; returns the valid prefix.
/// `strict`: the lines are a whole `checkpoints.jsonl` (which is never pruned), so the first
/// one must be checkpoint 1; exports may start later.
fn check_checkpoints(
    lines: &[&[u8]],
    keys: Option<&[VerifyingKey]>,
    strict: bool,
    rep: &mut VerifyReport,
) -> Vec<Checkpoint> {
    let mut out: Vec<Checkpoint> = Vec::new();
    let mut chain = keys.map(KeyChain::new);
    let mut prev_hash = GENESIS_HASH.to_string();
    for line in lines {
        let c: Checkpoint = match serde_json::from_slice(line) {
            Ok(c) => c,
            Err(e) => {
                let n = out.last().map_or(1, |c| c.checkpoint + 1);
                rep.bad_checkpoint = Some(n);
                rep.first_bad_seq = Some(out.last().map_or(1, |c| c.last_seq + 1));
                rep.errors.push(format!("checkpoint {n}: unparseable: {e}"));
                break;
            }
        };
        let expected_n = out.last().map_or(if strict { 1 } else { c.checkpoint.max(1) }, |p| p.checkpoint + 1);
        let first_ok = out.last().is_none_or(|p| c.first_seq == p.last_seq + 1);
        let problem = if !c.line_is_canonical(line) {
            Some("line is not in canonical form (edited)".to_string())
        } else if c.checkpoint != expected_n || !first_ok {
            Some(format!("out of sequence (expected checkpoint {expected_n})"))
        } else if (!out.is_empty() || c.checkpoint == 1) && c.prev_checkpoint != prev_hash {
            Some("prev_checkpoint does not match the previous checkpoint line".to_string())
        } else if let Some(ch) = chain.as_mut() {
            ch.check(&c).err()
        } else {
            None
        };
        if let Some(p) = problem {
            rep.bad_checkpoint = Some(c.checkpoint);
            rep.first_bad_seq = Some(c.first_seq);
            rep.errors.push(format!("checkpoint {}: {p}", c.checkpoint));
            break;
        }
        prev_hash = checkpoint::line_hash(line);
        rep.checkpoints += 1;
        out.push(c);
    }
    if let Some(ch) = chain {
        rep.key_id = ch.used.first().cloned().or(rep.key_id.take());
        rep.keys_used = ch.used;
    }
    if keys.is_none() && !out.is_empty() {
        rep.warnings.push("no public key given: checkpoint signatures not checked".into());
    }
    out
}

/// The trusted keys: `pubkey` (one key, or a key history file of several), else the keys
/// stored in the log dir (`fallback`: its `audit-pubkeys.pem`, or `audit-pubkey.pem`).
fn keys_or_report(pubkey: Option<&Path>, fallback: Option<&Path>, rep: &mut VerifyReport) -> Option<Vec<VerifyingKey>> {
    let loaded = match (pubkey, fallback) {
        (Some(p), _) => keys::load_public_set(p).map_err(|e| format!("cannot read public key {}: {e}", p.display())),
        (None, Some(dir)) => keys::local_keys(dir).map_err(|e| e.to_string()),
        (None, None) => return None,
    };
    match loaded {
        Ok(k) => {
            rep.key_id = k.first().map(keys::key_id);
            if pubkey.is_none() {
                rep.warnings.push(format!(
                    "using the public key stored next to the log, with its rotation history ({}); pass --pubkey to check against keys you trust",
                    fallback.map(|d| d.join(keys::HISTORY_FILE).display().to_string()).unwrap_or_default()
                ));
            }
            Some(k)
        }
        Err(e) if pubkey.is_some() => {
            rep.errors.push(e);
            None
        }
        Err(_) => None,
    }
}

/// Verify a log directory. `pubkey`: trusted public keys (one PEM or hex key, or a key
/// history with one PEM block per key, oldest first); default: the keys stored in `dir`,
/// which only proves self-consistency.
pub fn verify_dir(dir: &Path, pubkey: Option<&Path>) -> VerifyReport {
    let mut rep = VerifyReport::default();
    let keys = keys_or_report(pubkey, Some(dir), &mut rep);
    verify_dir_with(dir, keys.as_deref(), rep)
}

pub(crate) fn verify_dir_with(dir: &Path, keys: Option<&[VerifyingKey]>, mut rep: VerifyReport) -> VerifyReport {
    if !rep.errors.is_empty() {
        return rep;
    }
    let cp_buf = fs::read(dir.join(CHECKPOINT_FILE)).unwrap_or_default();
    let (cp_lines, cp_torn) = segment::lines(&cp_buf);
    if cp_torn.is_some() {
        rep.warnings.push("checkpoint file has an incomplete last line (being written, or torn)".into());
    }
    let cp_lines: Vec<&[u8]> = cp_lines.into_iter().map(|(_, l)| l).collect();
    let cps = check_checkpoints(&cp_lines, keys, true, &mut rep);
    if !rep.errors.is_empty() {
        return rep;
    }
    let segs = match segment::list(dir) {
        Ok(s) => s,
        Err(e) => {
            rep.errors.push(format!("cannot list {}: {e}", dir.display()));
            return rep;
        }
    };
    let mut v = Verifier { rep, cps, next_cp: 0, prev: None, leaves: Vec::new(), leaves_from: 0, trust_start: false };
    let nsegs = segs.len();
    // One thread reads the next segment while this one hashes the current one; the two
    // buffers are recycled so a 64 MiB segment is not re-faulted in every time.
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(1);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let segs = &segs;
        scope.spawn(move || {
            for (_, path) in segs {
                let buf = back_rx.try_recv().unwrap_or_default();
                if tx.send(read_into(path, buf)).is_err() {
                    break;
                }
            }
        });
        for (i, ((_, path), buf)) in segs.iter().zip(rx).enumerate() {
            let buf = match buf {
                Ok(b) => b,
                Err(e) => {
                    v.rep.errors.push(format!("cannot read {}: {e}", path.display()));
                    break;
                }
            };
            if !v.segment(&buf, path, i + 1 == nsegs) {
                break;
            }
            let _ = back_tx.send(buf);
        }
    });
    if v.rep.errors.is_empty() {
        v.finish();
    }
    v.rep
}

/// Verify an exported JSON-lines file (records with their checkpoint lines interleaved, as
/// written by `export`).
pub fn verify_export(file: &Path, pubkey: Option<&Path>) -> VerifyReport {
    let mut rep = VerifyReport::default();
    let keys = keys_or_report(pubkey, None, &mut rep);
    if !rep.errors.is_empty() {
        return rep;
    }
    let buf = match fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            rep.errors.push(format!("cannot read {}: {e}", file.display()));
            return rep;
        }
    };
    let (lines, torn) = segment::lines(&buf);
    let cp_lines: Vec<&[u8]> = lines.iter().map(|(_, l)| *l).filter(|l| checkpoint::is_checkpoint_line(l)).collect();
    let cps = check_checkpoints(&cp_lines, keys.as_deref(), false, &mut rep);
    if !rep.errors.is_empty() {
        return rep;
    }
    let mut v = Verifier { rep, cps, next_cp: 0, prev: None, leaves: Vec::new(), leaves_from: 0, trust_start: true };
    for item in parse_lines(&lines) {
        let go = match item {
            Item::Rec(m) => v.record(m),
            Item::Checkpoint => true,
            Item::Bad(e) => {
                let at = v.prev.as_ref().map_or(1, |(s, _)| s + 1);
                v.fail(Some(at), e);
                false
            }
        };
        if !go {
            break;
        }
    }
    if torn.is_some() && v.rep.errors.is_empty() {
        let at = v.prev.as_ref().map_or(1, |(s, _)| s + 1);
        v.fail(Some(at), "export ends with a truncated line".into());
    }
    if v.rep.errors.is_empty() {
        v.finish();
    }
    v.rep
}

/// Verification of a copy of a log held elsewhere (the fleet's central copy in PostgreSQL),
/// with the same checks as [`verify_dir`]: the whole checkpoint chain first (it must start at
/// checkpoint 1, as `checkpoints.jsonl` is never pruned), then the record lines in seq order,
/// fed in batches so the copy never has to sit in memory.
pub struct CopyVerifier {
    v: Verifier,
    stopped: bool,
}

impl CopyVerifier {
    /// Check the checkpoint lines (oldest first) against `keys` (`None`: signatures not
    /// checked, said as a warning).
    pub fn new(checkpoint_lines: &[&[u8]], keys: Option<&[VerifyingKey]>) -> CopyVerifier {
        let mut rep = VerifyReport::default();
        if let Some(k) = keys {
            rep.key_id = k.first().map(keys::key_id);
        }
        let cps = check_checkpoints(checkpoint_lines, keys, true, &mut rep);
        let stopped = !rep.errors.is_empty();
        let v = Verifier { rep, cps, next_cp: 0, prev: None, leaves: Vec::new(), leaves_from: 0, trust_start: false };
        CopyVerifier { v, stopped }
    }

    /// Check the next record lines (without newline); false once a problem stopped the check.
    pub fn lines(&mut self, lines: &[&[u8]]) -> bool {
        if self.stopped {
            return false;
        }
        let indexed: Vec<(usize, &[u8])> = lines.iter().map(|l| (0, *l)).collect();
        for item in parse_lines(&indexed) {
            let go = match item {
                Item::Rec(m) => self.v.record(m),
                Item::Bad(e) => {
                    let at = self.v.prev.as_ref().map_or(1, |(s, _)| s + 1);
                    self.v.fail(Some(at), format!("seq {at}: {e}"));
                    false
                }
                Item::Checkpoint => {
                    let at = self.v.prev.as_ref().map_or(1, |(s, _)| s + 1);
                    self.v.fail(Some(at), format!("seq {at}: a checkpoint line where a record belongs"));
                    false
                }
            };
            if !go {
                self.stopped = true;
                return false;
            }
        }
        true
    }

    /// The report: every check of [`verify_dir`], truncation below a checkpoint included.
    pub fn finish(mut self) -> VerifyReport {
        if self.v.rep.errors.is_empty() {
            self.v.finish();
        }
        self.v.rep
    }
}

//! The search index in the sidecar's sled DB. Derived data only: every entry can be rebuilt from
//! the segment files, and `recover` does so when the index is behind, belongs to another log,
//! or was written in an older layout.
//!
//! The index is deliberately sparse, because sled inserts were what limited append throughput:
//!
//! * `audit_loc`: seq -> (segment, offset, len, ts ms) for *anchor* records only: every record
//!   whose seq is `1 mod LOC_EVERY`, and the first record of every segment. A record is found
//!   by taking the nearest anchor at or below it (always in the same segment, since each
//!   segment's first record is an anchor) and reading forward.
//! * `audit_by`: (field tag, bucket, block) -> the distinct values of that field, whose hash
//!   falls in that bucket, among the `BLOCK` records of the block (`block = (seq - 1) / BLOCK`),
//!   each as `u16 len | bytes`. Hashing values into a few buckets keeps the number of keys per
//!   block small even for high-cardinality fields like `trace_id`. A block's keys are written
//!   once, when the block is complete; `indexed_through` is the end of the last complete block,
//!   and readers scan anything above it in full. Searches read whole candidate blocks and
//!   re-check every filter on the parsed record.
//! * `audit_meta`: `indexed_through`, `indexed_hash`, `format`.

use std::collections::{HashMap, HashSet};

use chrono::DateTime;

use crate::record::AuditRecord;
use crate::AuditError;

/// The index builder's maps: filled per record, keyed by values the sidecar wrote.
type Fold = foldhash::fast::RandomState;

/// One `audit_loc` anchor per this many records (plus each segment's first record).
pub const LOC_EVERY: u64 = 32;
/// Records per `audit_by` block.
pub const BLOCK: u64 = 256;
/// Hash buckets per field in `audit_by`.
const BUCKETS: u8 = 16;
/// Layout version in `audit_meta`; an index without it (or with another) is rebuilt.
const FORMAT: &[u8] = b"sparse-32-256-b16";

/// Where a record lives and when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub ts_ms: i64,
}

impl Loc {
    fn encode(&self) -> [u8; 28] {
        let mut b = [0u8; 28];
        b[..8].copy_from_slice(&self.segment.to_be_bytes());
        b[8..16].copy_from_slice(&self.offset.to_be_bytes());
        b[16..20].copy_from_slice(&self.len.to_be_bytes());
        b[20..].copy_from_slice(&self.ts_ms.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Loc> {
        if b.len() != 28 {
            return None;
        }
        Some(Loc {
            segment: u64::from_be_bytes(b[..8].try_into().ok()?),
            offset: u64::from_be_bytes(b[8..16].try_into().ok()?),
            len: u32::from_be_bytes(b[16..20].try_into().ok()?),
            ts_ms: i64::from_be_bytes(b[20..].try_into().ok()?),
        })
    }
}

/// Whether the record `seq` at `loc` gets an `audit_loc` entry.
pub fn is_anchor(seq: u64, loc: &Loc) -> bool {
    loc.offset == 0 || seq % LOC_EVERY == 1
}

/// The `audit_by` block of `seq` (seq >= 1).
pub fn block_of(seq: u64) -> u64 {
    seq.saturating_sub(1) / BLOCK
}

/// First and last seq of block `b`.
pub fn block_range(b: u64) -> (u64, u64) {
    (b * BLOCK + 1, (b + 1) * BLOCK)
}

/// Indexed equality fields, one tag byte each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    TraceId = b't' as isize,
    Agent = b'a' as isize,
    Kind = b'k' as isize,
    Action = b'x' as isize,
    Risk = b'r' as isize,
}

/// FNV-1a of the value, folded into a bucket.
fn bucket(value: &[u8]) -> u8 {
    let h = value.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    (h % u64::from(BUCKETS)) as u8
}

fn by_key(field: Field, bucket: u8, block: u64) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[0] = field as u8;
    k[1] = bucket;
    k[2..].copy_from_slice(&block.to_be_bytes());
    k
}

/// Whether an `audit_by` value (`u16 len | bytes` entries) lists `value`.
fn lists(mut v: &[u8], value: &[u8]) -> bool {
    while v.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([v[0], v[1]]));
        let Some(item) = v.get(2..2 + n) else { return false };
        if item == value {
            return true;
        }
        v = &v[2 + n..];
    }
    false
}

/// The indexed (field, value) pairs of a record.
pub fn entries(r: &AuditRecord) -> Vec<(Field, &str)> {
    let mut out = Vec::with_capacity(5);
    if let Some(t) = &r.trace_id {
        out.push((Field::TraceId, t.as_str()));
    }
    if let Some(a) = &r.agent {
        out.push((Field::Agent, a.as_str()));
    }
    if let Some(k) = r.kind {
        out.push((Field::Kind, k.as_str()));
    }
    if let Some(a) = r.action {
        out.push((Field::Action, a.as_str()));
    }
    if let Some(x) = r.risk {
        out.push((Field::Risk, x.as_str()));
    }
    out
}

/// Milliseconds since the epoch of a record's `ts` (0 if unparseable).
pub fn ts_ms(ts: &str) -> i64 {
    DateTime::parse_from_rfc3339(ts).map(|t| t.timestamp_millis()).unwrap_or(0)
}

/// Accumulates index entries for records fed in seq order: anchors at once, `audit_by` keys
/// when a block is complete (the next block starts).
#[derive(Default)]
pub struct Builder {
    block: Option<u64>,
    /// Distinct values of the open block, by (field tag, bucket).
    open: HashMap<(u8, u8), Vec<Vec<u8>>, Fold>,
    /// The open block's values seen so far, per field tag: a lookup copies nothing.
    seen: Vec<(u8, HashSet<Vec<u8>, Fold>)>,
    /// Last record fed: (seq, hash).
    last: Option<(u64, String)>,
    loc: Vec<(u64, [u8; 28])>,
    by: Vec<([u8; 10], Vec<u8>)>,
    /// Last record of the last completed block (what `indexed_through` may advance to).
    done: Option<(u64, String)>,
}

impl Builder {
    /// Add one record written at `loc`.
    pub fn add(&mut self, r: &AuditRecord, loc: &Loc) {
        if is_anchor(r.seq, loc) {
            self.loc.push((r.seq, loc.encode()));
        }
        let b = block_of(r.seq);
        if self.block != Some(b) {
            self.close_block();
            self.block = Some(b);
        }
        for (f, v) in entries(r) {
            let tag = f as u8;
            let v = v.as_bytes();
            let v = &v[..v.len().min(usize::from(u16::MAX))];
            let at = match self.seen.iter().position(|(t, _)| *t == tag) {
                Some(at) => at,
                None => {
                    self.seen.push((tag, HashSet::default()));
                    self.seen.len() - 1
                }
            };
            let seen = &mut self.seen[at].1;
            if !seen.contains(v) {
                seen.insert(v.to_vec());
                let bk = bucket(v);
                self.open.entry((tag, bk)).or_default().push(v.to_vec());
            }
        }
        self.last = Some((r.seq, r.hash.clone()));
    }

    fn close_block(&mut self) {
        let Some(b) = self.block else { return };
        for ((tag, bk), values) in self.open.drain() {
            let mut val = Vec::new();
            for v in values {
                val.extend_from_slice(&(v.len() as u16).to_be_bytes());
                val.extend_from_slice(&v);
            }
            let mut k = [0u8; 10];
            k[0] = tag;
            k[1] = bk;
            k[2..].copy_from_slice(&b.to_be_bytes());
            self.by.push((k, val));
        }
        self.seen.iter_mut().for_each(|(_, s)| s.clear());
        self.done = self.last.clone();
    }

    /// Whether nothing is waiting to be applied.
    pub fn is_empty(&self) -> bool {
        self.loc.is_empty() && self.by.is_empty() && self.done.is_none()
    }

    /// The last record fed (its anchor, if any, is in `loc` or already applied).
    pub fn fed_through(&self) -> Option<u64> {
        self.last.as_ref().map(|(s, _)| *s)
    }
}

/// Handle on the index trees.
#[derive(Clone)]
pub struct Index {
    loc: sled::Tree,
    by: sled::Tree,
    meta: sled::Tree,
}

impl Index {
    /// Open (create) the index's trees; an index in another layout is cleared for rebuild
    /// (it is derived data: the segment files are the truth).
    pub fn open(store: &storage::Store) -> Result<Index, AuditError> {
        use storage::Tree;
        let idx = Index {
            loc: store.tree(Tree::AuditLoc)?,
            by: store.tree(Tree::AuditBy)?,
            meta: store.tree(Tree::AuditMeta)?,
        };
        if idx.meta.get("format")?.as_deref() != Some(FORMAT) {
            idx.clear()?;
        }
        Ok(idx)
    }

    /// Highest indexed seq and its hash.
    pub fn indexed_through(&self) -> Result<(u64, Option<String>), AuditError> {
        let seq = self.meta.get("indexed_through")?.and_then(|v| v.as_ref().try_into().ok()).map(u64::from_be_bytes);
        let hash = self.meta.get("indexed_hash")?.map(|v| String::from_utf8_lossy(&v).into_owned());
        Ok((seq.unwrap_or(0), hash))
    }

    /// Drop every entry (the log and the index disagree).
    pub fn clear(&self) -> Result<(), AuditError> {
        self.loc.clear()?;
        self.by.clear()?;
        self.meta.clear()?;
        self.meta.insert("format", FORMAT)?;
        Ok(())
    }

    /// Write what `b` accumulated; returns the new `indexed_through` (end of the last complete
    /// block) if it advanced. `b` keeps its open block.
    pub fn apply(&self, b: &mut Builder) -> Result<Option<u64>, AuditError> {
        let mut loc = sled::Batch::default();
        for (s, l) in b.loc.drain(..) {
            loc.insert(&s.to_be_bytes(), &l);
        }
        let mut by = sled::Batch::default();
        for (k, v) in b.by.drain(..) {
            by.insert(&k, v);
        }
        self.loc.apply_batch(loc)?;
        self.by.apply_batch(by)?;
        let Some((seq, hash)) = b.done.take() else { return Ok(None) };
        let mut meta = sled::Batch::default();
        meta.insert("indexed_through", &seq.to_be_bytes());
        meta.insert("indexed_hash", hash.as_bytes());
        self.meta.apply_batch(meta)?;
        Ok(Some(seq))
    }

    /// Remove the entries of pruned records (all seqs up to `through`). A block that still
    /// holds kept records keeps its `audit_by` keys.
    pub fn remove(&self, through: u64) -> Result<(), AuditError> {
        let mut loc = sled::Batch::default();
        for kv in self.loc.range(..=through.to_be_bytes()) {
            loc.remove(kv?.0);
        }
        let mut by = sled::Batch::default();
        // Block b ends at (b + 1) * BLOCK, so blocks 0..=through / BLOCK - 1 are entirely pruned.
        if let Some(last_full) = (through / BLOCK).checked_sub(1) {
            for f in [Field::TraceId, Field::Agent, Field::Kind, Field::Action, Field::Risk] {
                for bk in 0..BUCKETS {
                    for kv in self.by.range(by_key(f, bk, 0)..=by_key(f, bk, last_full)) {
                        by.remove(kv?.0);
                    }
                }
            }
        }
        self.loc.apply_batch(loc)?;
        self.by.apply_batch(by)?;
        Ok(())
    }

    /// The nearest anchor at or below `seq`.
    pub fn anchor(&self, seq: u64) -> Result<Option<(u64, Loc)>, AuditError> {
        let Some((k, v)) = self.loc.range(..=seq.to_be_bytes()).next_back().transpose()? else { return Ok(None) };
        let s = k.as_ref().try_into().ok().map(u64::from_be_bytes);
        Ok(s.zip(Loc::decode(&v)))
    }

    /// Lowest indexed seq.
    pub fn first_seq(&self) -> Result<Option<u64>, AuditError> {
        Ok(self.loc.first()?.and_then(|(k, _)| k.as_ref().try_into().ok()).map(u64::from_be_bytes))
    }

    /// Blocks in `lo..=hi` holding a record with `field == value`, ascending.
    pub fn blocks(&self, field: Field, value: &str, lo: u64, hi: u64) -> Result<Vec<u64>, AuditError> {
        let v = value.as_bytes();
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        let bk = bucket(v);
        let mut out = Vec::new();
        for kv in self.by.range(by_key(field, bk, lo)..=by_key(field, bk, hi)) {
            let (k, val) = kv?;
            if lists(&val, v) {
                if let Some(b) = k.get(2..).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes) {
                    out.push(b);
                }
            }
        }
        Ok(out)
    }
}

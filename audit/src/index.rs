//! The search index in the sidecar's sled DB. Derived data only: every entry can be rebuilt from
//! the segment files, and `open` does so when the index is behind or belongs to another log.
//!
//! Trees: `audit_loc` seq -> (segment, offset, len, ts ms); `audit_by` (field tag, value, seq)
//! -> (); `audit_meta` bookkeeping (`indexed_through`, `indexed_hash`).

use chrono::DateTime;

use crate::record::AuditRecord;
use crate::AuditError;

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

/// Indexed equality fields, one tag byte each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    TraceId = b't' as isize,
    Agent = b'a' as isize,
    Kind = b'k' as isize,
    Action = b'x' as isize,
    Risk = b'r' as isize,
}

/// `tag | u16 len | value`: a prefix no other value can extend.
pub fn prefix(field: Field, value: &str) -> Vec<u8> {
    let v = value.as_bytes();
    let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(3 + v.len() + 8);
    k.push(field as u8);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&v[..usize::from(len)]);
    k
}

fn by_key(field: Field, value: &str, seq: u64) -> Vec<u8> {
    let mut k = prefix(field, value);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The indexed (field, value) pairs of a record.
pub fn entries(r: &AuditRecord) -> Vec<(Field, String)> {
    let mut out = Vec::with_capacity(5);
    if let Some(t) = &r.trace_id {
        out.push((Field::TraceId, t.clone()));
    }
    if let Some(a) = &r.agent {
        out.push((Field::Agent, a.clone()));
    }
    if let Some(k) = r.kind {
        out.push((Field::Kind, k.as_str().to_string()));
    }
    if let Some(a) = r.action {
        out.push((Field::Action, a.as_str().to_string()));
    }
    if let Some(x) = r.risk {
        out.push((Field::Risk, x.as_str().to_string()));
    }
    out
}

/// Milliseconds since the epoch of a record's `ts` (0 if unparseable).
pub fn ts_ms(ts: &str) -> i64 {
    DateTime::parse_from_rfc3339(ts).map(|t| t.timestamp_millis()).unwrap_or(0)
}

/// Handle on the index trees.
#[derive(Clone)]
pub struct Index {
    loc: sled::Tree,
    by: sled::Tree,
    meta: sled::Tree,
}

impl Index {
    /// Open (create) the trees in `db`.
    pub fn open(db: &sled::Db) -> Result<Index, AuditError> {
        Ok(Index { loc: db.open_tree("audit_loc")?, by: db.open_tree("audit_by")?, meta: db.open_tree("audit_meta")? })
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
        Ok(())
    }

    /// Index a batch of freshly written records; `last` is the batch's (seq, hash).
    pub fn add(&self, recs: &[(&AuditRecord, Loc)]) -> Result<(), AuditError> {
        let mut loc = sled::Batch::default();
        let mut by = sled::Batch::default();
        for (r, l) in recs {
            loc.insert(&r.seq.to_be_bytes(), &l.encode());
            for (f, v) in entries(r) {
                by.insert(by_key(f, &v, r.seq), &[]);
            }
        }
        self.loc.apply_batch(loc)?;
        self.by.apply_batch(by)?;
        if let Some((r, _)) = recs.last() {
            let mut meta = sled::Batch::default();
            meta.insert("indexed_through", &r.seq.to_be_bytes());
            meta.insert("indexed_hash", r.hash.as_bytes());
            self.meta.apply_batch(meta)?;
        }
        Ok(())
    }

    /// Remove the entries of pruned records.
    pub fn remove(&self, recs: &[AuditRecord]) -> Result<(), AuditError> {
        let mut loc = sled::Batch::default();
        let mut by = sled::Batch::default();
        for r in recs {
            loc.remove(&r.seq.to_be_bytes());
            for (f, v) in entries(r) {
                by.remove(by_key(f, &v, r.seq));
            }
        }
        self.loc.apply_batch(loc)?;
        self.by.apply_batch(by)?;
        Ok(())
    }

    /// Location of `seq`.
    pub fn loc(&self, seq: u64) -> Result<Option<Loc>, AuditError> {
        Ok(self.loc.get(seq.to_be_bytes())?.and_then(|v| Loc::decode(&v)))
    }

    /// Lowest indexed seq.
    pub fn first_seq(&self) -> Result<Option<u64>, AuditError> {
        Ok(self.loc.first()?.and_then(|(k, _)| k.as_ref().try_into().ok()).map(u64::from_be_bytes))
    }

    /// Seqs with `field == value` within `lo..=hi`, newest first.
    pub fn seqs_desc(
        &self,
        field: Field,
        value: &str,
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = Result<u64, AuditError>> {
        let p = prefix(field, value);
        let plen = p.len();
        let mut start = p.clone();
        start.extend_from_slice(&lo.to_be_bytes());
        let mut end = p;
        end.extend_from_slice(&hi.to_be_bytes());
        self.by.range(start..=end).rev().map(move |kv| {
            let (k, _) = kv?;
            Ok(k.get(plen..).and_then(|s| s.try_into().ok()).map(u64::from_be_bytes).unwrap_or(0))
        })
    }
}

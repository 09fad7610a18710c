//! Reads for the console and API: get, trace view, resume-from for SSE, and filtered search
//! with cursor pagination (newest first).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use decision::{Action, Risk};
use serde::{Deserialize, Serialize};

use crate::event::RecordKind;
use crate::index::{self, Field, Index, Loc};
use crate::record::AuditRecord;
use crate::writer::Shared;
use crate::{mask, segment, AuditError};

/// Default and maximum page sizes.
pub const DEFAULT_LIMIT: usize = 50;
/// Larger `limit`s are clamped to this.
pub const MAX_LIMIT: usize = 1000;

/// Search filters; all given filters must match. Deserialises from a query string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditQuery {
    pub agent: Option<String>,
    pub kind: Option<RecordKind>,
    pub risk: Option<Risk>,
    pub action: Option<Action>,
    pub trace_id: Option<String>,
    /// Case-insensitive substring of the stored (masked) record line. A keyword that itself
    /// contains a secret is also matched in its masked form, so searching an e-mail finds it.
    pub keyword: Option<String>,
    /// Inclusive lower time bound.
    pub from: Option<DateTime<Utc>>,
    /// Inclusive upper time bound.
    pub to: Option<DateTime<Utc>>,
    /// Opaque cursor from a previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// Page size (default 50, max 1000).
    pub limit: Option<usize>,
}

/// One page of results, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditPage {
    pub items: Vec<AuditRecord>,
    /// Pass back as `cursor` for the next (older) page; `None` = no more.
    pub next_cursor: Option<String>,
}

/// Read side of the log, shared with the writer through `Shared`.
pub(crate) struct Reader {
    pub dir: PathBuf,
    pub index: Index,
    pub shared: Arc<Shared>,
    pub scan_limit: usize,
    /// The install's masking salt: filters are masked with it to match what was written.
    pub salt: mask::Salt,
}

impl Reader {
    fn head(&self) -> u64 {
        self.shared.durable_seq.load(Ordering::Acquire)
    }

    fn file(&self, segment: u64) -> Result<Arc<File>, AuditError> {
        let mut files = self.shared.files.lock().map_err(|_| AuditError::WriterStopped("poisoned".into()))?;
        if let Some(f) = files.get(&segment) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.dir.join(segment::segment_name(segment)))?);
        if files.len() > 64 {
            files.clear();
        }
        files.insert(segment, f.clone());
        Ok(f)
    }

    /// The nearest anchor at or below `seq`. `recent_locs` is read before sled: an anchor
    /// leaves it only after it is in sled, so one of the two always has it.
    fn anchor(&self, seq: u64) -> Result<Option<(u64, Loc)>, AuditError> {
        let recent = self
            .shared
            .recent_locs
            .lock()
            .map_err(|_| AuditError::WriterStopped("poisoned".into()))?
            .range(..=seq)
            .next_back()
            .map(|(s, l)| (*s, *l));
        let stored = self.index.anchor(seq)?;
        Ok(match (recent, stored) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a } else { b }),
            (a, b) => a.or(b),
        })
    }

    /// Raw lines of the durable records `from..=to` (at most `max`), in order, as (seq, line).
    /// Starts at the nearest anchor and reads forward in chunks, segment by segment. A record
    /// that is pruned or missing is skipped.
    fn scan(&self, from: u64, to: u64, max: usize) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let to = to.min(self.head());
        let mut out = Vec::new();
        let mut s = from.max(1);
        // (segment, offset, seq of the line at offset)
        let mut cur: Option<(u64, u64, u64)> = None;
        let mut dead_end: Option<(u64, u64)> = None;
        let mut chunk = 64 * 1024;
        while s <= to && out.len() < max {
            let (seg, off, mut at) = match cur.take() {
                Some(c) => c,
                None => match self.anchor(s)? {
                    Some((a, loc)) if dead_end != Some((loc.segment, s)) => (loc.segment, loc.offset, a),
                    _ => match self.index.first_seq()? {
                        // Below the first kept record (pruned): jump to it.
                        Some(f) if f > s => {
                            s = f;
                            continue;
                        }
                        _ => break,
                    },
                },
            };
            let file = match self.file(seg) {
                Ok(f) => f,
                Err(AuditError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Pruned under us; whatever is left starts at a later anchor.
                    dead_end = Some((seg, s));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let buf = read_chunk(&file, off, chunk)?;
            let mut pos = 0usize;
            while let Some(i) = segment::find_newline(&buf[pos..]) {
                if at > to || out.len() >= max {
                    break;
                }
                if at >= s {
                    out.push((at, buf[pos..pos + i].to_vec()));
                    s = at + 1;
                }
                at += 1;
                pos += i + 1;
            }
            if pos == 0 && buf.len() == chunk {
                chunk *= 2; // a line longer than the chunk
                cur = Some((seg, off, at));
            } else if buf.len() < chunk {
                // End of this segment: the next record starts another one (an anchor).
                dead_end = Some((seg, s));
            } else {
                cur = Some((seg, off + pos as u64, at));
            }
        }
        Ok(out)
    }

    /// The record `seq`, if it is durable and not pruned.
    pub fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        if seq == 0 || seq > self.head() {
            return Ok(None);
        }
        let Some((_, line)) = self.scan(seq, seq, 1)?.pop() else { return Ok(None) };
        let r: AuditRecord = serde_json::from_slice(&line)?;
        if r.seq == seq {
            return Ok(Some(r));
        }
        // Lines were added or removed behind the index's back (verify will say where):
        // fall back to looking at every line of the segment.
        let Some((_, loc)) = self.anchor(seq)? else { return Ok(None) };
        let buf = std::fs::read(self.dir.join(segment::segment_name(loc.segment)))?;
        for (_, l) in segment::lines(&buf).0 {
            if serde_json::from_slice::<crate::record::LineMeta>(l).is_ok_and(|m| m.seq == seq) {
                return Ok(Some(serde_json::from_slice(l)?));
            }
        }
        Ok(None)
    }

    /// Up to `limit` records from `seq` on, in order.
    pub fn read_from(&self, seq: u64, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let head = self.head();
        let start = seq.max(self.index.first_seq()?.unwrap_or(1));
        self.scan(start, head, limit)?.into_iter().map(|(_, l)| Ok(serde_json::from_slice(&l)?)).collect()
    }

    /// Up to `limit` stored lines from `seq` on, in order, as (seq, line without newline).
    pub fn read_lines_from(&self, seq: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, AuditError> {
        let start = seq.max(self.index.first_seq()?.unwrap_or(1));
        self.scan(start, self.head(), limit)
    }

    /// Candidate ranges for a search over `lo..=hi`, newest first: every `BLOCK`-aligned range
    /// that may hold a match. Above `indexed_seq` the index may lag, so that tail is read in full.
    fn ranges(&self, driver: Option<(Field, &str)>, lo: u64, hi: u64) -> Result<Vec<(u64, u64)>, AuditError> {
        let indexed = self.shared.indexed_seq.load(Ordering::Acquire);
        let Some((f, v)) = driver else { return Ok(chunks_desc(lo, hi)) };
        let mut out = chunks_desc(lo.max(indexed + 1), hi);
        let top = hi.min(indexed);
        if top >= lo {
            let blocks = self.index.blocks(f, v, index::block_of(lo), index::block_of(top))?;
            for b in blocks.into_iter().rev() {
                let (a, z) = index::block_range(b);
                out.push((a.max(lo), z.min(top)));
            }
        }
        Ok(out)
    }

    /// Every record of a trace, in seq order.
    pub fn trace(&self, trace_id: &str) -> Result<Vec<AuditRecord>, AuditError> {
        let first = self.index.first_seq()?.unwrap_or(1);
        let mut out = Vec::new();
        let needle = field_needle(Field::TraceId, trace_id);
        for (a, z) in self.ranges(Some((Field::TraceId, trace_id)), first, self.head())?.into_iter().rev() {
            for (_, line) in self.scan(a, z, usize::MAX)? {
                if !contains(&line, &needle) {
                    continue;
                }
                let r: AuditRecord = serde_json::from_slice(&line)?;
                if r.trace_id.as_deref() == Some(trace_id) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    /// ts (ms) of record `seq`, `i64::MIN` if it cannot be read.
    fn ts_of(&self, seq: u64) -> Result<i64, AuditError> {
        Ok(self.get(seq)?.map_or(i64::MIN, |r| index::ts_ms(&r.ts)))
    }

    /// First seq whose ts >= `ms` (records' ts never decreases with seq).
    fn seq_at_or_after(&self, ms: i64, mut lo: u64, mut hi: u64) -> Result<u64, AuditError> {
        // Invariant: answer in lo..=hi+1.
        let end = hi.saturating_add(1);
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            if self.ts_of(mid)? >= ms {
                if mid == 0 {
                    return Ok(0);
                }
                hi = mid - 1;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo.min(end))
    }

    /// Filtered search, newest first.
    pub fn search(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let first = self.index.first_seq()?.unwrap_or(1);
        let mut hi = self.head();
        if let Some(c) = &q.cursor {
            let c: u64 = c.parse().map_err(|_| AuditError::BadQuery(format!("bad cursor {c:?}")))?;
            hi = hi.min(c.saturating_sub(1));
        }
        let mut lo = first;
        if let Some(from) = q.from {
            lo = lo.max(self.seq_at_or_after(from.timestamp_millis(), first, hi)?);
        }
        if let Some(to) = q.to {
            let after = self.seq_at_or_after(to.timestamp_millis() + 1, lo, hi)?;
            hi = hi.min(after.saturating_sub(1));
        }
        if hi < lo || hi == 0 {
            return Ok(AuditPage::default());
        }
        let agent = q.agent.as_deref().map(|a| mask::mask_text_salted(a, &self.salt));
        let kind = q.kind.map(|k| k.as_str().to_string());
        let action = q.action.map(|a| a.as_str().to_string());
        let risk = q.risk.map(|r| r.as_str().to_string());
        let driver = [
            (Field::TraceId, q.trace_id.clone()),
            (Field::Agent, agent.clone()),
            (Field::Kind, kind),
            (Field::Action, action),
            (Field::Risk, risk),
        ]
        .into_iter()
        .find_map(|(f, v)| v.map(|v| (f, v)));
        // The unsalted form still finds records written before the install had a salt.
        let mut keywords: Vec<Vec<u8>> = q
            .keyword
            .iter()
            .flat_map(|k| [k.clone(), mask::mask_text_salted(k, &self.salt), mask::mask_text(k)])
            .map(|k| k.to_ascii_lowercase().into_bytes())
            .collect();
        keywords.dedup();
        let needle = driver.as_ref().map(|(f, v)| field_needle(*f, v));
        let mut page = AuditPage::default();
        let mut scanned = 0usize;
        'ranges: for (a, z) in self.ranges(driver.as_ref().map(|(f, v)| (*f, v.as_str())), lo, hi)? {
            for (s, line) in self.scan(a, z, usize::MAX)?.into_iter().rev() {
                scanned += 1;
                if scanned > self.scan_limit {
                    page.next_cursor = Some((s + 1).to_string());
                    break 'ranges;
                }
                if needle.as_ref().is_some_and(|n| !contains(&line, n)) {
                    continue;
                }
                if !keywords.is_empty() {
                    let low = line.to_ascii_lowercase();
                    if !keywords.iter().any(|k| contains(&low, k)) {
                        continue;
                    }
                }
                let r: AuditRecord = serde_json::from_slice(&line)?;
                let ok = q.trace_id.as_ref().is_none_or(|t| r.trace_id.as_ref() == Some(t))
                    && agent.as_ref().is_none_or(|a| r.agent.as_ref() == Some(a))
                    && q.kind.is_none_or(|k| r.kind == Some(k))
                    && q.action.is_none_or(|a| r.action == Some(a))
                    && q.risk.is_none_or(|x| r.risk == Some(x));
                if ok {
                    page.items.push(r);
                    if page.items.len() == limit {
                        if s > lo {
                            page.next_cursor = Some(s.to_string());
                        }
                        break 'ranges;
                    }
                }
            }
        }
        Ok(page)
    }
}

/// `lo..=hi` cut at `BLOCK` boundaries, newest range first.
fn chunks_desc(lo: u64, hi: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut z = hi;
    while z >= lo && z > 0 {
        let a = index::block_range(index::block_of(z)).0.max(lo);
        out.push((a, z));
        if a == 0 {
            break;
        }
        z = a - 1;
    }
    out
}

/// Up to `len` bytes of `f` from `off` (fewer only at end of file).
fn read_chunk(f: &File, off: u64, len: usize) -> Result<Vec<u8>, AuditError> {
    let mut buf = vec![0u8; len];
    let mut n = 0;
    while n < len {
        match f.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// `"name":"value"` as the writer serialises that top-level field: a line without it cannot
/// match, so most lines of a candidate block are skipped without parsing them.
fn field_needle(f: Field, value: &str) -> Vec<u8> {
    let name = match f {
        Field::TraceId => "trace_id",
        Field::Agent => "agent",
        Field::Kind => "kind",
        Field::Action => "action",
        Field::Risk => "risk",
    };
    let mut n = format!("\"{name}\":").into_bytes();
    n.extend(serde_json::to_vec(value).unwrap_or_default());
    n
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

//! Reads for the console and API: get, trace view, resume-from for SSE, and filtered search
//! with cursor pagination (newest first).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use policy::{Action, Risk};
use serde::{Deserialize, Serialize};

use crate::event::RecordKind;
use crate::index::{Field, Index, Loc};
use crate::record::AuditRecord;
use crate::writer::Shared;
use crate::{mask, segment, AuditError};

/// Default and maximum page sizes.
pub const DEFAULT_LIMIT: usize = 50;
/// Larger `limit`s are clamped to this.
pub const MAX_LIMIT: usize = 1000;

/// Search filters; all given filters must match. Deserialises from a query string.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

    fn read_line(&self, loc: Loc) -> Result<Vec<u8>, AuditError> {
        let mut buf = vec![0u8; loc.len as usize];
        self.file(loc.segment)?.read_exact_at(&mut buf, loc.offset)?;
        Ok(buf)
    }

    /// The record `seq`, if it is durable and not pruned.
    pub fn get(&self, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
        if seq == 0 || seq > self.head() {
            return Ok(None);
        }
        match self.index.loc(seq)? {
            Some(loc) => Ok(Some(serde_json::from_slice(&self.read_line(loc)?)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` records from `seq` on, in order.
    pub fn read_from(&self, seq: u64, limit: usize) -> Result<Vec<AuditRecord>, AuditError> {
        let head = self.head();
        let start = seq.max(self.index.first_seq()?.unwrap_or(1));
        let mut out = Vec::new();
        let mut s = start;
        while s <= head && out.len() < limit {
            if let Some(r) = self.get(s)? {
                out.push(r);
            }
            s += 1;
        }
        Ok(out)
    }

    /// Every record of a trace, in seq order.
    pub fn trace(&self, trace_id: &str) -> Result<Vec<AuditRecord>, AuditError> {
        let mut seqs: Vec<u64> =
            self.index.seqs_desc(Field::TraceId, trace_id, 0, self.head()).collect::<Result<_, _>>()?;
        seqs.reverse();
        let mut out = Vec::with_capacity(seqs.len());
        for s in seqs {
            if let Some(r) = self.get(s)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// First seq whose ts >= `ms` (records' ts never decreases with seq).
    fn seq_at_or_after(&self, ms: i64, mut lo: u64, mut hi: u64) -> Result<u64, AuditError> {
        // Invariant: answer in lo..=hi+1.
        let end = hi + 1;
        while lo <= hi {
            let mid = lo + (hi - lo) / 2;
            let t = self.index.loc(mid)?.map_or(i64::MIN, |l| l.ts_ms);
            if t >= ms {
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
        let agent = q.agent.as_deref().map(mask::mask_text);
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
        let candidates: Box<dyn Iterator<Item = Result<u64, AuditError>>> = match &driver {
            Some((f, v)) => Box::new(self.index.seqs_desc(*f, v, lo, hi)),
            None => Box::new((lo..=hi).rev().map(Ok)),
        };
        let keywords: Vec<Vec<u8>> = q
            .keyword
            .iter()
            .flat_map(|k| [k.to_ascii_lowercase(), mask::mask_text(k).to_ascii_lowercase()])
            .map(String::into_bytes)
            .collect();
        let mut page = AuditPage::default();
        let mut scanned = 0usize;
        for s in candidates {
            let s = s?;
            scanned += 1;
            if scanned > self.scan_limit {
                page.next_cursor = Some((s + 1).to_string());
                break;
            }
            let Some(loc) = self.index.loc(s)? else { continue };
            let line = self.read_line(loc)?;
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
                    break;
                }
            }
        }
        Ok(page)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

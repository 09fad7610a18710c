//! The aggregate store: hourly buckets in `storage::Tree::CostBuckets`, mirrored in memory for
//! queries. The tree also holds the top traces per (hour, agent, model) and the cursor: the
//! highest audit seq whose record the buckets include. One sled batch moves buckets, traces
//! and cursor together, so after any crash the cursor says exactly which records are counted:
//! a record is applied once, never twice, never skipped (`docs/cost.md`, "Exactly once").
//! The savings evidence (`evidence`: `e` and `r` keys) moves in the same batch.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::RwLock;

use audit::AuditRecord;

use crate::bucket::{self, Contribution, Counts, Dims};
use crate::evidence::{self, Evidence, Pending};
use crate::CostError;

const CURSOR_KEY: &[u8] = b"c";
/// Distinct buckets kept per hour; beyond it, new models fold into `(other)` (model names come
/// from request bodies, so their number is the caller's to choose).
pub const MAX_KEYS_PER_HOUR: usize = 5_000;
/// Traces kept per (hour, agent, model): the most expensive ones.
pub const TOP_TRACES: usize = 5;

/// Buckets by hour, in memory.
pub type Hours = BTreeMap<u32, HashMap<Dims, Counts, Fold>>;
/// Savings evidence by hour, in memory (model calls only).
pub type EvidenceHours = BTreeMap<u32, HashMap<Dims, Evidence, Fold>>;

/// The hasher of the maps every call's records go through (`add`): five `Arc<str>` per key,
/// hashed several times per record, cost ~2 % of a model call under SipHash.
pub type Fold = foldhash::fast::RandomState;

/// (hour, agent, model): whose top traces a batch adds to.
type TraceKey = (u32, Arc<str>, Arc<str>);

pub struct Aggregates {
    tree: sled::Tree,
    mem: RwLock<Mem>,
}

struct Mem {
    hours: Hours,
    cursor: u64,
    evidence: EvidenceHours,
    pending: Pending,
    /// Every name once: buckets share their agent, model, ... strings.
    names: HashSet<Arc<str>>,
}

impl Mem {
    fn intern(&mut self, d: Dims) -> Dims {
        let mut one = |s: Arc<str>| match self.names.get(&s) {
            Some(x) => x.clone(),
            None => {
                self.names.insert(s.clone());
                s
            }
        };
        Dims {
            agent: one(d.agent),
            model: one(d.model),
            upstream: one(d.upstream),
            tool: one(d.tool),
            task: one(d.task),
        }
    }
}

/// One trace's cost in an hour, for the top-traces list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceCost {
    pub trace_id: String,
    pub cost_nano: u64,
}

impl Aggregates {
    /// Load the buckets and cursor from the tree.
    pub fn open(tree: sled::Tree) -> Result<Aggregates, CostError> {
        let mut mem = Mem {
            hours: Hours::new(),
            cursor: 0,
            evidence: EvidenceHours::new(),
            pending: Pending::default(),
            names: HashSet::new(),
        };
        for kv in tree.scan_prefix(b"b") {
            let (k, v) = kv?;
            let (Some((hour, dims)), Some(c)) = (bucket::decode_bucket_key(&k), Counts::decode(&v)) else {
                tracing::warn!("cost: skipping an unreadable bucket");
                continue;
            };
            let dims = mem.intern(dims);
            mem.hours.entry(hour).or_default().insert(dims, c);
        }
        for kv in tree.scan_prefix(b"e") {
            let (k, v) = kv?;
            let (Some((hour, dims)), Some(e)) = (evidence::decode_key(&k), Evidence::decode(&v)) else {
                tracing::warn!("cost: skipping unreadable savings evidence");
                continue;
            };
            let dims = mem.intern(dims);
            mem.evidence.entry(hour).or_default().insert(dims, e);
        }
        for kv in tree.scan_prefix(b"r") {
            let (k, v) = kv?;
            if !mem.pending.load(&k, &v) {
                tracing::warn!("cost: skipping an unreadable retry mark");
            }
        }
        mem.cursor = match tree.get(CURSOR_KEY)? {
            Some(v) if v.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&v);
                u64::from_be_bytes(a)
            }
            _ => 0,
        };
        Ok(Aggregates { tree, mem: RwLock::new(mem) })
    }

    /// The highest audit seq included.
    pub fn cursor(&self) -> u64 {
        self.mem.read().map(|m| m.cursor).unwrap_or(0)
    }

    /// Add the records after the cursor (others are already counted), in one atomic batch.
    /// Returns the new cursor.
    pub fn apply<R: Borrow<AuditRecord>>(&self, recs: &[R]) -> Result<u64, CostError> {
        self.add(recs, true)
    }

    /// Add records that are not in this log (see `Cost::backfill`): counted whatever their
    /// seq, cursor unchanged.
    pub fn backfill(&self, recs: &[AuditRecord]) -> Result<(), CostError> {
        self.add(recs, false).map(|_| ())
    }

    fn add<R: Borrow<AuditRecord>>(&self, recs: &[R], sequenced: bool) -> Result<u64, CostError> {
        let mut mem = self.mem.write().map_err(|_| CostError::Poisoned)?;
        let mut cursor = mem.cursor;
        let mut any = false;
        let mut deltas: HashMap<(u32, Dims), Counts, Fold> = HashMap::default();
        let mut traces: HashMap<TraceKey, Vec<TraceCost>, Fold> = HashMap::default();
        let mut ev_deltas: HashMap<(u32, Dims), Evidence, Fold> = HashMap::default();
        let mut dirty = Vec::new();
        // Retry marks change as records are judged; a batch that fails leaves them as they were
        // (the records are read back and judged again).
        let pending_before = mem.pending.clone();
        let mut latest_ms: Option<i64> = None;
        for r in recs {
            let r: &AuditRecord = r.borrow();
            if sequenced {
                if r.seq <= cursor {
                    continue;
                }
                cursor = r.seq;
            }
            any = true;
            let Some(Contribution { hour, mut dims, counts, trace }) = bucket::contribution(r) else { continue };
            let known = mem.hours.get(&hour).map(|h| (h.contains_key(&dims), h.len())).unwrap_or((false, 0));
            if !known.0 && !deltas.contains_key(&(hour, dims.clone())) && known.1 + deltas.len() >= MAX_KEYS_PER_HOUR {
                dims.model = bucket::OTHER_MODEL.into();
            }
            if let (Some(t), true) = (trace, counts.cost_nano > 0) {
                traces
                    .entry((hour, dims.agent.clone(), dims.model.clone()))
                    .or_default()
                    .push(TraceCost { trace_id: t, cost_nano: counts.cost_nano });
            }
            if let Some(mut e) = evidence::of(r) {
                e.retries = u64::from(mem.pending.observe(r, e.errors > 0, &mut dirty));
                latest_ms = latest_ms.max(Pending::record_ms(r));
                ev_deltas.entry((hour, dims.clone())).or_default().add(&e);
            }
            deltas.entry((hour, dims)).or_default().add(&counts);
        }
        if let Some(now) = latest_ms {
            mem.pending.prune(now, &mut dirty);
        }
        if !any {
            return Ok(cursor);
        }
        let mut batch = sled::Batch::default();
        let mut merged = Vec::with_capacity(deltas.len());
        for ((hour, dims), d) in deltas {
            let mut c = mem.hours.get(&hour).and_then(|h| h.get(&dims)).copied().unwrap_or_default();
            c.add(&d);
            batch.insert(bucket::bucket_key(hour, &dims), &c.encode()[..]);
            merged.push((hour, dims, c));
        }
        for ((hour, agent, model), new) in traces {
            let key = bucket::traces_key(hour, &agent, &model);
            let stored = self.tree.get(&key).inspect_err(|_| mem.pending = pending_before.clone())?;
            let mut all: Vec<TraceCost> = match stored {
                Some(v) => serde_json::from_slice(&v).unwrap_or_default(),
                None => Vec::new(),
            };
            // A trace with several calls adds up. A batch holds up to a thousand records, most
            // of them of distinct traces: they are found by hash, not by a scan of the list.
            let mut at: HashMap<String, usize, Fold> = HashMap::default();
            at.extend(all.iter().enumerate().map(|(i, x)| (x.trace_id.clone(), i)));
            for t in new {
                match at.get(&t.trace_id) {
                    Some(&i) => all[i].cost_nano += t.cost_nano,
                    None => {
                        at.insert(t.trace_id.clone(), all.len());
                        all.push(t);
                    }
                }
            }
            all.sort_by_key(|t| std::cmp::Reverse(t.cost_nano));
            all.truncate(TOP_TRACES);
            let value = serde_json::to_vec(&all).inspect_err(|_| mem.pending = pending_before.clone())?;
            batch.insert(key, value);
        }
        let mut ev_merged = Vec::with_capacity(ev_deltas.len());
        for ((hour, dims), d) in ev_deltas {
            let mut e = mem.evidence.get(&hour).and_then(|h| h.get(&dims)).copied().unwrap_or_default();
            e.add(&d);
            batch.insert(evidence::key(hour, &dims), e.encode());
            ev_merged.push((hour, dims, e));
        }
        mem.pending.write(&dirty, &mut batch);
        batch.insert(CURSOR_KEY, &cursor.to_be_bytes()[..]);
        if let Err(e) = self.tree.apply_batch(batch) {
            mem.pending = pending_before;
            return Err(e.into());
        }
        for (hour, dims, c) in merged {
            let dims = mem.intern(dims);
            mem.hours.entry(hour).or_default().insert(dims, c);
        }
        for (hour, dims, e) in ev_merged {
            let dims = mem.intern(dims);
            mem.evidence.entry(hour).or_default().insert(dims, e);
        }
        mem.cursor = cursor;
        Ok(cursor)
    }

    /// Run `f` over the in-memory buckets.
    pub fn read<T>(&self, f: impl FnOnce(&Hours) -> T) -> Result<T, CostError> {
        let mem = self.mem.read().map_err(|_| CostError::Poisoned)?;
        Ok(f(&mem.hours))
    }

    /// Run `f` over the in-memory buckets and savings evidence.
    pub fn read_with_evidence<T>(&self, f: impl FnOnce(&Hours, &EvidenceHours) -> T) -> Result<T, CostError> {
        let mem = self.mem.read().map_err(|_| CostError::Poisoned)?;
        Ok(f(&mem.hours, &mem.evidence))
    }

    /// The most expensive traces of (hour, agent, model).
    pub fn top_traces(&self, hour: u32, agent: &str, model: &str) -> Result<Vec<TraceCost>, CostError> {
        Ok(match self.tree.get(bucket::traces_key(hour, agent, model))? {
            Some(v) => serde_json::from_slice(&v).unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// Make everything applied durable (sled flushes by itself within half a second).
    pub fn flush(&self) -> Result<(), CostError> {
        self.tree.flush()?;
        Ok(())
    }
}

//! Opening a log directory: cut torn tails, find the chain head, reload the leaves of the
//! unsigned tail, and bring the sled index up to date.

use std::fs::{self, OpenOptions};
use std::path::Path;
use std::time::Instant;

use crate::checkpoint::{self, Checkpoint};
use crate::index::{self, Index, Loc};
use crate::record::{AuditRecord, LineMeta, GENESIS_HASH};
use crate::segment::{self, CHECKPOINT_FILE};
use crate::spans::Spans;
use crate::writer::{CpState, Writer};
use crate::AuditError;

/// What `open` recovered, before the writer thread starts.
pub(crate) struct Recovered {
    pub writer_parts: WriterParts,
    /// The index's open (incomplete) block, for the index thread to continue.
    pub builder: index::Builder,
    /// Highest seq whose `audit_by` keys are in sled.
    pub indexed_through: u64,
}

/// Writer fields recovered from disk.
pub(crate) struct WriterParts {
    pub file: fs::File,
    pub seg_first: u64,
    pub seg_len: u64,
    pub head_seq: u64,
    pub head_hash: String,
    pub last_ts_ms: i64,
    pub cp_file: fs::File,
    pub cp_len: u64,
    pub cp: CpState,
    pub pending_hashes: Vec<[u8; 32]>,
    /// Calls started and not ended as of the chain head (a crash leaves some).
    pub spans: Spans,
}

/// Run every recovery step on `dir` and index what the index is missing.
pub(crate) fn recover(dir: &Path, idx: &Index) -> Result<Recovered, AuditError> {
    let cp_path = dir.join(CHECKPOINT_FILE);
    if !cp_path.exists() {
        OpenOptions::new().create(true).append(true).open(&cp_path)?;
        segment::sync_dir(dir)?;
    }
    let (cp_file, cp_len, cp_buf) = segment::recover(&cp_path, checkpoint::is_checkpoint_line)?;
    let mut cp = CpState { prev_line_hash: GENESIS_HASH.to_string(), ..CpState::default() };
    let mut cp_head = GENESIS_HASH.to_string();
    for (_, line) in segment::lines(&cp_buf).0 {
        let c: Checkpoint = serde_json::from_slice(line)?;
        cp_head = c.head_hash.clone();
        cp = CpState {
            count: c.checkpoint,
            prev_line_hash: checkpoint::line_hash(line),
            last_seq: c.last_seq,
            pruned_through: c.pruned_through,
            pruned_head_hash: c.pruned_head_hash,
        };
    }

    let mut segs = segment::list(dir)?;
    if segs.is_empty() {
        // Fresh log, or every segment is gone: continue the chain from the last checkpoint so
        // `verify` reports the missing records instead of silently starting over.
        let first = cp.last_seq + 1;
        segment::create(dir, first)?;
        segs.push((first, dir.join(segment::segment_name(first))));
    }
    let (seg_first, last_path) = segs[segs.len() - 1].clone();
    let (file, seg_len, _) = segment::recover(&last_path, segment::is_record_line)?;

    // Head = last record on disk, searching back past empty segments.
    let mut head: Option<(u64, String, String)> = None;
    for (_, path) in segs.iter().rev() {
        let buf = fs::read(path)?;
        if let Some((_, line)) = segment::lines(&buf).0.last() {
            let r: AuditRecord = serde_json::from_slice(line)?;
            head = Some((r.seq, r.hash, r.ts));
            break;
        }
    }
    let (head_seq, head_hash, last_ts_ms) = match head {
        Some((s, h, ts)) => (s, h, index::ts_ms(&ts)),
        None => (seg_first - 1, if cp.last_seq + 1 == seg_first { cp_head } else { GENESIS_HASH.to_string() }, 0),
    };

    // Open spans as saved at a checkpoint, replayed forward; and the leaves of records not
    // yet covered by a checkpoint. One pass over the tail serves both.
    let (mut spans, spans_from) = match Spans::load(dir) {
        Some((s, through)) if through <= head_seq => (s, through + 1),
        // No usable file: nothing can be open from before the last checkpoint unless the file
        // was removed (see `spans`); an impossible one (past the head) means replay it all.
        Some(_) => (Spans::default(), 1),
        None => (Spans::default(), cp.last_seq + 1),
    };
    let mut pending_hashes = Vec::new();
    for_each_line(&segs, spans_from.min(cp.last_seq + 1), |_, _, line, meta| {
        if meta.seq >= spans_from {
            spans.observe_line(line);
        }
        if meta.seq > cp.last_seq {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(meta.hash, &mut raw).map_err(|e| AuditError::Key(format!("bad hash in log: {e}")))?;
            pending_hashes.push(raw);
        }
        Ok(())
    })?;

    let (builder, indexed_through) = reindex(dir, &segs, idx, head_seq)?;
    Ok(Recovered {
        builder,
        indexed_through,
        writer_parts: WriterParts {
            file,
            seg_first,
            seg_len,
            head_seq,
            head_hash,
            last_ts_ms,
            cp_file,
            cp_len,
            cp,
            pending_hashes,
            spans,
        },
    })
}

/// Call `f(segment, offset, line, meta)` for every record with seq >= `from`, in order.
pub(crate) fn for_each_line(
    segs: &[(u64, std::path::PathBuf)],
    from: u64,
    mut f: impl FnMut(u64, u64, &[u8], &LineMeta) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    // Start at the last segment whose first seq is <= from.
    let start = segs.iter().rposition(|(first, _)| *first <= from).unwrap_or(0);
    for (first, path) in &segs[start..] {
        let buf = fs::read(path)?;
        for (off, line) in segment::lines(&buf).0 {
            let Ok(meta) = serde_json::from_slice::<LineMeta>(line) else { continue };
            if meta.seq >= from {
                f(*first, off as u64, line, &meta)?;
            }
        }
    }
    Ok(())
}

/// Bring the index up to `head_seq`; rebuild from scratch if it describes another log.
/// Returns the open block and the resulting `indexed_through`.
fn reindex(
    dir: &Path,
    segs: &[(u64, std::path::PathBuf)],
    idx: &Index,
    head_seq: u64,
) -> Result<(index::Builder, u64), AuditError> {
    let (through, hash) = idx.indexed_through()?;
    let consistent = through == 0
        || (through <= head_seq
            && read_indexed(dir, idx, through).ok().flatten().is_some_and(|r| Some(&r.hash) == hash.as_ref()));
    let from = if consistent {
        through + 1
    } else {
        tracing::warn!("audit index does not match the log; rebuilding");
        idx.clear()?;
        1
    };
    let mut b = index::Builder::default();
    if from > head_seq {
        return Ok((b, from - 1));
    }
    let t = Instant::now();
    let mut n = 0usize;
    for_each_line(segs, from, |first, off, line, _| {
        let r: AuditRecord = serde_json::from_slice(line)?;
        let len = u32::try_from(line.len()).map_err(|e| AuditError::Key(e.to_string()))?;
        b.add(&r, &Loc { segment: first, offset: off, len, ts_ms: index::ts_ms(&r.ts) });
        n += 1;
        if n.is_multiple_of(4096) {
            idx.apply(&mut b)?;
        }
        Ok(())
    })?;
    idx.apply(&mut b)?;
    tracing::info!(from, to = head_seq, elapsed_ms = t.elapsed().as_millis() as u64, "audit index caught up");
    Ok((b, idx.indexed_through()?.0))
}

/// Read record `seq` through the index alone (nearest anchor, then forward), opening the file;
/// the live reader has a cached, faster path.
pub(crate) fn read_indexed(dir: &Path, idx: &Index, seq: u64) -> Result<Option<AuditRecord>, AuditError> {
    use std::io::{BufRead, BufReader, Seek, SeekFrom};
    let Some((mut at, loc)) = idx.anchor(seq)? else { return Ok(None) };
    let mut f = BufReader::new(fs::File::open(dir.join(segment::segment_name(loc.segment)))?);
    f.seek(SeekFrom::Start(loc.offset))?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if f.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            return Ok(None);
        }
        if at == seq {
            line.pop();
            let r: AuditRecord = serde_json::from_slice(&line)?;
            return Ok((r.seq == seq).then_some(r));
        }
        at += 1;
    }
}

impl Writer {
    /// Assemble the writer from recovered parts.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        p: WriterParts,
        dir: &Path,
        settings: &crate::AuditSettings,
        key: ed25519_dalek::SigningKey,
        indexer: (std::sync::mpsc::Sender<crate::indexer::IndexMsg>, std::thread::JoinHandle<()>),
        shared: std::sync::Arc<crate::writer::Shared>,
        queue: crate::writer::Queue,
        disk: crate::disk::Disk,
    ) -> Writer {
        let key_id = crate::keys::key_id(&key.verifying_key());
        Writer {
            dir: dir.to_path_buf(),
            settings: settings.clone(),
            key,
            key_id,
            file: p.file,
            seg_first: p.seg_first,
            seg_len: p.seg_len,
            head_seq: p.head_seq,
            head_hash: p.head_hash,
            last_ts_ms: p.last_ts_ms,
            cp_file: p.cp_file,
            cp_len: p.cp_len,
            cp: p.cp,
            pending_hashes: p.pending_hashes,
            last_cp: Instant::now(),
            index_tx: Some(indexer.0),
            index_thread: Some(indexer.1),
            shared,
            queue,
            deferred: Vec::new(),
            spans: p.spans,
            disk,
            rotate_to: None,
        }
    }
}

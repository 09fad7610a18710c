//! Segment files (`seg-<first seq, 20 digits>.jsonl`, one record per line) and crash recovery
//! of a torn tail.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Checkpoint file name inside the log directory (one signed checkpoint per line).
pub const CHECKPOINT_FILE: &str = "checkpoints.jsonl";

/// File name of the segment whose first record is `first_seq`.
pub fn segment_name(first_seq: u64) -> String {
    format!("seg-{first_seq:020}.jsonl")
}

/// Segments in `dir` as `(first_seq, path)`, oldest first.
pub fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix("seg-").and_then(|s| s.strip_suffix(".jsonl")) {
            if let Ok(first) = n.parse::<u64>() {
                out.push((first, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// fsync a directory so created/renamed/removed entries survive a power cut.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A line and its byte offset.
pub type Line<'a> = (usize, &'a [u8]);

/// Split a buffer into lines: `(offset, line without '\n')`, plus the torn remainder (bytes
/// after the last newline), if any.
pub fn lines(buf: &[u8]) -> (Vec<Line<'_>>, Option<Line<'_>>) {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = find_newline(&buf[start..]) {
        out.push((start, &buf[start..start + i]));
        start += i + 1;
    }
    let torn = (start < buf.len()).then(|| (start, &buf[start..]));
    (out, torn)
}

/// Index of the first `\n` in `buf`, eight bytes at a time (lines are ~1 KB, so this is
/// a visible part of reading a log).
pub fn find_newline(buf: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const NL: u64 = LO * b'\n' as u64;
    let mut i = 0;
    while i + 8 <= buf.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&buf[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ NL;
        // Classic "has zero byte" test: exact for the lowest zero byte, which is all we need.
        let z = x.wrapping_sub(LO) & !x & HI;
        if z != 0 {
            return Some(i + (z.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    buf[i..].iter().position(|&b| b == b'\n').map(|p| i + p)
}

/// Cut a torn tail off `path` (anything after the last newline, then trailing lines that are not
/// JSON at all, e.g. zero-filled blocks after a power cut) and open it for appending.
/// Complete lines that parse are never removed, even if their hash is wrong: that is evidence
/// for `verify`, not damage to repair; `valid` tells a complete line from garbage. Returns the open file, its length and its buffer.
pub fn recover(path: &Path, valid: fn(&[u8]) -> bool) -> std::io::Result<(File, u64, Vec<u8>)> {
    let mut buf = fs::read(path)?;
    let (ls, torn) = lines(&buf);
    let mut keep = match torn {
        Some((off, _)) => off,
        None => buf.len(),
    };
    for (off, line) in ls.iter().rev() {
        if valid(line) {
            break;
        }
        keep = *off;
    }
    let mut f = OpenOptions::new().read(true).write(true).open(path)?;
    if keep < buf.len() {
        tracing::warn!(file = %path.display(), cut = buf.len() - keep, "audit: truncating torn tail");
        f.set_len(keep as u64)?;
        f.sync_all()?;
        buf.truncate(keep);
    }
    f.seek(SeekFrom::End(0))?;
    Ok((f, keep as u64, buf))
}

/// Create a new, empty segment starting at `first_seq`.
pub fn create(dir: &Path, first_seq: u64) -> std::io::Result<File> {
    let f = OpenOptions::new().create(true).append(true).read(true).open(dir.join(segment_name(first_seq)))?;
    sync_dir(dir)?;
    Ok(f)
}

/// `recover` predicate for segment lines.
pub fn is_record_line(line: &[u8]) -> bool {
    serde_json::from_slice::<crate::record::LineMeta>(line).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_newline_matches_a_plain_search_at_every_position() {
        for len in 0..40 {
            for at in 0..=len {
                let mut buf: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                if at < len {
                    buf[at] = b'\n';
                    // A second newline later must not win.
                    if at + 3 < len {
                        buf[at + 3] = b'\n';
                    }
                }
                assert_eq!(find_newline(&buf), buf.iter().position(|&b| b == b'\n'), "len {len} at {at}");
            }
        }
        // Bytes that differ from '\n' only in the high bit or by borrow must not match.
        assert_eq!(find_newline(&[0x8a, 0x0b, 0x09, 0x00, 0xff, 0x0a]), Some(5));
    }
}

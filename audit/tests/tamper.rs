//! Every kind of tampering makes `verify_dir` fail and name the first bad seq.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use audit::{verify_dir, verify_export, ExportFormat, CHECKPOINT_FILE};

const N: u64 = 50;

/// A fresh 50-record log (checkpoints every 20 records + one on close) in its own temp dir.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    common::build(tmp.path(), N, 20);
    let dir = tmp.path().join("audit");
    let rep = verify_dir(&dir, None);
    assert!(rep.ok, "untouched log must verify: {rep}");
    assert_eq!((rep.records, rep.checkpoints, rep.signed_through), (N, 3, Some(N)));
    (tmp, dir)
}

fn segment(dir: &Path) -> PathBuf {
    dir.join(audit::segment_name(1))
}

fn edit_lines(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let text = fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    f(&mut lines);
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn flip_in_line(path: &Path, line: usize, needle: &str) {
    edit_lines(path, |ls| {
        let l = &mut ls[line];
        let at = l.find(needle).unwrap_or_else(|| panic!("{needle} not in {l}")) + needle.len();
        let mut bytes = l.clone().into_bytes();
        bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
        *l = String::from_utf8(bytes).unwrap();
    });
}

fn assert_bad(dir: &Path, seq: u64) -> audit::VerifyReport {
    let rep = verify_dir(dir, None);
    assert!(!rep.ok, "tampering not detected");
    assert_eq!(rep.first_bad_seq, Some(seq), "{rep}");
    assert!(rep.to_string().contains("FAILED"), "{rep}");
    rep
}

#[test]
fn flipped_byte_in_record_content() {
    let (_t, dir) = fixture();
    flip_in_line(&segment(&dir), 9, "\"reason\":\"");
    assert_bad(&dir, 10);
}

#[test]
fn flipped_byte_in_record_hash() {
    let (_t, dir) = fixture();
    flip_in_line(&segment(&dir), 9, "\"hash\":\"");
    assert_bad(&dir, 10);
}

#[test]
fn flipped_byte_in_prev_hash() {
    let (_t, dir) = fixture();
    flip_in_line(&segment(&dir), 30, "\"prev_hash\":\"");
    assert_bad(&dir, 31);
}

#[test]
fn flipped_byte_in_checkpoint_body() {
    let (_t, dir) = fixture();
    flip_in_line(&dir.join(CHECKPOINT_FILE), 1, "\"merkle_root\":\"");
    let rep = assert_bad(&dir, 21);
    assert_eq!(rep.bad_checkpoint, Some(2));
}

#[test]
fn flipped_byte_in_signature() {
    let (_t, dir) = fixture();
    flip_in_line(&dir.join(CHECKPOINT_FILE), 0, "\"sig\":\"");
    let rep = assert_bad(&dir, 1);
    assert_eq!(rep.bad_checkpoint, Some(1));
}

#[test]
fn deleted_line() {
    let (_t, dir) = fixture();
    edit_lines(&segment(&dir), |ls| {
        ls.remove(14);
    });
    assert_bad(&dir, 15);
}

#[test]
fn duplicated_line() {
    let (_t, dir) = fixture();
    edit_lines(&segment(&dir), |ls| {
        let l = ls[14].clone();
        ls.insert(15, l);
    });
    assert_bad(&dir, 16);
}

#[test]
fn swapped_lines() {
    let (_t, dir) = fixture();
    edit_lines(&segment(&dir), |ls| ls.swap(24, 25));
    assert_bad(&dir, 25);
}

#[test]
fn truncated_tail_below_a_signed_checkpoint() {
    let (_t, dir) = fixture();
    edit_lines(&segment(&dir), |ls| ls.truncate(45));
    assert_bad(&dir, 46);
}

#[test]
fn truncated_in_the_middle_of_a_line() {
    let (_t, dir) = fixture();
    let path = segment(&dir);
    let text = fs::read(&path).unwrap();
    let cut = text.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(29).unwrap().0 + 40;
    fs::write(&path, &text[..cut]).unwrap();
    assert_bad(&dir, 31);
}

#[test]
fn deleted_checkpoint_line() {
    let (_t, dir) = fixture();
    edit_lines(&dir.join(CHECKPOINT_FILE), |ls| {
        ls.remove(1);
    });
    let rep = assert_bad(&dir, 41);
    assert_eq!(rep.bad_checkpoint, Some(3));
}

#[test]
fn deleted_first_checkpoint_line() {
    let (_t, dir) = fixture();
    edit_lines(&dir.join(CHECKPOINT_FILE), |ls| {
        ls.remove(0);
    });
    let rep = assert_bad(&dir, 21);
    assert_eq!(rep.bad_checkpoint, Some(2));
}

#[test]
fn foreign_public_key_rejects_signatures() {
    let (_t, dir) = fixture();
    let other = tempfile::tempdir().unwrap();
    common::build(other.path(), 1, 10);
    let rep = verify_dir(&dir, Some(&other.path().join("audit").join(audit::keys::PUBLIC_KEY_FILE)));
    assert!(!rep.ok);
    assert_eq!(rep.bad_checkpoint, Some(1), "{rep}");
}

#[test]
fn exported_jsonl_verifies_and_detects_tampering() {
    let (_t, dir) = fixture();
    let out = dir.parent().unwrap().join("export.jsonl");
    let mut f = fs::File::create(&out).unwrap();
    assert_eq!(audit::export(&dir, ExportFormat::Jsonl, None, None, &mut f).unwrap(), N);
    drop(f);
    let key = dir.join(audit::keys::PUBLIC_KEY_FILE);
    let rep = verify_export(&out, Some(&key));
    assert!(rep.ok, "{rep}");
    assert_eq!((rep.records, rep.checkpoints), (N, 3));
    flip_in_line(&out, 5, "\"reason\":\"");
    let rep = verify_export(&out, Some(&key));
    assert!(!rep.ok);
    assert_eq!(rep.first_bad_seq, Some(6), "{rep}");

    let mut csv = Vec::new();
    audit::export(&dir, ExportFormat::Csv, None, None, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    assert_eq!(csv.lines().count() as u64, N + 1);
    assert!(csv.starts_with("seq,ts,kind"));
    let tail = audit::tail(&dir, 3).unwrap();
    assert_eq!(tail.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![48, 49, 50]);
}

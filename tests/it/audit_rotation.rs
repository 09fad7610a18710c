//! Signing-key rotation: a log verifies across a rotation (with the stored key history, the
//! auditor's copy of the history, or only the original key, which vouches for its successor),
//! the rotation is an audited record, and a checkpoint signed with the retired key after its
//! retirement, a key no rotation introduced, or a tampered record fail with a clear message.
//! (`clawbutler audit rotate-key` runs `AuditLog::rotate_key` on a stopped sidecar's log.)

use std::fs;
use std::path::{Path, PathBuf};

use audit::keys::{HISTORY_FILE, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE};
use audit::{verify_dir, AuditEvent, AuditLog, AuditQuery, AuditSettings, Checkpoint, RecordKind, CHECKPOINT_FILE};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;

mod common {
    use super::*;

    pub fn open(dir: &Path, settings: &AuditSettings) -> AuditLog {
        let db = storage::Store::open(&dir.join("db")).unwrap();
        AuditLog::open(&dir.join("audit"), settings, &db, &prometheus::Registry::new()).unwrap()
    }

    pub fn event(i: u64) -> AuditEvent {
        AuditEvent {
            agent: Some(format!("agent-{}", i % 4)),
            reason: Some(format!("reason number {i}")),
            subject: serde_json::json!({"model": "gpt-4o", "i": i}),
            ..AuditEvent::new(RecordKind::ModelCall)
        }
    }
}

/// 20 records, a rotation, 20 more; returns the dir and a copy of the original key files.
fn rotated(tmp: &Path) -> (PathBuf, PathBuf, PathBuf, (String, String)) {
    let settings = AuditSettings { checkpoint_every_records: 8, ..AuditSettings::default() };
    let log = common::open(tmp, &settings);
    for i in 1..=20 {
        log.append(common::event(i)).unwrap();
    }
    log.flush().unwrap();
    let dir = tmp.join("audit");
    let old_pub = tmp.join("old-pubkey.pem");
    let old_priv = tmp.join("old-signing.key");
    fs::copy(dir.join(PUBLIC_KEY_FILE), &old_pub).unwrap();
    fs::copy(dir.join(PRIVATE_KEY_FILE), &old_priv).unwrap();
    let ids = log.rotate_key().unwrap();
    for i in 21..=40 {
        log.append(common::event(i)).unwrap();
    }
    log.flush().unwrap();
    // The rotation is an audited event.
    let page = log.search(&AuditQuery { kind: Some(RecordKind::Auth), ..AuditQuery::default() }).unwrap();
    let rec = page.items.iter().find(|r| r.outcome.as_deref() == Some("audit_key_rotated")).expect("rotation record");
    assert_eq!(rec.details["old_key_id"], ids.0.as_str());
    assert_eq!(rec.details["new_key_id"], ids.1.as_str());
    drop(log);
    (dir, old_pub, old_priv, ids)
}

fn checkpoints(dir: &Path) -> Vec<Checkpoint> {
    fs::read_to_string(dir.join(CHECKPOINT_FILE)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn a_log_verifies_across_a_rotation_with_the_history_or_the_original_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, old_pub, _, (old, new)) = rotated(tmp.path());
    assert_ne!(old, new);
    let cps = checkpoints(&dir);
    let rot: Vec<&Checkpoint> = cps.iter().filter(|c| c.next_key.is_some()).collect();
    assert_eq!(rot.len(), 1, "one rotation checkpoint");
    assert_eq!(rot[0].key_id, old, "signed by the retiring key");
    assert_eq!(cps.last().unwrap().key_id, new);

    // The keys stored next to the log (the history).
    let rep = verify_dir(&dir, None);
    assert!(rep.ok, "{rep}");
    assert_eq!(rep.records, 41, "40 records and the rotation record: {rep}");
    assert_eq!(rep.keys_used, vec![old.clone(), new.clone()]);
    assert!(rep.to_string().contains(&format!("{old} -> {new}")), "{rep}");
    // The auditor's copy of the history file.
    let hist = tmp.path().join("auditor-keys.pem");
    fs::copy(dir.join(HISTORY_FILE), &hist).unwrap();
    assert_eq!(fs::read_to_string(&hist).unwrap().matches("BEGIN PUBLIC KEY").count(), 2);
    let rep = verify_dir(&dir, Some(&hist));
    assert!(rep.ok, "{rep}");
    // An export carries the rotation checkpoint too and verifies with the history.
    let exported = tmp.path().join("export.jsonl");
    let mut f = fs::File::create(&exported).unwrap();
    audit::export(&dir, audit::ExportFormat::Jsonl, None, None, &mut f).unwrap();
    drop(f);
    let rep = audit::verify_export(&exported, Some(&hist));
    assert!(rep.ok, "{rep}");
    assert_eq!(rep.keys_used, vec![old.clone(), new.clone()]);
    // Only the original key: the rotation checkpoint it signed vouches for the new key.
    let rep = verify_dir(&dir, Some(&old_pub));
    assert!(rep.ok, "{rep}");
    // Only the new key cannot check what the old one signed.
    let rep = verify_dir(&dir, Some(&dir.join(PUBLIC_KEY_FILE)));
    assert!(!rep.ok);
    assert_eq!(rep.bad_checkpoint, Some(1));
    assert!(rep.errors[0].contains("not among the given public keys"), "{rep}");

    // A restart keeps signing with the new key and the log still verifies.
    let log = common::open(tmp.path(), &AuditSettings::default());
    log.append(common::event(41)).unwrap();
    drop(log);
    let rep = verify_dir(&dir, Some(&old_pub));
    assert!(rep.ok, "{rep}");
    assert_eq!(checkpoints(&dir).last().unwrap().key_id, new);
}

#[test]
fn a_checkpoint_signed_with_the_retired_key_after_its_retirement_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, old_priv, (old, _)) = rotated(tmp.path());
    // Someone holding the retired private key re-signs the last checkpoint with it.
    let old_key = SigningKey::from_pkcs8_pem(&fs::read_to_string(old_priv).unwrap()).unwrap();
    let path = dir.join(CHECKPOINT_FILE);
    let text = fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len();
    let mut last: Checkpoint = serde_json::from_str(&lines[n - 1]).unwrap();
    last.key_id = old.clone();
    let forged = last.sign(&old_key).unwrap();
    lines[n - 1] = String::from_utf8(forged).unwrap().trim_end().to_string();
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let rep = verify_dir(&dir, None);
    assert!(!rep.ok);
    assert_eq!(rep.bad_checkpoint, Some(last.checkpoint));
    assert!(rep.errors[0].contains(&format!("signed with key {old}, which was retired at checkpoint")), "{rep}");

    // Signed with the new key's id but the old key's signature: the signature is refused.
    let mut mixed: Checkpoint = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let id = mixed.key_id.clone();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut line = String::from_utf8(mixed.sign(&old_key).unwrap()).unwrap();
    line.truncate(line.trim_end().len());
    lines[n - 1] = line;
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    let rep = verify_dir(&dir, None);
    assert!(!rep.ok);
    assert!(rep.errors[0].contains(&format!("signature invalid for key {id}")), "{rep}");
}

#[test]
fn a_tampered_record_after_a_rotation_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, _, _) = rotated(tmp.path());
    let seg = dir.join(audit::segment_name(1));
    let text = fs::read_to_string(&seg).unwrap();
    let edited = text.replacen("reason number 30", "reason number 31", 1);
    assert_ne!(text, edited);
    fs::write(&seg, edited).unwrap();
    let rep = verify_dir(&dir, None);
    assert!(!rep.ok);
    assert_eq!(rep.first_bad_seq, Some(31), "{rep}");
}

#[test]
fn a_rotation_a_crash_interrupted_is_finished_or_undone_at_the_next_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _, _, (_, new)) = rotated(tmp.path());
    // A staged key no checkpoint names (the crash came before the rotation checkpoint): removed.
    fs::write(dir.join("audit-signing.key.next"), audit_key_pem()).unwrap();
    let log = common::open(tmp.path(), &AuditSettings::default());
    assert_eq!(audit::keys::key_id(&log.public_key()), new);
    drop(log);
    assert!(!dir.join("audit-signing.key.next").exists());
    assert!(verify_dir(&dir, None).ok);
}

fn audit_key_pem() -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    SigningKey::from_bytes(&[7u8; 32]).to_pkcs8_pem(Default::default()).unwrap().to_string()
}

#[tokio::test]
async fn the_cli_rotates_the_key_of_a_stopped_sidecar_and_refuses_while_it_runs() {
    use clawbutler::app::Sidecar;
    use testkit::rig::SidecarConfig;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = SidecarConfig::new(&data).upstreams("http://127.0.0.1:9");
    let path = tmp.path().join("clawbutler.toml");
    fs::write(&path, cfg.to_toml()).unwrap();
    let rotate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
            .args(["audit", "rotate-key", "--config"])
            .arg(&path)
            .env_remove("CLAWBUTLER_CONFIG")
            .output()
            .unwrap()
    };
    let sidecar = Sidecar::start(cfg.build()).await.unwrap();
    let dir = data.join("audit");
    let original = tmp.path().join("original-pubkey.pem");
    fs::copy(dir.join(PUBLIC_KEY_FILE), &original).unwrap();
    // Two writers must never share the log: refused while the sidecar runs.
    let out = rotate();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop the sidecar first"), "{err}");
    sidecar.shutdown().await;
    let out = rotate();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("audit signing key rotated"), "{text}");
    let rep = verify_dir(&dir, Some(&original));
    assert!(rep.ok, "{rep}");
    assert_eq!(rep.keys_used.len(), 2, "{rep}");
    // The sidecar starts again and signs with the new key.
    let sidecar = Sidecar::start(cfg.build()).await.unwrap();
    sidecar.shutdown().await;
    let rep = verify_dir(&dir, Some(&original));
    assert!(rep.ok, "{rep}");
    assert_eq!(checkpoints(&dir).last().unwrap().key_id, rep.keys_used[1]);
}

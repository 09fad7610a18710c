//! Class 4 (medium): the state store was world-readable (0644 files under a 0755 dir) and held
//! unsalted SHA-256 token hashes, so a copy of it let anyone guess a human-chosen admin token
//! offline. Now the data dir is 0700 and what the sidecar creates is 0600 (umask 077), tokens
//! are HMAC-SHA256 under a per-install key, and tokens hashed the old way keep working (and
//! are re-keyed on first use). Class 6 (low): the first admin token went to stdout (the
//! journal); now it is written to a 0600 file in the data dir.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use clawbutler::app::Sidecar;
use sha2::{Digest, Sha256};
use testkit::http::get;
use testkit::rig::{bearer, SidecarConfig};

use super::{reopen_store, start_again};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file and directory under `dir` (and `dir` itself) with its mode.
fn walk(dir: &Path, out: &mut Vec<(std::path::PathBuf, u32)>) {
    out.push((dir.to_path_buf(), mode(dir)));
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push((p.clone(), mode(&p)));
        }
    }
}

fn legacy(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The keys of the tokens tree of a stopped sidecar's store.
async fn token_keys(data: &Path) -> Vec<String> {
    let db = reopen_store(&data.join("state")).await;
    let t = db.tree(storage::Tree::Tokens).unwrap();
    t.iter().keys().map(|k| String::from_utf8_lossy(&k.unwrap()).into_owned()).collect()
}

#[tokio::test]
async fn nothing_in_the_data_dir_is_readable_by_others_even_after_an_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An install made by an older build: a 0755 data dir with a 0644 file in it.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("old-notes.txt"), "x").unwrap();
    std::fs::set_permissions(data.join("old-notes.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = SidecarConfig::new(&data);
    let sc = Sidecar::start(cfg.build()).await.unwrap();
    let url = format!("http://{}/api/v1/tokens", sc.control_addr);
    let r = testkit::http::post_json(
        &url,
        &bearer(testkit::rig::ADMIN),
        &serde_json::json!({"name": "vee", "role": "viewer"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let secret = r.json()["token"].as_str().unwrap().to_string();
    sc.shutdown().await;

    assert_eq!(mode(&data), 0o700, "the data dir is private (the old file inside is now unreachable)");
    let mut all = Vec::new();
    walk(&data, &mut all);
    assert!(all.len() > 10, "{all:?}");
    let open: Vec<_> = all.iter().filter(|(p, m)| m & 0o077 != 0 && !p.ends_with("old-notes.txt")).collect();
    assert!(open.is_empty(), "readable by group or others: {open:?}");
    assert_eq!(mode(&data.join("token-hmac.key")), 0o600);
    // Tokens are keyed hashes: neither the secret nor its plain SHA-256 is a key.
    let keys = token_keys(&data).await;
    assert!(!keys.iter().any(|k| *k == legacy(&secret) || k.contains(&secret)), "{keys:?}");
    assert!(!keys.iter().any(|k| *k == legacy(testkit::rig::ADMIN)), "{keys:?}");
}

#[tokio::test]
async fn tokens_hashed_by_an_older_build_keep_working_and_are_rekeyed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // What an older build left: a seeded admin token and an approver's, as plain SHA-256.
    let seeded = "an-old-seeded-admin-token";
    let approver = "cbt_0123456789abcdef0123456789abcdef0123456789abcdef";
    {
        let db = storage::Store::open(&data.join("state")).unwrap();
        let t = db.tree(storage::Tree::Tokens).unwrap();
        for (secret, name, role) in [(seeded, "seeded-admin", "admin"), (approver, "old-approver", "approver")] {
            let h = legacy(secret);
            let rec =
                serde_json::json!({"name": name, "role": role, "created_at": "2026-01-01T00:00:00Z", "id": &h[..8]});
            t.insert(h.as_bytes(), serde_json::to_vec(&rec).unwrap()).unwrap();
        }
        db.flush().unwrap();
    }
    let mut cfg = SidecarConfig::new(&data);
    cfg = cfg.no_admin_token().table(&format!("[auth]\nadmin_token = \"{seeded}\""));
    let sc = start_again(cfg.build()).await;
    assert!(sc.first_admin_token.is_none(), "an upgrade is not a first start");
    for (secret, role) in [(seeded, "admin"), (approver, "approver")] {
        let who = get(&format!("http://{}/api/v1/whoami", sc.control_addr), &bearer(secret)).await;
        assert_eq!(who.status, 200, "{}", who.text());
        assert_eq!(who.json()["role"], role);
    }
    let list = get(&format!("http://{}/api/v1/tokens", sc.control_addr), &bearer(seeded)).await.json();
    let names: Vec<&str> = list["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| **n == "seeded-admin").count(), 1, "seeding did not duplicate it: {names:?}");
    sc.shutdown().await;
    // Both were moved to keyed hashes on first use; the plain hashes are gone.
    let keys = token_keys(&data).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(!keys.contains(&legacy(seeded)) && !keys.contains(&legacy(approver)), "{keys:?}");
    // And they still work after a restart.
    let sc = start_again(cfg.build()).await;
    let who = get(&format!("http://{}/api/v1/whoami", sc.control_addr), &bearer(approver)).await;
    assert_eq!(who.json()["role"], "approver");
    sc.shutdown().await;
}

#[tokio::test]
async fn the_first_admin_token_goes_to_a_private_file_not_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = SidecarConfig::new(&data).no_admin_token();
    let sc = Sidecar::start(cfg.build()).await.unwrap();
    let path = sc.first_admin_token_file.clone().expect("a first start writes the token file");
    assert_eq!(path, data.join("first-admin-token"));
    assert_eq!(mode(&path), 0o600);
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert_eq!(Some(token.clone()), sc.first_admin_token);
    let who = get(&format!("http://{}/api/v1/whoami", sc.control_addr), &bearer(&token)).await;
    assert_eq!(who.json()["role"], "admin");
    sc.shutdown().await;
    // Not a first start any more: no new token, the file is left as the operator left it.
    std::fs::remove_file(&path).unwrap();
    let sc = start_again(cfg.build()).await;
    assert!(sc.first_admin_token_file.is_none() && !path.exists());
    sc.shutdown().await;
}

//! A sidecar that dies (SIGKILL) with a call held: on the next start the orphaned approval is
//! `cancelled` by `system` (recorded), never allowed, and deciding it is refused. A clean
//! shutdown answers held callers at once.

use std::process::{Command, Stdio};
use std::time::Duration;

use clawbutler::app::Sidecar;
use serde_json::json;
use testkit::http::{get, post_json};
use testkit::rig::{bearer, bundle_dir, reply_text, Rig, SidecarConfig, ADMIN, HOLD_RULE};
use testkit::upstream::ScriptedUpstream;

use testkit::openclaw::free_port;

#[tokio::test]
async fn restart_cancels_orphaned_approvals() {
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), &[("zz_test_hold.rego", HOLD_RULE)]);
    let (dp, cp) = (free_port(), free_port());
    let data = dir.path().join("data");
    let base = SidecarConfig::new(&data).upstreams(&up.base_url()).policy_dir(&bundle);
    let cfg = base.clone().listen(&format!("127.0.0.1:{dp}"), &format!("127.0.0.1:{cp}")).to_toml();
    let cfg_path = dir.path().join("clawbutler.toml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clawbutler"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let control = format!("http://127.0.0.1:{cp}");
    let mut up_ok = false;
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(("127.0.0.1", cp)).await.is_ok() {
            up_ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up_ok, "sidecar did not start");
    let url = format!("http://127.0.0.1:{dp}/a/main/fake/v1/chat/completions");
    let body = testkit::rig::chat("needs-approval-1", "held across a crash");
    let held = tokio::spawn(async move { post_json(&url, &[], &body).await });
    let mut id = None;
    for _ in 0..300 {
        let r = get(&format!("{control}/api/v1/approvals?status=pending"), &bearer(ADMIN)).await;
        if let Some(a) = r.json()["items"].as_array().and_then(|v| v.first().cloned()) {
            id = a["id"].as_str().map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = id.expect("no pending approval");
    // Let the creation reach the disk (the hold flushes the store as it starts waiting; its
    // `created` record goes in the next group commit), then crash.
    let created = || async {
        let recs = get(&format!("{control}/api/v1/audit?kind=approval&limit=100"), &bearer(ADMIN)).await.json();
        recs["items"].as_array().into_iter().flatten().any(|r| r["outcome"] == "created")
    };
    testkit::wait::until("the hold's created record", Duration::from_secs(10), created).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    held.abort();

    let sidecar = Sidecar::start(base.build()).await.unwrap();
    let c = |p: &str| format!("http://{}{}", sidecar.control_addr, p);
    let a = get(&c(&format!("/api/v1/approvals/{id}")), &bearer(ADMIN)).await.json();
    assert_eq!(a["status"], "cancelled", "{a}");
    assert_eq!(a["decided_by"], "system");
    assert!(a["decision_reason"].as_str().unwrap().contains("restarted"));
    let r = post_json(
        &c(&format!("/api/v1/approvals/{id}/decision")),
        &bearer(ADMIN),
        &json!({"decision": "allow-once", "expected_version": a["version"]}),
    )
    .await;
    assert_eq!(r.status, 409, "an orphan can never be allowed: {}", r.text());
    let recs = get(&c("/api/v1/audit?kind=approval&limit=100"), &bearer(ADMIN)).await.json();
    let cancelled = recs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "cancelled" && r["details"]["approval"]["id"] == id.as_str())
        .count();
    assert_eq!(cancelled, 1);
    assert_eq!(up.request_count(), 0);
    sidecar.shutdown().await;
}

#[tokio::test]
async fn clean_shutdown_answers_held_callers_at_once() {
    let rig = Rig::holding("", "").await;
    let held = rig.call("main", "needs-approval-1", "held at shutdown");
    rig.wait_pending("main", 1).await;
    let t0 = std::time::Instant::now();
    let Rig { sidecar, up, dir: _dir, .. } = rig;
    sidecar.shutdown().await;
    let res = tokio::time::timeout(Duration::from_secs(3), held).await.unwrap().unwrap();
    assert!(reply_text(&res.json()).contains("cancelled"), "{}", res.text());
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert_eq!(up.request_count(), 0);
}

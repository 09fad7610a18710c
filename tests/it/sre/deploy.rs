//! The deployment files: the hardened systemd unit (verified and scored by
//! `systemd-analyze`), the sidecar's sd_notify readiness under `Type=notify`, and the
//! Kubernetes manifests (`deploy/kubernetes/`).

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::http::get;
use testkit::rig::SidecarConfig;

use super::{repo, run, tool};

const BIN: &str = env!("CARGO_BIN_EXE_clawbutler");

/// The lowest (best) exposure `systemd-analyze security` gives the unit; measured 1.2.
const MAX_EXPOSURE: f64 = 2.0;

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(repo().join("deploy/clawbutler.service")).unwrap();
    for line in [
        "Type=notify",
        "NoNewPrivileges=true",
        "CapabilityBoundingSet=\n",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "ReadWritePaths=/var/lib/clawbutler",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=true",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(unit.contains(line), "deploy/clawbutler.service lacks {line:?}");
    }
    let Some(analyze) = tool("systemd_unit_verifies_and_is_hardened", "systemd-analyze") else { return };
    // The unit as installed, with ExecStart pointing at the binary this test run built.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clawbutler.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/clawbutler", BIN)).unwrap();
    let (ok, out) = run(Command::new(&analyze).arg("verify").arg(&path));
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify:\n{out}");
    let (_, out) = run(Command::new(&analyze).args(["security", "--offline=true", "--no-pager"]).arg(&path));
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for clawbutler.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}:\n{out}");
}

/// Receive one datagram from the notify socket (up to 30 s).
fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf).expect("no sd_notify message within 30 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn the_binary_reports_readiness_and_stopping_over_sd_notify() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("clawbutler.toml");
    std::fs::write(&cfg, SidecarConfig::new(&dir.path().join("data")).to_toml()).unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("CLAWBUTLER_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = recv(&sock);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains(&format!("MAINPID={}", child.id())), "{ready}");
    // READY means serving: the control listener named in STATUS answers at once.
    let control = ready.split("control on ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
    let control = control.trim_end_matches(',');
    assert_eq!(get(&format!("http://{control}/readyz"), &[]).await.status, 200, "{ready}");
    assert_eq!(get(&format!("http://{control}/livez"), &[]).await.status, 200);

    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let stopping = recv(&sock);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
}

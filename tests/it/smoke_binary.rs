//! The real `clawbutler` binary: zero-config start (the first admin token in a private file,
//! never on stdout), refusal of a port in use and of unknown config keys, and a clean
//! shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testkit::http::get;

const BIN: &str = env!("CARGO_BIN_EXE_clawbutler");

fn clawbutler(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).env_remove("CLAWBUTLER_CONFIG").env_remove("CLAWBUTLER_ADMIN_TOKEN");
    for (k, _) in std::env::vars() {
        if k.starts_with("CLAWBUTLER_") && k != "CLAWBUTLER_E2E" {
            c.env_remove(k);
        }
    }
    c
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's stdout lines, read on a thread so the child never blocks on a full pipe.
struct Lines {
    rx: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// Wait up to 30 s for a line containing `needle`.
    fn wait(&mut self, needle: &str) -> Option<String> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some(l.clone());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(l) = self.rx.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(l.clone());
                if l.contains(needle) {
                    return Some(l);
                }
            }
        }
        None
    }
}

#[tokio::test]
async fn zero_config_start_port_in_use_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut child =
        clawbutler(dir.path(), &["serve"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn binary");
    let mut lines = Lines::of(&mut child);
    let mut p = Proc(child);
    let ready = lines.wait("ready").unwrap_or_else(|| panic!("no ready line; stdout: {:?}", lines.seen));
    assert!(ready.contains("127.0.0.1:8787") && ready.contains("127.0.0.1:8788"), "{ready}");
    assert!(dir.path().join("clawbutler-data").is_dir(), "default data dir not created");
    // First start writes an admin token to a private file in the data dir and prints only
    // the file's path (stdout ends up in the journal).
    let token_line = lines.wait("admin token in").unwrap_or_else(|| panic!("no admin token line: {:?}", lines.seen));
    let path = dir.path().join("clawbutler-data").join("first-admin-token");
    assert!(token_line.contains(&*path.file_name().unwrap().to_string_lossy()), "{token_line}");
    let token = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(token.starts_with("cbt_"), "{token}");
    assert!(lines.seen.iter().all(|l| !l.contains(&token)), "the token reached stdout: {:?}", lines.seen);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let data_mode = std::fs::metadata(dir.path().join("clawbutler-data")).unwrap().permissions().mode() & 0o777;
    assert_eq!(data_mode, 0o700);
    let ready = get("http://127.0.0.1:8788/readyz", &[]).await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    let pol = get("http://127.0.0.1:8788/api/v1/policies", &[("authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(pol.status, 200, "{}", pol.text());
    let unauth = get("http://127.0.0.1:8788/api/v1/policies", &[]).await;
    assert_eq!(unauth.status, 401);
    assert_eq!(unauth.header("content-type"), Some("application/problem+json"));

    // A second instance on the same ports is refused, naming the address.
    let second = clawbutler(dir.path(), &["serve", "--data-dir", "other"]).output().unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("127.0.0.1:8787") && err.contains("server.listen"), "{err}");

    // SIGTERM shuts down cleanly.
    let pid = p.0.id();
    // kill(1) on the pid of the child this test spawned (no unsafe FFI needed).
    let sent = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(sent.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");

    // Unknown keys and bad addresses are refused with the key's name.
    std::fs::write(dir.path().join("bad.toml"), "[server]\nlisten = \"127.0.0.1:0\"\ncolour = \"blue\"\n").unwrap();
    let out = clawbutler(dir.path(), &["serve", "--config", "bad.toml"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.path().join("bad2.toml"), "[server]\ncontrol_listen = \"nowhere\"\n").unwrap();
    let out = clawbutler(dir.path(), &["serve", "--config", "bad2.toml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.control_listen") && err.contains("nowhere"), "{err}");
}

//! `[log] format = "json"`: the real binary logs one JSON object per line to stderr, and a
//! data-path call's lines carry its W3C trace id (from `traceparent`) in the `call` span.
//! The default text format carries it too, and writes no colour codes into a pipe.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::http::post_json;
use testkit::rig::SidecarConfig;

const BIN: &str = env!("CARGO_BIN_EXE_clawbutler");
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The sidecar (`[log]` table `log`, upstream on a dead port) with stderr piped into a channel
/// of lines; its data and control addresses.
struct Logging {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    data: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

fn start(log: &str) -> Logging {
    let dir = tempfile::tempdir().unwrap();
    // Upstreams on a port nobody listens on: the call fails with a logged warning.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // Below the ephemeral range: the sidecar binds them a moment later.
    let data = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::openclaw::free_port()));
    let control = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::openclaw::free_port()));
    let cfg = SidecarConfig::new(&dir.path().join("data"))
        .listen(&data.to_string(), &control.to_string())
        .upstreams(&format!("http://{dead}"))
        .table(log);
    let path = dir.path().join("clawbutler.toml");
    std::fs::write(&path, cfg.to_toml()).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("CLAWBUTLER_LOG", "info")
        .env_remove("CLAWBUTLER_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(control).is_err() {
        assert!(Instant::now() < deadline, "sidecar did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Logging { child, lines: rx, data, _dir: dir }
}

/// Two failing calls with `TRACE` as their trace id (each logs a warning).
async fn two_failing_calls(data: std::net::SocketAddr) {
    let traceparent = format!("00-{TRACE}-00f067aa0ba902b7-01");
    // Two calls: each logs its failure, so several lines must each be one JSON object.
    for _ in 0..2 {
        let r = post_json(
            &format!("http://{data}/a/main/fake/v1/chat/completions"),
            &[("traceparent", &traceparent)],
            &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        assert!(r.status.is_server_error(), "{}", r.status);
        assert_eq!(r.header("x-clawbutler-trace-id"), Some(TRACE));
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_calls_trace_id() {
    let Logging { mut child, lines: rx, data, _dir } = start("[log]\nformat = \"json\"");
    two_failing_calls(data).await;
    let mut lines: Vec<Value> = Vec::new();
    let mut found = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while found.len() < 2 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
            assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
            if v["span"]["trace_id"] == TRACE {
                found.push(v.clone());
            }
            lines.push(v);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(found.len(), 2, "one log line per failed call with the calls' trace id: {lines:#?}");
    for line in &found {
        assert_eq!(line["span"]["name"], "call");
        assert_eq!(line["level"], "WARN", "{line}");
    }
}

#[tokio::test]
async fn text_logs_carry_the_calls_trace_id_and_no_colour_codes_in_a_pipe() {
    let Logging { mut child, lines: rx, data, _dir } = start("");
    two_failing_calls(data).await;
    let mut lines: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let span = format!("call{{trace_id={TRACE}}}");
    while lines.iter().filter(|l| l.contains(&span)).count() < 2 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let calls: Vec<&String> = lines.iter().filter(|l| l.contains(&span)).collect();
    assert_eq!(calls.len(), 2, "one line per failed call, in the call's span: {lines:#?}");
    assert!(calls.iter().all(|l| l.contains("WARN") && l.contains("call failed")), "{calls:#?}");
    // stderr is a pipe here, as under systemd, a container runtime or a log shipper.
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "colour codes in piped logs: {lines:#?}");
}

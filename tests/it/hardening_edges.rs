//! Issue #12, the edges: each class of finding written as an attacker on the same host would
//! try it (a local process, a web page in the operator's browser, a viewer-role token), with
//! the exact reproduction from the issue and variants, asserting the documented behaviour
//! (`docs/security.md`). One submodule per class; helpers for raw HTTP here.

mod api_errors;
mod config;
mod cross_site;
mod framing;
mod listeners;
mod sse;
mod store;
mod tokens;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw socket.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    /// The head, lowercased.
    pub head: String,
    pub body: String,
}

impl Raw {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let want = format!("{}:", name.to_ascii_lowercase());
        self.head.lines().find_map(|l| l.strip_prefix(&want).map(|v| v.trim().to_string()))
    }
}

/// Parse everything a server sent on one connection (one response).
pub fn parse(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head in {text:?}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"));
    Raw { status, head: head.to_ascii_lowercase(), body: body.to_string() }
}

/// Read until the server closes (or resets after its answer), within `wait`.
pub async fn read_all(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return out,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no end of response within {wait:?}; got {:?}", String::from_utf8_lossy(&out)),
        }
    }
}

/// Send `req` as is on a new connection and read the whole answer.
pub async fn raw(addr: SocketAddr, req: &[u8]) -> Raw {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    parse(&read_all(&mut s, Duration::from_secs(20)).await)
}

/// A request head with `connection: close`, and `body`.
pub fn request(method: &str, path: &str, host: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut r =
        format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

/// One sample of a gauge on `/metrics` (`series` is the name with its labels, as printed).
pub async fn gauge(rig: &testkit::rig::Rig, series: &str) -> i64 {
    let text = rig.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no series {series} in /metrics"))
}

/// Wait until `series` reads `want`, up to `wait`; returns the last value read.
pub async fn wait_gauge(rig: &testkit::rig::Rig, series: &str, want: i64, wait: Duration) -> i64 {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let v = gauge(rig, series).await;
        if v == want || tokio::time::Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CPU time (user + system, all threads) this test process has used, from /proc/self/stat
/// (fields 14 and 15, in USER_HZ = 100 ticks a second on Linux).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The command name (field 2) may hold spaces; count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
    Duration::from_millis((f[11] + f[12]) * 10)
}

/// The state store of a sidecar that was just shut down. The budget ledger's flusher thread
/// (`governance::budget::ledger`, detached) lets go of the store a moment after `shutdown`
/// returns; under load that moment shows as "could not acquire lock", so retry briefly.
pub async fn reopen_store(state: &std::path::Path) -> storage::Store {
    for _ in 0..100 {
        match storage::Store::open(state) {
            Ok(s) => return s,
            Err(e) if e.to_string().contains("could not acquire lock") => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the store at {} stayed locked after shutdown", state.display());
}

/// Start a sidecar on a data dir that was just shut down (see [`reopen_store`]).
pub async fn start_again(cfg: clawbutler::config::Config) -> clawbutler::app::Sidecar {
    drop(reopen_store(&cfg.server.data_dir.join("state")).await);
    clawbutler::app::Sidecar::start(cfg).await.unwrap()
}

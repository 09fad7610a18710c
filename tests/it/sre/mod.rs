//! Ready for SREs (issue #18): the shipped Prometheus rules (`deploy/prometheus/`), the
//! Grafana dashboard (`deploy/grafana/`), metric hygiene, and the deployment files
//! (`deploy/kubernetes/`, the systemd unit, the Containerfile).
//!
//! The live tests run a real Prometheus (Debian's `prometheus` package, which also ships
//! `promtool`) on loopback, scraping a sidecar started from `testkit::rig`. Without the package
//! they print a notice and pass, unless `CLAWBUTLER_E2E=1`, which makes its absence a failure;
//! `scripts/install-sre-tools.sh` installs it.

mod dashboard;
mod deploy;
mod live;
mod logs;
mod otlp;
mod rules;
mod traces;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::http::get;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `deploy/prometheus/`.
pub fn rules_dir() -> PathBuf {
    repo().join("deploy/prometheus")
}

/// `/usr/bin/<tool>` if installed; `None` after a skip notice; panics under `CLAWBUTLER_E2E=1`.
pub fn tool(test: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        let msg = format!("{test}: `{name}` is missing (run scripts/install-sre-tools.sh)");
        assert!(!testkit::openclaw::e2e_required(), "{msg}; CLAWBUTLER_E2E=1 makes this a failure");
        eprintln!("SKIPPED {msg}");
    }
    found
}

/// Run a command; returns (success, stdout + stderr).
pub fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A real Prometheus server on loopback scraping one sidecar's control listener every
/// second, evaluating the shipped rule files every second. Killed on drop.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Start it scraping `target` (`host:port`) as job `clawbutler`; waits until it is ready.
    pub async fn start(binary: &Path, target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = rules_dir();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {r}/clawbutler.rules.yml\n  - {r}/clawbutler-features.rules.yml\n\
             scrape_configs:\n  - job_name: clawbutler\n    static_configs:\n      - targets: ['{target}']\n",
            r = rules.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        // A free port below the ephemeral range (Prometheus takes an address, not a listener).
        let addr = SocketAddr::from(([127, 0, 0, 1], testkit::openclaw::free_port()));
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut p = Prometheus { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("prometheus exited at start: {status}");
            }
            if TcpStream::connect(addr).is_ok() && get(&p.url("/-/ready"), &[]).await.status == 200 {
                return p;
            }
            assert!(Instant::now() < deadline, "prometheus not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET /api/v1/query` for an instant query; the whole JSON answer (status may be "error").
    pub async fn query_raw(&self, promql: &str) -> Value {
        get(&self.url(&format!("/api/v1/query?query={}", encode(promql))), &[]).await.json()
    }

    /// The result vector of an instant query (panics on a query error).
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let v = self.query_raw(promql).await;
        assert_eq!(v["status"], "success", "query {promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Poll `promql` until `ok` holds for its result (every 250 ms, up to `secs`).
    pub async fn wait_for(&self, promql: &str, secs: u64, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.query(promql).await;
            if ok(&r) {
                return r;
            }
            assert!(Instant::now() < deadline, "{promql}: condition not met within {secs} s; last result {r:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Alerts as Prometheus reports them (`GET /api/v1/alerts`).
    pub async fn alerts(&self) -> Vec<Value> {
        let v = get(&self.url("/api/v1/alerts"), &[]).await.json();
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    }

    /// Wait until an alert named `name` whose labels contain `labels` is firing.
    pub async fn wait_firing(&self, name: &str, labels: &[(&str, &str)], secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let all = self.alerts().await;
            let hit = all.iter().find(|a| {
                a["labels"]["alertname"] == name
                    && a["state"] == "firing"
                    && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
            });
            if let Some(a) = hit {
                return a.clone();
            }
            assert!(Instant::now() < deadline, "alert {name} {labels:?} not firing within {secs} s; alerts: {all:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encode a query-string value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The single value of a one-sample vector result.
pub fn value(r: &[Value]) -> f64 {
    assert_eq!(r.len(), 1, "expected one sample: {r:?}");
    r[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// Metric families served in a Prometheus text scrape (`# TYPE` lines).
pub fn families(scrape: &str) -> std::collections::BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

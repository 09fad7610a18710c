//! A synchronous-quorum PostgreSQL cluster on loopback for failover tests: a primary with
//! `synchronous_standby_names = 'ANY 1 (...)'` and hot standbys made by `pg_basebackup`, each
//! a [`PgCluster`] (its own temp dir, port and postmaster, stopped on drop). A crash is a
//! SIGKILL of the primary's postmaster; a failover promotes the standby furthest ahead (the
//! one an HA manager such as Patroni picks) and points the others at it.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{find_bin, PgCluster};
use crate::openclaw::e2e_required;

/// Settings that make every commit wait for one standby of `names` to have flushed it.
fn quorum_conf(names: &[&str]) -> String {
    format!(
        "synchronous_commit = on\nsynchronous_standby_names = 'ANY 1 ({})'\nwal_level = replica\n\
         max_wal_senders = 10\nhot_standby = on\nwal_keep_size = 64MB\nwal_receiver_status_interval = 1s\n\
         wal_retrieve_retry_interval = 200ms\n",
        names.join(", ")
    )
}

/// A primary and its synchronous-quorum standbys.
pub struct Replicated {
    pub primary: PgCluster,
    /// By name (each standby's `application_name`).
    pub standbys: Vec<(String, PgCluster)>,
}

impl Replicated {
    /// A primary and one standby per name, all streaming and counted by the quorum; or `None`
    /// after a skip notice (a failure when `CLAWBUTLER_E2E=1`).
    pub fn start_or_skip(test: &str, names: &[&str]) -> Option<Replicated> {
        let Some(bin) = find_bin() else {
            assert!(!e2e_required(), "{test}: CLAWBUTLER_E2E=1 but PostgreSQL is not installed");
            eprintln!("SKIPPED {test}: PostgreSQL is not installed (run scripts/install-postgres.sh)");
            return None;
        };
        let primary = PgCluster::start_with(&bin, &quorum_conf(names));
        let standbys: Vec<(String, PgCluster)> =
            names.iter().map(|n| (n.to_string(), standby_of(&primary, &bin, n))).collect();
        let r = Replicated { primary, standbys };
        r.wait_quorum(&r.primary, names.len());
        Some(r)
    }

    /// `database_url` naming every node, connecting only to the one that accepts writes.
    pub fn url(&self) -> String {
        let ports: Vec<String> = std::iter::once(self.primary.port)
            .chain(self.standbys.iter().map(|(_, s)| s.port))
            .map(|p| p.to_string())
            .collect();
        let hosts = vec!["127.0.0.1"; ports.len()].join(",");
        format!(
            "host={hosts} port={} user=postgres dbname=postgres sslmode=disable target_session_attrs=read-write \
             connect_timeout=2",
            ports.join(",")
        )
    }

    /// Wait until `node` has `n` standbys streaming in its quorum.
    pub fn wait_quorum(&self, node: &PgCluster, n: usize) {
        let t0 = Instant::now();
        loop {
            let c = node.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('quorum', 'sync')");
            if c.trim() == n.to_string() {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "{n} standbys never joined the quorum: {c}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL the primary's postmaster (its backends exit when they see it gone).
    pub fn crash_primary(&mut self) {
        let pid = self.primary.pid.to_string();
        let _ = std::process::Command::new("kill").args(["-KILL", &pid]).status();
        let t0 = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.primary.pid = 0;
    }

    /// Promote the standby that received the most WAL and point the others at it (they follow
    /// the new timeline); returns its index in `standbys`.
    pub fn fail_over(&self) -> usize {
        let lsn = |s: &PgCluster| {
            s.psql("SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), '0/0')::bigint").trim().parse::<i64>().unwrap()
        };
        let best = (0..self.standbys.len()).max_by_key(|&i| lsn(&self.standbys[i].1)).unwrap();
        let new = &self.standbys[best].1;
        new.run("pg_ctl", &["-D", &new.data(), "-w", "-t", "30", "promote"]);
        for (i, (name, s)) in self.standbys.iter().enumerate() {
            if i != best {
                s.psql(&format!(
                    "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port={} user=postgres application_name={name}'",
                    new.port
                ));
                s.psql("SELECT pg_reload_conf()");
            }
        }
        best
    }
}

/// A hot standby of `primary` named `name`, streaming from it.
fn standby_of(primary: &PgCluster, bin: &Path, name: &str) -> PgCluster {
    let mut pg = PgCluster::unstarted(bin);
    let (data, port) = (pg.data(), pg.port);
    let conninfo = format!("host=127.0.0.1 port={} user=postgres application_name={name}", primary.port);
    pg.run("pg_basebackup", &["-d", &conninfo, "-D", &data, "-X", "stream", "-R", "--no-sync"]);
    let conf = format!(
        "\nport = {port}\nunix_socket_directories = '{}'\nprimary_conninfo = '{conninfo}'\n",
        pg.dir.path().display()
    );
    // postgresql.auto.conf is read last: the standby's own settings go there.
    let auto = Path::new(&data).join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&conf);
    std::fs::write(&auto, text).unwrap();
    pg.launch();
    pg
}

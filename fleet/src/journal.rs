//! The lease journal (docs/fleet.md "A sidecar that dies holding leases"): what each open
//! fleet-budget lease of this sidecar has used, so a sidecar killed while holding leases
//! (SIGKILL, OOM, a panic) settles them when it starts again and the unused part goes back to
//! the fleet once, instead of staying charged in full until the window ends.
//!
//! One append-only text file per run (and per rotation) in `<data_dir>/fleet-leases/`:
//! a header `boot <machine boot id>`, then `<lease id>\t<nano-USD>` (the lease's use so far
//! plus the worst cases of its calls in flight) and `<lease id>\tdone` (settled). The last
//! line of a lease wins. Invariants:
//! - A call is carved out of a lease only once its record is written (a plain `write(2)`:
//!   it survives the process, not the machine), so the last record of a lease is never below
//!   what the lease may have spent: calls in flight when the process died count in full.
//! - Records written on another boot of the machine may have been lost with the page cache:
//!   such files are not trusted (their leases stay charged in full, as without a journal).
//! - At start the earlier runs' unsettled leases are copied into this run's file (synced)
//!   before the old files go, so a crash during start loses nothing.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::FleetError;

/// Rotate once the file is past this size (a few records per call).
const ROTATE_BYTES: u64 = 4 << 20;

struct Current {
    file: File,
    path: PathBuf,
    bytes: u64,
}

/// This run's journal.
pub(crate) struct Journal {
    dir: PathBuf,
    boot: String,
    run: u128,
    seq: AtomicU64,
    current: Mutex<Current>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io(path: &Path, e: std::io::Error) -> FleetError {
    FleetError::Journal(format!("{}: {e}", path.display()))
}

/// The machine's boot id (Linux); elsewhere none, and earlier runs' files are not trusted.
fn machine_boot() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// An earlier run's lease: its id and the micro-USD to settle it with.
pub(crate) type Carried = (String, i64);

impl Journal {
    /// Open `dir`, read the earlier runs' files and start this run's (`run` orders the files:
    /// it grows from run to run). Returns the earlier runs' unsettled leases.
    pub(crate) fn open(dir: &Path, run: u128) -> Result<(Journal, Vec<Carried>), FleetError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let mut old: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        old.sort();
        let boot = machine_boot();
        let mut last: BTreeMap<String, Option<u64>> = BTreeMap::new();
        for path in &old {
            let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
            let mut lines = text.split_inclusive('\n');
            let header = lines.next().map(|h| h.trim_end());
            let trusted = !boot.is_empty() && header.and_then(|h| h.strip_prefix("boot ")) == Some(boot.as_str());
            if !trusted {
                tracing::warn!(file = %path.display(), "fleet lease journal of another boot: its leases stay charged in full");
                continue;
            }
            for line in lines {
                // A torn last line (the process died mid-write) is ignored: its call was not
                // admitted yet (a record is written before its call is carved).
                let Some(line) = line.strip_suffix('\n') else { continue };
                let Some((id, v)) = line.split_once('\t') else { continue };
                match v {
                    "done" => {
                        last.insert(id.to_string(), None);
                    }
                    n => {
                        if let Ok(n) = n.parse::<u64>() {
                            last.insert(id.to_string(), Some(n));
                        }
                    }
                }
            }
        }
        let carried: Vec<Carried> =
            last.into_iter().filter_map(|(id, v)| v.map(|n| (id, crate::leases::micro_up(n)))).collect();
        let current = Mutex::new(Self::create(dir, run, 0)?);
        let journal = Journal { dir: dir.to_path_buf(), boot, run, seq: AtomicU64::new(0), current };
        {
            let mut c = lock(&journal.current);
            for (id, micro) in &carried {
                let line = format!("{id}\t{}\n", (*micro as u64).saturating_mul(1_000));
                Self::append(&mut c, &line, &journal.boot)?;
            }
            c.file.sync_all().map_err(|e| io(&c.path, e))?;
        }
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        for path in old {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "fleet lease journal: an old file stays");
            }
        }
        Ok((journal, carried))
    }

    fn create(dir: &Path, run: u128, seq: u64) -> Result<Current, FleetError> {
        let path = dir.join(format!("{run:032x}-{seq:08}.log"));
        let file = OpenOptions::new().create_new(true).append(true).open(&path).map_err(|e| io(&path, e))?;
        Ok(Current { file, path, bytes: 0 })
    }

    fn append(c: &mut Current, line: &str, boot: &str) -> Result<(), FleetError> {
        if c.bytes == 0 {
            let header = format!("boot {boot}\n");
            c.file.write_all(header.as_bytes()).map_err(|e| io(&c.path, e))?;
            c.bytes += header.len() as u64;
        }
        c.file.write_all(line.as_bytes()).map_err(|e| io(&c.path, e))?;
        c.bytes += line.len() as u64;
        Ok(())
    }

    /// Lease `id` may have used up to `nanos` (use so far + worst cases in flight).
    pub(crate) fn record(&self, id: &str, nanos: u64) -> Result<(), FleetError> {
        Self::append(&mut lock(&self.current), &format!("{id}\t{nanos}\n"), &self.boot)
    }

    /// Lease `id` is settled: nothing of it is carried into a next run.
    pub(crate) fn done(&self, id: &str) {
        if let Err(e) = Self::append(&mut lock(&self.current), &format!("{id}\tdone\n"), &self.boot) {
            // Harmless: a repeated settle changes nothing.
            tracing::debug!(error = %e, "fleet lease journal: settle not recorded");
        }
    }

    /// When the file is large, start a new one: `snapshot` then records every lease still
    /// open or waiting for its settle (through [`Journal::record`], so a concurrent record
    /// lands in the new file too), and the old file goes.
    pub(crate) fn rotate_if_big(&self, snapshot: impl FnOnce()) {
        if lock(&self.current).bytes < ROTATE_BYTES {
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let next = match Self::create(&self.dir, self.run, seq) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "fleet lease journal: rotation failed; appending on");
                return;
            }
        };
        let old = std::mem::replace(&mut *lock(&self.current), next);
        snapshot();
        if let Err(e) = std::fs::remove_file(&old.path) {
            tracing::warn!(file = %old.path.display(), error = %e, "fleet lease journal: an old file stays");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cb-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_last_record_of_an_unsettled_lease_is_carried_into_the_next_run_once() {
        let d = dir("carry");
        let (j, carried) = Journal::open(&d, 1).unwrap();
        assert!(carried.is_empty());
        j.record("a.1", 0).unwrap();
        j.record("a.1", 2_500).unwrap();
        j.record("a.2", 1_000).unwrap();
        j.done("a.2");
        j.record("a.3", 7_000).unwrap();
        j.record("a.3", 4_000).unwrap();
        drop(j);
        std::fs::OpenOptions::new()
            .append(true)
            .open(d.join(format!("{:032x}-{:08}.log", 1u128, 0)))
            .unwrap()
            .write_all(b"a.4\t12")
            .unwrap(); // a torn last line
        let (j, carried) = Journal::open(&d, 2).unwrap();
        // Rounded up to micro-USD; the torn line is not a record.
        assert_eq!(carried, vec![("a.1".into(), 3), ("a.3".into(), 4)]);
        j.done("a.1");
        j.done("a.3");
        drop(j);
        let (_, carried) = Journal::open(&d, 3).unwrap();
        assert!(carried.is_empty(), "{carried:?}");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "old files go");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_of_another_boot_is_not_trusted() {
        let d = dir("boot");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("0-0.log"), "boot not-this-one\nx.1\t5000\n").unwrap();
        let (_, carried) = Journal::open(&d, 1).unwrap();
        assert!(carried.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}

//! The disk under the log: every write and fsync of a segment or checkpoint goes through
//! [`Disk`], which also reads free space (`statvfs`). In production it is the real
//! filesystem. [`FaultyDisk`] is a test double with a virtual free-space counter that fills
//! like a real filesystem would (a write that does not fit writes what fits, leaving a torn
//! tail, and fails with `ENOSPC`) and can fail writes or fsyncs with any OS error; set it as
//! `AuditSettings::test_disk` to drive the writer's outage handling where no small
//! filesystem can be mounted. The disk monitor thread samples free space for the gauges and
//! the low-space warning.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::health::bytes;
use crate::writer::Shared;
use crate::AuditSettings;

/// A filesystem that fills on demand (see the module docs). Share it with `Arc`.
#[derive(Debug)]
pub struct FaultyDisk {
    total: AtomicU64,
    free: AtomicU64,
    /// errno every write fails with (0: none).
    write_errno: AtomicI32,
    /// fsyncs still to fail with `EIO`.
    failing_syncs: AtomicU64,
    /// Writes refused so far (any reason).
    refused: AtomicU64,
}

impl PartialEq for FaultyDisk {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

const ENOSPC: i32 = 28;
const EIO: i32 = 5;

impl FaultyDisk {
    /// A filesystem of `total` bytes with `free` of them free.
    pub fn new(total: u64, free: u64) -> Arc<FaultyDisk> {
        Arc::new(FaultyDisk {
            total: AtomicU64::new(total),
            free: AtomicU64::new(free.min(total)),
            write_errno: AtomicI32::new(0),
            failing_syncs: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Set the free space (freeing or filling the disk).
    pub fn set_free(&self, n: u64) {
        self.free.store(n.min(self.total.load(Ordering::Relaxed)), Ordering::Release);
    }

    /// Free space now.
    pub fn free(&self) -> u64 {
        self.free.load(Ordering::Acquire)
    }

    /// Fail every write with this OS error (`None`: stop failing).
    pub fn fail_writes(&self, errno: Option<i32>) {
        self.write_errno.store(errno.unwrap_or(0), Ordering::Release);
    }

    /// Fail the next `n` fsyncs with `EIO` (the write itself succeeds).
    pub fn fail_syncs(&self, n: u64) {
        self.failing_syncs.store(n, Ordering::Release);
    }

    /// Writes and fsyncs refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    fn refuse(&self, errno: i32) -> std::io::Error {
        self.refused.fetch_add(1, Ordering::AcqRel);
        std::io::Error::from_raw_os_error(errno)
    }

    fn write_all(&self, f: &mut File, buf: &[u8]) -> std::io::Result<()> {
        let errno = self.write_errno.load(Ordering::Acquire);
        if errno != 0 {
            return Err(self.refuse(errno));
        }
        let len = buf.len() as u64;
        let took = self.free.fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| Some(f.saturating_sub(len)));
        let free = took.unwrap_or(0);
        if free >= len {
            return f.write_all(buf);
        }
        // What fits is written, like a real filesystem: the rest is a torn tail.
        f.write_all(&buf[..free as usize])?;
        Err(self.refuse(ENOSPC))
    }

    fn sync(&self, f: &File) -> std::io::Result<()> {
        let pending = self.failing_syncs.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        if pending.is_ok() {
            return Err(self.refuse(EIO));
        }
        f.sync_data()
    }
}

/// The disk the writer uses.
#[derive(Debug, Clone)]
pub(crate) enum Disk {
    Real,
    Faulty(Arc<FaultyDisk>),
}

/// Free and total bytes of a filesystem.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Space {
    pub free: u64,
    pub total: u64,
}

impl Disk {
    pub fn from_settings(s: &AuditSettings) -> Disk {
        match &s.test_disk {
            Some(f) => Disk::Faulty(f.clone()),
            None => Disk::Real,
        }
    }

    pub fn write_all(&self, f: &mut File, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Disk::Real => f.write_all(buf),
            Disk::Faulty(d) => d.write_all(f, buf),
        }
    }

    pub fn sync(&self, f: &File) -> std::io::Result<()> {
        match self {
            Disk::Real => f.sync_data(),
            Disk::Faulty(d) => d.sync(f),
        }
    }

    /// `n` bytes were cut off a file (a torn tail removed): a filling disk gets them back.
    pub fn released(&self, n: u64) {
        if let Disk::Faulty(d) = self {
            d.free.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Free space of the filesystem holding `dir` (`statvfs`: blocks available to the
    /// sidecar, not the root-reserved ones).
    pub fn space(&self, dir: &Path) -> std::io::Result<Space> {
        match self {
            Disk::Real => {
                let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
                Ok(Space { free: s.f_bavail.saturating_mul(s.f_frsize), total: s.f_blocks.saturating_mul(s.f_frsize) })
            }
            Disk::Faulty(d) => Ok(Space { free: d.free(), total: d.total.load(Ordering::Relaxed) }),
        }
    }
}

/// Below the warning threshold: fewer than `warn_free_bytes` free, or less than
/// `warn_free_ratio` of the filesystem.
pub(crate) fn is_low(s: Space, settings: &AuditSettings) -> bool {
    s.free < settings.warn_free_bytes || (s.free as f64) < settings.warn_free_ratio * s.total as f64
}

/// Read free space once and publish it (gauges, low-space flag and its warning).
pub(crate) fn sample(dir: &Path, disk: &Disk, settings: &AuditSettings, shared: &Shared) {
    let s = match disk.space(dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "audit: cannot read free space");
            return;
        }
    };
    let low = is_low(s, settings);
    if shared.health.disk_reading(s.free, s.total, low) {
        if low {
            tracing::warn!(
                free = %bytes(s.free),
                size = %bytes(s.total),
                warn_free_bytes = settings.warn_free_bytes,
                warn_free_ratio = settings.warn_free_ratio,
                dir = %dir.display(),
                "audit log disk space is low: free space now, or calls will be refused once it runs out"
            );
        } else {
            tracing::info!(free = %bytes(s.free), size = %bytes(s.total), "audit log disk space is no longer low");
        }
    }
}

/// The disk monitor thread: samples free space every `disk_check_ms` until stopped.
pub(crate) struct Monitor {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    pub fn spawn(dir: PathBuf, disk: Disk, settings: AuditSettings, shared: Arc<Shared>) -> std::io::Result<Monitor> {
        let (stop, rx) = mpsc::channel::<()>();
        let every = Duration::from_millis(settings.disk_check_ms.max(10));
        let thread = std::thread::Builder::new().name("audit-disk".into()).spawn(move || loop {
            sample(&dir, &disk, &settings, &shared);
            match rx.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })?;
        Ok(Monitor { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_faulty_disk_fills_like_a_real_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        let d = FaultyDisk::new(100, 10);
        let disk = Disk::Faulty(d.clone());
        disk.write_all(&mut f, b"12345").unwrap();
        let e = disk.write_all(&mut f, b"abcdefgh").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        // What fitted was written: a torn tail.
        assert_eq!(std::fs::read(&path).unwrap(), b"12345abcde");
        assert_eq!(d.free(), 0);
        disk.released(5);
        assert_eq!(disk.space(dir.path()).unwrap().free, 5);
        d.fail_syncs(1);
        assert_eq!(disk.sync(&f).unwrap_err().raw_os_error(), Some(5));
        disk.sync(&f).unwrap();
        d.fail_writes(Some(30));
        assert_eq!(disk.write_all(&mut f, b"x").unwrap_err().raw_os_error(), Some(30));
        assert_eq!(d.refused(), 3);
    }

    #[test]
    fn real_free_space_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Disk::Real.space(dir.path()).unwrap();
        assert!(s.total > 0 && s.free <= s.total);
    }

    #[test]
    fn low_is_either_threshold() {
        let st = AuditSettings { warn_free_bytes: 100, warn_free_ratio: 0.1, ..AuditSettings::default() };
        assert!(is_low(Space { free: 99, total: 10 }, &st));
        assert!(is_low(Space { free: 150, total: 2000 }, &st));
        assert!(!is_low(Space { free: 250, total: 2000 }, &st));
    }
}

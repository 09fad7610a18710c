//! The disk under a test sidecar's data dir: a real tmpfs of a few MiB mounted by the test
//! (when this process may mount: root with `CAP_SYS_ADMIN`), or, where it may not (CI
//! containers), the audit crate's `FaultyDisk`, a virtual filesystem that fills the same way
//! (writes that do not fit tear and fail with `ENOSPC`). Both are filled and freed the same
//! way by the tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use audit::FaultyDisk;

/// Size of the tmpfs (and of the virtual disk).
pub const SIZE: u64 = 6 * 1024 * 1024;

pub enum TestDisk {
    /// A tmpfs mounted at `mnt`; `ballast` fills it.
    Tmpfs { _parent: tempfile::TempDir, mnt: PathBuf, ballast: PathBuf },
    /// The data dir on the real disk, the audit log on a virtual one.
    Faulty { _parent: tempfile::TempDir, dir: PathBuf, disk: Arc<FaultyDisk> },
}

impl TestDisk {
    /// A real tmpfs if it can be mounted here, else a faulty disk.
    pub fn new() -> TestDisk {
        let parent = tempfile::tempdir().unwrap();
        let mnt = parent.path().join("data");
        std::fs::create_dir_all(&mnt).unwrap();
        let size = format!("size={SIZE},mode=0700");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(&mnt)
            .output()
            .is_ok_and(|o| o.status.success());
        if mounted {
            let ballast = parent.path().join("data").join("ballast");
            eprintln!("audit_failure: data dir on a real {SIZE}-byte tmpfs at {}", mnt.display());
            return TestDisk::Tmpfs { _parent: parent, mnt, ballast };
        }
        eprintln!("audit_failure: cannot mount a tmpfs here; the audit log runs on a FaultyDisk");
        TestDisk::faulty_in(parent)
    }

    /// Always the faulty disk.
    pub fn faulty() -> TestDisk {
        TestDisk::faulty_in(tempfile::tempdir().unwrap())
    }

    fn faulty_in(parent: tempfile::TempDir) -> TestDisk {
        let dir = parent.path().join("data");
        TestDisk::Faulty { _parent: parent, dir, disk: FaultyDisk::new(SIZE, SIZE) }
    }

    pub fn is_real(&self) -> bool {
        matches!(self, TestDisk::Tmpfs { .. })
    }

    /// The sidecar's data dir.
    pub fn data_dir(&self) -> &Path {
        match self {
            TestDisk::Tmpfs { mnt, .. } => mnt,
            TestDisk::Faulty { dir, .. } => dir,
        }
    }

    /// What the sidecar's `[audit]` runs on (`test_disk`), for the faulty disk.
    pub fn hook(&self) -> Option<Arc<FaultyDisk>> {
        match self {
            TestDisk::Tmpfs { .. } => None,
            TestDisk::Faulty { disk, .. } => Some(disk.clone()),
        }
    }

    /// Bytes free now.
    pub fn free(&self) -> u64 {
        match self {
            TestDisk::Tmpfs { mnt, .. } => {
                let s = rustix::fs::statvfs(mnt.as_path()).unwrap();
                s.f_bavail * s.f_frsize
            }
            TestDisk::Faulty { disk, .. } => disk.free(),
        }
    }

    /// Fill until at most `left` bytes are free.
    pub fn fill_to(&self, left: u64) {
        match self {
            TestDisk::Tmpfs { ballast, .. } => {
                let mut f = std::fs::OpenOptions::new().create(true).append(true).open(ballast).unwrap();
                let chunk = vec![0x5au8; 16 * 1024];
                while self.free() > left {
                    let n = ((self.free() - left) as usize).clamp(1, chunk.len());
                    if f.write_all(&chunk[..n]).is_err() {
                        break;
                    }
                    f.flush().unwrap();
                }
            }
            TestDisk::Faulty { disk, .. } => disk.set_free(left.min(disk.free())),
        }
    }

    /// Fill completely: the next write of any size fails with `ENOSPC`.
    pub fn fill(&self) {
        self.fill_to(0);
        if let TestDisk::Tmpfs { ballast, .. } = self {
            let mut f = std::fs::OpenOptions::new().append(true).open(ballast).unwrap();
            // Page granularity: top up byte by byte until the filesystem refuses.
            while f.write_all(&[0x5a; 512]).and_then(|()| f.flush()).is_ok() {}
            assert!(self.free() < 4096, "tmpfs still has {} bytes free", self.free());
        }
    }

    /// Free the space the test took.
    pub fn free_all(&self) {
        match self {
            TestDisk::Tmpfs { ballast, .. } => {
                if ballast.exists() {
                    std::fs::remove_file(ballast).unwrap();
                }
            }
            TestDisk::Faulty { disk, .. } => disk.set_free(SIZE),
        }
    }
}

impl Drop for TestDisk {
    fn drop(&mut self) {
        if let TestDisk::Tmpfs { mnt, .. } = self {
            // Lazy: a sidecar still holding files there must not make the unmount fail.
            let _ = Command::new("umount").arg("-l").arg(&*mnt).status();
        }
    }
}

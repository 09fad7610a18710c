//! Process-wide settings made once at start, through `rustix`'s safe wrappers (the workspace
//! forbids unsafe code): a umask of 077, so every file and directory the sidecar creates (the
//! state store, the audit log, keys, the first admin token) is private to its user whatever
//! umask it was started with; and the soft open-file limit raised to the hard one, so the
//! connection caps of both listeners fit (the usual soft default of 1024 does not).

use rustix::fs::Mode;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Set the process umask to 077 (the systemd unit sets `UMask=0077` as well).
pub fn restrict_umask() {
    rustix::process::umask(Mode::from_bits_truncate(0o077));
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit. Returns the soft limit now in force
/// (`None` = unlimited).
pub fn raise_fd_limit() -> Option<u64> {
    let lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let want = Rlimit { current: lim.maximum, maximum: lim.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, want) {
            tracing::warn!(error = %e, soft = ?lim.current, hard = ?lim.maximum, "could not raise the open-file limit");
            return lim.current;
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_files_are_private_and_the_fd_limit_is_the_hard_one() {
        restrict_umask();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(dir.path().join("d")).unwrap().permissions().mode() & 0o777, 0o700);
        let soft = raise_fd_limit();
        assert_eq!(soft, getrlimit(Resource::Nofile).maximum);
    }
}

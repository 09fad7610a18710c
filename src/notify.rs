//! systemd's readiness protocol (`sd_notify`, `Type=notify`): a datagram to the socket named by
//! `$NOTIFY_SOCKET`, so `systemctl start` returns once both listeners are bound and the state
//! is loaded, and `systemctl stop` / reload show what the sidecar is doing. Without the
//! variable (not under systemd) every call does nothing. A failed send is logged and ignored:
//! readiness reporting must never stop the sidecar.

use std::os::unix::net::UnixDatagram;

/// Send `state` (newline-separated `KEY=value` assignments, e.g. `READY=1\nSTATUS=...`).
/// Returns whether a datagram was sent.
pub fn notify(state: &str) -> bool {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    let target = target.to_string_lossy().into_owned();
    match send(&target, state) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, socket = %target, "sd_notify failed");
            false
        }
    }
}

fn send(target: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    // `@name`: a Linux abstract socket (what systemd uses by default for services).
    #[cfg(target_os = "linux")]
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
        return Ok(());
    }
    sock.send_to(state.as_bytes(), target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("clawbutler-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = UnixDatagram::bind_addr(&addr).unwrap();
        send(&format!("@{name}"), "STOPPING=1").unwrap();
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}

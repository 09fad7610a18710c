//! A TCP relay that can black-hole a connection: it forwards bytes both ways until told to
//! stop, then holds every socket open and moves nothing (no FIN, no RST, no close frame), as
//! a dead network path or a partitioned host would. New connections made meanwhile are
//! accepted (the kernel completes the handshake) and held too. [`Blackhole::resume`] lets
//! everything flow again, held connections included.
//!
//! ```ignore
//! let hole = Blackhole::start(gateway_addr).await;   // point the client at hole.addr
//! hole.stop_forwarding();                             // the client sees silence
//! hole.resume();
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A running relay; stops (closing its sockets) when dropped.
pub struct Blackhole {
    /// Where clients connect.
    pub addr: SocketAddr,
    forwarding: watch::Sender<bool>,
    accepted: Arc<AtomicUsize>,
    tasks: JoinSet<()>,
}

impl Blackhole {
    /// Relay `127.0.0.1:0` to `target`, forwarding.
    pub async fn start(target: SocketAddr) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("blackhole bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("blackhole addr: {e}"));
        let (forwarding, rx) = watch::channel(true);
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        let count = accepted.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                conns.spawn(relay(client, target, rx.clone()));
            }
        });
        Blackhole { addr, forwarding, accepted, tasks }
    }

    /// `ws://<addr>`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Stop moving bytes; every socket stays open.
    pub fn stop_forwarding(&self) {
        self.forwarding.send_replace(false);
    }

    /// Move bytes again (held data and held connections included).
    pub fn resume(&self) {
        self.forwarding.send_replace(true);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn open(rx: &mut watch::Receiver<bool>) -> bool {
    rx.wait_for(|f| *f).await.is_ok()
}

async fn relay(client: TcpStream, target: SocketAddr, mut rx: watch::Receiver<bool>) {
    // A connection made while black-holed reaches nothing until forwarding resumes.
    if !open(&mut rx).await {
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else { return };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    // Futures, not tasks: dropping the relay (the Blackhole) drops both directions.
    tokio::join!(pump(cr, sw, rx.clone()), pump(sr, cw, rx));
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Nothing is read while black-holed: the peer's bytes wait in the kernel, unanswered.
        if !open(&mut rx).await {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                if open(&mut rx).await {
                    let _ = to.shutdown().await;
                }
                return;
            }
            Ok(n) => n,
        };
        // Read just before the hole opened: hold it until forwarding resumes.
        if !open(&mut rx).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

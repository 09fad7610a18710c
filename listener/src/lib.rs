//! The edge both of ClawButler's listeners (data and control) share: how connections are
//! accepted and how long a client may take. One accept loop with a per-listener connection
//! cap (beyond it new connections wait in the kernel's backlog instead of eating file
//! descriptors), a header-read timeout that is also the keep-alive idle timeout, a deadline
//! for the whole request body, and hyper's own early answers (400, 414, 431, which hyper sends
//! with an empty body) rewritten into the listener's dialect. Each request carries the
//! connection's addresses ([`ConnInfo`]) and its body-deadline flag ([`BodyTimer`]).
//!
//! Invariants: a connection holds one slot of the cap from accept to close; no request body
//! is read for longer than the body timeout; nothing here parses a request beyond what hyper
//! does (the dialect of an early error is guessed from the request line's first bytes only).

mod after;
mod body;
mod io;
mod spin;
mod threads;

pub use after::after_reply;
pub use body::{BodyTimeout, BodyTimer, TimedBody};
pub use io::{ErrorPage, ErrorPageIo};
pub use spin::{arrived, keep_awake, Active, Awaiting};
pub use threads::ConnThreads;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::{Service, ServiceExt};

/// Boxed error of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits of one listener (from `[server]` for the control listener, `[proxy]` for the data
/// listener).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; beyond it new connections wait to be accepted.
    pub max_connections: usize,
    /// Time allowed for a request's head, counted from the moment the connection waits for
    /// one, so it is also how long an idle keep-alive connection stays open.
    pub header_read_timeout: Duration,
    /// Time allowed for a whole request body, counted from its head.
    pub body_read_timeout: Duration,
}

/// The addresses of the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The listener-side address (a loopback address when the client is on this host).
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

/// How one listener serves.
pub struct Listener {
    /// `data` or `control`: log field and metric label.
    pub name: &'static str,
    pub limits: Limits,
    /// Bodies for hyper's own early answers.
    pub error_page: ErrorPage,
    /// `clawbutler_connections_open{listener=name}`, when metrics are wanted.
    pub open: Option<prometheus::IntGauge>,
    /// How long open requests may finish after shutdown before they are cut.
    pub grace: Duration,
    /// Serve connections on these threads ([`ConnThreads`]); `None`: on the shared runtime.
    pub threads: Option<ConnThreads>,
}

/// The `clawbutler_connections_open` family (register once, label per listener).
pub fn connections_gauge(registry: &prometheus::Registry) -> Result<prometheus::IntGaugeVec, prometheus::Error> {
    let g = prometheus::IntGaugeVec::new(
        prometheus::Opts::new("clawbutler_connections_open", "Connections open on a listener"),
        &["listener"],
    )?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

/// Decrements the open-connections gauge when a connection task ends, however it ends.
struct OpenGuard(Option<prometheus::IntGauge>);

impl OpenGuard {
    fn new(g: Option<prometheus::IntGauge>) -> OpenGuard {
        if let Some(g) = &g {
            g.inc();
        }
        OpenGuard(g)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// Accept connections on `listener` and serve each with `svc` until `shutdown` turns true
/// (or its sender is dropped); then open requests get `cfg.grace` to finish.
pub async fn serve<S, RB>(listener: TcpListener, svc: S, cfg: Listener, mut shutdown: watch::Receiver<bool>)
where
    S: Service<Request<TimedBody>, Response = Response<RB>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    RB: http_body::Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(cfg.limits.max_connections.max(1)));
    let mut saturated = false;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => {
                saturated = false;
                p
            }
            Err(_) => {
                if !saturated {
                    tracing::warn!(
                        listener = cfg.name,
                        max = cfg.limits.max_connections,
                        "connection cap reached; new connections wait until one closes"
                    );
                    saturated = true;
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(listener = cfg.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let local = match stream.local_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(listener = cfg.name, error = %e, "connection gone before it was served");
                continue;
            }
        };
        let info = ConnInfo { local, peer };
        let body_timeout = cfg.limits.body_read_timeout;
        let svc = svc
            .clone()
            .map_request(move |req: Request<Incoming>| {
                let (mut parts, body) = req.into_parts();
                let (body, timer) = TimedBody::new(body, body_timeout);
                parts.extensions.insert(info);
                parts.extensions.insert(timer);
                Request::from_parts(parts, body)
            })
            .map_future(|answer| async move {
                // Counted until its response head is ready (`spin.rs`: a thread serving one
                // request stays awake for its answers).
                let _active = spin::Active::enter();
                answer.await
            });
        let watcher = graceful.watcher();
        let open = OpenGuard::new(cfg.open.clone());
        let (name, error_page, header_timeout) = (cfg.name, cfg.error_page, cfg.limits.header_read_timeout);
        let on_thread = cfg.threads.is_some();
        let task = async move {
            let _slot = permit;
            let _open = open;
            // On a connection thread, the socket moves to that thread's own reactor: its
            // readiness then wakes this thread, not the accepting runtime's.
            let stream = if on_thread {
                match stream.into_std().and_then(tokio::net::TcpStream::from_std) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(listener = name, error = %e, "connection could not move to its thread");
                        return;
                    }
                }
            } else {
                stream
            };
            let io = TokioIo::new(ErrorPageIo::new(stream, error_page));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(io, TowerToHyperService::new(svc));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(listener = name, error = %e, "connection ended with error");
            }
        };
        match &cfg.threads {
            Some(t) => t.spawn(task),
            None => {
                tokio::spawn(task);
            }
        }
    }
    drop(listener);
    // Give in-flight calls a moment; streams that outlive it are cut.
    let _ = tokio::time::timeout(cfg.grace, graceful.shutdown()).await;
}

//! Serving the data path on a listener: one task per connection, HTTP/1.1 keep-alive, and a
//! shutdown signal that stops accepting and lets open calls finish.

use std::convert::Infallible;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

use crate::body::ResBody;
use crate::layers::BoxFut;

/// Accept connections until `shutdown` turns true.
pub async fn serve<S>(listener: TcpListener, svc: S, mut shutdown: watch::Receiver<bool>)
where
    S: Service<Request<Incoming>, Response = Response<ResBody>, Error = Infallible, Future = BoxFut<Infallible>>
        + Clone
        + Send
        + 'static,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(30))
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    // Give in-flight calls a moment; streams that outlive it are cut.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown()).await;
}

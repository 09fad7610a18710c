//! Serving the data path on a listener: the shared listener edge (`listener` crate: connection
//! cap, header/idle and body timeouts, HTTP/1.1 keep-alive, graceful shutdown) with the data
//! path's limits from `[proxy]`, and hyper's own early answers in the caller's dialect.

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::Service;

use crate::body::ResBody;
use crate::config::ProxySettings;
use crate::error::error_body;
use crate::layers::BoxFut;
use crate::route::Dialect;

/// The data listener's limits from `[proxy]`.
pub fn limits(s: &ProxySettings) -> listener::Limits {
    listener::Limits {
        max_connections: s.max_connections,
        header_read_timeout: Duration::from_millis(s.header_read_timeout_ms),
        body_read_timeout: Duration::from_millis(s.body_read_timeout_ms),
    }
}

/// The data listener's connection threads from `[proxy] io_threads` (`None` for 0).
pub fn connection_threads(s: &ProxySettings) -> std::io::Result<Option<listener::ConnThreads>> {
    match s.io_threads() {
        0 => Ok(None),
        n => listener::ConnThreads::start("data", n, std::time::Duration::from_micros(s.spin_us)).map(Some),
    }
}

/// Accept connections until `shutdown` turns true, within `limits` (see [`limits`]), serving
/// them on `threads` (see [`connection_threads`]; `None`: on the shared runtime). `open` is
/// the listener's `clawbutler_connections_open` series.
pub async fn serve<S>(
    listener: TcpListener,
    svc: S,
    limits: listener::Limits,
    open: Option<prometheus::IntGauge>,
    threads: Option<listener::ConnThreads>,
    shutdown: watch::Receiver<bool>,
) where
    S: Service<
            Request<listener::TimedBody>,
            Response = Response<ResBody>,
            Error = Infallible,
            Future = BoxFut<Infallible>,
        > + Clone
        + Send
        + 'static,
{
    let cfg = listener::Listener { name: "data", limits, error_page, open, grace: Duration::from_secs(5), threads };
    listener::serve(listener, svc, cfg, shutdown).await;
}

/// hyper's early answers (malformed head 400, URI 414, head 431) as OpenAI or Anthropic error
/// JSON, the dialect guessed from the request line's path like the edge does.
fn error_page(status: StatusCode, line: &[u8]) -> (&'static str, String) {
    let line = String::from_utf8_lossy(line);
    let path = line.split(' ').nth(1).unwrap_or("");
    let path = path.split('?').next().unwrap_or(path);
    let (code, message) = match status {
        StatusCode::URI_TOO_LONG => ("uri_too_long", "ClawButler: the request URI is too long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            ("request_header_fields_too_large", "ClawButler: the request headers are too large")
        }
        _ => {
            ("invalid_request_error", "ClawButler: the request could not be parsed (malformed request line or header)")
        }
    };
    ("application/json", error_body(Dialect::from_path(path), code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_answers_speak_the_callers_dialect() {
        let (ct, b) = error_page(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, b"POST /a/m/anth/v1/messages HTTP/1.1\r");
        assert_eq!(ct, "application/json");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "request_header_fields_too_large");
        let (_, b) = error_page(StatusCode::URI_TOO_LONG, b"GET /a/m/fake/v1/chat/completions?x=yyyyy");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"]["type"], "uri_too_long");
        let (_, b) = error_page(StatusCode::BAD_REQUEST, b"\x01\x02 garbage");
        let v: serde_json::Value = serde_json::from_str(&b).unwrap();
        assert_eq!(v["error"]["code"], "invalid_request_error");
    }
}

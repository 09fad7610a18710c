//! The outbound HTTP client every HTTP channel shares: rustls with the web PKI roots (plain
//! `http://` allowed, for receivers on the same host), pooled, one attempt bounded by the
//! configured timeout. Errors never carry the URL: Slack and Telegram URLs hold secrets.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::SendError;

/// Largest answer body read from a receiver.
const MAX_ANSWER: usize = 64 * 1024;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The shared client.
pub fn client(timeout: Duration) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(60)).build(https))
}

/// A response: status and (bounded) body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// POST `body` to `url` with `headers`; a non-2xx answer is an error carrying the status and
/// the start of the body.
pub async fn post(
    client: &HttpClient,
    url: &str,
    headers: HeaderMap,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, SendError> {
    let uri: http::Uri = url.parse().map_err(|_| SendError::Config("the URL is not valid".into()))?;
    let mut req = Request::builder().method(Method::POST).uri(uri);
    if let Some(h) = req.headers_mut() {
        h.extend(headers);
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| SendError::Config(e.to_string()))?;
    let fut = async {
        let res = client.request(req).await.map_err(|e| SendError::Connect(connect_reason(&e)))?;
        let status = res.status();
        let body = Limited::new(res.into_body(), MAX_ANSWER).collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        Ok::<Answer, SendError>(Answer { status, body })
    };
    let a = tokio::time::timeout(timeout, fut).await.map_err(|_| SendError::Timeout)??;
    if !a.status.is_success() {
        return Err(SendError::Status { code: a.status.as_u16(), body: snippet(&a.body) });
    }
    Ok(a)
}

/// The start of a receiver's answer, as one masked line.
pub fn snippet(b: &[u8]) -> String {
    let mut t: String = String::from_utf8_lossy(b).chars().filter(|c| !c.is_control()).take(200).collect();
    t = audit::mask::mask_text(&t);
    t
}

/// Why a connection failed, without the URL (hyper's errors may print it).
fn connect_reason(e: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error;
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return format!("connect: {}", io.kind());
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            return format!("TLS: {s}");
        }
        src = s.source();
    }
    if e.is_connect() {
        "connect failed".into()
    } else {
        "the connection failed before an answer".into()
    }
}

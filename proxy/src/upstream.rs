//! Upstreams and the pooled outbound client (rustls via hyper-rustls; no OpenSSL).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{ProxySettings, UpstreamConfig, UpstreamKind};

/// The outbound client type.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A configured upstream, ready to receive calls.
#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
    /// Base URL without a trailing slash.
    pub base: String,
    /// The key the sidecar injects (from `api_key_env`), already formatted as a header value.
    pub key: Option<HeaderValue>,
    /// For a plain `http://` upstream (always HTTP/1.1), the `Host` header every forwarded call
    /// carries: the URL's host, and its port unless it is 80, exactly what the client would
    /// otherwise format anew for each call. `None` for `https://`: a connection there may be
    /// HTTP/2, which names the host in `:authority` only, so the client adds `Host` itself
    /// when the connection it picks is HTTP/1.1.
    pub host: Option<HeaderValue>,
    pub timeout: Duration,
}

/// Errors building the upstream set (reported at start, naming the key).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstreams: duplicate name '{0}'")]
    Duplicate(String),
    #[error("upstreams.{name}.url: '{url}' is not an http(s) URL")]
    BadUrl { name: String, url: String },
    #[error("upstreams.{name}.name: '{name}' may only contain letters, digits, '-', '_' and '.'")]
    BadName { name: String },
    #[error("upstreams.{name}.api_key_env: environment variable {var} is not set")]
    MissingKey { name: String, var: String },
    #[error("upstreams.{name}.api_key_env: the value of {var} is not a valid header value")]
    BadKey { name: String, var: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("proxy.ca_file {path}: {msg}")]
    CaFile { path: String, msg: String },
}

/// `Host` for calls to the `http://` URL `uri`: its host, with the port only when it is not
/// 80 (as hyper's client writes it when the request has none).
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    match uri.port_u16() {
        Some(port) if port != 80 => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

impl Upstream {
    /// Build from config, reading the injected key from the environment.
    pub fn from_config(c: &UpstreamConfig, settings: &ProxySettings) -> Result<Upstream, UpstreamError> {
        if c.name.is_empty() || !c.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
            return Err(UpstreamError::BadName { name: c.name.clone() });
        }
        let base = c.url.trim_end_matches('/').to_string();
        let uri = base
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http") | Some("https")) && u.authority().is_some());
        let Some(uri) = uri else {
            return Err(UpstreamError::BadUrl { name: c.name.clone(), url: c.url.clone() });
        };
        let host = if uri.scheme_str() == Some("http") { host_header(&uri) } else { None };
        let key = match &c.api_key_env {
            None => None,
            Some(var) => {
                let raw = std::env::var(var)
                    .map_err(|_| UpstreamError::MissingKey { name: c.name.clone(), var: var.clone() })?;
                let formatted = match c.kind {
                    UpstreamKind::Openai => format!("Bearer {raw}"),
                    UpstreamKind::Anthropic => raw,
                };
                let mut hv = HeaderValue::from_str(&formatted)
                    .map_err(|_| UpstreamError::BadKey { name: c.name.clone(), var: var.clone() })?;
                hv.set_sensitive(true);
                Some(hv)
            }
        };
        Ok(Upstream {
            name: c.name.clone(),
            kind: c.kind,
            base,
            key,
            host,
            timeout: Duration::from_millis(c.timeout_ms.unwrap_or(settings.upstream_timeout_ms)),
        })
    }

    /// The header that carries this upstream's key.
    pub fn key_header(&self) -> http::HeaderName {
        match self.kind {
            UpstreamKind::Openai => http::header::AUTHORIZATION,
            UpstreamKind::Anthropic => http::HeaderName::from_static("x-api-key"),
        }
    }
}

/// All upstreams by name.
pub type Upstreams = HashMap<String, Arc<Upstream>>;

/// Build the upstream map, refusing duplicates.
pub fn build_upstreams(list: &[UpstreamConfig], settings: &ProxySettings) -> Result<Upstreams, UpstreamError> {
    let mut map = HashMap::new();
    for c in list {
        let u = Upstream::from_config(c, settings)?;
        if map.insert(u.name.clone(), Arc::new(u)).is_some() {
            return Err(UpstreamError::Duplicate(c.name.clone()));
        }
    }
    Ok(map)
}

/// The outbound clients: with connection threads (`[proxy] io_threads`), one pooled client
/// per thread, so an upstream connection (whose task runs where it was opened) is only ever
/// used by the thread that opened it, and a call never wakes another thread to be sent;
/// otherwise one client shared by all.
pub struct Clients {
    shared: HttpClient,
    per_thread: Option<(Connector, thread_local::ThreadLocal<HttpClient>)>,
}

/// TCP (no Nagle, the connect timeout), then rustls for `https://` upstreams.
type Connector = HttpsConnector<HttpConnector>;

impl Clients {
    /// Build the connector once (its TLS settings and `ca_file` checked here) and the shared
    /// client; each thread's client gets a clone of the connector and a pool of its own.
    pub fn new(settings: &ProxySettings) -> Result<Clients, UpstreamError> {
        let connector = connector(settings)?;
        let shared = pooled(connector.clone());
        let per_thread = (settings.io_threads() > 0).then(|| (connector, thread_local::ThreadLocal::new()));
        Ok(Clients { shared, per_thread })
    }

    /// The client for calls sent from this thread.
    pub fn get(&self) -> &HttpClient {
        match &self.per_thread {
            Some((connector, clients)) => clients.get_or(|| pooled(connector.clone())),
            None => &self.shared,
        }
    }
}

/// A pooled client over `connector`.
fn pooled(connector: Connector) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// The outbound connector.
fn connector(settings: &ProxySettings) -> Result<Connector, UpstreamError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)));
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| UpstreamError::Tls(e.to_string()))?
        .with_root_certificates(roots(settings)?)
        .with_no_client_auth();
    // ALPN offers h2 and http/1.1: an upstream that speaks HTTP/2 gets one multiplexed
    // connection per client pool instead of one per call in flight (the handshakes and sockets
    // a busy sidecar would otherwise hold open). Plain `http://` upstreams stay on HTTP/1.1.
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

/// The roots upstream certificates are checked against: the webpki roots, plus the PEM
/// certificates of `[proxy] ca_file` (a private CA in front of a model API, a local gateway).
fn roots(settings: &ProxySettings) -> Result<rustls::RootCertStore, UpstreamError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = &settings.ca_file {
        use rustls::pki_types::pem::PemObject;
        let err = |msg: String| UpstreamError::CaFile { path: path.display().to_string(), msg };
        let before = roots.len();
        for c in rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
            roots.add(c.map_err(|e| err(e.to_string()))?).map_err(|e| err(e.to_string()))?;
        }
        if roots.len() == before {
            return Err(err("holds no certificate".into()));
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_of(url: &str) -> Option<String> {
        let c = UpstreamConfig {
            name: "u".into(),
            kind: UpstreamKind::Openai,
            url: url.into(),
            api_key_env: None,
            timeout_ms: None,
        };
        let up = Upstream::from_config(&c, &ProxySettings::default()).map_err(|e| e.to_string());
        up.map(|u| u.host.map(|h| h.to_str().map(str::to_string).unwrap_or_default())).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn host_is_set_once_for_plain_http_upstreams_as_the_client_would_write_it() {
        assert_eq!(host_of("http://127.0.0.1:8080/v1").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(host_of("http://gateway.local/v1/").as_deref(), Some("gateway.local"));
        assert_eq!(host_of("http://gateway.local:80/v1").as_deref(), Some("gateway.local"));
        assert_eq!(host_of("http://[::1]:9000").as_deref(), Some("[::1]:9000"));
        assert_eq!(host_of("http://user:pw@gateway.local:81/v1").as_deref(), Some("gateway.local:81"));
        // HTTPS may negotiate HTTP/2 (`:authority`, no `Host`): the client decides per connection.
        assert_eq!(host_of("https://api.openai.com/v1"), None);
    }
}

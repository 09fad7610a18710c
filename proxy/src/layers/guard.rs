//! Guard layer: refuses requests that a web page, not a model client, made. The data path
//! injects the sidecar's own upstream key, so a page in the operator's browser that can make
//! the browser send a request here (a form posting `text/plain`, a `no-cors` fetch, a DNS
//! rebinding page whose host name now resolves to 127.0.0.1) would spend that key. Model
//! clients (OpenClaw, the OpenAI and Anthropic SDKs) send `content-type: application/json`,
//! no `Origin`, no `Sec-Fetch-Site: cross-site`, and a loopback `Host`; browsers always send
//! `Origin` with a POST and cannot send `application/json` cross-site without a CORS preflight,
//! which this listener never grants. So, before any route or body work:
//!
//! 1. an `Origin` not in `[proxy] allowed_origins`: 403;
//! 2. `Sec-Fetch-Site: cross-site` or `same-site` (unless its `Origin` is allowed): 403;
//! 3. on a connection that arrived on a loopback address, a `Host` that is not `localhost`, a
//!    loopback address or in `[proxy] allowed_hosts`: 403 (DNS rebinding);
//! 4. a POST whose `Content-Type` is not `application/json`: 415.
//!
//! Every refusal is in the caller's dialect (by the edge) and is logged, never audited: no
//! agent call was made.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderMap, Method, Request, Response};
use tower::{Layer, Service};

use super::BoxFut;
use crate::body::ResBody;
use crate::config::ProxySettings;
use crate::error::ProxyError;

/// What the guard lets through, from `[proxy]`.
#[derive(Debug, Clone, Default)]
pub struct GuardRules {
    /// Normalised (`scheme://host[:port]`, lowercase, no trailing slash).
    origins: Vec<String>,
    /// Lowercase host names, or `host:port`.
    hosts: Vec<String>,
}

impl GuardRules {
    /// The rules of these settings.
    pub fn from_settings(s: &ProxySettings) -> GuardRules {
        GuardRules {
            origins: s.allowed_origins.iter().map(|o| normalise_origin(o)).collect(),
            hosts: s.allowed_hosts.iter().map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()).collect(),
        }
    }

    /// Check one request; `conn` is the connection it came on (None: assume loopback).
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        conn: Option<&listener::ConnInfo>,
    ) -> Result<(), ProxyError> {
        let origin = headers.get(http::header::ORIGIN).map(|v| v.to_str().unwrap_or("(not ASCII)"));
        let origin_ok = origin.is_some_and(|o| self.origins.contains(&normalise_origin(o)));
        if let Some(o) = origin {
            if !origin_ok {
                return Err(ProxyError::CrossSite(format!(
                    "requests made by web pages (Origin {}) are refused on the data listener; \
                     add the origin to [proxy] allowed_origins if a page must call it",
                    clip(o)
                )));
            }
        }
        let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).unwrap_or("");
        if (site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site")) && !origin_ok {
            return Err(ProxyError::CrossSite(format!(
                "a {site} browser request is refused on the data listener (Sec-Fetch-Site: {site})"
            )));
        }
        if conn.is_none_or(|c| c.local.ip().is_loopback()) {
            if let Some(h) = headers.get(http::header::HOST) {
                let h = h.to_str().unwrap_or("(not ASCII)");
                if !self.host_ok(h) {
                    return Err(ProxyError::HostNotAllowed(format!(
                        "Host {} is not a name of this loopback listener; add it to [proxy] allowed_hosts \
                         if clients really use it",
                        clip(h)
                    )));
                }
            }
        }
        if method == Method::POST && !is_json(headers) {
            let ct = headers.get(http::header::CONTENT_TYPE).map_or("none", |v| v.to_str().unwrap_or("(not ASCII)"));
            return Err(ProxyError::UnsupportedMediaType(format!(
                "request bodies must be Content-Type: application/json (got {})",
                clip(ct)
            )));
        }
        Ok(())
    }

    fn host_ok(&self, host: &str) -> bool {
        let full = host.trim().to_ascii_lowercase();
        let name = host_name(&full);
        let name = name.trim_end_matches('.');
        name == "localhost"
            || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || self.hosts.iter().any(|h| h == name || *h == full)
    }
}

/// The host part of a `Host` value (`[::1]:8787` → `::1`, `a.b:80` → `a.b`).
fn host_name(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => h,
    }
}

fn normalise_origin(o: &str) -> String {
    o.trim().trim_end_matches('/').to_ascii_lowercase()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// Request text in a message or log line: short.
fn clip(s: &str) -> String {
    if s.len() <= 100 {
        return s.to_string();
    }
    let mut end = 100;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The `Allow` value of a 405 on the data path: `/v1/models` is read with GET, every other
/// endpoint takes a POST (kept in step with `route::endpoint_for` by a test).
pub fn allow_for(path: &str) -> &'static str {
    if path.ends_with("/v1/models") {
        "GET"
    } else {
        "POST"
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct GuardLayer {
    rules: Arc<GuardRules>,
}

impl GuardLayer {
    /// A guard with these rules.
    pub fn new(rules: GuardRules) -> Self {
        GuardLayer { rules: Arc::new(rules) }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, rules: self.rules.clone() }
    }
}

/// The guard service.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    rules: Arc<GuardRules>,
}

impl<S, B> Service<Request<B>> for Guard<S>
where
    S: Service<Request<B>, Response = Response<ResBody>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = ProxyError;
    type Future = BoxFut<ProxyError>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let conn = req.extensions().get::<listener::ConnInfo>();
        if let Err(e) = self.rules.check(req.method(), req.headers(), conn) {
            tracing::info!(peer = ?conn.map(|c| c.peer), path = %clip(req.uri().path()), refused = %e, "guard refused a request");
            return Box::pin(async move { Err(e) });
        }
        let mut inner = self.inner.clone();
        Box::pin(async move { inner.call(req).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamKind;
    use crate::route::{endpoint_for, RouteError};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn conn(local: &str) -> listener::ConnInfo {
        listener::ConnInfo { local: local.parse().unwrap(), peer: "127.0.0.1:40000".parse().unwrap() }
    }

    #[test]
    fn openclaw_requests_pass() {
        let g = GuardRules::default();
        let c = conn("127.0.0.1:8787");
        // openai-completions and anthropic-messages as OpenClaw sends them (no Origin).
        let h =
            headers(&[("host", "127.0.0.1:8787"), ("content-type", "application/json"), ("sec-fetch-mode", "cors")]);
        assert!(g.check(&Method::POST, &h, Some(&c)).is_ok());
        let h = headers(&[("host", "localhost:8787"), ("content-type", "application/json; charset=utf-8")]);
        assert!(g.check(&Method::POST, &h, Some(&c)).is_ok());
        let h = headers(&[("host", "[::1]:8787")]);
        assert!(g.check(&Method::GET, &h, Some(&conn("[::1]:8787"))).is_ok());
    }

    #[test]
    fn browser_requests_are_refused() {
        let g = GuardRules::default();
        let c = conn("127.0.0.1:8787");
        let json = ("content-type", "application/json");
        let h = headers(&[("host", "127.0.0.1:8787"), ("origin", "https://evil.example"), json]);
        assert!(matches!(g.check(&Method::POST, &h, Some(&c)), Err(ProxyError::CrossSite(_))));
        let h = headers(&[("host", "127.0.0.1:8787"), ("origin", "null"), json]);
        assert!(matches!(g.check(&Method::POST, &h, Some(&c)), Err(ProxyError::CrossSite(_))));
        let h = headers(&[("host", "127.0.0.1:8787"), ("sec-fetch-site", "cross-site")]);
        assert!(matches!(g.check(&Method::GET, &h, Some(&c)), Err(ProxyError::CrossSite(_))));
        let h = headers(&[("host", "rebind.evil.example:8787"), json]);
        assert!(matches!(g.check(&Method::POST, &h, Some(&c)), Err(ProxyError::HostNotAllowed(_))));
        for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let h = headers(&[("host", "127.0.0.1:8787"), ("content-type", ct)]);
            assert!(matches!(g.check(&Method::POST, &h, Some(&c)), Err(ProxyError::UnsupportedMediaType(_))), "{ct}");
        }
        let h = headers(&[("host", "127.0.0.1:8787")]);
        assert!(matches!(g.check(&Method::POST, &h, Some(&c)), Err(ProxyError::UnsupportedMediaType(_))));
    }

    #[test]
    fn configured_origins_and_hosts_pass_and_non_loopback_listeners_skip_the_host_check() {
        let s = ProxySettings {
            allowed_origins: vec!["https://Console.example/".into()],
            allowed_hosts: vec!["sidecar.internal".into()],
            ..ProxySettings::default()
        };
        let g = GuardRules::from_settings(&s);
        let c = conn("127.0.0.1:8787");
        let h = headers(&[
            ("host", "sidecar.internal:8787"),
            ("origin", "https://console.example"),
            ("sec-fetch-site", "cross-site"),
            ("content-type", "application/json"),
        ]);
        assert!(g.check(&Method::POST, &h, Some(&c)).is_ok());
        let h = headers(&[("host", "sidecar.example:8787"), ("content-type", "application/json")]);
        assert!(g.check(&Method::POST, &h, Some(&conn("10.0.0.5:8787"))).is_ok());
        assert!(g.check(&Method::POST, &h, Some(&c)).is_err());
        assert!(g.check(&Method::POST, &h, None).is_err(), "no connection info: checked as loopback");
    }

    #[test]
    fn allow_matches_the_route_table() {
        for kind in [UpstreamKind::Openai, UpstreamKind::Anthropic] {
            for rest in ["v1/chat/completions", "v1/responses", "v1/embeddings", "v1/models", "v1/messages"] {
                for m in [Method::GET, Method::POST] {
                    if endpoint_for(kind, &m, rest).is_ok() {
                        assert_eq!(allow_for(&format!("/a/x/u/{rest}")), m.as_str(), "{rest}");
                    } else {
                        let e = endpoint_for(kind, &m, rest).unwrap_err();
                        assert!(matches!(e, RouteError::MethodNotAllowed | RouteError::NotFound));
                    }
                }
            }
        }
    }
}

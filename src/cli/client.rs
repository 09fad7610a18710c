//! A small control-API client for CLI commands: JSON in and out, bearer token, and
//! problem+json errors turned into one readable line. The base URL is `--url`, else
//! `http://<server.control_listen>` from the config; the token is `--token` or
//! `CLAWBUTLER_TOKEN`.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::Cli;

/// Where and as whom to reach the control API (flatten into a subcommand's args).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Control API base URL (default: http://<server.control_listen> from the config).
    #[arg(long)]
    pub url: Option<String>,
    /// Bearer token (default: $CLAWBUTLER_TOKEN).
    #[arg(long, env = "CLAWBUTLER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Errors talking to the control API; each prints as one line a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad control API URL '{0}' (expected http://host:port)")]
    Url(String),
    #[error("cannot reach the control API at {url}: {msg} (is `clawbutler serve` running? set --url)")]
    Connect { url: String, msg: String },
    #[error("{status} {title}: {detail}")]
    Api { status: StatusCode, title: String, detail: String, body: Value },
    #[error("the control API answered something that is not JSON ({0})")]
    Json(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The client.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl ApiClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8788`).
    pub fn new(base: &str, token: Option<String>) -> Result<ApiClient, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") || base.parse::<http::Uri>().is_err() {
            return Err(ClientError::Url(base));
        }
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(ApiClient { base, token: token.filter(|t| !t.is_empty()), http })
    }

    /// A client from the command line's `--url`/`--token` and the config.
    pub fn from_cli(cli: &Cli, args: &ApiArgs) -> Result<ApiClient, ClientError> {
        let base = match &args.url {
            Some(u) => u.clone(),
            None => {
                let cfg = cli.load_config()?;
                let addr = cfg.control_addr()?;
                // A wildcard listener is reached on loopback.
                let host = if addr.ip().is_unspecified() { "127.0.0.1".to_string() } else { addr.ip().to_string() };
                let host = if host.contains(':') { format!("[{host}]") } else { host };
                format!("http://{host}:{}", addr.port())
            }
        };
        ApiClient::new(&base, args.token.clone())
    }

    /// `GET path` (path starts with `/api/...`, query included).
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, path, None, &[]).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.request(Method::POST, path, Some(body), &[]).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.request(Method::PUT, path, Some(body), &[]).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::DELETE, path, None, &[]).await
    }

    /// `GET path` of a binary answer (a backup package); an error answer is still
    /// problem+json and becomes [`ClientError::Api`].
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = Request::builder().method(Method::GET).uri(&url);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::new())).map_err(|_| ClientError::Url(url.clone()))?;
        let res =
            self.http.request(req).await.map_err(|e| ClientError::Connect { url: url.clone(), msg: e.to_string() })?;
        if res.status().is_success() {
            let body = res.into_body().collect().await;
            return Ok(body
                .map_err(|e| ClientError::Connect { url: url.clone(), msg: e.to_string() })?
                .to_bytes()
                .to_vec());
        }
        // Let the JSON path turn the problem into its one line.
        self.request(Method::GET, path, None, &[]).await.map(|_| Vec::new())
    }

    /// Any request with extra headers; a non-2xx answer becomes [`ClientError::Api`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Value, ClientError> {
        let url = format!("{}{}", self.base, path);
        let mut req = Request::builder().method(method).uri(&url).header("accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(bytes)).map_err(|_| ClientError::Url(url.clone()))?;
        let res =
            self.http.request(req).await.map_err(|e| ClientError::Connect { url: url.clone(), msg: e.to_string() })?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Connect { url: url.clone(), msg: e.to_string() })?
            .to_bytes();
        let v: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|_| ClientError::Json(String::from_utf8_lossy(&body).chars().take(200).collect()))?
        };
        if status.is_success() {
            return Ok(v);
        }
        let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let title = Some(text("title"))
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").into());
        let mut detail = text("detail");
        if status == StatusCode::UNAUTHORIZED {
            detail.push_str(" (pass --token or set CLAWBUTLER_TOKEN)");
        }
        Err(ClientError::Api { status, title, detail, body: v })
    }
}

/// Percent-encode a path segment or query value (everything but RFC 3986 unreserved
/// characters), for the subcommands that put ids and filters in URLs.
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

//! The OTLP exporter's HTTP client: our own hyper client over rustls (ring, webpki roots),
//! so traces need neither reqwest nor OpenSSL. Runs on the sidecar's Tokio runtime.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_http::{HttpClient, HttpError};

use crate::TelemetryError;

/// A collector's answer is a small protobuf (partial success at most); more is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// See the module docs.
#[derive(Clone)]
pub struct OtlpClient(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>);

impl std::fmt::Debug for OtlpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtlpClient")
    }
}

impl OtlpClient {
    /// A pooled client; `connect_timeout` bounds each connection attempt.
    pub fn new(connect_timeout: Duration) -> Result<OtlpClient, TelemetryError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| TelemetryError::Tls(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(OtlpClient(Client::builder(TokioExecutor::new()).pool_max_idle_per_host(2).build(https)))
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let res = self.0.request(Request::from_parts(parts, Full::new(body))).await?;
        let (parts, body) = res.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES).collect().await?.to_bytes();
        Ok(Response::from_parts(parts, body))
    }
}

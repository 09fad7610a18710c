//! Connecting to an upstream with rmcp: Streamable HTTP over the project's TLS stack
//! (rustls on ring, webpki roots: no OpenSSL, no aws-lc), or a stdio child process.
//!
//! Invariants:
//! - The upstream wire is pinned to protocol 2025-11-25 (rmcp 3.11 would offer 2026-07-28,
//!   a stateless protocol with different server-to-client requests).
//! - A stdio child gets a clean environment: `PATH` plus exactly the configured `env`,
//!   never the sidecar's (which holds other servers' secrets and the admin token). Its command
//!   and arguments come from config only; it runs in its own process group, so helpers it
//!   starts (`npx` children) end with it. Its stderr is its log, never protocol.
//! - The client's own credential never goes upstream: an HTTP upstream gets only its
//!   configured headers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::ServiceExt;

use super::conn::{Conn, Routes};
use super::direct::Direct;
use super::handler::Handler;
use super::wire::Wire;
use super::Server;
use crate::config::Transport;
use crate::session::Session;
use crate::State;

/// `PATH` of a stdio child unless its `env` sets one.
const CHILD_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Longest stderr line of a child kept in the log.
const STDERR_LINE: usize = 2000;

/// rustls on ring with the webpki roots, for both clients below.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The pooled HTTPS client rmcp uses for every HTTP upstream (keep-alive, `TCP_NODELAY`).
pub(crate) fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// The pooled hyper client of the direct call path (`raw.rs`): the same settings as
/// [`http_client`] without reqwest's layers, which cost a fast call about as much as the
/// exchange itself.
pub(crate) fn raw_client() -> Result<super::raw::RawClient, String> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}

/// Connect `sess` to `server` (initialize included), within `connect_timeout_s`.
pub(crate) async fn connect(st: &Arc<State>, sess: &Arc<Session>, server: &Arc<Server>) -> Result<Arc<Conn>, String> {
    let routes = Arc::new(Routes::default());
    let handler = Handler::new(st, sess, server.index, routes.clone());
    let limit = Duration::from_secs(st.settings.connect_timeout_s);
    let cfg = &server.cfg;
    let mut direct = None;
    let running = match cfg.transport {
        Transport::StreamableHttp => {
            let url = cfg.url.clone().unwrap_or_default();
            let mut headers = HashMap::new();
            for (k, v) in &cfg.headers {
                let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
                let value = http::HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
                headers.insert(name, value);
            }
            let tcfg = StreamableHttpClientTransportConfig::with_uri(url.clone())
                .custom_headers(headers)
                .reinit_on_expired_session(true)
                .max_json_response_size(st.settings.max_result_bytes)
                .max_sse_event_size(st.settings.max_result_bytes);
            let wire = Wire::new(st.http.clone());
            direct =
                Some(Direct::new(wire.clone(), st.raw.clone(), &url, st.settings.max_result_bytes, handler.clone()));
            let transport = StreamableHttpClientTransport::with_client(wire, tcfg);
            tokio::time::timeout(limit, handler.clone().serve(transport)).await
        }
        Transport::Stdio => {
            let (child, pid) = spawn(server, &sess.agent)?;
            let r = tokio::time::timeout(limit, handler.serve(child)).await;
            if r.is_err() {
                tracing::warn!(server = %cfg.name, ?pid, "stdio MCP server did not initialize in time; stopping it");
            }
            r
        }
    };
    let running = running
        .map_err(|_| format!("no answer to initialize within {} s", limit.as_secs()))?
        .map_err(|e| format!("initialize failed: {e}"))?;
    let info = running.peer_info().ok_or_else(|| "the server sent no initialize result".to_string())?;
    Ok(Arc::new(Conn::new(running, info, routes, direct)))
}

/// Start a stdio server's child process (see the module docs for what it gets).
fn spawn(server: &Server, agent: &str) -> Result<(TokioChildProcess, Option<u32>), String> {
    let cfg = &server.cfg;
    let program = cfg.command.clone().unwrap_or_default();
    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&cfg.args).env_clear();
    if !cfg.env.contains_key("PATH") {
        cmd.env("PATH", CHILD_PATH);
    }
    cmd.envs(&cfg.env);
    if let Some(dir) = &cfg.cwd {
        cmd.current_dir(dir);
    }
    let mut wrapped = process_wrap::tokio::CommandWrap::from(cmd);
    wrapped.wrap(process_wrap::tokio::ProcessGroup::leader());
    let (child, stderr) = TokioChildProcess::builder(wrapped)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start '{program}': {e}"))?;
    let pid = child.id();
    tracing::info!(server = %cfg.name, agent, program = %program, ?pid, "started a stdio MCP server");
    if let Some(stderr) = stderr {
        let name = cfg.name.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let line: String = line.chars().take(STDERR_LINE).collect();
                tracing::debug!(server = %name, "stderr: {}", audit::mask::mask_text(&line));
            }
        });
    }
    Ok((child, pid))
}

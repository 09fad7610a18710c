//! Proxy settings: the `[[upstreams]]` list and the `[proxy]` limits, as they appear in
//! `clawbutler.toml`.

use serde::{Deserialize, Serialize};

/// Which API family an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// OpenAI-compatible: `url` includes the version prefix, e.g. `https://api.openai.com/v1`.
    Openai,
    /// Anthropic-compatible: `url` is the host root, e.g. `https://api.anthropic.com`.
    Anthropic,
}

impl UpstreamKind {
    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Openai => "openai",
            UpstreamKind::Anthropic => "anthropic",
        }
    }
}

/// One `[[upstreams]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Route segment: `/a/{agent}/{name}/...`.
    pub name: String,
    pub kind: UpstreamKind,
    pub url: String,
    /// When set, the sidecar injects this environment variable's value as the key and never
    /// forwards the client's key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Overrides `[proxy] upstream_timeout_ms` for this upstream.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The zero-config upstreams.
pub fn default_upstreams() -> Vec<UpstreamConfig> {
    vec![
        UpstreamConfig {
            name: "openai".into(),
            kind: UpstreamKind::Openai,
            url: "https://api.openai.com/v1".into(),
            api_key_env: None,
            timeout_ms: None,
        },
        UpstreamConfig {
            name: "anthropic".into(),
            kind: UpstreamKind::Anthropic,
            url: "https://api.anthropic.com".into(),
            api_key_env: None,
            timeout_ms: None,
        },
    ]
}

/// `[proxy]` section: limits and timeouts of the data path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySettings {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// TCP + TLS connect timeout to an upstream (502 beyond).
    pub connect_timeout_ms: u64,
    /// Time allowed until the upstream's response headers (504 beyond). Long: models think.
    pub upstream_timeout_ms: u64,
    /// Longest silence allowed inside a streamed response before the sidecar gives up.
    pub stream_idle_timeout_ms: u64,
    /// Output-token cap assumed for cost estimates when the request names none.
    pub default_max_output_tokens: u64,
    /// Prompt tokens reserved, on top of the body's bytes, for a call whose prompt the body
    /// does not bound (images, files, previous responses, server tools; see `estimate`).
    pub unbounded_input_tokens: u64,
    /// USD charged per server-side tool call (web search, file search, code execution, ...).
    pub server_tool_call_usd: f64,
    /// Server tool calls reserved for a call that offers server tools without capping them
    /// (`max_tool_calls`, `max_uses`).
    pub server_tool_calls_reserved: u64,
    /// Longest streamed event the side decoder buffers; a longer one passes through undecoded
    /// (the call's cost is then unknown).
    pub max_sse_event_bytes: usize,
    /// Largest non-streamed reply the side decoder copies to read its usage; past it the reply
    /// passes through undecoded (cost unknown).
    pub max_decode_bytes: usize,
    /// How a policy deny reaches a chat caller: `message` answers 200 with an assistant
    /// message carrying the reason (OpenClaw shows it and keeps the key usable); `error`
    /// answers 403 with error JSON.
    pub deny_style: DenyStyle,
    /// Data listener: connections served at once (beyond it new ones wait to be accepted).
    pub max_connections: usize,
    /// Data listener: model calls in flight at once; beyond it a new call is shed with 503 +
    /// `Retry-After` in the caller's shape (`layers::shed`).
    pub max_in_flight: usize,
    /// PEM CA certificates trusted for upstreams beside the webpki roots (a private CA).
    pub ca_file: Option<std::path::PathBuf>,
    /// Data listener: threads that serve its connections, each with its own single-threaded
    /// runtime (`listener::ConnThreads`). `None`: one per CPU; `0`: the shared runtime.
    pub io_threads: Option<usize>,
    /// Data listener: how long (microseconds) a connection thread serving a single request
    /// stays awake, polling, for an answer it awaits (the upstream's reply, the client's next
    /// request) instead of sleeping: on a VM a sleeping thread is woken late
    /// (`listener::keep_awake`). `0`: never.
    pub spin_us: u64,
    /// Data listener: time allowed for a request head; also the keep-alive idle timeout.
    pub header_read_timeout_ms: u64,
    /// Data listener: time allowed for a whole request body (408 beyond).
    pub body_read_timeout_ms: u64,
    /// Web origins (`scheme://host[:port]`) whose pages may call the data path. Empty (the
    /// default): any request with an `Origin` header, or `Sec-Fetch-Site: cross-site`, is
    /// refused, since no model client sends them and a browser always does.
    pub allowed_origins: Vec<String>,
    /// Extra `Host` names accepted on a loopback connection (beside `localhost` and loopback
    /// addresses), e.g. a name in `/etc/hosts`. Other names are refused there: DNS rebinding.
    pub allowed_hosts: Vec<String>,
}

impl ProxySettings {
    /// How many connection threads the data listener gets (see [`ProxySettings::io_threads`]).
    pub fn io_threads(&self) -> usize {
        self.io_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// See [`ProxySettings::deny_style`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyStyle {
    Message,
    Error,
}

impl Default for ProxySettings {
    fn default() -> Self {
        ProxySettings {
            max_body_bytes: 32 * 1024 * 1024,
            connect_timeout_ms: 10_000,
            upstream_timeout_ms: 600_000,
            stream_idle_timeout_ms: 300_000,
            default_max_output_tokens: 4096,
            deny_style: DenyStyle::Message,
            max_connections: 4096,
            max_in_flight: 2048,
            io_threads: None,
            spin_us: 200,
            ca_file: None,
            header_read_timeout_ms: 30_000,
            body_read_timeout_ms: 60_000,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            unbounded_input_tokens: 128_000,
            server_tool_call_usd: 0.05,
            server_tool_calls_reserved: 5,
            max_sse_event_bytes: 8 * 1024 * 1024,
            max_decode_bytes: 16 * 1024 * 1024,
        }
    }
}

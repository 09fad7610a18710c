//! `[mcp]` (the endpoint's settings) and `[[mcp_servers]]` (the upstream MCP servers), as
//! documented in `docs/config.md` and `docs/mcp.md`. Unknown keys are refused with their
//! name; [`validate`] checks what serde cannot and names the key.
//!
//! Secrets stay with the sidecar: header and environment values may say `${VAR}`, resolved
//! from the sidecar's own environment when it starts ([`resolve`]), so a token for an
//! upstream never has to be in OpenClaw's config. A stdio server's command, arguments and
//! environment come from here only, never from a request or the control API.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How the sidecar talks to an upstream MCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transport {
    /// Streamable HTTP (MCP 2025-03-26 and later): `url` (+ `headers`).
    #[serde(rename = "streamable-http")]
    StreamableHttp,
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout: `command` (+
    /// `args`, `env`, `cwd`).
    #[serde(rename = "stdio")]
    Stdio,
}

impl Transport {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::StreamableHttp => "streamable-http",
            Transport::Stdio => "stdio",
        }
    }
}

/// Which of a server's tools are offered at all (before any policy): names or `*` globs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFilter {
    /// When not empty, only tools matching one of these.
    #[serde(default)]
    pub include: Vec<String>,
    /// Tools matching one of these are never offered (wins over `include`).
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_timeout_s() -> u64 {
    60
}

/// One `[[mcp_servers]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// Unique name: `[A-Za-z0-9_-]`, 1 to 40 characters. Used in tool names, budgets
    /// (`mcp:<name>`), policy input (`tool.server`), metrics and audit records.
    pub name: String,
    pub transport: Transport,
    /// Streamable HTTP: the server's MCP endpoint (`http://` or `https://`).
    #[serde(default)]
    pub url: Option<String>,
    /// Streamable HTTP: headers sent on every request; values may contain `${VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// stdio: the program (an absolute path, or a name looked up on the child's `PATH`).
    #[serde(default)]
    pub command: Option<String>,
    /// stdio: its arguments (values may contain `${VAR}`).
    #[serde(default)]
    pub args: Vec<String>,
    /// stdio: the child's whole environment besides `PATH` (values may contain `${VAR}`).
    /// The child never inherits the sidecar's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// stdio: working directory (default: the sidecar's).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Agents that see this server; absent = every agent.
    #[serde(default)]
    pub agents: Option<Vec<String>>,
    #[serde(default)]
    pub tool_filter: ToolFilter,
    /// Longest a call to this server may take before it is answered with an error (and
    /// cancelled upstream), in seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Put before each of its tools' names; absent = `<name>__`, `""` = none (one server, or
    /// names that cannot collide).
    #[serde(default)]
    pub prefix: Option<String>,
    /// What one call of a tool costs in USD (tool name, or `*` for every other tool): such
    /// calls reserve and settle against budgets like model calls.
    #[serde(default)]
    pub cost_usd: BTreeMap<String, f64>,
}

fn default_client_timeout_s() -> u64 {
    60
}
fn default_margin_s() -> u64 {
    5
}
fn default_keepalive_s() -> u64 {
    15
}
fn default_max_body() -> usize {
    4 * 1024 * 1024
}
fn default_connect_timeout_s() -> u64 {
    10
}
fn default_idle_ttl_s() -> u64 {
    3600
}
fn default_max_sessions() -> usize {
    10_000
}
fn default_reverse_timeout_s() -> u64 {
    120
}
fn default_retry_s() -> u64 {
    5
}
fn default_max_result() -> usize {
    16 * 1024 * 1024
}

/// `[mcp]`: the endpoint `/mcp/agent/{agent}` on the data listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSettings {
    /// Web origins allowed besides the listener's own loopback origins; any other `Origin`
    /// gets 403 (the spec's DNS-rebinding rule).
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Host names allowed besides `localhost` and loopback addresses (DNS rebinding).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Agents served without an MCP token (only while the data listener is on loopback):
    /// for local tools that cannot send headers, such as the conformance suite.
    #[serde(default)]
    pub open_agents: Vec<String>,
    /// The client's own request timeout in seconds (OpenClaw: `requestTimeoutMs` / 1000,
    /// 60 by default): a held call is answered before it runs out.
    #[serde(default = "default_client_timeout_s")]
    pub client_timeout_s: u64,
    /// How long before the client's timeout a hold still waiting is answered (denied, "ask
    /// again"), in seconds.
    #[serde(default = "default_margin_s")]
    pub hold_answer_margin_s: u64,
    /// Interval of the `: keepalive` comment on a held call's event stream, in seconds.
    #[serde(default = "default_keepalive_s")]
    pub sse_keepalive_s: u64,
    /// Largest request body (one JSON-RPC message), in bytes (413 beyond).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest tool result accepted from an upstream, in bytes.
    #[serde(default = "default_max_result")]
    pub max_result_bytes: usize,
    /// How long connecting to one upstream may take, in seconds.
    #[serde(default = "default_connect_timeout_s")]
    pub connect_timeout_s: u64,
    /// After a failed connect, how long before the next try, in seconds.
    #[serde(default = "default_retry_s")]
    pub reconnect_after_s: u64,
    /// A session unused this long is closed (never while a call or hold is in it), in seconds.
    #[serde(default = "default_idle_ttl_s")]
    pub session_idle_ttl_s: u64,
    /// Most sessions open at once (the oldest idle one is closed beyond it).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// How long a request from an upstream to the client (elicitation, sampling, roots) waits
    /// for the client's answer, in seconds.
    #[serde(default = "default_reverse_timeout_s")]
    pub server_request_timeout_s: u64,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings {
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            open_agents: Vec::new(),
            client_timeout_s: default_client_timeout_s(),
            hold_answer_margin_s: default_margin_s(),
            sse_keepalive_s: default_keepalive_s(),
            max_body_bytes: default_max_body(),
            max_result_bytes: default_max_result(),
            connect_timeout_s: default_connect_timeout_s(),
            reconnect_after_s: default_retry_s(),
            session_idle_ttl_s: default_idle_ttl_s(),
            max_sessions: default_max_sessions(),
            server_request_timeout_s: default_reverse_timeout_s(),
        }
    }
}

impl McpSettings {
    /// How long a hold may wait before the call is answered: the client's timeout minus the
    /// margin (at least 1 s).
    pub fn hold_answer_after(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.client_timeout_s.saturating_sub(self.hold_answer_margin_s).max(1))
    }
}

/// A config problem: the key and what is wrong with it.
pub type ConfigProblem = (String, String);

fn bad(key: String, msg: impl Into<String>) -> ConfigProblem {
    (key, msg.into())
}

/// Whether `s` is a server name: `[A-Za-z0-9_-]`, 1 to 40 characters.
pub fn valid_server_name(s: &str) -> bool {
    (1..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Check `[mcp]` and `[[mcp_servers]]` (names, transports and their fields, globs, agents,
/// costs, the syntax of `${VAR}` references). Whether the variables are set is checked when
/// the sidecar starts ([`resolve`]), so other commands run without the upstreams' secrets.
pub fn validate(settings: &McpSettings, servers: &[McpServerConfig]) -> Result<(), ConfigProblem> {
    for a in &settings.open_agents {
        decision::agent_id::check(a).map_err(|e| bad("mcp.open_agents".into(), e.to_string()))?;
    }
    if settings.hold_answer_margin_s >= settings.client_timeout_s {
        return Err(bad(
            "mcp.hold_answer_margin_s".into(),
            format!("must be less than mcp.client_timeout_s ({})", settings.client_timeout_s),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for s in servers {
        let key = |k: &str| format!("mcp_servers[{}].{k}", s.name);
        if !valid_server_name(&s.name) {
            return Err(bad("mcp_servers.name".into(), format!("'{}' must be 1 to 40 of A-Z a-z 0-9 _ -", s.name)));
        }
        if !seen.insert(s.name.clone()) {
            return Err(bad(key("name"), "is used by two [[mcp_servers]] entries"));
        }
        match s.transport {
            Transport::StreamableHttp => {
                let url =
                    s.url.as_deref().ok_or_else(|| bad(key("url"), "is required for transport streamable-http"))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) || url.parse::<http::Uri>().is_err() {
                    return Err(bad(key("url"), format!("'{url}' is not an http:// or https:// URL")));
                }
                if s.command.is_some() || !s.args.is_empty() || !s.env.is_empty() || s.cwd.is_some() {
                    return Err(bad(key("command"), "command, args, env and cwd are for transport stdio"));
                }
                for (h, v) in &s.headers {
                    http::HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| bad(key("headers"), format!("'{h}' is not a header name")))?;
                    let v = syntax(v).map_err(|m| bad(key(&format!("headers.{h}")), m))?;
                    http::HeaderValue::from_str(&v)
                        .map_err(|_| bad(key(&format!("headers.{h}")), "is not a valid header value"))?;
                }
            }
            Transport::Stdio => {
                let cmd = s.command.as_deref().unwrap_or("");
                if cmd.trim().is_empty() {
                    return Err(bad(key("command"), "is required for transport stdio"));
                }
                if s.url.is_some() || !s.headers.is_empty() {
                    return Err(bad(key("url"), "url and headers are for transport streamable-http"));
                }
                for (k, v) in &s.env {
                    if k.is_empty() || k.contains('=') || k.contains('\0') {
                        return Err(bad(key("env"), format!("'{k}' is not an environment variable name")));
                    }
                    syntax(v).map_err(|m| bad(key(&format!("env.{k}")), m))?;
                }
                for a in &s.args {
                    syntax(a).map_err(|m| bad(key("args"), m))?;
                }
            }
        }
        for p in s.tool_filter.include.iter().chain(&s.tool_filter.exclude) {
            globset::Glob::new(p).map_err(|e| bad(key("tool_filter"), format!("'{p}': {e}")))?;
        }
        if let Some(agents) = &s.agents {
            for a in agents {
                decision::agent_id::check(a).map_err(|e| bad(key("agents"), e.to_string()))?;
            }
        }
        for (tool, c) in &s.cost_usd {
            if !c.is_finite() || *c < 0.0 || *c > 1e6 {
                return Err(bad(key(&format!("cost_usd.{tool}")), format!("{c} must be a number from 0 to 1000000")));
            }
        }
        if let Some(p) = &s.prefix {
            if !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') || p.len() > 40 {
                return Err(bad(key("prefix"), "must be at most 40 of A-Z a-z 0-9 _ -"));
            }
        }
    }
    Ok(())
}

/// Replace every `${VAR}` in `s` with the sidecar's environment variable `VAR`; a missing
/// variable is an error naming it (`$$` is a literal `$`).
pub fn expand(s: &str) -> Result<String, String> {
    expand_with(s, |k| std::env::var(k).ok())
}

/// `s` with every `${VAR}` replaced by `x` (checks the references' syntax only).
fn syntax(s: &str) -> Result<String, String> {
    expand_with(s, |_| Some("x".to_string()))
}

fn expand_with(s: &str, get: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or_else(|| format!("unclosed ${{ in '{s}'"))?;
            let name = &r[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("'${{{name}}}' is not an environment variable reference"));
            }
            let v = get(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&v);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A server's config with every `${VAR}` replaced (what the sidecar connects with).
pub fn resolve(s: &McpServerConfig) -> Result<McpServerConfig, ConfigProblem> {
    let key = |k: &str| format!("mcp_servers[{}].{k}", s.name);
    let mut r = s.clone();
    for (h, v) in r.headers.iter_mut() {
        *v = expand(v).map_err(|m| bad(key(&format!("headers.{h}")), m))?;
    }
    for (k, v) in r.env.iter_mut() {
        *v = expand(v).map_err(|m| bad(key(&format!("env.{k}")), m))?;
    }
    for a in r.args.iter_mut() {
        *a = expand(a).map_err(|m| bad(key("args"), m))?;
    }
    Ok(r)
}

impl McpServerConfig {
    /// Whether `agent` sees this server.
    pub fn serves(&self, agent: &str) -> bool {
        self.agents.as_ref().is_none_or(|a| a.iter().any(|x| x == agent))
    }

    /// The prefix put before its tools' names.
    pub fn tool_prefix(&self) -> String {
        self.prefix.clone().unwrap_or_else(|| format!("{}__", self.name))
    }

    /// What one call of `tool` costs, if it has a price.
    pub fn cost_of(&self, tool: &str) -> Option<f64> {
        self.cost_usd.get(tool).or_else(|| self.cost_usd.get("*")).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(toml_text: &str) -> Result<McpServerConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn env_references_expand_and_missing_ones_are_named() {
        let get = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
        assert_eq!(expand_with("Bearer ${TOKEN}", get).unwrap(), "Bearer s3cret");
        assert_eq!(expand_with("a$$b $x", get).unwrap(), "a$b $x");
        assert!(expand_with("${NOPE}", get).unwrap_err().contains("NOPE"));
        assert!(expand_with("${bad-name}", get).is_err());
        assert!(expand_with("${OPEN", get).is_err());
    }

    #[test]
    fn servers_are_checked_and_problems_name_the_key() {
        let ok = server("name = \"gh\"\ntransport = \"streamable-http\"\nurl = \"https://api.example/mcp\"").unwrap();
        assert!(validate(&McpSettings::default(), std::slice::from_ref(&ok)).is_ok());
        assert_eq!(ok.tool_prefix(), "gh__");
        assert!(ok.serves("anyone"));
        let cases = [
            ("name = \"gh\"\ntransport = \"streamable-http\"", "mcp_servers[gh].url"),
            ("name = \"gh\"\ntransport = \"streamable-http\"\nurl = \"ftp://x\"", "mcp_servers[gh].url"),
            ("name = \"fs\"\ntransport = \"stdio\"", "mcp_servers[fs].command"),
            ("name = \"fs\"\ntransport = \"stdio\"\ncommand = \"x\"\nurl = \"http://x\"", "mcp_servers[fs].url"),
            ("name = \"a b\"\ntransport = \"stdio\"\ncommand = \"x\"", "mcp_servers.name"),
            ("name = \"fs\"\ntransport = \"stdio\"\ncommand = \"x\"\nagents = [\"MAIN\"]", "mcp_servers[fs].agents"),
            (
                "name = \"fs\"\ntransport = \"stdio\"\ncommand = \"x\"\ncost_usd = { x = -1.0 }",
                "mcp_servers[fs].cost_usd.x",
            ),
            (
                "name = \"fs\"\ntransport = \"stdio\"\ncommand = \"x\"\nenv = { T = \"${bad name}\" }",
                "mcp_servers[fs].env.T",
            ),
            (
                "name = \"fs\"\ntransport = \"stdio\"\ncommand = \"x\"\ntool_filter = { include = [\"[\"] }",
                "mcp_servers[fs].tool_filter",
            ),
        ];
        for (text, key) in cases {
            let s = server(text).unwrap();
            let (k, msg) = validate(&McpSettings::default(), &[s]).unwrap_err();
            assert_eq!(k, key, "{text}: {msg}");
        }
        let twice = [ok.clone(), ok];
        assert_eq!(validate(&McpSettings::default(), &twice).unwrap_err().0, "mcp_servers[gh].name");
        assert!(server("name = \"x\"\ntransport = \"sse\"\nurl = \"http://x\"").is_err());
        // An unset variable is fine for validation and named when the sidecar resolves it.
        let unset =
            server("name = \"fs\"\ntransport = \"stdio\"\ncommand = \"x\"\nenv = { T = \"${CB_TEST_SURELY_UNSET}\" }")
                .unwrap();
        assert!(validate(&McpSettings::default(), std::slice::from_ref(&unset)).is_ok());
        let (k, m) = resolve(&unset).unwrap_err();
        assert!(k == "mcp_servers[fs].env.T" && m.contains("CB_TEST_SURELY_UNSET"), "{k} {m}");
        assert!(server("name = \"x\"\ntransport = \"stdio\"\ncommand = \"x\"\nshell = true")
            .unwrap_err()
            .contains("shell"));
    }

    #[test]
    fn costs_and_prefixes() {
        let s = server(
            "name = \"search\"\ntransport = \"stdio\"\ncommand = \"x\"\nprefix = \"\"\ncost_usd = { web = 0.01, \"*\" = 0.001 }\nagents = [\"main\"]",
        )
        .unwrap();
        assert_eq!(s.cost_of("web"), Some(0.01));
        assert_eq!(s.cost_of("other"), Some(0.001));
        assert_eq!(s.tool_prefix(), "");
        assert!(s.serves("main") && !s.serves("ops"));
    }

    #[test]
    fn hold_margin_must_fit_the_client_timeout() {
        let s = McpSettings { client_timeout_s: 5, hold_answer_margin_s: 5, ..McpSettings::default() };
        assert_eq!(validate(&s, &[]).unwrap_err().0, "mcp.hold_answer_margin_s");
        assert_eq!(McpSettings::default().hold_answer_after().as_secs(), 55);
    }
}

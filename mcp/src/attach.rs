//! What `clawbutler attach` needs to move an OpenClaw gateway's MCP servers behind the
//! sidecar (the attach command itself lives in `gateway`): the gateway's `mcp.servers`
//! become `[[mcp_servers]]` entries ([`plan`]), each agent gets one server entry
//! `cb-<agent>` pointing at `/mcp/agent/<agent>` with its MCP token as an env reference and
//! a `requestTimeoutMs` that fits the hold timeout ([`agent_entry`]), and every agent denies
//! the other agents' entries ([`deny_globs`]). Pure functions, unit-tested.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::config::{valid_server_name, McpServerConfig, McpSettings, ToolFilter, Transport};

/// A server that stays in OpenClaw, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub name: String,
    pub reason: String,
}

/// The result of reading a gateway's `mcp.servers`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The entries for ClawButler's config, in the gateway's order.
    pub servers: Vec<McpServerConfig>,
    /// Entries left in OpenClaw (disabled, OAuth, the old SSE transport, custom TLS, ...).
    pub skipped: Vec<Skipped>,
    /// OpenClaw server name → the name in ClawButler (changed when it was not a valid name).
    pub renamed: BTreeMap<String, String>,
}

/// The name of an agent's ClawButler entry in OpenClaw's `mcp.servers`.
pub fn entry_name(agent: &str) -> String {
    format!("cb-{agent}")
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(text).collect()).unwrap_or_default()
}

fn map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| text(v).map(|t| (k.clone(), t))).collect())
        .unwrap_or_default()
}

fn clean_name(name: &str, taken: &[McpServerConfig]) -> String {
    let mut n: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' })
        .take(36)
        .collect();
    if n.is_empty() {
        n = "mcp".into();
    }
    let base = n.clone();
    let mut i = 2;
    while taken.iter().any(|s| s.name == n) {
        n = format!("{base}-{i}");
        i += 1;
    }
    n
}

/// Read OpenClaw's `mcp.servers` object (name → entry) into `[[mcp_servers]]` entries.
pub fn plan(servers: &Value) -> Result<Plan, String> {
    let Some(obj) = servers.as_object() else {
        return Err("mcp.servers must be an object of server entries".into());
    };
    let mut p = Plan::default();
    for (name, e) in obj {
        let skip = |reason: &str| Skipped { name: name.clone(), reason: reason.to_string() };
        if name.starts_with("cb-") {
            p.skipped.push(skip("a ClawButler entry (from an earlier attach)"));
            continue;
        }
        if e.get("enabled") == Some(&Value::Bool(false)) {
            p.skipped.push(skip("disabled in OpenClaw"));
            continue;
        }
        if e.get("auth").and_then(Value::as_str) == Some("oauth") || e.get("oauth").is_some() {
            p.skipped.push(skip("OAuth upstreams are not proxied yet; it stays in OpenClaw, ungoverned"));
            continue;
        }
        if e.get("sslVerify") == Some(&Value::Bool(false))
            || e.get("clientCert").is_some()
            || e.get("clientKey").is_some()
        {
            p.skipped.push(skip("custom TLS settings (sslVerify, clientCert) are not supported upstream"));
            continue;
        }
        let transport = e.get("transport").and_then(Value::as_str);
        let command = e.get("command").and_then(Value::as_str).filter(|c| !c.trim().is_empty());
        let url = e.get("url").and_then(Value::as_str);
        let transport = match (transport, command, url) {
            (Some("sse"), _, _) => {
                p.skipped.push(skip("the old HTTP+SSE transport is not supported upstream"));
                continue;
            }
            (Some("stdio") | None, Some(_), _) => Transport::Stdio,
            (Some("streamable-http") | None, None, Some(_)) => Transport::StreamableHttp,
            _ => {
                p.skipped.push(skip("neither a command (stdio) nor a url (streamable-http)"));
                continue;
            }
        };
        let timeout_s = e.get("requestTimeoutMs").and_then(Value::as_u64).map_or(60, |ms| ms.div_ceil(1000).max(1));
        let filter = e.get("toolFilter");
        let clean = clean_name(name, &p.servers);
        if clean != *name {
            p.renamed.insert(name.clone(), clean.clone());
        }
        let http = transport == Transport::StreamableHttp;
        let cfg = McpServerConfig {
            name: clean,
            transport,
            url: if http { url.map(str::to_string) } else { None },
            headers: if http { map(e.get("headers")) } else { BTreeMap::new() },
            command: if http { None } else { command.map(str::to_string) },
            args: if http { Vec::new() } else { strings(e.get("args")) },
            env: if http { BTreeMap::new() } else { map(e.get("env")) },
            cwd: if http { None } else { e.get("cwd").and_then(Value::as_str).map(Into::into) },
            agents: None,
            tool_filter: ToolFilter {
                include: strings(filter.and_then(|f| f.get("include"))),
                exclude: strings(filter.and_then(|f| f.get("exclude"))),
            },
            timeout_s,
            prefix: None,
            cost_usd: BTreeMap::new(),
        };
        debug_assert!(valid_server_name(&cfg.name));
        p.servers.push(cfg);
    }
    Ok(p)
}

/// The `${VAR}` names a server's config refers to (ClawButler's own environment must hold
/// them).
pub fn referenced_env(s: &McpServerConfig) -> Vec<String> {
    let mut out = Vec::new();
    let values = s.headers.values().chain(s.env.values()).chain(s.args.iter());
    for v in values {
        let mut rest = v.as_str();
        while let Some(i) = rest.find("${") {
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else { break };
            let name = after[..end].to_string();
            if !out.contains(&name) {
                out.push(name);
            }
            rest = &after[end + 1..];
        }
    }
    out
}

/// `[[mcp_servers]]` TOML for the entries (what attach appends, and `--dry-run` prints).
pub fn to_toml(servers: &[McpServerConfig]) -> Result<String, String> {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        mcp_servers: &'a [McpServerConfig],
    }
    toml::to_string(&Doc { mcp_servers: servers }).map_err(|e| e.to_string())
}

/// OpenClaw's `requestTimeoutMs` for the agents' entries: the client timeout the sidecar
/// answers holds within (`[mcp] client_timeout_s`).
pub fn request_timeout_ms(settings: &McpSettings) -> u64 {
    settings.client_timeout_s.saturating_mul(1000)
}

/// An agent's entry in OpenClaw's `mcp.servers`: the sidecar's endpoint for that agent, its
/// token as an env reference (OpenClaw resolves `${VAR}`), and the request timeout.
pub fn agent_entry(agent: &str, data_base_url: &str, token_env: &str, settings: &McpSettings) -> Value {
    json!({
        "url": format!("{}/mcp/agent/{agent}", data_base_url.trim_end_matches('/')),
        "transport": "streamable-http",
        "headers": {"authorization": format!("Bearer ${{{token_env}}}")},
        "requestTimeoutMs": request_timeout_ms(settings),
        "connectionTimeoutMs": 30000,
    })
}

/// The env variable an agent's MCP token is kept in, e.g. `CB_MCP_TOKEN_MAIN`.
pub fn token_env(agent: &str) -> String {
    let up: String =
        agent.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("CB_MCP_TOKEN_{up}")
}

/// The `tools.deny` globs an agent gets: every other agent's ClawButler entry.
pub fn deny_globs(agents: &[String], agent: &str) -> Vec<String> {
    agents.iter().filter(|a| a.as_str() != agent).map(|a| format!("{}__*", entry_name(a))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openclaw_servers_become_mcp_servers_entries() {
        let servers = json!({
            "github": {"url": "https://api.githubcopilot.com/mcp/", "transport": "streamable-http",
                       "headers": {"authorization": "Bearer ${GITHUB_TOKEN}", "x-n": 3},
                       "requestTimeoutMs": 90500, "toolFilter": {"include": ["get_*"], "exclude": ["delete_*"]}},
            "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv"],
                      "env": {"DEBUG": "1"}, "cwd": "/srv"},
            "my.server": {"command": "/usr/bin/x"},
            "old": {"url": "http://x/sse", "transport": "sse"},
            "off": {"command": "x", "enabled": false},
            "gdrive": {"url": "https://x/mcp", "auth": "oauth"},
            "selfsigned": {"url": "https://x/mcp", "sslVerify": false},
            "cb-main": {"url": "http://127.0.0.1:8787/mcp/agent/main"},
            "empty": {}
        });
        let p = plan(&servers).unwrap();
        let names: Vec<&str> = p.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["github", "files", "my-server"]);
        let gh = &p.servers[0];
        assert_eq!(gh.transport, Transport::StreamableHttp);
        assert_eq!(gh.headers["authorization"], "Bearer ${GITHUB_TOKEN}");
        assert_eq!(gh.headers["x-n"], "3");
        assert_eq!(gh.timeout_s, 91);
        assert_eq!(gh.tool_filter.include, vec!["get_*"]);
        assert_eq!(gh.tool_filter.exclude, vec!["delete_*"]);
        let files = &p.servers[1];
        assert_eq!(files.transport, Transport::Stdio);
        assert_eq!(files.command.as_deref(), Some("npx"));
        assert_eq!(files.args.len(), 3);
        assert_eq!(files.cwd.as_deref(), Some(std::path::Path::new("/srv")));
        assert!(files.url.is_none() && files.headers.is_empty());
        assert_eq!(p.renamed.get("my.server").map(String::as_str), Some("my-server"));
        let skipped: Vec<&str> = p.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(skipped, vec!["old", "off", "gdrive", "selfsigned", "cb-main", "empty"]);
        assert!(p.skipped.iter().all(|s| !s.reason.is_empty()));
        assert_eq!(referenced_env(gh), vec!["GITHUB_TOKEN"]);
        // The entries pass ClawButler's own validation (`github` once the env holds its token).
        assert!(crate::config::validate(&McpSettings::default(), &p.servers[1..]).is_ok());
    }

    #[test]
    fn toml_round_trips() {
        let p = plan(&json!({"files": {"command": "npx", "args": ["-y", "x"], "env": {"A": "1"}}})).unwrap();
        let text = to_toml(&p.servers).unwrap();
        assert!(text.contains("[[mcp_servers]]") && text.contains("transport = \"stdio\""), "{text}");
        #[derive(serde::Deserialize)]
        struct Doc {
            mcp_servers: Vec<McpServerConfig>,
        }
        let back: Doc = toml::from_str(&text).unwrap();
        assert_eq!(back.mcp_servers, p.servers);
    }

    #[test]
    fn agent_entries_tokens_and_deny_globs() {
        let s = McpSettings { client_timeout_s: 600, ..McpSettings::default() };
        let e = agent_entry("ops", "http://127.0.0.1:8787/", &token_env("ops"), &s);
        assert_eq!(e["url"], "http://127.0.0.1:8787/mcp/agent/ops");
        assert_eq!(e["headers"]["authorization"], "Bearer ${CB_MCP_TOKEN_OPS}");
        assert_eq!(e["requestTimeoutMs"], 600_000);
        assert_eq!(token_env("my-agent"), "CB_MCP_TOKEN_MY_AGENT");
        assert_eq!(entry_name("main"), "cb-main");
        let agents = vec!["main".to_string(), "ops".to_string(), "qa".to_string()];
        assert_eq!(deny_globs(&agents, "ops"), vec!["cb-main__*", "cb-qa__*"]);
        assert!(plan(&json!([])).is_err());
    }
}

//! The MCP section: OpenClaw's own MCP servers move behind the sidecar, and the report.
//!
//! MCP servers are global in OpenClaw (`mcp.servers.<name>`); an agent reaches every enabled
//! server its tool policy does not deny (`tools.deny: ["<server>__*"]`,
//! `openclaw-interception.md` §2.3). A server is governed for an agent when it is that
//! agent's sidecar endpoint (`http://<sidecar>/mcp/agent/<agent>`).
//!
//! Attach ([`plan`], with `mcp::attach` of the MCP crate): every `mcp.servers` entry the
//! sidecar can proxy (not a `cb-` entry, not disabled, not OAuth, not the old SSE transport,
//! no literal secret OpenClaw hides from `config.get`) is removed from OpenClaw and becomes an
//! `[[mcp_servers]]` entry of ClawButler's config ([`CbChange::AddMcpServer`]); each agent
//! gets `mcp.servers.cb-<agent>` pointing at its endpoint, and denies the other agents'
//! `cb-<other>__*`. Detach restores all of it through the generic config record.
//!
//! The agent's MCP token is an env reference (`Bearer ${CB_MCP_TOKEN_<AGENT>}`): OpenClaw
//! 2026.9.6's schema allows only strings, numbers and booleans as MCP `headers` (no
//! SecretRef, unlike model provider keys), and resolves `${VAR}` from the gateway's own
//! environment (a missing variable stays literal, so the sidecar refuses the call with 401
//! until the gateway is restarted with it). The CLI writes the lines to an env file (0600)
//! and says to add it to the gateway's environment.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::models::entry;
use super::report::{PathStatus, State, View};
use super::wire::CbChange;
use crate::GatewayError;

/// What OpenClaw shows instead of a secret in `config.get`.
const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// What the sidecar's MCP side looks like to attach.
pub struct McpSide<'a> {
    pub settings: &'a ::mcp::McpSettings,
    /// The names of its `[[mcp_servers]]` entries.
    pub servers: &'a [String],
}

/// The MCP part of an attach plan.
#[derive(Debug, Default)]
pub struct McpWiring {
    /// New `[[mcp_servers]]` entries.
    pub cb: Vec<CbChange>,
    /// Agents that get a `cb-<agent>` entry (each needs an MCP token).
    pub agents: Vec<String>,
    /// Plan lines (notes).
    pub lines: Vec<String>,
}

fn has_redacted(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(REDACTED),
        Value::Object(o) => o.values().any(has_redacted),
        Value::Array(a) => a.iter().any(has_redacted),
        _ => false,
    }
}

/// Plan the MCP rewiring on `after` (the config being built) for `agents`.
pub fn plan(after: &mut Value, agents: &[String], addr: &str, side: &McpSide<'_>) -> McpWiring {
    let mut w = McpWiring::default();
    let servers = after.pointer("/mcp/servers").cloned().unwrap_or_else(|| json!({}));
    // Entries whose secrets OpenClaw hides cannot be copied: they stay, with the reason.
    let mut readable = serde_json::Map::new();
    for (name, e) in servers.as_object().into_iter().flatten() {
        if !name.starts_with("cb-") && has_redacted(e) {
            w.lines.push(format!(
                "= mcp server {name}: holds a literal secret OpenClaw does not reveal; it stays in OpenClaw, \
                 ungoverned (make the value an env reference ${{VAR}}, or add it to [[mcp_servers]] yourself)"
            ));
        } else {
            readable.insert(name.clone(), e.clone());
        }
    }
    let moved = match ::mcp::attach::plan(&Value::Object(readable)) {
        Ok(p) => p,
        Err(e) => {
            w.lines.push(format!("= mcp.servers: {e}; left as is"));
            return w;
        }
    };
    for s in &moved.skipped {
        if !s.name.starts_with("cb-") {
            w.lines.push(format!("= mcp server {}: {}", s.name, s.reason));
        }
    }
    let mut taken: Vec<String> = side.servers.to_vec();
    let mut to_move = Vec::new();
    for cfg in moved.servers {
        let oc_name = moved.renamed.iter().find(|(_, v)| **v == cfg.name).map_or(cfg.name.clone(), |(k, _)| k.clone());
        if taken.contains(&cfg.name) {
            w.lines.push(format!(
                "= mcp server {oc_name}: ClawButler already has an [[mcp_servers]] entry named {}; left in OpenClaw",
                cfg.name
            ));
            continue;
        }
        taken.push(cfg.name.clone());
        to_move.push((oc_name, cfg));
    }
    if to_move.is_empty() && side.servers.is_empty() {
        return w;
    }
    for (oc_name, cfg) in to_move {
        if let Some(o) = after.pointer_mut("/mcp/servers").and_then(Value::as_object_mut) {
            o.remove(&oc_name);
        }
        for env in ::mcp::attach::referenced_env(&cfg) {
            if std::env::var(&env).map_or(true, |v| v.is_empty()) {
                w.lines.push(format!(
                    "! {env} is not set here: the sidecar reads it for MCP server {} and needs it in its environment",
                    cfg.name
                ));
            }
        }
        w.cb.push(CbChange::AddMcpServer { openclaw_name: oc_name, server: Box::new(cfg) });
    }
    let base = format!("http://{addr}");
    for id in agents {
        if !after.pointer("/agents/entries").and_then(|e| e.get(id)).is_some_and(Value::is_object) {
            w.lines.push(format!(
                "= agent {id}: no agents.entries.{id} to deny the other agents' MCP entries in; it gets no \
                 ClawButler MCP entry (add the entry and attach again)"
            ));
            continue;
        }
        w.agents.push(id.clone());
    }
    for id in &w.agents {
        let name = ::mcp::attach::entry_name(id);
        let e = ::mcp::attach::agent_entry(id, &base, &::mcp::attach::token_env(id), side.settings);
        if !after["mcp"].is_object() {
            after["mcp"] = json!({});
        }
        if !after["mcp"]["servers"].is_object() {
            after["mcp"]["servers"] = json!({});
        }
        after["mcp"]["servers"][&name] = e;
        let globs = ::mcp::attach::deny_globs(&w.agents, id);
        if globs.is_empty() {
            continue;
        }
        let entry = &mut after["agents"]["entries"][id];
        if !entry["tools"].is_object() {
            entry["tools"] = json!({});
        }
        if !entry["tools"]["deny"].is_array() {
            entry["tools"]["deny"] = json!([]);
        }
        if let Some(deny) = entry["tools"]["deny"].as_array_mut() {
            for g in globs {
                if !deny.iter().any(|d| d.as_str() == Some(g.as_str())) {
                    deny.push(json!(g));
                }
            }
        }
    }
    w
}

/// Where the MCP token lines for a gateway go: beside the attach record, absolute.
pub fn env_file_path(data_dir: &Path, gateway_url: &str) -> Result<PathBuf, GatewayError> {
    let key_file = super::keys::file_path(data_dir, gateway_url)?;
    let safe: String = gateway_url.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    Ok(key_file.with_file_name(format!("mcp-tokens-{safe}.env")))
}

/// Write `VAR=token` lines (mode 0600, replaced atomically) for the gateway's environment
/// (a systemd `EnvironmentFile=`, or `set -a; . FILE`).
pub fn write_env_file(path: &Path, tokens: &[(String, String)]) -> Result<(), GatewayError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |p: &Path| {
        let path = p.to_path_buf();
        move |source| GatewayError::RecordFile { path, source }
    };
    let body: String = tokens.iter().map(|(env, t)| format!("{env}={t}\n")).collect();
    let tmp = path.with_extension("env.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(err(&tmp))?;
    f.write_all(body.as_bytes()).and_then(|()| f.sync_all()).map_err(err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(err(path))
}

/// Remove the env file (absent is fine).
pub fn remove_env_file(path: &Path) -> Result<(), GatewayError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(GatewayError::RecordFile { path: path.to_path_buf(), source }),
    }
}

/// The tool-name prefix OpenClaw gives a server: characters outside `[A-Za-z0-9_-]` become
/// `-`, and a name not starting with a letter gets `mcp-` in front.
pub fn prefix(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) {
        s
    } else {
        format!("mcp-{s}")
    }
}

fn denied(config: &Value, id: &str, server: &str) -> bool {
    let pre = format!("{}__*", prefix(server));
    [entry(config, id).pointer("/tools/deny"), config.pointer("/tools/deny")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .any(|d| d == pre || d == "*" || d == "group:plugins" || d == "bundle-mcp")
}

/// The MCP paths of agent `id`.
pub fn report(view: &View<'_>, id: &str) -> Vec<PathStatus> {
    let mine = format!("http://{}/mcp/agent/{id}", view.sidecar);
    let mut out = Vec::new();
    for (name, s) in view.config.pointer("/mcp/servers").and_then(Value::as_object).into_iter().flatten() {
        if s.get("enabled").and_then(Value::as_bool) == Some(false) || denied(view.config, id, name) {
            continue;
        }
        let url = s.get("url").and_then(Value::as_str);
        let target =
            url.map(str::to_string).or_else(|| s.get("command").and_then(Value::as_str).map(|c| format!("stdio: {c}")));
        if url.is_some_and(|u| u.trim_end_matches('/') == mine) {
            out.push(PathStatus::new(
                format!("mcp server {name}"),
                target,
                State::Governed,
                format!("the sidecar's MCP endpoint for {id}"),
            ));
        } else {
            out.push(PathStatus::new(
                format!("mcp server {name}"),
                target,
                State::Ungoverned,
                "MCP server configured directly in OpenClaw: its tool calls do not reach ClawButler",
            ));
        }
    }
    if out.is_empty() {
        out.push(PathStatus::new("mcp", None, State::Off, "no MCP server configured for this agent"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn servers_are_reported_unless_denied_or_the_sidecar() {
        let cfg = json!({"mcp": {"servers": {"files": {"command": "npx fs"}, "cb-a": {"url": "http://s:1/mcp/agent/a"},
                                             "off": {"url": "http://x", "enabled": false}, "9lives": {"url": "http://y"}}},
                         "agents": {"entries": {"a": {"tools": {"deny": ["mcp-9lives__*"]}}}}});
        let (exec, agents) = (json!({}), ["a".to_string(), "b".to_string()]);
        let view = View { config: &cfg, agents: &agents, exec: &exec, sidecar: "s:1", approver: None };
        let a = report(&view, "a");
        assert_eq!(a.len(), 2, "{a:?}");
        assert!(a.iter().any(|p| p.path == "mcp server files" && p.state == State::Ungoverned));
        assert!(a.iter().any(|p| p.path == "mcp server cb-a" && p.state == State::Governed));
        let b = report(&view, "b");
        assert_eq!(
            b.iter().filter(|p| p.state == State::Ungoverned).count(),
            3,
            "b reaches files, 9lives and a's endpoint"
        );
        let none = json!({});
        assert_eq!(report(&View { config: &none, ..view }, "a")[0].state, State::Off);
    }

    #[test]
    fn plan_moves_servers_and_gives_each_agent_its_own_entry() {
        let mut cfg = json!({
            "mcp": {"servers": {
                "ev": {"url": "http://127.0.0.1:9/mcp", "transport": "streamable-http", "requestTimeoutMs": 5000},
                "hidden": {"url": "http://x/mcp", "headers": {"authorization": REDACTED}},
                "taken": {"command": "npx"},
                "off": {"command": "x", "enabled": false}}},
            "agents": {"entries": {"a": {}, "b": {"tools": {"deny": ["web_fetch"]}}}}});
        let settings = ::mcp::McpSettings::default();
        let names = vec!["taken".to_string()];
        let side = McpSide { settings: &settings, servers: &names };
        let agents: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let w = plan(&mut cfg, &agents, "127.0.0.1:8787", &side);
        assert_eq!(w.agents, ["a", "b"], "c has no entry to deny in: {:?}", w.lines);
        let mut servers: Vec<&str> = cfg["mcp"]["servers"].as_object().unwrap().keys().map(String::as_str).collect();
        servers.sort();
        assert_eq!(servers, ["cb-a", "cb-b", "hidden", "off", "taken"], "ev moved, the rest stays");
        assert_eq!(cfg["mcp"]["servers"]["cb-a"]["url"], "http://127.0.0.1:8787/mcp/agent/a");
        assert_eq!(cfg["mcp"]["servers"]["cb-b"]["headers"]["authorization"], "Bearer ${CB_MCP_TOKEN_B}");
        assert_eq!(cfg["agents"]["entries"]["a"]["tools"]["deny"], json!(["cb-b__*"]));
        assert_eq!(cfg["agents"]["entries"]["b"]["tools"]["deny"], json!(["web_fetch", "cb-a__*"]));
        assert!(cfg["agents"]["entries"].get("c").is_none(), "no entry created for c");
        let [CbChange::AddMcpServer { openclaw_name, server }] = w.cb.as_slice() else { panic!("{:?}", w.cb) };
        assert_eq!((openclaw_name.as_str(), server.name.as_str()), ("ev", "ev"));
        assert_eq!(server.url.as_deref(), Some("http://127.0.0.1:9/mcp"));
        assert_eq!(server.timeout_s, 5);
        for (name, why) in
            [("hidden", "literal secret"), ("taken", "already has"), ("off", "disabled"), ("c", "no agents")]
        {
            assert!(w.lines.iter().any(|l| l.contains(name) && l.contains(why)), "{name}: {:?}", w.lines);
        }
        // The report of the result: each agent's own entry governed, the other's denied.
        let exec = json!({});
        let view = View { config: &cfg, agents: &agents, exec: &exec, sidecar: "127.0.0.1:8787", approver: None };
        let a = report(&view, "a");
        assert!(a.iter().any(|p| p.path == "mcp server cb-a" && p.state == State::Governed), "{a:?}");
        assert!(!a.iter().any(|p| p.path == "mcp server cb-b"), "{a:?}");
    }

    #[test]
    fn nothing_to_proxy_changes_nothing() {
        let cfg = json!({"agents": {"entries": {"a": {}, "b": {}}}});
        let mut after = cfg.clone();
        let settings = ::mcp::McpSettings::default();
        let side = McpSide { settings: &settings, servers: &[] };
        let w = plan(&mut after, &["a".to_string(), "b".to_string()], "s:1", &side);
        assert!(w.agents.is_empty() && w.cb.is_empty());
        assert_eq!(after, cfg);
    }

    #[test]
    fn the_env_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = env_file_path(dir.path(), "ws://127.0.0.1:1").unwrap();
        write_env_file(&path, &[("CB_MCP_TOKEN_A".into(), "cbm_x".into())]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "CB_MCP_TOKEN_A=cbm_x\n");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        remove_env_file(&path).unwrap();
        remove_env_file(&path).unwrap();
        assert!(!path.exists());
    }
}

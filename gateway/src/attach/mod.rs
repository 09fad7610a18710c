//! `clawbutler attach` / `detach` / `status --gateway`: rewire an OpenClaw gateway's agents
//! through the sidecar, report what goes through it, and put everything back.
//!
//! Attach reads `config.get`, `agents.list` and `exec.approvals.get`, then plans, section by
//! section:
//! - models (`wire.rs`, `models.rs`, `memory.rs`): every model slot of every agent on a
//!   provider the sidecar can stand in for gets the agent's own sidecar provider, the agent
//!   is pinned to its sidecar providers (`modelPolicy.allow`), memory embeddings move to the
//!   sidecar, and ClawButler's own config gets the `[[upstreams]]` (with `api_key_env`) and
//!   `[prices]` that needs (`cb_config.rs`, written by the CLI); every model of a provider
//!   attach writes sends OpenClaw's session id (`session.rs`), for cost by task type;
//! - per-agent keys (`keys.rs`), wired as file SecretRefs;
//! - exec approvals (`exec.rs`): ask, so ClawButler decides;
//! - hardening (`hardening.rs`): deny the replaced bundled provider plugins, turn off the
//!   catalog refresh, print the gateway environment change;
//! - MCP (`mcp.rs`): OpenClaw's `mcp.servers` move into ClawButler's `[[mcp_servers]]`, each
//!   agent gets its own `cb-<agent>` entry on the sidecar's MCP endpoint (its MCP token as an
//!   env reference, written to an env file for the gateway) and denies the others';
//! - the plugin (`plugin.rs`): installed and enabled, so built-in tools ask the sidecar.
//!
//! It prints the diff and the governance report (`report.rs`) of the planned config; without
//! `--dry-run` it applies it (`config.patch` + baseHash) and stores the exact changes
//! (re-read after applying, so the gateway's own normalisation is included) with the
//! report in the data dir. Detach puts back exactly those values, skipping any path changed
//! since, restores ClawButler's config file and revokes the keys.

mod apply;
pub mod catalog;
pub mod cb_config;
pub mod exec;
pub mod hardening;
pub mod keys;
pub mod mcp;
pub mod memory;
pub mod models;
pub mod plugin;
pub mod report;
mod session;
pub mod steps;
#[cfg(test)]
mod tests;
pub mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::kill::{diff, restore_patch, Change};
use super::{GatewayError, GatewaySettings, Link};
pub use apply::{apply, detach, Applied, Detached};
pub use cb_config::CbFileRecord;
pub use hardening::Hardening;
pub use mcp::McpSide;
pub use plugin::PluginRecord;
pub use report::Report;
pub use wire::{CbChange, Sidecar};

/// The API family of a sidecar upstream (`[[upstreams]] kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    Openai,
    Anthropic,
}

impl UpstreamKind {
    /// The kind that serves an OpenClaw provider `api`, if the sidecar proxies it.
    pub fn for_api(api: &str) -> Option<UpstreamKind> {
        match api {
            "openai-completions" | "openai-responses" => Some(UpstreamKind::Openai),
            "anthropic-messages" => Some(UpstreamKind::Anthropic),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Openai => "openai",
            UpstreamKind::Anthropic => "anthropic",
        }
    }
}

/// An upstream of the sidecar's config as attach needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamRef {
    pub name: String,
    pub kind: UpstreamKind,
    pub url: String,
    /// When set, the sidecar holds the key (from this variable).
    pub api_key_env: Option<String>,
}

/// What attach changed, stored for detach.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttachRecord {
    pub url: String,
    pub at: String,
    pub config_changes: Vec<Change>,
    /// `file.agents.<id>` of the exec approvals before attach (None = absent).
    pub exec_before: BTreeMap<String, Option<Value>>,
    /// The per-agent keys attach created (revoked by detach).
    #[serde(default)]
    pub agent_keys: Vec<KeyRef>,
    /// The file holding their secrets for OpenClaw (deleted by detach).
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// What attach did to ClawButler's config file (restored by detach).
    #[serde(default)]
    pub clawbutler_config: Option<CbFileRecord>,
    /// Variables the sidecar now reads vendor keys from (the gateway should not have them).
    #[serde(default)]
    pub key_envs: Vec<String>,
    /// The governance report right after attach (the baseline drift is measured from).
    #[serde(default)]
    pub report: Option<Report>,
    /// The per-agent MCP tokens attach created (revoked by detach).
    #[serde(default)]
    pub mcp_tokens: Vec<KeyRef>,
    /// The env file holding them for the gateway (deleted by detach).
    #[serde(default)]
    pub mcp_env_file: Option<PathBuf>,
    /// The plugin attach installed (its files go, its token is revoked).
    #[serde(default)]
    pub plugin: Option<plugin::PluginRecord>,
}

/// A per-agent key by agent and key id (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    pub agent: String,
    pub id: String,
}

/// A key the CLI created for [`apply`]: its ref and the secret for the key file.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: KeyRef,
    pub secret: String,
}

/// How attach runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Wire per-agent keys (the CLI creates one per [`Prepared::agents`]).
    pub with_keys: bool,
    pub hardening: Hardening,
}

/// The tool paths attach puts through the sidecar (each `None` when opted out).
pub struct Tools<'a> {
    /// MCP (`--no-mcp` = None).
    pub mcp: Option<mcp::McpSide<'a>>,
    /// The plugin's heartbeat period (`[plugin] heartbeat_s`; `--no-plugin` = None).
    pub plugin_heartbeat_s: Option<u64>,
}

/// A plugin token the CLI created for [`apply`].
#[derive(Debug, Clone)]
pub struct IssuedPluginToken {
    pub id: String,
    pub secret: String,
}

/// The credentials the CLI created for [`apply`].
#[derive(Debug, Clone, Default)]
pub struct Issued {
    /// Per-agent keys (one per [`Prepared::agents`] when keys are wired).
    pub keys: Vec<IssuedKey>,
    /// MCP tokens (one per [`Prepared::mcp_agents`]).
    pub mcp: Vec<IssuedKey>,
    /// The plugin token (when [`Prepared::plugin`] is set).
    pub plugin: Option<IssuedPluginToken>,
}

/// The changes from `before` to `after` that attach owns: everything but the gateway's own
/// `meta` bookkeeping, which OpenClaw rewrites on every write (a change to it is never
/// attach's, and a patch that only touches it is a no-op the gateway may never answer).
pub fn config_diff(before: &Value, after: &Value) -> Vec<Change> {
    diff(before, after).into_iter().filter(|c| c.path.first().map(String::as_str) != Some("meta")).collect()
}

/// The forward merge patch (and replace paths) of `changes` applied to `current`.
pub fn forward_patch(changes: &[Change], current: &Value) -> (Value, Vec<String>) {
    let swapped: Vec<Change> = changes
        .iter()
        .map(|c| Change { path: c.path.clone(), before: c.after.clone(), after: c.before.clone() })
        .collect();
    let (patch, replace, _) = restore_patch(&swapped, current);
    (patch, replace)
}

/// One line per change: `~ path: before -> after`. A whole object added or removed is shown
/// key by key (down to values that are not objects, SecretRefs kept whole), so a new
/// `models` block reads as one line per provider setting.
pub fn render(changes: &[Change]) -> Vec<String> {
    let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_string(), |v| v.to_string());
    let mut out = Vec::new();
    for c in changes {
        match (&c.before, &c.after) {
            (None, Some(Value::Object(_))) | (Some(Value::Object(_)), None) => {
                let (v, added) = match (&c.before, &c.after) {
                    (None, Some(v)) => (v, true),
                    (Some(v), _) => (v, false),
                    _ => continue,
                };
                expand(&mut c.path.join("."), v, added, &mut out);
            }
            _ => out.push(format!("~ {}: {} -> {}", c.path.join("."), show(&c.before), show(&c.after))),
        }
    }
    out
}

fn expand(path: &mut String, v: &Value, added: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(o) if !o.is_empty() && !o.contains_key("source") => {
            for (k, x) in o {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                expand(path, x, added, out);
                path.truncate(len);
            }
        }
        _ if added => out.push(format!("~ {path}: (absent) -> {v}")),
        _ => out.push(format!("~ {path}: {v} -> (absent)")),
    }
}

/// Where the record for `url` lives.
pub fn record_path(data_dir: &Path, url: &str) -> PathBuf {
    let safe: String = url.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    data_dir.join("gateway").join(format!("attach-{safe}.json"))
}

/// The attach record for `url`, if there is one.
pub fn load_record(data_dir: &Path, url: &str) -> Result<Option<AttachRecord>, GatewayError> {
    let path = record_path(data_dir, url);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t).map(Some).map_err(|source| GatewayError::RecordJson { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(GatewayError::RecordFile { path, source }),
    }
}

/// A short-lived link for the CLI.
pub async fn connect(
    url: &str,
    token_env: &str,
    data_dir: &Path,
) -> Result<(Arc<Link>, tokio::sync::watch::Sender<bool>), GatewayError> {
    let settings =
        GatewaySettings { url: Some(url.to_string()), token_env: token_env.to_string(), ..Default::default() };
    let link = super::connect_link(&settings, url, data_dir, &prometheus::Registry::new())?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    link.spawn(rx);
    if !link.wait_connected(Duration::from_secs(30)).await {
        let _ = tx.send(true);
        return Err(GatewayError::Handshake(format!("could not connect to {url} within 30 s")));
    }
    Ok((link, tx))
}

async fn config_get(link: &Link) -> Result<(String, Value), GatewayError> {
    let v = link.call("config.get", json!({})).await?;
    Ok((v["hash"].as_str().unwrap_or_default().to_string(), v["parsed"].clone()))
}

async fn patch(link: &Link, raw: &Value, replace: &[String], hash: &str, note: &str) -> Result<(), GatewayError> {
    let mut p = json!({"raw": raw.to_string(), "baseHash": hash, "note": note});
    if !replace.is_empty() {
        p["replacePaths"] = json!(replace);
    }
    link.call("config.patch", p).await.map(|_| ())
}

/// What the gateway says, as the report reads it.
pub struct GatewayState {
    pub hash: String,
    pub config: Value,
    pub agents: Vec<String>,
    /// The raw `exec.approvals.get` answer.
    pub exec: Value,
}

/// Read the config, the roster and the exec approvals.
pub async fn read_state(link: &Link) -> Result<GatewayState, GatewayError> {
    let (hash, config) = config_get(link).await?;
    let list = link.call("agents.list", json!({})).await?;
    let agents =
        list["agents"].as_array().into_iter().flatten().filter_map(|a| a["id"].as_str()).map(str::to_string).collect();
    let exec = link.call("exec.approvals.get", json!({})).await?;
    Ok(GatewayState { hash, config, agents, exec })
}

impl GatewayState {
    /// The governance report of this state.
    pub fn report(&self, sidecar: &str, approver: Option<bool>) -> Report {
        let exec = exec::effective_document(&self.exec);
        report::compute(&report::View { config: &self.config, agents: &self.agents, exec: &exec, sidecar, approver })
    }
}

/// A computed attach, not yet applied: what [`apply`] needs, and the plan to print.
pub struct Prepared {
    hash: String,
    before: Value,
    changes: Vec<Change>,
    agents: Vec<String>,
    exec_file: Value,
    exec_hash: Value,
    exec_before: BTreeMap<String, Option<Value>>,
    rec_path: PathBuf,
    keys_file: Option<PathBuf>,
    cb: Vec<CbChange>,
    key_envs: Vec<String>,
    report: Report,
    mcp_agents: Vec<String>,
    mcp_env_file: Option<PathBuf>,
    plugin: Option<crate::plugin_install::PluginInstall>,
    /// The plan, one line each.
    pub lines: Vec<String>,
}

impl Prepared {
    /// The agents this attach gives a sidecar path (each needs a key when keys are wired).
    pub fn agents(&self) -> &[String] {
        &self.agents
    }

    /// Where the keys will be written, when keys are wired.
    pub fn keys_file(&self) -> Option<&Path> {
        self.keys_file.as_deref()
    }

    /// The changes ClawButler's own config file needs.
    pub fn cb_changes(&self) -> &[CbChange] {
        &self.cb
    }

    /// The governance report of the planned config.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// Whether the gateway config would change at all.
    pub fn changes_gateway(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The agents that get a `cb-<agent>` MCP entry (each needs an MCP token).
    pub fn mcp_agents(&self) -> &[String] {
        &self.mcp_agents
    }

    /// Where the MCP tokens go for the gateway's environment, when MCP is wired.
    pub fn mcp_env_file(&self) -> Option<&Path> {
        self.mcp_env_file.as_deref()
    }

    /// The plugin install, when attach installs it (it needs a plugin token).
    pub fn plugin(&self) -> Option<&crate::plugin_install::PluginInstall> {
        self.plugin.as_ref()
    }
}

/// Whether some agent uses a bundled provider's model the shipped catalog lacks (then the
/// gateway's `models.list` is read for its facts).
fn needs_facts(config: &Value, agents: &[String]) -> bool {
    agents.iter().any(|id| {
        models::slots(config, id).iter().flat_map(|s| s.refs()).any(|r| {
            models::resolve_ref(config, id, &r)
                .is_some_and(|(p, m)| catalog::lookup(&p).is_some_and(|b| b.kind().is_some() && b.model(&m).is_none()))
        })
    })
}

/// Read the gateway and compute the rewiring (changes nothing).
pub async fn prepare(
    link: &Link,
    side: &Sidecar<'_>,
    tools: &Tools<'_>,
    data_dir: &Path,
    opts: Options,
) -> Result<Prepared, GatewayError> {
    let rec_path = record_path(data_dir, link.url());
    let keys_file = if opts.with_keys { Some(keys::file_path(data_dir, link.url())?) } else { None };
    let state = read_state(link).await?;
    let facts = match (needs_facts(&state.config, &state.agents), state.agents.first()) {
        (true, Some(first)) => {
            link.call("models.list", json!({"agentId": first, "view": "all"})).await.unwrap_or(Value::Null)
        }
        _ => Value::Null,
    };
    let w = wire::plan(&state.config, &state.agents, side, &facts, opts.with_keys);
    let mut after = w.after;
    if let (Some(file), false) = (&keys_file, w.agents.is_empty()) {
        if !after["secrets"].is_object() {
            after["secrets"] = json!({});
        }
        if !after["secrets"]["providers"].is_object() {
            after["secrets"]["providers"] = json!({});
        }
        after["secrets"]["providers"][keys::SECRETS_PROVIDER] = keys::provider_entry(file);
    }
    let hardening_lines = if w.agents.is_empty() {
        Vec::new()
    } else {
        hardening::plan(&mut after, &w.replaced, &w.key_envs, opts.hardening)
    };
    // The tool paths: MCP for every agent with a valid id, the plugin for the gateway.
    let valid: Vec<String> = state.agents.iter().filter(|id| decision::agent_id::check(id).is_ok()).cloned().collect();
    let mcp_w = match &tools.mcp {
        Some(m) => mcp::plan(&mut after, &valid, side.addr, m),
        None => mcp::McpWiring::default(),
    };
    let mut cb = w.cb;
    cb.extend(mcp_w.cb);
    let mcp_env_file = if mcp_w.agents.is_empty() { None } else { Some(mcp::env_file_path(data_dir, link.url())?) };
    let plugin = tools.plugin_heartbeat_s.map(|hb| crate::plugin_install::PluginInstall::new(data_dir, side.addr, hb));
    let plugin_lines = plugin.as_ref().map(|p| plugin::plan(&mut after, p)).unwrap_or_default();
    let changes = config_diff(&state.config, &after);
    let (exec_file, exec_before, exec_lines) = exec::plan(&state.exec["file"], &w.agents);
    let planned = GatewayState {
        hash: String::new(),
        config: after,
        agents: state.agents.clone(),
        exec: json!({"file": exec_file, "resolvedDefaults": state.exec["resolvedDefaults"]}),
    };
    let report = planned.report(side.addr, None);
    let mut lines = render(&changes);
    lines.extend(cb.iter().map(CbChange::render));
    lines.extend(w.notes);
    lines.extend(mcp_w.lines);
    if let Some(f) = &mcp_env_file {
        for id in &mcp_w.agents {
            lines.push(format!(
                "+ MCP token for {id}: {}=... in {} (mode 0600) for the gateway's environment",
                ::mcp::attach::token_env(id),
                f.display()
            ));
        }
    }
    lines.extend(plugin_lines);
    if let Some(f) = &keys_file {
        for id in &w.agents {
            lines.push(format!("+ per-agent key for {id} (secret in {}, mode 0600)", f.display()));
        }
    }
    lines.extend(exec_lines);
    lines.extend(hardening_lines);
    Ok(Prepared {
        hash: state.hash,
        before: state.config,
        changes,
        agents: w.agents,
        exec_file,
        exec_hash: state.exec["hash"].clone(),
        exec_before,
        rec_path,
        keys_file,
        cb,
        key_envs: w.key_envs.into_iter().collect(),
        report,
        mcp_agents: mcp_w.agents,
        mcp_env_file,
        plugin,
        lines,
    })
}

/// Refuse to attach twice (checked before any key is created).
pub fn check_not_attached(data_dir: &Path, url: &str) -> Result<(), GatewayError> {
    let rec_path = record_path(data_dir, url);
    if rec_path.exists() {
        return Err(GatewayError::AlreadyAttached(rec_path));
    }
    Ok(())
}

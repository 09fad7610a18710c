//! `clawbutler attach` / `detach`: rewire an OpenClaw gateway's agents through the sidecar.
//!
//! Attach reads `config.get` and `agents.list`; for each agent whose model provider is defined
//! in `models.providers` and whose `baseUrl` is one of ClawButler's `[[upstreams]]`, it adds a
//! provider `cb-<agent>` (a copy of the original, key reference included) whose `baseUrl` is
//! `http://<sidecar>/a/<agent>/<upstream>/v1` (no `/v1` for `anthropic-messages`), points the
//! agent at it and pins it with `modelPolicy.allow: ["cb-<agent>/*"]`. It sets the agents' exec
//! approvals to ask (`exec.approvals.set` + baseHash) so ClawButler decides. It prints the
//! diff; without `--dry-run` it applies it (`config.patch` + baseHash) and stores the exact
//! changes (re-read after applying, so the gateway's own normalisation is included) in the
//! data dir. Detach puts back exactly those values, skipping any path changed since.
//!
//! Per-agent keys (`attach_keys.rs`): unless `[auth] agent_keys = "off"`, the CLI creates one
//! key per attached agent between [`prepare`] and [`apply`]; apply writes them to a private
//! file and wires each `cb-<agent>` provider to its entry through an OpenClaw file secrets
//! provider, and the record keeps the key ids so detach can revoke exactly those.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::attach_keys;
use super::kill::{diff, restore_patch, Change};
use super::{GatewayError, GatewaySettings, Link};

/// The exec-approval policy attach sets for each agent: every command not allowlisted asks,
/// and with no approver connected it is denied.
pub fn ask_policy() -> Value {
    json!({"security": "allowlist", "ask": "on-miss", "askFallback": "deny"})
}

/// An upstream of the sidecar's config as attach needs it: its route name, base URL, and
/// whether the sidecar holds its key (`api_key_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRef {
    pub name: String,
    pub url: String,
    pub holds_key: bool,
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

/// The computed rewiring.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Config document after attach (before the gateway normalises it).
    pub after: Value,
    pub changes: Vec<Change>,
    /// Agents left alone, with why.
    pub skipped: Vec<(String, String)>,
    pub agents: Vec<String>,
}

fn norm(url: &str) -> String {
    let u = url.trim_end_matches('/');
    u.strip_suffix("/v1").unwrap_or(u).to_string()
}

/// Compute the rewiring for `agents` (id, model ref "provider/model"). With `keys_file`, each
/// rewired provider also references its agent's key in that file (see `attach_keys.rs`).
pub fn plan(
    config: &Value,
    agents: &[(String, String)],
    upstreams: &[UpstreamRef],
    sidecar: &str,
    keys_file: Option<&Path>,
) -> Plan {
    let mut after = config.clone();
    let (mut skipped, mut done) = (Vec::new(), Vec::new());
    for (id, model_ref) in agents {
        if let Err(e) = decision::agent_id::check(id) {
            skipped.push((id.clone(), format!("{e}; the sidecar refuses such a path")));
            continue;
        }
        let Some((provider, model)) = model_ref.split_once('/') else {
            skipped.push((id.clone(), format!("model '{model_ref}' is not provider/model")));
            continue;
        };
        let Some(p) = config.pointer(&format!("/models/providers/{provider}")).filter(|p| p.is_object()) else {
            skipped.push((id.clone(), format!("provider '{provider}' is not in models.providers")));
            continue;
        };
        let base = p.get("baseUrl").and_then(Value::as_str).unwrap_or_default();
        if base.starts_with(&format!("http://{sidecar}/")) {
            skipped.push((id.clone(), "already routed through the sidecar".into()));
            continue;
        }
        let Some(up) = upstreams.iter().find(|u| norm(&u.url) == norm(base)) else {
            skipped.push((
                id.clone(),
                format!("no [[upstreams]] entry has url {base}; add one (name, kind, url = \"{base}\") and re-run"),
            ));
            continue;
        };
        let anthropic = p.get("api").and_then(Value::as_str) == Some("anthropic-messages");
        let suffix = if anthropic { "" } else { "/v1" };
        let cb = format!("cb-{id}");
        let mut np = p.clone();
        np["baseUrl"] = json!(format!("http://{sidecar}/a/{id}/{}{suffix}", up.name));
        // An inline key comes back redacted and cannot be copied: the sidecar must hold the
        // real key (`api_key_env` on the upstream). Key references (env/secret objects) copy as is.
        if np.get("apiKey").and_then(Value::as_str).is_some_and(|k| k.contains("__OPENCLAW_REDACTED__")) {
            np["apiKey"] = json!("clawbutler-managed");
            if !up.holds_key {
                skipped.push((
                    id.clone(),
                    format!("note: provider '{provider}' has an inline key; set api_key_env on upstream '{}' so the sidecar sends the real key", up.name),
                ));
            }
        }
        if keys_file.is_some() {
            attach_keys::wire(&mut np, id, up.holds_key);
        }
        after["models"]["providers"][&cb] = np;
        if !after["agents"]["entries"][id].is_object() {
            after["agents"]["entries"][id] = json!({});
        }
        after["agents"]["entries"][id]["model"] = json!(format!("{cb}/{model}"));
        after["agents"]["entries"][id]["modelPolicy"] = json!({"allow": [format!("{cb}/*")]});
        done.push(id.clone());
    }
    if let (Some(file), false) = (keys_file, done.is_empty()) {
        if !after["secrets"].is_object() {
            after["secrets"] = json!({});
        }
        if !after["secrets"]["providers"].is_object() {
            after["secrets"]["providers"] = json!({});
        }
        after["secrets"]["providers"][attach_keys::SECRETS_PROVIDER] = attach_keys::provider_entry(file);
    }
    let changes = diff(config, &after);
    Plan { after, changes, skipped, agents: done }
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

/// One line per change: `~ path: before -> after`.
pub fn render(changes: &[Change]) -> Vec<String> {
    let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_string(), |v| v.to_string());
    changes.iter().map(|c| format!("~ {}: {} -> {}", c.path.join("."), show(&c.before), show(&c.after))).collect()
}

/// Where the record for `url` lives.
pub fn record_path(data_dir: &Path, url: &str) -> PathBuf {
    let safe: String = url.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    data_dir.join("gateway").join(format!("attach-{safe}.json"))
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

/// A computed attach, not yet applied: what [`apply`] needs, and the diff to print.
pub struct Prepared {
    hash: String,
    before: Value,
    plan: Plan,
    exec_file: Value,
    exec_hash: Value,
    exec_before: BTreeMap<String, Option<Value>>,
    rec_path: PathBuf,
    keys_file: Option<PathBuf>,
    /// The diff and notes, one line each.
    pub lines: Vec<String>,
}

impl Prepared {
    /// The agents this attach rewires (each needs a key when keys are wired).
    pub fn agents(&self) -> &[String] {
        &self.plan.agents
    }

    /// Where the keys will be written, when keys are wired.
    pub fn keys_file(&self) -> Option<&Path> {
        self.keys_file.as_deref()
    }
}

/// Read the gateway and compute the rewiring (changes nothing). `with_keys`: wire per-agent
/// keys (the CLI then creates one per [`Prepared::agents`] and passes them to [`apply`]).
pub async fn prepare(
    link: &Link,
    upstreams: &[UpstreamRef],
    sidecar: &str,
    data_dir: &Path,
    with_keys: bool,
) -> Result<Prepared, GatewayError> {
    let rec_path = record_path(data_dir, link.url());
    let keys_file = if with_keys { Some(attach_keys::file_path(data_dir, link.url())?) } else { None };
    let (hash, before) = config_get(link).await?;
    let list = link.call("agents.list", json!({})).await?;
    let agents: Vec<(String, String)> = list["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let model = a["model"].as_str().or(a["model"]["primary"].as_str())?;
            Some((a["id"].as_str()?.to_string(), model.to_string()))
        })
        .collect();
    let plan = plan(&before, &agents, upstreams, sidecar, keys_file.as_deref());
    let mut lines = render(&plan.changes);
    for (id, why) in &plan.skipped {
        lines.push(format!("= agent {id}: {why}"));
    }
    if let Some(f) = &keys_file {
        for id in &plan.agents {
            lines.push(format!("+ per-agent key for {id} (secret in {}, mode 0600)", f.display()));
        }
    }
    let ea = link.call("exec.approvals.get", json!({})).await?;
    let mut file = ea["file"].clone();
    let mut exec_before = BTreeMap::new();
    for id in &plan.agents {
        let prev = file.pointer(&format!("/agents/{id}")).cloned();
        lines.push(format!(
            "~ exec-approvals agents.{id}: {} -> {}",
            prev.as_ref().map_or("(absent)".into(), |v| v.to_string()),
            ask_policy()
        ));
        exec_before.insert(id.clone(), prev);
        if !file["agents"].is_object() {
            file["agents"] = json!({});
        }
        let mut v = file["agents"][id].clone();
        if !v.is_object() {
            v = json!({});
        }
        if let (Some(o), Some(p)) = (v.as_object_mut(), ask_policy().as_object()) {
            o.extend(p.clone());
        }
        file["agents"][id] = v;
    }
    Ok(Prepared {
        hash,
        before,
        plan,
        exec_file: file,
        exec_hash: ea["hash"].clone(),
        exec_before,
        rec_path,
        keys_file,
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

/// Apply a prepared attach with the keys the CLI created (one per agent when keys are wired;
/// their secrets go to the key file before the config points at it). On failure the key
/// file is removed and nothing is recorded; the caller revokes the keys.
pub async fn apply(link: &Link, p: Prepared, keys: &[IssuedKey]) -> Result<Vec<String>, GatewayError> {
    let Prepared { hash, before, plan, exec_file, exec_hash, exec_before, rec_path, keys_file, mut lines } = p;
    if let Some(f) = &keys_file {
        let secrets: BTreeMap<String, String> = keys.iter().map(|k| (k.key.agent.clone(), k.secret.clone())).collect();
        attach_keys::write(f, &secrets)?;
    }
    let (raw, replace) = forward_patch(&plan.changes, &before);
    if let Err(e) = patch(link, &raw, &replace, &hash, "clawbutler attach").await {
        if let Some(f) = &keys_file {
            let _ = attach_keys::remove(f);
        }
        return Err(e);
    }
    let (_, after) = config_get(link).await?;
    let rec = AttachRecord {
        url: link.url().to_string(),
        at: chrono::Utc::now().to_rfc3339(),
        config_changes: diff(&before, &after),
        exec_before,
        agent_keys: keys.iter().map(|k| k.key.clone()).collect(),
        keys_file,
    };
    save(&rec_path, &rec)?;
    link.call("exec.approvals.set", json!({"file": exec_file, "baseHash": exec_hash})).await?;
    lines.push(format!("attached {} agent(s); record in {}", plan.agents.len(), rec_path.display()));
    Ok(lines)
}

fn save(path: &Path, rec: &AttachRecord) -> Result<(), GatewayError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|source| GatewayError::RecordFile { path: d.to_path_buf(), source })?;
    }
    let body = serde_json::to_vec_pretty(rec)
        .map_err(|source| GatewayError::RecordJson { path: path.to_path_buf(), source })?;
    std::fs::write(path, body).map_err(|source| GatewayError::RecordFile { path: path.to_path_buf(), source })
}

/// What detach did: the lines to print and the keys attach had created (the caller revokes
/// them; the record is already gone).
pub struct Detached {
    pub lines: Vec<String>,
    pub agent_keys: Vec<KeyRef>,
}

/// Detach: restore what attach stored, remove the key file; returns the printed lines and
/// the keys to revoke.
pub async fn detach(link: &Link, data_dir: &Path, dry_run: bool) -> Result<Detached, GatewayError> {
    let rec_path = record_path(data_dir, link.url());
    let text = std::fs::read_to_string(&rec_path)
        .map_err(|source| GatewayError::NotAttached { path: rec_path.clone(), source })?;
    let rec: AttachRecord =
        serde_json::from_str(&text).map_err(|source| GatewayError::RecordJson { path: rec_path.clone(), source })?;
    let (hash, current) = config_get(link).await?;
    let (raw, replace, skipped) = restore_patch(&rec.config_changes, &current);
    let undo: Vec<Change> = rec
        .config_changes
        .iter()
        .filter(|c| !skipped.contains(&c.path.join(".")))
        .map(|c| Change { path: c.path.clone(), before: c.after.clone(), after: c.before.clone() })
        .collect();
    let mut lines = render(&undo);
    lines.extend(skipped.iter().map(|p| format!("= {p} changed since attach; left as is")));
    lines.extend(rec.agent_keys.iter().map(|k| format!("- per-agent key {} of {}", k.id, k.agent)));
    if dry_run {
        lines.push("dry run: nothing changed".into());
        return Ok(Detached { lines, agent_keys: Vec::new() });
    }
    if raw.as_object().is_some_and(|o| !o.is_empty()) {
        patch(link, &raw, &replace, &hash, "clawbutler detach").await?;
    }
    let ea = link.call("exec.approvals.get", json!({})).await?;
    let mut file = ea["file"].clone();
    for (id, prev) in &rec.exec_before {
        if let Some(agents) = file["agents"].as_object_mut() {
            match prev {
                Some(v) => {
                    agents.insert(id.clone(), v.clone());
                }
                None => {
                    agents.remove(id);
                }
            }
        }
    }
    link.call("exec.approvals.set", json!({"file": file, "baseHash": ea["hash"]})).await?;
    // The config no longer references the key file, so it can go.
    if let Some(f) = &rec.keys_file {
        attach_keys::remove(f)?;
    }
    std::fs::remove_file(&rec_path).map_err(|source| GatewayError::RecordFile { path: rec_path.clone(), source })?;
    lines.push("detached: the gateway config is back to what attach found".into());
    Ok(Detached { lines, agent_keys: rec.agent_keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_rewires_each_agent_through_its_upstream() {
        let cfg = json!({"models": {"providers": {"direct": {"baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions", "apiKey": "k"}}},
                         "agents": {"entries": {"ops": {"model": "direct/m"}}}});
        let ups = vec![UpstreamRef { name: "fake".into(), url: "http://127.0.0.1:9/v1".into(), holds_key: false }];
        let agents = vec![("ops".to_string(), "direct/m".to_string()), ("x".to_string(), "builtin/m".to_string())];
        let p = plan(&cfg, &agents, &ups, "127.0.0.1:8787", None);
        assert_eq!(p.agents, vec!["ops".to_string()]);
        assert_eq!(p.skipped.len(), 1);
        assert_eq!(p.after["models"]["providers"]["cb-ops"]["baseUrl"], "http://127.0.0.1:8787/a/ops/fake/v1");
        assert_eq!(p.after["models"]["providers"]["cb-ops"]["apiKey"], "k");
        assert_eq!(p.after["agents"]["entries"]["ops"]["model"], "cb-ops/m");
        assert_eq!(p.after["agents"]["entries"]["ops"]["modelPolicy"], json!({"allow": ["cb-ops/*"]}));
        let (fwd, _) = forward_patch(&p.changes, &cfg);
        assert_eq!(fwd["agents"]["entries"]["ops"]["model"], "cb-ops/m");
        let (back, _, skipped) = restore_patch(&p.changes, &p.after);
        assert!(skipped.is_empty());
        assert_eq!(back["models"]["providers"]["cb-ops"], Value::Null);
        assert_eq!(back["agents"]["entries"]["ops"]["model"], "direct/m");
        assert!(render(&p.changes).iter().any(|l| l.starts_with("~ agents.entries.ops.modelPolicy: (absent) -> ")));
    }

    #[test]
    fn plan_wires_per_agent_keys_and_skips_ids_the_sidecar_refuses() {
        let cfg = json!({"models": {"providers": {
                            "held": {"baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions", "apiKey": "__OPENCLAW_REDACTED__"},
                            "pass": {"baseUrl": "http://127.0.0.1:8/v1", "api": "openai-completions", "apiKey": "sk-real"}}},
                         "agents": {"entries": {}}});
        let ups = vec![
            UpstreamRef { name: "h".into(), url: "http://127.0.0.1:9/v1".into(), holds_key: true },
            UpstreamRef { name: "p".into(), url: "http://127.0.0.1:8/v1".into(), holds_key: false },
        ];
        let agents = vec![
            ("ops".to_string(), "held/m".to_string()),
            ("dev".to_string(), "pass/m".to_string()),
            ("Bad.Id".to_string(), "held/m".to_string()),
        ];
        let file = Path::new("/var/lib/clawbutler/gateway/agent-keys-x.json");
        let p = plan(&cfg, &agents, &ups, "127.0.0.1:8787", Some(file));
        assert_eq!(p.agents, vec!["ops".to_string(), "dev".to_string()]);
        assert!(p.skipped.iter().any(|(id, why)| id == "Bad.Id" && why.contains("not valid")), "{:?}", p.skipped);
        let provs = &p.after["models"]["providers"];
        assert_eq!(
            provs["cb-ops"]["apiKey"],
            attach_keys::key_ref("ops"),
            "held upstream: the apiKey is the agent key"
        );
        assert_eq!(provs["cb-dev"]["apiKey"], "sk-real", "pass-through keeps the real key");
        assert_eq!(provs["cb-dev"]["headers"][attach_keys::AGENT_KEY_HEADER], attach_keys::key_ref("dev"));
        assert_eq!(
            p.after["secrets"]["providers"][attach_keys::SECRETS_PROVIDER],
            json!({"source": "file", "path": file.display().to_string(), "mode": "json"})
        );
        let (back, _, skipped) = restore_patch(&p.changes, &p.after);
        assert!(skipped.is_empty());
        assert_eq!(back["secrets"], Value::Null, "detach removes what attach added");
    }
}

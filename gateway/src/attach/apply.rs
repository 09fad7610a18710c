//! Applying a prepared attach, and detach (see the module docs of `attach`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::cb_config;
use super::{
    config_diff, config_get, exec, forward_patch, keys, mcp, patch, plugin, read_state, record_path, render, steps,
    AttachRecord, CbFileRecord, Issued, KeyRef, Prepared, Report,
};
use crate::kill::{restore_patch, Change};
use crate::{GatewayError, Link};

/// What [`apply`] did.
pub struct Applied {
    pub lines: Vec<String>,
    /// The governance report of the gateway as it is after attach (also in the record).
    pub report: Report,
}

/// Remove the files [`write_files`] wrote (after a failed attach).
fn remove_written(p: &Prepared) {
    if let Some(f) = &p.keys_file {
        let _ = keys::remove(f);
    }
    if let Some(f) = &p.mcp_env_file {
        let _ = mcp::remove_env_file(f);
    }
    if let Some(pi) = &p.plugin {
        let _ = pi.remove_files();
    }
}

/// Write the secrets the config will point at: the key file, the MCP env file, the plugin's
/// files and token file.
fn write_files(p: &Prepared, issued: &Issued) -> Result<(), GatewayError> {
    if let Some(f) = &p.keys_file {
        let secrets: BTreeMap<String, String> =
            issued.keys.iter().map(|k| (k.key.agent.clone(), k.secret.clone())).collect();
        keys::write(f, &secrets)?;
    }
    if let Some(f) = &p.mcp_env_file {
        let lines: Vec<(String, String)> =
            issued.mcp.iter().map(|k| (::mcp::attach::token_env(&k.key.agent), k.secret.clone())).collect();
        mcp::write_env_file(f, &lines)?;
    }
    if let Some(pi) = &p.plugin {
        let token = issued
            .plugin
            .as_ref()
            .ok_or_else(|| GatewayError::Attach("the plugin needs a plugin token and none was created".into()))?;
        pi.write_files(&token.secret)?;
    }
    Ok(())
}

/// Apply a prepared attach with the credentials the CLI created (keys, MCP tokens, the plugin
/// token: their secrets go to their files before the config points at them) and the record
/// of what the CLI did to ClawButler's config file. On failure the files are removed and
/// nothing is recorded; the caller revokes the credentials and restores its config file.
pub async fn apply(
    link: &Link,
    p: Prepared,
    issued: &Issued,
    cb_file: Option<CbFileRecord>,
    sidecar: &str,
) -> Result<Applied, GatewayError> {
    if let Err(e) = write_files(&p, issued) {
        remove_written(&p);
        return Err(e);
    }
    let (raw, replace) = forward_patch(&p.changes, &p.before);
    if let Err(e) = patch(link, &raw, &replace, &p.hash, "clawbutler attach").await {
        remove_written(&p);
        return Err(e);
    }
    let (_, after) = config_get(link).await?;
    let mut rec = AttachRecord {
        url: link.url().to_string(),
        at: chrono::Utc::now().to_rfc3339(),
        config_changes: config_diff(&p.before, &after),
        exec_before: p.exec_before,
        agent_keys: issued.keys.iter().map(|k| k.key.clone()).collect(),
        keys_file: p.keys_file,
        clawbutler_config: cb_file,
        key_envs: p.key_envs,
        report: Some(p.report),
        mcp_tokens: issued.mcp.iter().map(|k| k.key.clone()).collect(),
        mcp_env_file: p.mcp_env_file.clone(),
        plugin: p.plugin.as_ref().zip(issued.plugin.as_ref()).map(|(pi, t)| plugin::PluginRecord {
            dir: pi.dir.clone(),
            token_file: pi.token_file.clone(),
            token_id: t.id.clone(),
        }),
    };
    // Saved before anything else can fail, so detach can always undo the patch.
    save(&p.rec_path, &rec)?;
    link.call("exec.approvals.set", json!({"file": p.exec_file, "baseHash": p.exec_hash})).await?;
    let mut lines = vec![format!("attached {} agent(s); record in {}", p.agents.len(), p.rec_path.display())];
    if let Some(pi) = &p.plugin {
        // The change hot-reloads in a few seconds; a plugin that does not load is reported.
        if pi.wait_active(link, Duration::from_secs(30)).await? {
            lines.push("the ClawButler plugin is active in OpenClaw (plugins.list)".into());
        } else {
            lines.push(
                "! the ClawButler plugin is not active in OpenClaw after 30 s: see `openclaw plugins list` and the \
                 gateway log; built-in tools are not governed until it is"
                    .into(),
            );
        }
    }
    if let Some(f) = &p.mcp_env_file {
        lines.push(format!(
            "! add the MCP tokens in {} to the OpenClaw gateway's environment (systemd: EnvironmentFile={}) and \
             restart it: until then its MCP entries send an unresolved ${{VAR}} and the sidecar refuses them (401)",
            f.display(),
            f.display()
        ));
    }
    let report = read_state(link).await?.report(sidecar, None);
    rec.report = Some(report.clone());
    save(&p.rec_path, &rec)?;
    Ok(Applied { lines, report })
}

fn save(path: &Path, rec: &AttachRecord) -> Result<(), GatewayError> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|source| GatewayError::RecordFile { path: d.to_path_buf(), source })?;
    }
    let body = serde_json::to_vec_pretty(rec)
        .map_err(|source| GatewayError::RecordJson { path: path.to_path_buf(), source })?;
    std::fs::write(path, body).map_err(|source| GatewayError::RecordFile { path: path.to_path_buf(), source })
}

/// Apply `undo` (changes from the current values back to attach's "before") to the gateway
/// in as many patches as OpenClaw's size guard needs (`steps.rs`); returns how many.
async fn restore_in_steps(link: &Link, current: &Value, undo: &[Change]) -> Result<usize, GatewayError> {
    let target = undo.iter().fold(current.clone(), |d, c| steps::apply(&d, c));
    let scope: Vec<Vec<String>> = undo.iter().map(|c| c.path.clone()).collect();
    // Stuck = a write that left the config as it was (twice in a row): stop, do not loop.
    let mut last: Option<Value> = None;
    let mut stuck = 0;
    for n in 0..steps::MAX_STEPS {
        let (hash, now) = config_get(link).await?;
        let changes: Vec<Change> = steps::fine_changes(&now, &target, &scope)
            .into_iter()
            .filter(|c| !c.after.as_ref().is_some_and(|a| a.to_string().contains("__OPENCLAW_REDACTED__")))
            .collect();
        let Some((raw, replace, _)) = steps::next_step(&now, &changes) else { return Ok(n) };
        let unchanged = last.as_ref().is_some_and(|l| config_diff(l, &now).is_empty());
        stuck = if unchanged { stuck + 1 } else { 0 };
        if stuck >= 2 {
            break;
        }
        last = Some(now);
        patch(link, &raw, &replace, &hash, "clawbutler detach").await?;
    }
    Err(GatewayError::Detach(format!(
        "could not converge on the config attach found after {} writes; run detach again or restore by hand",
        steps::MAX_STEPS
    )))
}

/// What detach did: the lines to print and the keys attach had created (the caller revokes
/// them; the record is already gone).
pub struct Detached {
    pub lines: Vec<String>,
    pub agent_keys: Vec<KeyRef>,
    pub mcp_tokens: Vec<KeyRef>,
    /// The plugin token's id.
    pub plugin_token: Option<String>,
}

/// Detach: restore what attach stored (gateway config, exec approvals, ClawButler's config
/// file), remove the key file; returns the printed lines and the keys to revoke.
pub async fn detach(link: &Link, data_dir: &Path, dry_run: bool) -> Result<Detached, GatewayError> {
    let rec_path = record_path(data_dir, link.url());
    let text = std::fs::read_to_string(&rec_path)
        .map_err(|source| GatewayError::NotAttached { path: rec_path.clone(), source })?;
    let mut rec: AttachRecord =
        serde_json::from_str(&text).map_err(|source| GatewayError::RecordJson { path: rec_path.clone(), source })?;
    // Records written before `config_diff` may hold the gateway's `meta` bookkeeping.
    rec.config_changes.retain(|c| c.path.first().map(String::as_str) != Some("meta"));
    let (_, current) = config_get(link).await?;
    // Only `skipped` is used from the one-shot restore patch: the restore itself goes in steps.
    let (_, _, skipped) = restore_patch(&rec.config_changes, &current);
    let undo: Vec<Change> = rec
        .config_changes
        .iter()
        .filter(|c| !skipped.contains(&c.path.join(".")))
        .map(|c| Change { path: c.path.clone(), before: c.after.clone(), after: c.before.clone() })
        .collect();
    let mut lines = render(&undo);
    lines.extend(skipped.iter().map(|p| format!("= {p} changed since attach; left as is")));
    lines.extend(rec.agent_keys.iter().map(|k| format!("- per-agent key {} of {}", k.id, k.agent)));
    lines.extend(rec.mcp_tokens.iter().map(|k| format!("- MCP token {} of {}", k.id, k.agent)));
    if let Some(f) = &rec.mcp_env_file {
        lines.push(format!("- {} (the MCP tokens' env file)", f.display()));
    }
    if let Some(pr) = &rec.plugin {
        lines.push(format!(
            "- plugin files in {} and {}; plugin token {}",
            pr.dir.display(),
            pr.token_file.display(),
            pr.token_id
        ));
    }
    if let Some(cb) = &rec.clawbutler_config {
        lines.push(format!("~ restore {} (attach's copy: {})", cb.path.display(), cb.backup.display()));
    }
    if dry_run {
        lines.push("dry run: nothing changed".into());
        return Ok(Detached { lines, agent_keys: Vec::new(), mcp_tokens: Vec::new(), plugin_token: None });
    }
    if let Some(pr) = &rec.plugin {
        plugin::unload(link, &pr.dir).await?;
    }
    if !undo.is_empty() {
        let n = restore_in_steps(link, &current, &undo).await?;
        if n > 1 {
            lines.push(format!("= restored in {n} config writes (OpenClaw refuses one that halves its config file)"));
        }
    }
    let ea = link.call("exec.approvals.get", json!({})).await?;
    let file = exec::restore(&ea["file"], &rec.exec_before);
    link.call("exec.approvals.set", json!({"file": file, "baseHash": ea["hash"]})).await?;
    // The config no longer references the key file, so it can go.
    if let Some(f) = &rec.keys_file {
        keys::remove(f)?;
    }
    if let Some(f) = &rec.mcp_env_file {
        mcp::remove_env_file(f)?;
        lines.push(format!(
            "= remove {} from the OpenClaw gateway's environment (its MCP entries are gone)",
            f.display()
        ));
    }
    if let Some(pr) = &rec.plugin {
        plugin::remove_files(pr)?;
    }
    if let Some(cb) = &rec.clawbutler_config {
        match cb_config::restore(cb) {
            Ok(line) => lines.push(line),
            Err(e) => lines.push(format!(
                "! could not restore ClawButler's config ({e}); the original is in {}",
                cb.backup.display()
            )),
        }
    }
    std::fs::remove_file(&rec_path).map_err(|source| GatewayError::RecordFile { path: rec_path.clone(), source })?;
    lines.push("detached: the gateway config is back to what attach found".into());
    if !rec.key_envs.is_empty() {
        lines.push(format!(
            "= the gateway calls its vendors directly again: give it {} back in its environment if it should",
            rec.key_envs.join(" ")
        ));
    }
    Ok(Detached {
        lines,
        agent_keys: rec.agent_keys,
        mcp_tokens: rec.mcp_tokens,
        plugin_token: rec.plugin.map(|p| p.token_id),
    })
}

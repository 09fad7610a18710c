//! The plugin section: built-in tools other than exec (write, edit, browser, message, ...)
//! reach ClawButler only through its OpenClaw plugin's `before_tool_call` hook
//! (`openclaw-interception.md` §6.3); the plugin id is `clawbutler`
//! (`openclaw-plugin/openclaw.plugin.json`).
//!
//! Attach installs it with `plugin_install::PluginInstall`: its `config_patch` is merged into
//! the planned config ([`plan`]), so the plan, the report and the record see it like every
//! other path; the files and the token file are written just before the config patch, and
//! `wait_active` follows it. Detach takes the plugin's directory out of `plugins.load.paths`
//! first ([`unload`]: OpenClaw refuses a config that still loads the plugin without its
//! entry), lets the generic restore put the rest back, then removes the files
//! ([`remove_files`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::report::{PathStatus, State, View};
use crate::plugin_install::PluginInstall;
use crate::{GatewayError, Link};

/// What attach did for the plugin, kept in the attach record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub dir: PathBuf,
    pub token_file: PathBuf,
    /// The plugin token's id (revoked by detach).
    pub token_id: String,
}

/// Merge `patch` into `doc` (RFC 7396: `null` removes).
pub fn merge(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = json!({});
    }
    if let Value::Object(d) = doc {
        for (k, v) in p {
            if v.is_null() {
                d.remove(k);
            } else {
                merge(d.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Plan the install on `after`; the plan lines (files; the config lines come from the diff).
pub fn plan(after: &mut Value, install: &PluginInstall) -> Vec<String> {
    let (patch, _) = install.config_patch(after);
    merge(after, &patch);
    let mut lines: Vec<String> = crate::plugin_install::FILES
        .iter()
        .map(|(n, t)| format!("+ plugin file {} ({} bytes, 0644)", install.dir.join(n).display(), t.len()))
        .collect();
    lines.push(format!("+ plugin token for this gateway (in {}, mode 0600)", install.token_file.display()));
    lines
}

/// Take the plugin's directory out of `plugins.load.paths` (detach's first write).
pub async fn unload(link: &Link, dir: &Path) -> Result<bool, GatewayError> {
    let v = link.call("config.get", json!({})).await?;
    let dir = dir.display().to_string();
    let Some(paths) = v.pointer("/parsed/plugins/load/paths").and_then(Value::as_array) else { return Ok(false) };
    let kept: Vec<&Value> = paths.iter().filter(|p| p.as_str() != Some(dir.as_str())).collect();
    if kept.len() == paths.len() {
        return Ok(false);
    }
    let raw = json!({"plugins": {"load": {"paths": kept}}}).to_string();
    let hash = v["hash"].as_str().unwrap_or_default();
    let p = json!({"raw": raw, "baseHash": hash, "note": "clawbutler detach: unload the plugin",
                   "replacePaths": ["plugins.load.paths"]});
    link.call("config.patch", p).await.map(|_| true)
}

/// Remove the plugin's files (absent is fine).
pub fn remove_files(rec: &PluginRecord) -> Result<(), GatewayError> {
    let install = PluginInstall {
        dir: rec.dir.clone(),
        token_file: rec.token_file.clone(),
        decision_url: String::new(),
        heartbeat_s: 0,
        tool_hook_timeout_ms: 0,
    };
    install.remove_files()
}

/// The plugin id.
pub const PLUGIN_ID: &str = "clawbutler";

/// The plugin path of agent `id` (the same for every agent: plugins are gateway-wide).
pub fn report(view: &View<'_>, _id: &str) -> Vec<PathStatus> {
    let entry = view.config.pointer(&format!("/plugins/entries/{PLUGIN_ID}"));
    let enabled = entry.is_some_and(|e| e.get("enabled").and_then(Value::as_bool) != Some(false));
    let all_off = view.config.pointer("/plugins/enabled").and_then(Value::as_bool) == Some(false);
    let (state, why) = if enabled && !all_off && !view.plugin_denied(PLUGIN_ID) {
        (State::Governed, "the ClawButler plugin is configured: built-in tool calls ask the sidecar first")
    } else {
        (
            State::Ungoverned,
            "no ClawButler plugin loaded: built-in tools other than exec (write, edit, browser, message, ...) run \
             without a ClawButler decision",
        )
    };
    vec![PathStatus::new("built-in tools", Some(format!("plugins.entries.{PLUGIN_ID}")), state, why)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_is_merged_into_the_plan() {
        let install = PluginInstall::new(Path::new("/var/lib/cb"), "127.0.0.1:8787", 5);
        let mut after = json!({"plugins": {"deny": ["openai"], "load": {"paths": ["/opt/x"]}}});
        let lines = plan(&mut after, &install);
        assert_eq!(after["plugins"]["deny"], json!(["openai"]), "kept");
        assert_eq!(after["plugins"]["load"]["paths"], json!(["/opt/x", "/var/lib/cb/openclaw-plugin"]));
        assert_eq!(after["plugins"]["entries"][PLUGIN_ID]["config"]["decisionUrl"], "http://127.0.0.1:8787/v1/decide");
        assert_eq!(after["secrets"]["providers"][PLUGIN_ID]["path"], "/var/lib/cb/openclaw-plugin.token");
        assert!(lines.iter().any(|l| l.contains("index.js")) && lines.iter().any(|l| l.contains("plugin token")));
        let mut doc = json!({"a": {"b": 1, "c": 2}});
        merge(&mut doc, &json!({"a": {"b": null, "d": [1]}}));
        assert_eq!(doc, json!({"a": {"c": 2, "d": [1]}}));
    }
}

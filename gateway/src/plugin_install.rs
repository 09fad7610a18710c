//! Installing the ClawButler OpenClaw plugin into a gateway (docs/plugin.md, "Install"): the
//! plugin's files (embedded in the binary from `openclaw-plugin/`), its token file, and the
//! OpenClaw config patch that loads, enables and configures it. `attach` uses these; they are
//! pure (files aside) so `--dry-run` can show exactly what would change.
//!
//! What OpenClaw 2026.9.6 needs (verified; notes in docs/plugin.md):
//! - the plugin directory holds `index.js` (and the modules it imports), `openclaw.plugin.json`,
//!   `package.json`; it must belong to the gateway's user (or root) and not be world-writable
//!   (0755 / 0644), or OpenClaw refuses it as a suspicious candidate;
//! - the token is a file SecretRef (`secrets.providers.clawbutler`, file mode `singleValue`,
//!   0600): it applies live through `config.patch` and rotates with `secrets.reload`; an env
//!   reference would need the variable in the gateway's own environment and a restart;
//! - `plugins.load.paths` is a list: the directory is appended (`config.patch` refuses to
//!   shorten a list unless it is named in `replacePaths`, which removal does);
//! - `hooks.timeouts.before_tool_call` is the longest a hold can last (OpenClaw caps it at
//!   600000 ms; the plugin gives up 1 s sooner, the sidecar answers sooner still), and
//!   `allowConversationAccess` lets the plugin see turns (`before_agent_run`, `llm_output`);
//! - if the operator restricts plugins with `plugins.allow`, `clawbutler` must be in it.
//!
//! The change hot-reloads in about 1-3 s; then `plugins.list` shows the plugin active and its
//! first heartbeat arrives about 2 s later.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::GatewayError;

/// The plugin's id (OpenClaw config key `plugins.entries.clawbutler`, secrets provider name).
pub const PLUGIN_ID: &str = super::plugin::PLUGIN_ID;

/// The plugin's files, as shipped in the repository's `openclaw-plugin/` (tests excluded).
pub const FILES: [(&str, &str); 8] = [
    ("index.js", include_str!("../../openclaw-plugin/index.js")),
    ("openclaw.plugin.json", include_str!("../../openclaw-plugin/openclaw.plugin.json")),
    ("package.json", include_str!("../../openclaw-plugin/package.json")),
    ("README.md", include_str!("../../openclaw-plugin/README.md")),
    // The modules index.js imports.
    ("common.js", include_str!("../../openclaw-plugin/common.js")),
    ("sidecar.js", include_str!("../../openclaw-plugin/sidecar.js")),
    ("settings.js", include_str!("../../openclaw-plugin/settings.js")),
    ("answers.js", include_str!("../../openclaw-plugin/answers.js")),
];

/// OpenClaw's ceiling for an operator's hook timeout: the longest a hold can last.
pub const TOOL_HOOK_TIMEOUT_MS: u64 = 600_000;

/// The turn check's hook timeout (the plugin waits 1 s less).
pub const RUN_HOOK_TIMEOUT_MS: u64 = 10_000;

/// Where and how the plugin is installed for one sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginInstall {
    /// The plugin's directory (`<data_dir>/openclaw-plugin`), absolute.
    pub dir: PathBuf,
    /// The file holding the plugin token (`<data_dir>/openclaw-plugin.token`), absolute.
    pub token_file: PathBuf,
    /// `http://<data listener>/v1/decide`.
    pub decision_url: String,
    /// The plugin's heartbeat period (`[plugin] heartbeat_s`).
    pub heartbeat_s: u64,
    /// `hooks.timeouts.before_tool_call`.
    pub tool_hook_timeout_ms: u64,
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
}

impl PluginInstall {
    /// The install for a sidecar with `data_dir` whose data listener is `data_listen`
    /// (`127.0.0.1:8787`), with the defaults above.
    pub fn new(data_dir: &Path, data_listen: &str, heartbeat_s: u64) -> PluginInstall {
        let data_dir = absolute(data_dir);
        PluginInstall {
            dir: data_dir.join("openclaw-plugin"),
            token_file: data_dir.join("openclaw-plugin.token"),
            decision_url: format!("http://{data_listen}/v1/decide"),
            heartbeat_s,
            tool_hook_timeout_ms: TOOL_HOOK_TIMEOUT_MS,
        }
    }

    /// `plugins.entries.clawbutler` as installed.
    pub fn entry(&self) -> Value {
        json!({
            "enabled": true,
            "hooks": {
                "allowConversationAccess": true,
                "timeouts": {"before_tool_call": self.tool_hook_timeout_ms, "before_agent_run": RUN_HOOK_TIMEOUT_MS}
            },
            "config": {
                "decisionUrl": self.decision_url,
                "token": {"source": "file", "provider": PLUGIN_ID, "id": "value"},
                "heartbeatSeconds": self.heartbeat_s,
            }
        })
    }

    /// The secrets provider that reads the token file.
    pub fn secrets_provider(&self) -> Value {
        json!({"source": "file", "path": self.token_file.display().to_string(), "mode": "singleValue"})
    }

    /// The `config.patch` that installs and enables the plugin on a gateway whose config is
    /// `current` (`config.get`'s parsed document): a merge patch, and the paths it replaces
    /// (none: it only adds). Existing `plugins.load.paths` entries are kept; `clawbutler` is
    /// added to `plugins.allow` only when that list exists (OpenClaw loads every plugin
    /// otherwise). Applying it twice changes nothing the second time.
    pub fn config_patch(&self, current: &Value) -> (Value, Vec<String>) {
        let dir = self.dir.display().to_string();
        let mut paths: Vec<Value> =
            current.pointer("/plugins/load/paths").and_then(Value::as_array).cloned().unwrap_or_default();
        if !paths.iter().any(|p| p.as_str() == Some(dir.as_str())) {
            paths.push(json!(dir));
        }
        let mut plugins = json!({
            "load": {"paths": paths},
            "entries": {PLUGIN_ID: self.entry()},
        });
        if let Some(allow) = current.pointer("/plugins/allow").and_then(Value::as_array) {
            if !allow.iter().any(|a| a.as_str() == Some(PLUGIN_ID)) {
                let mut allow = allow.clone();
                allow.push(json!(PLUGIN_ID));
                plugins["allow"] = Value::Array(allow);
            }
        }
        let patch = json!({
            "secrets": {"providers": {PLUGIN_ID: self.secrets_provider()}},
            "plugins": plugins,
        });
        (patch, Vec::new())
    }

    /// The `config.patch` that removes exactly what [`PluginInstall::config_patch`] added:
    /// the directory from `plugins.load.paths` (a shorter list, so it is named in the replace
    /// paths), the plugin's entry, its secrets provider, and `clawbutler` from
    /// `plugins.allow` when `allow_added` (only if install added it).
    pub fn remove_patch(&self, current: &Value, allow_added: bool) -> (Value, Vec<String>) {
        let dir = self.dir.display().to_string();
        let mut replace = Vec::new();
        let mut plugins = json!({"entries": {PLUGIN_ID: null}});
        if let Some(paths) = current.pointer("/plugins/load/paths").and_then(Value::as_array) {
            let kept: Vec<Value> = paths.iter().filter(|p| p.as_str() != Some(dir.as_str())).cloned().collect();
            if kept.len() != paths.len() {
                plugins["load"] = json!({"paths": kept});
                replace.push("plugins.load.paths".to_string());
            }
        }
        if allow_added {
            if let Some(allow) = current.pointer("/plugins/allow").and_then(Value::as_array) {
                let kept: Vec<Value> = allow.iter().filter(|a| a.as_str() != Some(PLUGIN_ID)).cloned().collect();
                if kept.len() != allow.len() {
                    plugins["allow"] = Value::Array(kept);
                    replace.push("plugins.allow".to_string());
                }
            }
        }
        (json!({"plugins": plugins, "secrets": {"providers": {PLUGIN_ID: null}}}), replace)
    }

    /// Write the plugin's files (directory 0755, files 0644: OpenClaw refuses a
    /// world-writable candidate) and the token file (0600, replaced atomically: a single-link
    /// regular file, as OpenClaw's file secret provider demands).
    pub fn write_files(&self, token: &str) -> Result<(), GatewayError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| GatewayError::RecordFile { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(err(&self.dir))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755)).map_err(err(&self.dir))?;
        for (name, text) in FILES {
            let path = self.dir.join(name);
            std::fs::write(&path, text).map_err(err(&path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(err(&path))?;
        }
        let tmp = self.token_file.with_extension("token.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(err(&tmp))?;
        f.write_all(token.as_bytes()).and_then(|()| f.sync_all()).map_err(err(&tmp))?;
        std::fs::rename(&tmp, &self.token_file).map_err(err(&self.token_file))
    }

    /// Remove the plugin's files and token file (absent is fine).
    pub fn remove_files(&self) -> Result<(), GatewayError> {
        for path in [&self.token_file] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(GatewayError::RecordFile { path: path.clone(), source }),
            }
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(GatewayError::RecordFile { path: self.dir.clone(), source }),
        }
    }

    /// Install on a live gateway: write the files and the token file, then apply
    /// [`PluginInstall::config_patch`] with `config.patch` against the hash `config.get`
    /// returned (a concurrent edit makes OpenClaw refuse it). Returns whether `clawbutler`
    /// was added to `plugins.allow` (remember it for [`PluginInstall::uninstall`]). The
    /// change hot-reloads; [`PluginInstall::wait_active`] then says whether it loaded.
    pub async fn install(&self, link: &crate::Link, token: &str) -> Result<bool, GatewayError> {
        self.write_files(token)?;
        let (hash, current) = config_get(link).await?;
        let (patch, replace) = self.config_patch(&current);
        let allow_added = patch.pointer("/plugins/allow").is_some();
        config_patch(link, &patch, &replace, &hash, "clawbutler: install the ClawButler plugin").await?;
        // OpenClaw registers a plugin added live with its token SecretRef unresolved (only a
        // gateway start resolves plugin config refs; secrets.reload and plugins.reload do
        // not, on 2026.9.6): the plugin then reads the private token file itself.
        Ok(allow_added)
    }

    /// Remove from a live gateway exactly what [`PluginInstall::install`] added, then the
    /// files (the config stops naming them first).
    ///
    /// In two steps: while the plugin's directory is still a load path, OpenClaw validates
    /// the config with an (empty) entry for it, which its schema refuses; so the directory
    /// goes first (the entry is then a stale one OpenClaw ignores), the entry and the
    /// secrets provider next (seen on 2026.9.6).
    pub async fn uninstall(&self, link: &crate::Link, allow_added: bool) -> Result<(), GatewayError> {
        let (hash, current) = config_get(link).await?;
        let (mut patch, replace) = self.remove_patch(&current, allow_added);
        let mut first = serde_json::Map::new();
        for k in ["load", "allow"] {
            if let Some(v) = patch["plugins"].as_object_mut().and_then(|p| p.remove(k)) {
                first.insert(k.to_string(), v);
            }
        }
        if !first.is_empty() {
            let first = json!({"plugins": first});
            config_patch(link, &first, &replace, &hash, "clawbutler: unload the ClawButler plugin").await?;
        }
        let (hash, _) = config_get(link).await?;
        config_patch(link, &patch, &[], &hash, "clawbutler: remove the ClawButler plugin").await?;
        self.remove_files()
    }

    /// Poll `plugins.list` until the plugin is active (`Ok(true)`) or `within` passes
    /// (`Ok(false)`, with what OpenClaw last said in the log).
    pub async fn wait_active(&self, link: &crate::Link, within: std::time::Duration) -> Result<bool, GatewayError> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let listed = super::plugin::listed(&link.call("plugins.list", json!({})).await?);
            if matches!(listed, governance::plugin::Listed::Active { .. }) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(?listed, "the ClawButler plugin did not become active");
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// One line per file and the patch, for `--dry-run`.
    pub fn describe(&self, current: &Value) -> Vec<String> {
        let mut lines: Vec<String> =
            FILES.iter().map(|(n, t)| format!("+ {} ({} bytes, 0644)", self.dir.join(n).display(), t.len())).collect();
        lines.push(format!("+ {} (the plugin token, 0600)", self.token_file.display()));
        let (patch, _) = self.config_patch(current);
        lines.push(format!("~ config.patch {patch}"));
        lines
    }
}

async fn config_get(link: &crate::Link) -> Result<(String, Value), GatewayError> {
    let v = link.call("config.get", json!({})).await?;
    Ok((v["hash"].as_str().unwrap_or_default().to_string(), v["parsed"].clone()))
}

async fn config_patch(
    link: &crate::Link,
    patch: &Value,
    replace: &[String],
    hash: &str,
    note: &str,
) -> Result<(), GatewayError> {
    let mut p = json!({"raw": patch.to_string(), "baseHash": hash, "note": note});
    if !replace.is_empty() {
        p["replacePaths"] = json!(replace);
    }
    link.call("config.patch", p).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install() -> PluginInstall {
        PluginInstall::new(Path::new("/var/lib/clawbutler"), "127.0.0.1:8787", 60)
    }

    #[test]
    fn every_module_of_the_plugin_is_installed() {
        // A module index.js imports but `attach` does not write would only fail inside OpenClaw.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../openclaw-plugin");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".js"))
            .collect();
        on_disk.sort();
        assert!(on_disk.len() >= 2, "{on_disk:?}");
        for name in &on_disk {
            assert!(FILES.iter().any(|(n, _)| n == name), "openclaw-plugin/{name} is not in plugin_install::FILES");
        }
        for (_, text) in FILES.iter().filter(|(n, _)| n.ends_with(".js")) {
            for import in text.lines().filter_map(|l| l.split(" from \"./").nth(1)) {
                let name = import.split('"').next().unwrap_or_default();
                assert!(FILES.iter().any(|(n, _)| *n == name), "{name} is imported but not installed");
            }
        }
    }

    #[test]
    fn the_patch_appends_the_path_and_configures_the_plugin() {
        let current = json!({"plugins": {"load": {"paths": ["/opt/other"]}, "entries": {"other": {"enabled": true}}}});
        let (patch, replace) = install().config_patch(&current);
        assert!(replace.is_empty());
        assert_eq!(patch["plugins"]["load"]["paths"], json!(["/opt/other", "/var/lib/clawbutler/openclaw-plugin"]));
        let e = &patch["plugins"]["entries"]["clawbutler"];
        assert_eq!(e["enabled"], true);
        assert_eq!(e["hooks"]["allowConversationAccess"], true);
        assert_eq!(e["hooks"]["timeouts"], json!({"before_tool_call": 600000, "before_agent_run": 10000}));
        assert_eq!(e["config"]["decisionUrl"], "http://127.0.0.1:8787/v1/decide");
        assert_eq!(e["config"]["token"], json!({"source": "file", "provider": "clawbutler", "id": "value"}));
        assert_eq!(e["config"]["heartbeatSeconds"], 60);
        assert_eq!(
            patch["secrets"]["providers"]["clawbutler"],
            json!({"source": "file", "path": "/var/lib/clawbutler/openclaw-plugin.token", "mode": "singleValue"})
        );
        assert!(patch["plugins"].get("allow").is_none(), "no allow-list, none added");
        // Other plugins' entries are not in the patch (a merge patch keeps them).
        assert!(patch["plugins"]["entries"].get("other").is_none());
    }

    #[test]
    fn the_patch_is_idempotent_and_honours_an_allow_list() {
        let i = install();
        let current = json!({"plugins": {"allow": ["memory"], "load": {"paths": [i.dir.display().to_string()]}}});
        let (patch, _) = i.config_patch(&current);
        assert_eq!(patch["plugins"]["load"]["paths"], json!([i.dir.display().to_string()]), "not added twice");
        assert_eq!(patch["plugins"]["allow"], json!(["memory", "clawbutler"]));
        let again = json!({"plugins": {"allow": ["memory", "clawbutler"]}});
        assert!(i.config_patch(&again).0["plugins"].get("allow").is_none());
        let (patch, _) = i.config_patch(&json!({}));
        assert_eq!(patch["plugins"]["load"]["paths"], json!([i.dir.display().to_string()]));
    }

    #[test]
    fn removal_takes_out_exactly_what_install_added() {
        let i = install();
        let current = json!({"plugins": {"allow": ["memory", "clawbutler"],
            "load": {"paths": ["/opt/other", i.dir.display().to_string()]}}});
        let (patch, replace) = i.remove_patch(&current, true);
        assert_eq!(patch["plugins"]["load"]["paths"], json!(["/opt/other"]));
        assert_eq!(patch["plugins"]["allow"], json!(["memory"]));
        assert_eq!(patch["plugins"]["entries"]["clawbutler"], Value::Null);
        assert_eq!(patch["secrets"]["providers"]["clawbutler"], Value::Null);
        assert_eq!(replace, ["plugins.load.paths", "plugins.allow"]);
        let (patch, _) = i.remove_patch(&current, false);
        assert!(patch["plugins"].get("allow").is_none(), "an allow entry the operator made stays");
    }

    #[test]
    fn files_are_written_private_where_needed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let i = PluginInstall::new(dir.path(), "127.0.0.1:1", 5);
        i.write_files("cbp_x_y").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&i.dir), 0o755);
        for (name, text) in FILES {
            assert_eq!(std::fs::read_to_string(i.dir.join(name)).unwrap(), text);
            assert_eq!(mode(&i.dir.join(name)), 0o644);
        }
        assert_eq!(std::fs::read_to_string(&i.token_file).unwrap(), "cbp_x_y");
        assert_eq!(mode(&i.token_file), 0o600);
        i.write_files("cbp_x_z").unwrap();
        assert_eq!(std::fs::read_to_string(&i.token_file).unwrap(), "cbp_x_z");
        let manifest: Value = serde_json::from_str(FILES[1].1).unwrap();
        assert_eq!(manifest["id"], PLUGIN_ID);
        assert!(i.describe(&json!({})).iter().any(|l| l.contains("openclaw-plugin.token")));
        i.remove_files().unwrap();
        assert!(!i.dir.exists() && !i.token_file.exists());
        i.remove_files().unwrap();
    }
}

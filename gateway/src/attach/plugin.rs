//! The plugin section (report only for now; the plugin's own attach step goes here). Built-in
//! tools other than exec (write, edit, browser, message, ...) reach ClawButler only through
//! its OpenClaw plugin's `before_tool_call` hook (`openclaw-interception.md` §6.3); the
//! plugin id is `clawbutler` (`openclaw-plugin/openclaw.plugin.json`).
//!
//! Merge seam (the plugin gate's branch): `plugin_install::PluginInstall::config_patch` is
//! applied where `prepare` (`mod.rs`) builds `after` (detach then undoes it like every other
//! path), and [`PLUGIN_ID`] and `gateway/src/plugin.rs`'s become one constant. The report can
//! then also read the plugin's health (`plugins.list`) for `approver`-style liveness.

use serde_json::Value;

use super::report::{PathStatus, State, View};

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

//! Hardening from the checklist (`openclaw-interception.md` §6.4), each step in the plan and
//! undone by detach like any other path attach changes:
//! - deny the bundled provider plugins attach replaced (`plugins.deny`), so a model switch or a
//!   forgotten slot cannot reach the vendor with whatever key the gateway still has (verified
//!   on 2026.9.6: sidecar providers of API kind `openai-responses` and `anthropic-messages`
//!   keep working with the `openai` and `anthropic` plugins denied); opt out with
//!   `--no-deny-plugins`;
//! - turn off the remote model catalog refresh (`models.catalogRefresh.enabled: false`); opt
//!   out with `--keep-catalog-refresh`;
//! - print the environment change the operator must make: the sidecar cannot edit the
//!   gateway's environment, and the vendor keys there are what a bypass would use.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::catalog;
use super::report::{PathStatus, State, View};

/// Which hardening steps to take.
#[derive(Debug, Clone, Copy)]
pub struct Hardening {
    pub deny_plugins: bool,
    pub catalog_refresh_off: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening { deny_plugins: true, catalog_refresh_off: true }
    }
}

fn deny_list(config: &Value) -> Vec<String> {
    config
        .pointer("/plugins/deny")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Apply the hardening to the planned config `after`. `replaced` maps each bundled provider
/// attach replaced to the agents that still use it directly (not wireable for them, or
/// skipped); `key_envs` are the variables those providers read their keys from. Returns the
/// plan lines that the config diff alone would not explain.
pub fn plan(
    after: &mut Value,
    replaced: &BTreeMap<String, BTreeSet<String>>,
    key_envs: &BTreeSet<String>,
    h: Hardening,
) -> Vec<String> {
    let mut lines = Vec::new();
    if h.deny_plugins {
        let mut deny = deny_list(after);
        for (provider, still) in replaced {
            let Some(plugin) = catalog::lookup(provider).map(|b| b.plugin.clone()) else { continue };
            if deny.contains(&plugin) {
                continue;
            }
            let mut line = format!(
                "+ plugins.deny += {plugin}: OpenClaw can no longer call {provider} directly (its other features, such as \
                 media generation, speech and embeddings, stop too)"
            );
            if !still.is_empty() {
                line.push_str(&format!(
                    "; {} still use(s) it and will fail",
                    still.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            lines.push(line);
            deny.push(plugin);
        }
        if !deny.is_empty() && deny != deny_list(after) {
            if !after["plugins"].is_object() {
                after["plugins"] = json!({});
            }
            after["plugins"]["deny"] = json!(deny);
        }
    } else if !replaced.is_empty() {
        lines.push("= --no-deny-plugins: the bundled provider plugins stay enabled".into());
    }
    let refresh = after.pointer("/models/catalogRefresh/enabled").and_then(Value::as_bool).unwrap_or(true);
    if h.catalog_refresh_off && refresh {
        if !after["models"].is_object() {
            after["models"] = json!({});
        }
        if !after["models"]["catalogRefresh"].is_object() {
            after["models"]["catalogRefresh"] = json!({});
        }
        after["models"]["catalogRefresh"]["enabled"] = json!(false);
    }
    if !key_envs.is_empty() {
        let vars = key_envs.iter().cloned().collect::<Vec<_>>().join(" ");
        lines.push(format!(
            "! gateway environment: remove {vars} from the OpenClaw gateway's environment (its service unit's \
             Environment= lines, the shell or .env file that starts `openclaw gateway run`) and restart the gateway; \
             the sidecar holds these keys now ([[upstreams]] api_key_env). For example: `unset {vars}` before \
             `openclaw gateway run`, or `systemctl --user unset-environment {vars} && systemctl --user restart \
             openclaw-gateway`"
        ));
    }
    lines
}

/// Gateway-wide hardening state.
pub fn report(view: &View<'_>) -> Vec<PathStatus> {
    let mut out = Vec::new();
    for p in ["openai", "anthropic"] {
        let Some(b) = catalog::lookup(p) else { continue };
        let target = Some(format!("plugins.deny {}", b.plugin));
        out.push(if view.plugin_denied(&b.plugin) {
            PathStatus::new("bundled provider", target, State::Governed, format!("denied: OpenClaw cannot call {p} directly"))
        } else {
            PathStatus::new(
                "bundled provider",
                target,
                State::Off,
                format!(
                    "enabled: with {} in the gateway's environment, a slot or an unpinned agent naming {p}/... reaches {p} directly",
                    b.api_key_env.as_deref().unwrap_or("a key")
                ),
            )
        });
    }
    let refresh = view.config.pointer("/models/catalogRefresh/enabled").and_then(Value::as_bool).unwrap_or(true);
    out.push(if refresh {
        PathStatus::new(
            "models.catalogRefresh",
            None,
            State::Off,
            "on: OpenClaw fetches model metadata from its hosted catalog (no prompts or keys)",
        )
    } else {
        PathStatus::new("models.catalogRefresh", None, State::Governed, "off: no outbound catalog traffic")
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_are_denied_and_the_refresh_turned_off_unless_opted_out() {
        let mut after = json!({"plugins": {"deny": ["telegram"]}});
        let replaced = BTreeMap::from([
            ("openai".to_string(), BTreeSet::new()),
            ("anthropic".to_string(), BTreeSet::from(["odd".to_string()])),
        ]);
        let envs = BTreeSet::from(["ANTHROPIC_API_KEY".to_string(), "OPENAI_API_KEY".to_string()]);
        let lines = plan(&mut after, &replaced, &envs, Hardening::default());
        assert_eq!(after["plugins"]["deny"], json!(["telegram", "anthropic", "openai"]));
        assert_eq!(after["models"]["catalogRefresh"]["enabled"], false);
        assert!(lines.iter().any(|l| l.contains("odd still use")), "{lines:?}");
        assert!(lines.iter().any(|l| l.contains("remove ANTHROPIC_API_KEY OPENAI_API_KEY")), "{lines:?}");

        let mut kept = json!({});
        plan(&mut kept, &replaced, &envs, Hardening { deny_plugins: false, catalog_refresh_off: false });
        assert_eq!(kept, json!({}));
    }
}

//! `[plugin]`: how the decision endpoint answers the OpenClaw plugin (docs/plugin.md, and
//! docs/config.md for every key).

use serde::{Deserialize, Serialize};

/// The data listener's prefix the gate serves (`/v1/decide` and `/v1/decide/report`).
pub const PATH_PREFIX: &str = "/v1/decide";

/// OpenClaw caps an operator's hook timeout here (`hooks.timeouts.before_tool_call`).
pub const OPENCLAW_MAX_HOOK_MS: u64 = 600_000;

/// The plugin gives up this long before OpenClaw's hook timeout (its `GATE_MARGIN_MS`).
pub const PLUGIN_MARGIN_MS: u64 = 1_000;

/// `[plugin]` config section. Every key has a default; unknown keys are an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Expect the plugin on the linked gateway (`[gateway] url`) even before any plugin token
    /// exists: `/readyz` and the registry then report that gateway ungoverned while its plugin
    /// is missing, disabled or silent. (A gateway with a plugin token is always expected.)
    pub required: bool,
    /// The plugins' heartbeat period in seconds (their `heartbeatSeconds`, which attach
    /// writes): a plugin silent for 2.5 periods (at least 10 s) counts as not answering.
    pub heartbeat_s: u64,
    /// How long the plugin waits for a tool-call decision, in ms, when neither the request
    /// nor the plugin's heartbeat says (its `timeoutMs`; attach sets OpenClaw's hook timeout
    /// to 600000, so the plugin waits 599000). A hold is answered before it.
    pub hold_timeout_ms: u64,
    /// How much sooner than the plugin's own limit a hold nobody decided is answered (a
    /// block saying so), in ms, so the model reads ClawButler's reason and not the plugin's
    /// "did not answer in time".
    pub answer_margin_ms: u64,
    /// Largest request body, in bytes (tool parameters can carry a whole file).
    pub max_body_bytes: usize,
    /// Channels (`requester.channel` of the run: `webchat`, `telegram`, ...) whose holds use
    /// OpenClaw's native approval instead of a long poll, so an approver can answer in the
    /// chat too; `"*"` = every channel. Only for interactive runs (trigger `user`, a channel
    /// present) with the gateway link up: CLI, cron and heartbeat runs always long-poll.
    /// Empty (default) = never.
    pub native_approval_channels: Vec<String>,
    /// Cost cross-check: OpenClaw's and the sidecar's cost of a run may differ by this
    /// fraction of the larger one (default 0.01) or this many USD (default 0.000001), whichever
    /// is more, before it counts as a mismatch.
    pub usage_tolerance: f64,
    pub usage_tolerance_usd: f64,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            required: false,
            heartbeat_s: 60,
            hold_timeout_ms: OPENCLAW_MAX_HOOK_MS - PLUGIN_MARGIN_MS,
            answer_margin_ms: 1_500,
            max_body_bytes: 8 * 1024 * 1024,
            native_approval_channels: Vec::new(),
            usage_tolerance: 0.01,
            usage_tolerance_usd: 0.000_001,
        }
    }
}

impl PluginSettings {
    /// Check what one key's range cannot (the ranges of single keys are checked with every
    /// other numeric key, in the binary's config loader); the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.answer_margin_ms >= self.hold_timeout_ms {
            return Err(("plugin.answer_margin_ms".into(), "must be below plugin.hold_timeout_ms".into()));
        }
        if self.native_approval_channels.iter().any(|c| c.trim().is_empty()) {
            return Err(("plugin.native_approval_channels".into(), "entries must not be empty".into()));
        }
        Ok(())
    }

    /// Whether holds of runs from `channel` use OpenClaw's native approval.
    pub fn native_for(&self, channel: &str) -> bool {
        self.native_approval_channels.iter().any(|c| c == "*" || c == channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert_eq!(PluginSettings::default().validate(), Ok(()));
        let s: PluginSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, PluginSettings::default());
        let bad = PluginSettings { answer_margin_ms: 599_000, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().0, "plugin.answer_margin_ms");
        assert!(serde_json::from_str::<PluginSettings>(r#"{"requried": true}"#).is_err());
        let native = PluginSettings { native_approval_channels: vec!["webchat".into()], ..Default::default() };
        assert!(native.native_for("webchat") && !native.native_for("telegram"));
    }
}

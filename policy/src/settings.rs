//! The `[policies]` config section: where the bundle lives, how long one evaluation may run,
//! and the policy data users tune without editing Rego (it becomes `data.clawbutler.config`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{BundleSource, EngineOptions};

fn default_eval_timeout_ms() -> u64 {
    5
}

fn default_true() -> bool {
    true
}

fn default_hold_ttl_s() -> u64 {
    900
}

fn default_mcp_proxy_servers() -> Vec<String> {
    vec!["cb-*".into()]
}

/// `[policies]` config section. Every key has a default; unknown keys are an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// Bundle directory; absent = the embedded default bundle.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Per-evaluation time limit in milliseconds (default 5); past it the call is denied.
    #[serde(default = "default_eval_timeout_ms")]
    pub eval_timeout_ms: u64,
    /// Reload when a file under `dir` changes (default true; ignored for the embedded bundle).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Models agents may call: exact names or globs (`gpt-4o*`), matched against the model
    /// name and `<upstream>/<name>`. Empty = no allow-list.
    #[serde(default)]
    pub model_allowlist: Vec<String>,
    /// Deny a call whose estimated cost alone exceeds this many USD. Absent = no cap.
    #[serde(default)]
    pub max_call_usd: Option<f64>,
    /// Directories agents may write in, besides the per-call `exec.workspace`.
    #[serde(default)]
    pub workspace_roots: Vec<String>,
    /// Extra tool names (exact or glob) that always need a human.
    #[serde(default)]
    pub high_risk_tools: Vec<String>,
    /// Extra command globs (matched against the whole command line) that always need a human.
    #[serde(default)]
    pub high_risk_commands: Vec<String>,
    /// How long a held call waits for a human before it expires, in seconds.
    #[serde(default = "default_hold_ttl_s")]
    pub hold_ttl_s: u64,
    /// MCP tool results: `mask` (default) replaces secrets before the client sees them,
    /// `pass` leaves them (they are still detected, recorded and seen by session rules).
    #[serde(default)]
    pub tool_result_secrets: decision::ResultSecrets,
    /// Extra tool names (exact or glob) that send data out of the box, for the MCP session
    /// rule that holds outbound tools after a result carried a secret.
    #[serde(default)]
    pub outbound_tools: Vec<String>,
    /// Plugin gate: message recipients agents may send to without a human (exact or glob,
    /// e.g. `+1555*`, `@team`). Empty = every send to a named recipient is held.
    #[serde(default)]
    pub message_allowlist: Vec<String>,
    /// Plugin gate: hosts `browser` and `web_fetch` may open without a human (exact or glob,
    /// e.g. `docs.rs`, `*.github.com`; `*` = any). Empty = every URL is held.
    #[serde(default)]
    pub web_allowlist: Vec<String>,
    /// Plugin gate: extra file globs agents may not change without a human (credentials and
    /// OpenClaw's configuration are always protected).
    #[serde(default)]
    pub protected_paths: Vec<String>,
    /// Plugin gate: OpenClaw MCP servers that are ClawButler's own MCP endpoint (globs); their
    /// tools pass the gate because the MCP proxy decides them (default `["cb-*"]`).
    #[serde(default = "default_mcp_proxy_servers")]
    pub mcp_proxy_servers: Vec<String>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            dir: None,
            eval_timeout_ms: default_eval_timeout_ms(),
            watch: true,
            model_allowlist: Vec::new(),
            max_call_usd: None,
            workspace_roots: Vec::new(),
            high_risk_tools: Vec::new(),
            high_risk_commands: Vec::new(),
            hold_ttl_s: default_hold_ttl_s(),
            tool_result_secrets: decision::ResultSecrets::Mask,
            outbound_tools: Vec::new(),
            message_allowlist: Vec::new(),
            web_allowlist: Vec::new(),
            protected_paths: Vec::new(),
            mcp_proxy_servers: default_mcp_proxy_servers(),
        }
    }
}

impl PolicySettings {
    /// The policy data: the value of `data.clawbutler.config` in Rego. Pass it as the `data`
    /// argument of [`crate::PolicyEngine::new`].
    pub fn data(&self) -> serde_json::Value {
        serde_json::json!({
            "model_allowlist": self.model_allowlist,
            "max_call_usd": self.max_call_usd,
            "workspace_roots": self.workspace_roots,
            "high_risk_tools": self.high_risk_tools,
            "high_risk_commands": self.high_risk_commands,
            "hold_ttl_s": self.hold_ttl_s,
            "tool_result_secrets": self.tool_result_secrets,
            "outbound_tools": self.outbound_tools,
            "message_allowlist": self.message_allowlist,
            "web_allowlist": self.web_allowlist,
            "protected_paths": self.protected_paths,
            "mcp_proxy_servers": self.mcp_proxy_servers,
        })
    }

    /// Where the bundle comes from.
    pub fn source(&self) -> BundleSource {
        match &self.dir {
            Some(dir) => BundleSource::Dir(dir.clone()),
            None => BundleSource::Embedded,
        }
    }

    /// Engine options derived from this section (a 0 ms timeout is raised to 1 ms).
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions { eval_timeout: Duration::from_millis(self.eval_timeout_ms.max(1)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_takes_defaults() {
        let s: PolicySettings = toml_like("{}");
        assert_eq!(s, PolicySettings::default());
        assert!(s.watch);
        assert_eq!(s.engine_options().eval_timeout, Duration::from_millis(5));
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = serde_json::from_str::<PolicySettings>(r#"{"model_alowlist": []}"#).unwrap_err();
        assert!(err.to_string().contains("model_alowlist"), "{err}");
    }

    #[test]
    fn data_carries_tunables() {
        let s: PolicySettings = toml_like(r#"{"model_allowlist": ["gpt-4o*"], "max_call_usd": 0.5}"#);
        let d = s.data();
        assert_eq!(d["model_allowlist"][0], "gpt-4o*");
        assert_eq!(d["max_call_usd"], 0.5);
        assert!(d["workspace_roots"].as_array().is_some_and(|a| a.is_empty()));
    }

    fn toml_like(json: &str) -> PolicySettings {
        serde_json::from_str(json).unwrap()
    }
}

//! Memory embeddings (`memory.search`, per agent `agents.entries.<id>.memory.search`): on by
//! default, with OpenAI as the default provider, so a stock gateway sends memory text to
//! OpenAI with its own key. OpenClaw reads the agent's `memory.search` over the global one
//! key by key (`remote.baseUrl`, `remote.apiKey`, `provider`, `model`), and its
//! `openai-compatible` provider calls `<remote.baseUrl>/embeddings` with `remote.apiKey`
//! (verified on 2026.9.6: `/a/<agent>/openai/v1/embeddings` with the agent's key). The
//! `openai` provider itself comes from the bundled `openai` plugin, which hardening denies,
//! so attach moves the agent to `openai-compatible` at the sidecar, keeping the model.

use serde_json::{json, Value};

use super::models::{entry, sidecar_agent};
use super::report::{PathStatus, State, View};

/// OpenClaw's default embedding model for the `openai` provider.
pub const DEFAULT_OPENAI_EMBEDDING_MODEL: &str = "text-embedding-3-small";

/// The agent's effective memory search settings.
pub struct Effective {
    pub enabled: bool,
    pub provider: String,
    pub base_url: Option<String>,
    pub model: Option<String>,
}

fn pick<'a>(agent: &'a Value, global: &'a Value, path: &str) -> Option<&'a Value> {
    let get = |v: &'a Value| path.split('.').try_fold(v, |v, k| v.get(k)).filter(|v| !v.is_null());
    get(agent).or_else(|| get(global))
}

/// Resolve as OpenClaw does (`resolveMemorySearchConfig`).
pub fn effective(config: &Value, id: &str) -> Effective {
    let agent = entry(config, id).pointer("/memory/search").unwrap_or(&Value::Null);
    let global = config.pointer("/memory/search").unwrap_or(&Value::Null);
    let provider = pick(agent, global, "provider").and_then(Value::as_str).map(str::trim).unwrap_or("");
    Effective {
        enabled: pick(agent, global, "enabled").and_then(Value::as_bool).unwrap_or(true),
        provider: if provider.is_empty() || provider == "auto" { "openai".into() } else { provider.to_string() },
        base_url: pick(agent, global, "remote.baseUrl").and_then(Value::as_str).map(str::to_string),
        model: pick(agent, global, "model").and_then(Value::as_str).map(str::to_string),
    }
}

/// Whether attach should route the agent's embeddings (OpenAI's, to OpenAI's own API).
pub fn wants_wiring(e: &Effective) -> bool {
    e.enabled
        && e.provider == "openai"
        && e.base_url.as_deref().is_none_or(|b| b.trim_end_matches('/').ends_with("api.openai.com/v1"))
}

/// The agent's `memory.search` after attach: `base` is the sidecar URL of the OpenAI
/// upstream for this agent (`http://<sidecar>/a/<id>/<upstream>/v1`).
pub fn wired(config: &Value, id: &str, base: &str, api_key: Value) -> Value {
    let e = effective(config, id);
    let model = e.model.as_deref().map(|m| m.strip_prefix("openai/").unwrap_or(m).to_string());
    let mut search = entry(config, id).pointer("/memory/search").cloned().filter(Value::is_object).unwrap_or(json!({}));
    search["provider"] = json!("openai-compatible");
    search["model"] = json!(model.unwrap_or_else(|| DEFAULT_OPENAI_EMBEDDING_MODEL.into()));
    if !search["remote"].is_object() {
        search["remote"] = json!({});
    }
    search["remote"]["baseUrl"] = json!(base);
    search["remote"]["apiKey"] = api_key;
    search
}

/// The memory embeddings path of agent `id`.
pub fn report(view: &View<'_>, id: &str) -> PathStatus {
    let e = effective(view.config, id);
    let path = "memory embeddings";
    if !e.enabled {
        return PathStatus::new(path, None, State::Off, "memory search is disabled");
    }
    let target = Some(format!("{} {}", e.provider, e.model.clone().unwrap_or_default()).trim().to_string());
    if let Some(agent) = e.base_url.as_deref().and_then(|b| sidecar_agent(b, view.sidecar)) {
        return if agent == id {
            PathStatus::new(path, target, State::Governed, format!("through the sidecar as agent {id}"))
        } else {
            PathStatus::new(path, target, State::Ungoverned, format!("through the sidecar but as agent {agent}"))
        };
    }
    match e.provider.as_str() {
        "local" => PathStatus::new(path, target, State::Off, "computed on the gateway host (local); no model API is called"),
        "openai" if !view.plugin_denied("openai") => PathStatus::new(
            path,
            target,
            State::Ungoverned,
            "memory text goes straight to OpenAI's embeddings API (OpenClaw's default) with the gateway's key; attach routes \
             it when the agent's models use the OpenAI upstream, or set memory.search.enabled: false",
        ),
        "openai" => PathStatus::new(
            path,
            target,
            State::Off,
            "the openai plugin is denied, so OpenClaw has no OpenAI embeddings: memory search uses keywords only",
        ),
        p => PathStatus::new(
            path,
            target,
            State::Ungoverned,
            format!("memory text goes to embeddings provider '{p}' directly; ClawButler proxies OpenAI embeddings only"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_embeddings_follow_openclaw_defaults_and_move_to_the_sidecar() {
        let cfg = json!({"memory": {"search": {"model": "openai/text-embedding-3-large"}},
                         "agents": {"entries": {"a": {}, "off": {"memory": {"search": {"enabled": false}}},
                                                "gem": {"memory": {"search": {"provider": "gemini"}}}}}});
        let a = effective(&cfg, "a");
        assert!(wants_wiring(&a), "default provider openai, default endpoint");
        assert!(!wants_wiring(&effective(&cfg, "off")));
        assert!(!wants_wiring(&effective(&cfg, "gem")));
        let w = wired(&cfg, "a", "http://127.0.0.1:8787/a/a/openai/v1", json!("k"));
        assert_eq!(
            w,
            json!({"provider": "openai-compatible", "model": "text-embedding-3-large",
                   "remote": {"baseUrl": "http://127.0.0.1:8787/a/a/openai/v1", "apiKey": "k"}})
        );
        let exec = json!({});
        let agents = ["a".to_string()];
        let mut after = cfg.clone();
        after["agents"]["entries"]["a"]["memory"] = json!({"search": w});
        let view = View { config: &after, agents: &agents, exec: &exec, sidecar: "127.0.0.1:8787", approver: None };
        assert_eq!(report(&view, "a").state, State::Governed);
        let before = View { config: &cfg, ..view };
        assert_eq!(report(&before, "a").state, State::Ungoverned);
    }
}

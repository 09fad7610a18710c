//! What one agent's versions hold, cut from the gateway's config: a sparse config document
//! with OpenClaw's own paths, so a diff names real config paths and a rollback is a merge
//! patch of the same shape. Scopes (`docs/config-safety.md`):
//!
//! - `agent_config`: `agents.entries.<id>`;
//! - `bindings`: the entries of `bindings` routed to the agent;
//! - `dependency_meta`: the providers its model refs name (and its own `cb-<id>*` sidecar
//!   providers), the MCP servers it can reach (all but other agents' `cb-<other>`), the
//!   `plugins` section, and its exec-approvals entry (under [`EXEC_KEY`]);
//! - `workspace_bundle`: its workspace identity files (`files.rs`), added by the caller.
//!
//! The global slice is everything but `agents.entries` and `meta`. Secrets stay as the
//! gateway shows them (`__OPENCLAW_REDACTED__`): nothing here reads a secret in clear.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Where an agent's exec-approvals entry sits in its slice (not a config key).
pub const EXEC_KEY: &str = "$exec_approvals";
/// The history key of the global slice (not a valid OpenClaw agent id).
pub const GLOBAL: &str = "@global";

/// The scopes of an agent slice.
pub const SCOPES: [&str; 4] = ["agent_config", "bindings", "dependency_meta", WORKSPACE_BUNDLE];

/// The scope of the agent's workspace identity files (`files.rs`), added after the others:
/// a version from before it lacks its hash.
pub const WORKSPACE_BUNDLE: &str = "workspace_bundle";

fn provider_refs(v: &Value, providers: &Map<String, Value>, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) => {
            if let Some((p, _)) = s.split_once('/') {
                if providers.contains_key(p) {
                    out.insert(p.to_string());
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| provider_refs(x, providers, out)),
        Value::Object(o) => o.values().for_each(|x| provider_refs(x, providers, out)),
        _ => {}
    }
}

/// The agent's slice of `config` (and of the exec-approvals `file`).
pub fn agent_doc(config: &Value, exec_file: Option<&Value>, id: &str) -> Value {
    let mut out = Map::new();
    let entry = config.pointer(&format!("/agents/entries/{id}"));
    if let Some(e) = entry {
        out.insert("agents".into(), json!({"entries": {id: e}}));
    }
    let bindings: Vec<Value> = config
        .get("bindings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|b| b.get("agentId").and_then(Value::as_str) == Some(id))
        .cloned()
        .collect();
    if !bindings.is_empty() {
        out.insert("bindings".into(), Value::Array(bindings));
    }
    let empty = Map::new();
    let providers = config.pointer("/models/providers").and_then(Value::as_object).unwrap_or(&empty);
    let mut used = BTreeSet::new();
    if let Some(e) = entry {
        provider_refs(e, providers, &mut used);
    }
    let own = format!("cb-{id}");
    used.extend(providers.keys().filter(|k| **k == own || k.starts_with(&format!("{own}-"))).cloned());
    if !used.is_empty() {
        let p: Map<String, Value> = used.iter().filter_map(|k| Some((k.clone(), providers.get(k)?.clone()))).collect();
        out.insert("models".into(), json!({"providers": p}));
    }
    let servers = config.pointer("/mcp/servers").and_then(Value::as_object).unwrap_or(&empty);
    let reach: Map<String, Value> = servers
        .iter()
        .filter(|(k, _)| !k.starts_with("cb-") || **k == own)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !reach.is_empty() {
        out.insert("mcp".into(), json!({"servers": reach}));
    }
    if let Some(p) = config.get("plugins") {
        out.insert("plugins".into(), p.clone());
    }
    if let Some(e) = exec_file.and_then(|f| f.pointer(&format!("/agents/{id}"))) {
        out.insert(EXEC_KEY.into(), e.clone());
    }
    Value::Object(out)
}

/// The global slice: the whole config but agent entries and OpenClaw's `meta`.
pub fn global_doc(config: &Value) -> Value {
    let mut g = config.clone();
    if let Some(o) = g.as_object_mut() {
        o.remove("meta");
        if let Some(a) = o.get_mut("agents").and_then(Value::as_object_mut) {
            a.remove("entries");
        }
    }
    g
}

fn sha(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// The content hash of each scope of an agent slice (or `global` for the global one).
pub fn scope_hashes(agent: &str, doc: &Value) -> BTreeMap<String, String> {
    if agent == GLOBAL {
        return BTreeMap::from([("global".to_string(), sha(doc))]);
    }
    let pick = |keys: &[&str]| {
        let m: Map<String, Value> = keys.iter().filter_map(|k| Some((k.to_string(), doc.get(*k)?.clone()))).collect();
        sha(&Value::Object(m))
    };
    BTreeMap::from([
        ("agent_config".to_string(), pick(&["agents"])),
        ("bindings".to_string(), pick(&["bindings"])),
        ("dependency_meta".to_string(), pick(&["models", "mcp", "plugins", EXEC_KEY])),
        (WORKSPACE_BUNDLE.to_string(), pick(&[super::files::FILES_KEY])),
    ])
}

/// Which pieces of ClawButler's wiring the agent's slice has (`wiring.md`): its model on a
/// sidecar provider, its `cb-<id>` MCP entry, the ClawButler plugin, exec approvals that ask.
pub fn wiring(doc: &Value, id: &str) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    let entry = doc.pointer(&format!("/agents/entries/{id}"));
    let model = entry.and_then(|e| e.get("model"));
    let primary = model.and_then(|m| m.as_str().or_else(|| m.get("primary").and_then(Value::as_str)));
    if let Some((p, _)) = primary.and_then(|m| m.split_once('/')) {
        let base = doc.pointer(&format!("/models/providers/{p}/baseUrl")).and_then(Value::as_str).unwrap_or("");
        let mark = format!("/a/{id}/");
        if p.starts_with("cb-") && (base.contains(&mark) || base.ends_with(mark.trim_end_matches('/'))) {
            out.insert("model provider through the sidecar");
        }
    }
    let mcp = doc.pointer(&format!("/mcp/servers/cb-{id}/url")).and_then(Value::as_str).unwrap_or("");
    if mcp.contains(&format!("/mcp/agent/{id}")) {
        out.insert("ClawButler MCP entry");
    }
    if let Some(p) = doc.pointer("/plugins/entries/clawbutler") {
        if p.get("enabled") != Some(&Value::Bool(false)) {
            out.insert("ClawButler plugin");
        }
    }
    if let Some(e) = doc.get(EXEC_KEY) {
        let asks = matches!(e.get("ask").and_then(Value::as_str), Some("on-miss" | "always"));
        if e.get("security").and_then(Value::as_str) == Some("allowlist") && asks {
            out.insert("exec approvals that ask ClawButler");
        }
    }
    out
}

/// The wiring `baseline` had that `live` lost.
pub fn wiring_lost(baseline: &Value, live: &Value, id: &str) -> Vec<&'static str> {
    let now = wiring(live, id);
    wiring(baseline, id).into_iter().filter(|w| !now.contains(w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({
            "meta": {"lastTouchedAt": "x"},
            "models": {"providers": {
                "cb-main": {"baseUrl": "http://127.0.0.1:8787/a/main/openai/v1", "apiKey": "__OPENCLAW_REDACTED__"},
                "cb-ops": {"baseUrl": "http://127.0.0.1:8787/a/ops/openai/v1"},
                "direct": {"baseUrl": "http://x/v1"}}},
            "agents": {"defaults": {"model": "direct/m"}, "entries": {
                "main": {"model": "cb-main/gpt", "modelPolicy": {"allow": ["cb-main/*"]}},
                "ops": {"model": {"primary": "cb-ops/gpt", "fallbacks": ["direct/m"]}}}},
            "bindings": [{"agentId": "main", "match": {"channel": "telegram"}}, {"agentId": "ops", "match": {}}],
            "mcp": {"servers": {"cb-main": {"url": "http://127.0.0.1:8787/mcp/agent/main"},
                                "cb-ops": {"url": "http://127.0.0.1:8787/mcp/agent/ops"}, "docs": {"url": "http://d"}}},
            "plugins": {"entries": {"clawbutler": {"enabled": true}}}
        })
    }

    #[test]
    fn an_agent_slice_holds_its_entry_bindings_and_what_it_uses() {
        let exec = json!({"agents": {"main": {"security": "allowlist", "ask": "on-miss", "askFallback": "deny"}}});
        let d = agent_doc(&config(), Some(&exec), "main");
        assert_eq!(d["agents"]["entries"].as_object().map(|o| o.len()), Some(1));
        assert_eq!(d["bindings"], json!([{"agentId": "main", "match": {"channel": "telegram"}}]));
        let providers: Vec<&String> = d["models"]["providers"].as_object().unwrap().keys().collect();
        assert_eq!(providers, ["cb-main"]);
        let servers: Vec<&String> = d["mcp"]["servers"].as_object().unwrap().keys().collect();
        assert_eq!(servers, ["cb-main", "docs"]);
        assert_eq!(d[EXEC_KEY]["ask"], "on-miss");
        let ops = agent_doc(&config(), None, "ops");
        let providers: Vec<&String> = ops["models"]["providers"].as_object().unwrap().keys().collect();
        assert_eq!(providers, ["cb-ops", "direct"], "fallbacks count");
        assert_eq!(wiring(&d, "main").len(), 4);
        let g = global_doc(&config());
        assert!(g.get("meta").is_none() && g["agents"].get("entries").is_none() && g["agents"]["defaults"].is_object());
        assert_eq!(scope_hashes("main", &d).len(), 4);
    }

    #[test]
    fn wiring_lost_names_what_went_away() {
        let before = agent_doc(&config(), None, "main");
        let mut cfg = config();
        cfg["agents"]["entries"]["main"]["model"] = json!("direct/m");
        cfg["plugins"]["entries"]["clawbutler"]["enabled"] = json!(false);
        let after = agent_doc(&cfg, None, "main");
        assert_eq!(
            wiring_lost(&before, &after, "main"),
            vec!["ClawButler plugin", "model provider through the sidecar"]
        );
        assert!(wiring_lost(&after, &before, "main").is_empty());
    }
}

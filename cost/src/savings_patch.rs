//! The dry-run config change behind a suggestion's "apply": the `config.patch` that would move
//! an agent to another model of the same OpenClaw provider, planned from the agent's newest
//! config version (kept by config safety, `docs/config-safety.md`). It is a preview for a human:
//! nothing here writes, and the patch keeps the provider (the agent's `cb-<id>` provider, so
//! its calls still go through the sidecar).

use serde::Serialize;
use serde_json::{json, Map, Value};

/// One path the patch changes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathChange {
    pub path: String,
    pub before: Value,
    pub after: Value,
}

/// The preview.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PatchPreview {
    pub agent: String,
    pub model_ref_before: String,
    pub model_ref_after: String,
    /// The JSON merge patch `config.patch` would take (`raw`).
    pub patch: Value,
    pub changes: Vec<PathChange>,
    /// What a human should know before applying it.
    pub notes: Vec<String>,
}

fn model_ref(entry: &Value) -> Option<(&str, bool)> {
    match entry.get("model")? {
        Value::String(s) => Some((s.as_str(), false)),
        Value::Object(o) => o.get("primary").and_then(Value::as_str).map(|s| (s, true)),
        _ => None,
    }
}

/// Plan the patch that moves `agent` to `model` within its current model's provider, from the
/// agent's config slice `content` (OpenClaw's config paths). An `Err` says why it cannot be
/// planned, in words for the caller.
pub fn plan(content: &Value, agent: &str, model: &str) -> Result<PatchPreview, String> {
    let entry = content.pointer(&format!("/agents/entries/{}", agent.replace('~', "~0").replace('/', "~1")));
    let entry = entry.ok_or_else(|| format!("agent '{agent}' is not in OpenClaw's config (agents.entries)"))?;
    let (before, is_object) = model_ref(entry).ok_or_else(|| {
        format!(
            "agent '{agent}' has no model of its own (agents.entries.{agent}.model): it uses the defaults, which \
             other agents share; set its model by hand"
        )
    })?;
    let (provider, old) =
        before.split_once('/').ok_or_else(|| format!("the model ref '{before}' names no provider (provider/model)"))?;
    let after = format!("{provider}/{model}");
    if after == before {
        return Err(format!("agent '{agent}' already uses {after}"));
    }
    let mut notes = Vec::new();
    let mut changes = Vec::new();
    let mut agent_patch = Map::new();
    let model_path = format!("agents.entries.{agent}.model{}", if is_object { ".primary" } else { "" });
    agent_patch.insert("model".into(), if is_object { json!({"primary": after}) } else { json!(after) });
    changes.push(PathChange { path: model_path, before: json!(before), after: json!(after) });

    // An allow list that names models one by one must name the new one too.
    if let Some(allow) = entry.pointer("/modelPolicy/allow").and_then(Value::as_array) {
        let covered = allow.iter().filter_map(Value::as_str).any(|a| a == after || a == format!("{provider}/*"));
        if !covered {
            let mut list = allow.clone();
            list.push(json!(after));
            changes.push(PathChange {
                path: format!("agents.entries.{agent}.modelPolicy.allow"),
                before: Value::Array(allow.clone()),
                after: Value::Array(list.clone()),
            });
            agent_patch.insert("modelPolicy".into(), json!({"allow": list}));
        }
    }
    let mut patch = json!({"agents": {"entries": {agent: Value::Object(agent_patch)}}});

    // The provider's model list must have the new model: a copy of the old entry, renamed.
    match content.pointer(&format!("/models/providers/{provider}/models")).and_then(Value::as_array) {
        Some(models) if models.iter().any(|m| m.get("id").and_then(Value::as_str) == Some(model)) => {}
        Some(models) => {
            let mut new = models
                .iter()
                .find(|m| m.get("id").and_then(Value::as_str) == Some(old))
                .cloned()
                .unwrap_or_else(|| json!({}));
            if let Some(o) = new.as_object_mut() {
                o.insert("id".into(), json!(model));
                o.insert("name".into(), json!(model));
                if o.remove("cost").is_some() {
                    notes.push(format!(
                        "the new entry in models.providers.{provider}.models has no `cost` (OpenClaw's own cost \
                         display); ClawButler meters it by its price table"
                    ));
                }
            }
            let mut list = models.clone();
            list.push(new);
            changes.push(PathChange {
                path: format!("models.providers.{provider}.models"),
                before: Value::Array(models.clone()),
                after: Value::Array(list.clone()),
            });
            patch["models"] = json!({"providers": {provider: {"models": list}}});
        }
        None => notes.push(format!(
            "provider '{provider}' is not in this agent's config slice: check that it serves '{model}' before applying"
        )),
    }
    if !provider.starts_with("cb-") {
        notes.push(format!(
            "provider '{provider}' is not a ClawButler provider: this agent's calls do not go through the sidecar"
        ));
    }
    Ok(PatchPreview {
        agent: agent.to_string(),
        model_ref_before: before.to_string(),
        model_ref_after: after,
        patch,
        changes,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice() -> Value {
        json!({
            "agents": {"entries": {"main": {"model": {"primary": "cb-main/big", "fallbacks": ["cb-main/mid"]},
                                            "modelPolicy": {"allow": ["cb-main/*"]}},
                                   "ops": {"model": "cb-ops/big", "modelPolicy": {"allow": ["cb-ops/big"]}},
                                   "lazy": {"name": "Lazy"}}},
            "models": {"providers": {
                "cb-main": {"baseUrl": "http://127.0.0.1:8787/a/main/openai/v1",
                            "models": [{"id": "big", "name": "big", "cost": {"input": 10, "output": 40}, "contextWindow": 128000}]},
                "cb-ops": {"models": [{"id": "big"}, {"id": "small"}]}}}
        })
    }

    #[test]
    fn the_patch_changes_the_model_and_adds_it_to_the_provider() {
        let p = plan(&slice(), "main", "small").unwrap();
        assert_eq!((p.model_ref_before.as_str(), p.model_ref_after.as_str()), ("cb-main/big", "cb-main/small"));
        assert_eq!(p.patch["agents"]["entries"]["main"], json!({"model": {"primary": "cb-main/small"}}));
        let models = &p.patch["models"]["providers"]["cb-main"]["models"];
        assert_eq!(models[1], json!({"id": "small", "name": "small", "contextWindow": 128000}));
        assert_eq!(models[0]["id"], "big", "the old entry stays (fallbacks may name it)");
        assert_eq!(p.changes[0].path, "agents.entries.main.model.primary");
        assert!(p.notes.iter().any(|n| n.contains("cost")));
    }

    #[test]
    fn an_allow_list_is_extended_and_a_known_model_is_not_added_again() {
        let p = plan(&slice(), "ops", "small").unwrap();
        assert_eq!(
            p.patch["agents"]["entries"]["ops"],
            json!({"model": "cb-ops/small", "modelPolicy": {"allow": ["cb-ops/big", "cb-ops/small"]}})
        );
        assert!(p.patch.get("models").is_none());
    }

    #[test]
    fn what_cannot_be_planned_says_why() {
        assert!(plan(&slice(), "lazy", "small").unwrap_err().contains("no model of its own"));
        assert!(plan(&slice(), "ghost", "small").unwrap_err().contains("not in OpenClaw's config"));
        assert!(plan(&slice(), "ops", "big").unwrap_err().contains("already uses"));
    }
}

//! The import plan: what config a strategy aims at, the merge patch that gets there from the
//! live config, and the preview of every change per agent and per section. Pure functions;
//! the gateway calls are in `import.rs`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::secrets::SECRET_REF;
use crate::config_safety::classify::{semantic_diff, SemanticChange, REDACTED};
use crate::kill::{diff, restore_patch, Change};

/// Top-level sections that belong to the machine a gateway runs on (its listener, auth and
/// log files, OpenClaw's bookkeeping): never packaged, never written by an import.
pub const MACHINE_LOCAL: [&str; 3] = ["meta", "gateway", "logging"];

/// How an import applies a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Additive: what the gateway lacks is added; nothing it has is changed or removed.
    Merge,
    /// The selected agents and top-level sections become the package's (removed when the
    /// package has none); everything else stays.
    ReplaceScope,
    /// The whole config (but the machine-local sections), cron jobs and workspace files become
    /// the package's.
    ExactRestore,
}

/// What `replace_scope` replaces.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default)]
    pub agents: Vec<String>,
    #[serde(default)]
    pub sections: Vec<String>,
}

/// The config without the machine-local sections.
pub fn portable(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        for k in MACHINE_LOCAL {
            o.remove(k);
        }
    }
    c
}

/// Add the keys of `pkg` that `live` lacks, recursively. Anything else (a scalar, an array:
/// a tool list, a fallback chain) is one value, and the live one stays.
fn add_missing(live: &mut Value, pkg: &Value) {
    if let (Value::Object(l), Value::Object(p)) = (live, pkg) {
        for (k, v) in p {
            match l.get_mut(k) {
                Some(x) => add_missing(x, v),
                None => {
                    l.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

fn bindings_of<'a>(c: &'a Value, keep: impl Fn(&str) -> bool + 'a) -> impl Iterator<Item = Value> + 'a {
    c.get("bindings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |b| keep(b.get("agentId").and_then(Value::as_str).unwrap_or_default()))
        .cloned()
}

/// The config the strategy aims at, from the live config and the package's.
pub fn target(live: &Value, pkg: &Value, strategy: Strategy, scope: &Scope) -> Value {
    let pkg = portable(pkg);
    let mut t = match strategy {
        Strategy::ExactRestore => pkg.clone(),
        Strategy::Merge => {
            // Sections: missing keys are added. Agents: a new agent comes whole (with its
            // bindings); an agent the gateway has is not touched at all.
            let mut t = portable(live);
            let mut rest = pkg.clone();
            if let Some(o) = rest.pointer_mut("/agents/entries").and_then(Value::as_object_mut) {
                o.clear();
            }
            if let Some(o) = rest.as_object_mut() {
                o.remove("bindings");
            }
            add_missing(&mut t, &rest);
            let have: Vec<String> = live
                .pointer("/agents/entries")
                .and_then(Value::as_object)
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let new: Vec<(String, Value)> = pkg
                .pointer("/agents/entries")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(id, _)| !have.contains(id))
                .map(|(id, e)| (id.clone(), e.clone()))
                .collect();
            for (id, e) in &new {
                t["agents"]["entries"][id.as_str()] = e.clone();
            }
            let added = |id: &str| new.iter().any(|(n, _)| n == id);
            let extra: Vec<Value> = bindings_of(&pkg, added).collect();
            if !extra.is_empty() {
                let mut all: Vec<Value> = bindings_of(live, |_| true).collect();
                all.extend(extra);
                t["bindings"] = Value::Array(all);
            }
            t
        }
        Strategy::ReplaceScope => {
            let mut t = portable(live);
            for a in &scope.agents {
                match pkg.pointer(&format!("/agents/entries/{a}")) {
                    Some(e) => t["agents"]["entries"][a.as_str()] = e.clone(),
                    None => {
                        if let Some(o) = t.pointer_mut("/agents/entries").and_then(Value::as_object_mut) {
                            o.remove(a);
                        }
                    }
                }
            }
            if !scope.agents.is_empty() {
                let picked = |id: &str| scope.agents.iter().any(|a| a == id);
                let mut all: Vec<Value> = bindings_of(live, |id| !picked(id)).collect();
                all.extend(bindings_of(&pkg, picked));
                if let Some(o) = t.as_object_mut() {
                    if all.is_empty() {
                        o.remove("bindings");
                    } else {
                        o.insert("bindings".into(), Value::Array(all));
                    }
                }
            }
            for s in scope.sections.iter().filter(|s| !MACHINE_LOCAL.contains(&s.as_str())) {
                if let Some(o) = t.as_object_mut() {
                    match pkg.get(s) {
                        Some(v) => o.insert(s.clone(), v.clone()),
                        None => o.remove(s),
                    };
                }
            }
            t
        }
    };
    // The machine-local sections stay as they are on this gateway.
    if let (Some(o), Some(l)) = (t.as_object_mut(), live.as_object()) {
        for k in MACHINE_LOCAL {
            if let Some(v) = l.get(k) {
                o.insert(k.to_string(), v.clone());
            }
        }
    }
    t
}

fn unwritable(v: &Value) -> bool {
    let s = v.to_string();
    s.contains(REDACTED) || s.contains(SECRET_REF)
}

/// Remove leaves that cannot be written (redacted, unfilled references) from `v`.
fn without_unwritable(v: &Value) -> Option<Value> {
    match v {
        Value::Object(o) => {
            let kept: Map<String, Value> =
                o.iter().filter_map(|(k, x)| without_unwritable(x).map(|x| (k.clone(), x))).collect();
            Some(Value::Object(kept))
        }
        Value::String(_) if unwritable(v) => None,
        _ if unwritable(v) => None,
        _ => Some(v.clone()),
    }
}

/// The merge patch, its replace paths and the skipped paths that turn `live` into `target`.
/// A secret the package does not hold (redacted, or a reference nobody filled) is never
/// written: it is skipped, and a new object keeps its other keys.
pub fn patch(live: &Value, target: &Value) -> (Value, Vec<String>, Vec<Value>) {
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    for c in diff(live, target) {
        if c.path.first().is_some_and(|k| MACHINE_LOCAL.contains(&k.as_str())) {
            continue;
        }
        let after = match &c.after {
            Some(a) if unwritable(a) => {
                skipped.push(json!({"path": c.path.join("."),
                    "why": "a secret the package does not hold (missing, or a reference not filled): left as it is"}));
                if c.before.is_some() || !a.is_object() {
                    continue;
                }
                without_unwritable(a)
            }
            a => a.clone(),
        };
        // restore_patch writes `before` where the config holds `after`.
        changes.push(Change { path: c.path, before: after, after: c.before });
    }
    let (patch, replace, _) = restore_patch(&changes, live);
    (patch, replace, skipped)
}

/// Where a change belongs in the preview: `("agent", id)` or `("section", name)`.
fn owner(path: &str) -> (&'static str, String) {
    let parts: Vec<&str> = path.split('.').collect();
    match parts.as_slice() {
        ["agents", "entries", id, ..] => ("agent", id.to_string()),
        [first, ..] => ("section", first.to_string()),
        [] => ("section", String::new()),
    }
}

/// Every change from `live` to `target`, per agent and per section, secrets masked.
pub fn preview(live: &Value, target: &Value, secrets: &[String]) -> (Vec<SemanticChange>, Value) {
    let mut changes = semantic_diff(&portable(live), &portable(target));
    for c in &mut changes {
        for v in [&mut c.before, &mut c.after].into_iter().flatten() {
            mask(v, secrets);
        }
    }
    let mut agents: BTreeMap<String, Vec<&SemanticChange>> = BTreeMap::new();
    let mut sections: BTreeMap<String, Vec<&SemanticChange>> = BTreeMap::new();
    for c in &changes {
        match owner(&c.path) {
            ("agent", id) => agents.entry(id).or_default().push(c),
            (_, s) => sections.entry(s).or_default().push(c),
        }
    }
    let by = json!({"agents": agents, "sections": sections});
    (changes, by)
}

/// Replace every secret value inside `v` by `********`.
pub fn mask(v: &mut Value, secrets: &[String]) {
    match v {
        Value::String(s) if secrets.iter().any(|x| !x.is_empty() && s.contains(x.as_str())) => {
            *v = Value::String("********".into());
        }
        Value::Object(o) => o.values_mut().for_each(|x| mask(x, secrets)),
        Value::Array(a) => a.iter_mut().for_each(|x| mask(x, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Value {
        json!({"gateway": {"port": 1}, "meta": {"x": 1},
               "models": {"providers": {"direct": {"apiKey": REDACTED, "baseUrl": "http://live/v1"}}},
               "agents": {"entries": {"main": {"model": "direct/a"}, "ops": {"model": "direct/b"}}},
               "bindings": [{"agentId": "ops", "match": {"channel": "x"}}]})
    }

    fn pkg() -> Value {
        json!({"gateway": {"port": 2},
               "models": {"providers": {"direct": {"apiKey": "sk-real", "baseUrl": "http://pkg/v1"},
                                        "new": {"apiKey": REDACTED, "baseUrl": "http://new/v1"}}},
               "agents": {"entries": {"main": {"model": "direct/z"}, "research": {"model": "new/m"}}}})
    }

    #[test]
    fn merge_adds_and_changes_nothing_that_exists() {
        let t = target(&live(), &pkg(), Strategy::Merge, &Scope::default());
        assert_eq!(t["agents"]["entries"]["main"]["model"], "direct/a", "existing values stay");
        assert_eq!(t["agents"]["entries"]["research"]["model"], "new/m", "a missing agent is added");
        let mut l = live();
        l["agents"]["entries"]["main"]["tools"] = json!({"deny": ["exec"]});
        let mut p = pkg();
        p["agents"]["entries"]["main"]["tools"] = json!({"deny": ["exec", "browser"], "allow": ["read"]});
        p["bindings"] = json!([{"agentId": "research", "match": {"channel": "y"}}, {"agentId": "main"}]);
        let t2 = target(&l, &p, Strategy::Merge, &Scope::default());
        assert_eq!(t2["agents"]["entries"]["main"], l["agents"]["entries"]["main"], "an existing agent is not touched");
        assert_eq!(
            t2["bindings"],
            json!([{"agentId": "ops", "match": {"channel": "x"}},
                                          {"agentId": "research", "match": {"channel": "y"}}]),
            "the new agent's bindings"
        );
        assert_eq!(t["gateway"]["port"], 1, "machine-local stays");
        let (p, _, skipped) = patch(&live(), &t);
        assert_eq!(p["agents"]["entries"], json!({"research": {"model": "new/m"}}));
        assert_eq!(p["models"]["providers"]["new"], json!({"baseUrl": "http://new/v1"}), "without the missing secret");
        assert_eq!(skipped.len(), 1);
        assert!(p.get("gateway").is_none() && p["models"]["providers"].get("direct").is_none());
    }

    #[test]
    fn exact_restore_removes_what_the_package_lacks_and_writes_secrets_it_holds() {
        let t = target(&live(), &pkg(), Strategy::ExactRestore, &Scope::default());
        let (p, replace, _) = patch(&live(), &t);
        assert_eq!(p["agents"]["entries"]["ops"], Value::Null, "removed");
        assert_eq!(p["models"]["providers"]["direct"]["apiKey"], "sk-real");
        assert_eq!(p["bindings"], Value::Null);
        assert!(replace.contains(&"bindings".to_string()), "{replace:?}");
        assert!(p.get("meta").is_none() && p.get("gateway").is_none());
        let (changes, by) = preview(&live(), &t, &["sk-real".into()]);
        assert!(
            by["agents"]["ops"].is_array()
                && by["agents"]["research"].is_array()
                && by["sections"]["models"].is_array()
        );
        assert!(!serde_json::to_string(&changes).unwrap_or_default().contains("sk-real"), "masked");
    }

    #[test]
    fn replace_scope_touches_only_the_selected_agents_and_sections() {
        let scope = Scope { agents: vec!["ops".into()], sections: vec!["models".into(), "gateway".into()] };
        let t = target(&live(), &pkg(), Strategy::ReplaceScope, &scope);
        assert!(t["agents"]["entries"].get("ops").is_none(), "ops is not in the package: removed");
        assert_eq!(t["agents"]["entries"]["main"]["model"], "direct/a", "main not selected");
        assert!(t.get("bindings").is_none(), "ops's bindings went with it");
        assert_eq!(t["models"], pkg()["models"]);
        assert_eq!(t["gateway"]["port"], 1, "a machine-local section is never replaced");
    }
}

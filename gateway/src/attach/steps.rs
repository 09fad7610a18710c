//! Restoring the gateway config in steps. OpenClaw 2026.9.6 refuses a config write that
//! leaves the file at less than half its size (`Config write rejected: ... (size-drop:9045->935)`,
//! a guard against clobbered configs), and detaching a stock gateway does exactly that: attach
//! added every sidecar provider to a file that had none. So detach moves towards the target
//! in patches that each keep at least [`KEEP`] of the current size (estimated from the parsed
//! document, written pretty like the gateway writes it), removing whole objects key by key
//! when one object alone is too big to drop at once.
//!
//! Every intermediate config must be valid, so: a provider, secrets provider, MCP server or
//! plugin entry is removed whole (OpenClaw refuses a custom provider without `baseUrl` and
//! `models`), and the steps follow the references: agents first (they name providers), then
//! the rest, secrets providers last (providers and agents reference them); a step takes
//! changes in that order and stops at the first that does not fit.

use serde_json::{json, Value};

use super::{config_diff, forward_patch};
use crate::kill::Change;

/// The share of the current size each step keeps (OpenClaw refuses below 0.5).
pub const KEEP: f64 = 0.6;

/// Most steps one restore may take (each halves the size at worst, so this is plenty).
pub const MAX_STEPS: usize = 24;

fn size(v: &Value) -> usize {
    serde_json::to_string_pretty(v).map_or(0, |s| s.len())
}

/// `doc` with `c` applied (its path set to `c.after`, or removed).
pub fn apply(doc: &Value, c: &Change) -> Value {
    let mut out = doc.clone();
    let Some((last, parents)) = c.path.split_last() else {
        return c.after.clone().unwrap_or(Value::Null);
    };
    let mut cur = &mut out;
    for k in parents {
        if !cur.get(k).is_some_and(Value::is_object) {
            if c.after.is_none() {
                return out;
            }
            cur[k] = json!({});
        }
        cur = &mut cur[k];
    }
    if let Some(o) = cur.as_object_mut() {
        match &c.after {
            Some(v) => {
                o.insert(last.clone(), v.clone());
            }
            None => {
                o.remove(last);
            }
        }
    }
    out
}

/// Objects removed whole: `models.providers.<id>`, `secrets.providers.<id>`,
/// `mcp.servers.<id>`, `plugins.entries.<id>`.
fn atomic(path: &[String]) -> bool {
    matches!(
        path,
        [a, b, _] if matches!((a.as_str(), b.as_str()), ("models", "providers") | ("secrets", "providers") | ("mcp", "servers") | ("plugins", "entries"))
    )
}

/// The pieces that shrink a `models.providers.<id>` removal `c` while keeping the provider
/// valid (OpenClaw refuses one without `baseUrl` and `models`), in order: its model entries
/// but the first, one at a time, then the first reduced to `id` and `name`, then its other
/// keys one at a time. Empty when `c` is not such a removal or nothing is left to shrink.
fn shrink(c: &Change) -> Vec<Change> {
    let (Some(Value::Object(p)), None) = (&c.before, &c.after) else { return Vec::new() };
    if !matches!(c.path.as_slice(), [a, b, _] if a == "models" && b == "providers") {
        return Vec::new();
    }
    let at = |k: &str| {
        let mut path = c.path.clone();
        path.push(k.to_string());
        path
    };
    let mut out = Vec::new();
    if let Some(models) = p.get("models").and_then(Value::as_array) {
        for n in (1..models.len()).rev() {
            out.push(Change { path: at("models"), before: Some(json!(models[..=n])), after: Some(json!(models[..n])) });
        }
        if let Some(first) = models.first().and_then(Value::as_object) {
            let small: serde_json::Map<String, Value> =
                first.iter().filter(|(k, _)| *k == "id" || *k == "name").map(|(k, v)| (k.clone(), v.clone())).collect();
            if small.len() < first.len() {
                out.push(Change { path: at("models"), before: Some(json!([first])), after: Some(json!([small])) });
            }
        }
    }
    for (k, v) in p {
        if k != "baseUrl" && k != "models" {
            out.push(Change { path: at(k), before: Some(v.clone()), after: None });
        }
    }
    out
}

/// The order changes are applied in: what references comes before what is referenced.
fn rank(c: &Change) -> u8 {
    match c.path.first().map(String::as_str) {
        Some("agents") => 0,
        Some("secrets") => 2,
        _ => 1,
    }
}

/// The changes from `current` to `target` under `scope` (path prefixes), with removed
/// objects broken up key by key (the emptied object itself last), in reference order.
pub fn fine_changes(current: &Value, target: &Value, scope: &[Vec<String>]) -> Vec<Change> {
    fn split(c: Change, out: &mut Vec<Change>) {
        match (&c.before, &c.after) {
            (Some(Value::Object(o)), None) if !o.is_empty() && !atomic(&c.path) => {
                for (k, v) in o {
                    let mut path = c.path.clone();
                    path.push(k.clone());
                    split(Change { path, before: Some(v.clone()), after: None }, out);
                }
                out.push(Change { path: c.path, before: Some(json!({})), after: None });
            }
            _ => out.push(c),
        }
    }
    let mut out = Vec::new();
    for c in config_diff(current, target) {
        if scope.iter().any(|p| c.path.starts_with(p) || p.starts_with(&c.path)) {
            split(c, &mut out);
        }
    }
    out.sort_by_key(rank);
    out
}

/// The next step from `current`: the merge patch and replace paths of as many changes as keep
/// the size at or above [`KEEP`] of now (at least one change), or None when nothing is left.
pub fn next_step(current: &Value, changes: &[Change]) -> Option<(Value, Vec<String>, usize)> {
    let now = size(current);
    let floor = if now < 512 { 0 } else { (now as f64 * KEEP) as usize };
    let mut doc = current.clone();
    let mut chosen: Vec<Change> = Vec::new();
    for c in changes {
        // A container is removed only once it is empty in this step's result.
        if c.after.is_none() && c.before == Some(json!({})) {
            let here = c.path.iter().try_fold(&doc, |v, k| v.get(k));
            if here.is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty())) {
                continue;
            }
        }
        let trial = apply(&doc, c);
        if size(&trial) < floor {
            break;
        }
        doc = trial;
        chosen.push(Change {
            path: c.path.clone(),
            before: c.path.iter().try_fold(current, |v, k| v.get(k)).cloned(),
            after: c.after.clone(),
        });
    }
    if chosen.is_empty() {
        let c = changes.first()?;
        // A provider too big to remove in one write is shrunk first, piece by piece, as far
        // as this write may go (at least one piece); a later step removes what is left.
        let pieces = shrink(c);
        if pieces.is_empty() {
            chosen.push(c.clone());
        }
        for p in pieces {
            let trial = apply(&doc, &p);
            if size(&trial) < floor && !chosen.is_empty() {
                break;
            }
            doc = trial;
            // As above: `before` is the value in `current`, which the patch is checked against.
            let before = p.path.iter().try_fold(current, |v, k| v.get(k)).cloned();
            chosen.push(Change { before, ..p });
        }
    }
    let (patch, replace) = forward_patch(&chosen, current);
    Some((patch, replace, chosen.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_big_removal_is_cut_into_steps_that_each_keep_most_of_the_file() {
        let mut providers = serde_json::Map::new();
        for i in 0..8 {
            providers.insert(format!("cb-{i}"), json!({"baseUrl": format!("http://127.0.0.1:8787/a/{i}/openai/v1"), "models": [{"id": "m", "name": "m", "contextWindow": 400000}]}));
        }
        let target = json!({"gateway": {"mode": "local"}, "agents": {"entries": {"a": {}}}});
        let mut current = target.clone();
        current["models"] = json!({"providers": providers, "catalogRefresh": {"enabled": false}});
        current["plugins"] = json!({"deny": ["openai"]});
        current["secrets"] = json!({"providers": {"keys": {"source": "file", "path": "/k.json"}}});
        current["agents"]["entries"]["a"]["model"] = json!("cb-0/m");
        let scope: Vec<Vec<String>> =
            ["models", "plugins", "secrets", "agents"].iter().map(|s| vec![s.to_string()]).collect();
        let mut doc = current.clone();
        let mut steps = 0;
        loop {
            let changes = fine_changes(&doc, &target, &scope);
            let Some((patch, replace, n)) = next_step(&doc, &changes) else { break };
            assert!(n > 0);
            let next = crate::attach::tests::merge_patch(&doc, &patch);
            assert!(size(&next) as f64 >= size(&doc) as f64 * 0.5 || size(&doc) < 512, "step {steps} drops too much");
            if replace.iter().any(|r| r == "plugins.deny") {
                assert_eq!(next.pointer("/plugins/deny"), None);
            }
            // Never a partial provider, never a provider or agent left pointing at removed secrets.
            for (id, p) in next.pointer("/models/providers").and_then(Value::as_object).into_iter().flatten() {
                assert!(p.get("baseUrl").is_some() && p.get("models").is_some(), "{id} partial at step {steps}");
            }
            if next.pointer("/models/providers/cb-0").is_some() || next.pointer("/agents/entries/a/model").is_some() {
                assert!(next.pointer("/secrets/providers/keys").is_some(), "secrets removed too early at step {steps}");
            }
            doc = next;
            steps += 1;
            assert!(steps < MAX_STEPS);
        }
        assert_eq!(doc, target);
        assert!(steps > 1, "more than one step was needed");
    }

    #[test]
    fn the_gateways_meta_bookkeeping_is_never_a_step() {
        // OpenClaw rewrites `meta` on every write: chasing it would never converge, and a
        // patch touching only it is a no-op the gateway does not answer.
        let target = json!({"meta": {"lastTouchedAt": "t0"}, "agents": {"entries": {"a": {}}}});
        let mut current = target.clone();
        current["meta"] = json!({"lastTouchedAt": "t9", "lastTouchedVersion": "2026.9.6"});
        let scope = vec![vec!["meta".to_string()], vec!["agents".to_string()]];
        assert!(fine_changes(&current, &target, &scope).is_empty());
        assert!(next_step(&current, &fine_changes(&current, &target, &scope)).is_none(), "nothing to write");
        current["agents"]["entries"]["a"]["model"] = json!("cb-a/m");
        let changes = fine_changes(&current, &target, &scope);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].path, ["agents", "entries", "a", "model"]);
    }
}

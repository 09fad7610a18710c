//! The exec approvals section. Attach sets each attached agent's entry of OpenClaw's exec
//! approvals document to ask on every command that is not allowlisted, with a deny fallback
//! (`exec.approvals.set` + baseHash), so ClawButler, connected as the approver, decides
//! (`docs/gateway.md`, "Exec approvals"). Detach puts the previous entries back.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::report::{PathStatus, State, View};

/// The exec-approval policy attach sets for each agent: every command not allowlisted asks,
/// and with no approver connected it is denied.
pub fn ask_policy() -> Value {
    json!({"security": "allowlist", "ask": "on-miss", "askFallback": "deny"})
}

/// The document of an `exec.approvals.get` answer with OpenClaw's resolved defaults filled in
/// where the document leaves them unset (what the report reads).
pub fn effective_document(answer: &Value) -> Value {
    let mut file = answer.get("file").cloned().filter(Value::is_object).unwrap_or(json!({}));
    let mut defaults = answer.get("resolvedDefaults").cloned().filter(Value::is_object).unwrap_or(json!({}));
    if let (Some(d), Some(own)) = (defaults.as_object_mut(), file.get("defaults").and_then(Value::as_object)) {
        d.extend(own.clone());
    }
    file["defaults"] = defaults;
    file
}

/// The document after attach (`file` with the ask policy on each of `agents`), the entries
/// before (None = absent) and one plan line per agent.
pub fn plan(file: &Value, agents: &[String]) -> (Value, BTreeMap<String, Option<Value>>, Vec<String>) {
    let mut file = file.clone();
    let mut before = BTreeMap::new();
    let mut lines = Vec::new();
    for id in agents {
        let prev = file.pointer(&format!("/agents/{id}")).cloned();
        lines.push(format!(
            "~ exec-approvals agents.{id}: {} -> {}",
            prev.as_ref().map_or("(absent)".into(), |v| v.to_string()),
            ask_policy()
        ));
        before.insert(id.clone(), prev);
        if !file["agents"].is_object() {
            file["agents"] = json!({});
        }
        let mut v = file["agents"][id].clone();
        if !v.is_object() {
            v = json!({});
        }
        if let (Some(o), Some(p)) = (v.as_object_mut(), ask_policy().as_object()) {
            o.extend(p.clone());
        }
        file["agents"][id] = v;
    }
    (file, before, lines)
}

/// `file` with the entries of `before` put back.
pub fn restore(file: &Value, before: &BTreeMap<String, Option<Value>>) -> Value {
    let mut file = file.clone();
    for (id, prev) in before {
        if let Some(agents) = file["agents"].as_object_mut() {
            match prev {
                Some(v) => {
                    agents.insert(id.clone(), v.clone());
                }
                None => {
                    agents.remove(id);
                }
            }
        }
    }
    file
}

/// The exec approvals path of agent `id`.
pub fn report(view: &View<'_>, id: &str) -> Vec<PathStatus> {
    let field = |k: &str| {
        view.exec
            .pointer(&format!("/agents/{id}/{k}"))
            .or_else(|| view.exec.pointer(&format!("/defaults/{k}")))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (security, ask, fallback) = (field("security"), field("ask"), field("askFallback"));
    let target = Some(format!("security={security} ask={ask} askFallback={fallback}"));
    let mode = view
        .config
        .pointer(&format!("/agents/entries/{id}/tools/exec/mode"))
        .or_else(|| view.config.pointer("/tools/exec/mode"))
        .and_then(Value::as_str);
    let p = |state, why: String| vec![PathStatus::new("exec", target.clone(), state, why)];
    if mode == Some("deny") || security == "deny" {
        return p(State::Off, "exec is denied outright (tools.exec.mode or security = deny)".into());
    }
    let allowlisted =
        view.exec.pointer(&format!("/agents/{id}/allowlist")).and_then(Value::as_array).map_or(0, Vec::len);
    let allow_note = if allowlisted > 0 {
        format!("; {allowlisted} allowlisted pattern(s) run without asking")
    } else {
        String::new()
    };
    if ask != "on-miss" && ask != "always" {
        return p(
            State::Ungoverned,
            match security.as_str() {
                "full" => "commands run without asking anyone (security=full, ask=off)".into(),
                _ => format!("only allowlisted commands run and nothing asks ClawButler (ask={ask})"),
            },
        );
    }
    match view.approver {
        Some(true) => p(
            State::Governed,
            format!("commands ask ClawButler (connected as the approver), which decides by policy or a human{allow_note}"),
        ),
        Some(false) => p(
            State::Ungoverned,
            format!(
                "commands ask, but ClawButler is not connected as the approver (link down or [gateway] exec_approvals = false), \
                 so OpenClaw falls back to askFallback={fallback}{allow_note}"
            ),
        ),
        None => p(
            State::Governed,
            format!("commands ask the approver: ClawButler while its gateway link is up with [gateway] exec_approvals = true{allow_note}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_and_restore_round_trip_and_the_report_reads_the_effective_policy() {
        let answer = json!({"file": {"version": 1, "defaults": {}, "agents": {"a": {"allowlist": [{"pattern": "ls"}]}}},
                            "resolvedDefaults": {"security": "full", "ask": "off", "askFallback": "deny"}});
        let file = answer["file"].clone();
        let (after, before, lines) = plan(&file, &["a".to_string(), "b".to_string()]);
        assert_eq!(lines.len(), 2);
        assert_eq!(after["agents"]["b"], ask_policy());
        assert_eq!(after["agents"]["a"]["allowlist"], json!([{"pattern": "ls"}]), "allowlists kept");
        assert_eq!(restore(&after, &before), file);

        let cfg = json!({});
        let agents = ["a".to_string(), "b".to_string()];
        let stock = effective_document(&answer);
        let view = View { config: &cfg, agents: &agents, exec: &stock, sidecar: "x", approver: Some(true) };
        assert_eq!(report(&view, "b")[0].state, State::Ungoverned, "stock: full/off");
        let planned = effective_document(&json!({"file": after, "resolvedDefaults": answer["resolvedDefaults"]}));
        let view = View { exec: &planned, ..view };
        assert_eq!(report(&view, "b")[0].state, State::Governed);
        assert!(report(&view, "a")[0].why.contains("1 allowlisted"));
        let down = View { approver: Some(false), ..view };
        assert_eq!(report(&down, "b")[0].state, State::Ungoverned);
    }
}

//! The semantic diff: every changed JSON path of an agent's config slice, grouped by meaning
//! and given a risk class (the decision vocabulary's [`Risk`]). Pure; the table is in [`group_of`] and [`risk_of`] and its unit
//! tests are the specification (`docs/config-safety.md` renders it for people).
//!
//! Paths are OpenClaw's own config paths (`agents.entries.main.tools.deny`), except the
//! agent's exec-approvals entry, which lives in `exec.approvals.get`'s document and is shown
//! under [`super::scope::EXEC_KEY`].

use serde::Serialize;
use serde_json::Value;

pub use decision::Risk;

use super::files::{FILES_KEY, SELF_WRITTEN};
use super::scope::EXEC_KEY;
use crate::kill::diff;

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Identity,
    Model,
    ToolsAndPermissions,
    Skills,
    ChannelsAndBindings,
    Mcp,
    Plugins,
    Cron,
    WorkspaceFiles,
    Other,
}

/// One changed path, classified.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SemanticChange {
    /// Dotted config path.
    pub path: String,
    pub group: Group,
    pub risk: Risk,
    /// Why this risk, in words.
    pub why: &'static str,
    /// None = absent.
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The placeholder the gateway shows instead of secrets.
pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Every changed path from `a` to `b`, classified (OpenClaw's `meta` bookkeeping left out).
pub fn semantic_diff(a: &Value, b: &Value) -> Vec<SemanticChange> {
    diff(a, b)
        .into_iter()
        .filter(|c| c.path.first().map(String::as_str) != Some("meta"))
        .map(|c| {
            let p: Vec<&str> = c.path.iter().map(String::as_str).collect();
            let (risk, why) = risk_of(&p, c.before.as_ref(), c.after.as_ref());
            SemanticChange { path: c.path.join("."), group: group_of(&p), risk, why, before: c.before, after: c.after }
        })
        .collect()
}

/// The worst risk among `changes` (None when there are none).
pub fn max_risk(changes: &[SemanticChange]) -> Option<Risk> {
    changes.iter().map(|c| c.risk).max()
}

/// The part of a path below an agent entry (`agents.entries.<id>.`) or `agents.defaults.`.
fn agent_rest<'a>(p: &'a [&'a str]) -> Option<&'a [&'a str]> {
    match p {
        ["agents", "entries", _, rest @ ..] => Some(rest),
        ["agents", "defaults", rest @ ..] => Some(rest),
        _ => None,
    }
}

/// What a path is about.
pub fn group_of(p: &[&str]) -> Group {
    if let Some(rest) = agent_rest(p) {
        return match rest {
            [] => Group::Identity,
            ["name" | "description" | "identity" | "emoji" | "avatar" | "default", ..] => Group::Identity,
            ["workspace" | "cwd" | "agentDir" | "skipBootstrap", ..] => Group::WorkspaceFiles,
            ["heartbeat" | "subagents", "model", ..] => Group::Model,
            ["model" | "utilityModel" | "decisionModel" | "models" | "modelPolicy" | "thinkingDefault"
            | "thinkingLevels" | "agentRuntime" | "imageModel" | "pdfModel", ..] => Group::Model,
            ["tools" | "sandbox" | "defaultPermissionMode" | "permissions" | "elevated", ..] => {
                Group::ToolsAndPermissions
            }
            ["skills", ..] => Group::Skills,
            ["heartbeat", ..] => Group::Cron,
            ["groupChat" | "channels", ..] => Group::ChannelsAndBindings,
            ["mcp", ..] => Group::Mcp,
            _ => Group::Other,
        };
    }
    match p.first().copied() {
        Some(k) if k == EXEC_KEY => Group::ToolsAndPermissions,
        Some(k) if k == FILES_KEY => Group::WorkspaceFiles,
        Some("tools" | "approvals" | "sandbox") => Group::ToolsAndPermissions,
        Some("models") => Group::Model,
        Some("bindings" | "channels") => Group::ChannelsAndBindings,
        Some("mcp") => Group::Mcp,
        Some("plugins") => Group::Plugins,
        Some("cron") => Group::Cron,
        Some("skills") => Group::Skills,
        _ => Group::Other,
    }
}

/// The sidecar providers (`cb-<agent>`) a model ref, a list of refs or a model object
/// (`{primary, fallbacks}`) names.
fn sidecar_providers(v: Option<&Value>, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Some(Value::String(s)) if s.starts_with("cb-") => {
            out.insert(s.split('/').next().unwrap_or(s).to_string());
        }
        Some(Value::Array(a)) => a.iter().for_each(|x| sidecar_providers(Some(x), out)),
        Some(Value::Object(o)) => o.values().for_each(|x| sidecar_providers(Some(x), out)),
        _ => {}
    }
}

/// Whether a model setting changes which sidecar providers it goes through: taking a model
/// off (or onto) the sidecar is wiring; another model on the same `cb-` provider is not
/// (the calls still pass the sidecar, so it is a plain model change).
fn moves_sidecar_provider(before: Option<&Value>, after: Option<&Value>) -> bool {
    let (mut b, mut a) = (Default::default(), Default::default());
    sidecar_providers(before, &mut b);
    sidecar_providers(after, &mut a);
    b != a
}

fn has_secret(v: Option<&Value>) -> bool {
    v.is_some_and(|v| v.to_string().contains(REDACTED))
}

pub(crate) fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    // Suffixes, so `maxTokens` is not a secret but `accessToken` is.
    ["apikey", "token", "secret", "password", "authorization", "privatekey", "credential", "credentials"]
        .iter()
        .any(|s| k.ends_with(s))
}

/// Whether the path is part of what wires the agent through ClawButler (`wiring.md`).
fn is_wiring(p: &[&str], before: Option<&Value>, after: Option<&Value>) -> bool {
    match p {
        // A sidecar provider's model list names what it serves, not where calls go.
        ["models", "providers", _, "models", ..] => false,
        ["models", "providers", name, ..] | ["mcp", "servers", name, ..] => name.starts_with("cb-"),
        ["plugins", "entries", "clawbutler", ..] | ["plugins", "load", "paths", ..] => true,
        ["secrets", "providers", name, ..] => name.starts_with("clawbutler"),
        _ => match agent_rest(p) {
            Some(["modelPolicy", ..]) => true,
            Some(["model" | "utilityModel" | "decisionModel", ..] | ["heartbeat" | "subagents", "model", ..]) => {
                moves_sidecar_provider(before, after)
            }
            _ => false,
        },
    }
}

/// The risk of a change at `p` and why: the path's own rule, or, when a whole object is added,
/// removed or replaced there (a new provider, an MCP section, an agent entry), the worst of
/// what changed inside it. So an import or rollback that brings in a provider with its
/// `baseUrl`, or an agent with a tool policy, is as critical as setting that field alone.
pub fn risk_of(p: &[&str], before: Option<&Value>, after: Option<&Value>) -> (Risk, &'static str) {
    let own = rule_of(p, before, after);
    let (b, a) = (before.and_then(Value::as_object), after.and_then(Value::as_object));
    if own.0 == Risk::Critical || (b.is_none() && a.is_none()) {
        return own;
    }
    let keys: std::collections::BTreeSet<&String> =
        b.into_iter().flat_map(|o| o.keys()).chain(a.into_iter().flat_map(|o| o.keys())).collect();
    let mut worst = own;
    for k in keys {
        let (bk, ak) = (b.and_then(|o| o.get(k)), a.and_then(|o| o.get(k)));
        if bk == ak {
            continue;
        }
        let mut q = p.to_vec();
        q.push(k.as_str());
        let inner = risk_of(&q, bk, ak);
        if inner.0 > worst.0 {
            worst = inner;
        }
    }
    worst
}

/// The rule for the path itself; the first rule that matches wins.
fn rule_of(p: &[&str], before: Option<&Value>, after: Option<&Value>) -> (Risk, &'static str) {
    use Risk::*;
    if is_wiring(p, before, after) {
        return (Critical, "ClawButler wiring (the agent's path through the sidecar)");
    }
    if p.first() == Some(&EXEC_KEY) {
        return (Critical, "exec approvals policy");
    }
    if p.first() == Some(&FILES_KEY) {
        // File names hold dots: the name is the rest of the path.
        return match p[1..].join(".").as_str() {
            SELF_WRITTEN => (Low, "the agent's own memory"),
            "IDENTITY.md" | "USER.md" => (Medium, "who the agent is and whom it serves"),
            _ => (High, "the agent's standing instructions"),
        };
    }
    if has_secret(before) || has_secret(after) || p.iter().any(|k| secret_key(k)) {
        return (Critical, "secret or credential");
    }
    if matches!(p.first(), Some(&"secrets")) || matches!(p, ["gateway", "auth", ..]) || p.contains(&"auth") {
        return (Critical, "secrets or authentication");
    }
    match p {
        ["models", "providers", _, "baseUrl" | "api" | "headers" | "request" | "proxy", ..] => {
            return (Critical, "provider endpoint")
        }
        ["mcp", "servers", _, "url" | "command" | "args" | "env" | "headers" | "transport" | "cwd", ..] => {
            return (Critical, "MCP server endpoint")
        }
        _ => {}
    }
    match group_of(p) {
        Group::ToolsAndPermissions => (Critical, "tool policy, permissions, exec or sandbox"),
        Group::Model | Group::Mcp | Group::Plugins | Group::ChannelsAndBindings | Group::WorkspaceFiles => {
            (High, "changes what the agent can reach or which model answers")
        }
        Group::Skills | Group::Cron => (Medium, "changes what the agent does on its own"),
        Group::Identity | Group::Other => (Low, "presentation or bookkeeping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(path: &str, before: Value, after: Value) -> (Group, Risk) {
        let p: Vec<&str> = path.split('.').collect();
        let b = (!before.is_null()).then_some(&before);
        let a = (!after.is_null()).then_some(&after);
        (group_of(&p), risk_of(&p, b, a).0)
    }

    #[test]
    fn the_classification_table() {
        use Group::*;
        use Risk::*;
        let n = Value::Null;
        let rows: Vec<(&str, Value, Value, Group, Risk)> = vec![
            ("agents.entries.main.name", json!("a"), json!("b"), Identity, Low),
            ("agents.entries.main.identity.emoji", json!("a"), json!("b"), Identity, Low),
            ("agents.entries.main.workspace", json!("/a"), json!("/b"), WorkspaceFiles, High),
            ("agents.entries.main.model", json!("openai/a"), json!("openai/b"), Model, High),
            ("agents.entries.main.model", json!("cb-main/a"), json!("openai/a"), Model, Critical),
            ("agents.entries.main.model.primary", json!("cb-main/a"), n.clone(), Model, Critical),
            ("agents.entries.main.model", json!("openai/a"), json!("cb-main/a"), Model, Critical),
            // Another model on the same sidecar provider: still wired, a plain model change.
            ("agents.entries.main.model", json!("cb-main/a"), json!("cb-main/b"), Model, High),
            (
                "agents.entries.main.model.fallbacks",
                json!(["cb-main/a"]),
                json!(["cb-main/a", "cb-main/b"]),
                Model,
                High,
            ),
            ("agents.entries.main.model", json!("cb-main/a"), json!("cb-ops/a"), Model, Critical),
            ("models.providers.cb-main.models", json!([{"id": "a"}]), json!([{"id": "a"}, {"id": "b"}]), Model, High),
            ("models.providers.cb-main.baseUrl", json!("http://a"), json!("http://b"), Model, Critical),
            ("agents.entries.main.modelPolicy.allow", json!(["cb-main/*"]), n.clone(), Model, Critical),
            ("agents.entries.main.thinkingDefault", json!("low"), json!("high"), Model, High),
            ("agents.entries.main.tools.deny", json!(["exec"]), json!([]), ToolsAndPermissions, Critical),
            ("agents.entries.main.tools.exec.mode", json!("ask"), json!("full"), ToolsAndPermissions, Critical),
            ("agents.entries.main.sandbox.mode", json!("all"), json!("off"), ToolsAndPermissions, Critical),
            ("agents.entries.main.skills", json!(["a"]), json!(["a", "b"]), Skills, Medium),
            ("agents.entries.main.heartbeat.every", json!("30m"), json!("5m"), Cron, Medium),
            ("agents.entries.main.heartbeat.model", json!("openai/a"), json!("openai/b"), Model, High),
            ("agents.entries.main.groupChat.mentionPatterns", json!(["a"]), json!(["b"]), ChannelsAndBindings, High),
            ("agents.entries.main.somethingNew", json!(1), json!(2), Other, Low),
            ("agents.entries.main.params.maxTokens", json!(1), json!(2), Other, Low),
            ("channels.slack.botToken", json!(REDACTED), json!("x"), ChannelsAndBindings, Critical),
            ("bindings", json!([]), json!([{"agentId": "main"}]), ChannelsAndBindings, High),
            ("models.providers.direct.baseUrl", json!("http://a"), json!("http://b"), Model, Critical),
            ("models.providers.direct.apiKey", json!(REDACTED), json!("sk-x"), Model, Critical),
            ("models.providers.direct.models", json!([]), json!([{"id": "m"}]), Model, High),
            ("models.providers.cb-main", json!({"baseUrl": "x"}), n.clone(), Model, Critical),
            ("mcp.servers.cb-main", json!({"url": "x"}), n.clone(), Mcp, Critical),
            ("mcp.servers.docs.url", json!("http://a"), json!("http://b"), Mcp, Critical),
            ("mcp.servers.docs.enabled", json!(true), json!(false), Mcp, High),
            ("plugins.entries.clawbutler.enabled", json!(true), json!(false), Plugins, Critical),
            ("plugins.load.paths", json!(["/x"]), json!([]), Plugins, Critical),
            ("plugins.deny", json!([]), json!(["openai"]), Plugins, High),
            ("$exec_approvals.ask", json!("on-miss"), json!("off"), ToolsAndPermissions, Critical),
            ("secrets.providers.vault.url", json!("a"), json!("b"), Other, Critical),
            ("gateway.auth.token", json!(REDACTED), json!(REDACTED), Other, Critical),
            ("channels.telegram.enabled", json!(true), json!(false), ChannelsAndBindings, High),
            ("cron.enabled", json!(true), json!(false), Cron, Medium),
            ("agents.defaults.model", json!("openai/a"), json!("openai/b"), Model, High),
            ("$workspace_files.SOUL.md", json!("calm"), json!("reckless"), WorkspaceFiles, High),
            ("$workspace_files.AGENTS.md", n.clone(), json!("x"), WorkspaceFiles, High),
            ("$workspace_files.USER.md", json!("a"), json!("b"), WorkspaceFiles, Medium),
            ("$workspace_files.MEMORY.md", json!("a"), json!("b"), WorkspaceFiles, Low),
            // A whole object added or removed counts as the worst change inside it.
            ("models.providers.direct", n.clone(), json!({"baseUrl": "http://x", "models": []}), Model, Critical),
            ("models.providers.direct", json!({"models": []}), json!({"models": [{"id": "m"}]}), Model, High),
            ("agents.entries.ops", n.clone(), json!({"name": "ops", "tools": {"allow": ["exec"]}}), Identity, Critical),
            ("agents.entries.ops", n.clone(), json!({"name": "ops"}), Identity, Low),
            ("mcp", n.clone(), json!({"servers": {"docs": {"url": "http://x"}}}), Mcp, Critical),
            (
                "agents.entries.ops",
                json!({"name": "a", "skills": ["x"]}),
                json!({"name": "a", "skills": ["x", "y"]}),
                Identity,
                Medium,
            ),
        ];
        for (path, b, a, g, r) in rows {
            assert_eq!(class(path, b.clone(), a.clone()), (g, r), "{path}: {b} -> {a}");
        }
    }

    #[test]
    fn a_diff_names_each_path_with_its_class_and_leaves_meta_out() {
        let a = json!({"meta": {"lastTouchedAt": 1}, "agents": {"entries": {"main": {"name": "M", "tools": {"deny": ["exec"]}}}}});
        let b = json!({"meta": {"lastTouchedAt": 2}, "agents": {"entries": {"main": {"name": "N", "tools": {}}}}});
        let d = semantic_diff(&a, &b);
        let got: Vec<(&str, Group, Risk)> = d.iter().map(|c| (c.path.as_str(), c.group, c.risk)).collect();
        assert_eq!(
            got,
            vec![
                ("agents.entries.main.name", Group::Identity, Risk::Low),
                ("agents.entries.main.tools.deny", Group::ToolsAndPermissions, Risk::Critical),
            ]
        );
        assert_eq!(max_risk(&d), Some(Risk::Critical));
        assert_eq!(max_risk(&[]), None);
        assert_eq!(d[1].before, Some(json!(["exec"])));
        assert_eq!(d[1].after, None);
    }
}

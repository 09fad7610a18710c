//! Standing grants ("allow always"): an explicit, visible scope that later calls see as
//! `input.grants`, so `grants.rego` turns their hold into an allow. A grant never overrides a
//! deny. Every grant states its breadth (`exact`, `pattern`, `any`) and a sentence saying
//! what it lets through, so a narrow and a broad grant never look alike.

use std::sync::Arc;

use arc_swap::ArcSwap;
use decision::{CallKind, GrantInput};
use serde::{Deserialize, Serialize};

use super::model::now_rfc3339;
use super::pattern::{self, Reach};
use super::BrokerError;

/// How much a grant lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Breadth {
    /// One exact command / tool call / model.
    Exact,
    /// Everything a glob matches (or a tool with any arguments).
    Pattern,
    /// Everything of this kind for this agent.
    Any,
}

/// What a grant covers. `breadth` and `description` are derived from the other fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantScope {
    pub agent: String,
    pub kind: CallKind,
    /// Model name, command line or tool name; exact, or a glob (`*`, `?`, `[...]`).
    pub pattern: String,
    /// Optional glob over the arguments (exec: argv after the program; tools: args as
    /// compact JSON with sorted keys). None = any arguments.
    #[serde(default)]
    pub arg_pattern: Option<String>,
    /// RFC 3339 UTC; None = until revoked.
    #[serde(default)]
    pub expires_at: Option<String>,
    pub breadth: Breadth,
    /// One sentence: what this grant lets through, for whom, until when.
    pub description: String,
}

/// A scope as a decider or API caller gives it (agent and kind come from the approval, or
/// are required when creating a grant directly).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeInput {
    #[serde(default)]
    pub agent: Option<String>,
    #[serde(default)]
    pub kind: Option<CallKind>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub arg_pattern: Option<String>,
    /// RFC 3339 expiry.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// Expiry relative to now, in seconds (alternative to `expires_at`).
    #[serde(default)]
    pub expires_in_s: Option<u64>,
    /// Must be true for a grant of breadth `any` (everything of a kind for an agent).
    #[serde(default)]
    pub confirm_any: bool,
}

/// A stored grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// UUID v7.
    pub id: String,
    #[serde(flatten)]
    pub scope: GrantScope,
    pub created_at: String,
    /// Token name of whoever created it.
    pub created_by: String,
    /// The approval whose `allow-always` created it, if any.
    pub approval_id: Option<String>,
    /// Fleet mode only: the sidecar whose API created it (a fleet grant applies on every
    /// sidecar). Absent on a sidecar's own grants, so without `[fleet]` nothing changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<String>,
}

impl Grant {
    /// The grant as policy input.
    pub fn to_input(&self) -> GrantInput {
        GrantInput {
            id: self.id.clone(),
            agent: self.scope.agent.clone(),
            kind: self.scope.kind,
            pattern: self.scope.pattern.clone(),
            arg_pattern: self.scope.arg_pattern.clone(),
            expires_at: self.scope.expires_at.clone(),
        }
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.scope
            .expires_at
            .as_deref()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
            .is_some_and(|e| e <= now)
    }
}

/// A fresh grant id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether an argument pattern lets any arguments through.
fn args_unrestricted(a: Option<&str>) -> bool {
    a.is_none_or(|a| matches!(pattern::reach(CallKind::ToolCall, a), Reach::Unanchored))
}

impl GrantScope {
    /// A scope with breadth and description computed from what the pattern means
    /// (`pattern::reach`): no wildcard is `exact`; a pattern whose head (model or tool name
    /// prefix, or for exec the program) is written out is `pattern`; one that can match
    /// anything of its kind (a leading wildcard like `*`, `?*`, `[!x]*`; for exec also a
    /// wildcard in or before the program, a wrapper such as `sudo` or `bash` followed by a
    /// wildcard, or wildcards in a compound command) is `any`.
    pub fn new(
        agent: &str,
        kind: CallKind,
        pattern: &str,
        arg_pattern: Option<String>,
        expires_at: Option<String>,
    ) -> GrantScope {
        let reach = pattern::reach(kind, pattern);
        let args_any = args_unrestricted(arg_pattern.as_deref());
        // Model calls have no arguments and exec patterns see the whole command line, so
        // "any arguments" does not widen them.
        let args_matter = matches!(kind, CallKind::ToolCall | CallKind::Plugin);
        let arg_glob = arg_pattern.as_deref().is_some_and(|a| pattern::reach(kind, a) != Reach::Exact);
        let breadth = match reach {
            Reach::Unanchored | Reach::AnyProgram | Reach::Wrapper(_) | Reach::Compound => Breadth::Any,
            Reach::Pattern => Breadth::Pattern,
            Reach::Exact if arg_glob || (args_matter && args_any) => Breadth::Pattern,
            Reach::Exact => Breadth::Exact,
        };
        let shown = pattern::unescape_exact(pattern).unwrap_or_else(|| pattern.to_string());
        let what = match (kind, &reach) {
            (CallKind::ConfigRollback, _) => format!("roll back its config ({shown})"),
            (CallKind::ConfigImport, _) => format!("import a backup ({shown})"),
            (CallKind::ConfigChange, _) => format!("change its config ({shown})"),
            (CallKind::Exec, Reach::Unanchored) => format!("run any shell command (pattern '{pattern}')"),
            (CallKind::Exec, Reach::AnyProgram) => {
                format!("run any program: the pattern '{pattern}' does not fix which program runs")
            }
            (CallKind::Exec, Reach::Wrapper(w)) => format!("run any program through '{w}' (pattern '{pattern}')"),
            (CallKind::Exec, Reach::Compound) => {
                format!("run compound commands matching '{pattern}' (shell operators only where written)")
            }
            (CallKind::Exec, Reach::Exact) => format!("run exactly '{shown}'"),
            (CallKind::Exec, _) => {
                format!("run commands matching '{pattern}' (wildcards never cover shell operators)")
            }
            (_, Reach::Unanchored) => format!("make any {} call (pattern '{pattern}')", kind_noun(kind)),
            (CallKind::ModelCall, Reach::Exact) => format!("call model '{shown}'"),
            (CallKind::ModelCall, _) => format!("call models matching '{pattern}'"),
            (_, Reach::Exact) => format!("use tool '{shown}'"),
            (_, _) => format!("use tools matching '{pattern}'"),
        };
        let args = match (&arg_pattern, kind) {
            (_, CallKind::ModelCall) => String::new(),
            (_, _) if args_any => " with any arguments".to_string(),
            (Some(a), _) if arg_glob => format!(" with arguments matching '{a}'"),
            (Some(a), _) => {
                format!(" with exactly the arguments '{}'", pattern::unescape_exact(a).unwrap_or_else(|| a.clone()))
            }
            (None, _) => String::new(),
        };
        let until = match &expires_at {
            Some(e) => format!("until {e}"),
            None => "until revoked".to_string(),
        };
        let description = format!("Agent '{agent}' may {what}{args} without asking, {until}.");
        GrantScope {
            agent: agent.to_string(),
            kind,
            pattern: pattern.to_string(),
            arg_pattern,
            expires_at,
            breadth,
            description,
        }
    }

    /// Apply a caller's scope on top of this (suggested) one and validate it.
    pub fn with_input(&self, input: &ScopeInput) -> Result<GrantScope, BrokerError> {
        if input.agent.as_deref().is_some_and(|a| a != self.agent) || input.kind.is_some_and(|k| k != self.kind) {
            return Err(BrokerError::Invalid(
                "a grant from an approval is for the approval's agent and kind; create other grants via /api/v1/grants"
                    .into(),
            ));
        }
        let pattern = input.pattern.clone().unwrap_or_else(|| self.pattern.clone());
        // A new pattern without an arg_pattern means what it says: any arguments.
        let args = if input.pattern.is_some() || input.arg_pattern.is_some() {
            input.arg_pattern.clone()
        } else {
            self.arg_pattern.clone()
        };
        build(&self.agent, self.kind, &pattern, args, input)
    }
}

fn kind_noun(kind: CallKind) -> &'static str {
    match kind {
        CallKind::ModelCall => "model",
        CallKind::Exec => "shell command",
        CallKind::ToolCall => "tool",
        CallKind::Plugin => "plugin tool",
        CallKind::ConfigRollback => "config rollback",
        CallKind::ConfigImport => "backup import",
        CallKind::ConfigChange => "config change",
    }
}

/// Refuse a pattern `grants.rego` could not read (it would make every decision of the agent
/// a policy error), or could read two ways.
fn check_pattern(key: &str, kind: CallKind, p: &str) -> Result<(), BrokerError> {
    pattern::Matcher::new(p).map_err(|e| BrokerError::Invalid(format!("{key}: {e}")))?;
    if kind != CallKind::ModelCall && pattern::ambiguous_ops(p) {
        return Err(BrokerError::Invalid(format!(
            "{key} '{p}' mixes shell operators with [...] or {{...}}; write operators literally, outside classes and alternatives"
        )));
    }
    Ok(())
}

/// Why a config rollback is never granted (each critical rollback is its own decision).
pub const NO_ROLLBACK_GRANT: &str =
    "a config rollback or backup import cannot be allowed always: each critical one is \
     approved on its own (use allow-once)";

/// Validate and build a scope from explicit parts.
pub fn build(
    agent: &str,
    kind: CallKind,
    pattern: &str,
    arg_pattern: Option<String>,
    input: &ScopeInput,
) -> Result<GrantScope, BrokerError> {
    if agent.is_empty() || pattern.trim().is_empty() {
        return Err(BrokerError::Invalid("a grant needs an agent and a non-empty pattern".into()));
    }
    if kind.is_config_change() {
        return Err(BrokerError::Invalid(NO_ROLLBACK_GRANT.into()));
    }
    decision::agent_id::check(agent).map_err(|e| BrokerError::Invalid(e.to_string()))?;
    check_pattern("pattern", kind, pattern)?;
    if let Some(a) = &arg_pattern {
        check_pattern("arg_pattern", kind, a)?;
    }
    let expires_at = match (&input.expires_at, input.expires_in_s) {
        (Some(_), Some(_)) => return Err(BrokerError::Invalid("give expires_at or expires_in_s, not both".into())),
        (Some(e), None) => {
            let t = chrono::DateTime::parse_from_rfc3339(e)
                .map_err(|err| BrokerError::Invalid(format!("expires_at '{e}' is not RFC 3339: {err}")))?;
            if t <= chrono::Utc::now() {
                return Err(BrokerError::Invalid(format!("expires_at '{e}' is in the past")));
            }
            Some(t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        (None, Some(s)) => Some(
            (chrono::Utc::now() + chrono::Duration::seconds(s.min(10 * 365 * 86400) as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ),
        (None, None) => None,
    };
    let scope = GrantScope::new(agent, kind, pattern, arg_pattern, expires_at);
    if scope.breadth == Breadth::Any && !input.confirm_any {
        return Err(BrokerError::Invalid(format!(
            "this grant is of breadth 'any': {} Send \"confirm_any\": true if that is meant",
            scope.description
        )));
    }
    Ok(scope)
}

/// Grants in the `grants` tree, with an in-memory copy for the data path.
pub struct GrantStore {
    tree: sled::Tree,
    cache: ArcSwap<Vec<Grant>>,
}

impl GrantStore {
    /// Open the tree and load every grant.
    pub fn open(store: &storage::Store) -> Result<GrantStore, BrokerError> {
        let tree = store.tree(storage::Tree::Grants)?;
        let store = GrantStore { tree, cache: ArcSwap::from_pointee(Vec::new()) };
        store.refresh()?;
        Ok(store)
    }

    fn refresh(&self) -> Result<(), BrokerError> {
        let mut all = Vec::new();
        for kv in self.tree.iter() {
            let (_, v) = kv?;
            all.push(serde_json::from_slice::<Grant>(&v)?);
        }
        self.cache.store(Arc::new(all));
        Ok(())
    }

    /// Store a new grant under `id` (a UUID v7 from [`new_id`]).
    pub fn insert(
        &self,
        id: String,
        scope: GrantScope,
        actor: &str,
        approval_id: Option<&str>,
    ) -> Result<Grant, BrokerError> {
        let g = Grant {
            id,
            scope,
            created_at: now_rfc3339(),
            created_by: actor.to_string(),
            approval_id: approval_id.map(str::to_string),
            sidecar: None,
        };
        self.tree.insert(g.id.as_bytes(), serde_json::to_vec(&g)?)?;
        self.refresh()?;
        Ok(g)
    }

    /// Put back a grant exactly as it was (a revocation that could not be recorded).
    pub fn restore(&self, g: &Grant) -> Result<(), BrokerError> {
        self.tree.insert(g.id.as_bytes(), serde_json::to_vec(g)?)?;
        self.refresh()
    }

    /// Wait until the grants are on disk (a grant change is durable before it is answered).
    pub async fn flush(&self) -> Result<(), BrokerError> {
        let tree = self.tree.clone();
        match tokio::task::spawn_blocking(move || tree.flush()).await {
            Ok(r) => r.map(|_| ()).map_err(BrokerError::from),
            Err(e) => Err(BrokerError::Invalid(format!("flush task failed: {e}"))),
        }
    }

    /// Remove a grant; returns it if it existed.
    pub fn remove(&self, id: &str) -> Result<Option<Grant>, BrokerError> {
        let old = self.tree.remove(id.as_bytes())?;
        self.refresh()?;
        Ok(match old {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    /// Every grant (expired ones included, so they can be seen and removed), oldest first.
    pub fn all(&self) -> Arc<Vec<Grant>> {
        self.cache.load_full()
    }

    /// One grant.
    pub fn get(&self, id: &str) -> Option<Grant> {
        self.cache.load().iter().find(|g| g.id == id).cloned()
    }

    /// Live grants of `agent`, as policy input (the hot path: no I/O).
    pub fn inputs_for(&self, agent: &str) -> Vec<GrantInput> {
        let all = self.cache.load();
        if all.is_empty() {
            return Vec::new();
        }
        let now = chrono::Utc::now();
        all.iter().filter(|g| g.scope.agent == agent && !g.expired(now)).map(Grant::to_input).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breadth_tells_narrow_from_broad() {
        let exact = GrantScope::new("main", CallKind::Exec, "git status", None, None);
        assert_eq!(exact.breadth, Breadth::Exact);
        assert!(exact.description.contains("run exactly 'git status'"), "{}", exact.description);
        let pat = GrantScope::new("main", CallKind::Exec, "git *", None, None);
        assert_eq!(pat.breadth, Breadth::Pattern);
        let tool_any_args = GrantScope::new("main", CallKind::ToolCall, "send_email", None, None);
        assert_eq!(tool_any_args.breadth, Breadth::Pattern);
        assert!(tool_any_args.description.contains("with any arguments"));
        let tool_exact = GrantScope::new("main", CallKind::ToolCall, "send_email", Some("{\"to\":\"a\"}".into()), None);
        assert_eq!(tool_exact.breadth, Breadth::Exact);
        let any = GrantScope::new("main", CallKind::Exec, "*", None, None);
        assert_eq!(any.breadth, Breadth::Any);
    }

    #[test]
    fn patterns_that_match_everything_are_any_and_need_confirmation() {
        let base = GrantScope::new("main", CallKind::Exec, "rm -rf build", None, None);
        for p in ["*", "?*", "**", "[!x]*", "?**", "*?", "[a-z]*", "sudo *", "bash -c *", "git*", "A=* make"] {
            let s = GrantScope::new("main", CallKind::Exec, p, None, None);
            assert_eq!(s.breadth, Breadth::Any, "{p}: {}", s.description);
            let wide = ScopeInput { pattern: Some(p.into()), ..ScopeInput::default() };
            let e = base.with_input(&wide).unwrap_err().to_string();
            assert!(e.contains("confirm_any"), "{p}: {e}");
            assert!(base.with_input(&ScopeInput { confirm_any: true, ..wide }).is_ok(), "{p}");
        }
        for p in ["?*", "[!x]*", "**"] {
            assert_eq!(GrantScope::new("main", CallKind::ModelCall, p, None, None).breadth, Breadth::Any, "{p}");
            assert_eq!(GrantScope::new("main", CallKind::ToolCall, p, None, None).breadth, Breadth::Any, "{p}");
        }
        let s = GrantScope::new("main", CallKind::Exec, "sudo systemctl status nginx*", None, None);
        assert!(s.description.contains("through 'sudo'"), "{}", s.description);
    }

    #[test]
    fn a_suggested_literal_is_exact_and_described_as_typed() {
        let held = "sudo systemctl status nginx*";
        let s = GrantScope::new("main", CallKind::Exec, &pattern::literal(held), None, None);
        assert_eq!(s.breadth, Breadth::Exact);
        assert!(s.description.contains("run exactly 'sudo systemctl status nginx*'"), "{}", s.description);
    }

    #[test]
    fn a_config_rollback_is_never_granted() {
        let s = GrantScope::new("main", CallKind::ConfigRollback, "to version 2", None, None);
        let e = s.with_input(&ScopeInput::default()).map(|_| ()).unwrap_err();
        assert_eq!(e.to_string(), NO_ROLLBACK_GRANT);
        let direct = ScopeInput {
            agent: Some("main".into()),
            kind: Some(CallKind::ConfigRollback),
            pattern: Some("*".into()),
            confirm_any: true,
            ..ScopeInput::default()
        };
        assert!(build("main", CallKind::ConfigRollback, "*", None, &direct).is_err());
        assert!(build("main", CallKind::ConfigImport, "*", None, &direct).is_err(), "nor a backup import");
    }

    #[test]
    fn unreadable_or_ambiguous_patterns_are_refused() {
        let base = GrantScope::new("main", CallKind::Exec, "ls", None, None);
        for p in ["ls [", "ls [;&]*", "ls {a,;}*"] {
            let e = base.with_input(&ScopeInput { pattern: Some(p.into()), ..ScopeInput::default() });
            assert!(e.is_err(), "{p}");
        }
        let bad_agent = ScopeInput {
            agent: Some("MAIN".into()),
            kind: Some(CallKind::Exec),
            pattern: Some("ls".into()),
            ..ScopeInput::default()
        };
        assert!(build("MAIN", CallKind::Exec, "ls", None, &bad_agent).is_err());
    }

    #[test]
    fn any_needs_confirmation_and_past_expiry_is_refused() {
        let base = GrantScope::new("main", CallKind::Exec, "rm -rf build", None, None);
        let wide = ScopeInput { pattern: Some("*".into()), ..ScopeInput::default() };
        assert!(base.with_input(&wide).is_err());
        assert!(base.with_input(&ScopeInput { confirm_any: true, ..wide }).is_ok());
        let past = ScopeInput { expires_at: Some("2000-01-01T00:00:00Z".into()), ..ScopeInput::default() };
        assert!(base.with_input(&past).is_err());
        let other_agent = ScopeInput { agent: Some("x".into()), ..ScopeInput::default() };
        assert!(base.with_input(&other_agent).is_err());
    }
}

//! The models section: every way an agent gets a model, and whether each goes through the
//! sidecar (facts from `openclaw-interception.md` §1.2 and §1.7, OpenClaw 2026.9.6).
//!
//! An agent's model slots ([`slots`]): its `model` (its own, else `agents.defaults.model`,
//! else OpenClaw's built-in default), every fallback, and the per-agent auxiliary slots
//! (`utilityModel`, `decisionModel`, and `subagents.model`, `heartbeat.model`,
//! `tools.exec.reviewer.model` where the agent sets them). `utilityModel` left unset means
//! the primary provider's declared small model (OpenAI: `gpt-5.6-luna`, Anthropic:
//! `claude-haiku-4-5`), a separate call to that vendor, so it is a slot too. Memory
//! embeddings are in `memory.rs`. Slots only `agents.defaults` can set (image, PDF, media,
//! compaction, ...) are shared by every agent and reported gateway-wide ([`gateway_report`]).

use serde_json::{json, Value};

use super::catalog::{self, Bundled};
use super::memory;
use super::report::{PathStatus, State, View};
use super::UpstreamKind;

/// OpenClaw's model when nothing is configured (`DEFAULT_PROVIDER/DEFAULT_MODEL`).
pub const OPENCLAW_DEFAULT_MODEL: &str = "openai/gpt-6-astra";

/// Where a slot's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `agents.entries.<id>.<key>`.
    Entry,
    /// Inherited from `agents.defaults.<key>`.
    Defaults,
    /// Not configured: OpenClaw's own choice.
    Implicit,
}

/// One model slot of an agent.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Its key under `agents.entries.<id>` (dotted).
    pub key: &'static str,
    /// A string ref or `{primary, fallbacks, ...}`.
    pub value: Value,
    pub origin: Origin,
}

impl Slot {
    /// Its refs, primary first.
    pub fn refs(&self) -> Vec<String> {
        match &self.value {
            Value::String(s) if !s.trim().is_empty() => vec![s.trim().to_string()],
            Value::Object(o) => {
                let mut v: Vec<String> =
                    o.get("primary").and_then(Value::as_str).map(str::to_string).into_iter().collect();
                v.extend(
                    o.get("fallbacks")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_string),
                );
                v
            }
            _ => Vec::new(),
        }
    }

    /// The report label of ref `i`.
    pub fn label(&self, i: usize) -> String {
        match (self.key, i) {
            ("model", 0) => "model".into(),
            ("model", n) => format!("fallback {n}"),
            (k, 0) => k.into(),
            (k, n) => format!("{k} fallback {n}"),
        }
    }

    /// Whether attach may write this slot at `agents.entries.<id>.<key>`: always for the
    /// agent's own values and for the plain string keys; nested keys (`heartbeat.model`, ...)
    /// are never created on an agent, because their parent's presence changes behaviour
    /// (a per-agent `heartbeat` block decides which agents get heartbeats).
    pub fn writable(&self) -> bool {
        self.origin == Origin::Entry || !self.key.contains('.')
    }
}

fn at<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k)).filter(|v| !v.is_null())
}

/// The agent's entry (`agents.entries.<id>`), or null.
pub fn entry<'a>(config: &'a Value, id: &str) -> &'a Value {
    config.pointer("/agents/entries").and_then(|e| e.get(id)).unwrap_or(&Value::Null)
}

/// The agent's model slots (see the module docs).
pub fn slots(config: &Value, id: &str) -> Vec<Slot> {
    let entry = entry(config, id);
    let defaults = config.pointer("/agents/defaults").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    for key in
        ["model", "utilityModel", "decisionModel", "subagents.model", "heartbeat.model", "tools.exec.reviewer.model"]
    {
        let (value, origin) = match (at(entry, key), at(defaults, key)) {
            (Some(v), _) => (v.clone(), Origin::Entry),
            (None, Some(v)) => (v.clone(), Origin::Defaults),
            (None, None) if key == "model" => (json!(OPENCLAW_DEFAULT_MODEL), Origin::Implicit),
            (None, None) => continue,
        };
        out.push(Slot { key, value, origin });
    }
    // Unset utilityModel: the primary provider's declared small model, when it has one.
    if !out.iter().any(|s| s.key == "utilityModel") {
        let primary = out.first().and_then(|s| s.refs().into_iter().next()).unwrap_or_default();
        if let Some((p, _)) = resolve_ref(config, id, &primary) {
            if let Some(small) = catalog::lookup(&p).and_then(|b| b.utility_model.clone()) {
                out.push(Slot { key: "utilityModel", value: json!(format!("{p}/{small}")), origin: Origin::Implicit });
            }
        }
    }
    out
}

/// `provider/model` of a ref: explicit, an alias of `agents.*.models`, a model id unique to
/// one configured provider, else OpenClaw's default provider (its resolution order).
pub fn resolve_ref(config: &Value, id: &str, r: &str) -> Option<(String, String)> {
    let r = r.trim();
    if r.is_empty() {
        return None;
    }
    if let Some((p, m)) = r.split_once('/') {
        return Some((p.to_string(), m.to_string()));
    }
    for models in [entry(config, id).get("models"), config.pointer("/agents/defaults/models")].into_iter().flatten() {
        for (key, v) in models.as_object().into_iter().flatten() {
            if v.get("alias").and_then(Value::as_str) == Some(r) {
                if let Some((p, m)) = key.split_once('/') {
                    return Some((p.to_string(), m.to_string()));
                }
            }
        }
    }
    let owners: Vec<&String> = config
        .pointer("/models/providers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, p)| p["models"].as_array().is_some_and(|ms| ms.iter().any(|m| m["id"] == r)))
        .map(|(k, _)| k)
        .collect();
    match owners.as_slice() {
        [one] => Some(((*one).clone(), r.to_string())),
        _ => Some(("openai".into(), r.to_string())),
    }
}

/// What a provider id stands for, seen from the sidecar.
pub enum Target<'a> {
    /// A provider whose `baseUrl` is the sidecar's path for `agent`.
    Sidecar { agent: String },
    /// A `models.providers` entry the sidecar can stand in for.
    Custom { provider: &'a Value, kind: UpstreamKind, base: String },
    /// One of OpenClaw's bundled providers (with its `models.providers` override, if any).
    Builtin { bundled: &'static Bundled, over: Option<&'a Value>, base: String },
    /// Cannot go through the sidecar: why.
    NotWireable(String),
}

/// The agent of a sidecar URL `http://<sidecar>/a/<agent>/...`.
pub fn sidecar_agent(url: &str, sidecar: &str) -> Option<String> {
    let rest = url.strip_prefix(&format!("http://{sidecar}/a/"))?;
    rest.split('/').next().filter(|a| !a.is_empty()).map(str::to_string)
}

/// Classify provider `p` (see [`Target`]).
pub fn classify<'a>(config: &'a Value, sidecar: &str, p: &str) -> Target<'a> {
    let over = config.pointer("/models/providers").and_then(|ps| ps.get(p)).filter(|v| v.is_object());
    let base = over.and_then(|o| o.get("baseUrl")).and_then(Value::as_str);
    if let Some(agent) = base.and_then(|b| sidecar_agent(b, sidecar)) {
        return Target::Sidecar { agent };
    }
    let bundled = catalog::lookup(p);
    if let Some(b) = bundled.filter(|b| b.kind().is_some()) {
        let base = base.or(b.base_url.as_deref()).unwrap_or_default().to_string();
        return Target::Builtin { bundled: b, over, base };
    }
    if let (Some(o), Some(base)) = (over, base) {
        let api = o.get("api").and_then(Value::as_str).unwrap_or("openai-completions");
        return match UpstreamKind::for_api(api) {
            Some(kind) => Target::Custom { provider: o, kind, base: base.to_string() },
            None => Target::NotWireable(format!(
                "provider '{p}' speaks '{api}'; the sidecar proxies the OpenAI and Anthropic APIs only"
            )),
        };
    }
    match bundled.and_then(|b| b.not_wireable.clone()) {
        Some(why) => Target::NotWireable(format!("provider '{p}' {why}")),
        None => Target::NotWireable(format!(
            "provider '{p}' is neither in models.providers nor one of OpenClaw {}'s bundled providers",
            catalog::openclaw_version()
        )),
    }
}

/// The state and why of one ref of agent `id`.
pub fn judge(config: &Value, sidecar: &str, id: &str, r: &str) -> (State, String) {
    let Some((p, _)) = resolve_ref(config, id, r) else {
        return (State::Off, "empty".into());
    };
    match classify(config, sidecar, &p) {
        Target::Sidecar { agent } if agent == id => (State::Governed, format!("through the sidecar as agent {id}")),
        Target::Sidecar { agent } => (
            State::Ungoverned,
            format!("through the sidecar but as agent {agent}: its calls count against {agent}'s policy and budget"),
        ),
        Target::Builtin { base, .. } | Target::Custom { base, .. } => (
            State::Ungoverned,
            format!("goes straight to {base} with the gateway's own key (run `clawbutler attach` to route it)"),
        ),
        Target::NotWireable(why) => (State::Ungoverned, format!("{why}; it stays outside ClawButler")),
    }
}

/// The models section of agent `id`.
pub fn report(view: &View<'_>, id: &str) -> Vec<PathStatus> {
    let mut out = Vec::new();
    let slots = slots(view.config, id);
    for s in &slots {
        let refs = s.refs();
        if refs.is_empty() {
            out.push(PathStatus::new(s.label(0), None, State::Off, "set to empty: not used"));
        }
        for (i, r) in refs.iter().enumerate() {
            let (state, mut why) = judge(view.config, view.sidecar, id, r);
            match s.origin {
                Origin::Defaults => why.push_str(" (inherited from agents.defaults)"),
                Origin::Implicit if s.key == "utilityModel" => why.push_str(" (OpenClaw's default small model)"),
                Origin::Implicit => why.push_str(" (OpenClaw's default model)"),
                Origin::Entry => {}
            }
            if state == State::Ungoverned && !s.writable() {
                why.push_str(&format!(
                    "; set agents.entries.{id}.{} to a sidecar provider yourself (attach does not create it)",
                    s.key
                ));
            }
            out.push(PathStatus::new(s.label(i), Some(r.clone()), state, why));
        }
    }
    if !slots.iter().any(|s| s.key == "utilityModel") {
        out.push(PathStatus::new("utilityModel", None, State::Off, "unset: utility tasks use the agent's model"));
    }
    out.push(memory::report(view, id));
    out
}

/// Slots only `agents.defaults` (or a global key) can set: shared by every agent, so no
/// agent-specific sidecar provider can serve them.
const SHARED: [&str; 12] = [
    "agents.defaults.imageModel",
    "agents.defaults.pdfModel",
    "agents.defaults.voiceModel",
    "agents.defaults.mediaModels.image",
    "agents.defaults.mediaModels.video",
    "agents.defaults.mediaModels.music",
    "agents.defaults.compaction.model",
    "agents.defaults.compaction.memoryFlush.model",
    "agents.defaults.embeddedAgent.cyberFailover.model",
    "agents.defaults.heartbeat.model",
    "agents.defaults.subagents.model",
    "tools.exec.reviewer.model",
];

/// Gateway-wide paths: shared model slots, the default model, the catalog refresh and the
/// bundled provider plugins (see `hardening.rs`).
pub fn gateway_report(view: &View<'_>) -> Vec<PathStatus> {
    let cfg = view.config;
    let mut out = Vec::new();
    let agent0 = view.agents.first().map(String::as_str).unwrap_or("main");
    for key in SHARED {
        let Some(v) = at(cfg, key) else { continue };
        let slot = Slot { key: "shared", value: v.clone(), origin: Origin::Defaults };
        for r in slot.refs() {
            let Some((p, _)) = resolve_ref(cfg, agent0, &r) else { continue };
            let (state, why) = match classify(cfg, view.sidecar, &p) {
                Target::Sidecar { agent } => {
                    (State::Governed, format!("through the sidecar, counted as agent {agent} whichever agent uses it"))
                }
                _ => (
                    State::Ungoverned,
                    "shared by every agent (OpenClaw has no per-agent setting for it), so attach cannot give it an \
                     agent's sidecar provider; unset it (the agent's own model, through the sidecar, then serves) \
                     or accept it outside ClawButler. Without the vendor key in the gateway it fails instead of \
                     bypassing"
                        .to_string(),
                ),
            };
            out.push(PathStatus::new(key, Some(r), state, why));
        }
    }
    for m in cfg.pointer("/tools/media/models").and_then(Value::as_array).into_iter().flatten() {
        let p = m.get("provider").and_then(Value::as_str).unwrap_or_default();
        let model = m.get("model").and_then(Value::as_str).unwrap_or_default();
        out.push(PathStatus::new(
            "tools.media.models",
            Some(format!("{p}/{model}")),
            State::Ungoverned,
            "media understanding calls its provider directly; ClawButler does not proxy it",
        ));
    }
    if let Some(p) = at(cfg, "tools.web.search.provider").and_then(Value::as_str) {
        out.push(PathStatus::new(
            "tools.web.search.provider",
            Some(p.to_string()),
            State::Ungoverned,
            "web search calls its provider directly; ClawButler does not proxy web search",
        ));
    }
    if let Some(d) = at(cfg, "agents.defaults.model") {
        let slot = Slot { key: "model", value: d.clone(), origin: Origin::Defaults };
        let r = slot.refs().into_iter().next().unwrap_or_default();
        let (state, why) = judge(cfg, view.sidecar, agent0, &r);
        let why = if state == State::Governed {
            why
        } else {
            "the default for agents without a model of their own; every listed agent has one, but an agent added \
             later inherits this and is reported ungoverned until attach runs again"
                .to_string()
        };
        let state = if state == State::Governed { state } else { State::Off };
        out.push(PathStatus::new("agents.defaults.model", Some(r), state, why));
    }
    out.extend(super::hardening::report(view));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_openclaw_resolution() {
        let cfg = json!({"agents": {"defaults": {"model": {"primary": "openai/gpt-5.4-mini", "fallbacks": ["anthropic/claude-sonnet-5"]},
                                                 "heartbeat": {"model": "openai/gpt-5.4-nano"}},
                                    "entries": {"own": {"model": "anthropic/claude-sonnet-5", "utilityModel": ""},
                                                "inh": {},
                                                "hb": {"heartbeat": {"model": "openai/gpt-5.4"}}}}});
        let own = slots(&cfg, "own");
        assert_eq!(own[0].refs(), vec!["anthropic/claude-sonnet-5".to_string()]);
        assert_eq!(own[0].origin, Origin::Entry);
        assert!(own.iter().any(|s| s.key == "utilityModel" && s.refs().is_empty()), "empty = utility routing off");
        let inh = slots(&cfg, "inh");
        assert_eq!(inh[0].origin, Origin::Defaults);
        assert_eq!(inh[0].label(1), "fallback 1");
        let utility = inh.iter().find(|s| s.key == "utilityModel").unwrap();
        assert_eq!((utility.origin, utility.refs()), (Origin::Implicit, vec!["openai/gpt-5.6-luna".to_string()]));
        let hb = inh.iter().find(|s| s.key == "heartbeat.model").unwrap();
        assert!(!hb.writable(), "no per-agent heartbeat block is created");
        assert!(slots(&cfg, "hb").iter().any(|s| s.key == "heartbeat.model" && s.writable()));
        let bare = json!({});
        assert_eq!(slots(&bare, "x")[0].refs(), vec![OPENCLAW_DEFAULT_MODEL.to_string()]);
    }

    #[test]
    fn refs_resolve_aliases_and_configured_ids() {
        let cfg = json!({"agents": {"defaults": {"models": {"anthropic/claude-sonnet-5": {"alias": "sonnet"}}}},
                         "models": {"providers": {"local": {"baseUrl": "http://127.0.0.1:9/v1", "models": [{"id": "qwen", "name": "q"}]}}}});
        assert_eq!(resolve_ref(&cfg, "a", "sonnet"), Some(("anthropic".into(), "claude-sonnet-5".into())));
        assert_eq!(resolve_ref(&cfg, "a", "qwen"), Some(("local".into(), "qwen".into())));
        assert_eq!(resolve_ref(&cfg, "a", "gpt-5.4"), Some(("openai".into(), "gpt-5.4".into())));
        assert_eq!(
            resolve_ref(&cfg, "a", "nvidia/qwen/qwen3.5"),
            Some(("nvidia".into(), "qwen/qwen3.5".into())),
            "model ids may contain '/'"
        );
    }

    #[test]
    fn providers_are_classified_with_reasons() {
        let side = "127.0.0.1:8787";
        let cfg = json!({"models": {"providers": {
            "cb-a": {"baseUrl": "http://127.0.0.1:8787/a/a/openai/v1"},
            "local": {"baseUrl": "http://127.0.0.1:9/v1"},
            "oll": {"baseUrl": "http://127.0.0.1:11434", "api": "ollama"},
            "openai": {"baseUrl": "https://proxy.example/v1"}}}});
        assert!(matches!(classify(&cfg, side, "cb-a"), Target::Sidecar { agent } if agent == "a"));
        assert!(matches!(classify(&cfg, side, "local"), Target::Custom { kind: UpstreamKind::Openai, .. }));
        assert!(matches!(classify(&cfg, side, "oll"), Target::NotWireable(w) if w.contains("'ollama'")));
        assert!(
            matches!(classify(&cfg, side, "openai"), Target::Builtin { base, .. } if base == "https://proxy.example/v1")
        );
        assert!(
            matches!(classify(&cfg, side, "anthropic"), Target::Builtin { base, .. } if base == "https://api.anthropic.com")
        );
        assert!(matches!(classify(&cfg, side, "google"), Target::NotWireable(w) if w.contains("Gemini")));
        assert!(matches!(classify(&cfg, side, "nope"), Target::NotWireable(w) if w.contains("neither")));
        assert_eq!(judge(&cfg, side, "b", "cb-a/m").0, State::Ungoverned, "another agent's provider");
        assert_eq!(judge(&cfg, side, "a", "cb-a/m").0, State::Governed);
    }
}

//! Planning the model rewiring: for every agent, every model slot (`models.rs`) whose
//! provider the sidecar can stand in for gets the agent's own sidecar provider, and memory
//! embeddings move to the sidecar (`memory.rs`).
//!
//! Sidecar providers are per agent and per source provider: `cb-<agent>` for the provider of
//! the agent's first slot, `cb-<agent>-<provider>` for others (a fallback on another vendor
//! needs another API kind). Their `baseUrl` carries the agent and the upstream:
//! `http://<sidecar>/a/<agent>/<upstream>/v1` (OpenAI kinds) or without `/v1`
//! (`anthropic-messages`, to which OpenClaw appends `/v1/messages`).
//! - A bundled provider (`openai`, `anthropic`, ...; `catalog.rs`) gets a fresh provider of
//!   its API kind with the catalog entries of the models used (context window, output cap,
//!   prices), and an `[[upstreams]]` entry in ClawButler's config: one with the provider's
//!   name (or its URL) is reused, else one is added; either way its `api_key_env` names the
//!   variable OpenClaw read the key from, since the sidecar now holds it.
//! - A `models.providers` entry is copied with its `baseUrl` rewritten (as before); an
//!   `[[upstreams]]` entry with its URL is reused, else one is added (`api_key_env` from an
//!   env SecretRef; an inline key cannot be read back, so such a provider is refused with
//!   what to do).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::catalog::Bundled;
use super::keys;
use super::memory;
use super::models::{self, Target};
use super::{UpstreamKind, UpstreamRef};

/// Placeholder the gateway shows instead of secrets.
const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// `timeoutSeconds` given to sidecar providers that set none: a call held for a human's
/// approval may take minutes, longer than OpenClaw's default model idle timeout.
pub const HOLD_TIMEOUT_SECONDS: u64 = 900;

/// A model price, USD per million tokens: (input, output, cached input, cache write).
pub type Price = (f64, f64, Option<f64>, Option<f64>);

/// What attach knows of the sidecar.
pub struct Sidecar<'a> {
    /// Its data address as the gateway reaches it (`host:port`).
    pub addr: &'a str,
    /// Its `[[upstreams]]`.
    pub upstreams: &'a [UpstreamRef],
    /// ClawButler's price of a model (shipped table plus `[prices]`), if it has one.
    pub price: &'a dyn Fn(&str) -> Option<Price>,
}

/// A change to ClawButler's own config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CbChange {
    /// A new `[[upstreams]]` entry.
    AddUpstream { upstream: UpstreamRef },
    /// `api_key_env` set on an existing entry that had none.
    SetKeyEnv { name: String, env: String },
    /// A `[prices."<model>"]` entry (from OpenClaw's catalog) for a model ClawButler could not price.
    AddPrice { model: String, input: f64, output: f64, cached_input: Option<f64>, cache_write: Option<f64> },
    /// A new `[[mcp_servers]]` entry, moved from OpenClaw's `mcp.servers.<openclaw_name>`.
    AddMcpServer { openclaw_name: String, server: Box<::mcp::McpServerConfig> },
}

impl CbChange {
    /// One plan line.
    pub fn render(&self) -> String {
        match self {
            CbChange::AddUpstream { upstream: u } => format!(
                "+ clawbutler config [[upstreams]] name = \"{}\", kind = \"{}\", url = \"{}\"{}",
                u.name,
                u.kind.as_str(),
                u.url,
                u.api_key_env.as_ref().map(|e| format!(", api_key_env = \"{e}\"")).unwrap_or_default()
            ),
            CbChange::SetKeyEnv { name, env } => {
                format!("~ clawbutler config [[upstreams]] {name}.api_key_env: (absent) -> \"{env}\"")
            }
            CbChange::AddPrice { model, input, output, cached_input, .. } => format!(
                "+ clawbutler config [prices.\"{model}\"] input = {input}, output = {output}{} (OpenClaw's catalog price)",
                cached_input.map(|c| format!(", cached_input = {c}")).unwrap_or_default()
            ),
            CbChange::AddMcpServer { openclaw_name, server } => {
                let target = server
                    .url
                    .clone()
                    .or_else(|| server.command.as_ref().map(|c| format!("stdio: {c} {}", server.args.join(" "))))
                    .unwrap_or_default();
                format!(
                    "+ clawbutler config [[mcp_servers]] {} ({}; moved from OpenClaw's mcp.servers.{openclaw_name})",
                    server.name,
                    target.trim_end()
                )
            }
        }
    }
}

/// The computed rewiring of the models section.
#[derive(Debug, Default)]
pub struct Wiring {
    /// The gateway config after it.
    pub after: Value,
    /// Agents given a sidecar path (each gets a per-agent key and exec approvals).
    pub agents: Vec<String>,
    /// `= ...` (left alone, with why) and `! ...` (the operator must act) lines.
    pub notes: Vec<String>,
    pub cb: Vec<CbChange>,
    /// Bundled providers replaced for some agent, with the agents still using them directly.
    pub replaced: BTreeMap<String, BTreeSet<String>>,
    /// Variables the replaced providers' keys came from (the sidecar reads them now).
    pub key_envs: BTreeSet<String>,
}

struct Planner<'a> {
    cfg: &'a Value,
    side: &'a Sidecar<'a>,
    /// `models.list` rows (facts for models the bundled catalog lacks).
    facts: &'a Value,
    with_keys: bool,
    ups: Vec<UpstreamRef>,
    w: Wiring,
    /// Sidecar providers of the agent being planned: source provider -> sidecar provider.
    mine: BTreeMap<String, String>,
    /// The OpenAI upstream, once some agent's models use it (memory embeddings go there).
    openai_upstream: Option<String>,
}

fn norm(url: &str) -> String {
    let u = url.trim_end_matches('/');
    u.strip_suffix("/v1").unwrap_or(u).to_string()
}

/// Plan the rewiring of `agents` (see the module docs).
pub fn plan(config: &Value, agents: &[String], side: &Sidecar<'_>, facts: &Value, with_keys: bool) -> Wiring {
    let mut p = Planner {
        cfg: config,
        side,
        facts,
        with_keys,
        ups: side.upstreams.to_vec(),
        w: Wiring { after: config.clone(), ..Default::default() },
        mine: BTreeMap::new(),
        openai_upstream: None,
    };
    let mut ok_ids = Vec::new();
    for id in agents {
        if let Err(e) = decision::agent_id::check(id) {
            p.w.notes.push(format!("= agent {id}: {e}; the sidecar refuses such a path, so it is left alone"));
            p.still_using(id);
            continue;
        }
        p.agent(id);
        ok_ids.push(id.clone());
    }
    for id in &ok_ids {
        p.memory(id);
    }
    // The providers attach wrote (their names are new): send the session with each call.
    let before = config.pointer("/models/providers");
    if let Some(ps) = p.w.after.pointer_mut("/models/providers").and_then(Value::as_object_mut) {
        for (_, prov) in ps.iter_mut().filter(|(n, _)| before.and_then(|b| b.get(n.as_str())).is_none()) {
            super::session::send_session(prov);
        }
    }
    p.w
}

impl Planner<'_> {
    /// Record the bundled providers a skipped agent still uses directly.
    fn still_using(&mut self, id: &str) {
        for s in models::slots(self.cfg, id) {
            for r in s.refs() {
                if let Some((prov, _)) = models::resolve_ref(self.cfg, id, &r) {
                    if let Target::Builtin { .. } = models::classify(self.cfg, self.side.addr, &prov) {
                        self.w.replaced.entry(prov).or_default().insert(id.to_string());
                    }
                }
            }
        }
    }

    fn agent(&mut self, id: &str) {
        self.mine.clear();
        let mut outside = Vec::new();
        for slot in models::slots(self.cfg, id) {
            let refs = slot.refs();
            let mut new_refs = Vec::with_capacity(refs.len());
            for (i, r) in refs.iter().enumerate() {
                let label = slot.label(i);
                let Some((prov, model)) = models::resolve_ref(self.cfg, id, r) else {
                    new_refs.push(r.clone());
                    continue;
                };
                let wired = match models::classify(self.cfg, self.side.addr, &prov) {
                    Target::Sidecar { .. } => Ok(None),
                    Target::NotWireable(why) => Err(why),
                    _ if !slot.writable() => Err(format!(
                        "inherited from agents.defaults.{}; attach does not create agents.entries.{id}.{} (its parent block \
                         changes behaviour), set it yourself",
                        slot.key, slot.key
                    )),
                    Target::Builtin { bundled, over, base } => {
                        self.builtin(id, &prov, bundled, over, &base, &model).map(Some)
                    }
                    Target::Custom { provider, kind, base } => self.custom(id, &prov, provider, kind, &base).map(Some),
                };
                match wired {
                    Ok(Some(cb)) => new_refs.push(format!("{cb}/{model}")),
                    Ok(None) => new_refs.push(r.clone()),
                    Err(why) => {
                        self.w.notes.push(format!("= agent {id}: {label} {r}: {why}"));
                        outside.push(r.clone());
                        if let Target::Builtin { .. } = models::classify(self.cfg, self.side.addr, &prov) {
                            self.w.replaced.entry(prov).or_default().insert(id.to_string());
                        }
                        new_refs.push(r.clone());
                    }
                }
            }
            if new_refs != refs && slot.writable() {
                let value = match &slot.value {
                    Value::Object(o) => {
                        let mut o = o.clone();
                        o.insert("primary".into(), json!(new_refs[0]));
                        if o.contains_key("fallbacks") {
                            o.insert("fallbacks".into(), json!(new_refs[1..]));
                        }
                        Value::Object(o)
                    }
                    _ => json!(new_refs[0]),
                };
                self.set_entry(id, slot.key, value);
            }
        }
        if self.mine.is_empty() {
            return;
        }
        // Pin the agent to its sidecar providers, unless one of its own models stays outside
        // (a pin would then only break it, not govern it).
        if outside.is_empty() {
            let allow: Vec<String> = self.mine.values().map(|p| format!("{p}/*")).collect();
            self.set_entry(id, "modelPolicy", json!({"allow": allow}));
        } else {
            self.w.notes.push(format!(
                "= agent {id}: not pinned with modelPolicy.allow, since {} stay(s) outside the sidecar",
                outside.join(", ")
            ));
        }
        self.w.agents.push(id.to_string());
    }

    /// Route the agent's memory embeddings through the OpenAI upstream (when one is in use).
    fn memory(&mut self, id: &str) {
        let e = memory::effective(self.cfg, id);
        if !memory::wants_wiring(&e) {
            return;
        }
        let Some(up) = self.openai_upstream.clone() else {
            return;
        };
        let key = if self.with_keys { keys::key_ref(id) } else { json!("clawbutler-managed") };
        let base = format!("http://{}/a/{id}/{up}/v1", self.side.addr);
        let search = memory::wired(self.cfg, id, &base, key);
        let entry = self.entry_mut(id);
        if !entry["memory"].is_object() {
            entry["memory"] = json!({});
        }
        entry["memory"]["search"] = search;
        if !self.w.agents.iter().any(|a| a == id) {
            self.w.agents.push(id.to_string());
        }
    }

    fn entry_mut(&mut self, id: &str) -> &mut Value {
        let after = &mut self.w.after;
        if !after["agents"].is_object() {
            after["agents"] = json!({});
        }
        if !after["agents"]["entries"].is_object() {
            after["agents"]["entries"] = json!({});
        }
        if !after["agents"]["entries"][id].is_object() {
            after["agents"]["entries"][id] = json!({});
        }
        &mut after["agents"]["entries"][id]
    }

    /// Set `agents.entries.<id>.<dotted key>`.
    fn set_entry(&mut self, id: &str, key: &str, value: Value) {
        let mut cur = self.entry_mut(id);
        let parts: Vec<&str> = key.split('.').collect();
        for k in &parts[..parts.len() - 1] {
            if !cur[*k].is_object() {
                cur[*k] = json!({});
            }
            cur = &mut cur[*k];
        }
        cur[parts[parts.len() - 1]] = value;
    }

    /// The sidecar provider name for `(agent, source provider)`, creating the slot.
    fn provider_name(&mut self, id: &str, source: &str) -> (String, bool) {
        if let Some(n) = self.mine.get(source) {
            return (n.clone(), false);
        }
        let base = if self.mine.is_empty() { format!("cb-{id}") } else { format!("cb-{id}-{source}") };
        let taken = |n: &str| self.cfg.pointer("/models/providers").and_then(|p| p.get(n)).is_some();
        let mut name = base.clone();
        let mut n = 2;
        while taken(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        self.mine.insert(source.to_string(), name.clone());
        (name, true)
    }

    fn sidecar_url(&self, id: &str, upstream: &str, kind: UpstreamKind) -> String {
        match kind {
            UpstreamKind::Openai => format!("http://{}/a/{id}/{upstream}/v1", self.side.addr),
            UpstreamKind::Anthropic => format!("http://{}/a/{id}/{upstream}", self.side.addr),
        }
    }

    fn builtin(
        &mut self,
        id: &str,
        prov: &str,
        bundled: &'static Bundled,
        over: Option<&Value>,
        base: &str,
        model: &str,
    ) -> Result<String, String> {
        let kind = bundled.kind().ok_or("not wireable")?;
        let entry = self.model_entry(prov, bundled, over, base, kind, model)?;
        let env = over
            .and_then(|o| o.get("apiKey"))
            .filter(|k| k.get("source").and_then(Value::as_str) == Some("env"))
            .and_then(|k| k.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| bundled.api_key_env.clone())
            .ok_or_else(|| format!("provider '{prov}' has no known key variable"))?;
        if over.and_then(|o| o.get("apiKey")).and_then(Value::as_str).is_some_and(|k| k.contains(REDACTED)) {
            self.note_once(format!(
                "! {prov}: the gateway's key is written inline in its config (models.providers.{prov}.apiKey); put the same \
                 key into {env} for the sidecar, and remove it from the gateway config"
            ));
        }
        let up = self.builtin_upstream(prov, kind, base, &env);
        if prov == "openai" {
            self.openai_upstream = Some(up.clone());
        }
        self.w.replaced.entry(prov.to_string()).or_default();
        self.w.key_envs.insert(env);
        let (name, fresh) = self.provider_name(id, prov);
        if fresh {
            let api = over.and_then(|o| o.get("api")).and_then(Value::as_str).or(bundled.api.as_deref());
            let mut np = json!({
                "baseUrl": self.sidecar_url(id, &up, kind), "api": api,
                "apiKey": "clawbutler-managed", "timeoutSeconds": HOLD_TIMEOUT_SECONDS, "models": [],
            });
            if let Some(h) = over.and_then(|o| o.get("headers")) {
                np["headers"] = h.clone();
            }
            if self.with_keys {
                keys::wire(&mut np, id, true);
            }
            self.w.after["models"]["providers"][&name] = np;
        }
        if let Some(ms) = self.w.after["models"]["providers"][&name]["models"].as_array_mut() {
            if !ms.iter().any(|m| m["id"] == model) {
                ms.push(entry);
            }
        }
        Ok(name)
    }

    /// The provider model entry of `model` (catalog, override, else the gateway's facts).
    fn model_entry(
        &mut self,
        prov: &str,
        bundled: &Bundled,
        over: Option<&Value>,
        base: &str,
        kind: UpstreamKind,
        model: &str,
    ) -> Result<Value, String> {
        let own = over
            .and_then(|o| o.get("models"))
            .and_then(Value::as_array)
            .and_then(|ms| ms.iter().find(|m| m["id"] == model));
        let mut entry = match own.or_else(|| bundled.model(model)) {
            Some(m) => m.clone(),
            None => self.unknown_model(prov, model),
        };
        if let Some(b) = entry.get("baseUrl").and_then(Value::as_str) {
            if norm(b) != norm(base) {
                return Err(format!(
                    "model {prov}/{model} uses its own endpoint {b}; the sidecar cannot stand in for it"
                ));
            }
        }
        if let Some(api) = entry.get("api").and_then(Value::as_str) {
            if UpstreamKind::for_api(api) != Some(kind) {
                return Err(format!(
                    "model {prov}/{model} speaks '{api}', unlike its provider; the sidecar cannot stand in for it"
                ));
            }
        }
        if let Some(o) = entry.as_object_mut() {
            o.remove("baseUrl");
        }
        if let (Some(cost), None) = (entry.get("cost"), (self.side.price)(model)) {
            let f = |k: &str| cost.get(k).and_then(Value::as_f64);
            if let (Some(input), Some(output)) = (f("input"), f("output")) {
                let add = CbChange::AddPrice {
                    model: model.to_string(),
                    input,
                    output,
                    cached_input: f("cacheRead"),
                    cache_write: f("cacheWrite"),
                };
                if !self.w.cb.iter().any(|c| matches!(c, CbChange::AddPrice { model: m, .. } if m == model)) {
                    self.w.cb.push(add);
                }
            }
        }
        Ok(entry)
    }

    /// A model the bundled catalog lacks: the gateway's `models.list` facts and ClawButler's price.
    fn unknown_model(&mut self, prov: &str, model: &str) -> Value {
        let row = self.facts["models"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["provider"] == prov && m["id"] == model)
            .cloned()
            .unwrap_or(Value::Null);
        let mut e = json!({"id": model, "name": row.get("name").cloned().unwrap_or(json!(model))});
        for k in ["input", "reasoning", "contextWindow", "contextTokens"] {
            if let Some(v) = row.get(k) {
                e[k] = v.clone();
            }
        }
        let price = (self.side.price)(model);
        if let Some((input, output, cached, write)) = price {
            e["cost"] = json!({"input": input, "output": output, "cacheRead": cached.unwrap_or(input), "cacheWrite": write.unwrap_or(0.0)});
        }
        self.note_once(format!(
            "= {prov}/{model} is not in OpenClaw {}'s bundled catalog: {}{}",
            super::catalog::openclaw_version(),
            if row.is_null() { "no context window known" } else { "context window from the gateway's model list" },
            if price.is_some() { ", price from ClawButler's table" } else { ", no price known (OpenClaw shows $0)" }
        ));
        e
    }

    fn note_once(&mut self, line: String) {
        if !self.w.notes.contains(&line) {
            self.w.notes.push(line);
        }
    }

    /// The upstream for a bundled provider: one with its name (and kind), else one with its
    /// URL, else a new one; its `api_key_env` is set to `env` when it had none.
    fn builtin_upstream(&mut self, prov: &str, kind: UpstreamKind, base: &str, env: &str) -> String {
        let found = self
            .ups
            .iter()
            .position(|u| u.name == prov && u.kind == kind)
            .or_else(|| self.ups.iter().position(|u| u.kind == kind && norm(&u.url) == norm(base)));
        match found {
            Some(i) => {
                if self.ups[i].api_key_env.is_none() {
                    self.ups[i].api_key_env = Some(env.to_string());
                    self.w.cb.push(CbChange::SetKeyEnv { name: self.ups[i].name.clone(), env: env.to_string() });
                }
                self.ups[i].name.clone()
            }
            None => self.add_upstream(prov, kind, base, Some(env.to_string())),
        }
    }

    fn add_upstream(&mut self, prov: &str, kind: UpstreamKind, url: &str, env: Option<String>) -> String {
        let stem: String =
            prov.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '-' }).collect();
        let mut name = stem.clone();
        let mut n = 2;
        while self.ups.iter().any(|u| u.name == name) {
            name = format!("{stem}-{n}");
            n += 1;
        }
        let u = UpstreamRef { name: name.clone(), kind, url: url.to_string(), api_key_env: env };
        self.ups.push(u.clone());
        self.w.cb.push(CbChange::AddUpstream { upstream: u });
        name
    }

    fn custom(&mut self, id: &str, prov: &str, p: &Value, kind: UpstreamKind, base: &str) -> Result<String, String> {
        let key = p.get("apiKey");
        let inline = key.and_then(Value::as_str).is_some_and(|k| k.contains(REDACTED));
        let found = self.ups.iter().find(|u| u.kind == kind && norm(&u.url) == norm(base)).cloned();
        let up = match found {
            Some(u) => u,
            None => {
                if inline {
                    return Err(format!(
                        "its key is written inline in OpenClaw's config (read back redacted), so attach cannot hand it to \
                         the sidecar: make it an env SecretRef (apiKey: {{source: \"env\", provider: \"default\", id: \
                         \"VAR\"}}) or add [[upstreams]] with url = \"{base}\" and api_key_env, then re-run"
                    ));
                }
                let env = key
                    .filter(|k| k.get("source").and_then(Value::as_str) == Some("env"))
                    .and_then(|k| k.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let name = self.add_upstream(prov, kind, base, env);
                self.ups.iter().find(|u| u.name == name).cloned().ok_or("upstream just added")?
            }
        };
        let (name, fresh) = self.provider_name(id, prov);
        if fresh {
            let mut np = p.clone();
            np["baseUrl"] = json!(self.sidecar_url(id, &up.name, kind));
            if up.api_key_env.is_some() {
                // The sidecar holds the key: the provider's own (env ref or inline) is not needed.
                np["apiKey"] = json!("clawbutler-managed");
            } else if inline {
                self.note_once(format!(
                    "! provider '{prov}' has an inline key; set api_key_env on upstream '{}' so the sidecar sends the real key",
                    up.name
                ));
                np["apiKey"] = json!("clawbutler-managed");
            }
            if np.get("timeoutSeconds").is_none() {
                np["timeoutSeconds"] = json!(HOLD_TIMEOUT_SECONDS);
            }
            if self.with_keys {
                keys::wire(&mut np, id, up.api_key_env.is_some());
            }
            self.w.after["models"]["providers"][&name] = np;
        }
        Ok(name)
    }
}

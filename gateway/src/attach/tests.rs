//! Planning tests: what attach would change, and what the report then says.

use serde_json::{json, Value};

use super::report::{compute, Section, State, View};
use super::wire::{self, CbChange, Price, Sidecar};
use super::{forward_patch, keys, render, UpstreamKind, UpstreamRef};
use crate::kill::{diff, restore_patch};

const SIDE: &str = "127.0.0.1:8787";

fn up(name: &str, kind: UpstreamKind, url: &str, env: Option<&str>) -> UpstreamRef {
    UpstreamRef { name: name.into(), kind, url: url.into(), api_key_env: env.map(str::to_string) }
}

fn no_price(_: &str) -> Option<Price> {
    None
}

fn plan(cfg: &Value, agents: &[&str], ups: &[UpstreamRef], keys: bool) -> wire::Wiring {
    let side = Sidecar { addr: SIDE, upstreams: ups, price: &no_price };
    let ids: Vec<String> = agents.iter().map(|s| s.to_string()).collect();
    wire::plan(cfg, &ids, &side, &Value::Null, keys)
}

fn report_of(cfg: &Value, agents: &[&str]) -> super::Report {
    let ids: Vec<String> = agents.iter().map(|s| s.to_string()).collect();
    let exec = json!({});
    compute(&View { config: cfg, agents: &ids, exec: &exec, sidecar: SIDE, approver: None })
}

#[test]
fn custom_providers_are_rewired_through_their_upstream() {
    let cfg = json!({"models": {"providers": {"direct": {"baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions", "apiKey": "k"}}},
                     "agents": {"entries": {"ops": {"model": "direct/m"}}}});
    let ups = vec![up("fake", UpstreamKind::Openai, "http://127.0.0.1:9/v1", None)];
    let w = plan(&cfg, &["ops"], &ups, false);
    assert_eq!(w.agents, vec!["ops".to_string()]);
    assert!(w.cb.is_empty(), "the upstream exists: {:?}", w.cb);
    let p = &w.after["models"]["providers"]["cb-ops"];
    assert_eq!(p["baseUrl"], "http://127.0.0.1:8787/a/ops/fake/v1");
    assert_eq!(p["apiKey"], "k", "a pass-through upstream keeps the provider's key");
    assert_eq!(w.after["agents"]["entries"]["ops"]["model"], "cb-ops/m");
    assert_eq!(w.after["agents"]["entries"]["ops"]["modelPolicy"], json!({"allow": ["cb-ops/*"]}));
    let changes = diff(&cfg, &w.after);
    let (fwd, _) = forward_patch(&changes, &cfg);
    assert_eq!(fwd["agents"]["entries"]["ops"]["model"], "cb-ops/m");
    let (back, _, skipped) = restore_patch(&changes, &w.after);
    assert!(skipped.is_empty());
    assert_eq!(back["models"]["providers"]["cb-ops"], Value::Null);
    assert_eq!(back["agents"]["entries"]["ops"]["model"], "direct/m");
    assert!(render(&changes).iter().any(|l| l == "~ agents.entries.ops.modelPolicy.allow: (absent) -> [\"cb-ops/*\"]"));
    let r = report_of(&w.after, &["ops"]);
    assert!(r.agents[0].model_path_governed, "{:?}", r.agents[0]);
}

#[test]
fn per_agent_keys_are_wired_and_ids_the_sidecar_refuses_are_skipped() {
    let cfg = json!({"models": {"providers": {
                        "held": {"baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions", "apiKey": "__OPENCLAW_REDACTED__"},
                        "pass": {"baseUrl": "http://127.0.0.1:8/v1", "api": "openai-completions", "apiKey": "sk-real"}}},
                     "agents": {"entries": {"ops": {"model": "held/m"}, "dev": {"model": "pass/m"}, "Bad.Id": {"model": "held/m"}}}});
    let ups = vec![
        up("h", UpstreamKind::Openai, "http://127.0.0.1:9/v1", Some("H_KEY")),
        up("p", UpstreamKind::Openai, "http://127.0.0.1:8/v1", None),
    ];
    let w = plan(&cfg, &["ops", "dev", "Bad.Id"], &ups, true);
    assert_eq!(w.agents, vec!["ops".to_string(), "dev".to_string()]);
    assert!(w.notes.iter().any(|n| n.contains("Bad.Id") && n.contains("not valid")), "{:?}", w.notes);
    let provs = &w.after["models"]["providers"];
    assert_eq!(provs["cb-ops"]["apiKey"], keys::key_ref("ops"), "held upstream: the apiKey is the agent key");
    assert_eq!(provs["cb-dev"]["apiKey"], "sk-real", "pass-through keeps the real key");
    assert_eq!(provs["cb-dev"]["headers"][keys::AGENT_KEY_HEADER], keys::key_ref("dev"));
}

#[test]
fn a_stock_gateway_on_builtin_providers_is_wired_with_fallbacks_utility_and_memory() {
    // The common setup: OpenAI and Anthropic bundled providers, a default model, an agent
    // with fallbacks across vendors, a utility model, no [[upstreams]] beyond the defaults.
    let cfg = json!({"agents": {"defaults": {"model": "openai/gpt-5.4-mini", "utilityModel": "openai/gpt-5.4-nano"},
                                "entries": {"main": {"model": "openai/gpt-5.4-mini"},
                                            "writer": {"model": {"primary": "anthropic/claude-sonnet-5", "fallbacks": ["openai/gpt-5.4"]},
                                                       "utilityModel": ""},
                                            "plain": {}}}});
    let ups = vec![
        up("openai", UpstreamKind::Openai, "https://api.openai.com/v1", None),
        up("anthropic", UpstreamKind::Anthropic, "https://api.anthropic.com", None),
    ];
    let w = plan(&cfg, &["main", "writer", "plain"], &ups, true);
    assert_eq!(w.agents.len(), 3);
    let p = &w.after["models"]["providers"];
    assert_eq!(p["cb-main"]["api"], "openai-responses");
    assert_eq!(p["cb-main"]["baseUrl"], "http://127.0.0.1:8787/a/main/openai/v1");
    assert_eq!(p["cb-main"]["apiKey"], keys::key_ref("main"));
    let ids: Vec<&str> = p["cb-main"]["models"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(ids, ["gpt-5.4-mini", "gpt-5.4-nano"], "primary and utility model");
    let mini = &p["cb-main"]["models"][0];
    assert_eq!((mini["contextWindow"].as_u64(), mini["maxTokens"].as_u64()), (Some(400000), Some(128000)));
    assert_eq!(mini["cost"]["input"].as_f64(), Some(0.75));
    // Every model of a provider attach writes sends OpenClaw's session (cost by task type).
    assert_eq!(mini["compat"]["sendSessionIdHeader"], true, "openai-responses: {mini}");
    let claude = &p["cb-writer"]["models"][0];
    assert_eq!(claude["compat"]["sendSessionAffinityHeaders"], true, "anthropic-messages: {claude}");
    assert_eq!(p["cb-writer"]["api"], "anthropic-messages");
    assert_eq!(p["cb-writer"]["baseUrl"], "http://127.0.0.1:8787/a/writer/anthropic", "no /v1 for Anthropic");
    assert_eq!(p["cb-writer-openai"]["baseUrl"], "http://127.0.0.1:8787/a/writer/openai/v1");
    let e = &w.after["agents"]["entries"];
    assert_eq!(
        e["writer"]["model"],
        json!({"primary": "cb-writer/claude-sonnet-5", "fallbacks": ["cb-writer-openai/gpt-5.4"]})
    );
    assert_eq!(e["writer"]["modelPolicy"], json!({"allow": ["cb-writer/*", "cb-writer-openai/*"]}));
    assert_eq!(e["writer"]["utilityModel"], "", "utility routing off stays off");
    assert_eq!(e["plain"]["model"], "cb-plain/gpt-5.4-mini", "the inherited default becomes the agent's own");
    assert_eq!(e["plain"]["utilityModel"], "cb-plain/gpt-5.4-nano");
    assert_eq!(e["main"]["memory"]["search"]["remote"]["baseUrl"], "http://127.0.0.1:8787/a/main/openai/v1");
    assert_eq!(e["main"]["memory"]["search"]["provider"], "openai-compatible");
    // ClawButler's config: both vendor upstreams now hold the key, and OpenClaw's prices for
    // models the shipped table lacks.
    assert!(w.cb.contains(&CbChange::SetKeyEnv { name: "openai".into(), env: "OPENAI_API_KEY".into() }));
    assert!(w.cb.contains(&CbChange::SetKeyEnv { name: "anthropic".into(), env: "ANTHROPIC_API_KEY".into() }));
    assert!(w.cb.iter().any(|c| matches!(c, CbChange::AddPrice { model, .. } if model == "claude-sonnet-5")));
    assert_eq!(w.key_envs.iter().cloned().collect::<Vec<_>>(), ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]);
    assert_eq!(w.replaced.keys().cloned().collect::<Vec<_>>(), ["anthropic", "openai"]);

    let before = report_of(&cfg, &["main", "writer", "plain"]);
    assert_eq!(before.ungoverned_agents(), ["main", "writer", "plain"]);
    let after = report_of(&w.after, &["main", "writer", "plain"]);
    assert!(after.ungoverned_agents().is_empty(), "{:#?}", after.agents);
    let writer = after.agent("writer").unwrap();
    let models = writer.section(Section::Models);
    assert!(models.iter().any(|p| p.path == "fallback 1" && p.state == State::Governed));
    assert!(models.iter().any(|p| p.path == "utilityModel" && p.state == State::Off));
    assert_eq!(writer.section(Section::Plugin)[0].state, State::Ungoverned, "no ClawButler plugin");
}

#[test]
fn implicit_utility_models_and_unwireable_providers() {
    let cfg = json!({"agents": {"entries": {"a": {"model": "anthropic/claude-sonnet-5"},
                                            "gem": {"model": {"primary": "openai/gpt-5.4", "fallbacks": ["google/gemini-3-pro"]}},
                                            "g2": {"model": "google/gemini-3-pro"}}}});
    let w = plan(&cfg, &["a", "gem", "g2"], &[], false);
    // No upstream existed: both are added, named after the provider, holding the key.
    assert!(w.cb.iter().any(|c| matches!(c, CbChange::AddUpstream { upstream } if upstream.name == "anthropic"
        && upstream.api_key_env.as_deref() == Some("ANTHROPIC_API_KEY") && upstream.url == "https://api.anthropic.com")));
    let e = &w.after["agents"]["entries"];
    assert_eq!(e["a"]["utilityModel"], "cb-a/claude-haiku-4-5", "OpenClaw's derived small model, now explicit");
    assert_eq!(e["gem"]["model"]["fallbacks"], json!(["google/gemini-3-pro"]), "unwireable fallback kept");
    assert!(w.notes.iter().any(|n| n.contains("gem") && n.contains("Gemini")), "{:?}", w.notes);
    assert!(e["gem"].get("modelPolicy").is_none(), "a pin would only break gem's own fallback");
    assert!(e["g2"].get("modelPolicy").is_none(), "nothing to pin g2 to");
    assert!(w.agents.contains(&"g2".to_string()), "its memory embeddings still move to the sidecar");
    assert_eq!(e["g2"]["memory"]["search"]["remote"]["baseUrl"], "http://127.0.0.1:8787/a/g2/openai/v1");
    let r = report_of(&w.after, &["a", "gem", "g2"]);
    assert_eq!(r.ungoverned_agents(), ["gem", "g2"]);
    assert!(r.render().iter().any(|l| l.contains("UNGOVERNED") && l.contains("google/gemini-3-pro")));
}

#[test]
fn added_objects_are_rendered_key_by_key() {
    let before = json!({"a": 1});
    let after = json!({"a": 1, "models": {"providers": {"cb-x": {"baseUrl": "u", "apiKey": {"source": "file", "provider": "p", "id": "/x"}}}}});
    let lines = render(&diff(&before, &after));
    assert_eq!(
        lines,
        [
            "~ models.providers.cb-x.baseUrl: (absent) -> \"u\"",
            "~ models.providers.cb-x.apiKey: (absent) -> {\"source\":\"file\",\"provider\":\"p\",\"id\":\"/x\"}",
        ]
    );
    let back = render(&diff(&after, &before));
    assert_eq!(back[0], "~ models.providers.cb-x.baseUrl: \"u\" -> (absent)");
}

#[test]
fn inline_keys_of_new_custom_providers_are_refused_with_the_fix() {
    let cfg = json!({"models": {"providers": {"mine": {"baseUrl": "http://10.0.0.5:8000/v1", "apiKey": "__OPENCLAW_REDACTED__", "models": [{"id": "m", "name": "m"}]},
                                              "env": {"baseUrl": "http://10.0.0.6:8000/v1", "api": "anthropic-messages",
                                                      "apiKey": {"source": "env", "provider": "default", "id": "ENV_KEY"}, "models": [{"id": "m", "name": "m"}]}}},
                     "agents": {"entries": {"x": {"model": "mine/m"}, "y": {"model": "env/m"}}}});
    let w = plan(&cfg, &["x", "y"], &[], true);
    assert!(w.notes.iter().any(|n| n.contains("inline") && n.contains("api_key_env")), "{:?}", w.notes);
    assert_eq!(w.agents, vec!["y".to_string()]);
    assert!(w.cb.iter().any(|c| matches!(c, CbChange::AddUpstream { upstream } if upstream.name == "env"
        && upstream.kind == UpstreamKind::Anthropic && upstream.api_key_env.as_deref() == Some("ENV_KEY"))));
    assert_eq!(w.after["models"]["providers"]["cb-y"]["apiKey"], keys::key_ref("y"));
    assert_eq!(w.after["models"]["providers"]["cb-y"]["baseUrl"], "http://127.0.0.1:8787/a/y/env");
}

#[test]
fn the_report_is_loud_about_what_stays_outside_and_the_exit_rule_counts_model_paths_only() {
    // main through the sidecar; solo straight to OpenAI; emb through the sidecar for its
    // model but with its memory embeddings going to OpenAI directly.
    let cfg = json!({"models": {"providers": {
                        "cb-main": {"baseUrl": "http://127.0.0.1:8787/a/main/openai/v1", "api": "openai-responses"},
                        "cb-emb": {"baseUrl": "http://127.0.0.1:8787/a/emb/openai/v1", "api": "openai-responses"}}},
                     "agents": {"entries": {"main": {"model": "cb-main/gpt-5.4-mini", "utilityModel": "",
                                                     "memory": {"search": {"enabled": false}}},
                                            "solo": {"model": "openai/gpt-5.4-mini", "utilityModel": ""},
                                            "emb": {"model": "cb-emb/gpt-5.4-mini", "utilityModel": ""}}}});
    let r = report_of(&cfg, &["main", "solo", "emb"]);
    assert_eq!(r.ungoverned_agents(), ["solo"], "memory embeddings do not decide the exit code: {:#?}", r.agents);
    let emb = r.agent("emb").unwrap();
    assert!(emb.model_path_governed);
    assert!(
        emb.section(Section::Models).iter().any(|p| p.path.starts_with("memory") && p.state == State::Ungoverned),
        "but they are reported: {:?}",
        emb.section(Section::Models)
    );
    let lines = r.render();
    assert_eq!(lines[0], "governance report (what goes through ClawButler):");
    let solo_model = lines.iter().find(|l| l.contains("model openai/gpt-5.4-mini")).unwrap();
    assert!(solo_model.contains("UNGOVERNED") && solo_model.contains("api.openai.com"), "{solo_model}");
    assert!(lines
        .iter()
        .any(|l| l.contains("governed   model cb-main/gpt-5.4-mini: through the sidecar as agent main")));
    assert_eq!(lines.last().map(String::as_str), Some("NOT GOVERNED on the model path: solo (see above)"));
    // Before the verdict, every path that stays outside, one line each (memory embeddings too).
    let at = lines.iter().position(|l| l.starts_with("STAYS OUTSIDE ClawButler")).expect("the outside list");
    let outside = &lines[at + 1..lines.len() - 1];
    assert!(outside.contains(&"  agent solo models model openai/gpt-5.4-mini".to_string()), "{outside:?}");
    assert!(outside.iter().any(|l| l.starts_with("  agent emb models memory embeddings")), "{outside:?}");
    assert!(outside.iter().all(|l| !l.contains("agent main models")), "{outside:?}");

    let all = report_of(&cfg, &["main", "emb"]);
    assert_eq!(
        all.render().last().map(String::as_str),
        Some("every agent's model path goes through ClawButler (2 agent(s))")
    );
}

#[test]
fn drift_names_lost_and_regained_paths_and_ignores_wording() {
    let attached = json!({"models": {"providers": {"cb-a": {"baseUrl": "http://127.0.0.1:8787/a/a/openai/v1"}}},
                          "agents": {"entries": {"a": {"model": {"primary": "cb-a/gpt-5.4", "fallbacks": ["cb-a/gpt-5.4-mini"]},
                                                       "utilityModel": "", "memory": {"search": {"enabled": false}}}}}});
    let baseline = report_of(&attached, &["a"]);
    assert!(super::report::drift(&baseline, &baseline).is_empty());

    // Someone points the fallback straight at OpenAI and drops the utility slot.
    let mut changed = attached.clone();
    changed["agents"]["entries"]["a"]["model"]["fallbacks"] = json!(["openai/gpt-5.4-mini"]);
    let now = report_of(&changed, &["a"]);
    let d = super::report::drift(&baseline, &now);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!((d[0].agent.as_str(), d[0].path.as_str()), ("a", "fallback 1"));
    assert_eq!((d[0].from, d[0].to), (Some(State::Governed), Some(State::Ungoverned)));
    assert!(d[0].is_loss());
    assert!(d[0].render().starts_with("! agent a models fallback 1: governed -> ungoverned"), "{}", d[0].render());

    // Put back: regained, not a loss.
    let back = super::report::drift(&now, &baseline);
    assert_eq!(back.len(), 1);
    assert!(!back[0].is_loss() && back[0].to == Some(State::Governed));

    // A new agent's paths are drift too (from absent).
    let mut more = attached.clone();
    more["agents"]["entries"]["b"] = json!({"model": "anthropic/claude-sonnet-5"});
    let d = super::report::drift(&baseline, &report_of(&more, &["a", "b"]));
    assert!(d.iter().any(|x| x.agent == "b" && x.path == "model" && x.from.is_none() && x.is_loss()), "{d:?}");
}

#[test]
fn shared_auxiliary_slots_are_listed_gateway_wide_as_outside_with_the_fix() {
    // imageModel, pdfModel, compaction, ... only exist under agents.defaults: no agent's sidecar
    // provider can serve them, so attach leaves them and the report says so, loudly.
    let cfg = json!({"agents": {"defaults": {"imageModel": "openai/gpt-5.4", "pdfModel": {"primary": "anthropic/claude-sonnet-5"},
                                             "compaction": {"model": "openai/gpt-5.4-mini"}},
                                "entries": {"a": {"model": "openai/gpt-5.4-mini", "utilityModel": ""}}},
                     "tools": {"media": {"models": [{"provider": "openai", "model": "gpt-image-2"}]}}});
    let w = plan(&cfg, &["a"], &[], false);
    assert_eq!(w.after["agents"]["defaults"], cfg["agents"]["defaults"], "shared slots are left alone");
    let r = report_of(&w.after, &["a"]);
    assert!(r.ungoverned_agents().is_empty(), "a's own model path is governed: {:#?}", r.agents);
    let shared: Vec<(&str, Option<&str>, State)> =
        r.gateway.iter().map(|p| (p.path.as_str(), p.target.as_deref(), p.state)).collect();
    for (path, target) in [
        ("agents.defaults.imageModel", "openai/gpt-5.4"),
        ("agents.defaults.pdfModel", "anthropic/claude-sonnet-5"),
        ("agents.defaults.compaction.model", "openai/gpt-5.4-mini"),
        ("tools.media.models", "openai/gpt-image-2"),
    ] {
        assert!(shared.contains(&(path, Some(target), State::Ungoverned)), "{path}: {shared:?}");
    }
    let image = r.gateway.iter().find(|p| p.path == "agents.defaults.imageModel").unwrap();
    assert!(image.why.contains("shared by every agent") && image.why.contains("unset it"), "{}", image.why);
    let lines = r.render();
    assert!(lines.contains(&"  gateway-wide agents.defaults.imageModel openai/gpt-5.4".to_string()), "{lines:#?}");
    assert_eq!(lines.last().map(String::as_str), Some("every agent's model path goes through ClawButler (1 agent(s))"));
}

/// Detach of the smallest real setup (one agent on OpenAI, a short config file) stays within
/// OpenClaw's write guard: no write may leave less than half of a file of 512 bytes or more.
#[test]
fn detach_of_a_one_agent_gateway_never_halves_the_file() {
    use super::steps::{fine_changes, next_step};
    let pretty = |v: &Value| serde_json::to_string_pretty(v).map_or(0, |s| s.len());
    let before = json!({"gateway": {"mode": "local", "port": 18789, "bind": "loopback", "auth": {"mode": "token"}},
                        "agents": {"entries": {"main": {"model": "anthropic/claude-sonnet-5"}}}});
    let w = plan(&before, &["main"], &[], true);
    let mut after = w.after.clone();
    after["secrets"] = json!({"providers": {keys::SECRETS_PROVIDER: keys::provider_entry(std::path::Path::new("/var/lib/clawbutler/gateway/agent-keys.json"))}});
    super::hardening::plan(&mut after, &w.replaced, &w.key_envs, super::Hardening::default());
    let undo: Vec<_> = diff(&after, &before);
    let scope: Vec<Vec<String>> = undo.iter().map(|c| c.path.clone()).collect();
    let mut doc = after.clone();
    let mut writes = 0;
    while let Some((patch, _, _)) = next_step(&doc, &fine_changes(&doc, &before, &scope)) {
        let next = merge_patch(&doc, &patch);
        let (was, now) = (pretty(&doc), pretty(&next));
        assert!(was < 512 || now >= was / 2, "write {writes} takes the file from {was} to {now} bytes: {patch}");
        doc = next;
        writes += 1;
        assert!(writes < super::steps::MAX_STEPS);
    }
    assert_eq!(doc, before);
}

/// RFC 7396 merge (what the gateway does with a patch); also used by `steps.rs`'s tests.
pub(crate) fn merge_patch(doc: &Value, patch: &Value) -> Value {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            let mut out = d.clone();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let next = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), next);
                }
            }
            Value::Object(out)
        }
        (_, Value::Object(p)) => merge_patch(&json!({}), &Value::Object(p.clone())),
        (_, p) => p.clone(),
    }
}

#[test]
fn a_big_provider_is_shrunk_in_one_write_as_far_as_the_guard_allows() {
    use super::steps::{fine_changes, next_step};
    let models: Vec<Value> = (0..6)
        .map(|i| json!({"id": format!("m{i}"), "name": format!("model {i}"), "contextWindow": 400000, "maxTokens": 128000,
                        "cost": {"input": 1.0, "output": 2.0, "cacheRead": 0.1, "cacheWrite": 0}, "input": ["text", "image"]}))
        .collect();
    let target =
        json!({"gateway": {"mode": "local", "port": 18789, "auth": {"mode": "token", "token": "x".repeat(400)}}});
    let mut current = target.clone();
    current["models"] = json!({"providers": {"cb-a": {"baseUrl": "http://127.0.0.1:8787/a/a/openai/v1", "api": "openai-responses",
                                                      "timeoutSeconds": 900, "models": models}}});
    let scope = vec![vec!["models".to_string()]];
    let (patch, replace, n) = next_step(&current, &fine_changes(&current, &target, &scope)).unwrap();
    assert!(n > 1, "several pieces in one write: {patch}");
    assert!(replace.contains(&"models.providers.cb-a.models".to_string()), "{replace:?}");
    let next = merge_patch(&current, &patch);
    let p = &next["models"]["providers"]["cb-a"];
    assert!(p["baseUrl"].is_string() && !p["models"].as_array().unwrap().is_empty(), "still a valid provider: {p}");
    let pretty = |v: &Value| serde_json::to_string_pretty(v).map_or(0, |s| s.len());
    assert!(pretty(&next) >= pretty(&current) / 2 && pretty(&next) < pretty(&current));
}

//! Property-style checks with a seeded generator (no extra dependencies): random inputs never
//! panic and always yield a complete decision; evaluations during reloads never fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed assertion panics

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use decision::{
    Action, BudgetInput, CallKind, CostInput, ExecInput, GrantInput, ModelInput, PolicyInput, ToolInput, POLICY_ERROR,
};
use policy::{BundleSource, PolicyEngine};

/// xorshift64*: deterministic, so a failure replays with the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
    fn f64(&mut self) -> f64 {
        (self.below(2_000_001) as f64 - 500_000.0) / 100_000.0
    }
    /// Words that exercise the shipped rules, plus noise and odd characters.
    fn word(&mut self) -> String {
        const WORDS: &[&str] = &[
            "rm",
            "-rf",
            "-r",
            "/",
            "sudo",
            "curl",
            "wget",
            "|",
            "sh",
            "bash",
            "chmod",
            "777",
            "mkfs.ext4",
            "dd",
            "of=/dev/sda",
            ">",
            ">>",
            "/etc/passwd",
            "~/.ssh/id_rsa",
            ".env",
            "git",
            "status",
            "&&",
            ";",
            "||",
            "$(curl",
            "stripe",
            "pay",
            "mail",
            "\"",
            "'",
            "\\",
            "*",
            "?",
            "[",
            "{",
            "}",
            "é",
            "\u{0}",
            "\t",
            "\n",
            "",
            "..",
            "/w/x",
            "ls",
            "send_email",
            "message",
            "%s",
            "%v",
        ];
        match self.below(4) {
            0 => (0..self.below(12)).map(|_| char::from_u32(self.below(0x2FF) as u32).unwrap_or('x')).collect(),
            _ => self.pick(WORDS).to_string(),
        }
    }
    fn text(&mut self) -> String {
        (0..self.below(8)).map(|_| self.word()).collect::<Vec<_>>().join(" ")
    }
    fn json(&mut self, depth: u32) -> serde_json::Value {
        use serde_json::Value as V;
        match self.below(if depth > 2 { 5 } else { 7 }) {
            0 => V::Null,
            1 => V::Bool(self.below(2) == 0),
            2 => serde_json::json!(self.f64()),
            3 => serde_json::json!(self.below(u64::MAX)),
            4 => V::String(self.text()),
            5 => V::Array((0..self.below(4)).map(|_| self.json(depth + 1)).collect()),
            _ => {
                let keys =
                    ["kind", "model", "exec", "tool", "name", "command", "args", "budgets", "grants", "cost", "x"];
                let mut m = serde_json::Map::new();
                for _ in 0..self.below(6) {
                    m.insert(self.pick(&keys).to_string(), self.json(depth + 1));
                }
                V::Object(m)
            }
        }
    }
    fn typed(&mut self) -> PolicyInput {
        let kinds = [CallKind::ModelCall, CallKind::Exec, CallKind::ToolCall, CallKind::Plugin];
        let kind = kinds[self.below(4) as usize];
        let mut inp = PolicyInput::new(kind, self.pick(&["main", "ops", ""]), "trace");
        match kind {
            CallKind::ModelCall => {
                inp.model = Some(ModelInput {
                    upstream: self.pick(&["openai", "anthropic", ""]).into(),
                    upstream_kind: "openai".into(),
                    endpoint: self.pick(&["chat_completions", "responses", "models", "messages", ""]).into(),
                    name: self.pick(&["gpt-4o", "claude-sonnet-4", "", "*", "o1[", "x/y"]).into(),
                    max_tokens: if self.below(2) == 0 { Some(self.below(200_000)) } else { None },
                    stream: self.below(2) == 0,
                    tools: (0..self.below(3)).map(|_| self.word()).collect(),
                })
            }
            CallKind::Exec => {
                inp.exec = Some(ExecInput {
                    command: self.text(),
                    argv: (0..self.below(4)).map(|_| self.word()).collect(),
                    cwd: if self.below(3) == 0 { None } else { Some(self.pick(&["/w", "/etc", "", "~"]).into()) },
                    resolved_path: None,
                    workspace: if self.below(3) == 0 { None } else { Some(self.pick(&["/w", "", "/"]).into()) },
                })
            }
            _ => {
                inp.tool = Some(ToolInput {
                    server: None,
                    name: self
                        .pick(&["send_email", "read", "write", "exec", "stripe_pay", "", "list_emails", "a.b:c/d"])
                        .into(),
                    args: self.json(0),
                })
            }
        }
        inp.cost = CostInput {
            estimate_usd: if self.below(2) == 0 { Some(self.f64()) } else { None },
            ..CostInput::default()
        };
        for _ in 0..self.below(3) {
            let limit = self.f64();
            let spent = self.f64();
            inp.budgets.push(BudgetInput {
                id: "b".into(),
                scope: self.pick(&["global", "agent:main"]).into(),
                window: self.pick(&["daily", "weekly", "monthly"]).into(),
                spent_usd: spent,
                limit_usd: limit,
                remaining_usd: limit - spent,
            });
        }
        for i in 0..self.below(3) {
            inp.grants.push(GrantInput {
                id: format!("g{i}"),
                agent: "main".into(),
                kind,
                pattern: self.pick(&["*", "sudo *", "send_email", "[", ""]).into(),
                arg_pattern: if self.below(2) == 0 { None } else { Some(self.pick(&["*", "*x*", "{"]).into()) },
                expires_at: if self.below(2) == 0 { None } else { Some("2030-01-01T00:00:00Z".into()) },
            });
        }
        inp
    }
}

fn shipped(cfg: serde_json::Value) -> PolicyEngine {
    PolicyEngine::new(BundleSource::Embedded, cfg, opts(), &prometheus::Registry::new()).unwrap()
}

fn assert_complete(d: &decision::Decision) {
    assert!(!d.rule.is_empty() && !d.reason.is_empty() && !d.id.as_str().is_empty(), "{d:?}");
}

#[test]
fn random_json_inputs_never_panic() {
    let e = shipped(serde_json::Value::Null);
    let mut rng = Rng(0x5eed_0001);
    for _ in 0..1500 {
        let mut v = rng.json(0);
        if rng.below(2) == 0 {
            if let serde_json::Value::Object(m) = &mut v {
                m.insert("kind".into(), rng.pick(&["model_call", "exec", "tool_call", "plugin"]).into());
            }
        }
        let d = e.evaluate_value(&v);
        assert_complete(&d);
        if !v.is_object() {
            assert_eq!(d.rule, POLICY_ERROR);
        }
    }
}

#[test]
fn random_typed_inputs_always_get_a_real_decision() {
    let cfg = serde_json::json!({"model_allowlist": ["gpt-*"], "max_call_usd": 1.0, "workspace_roots": ["/w"], "high_risk_tools": ["exec"], "high_risk_commands": ["git push*"], "hold_ttl_s": 60});
    for (seed, cfg) in [(7u64, serde_json::Value::Null), (11, cfg)] {
        let e = shipped(cfg);
        let mut rng = Rng(seed);
        for _ in 0..1500 {
            let inp = rng.typed();
            let d = e.evaluate(&inp);
            assert_complete(&d);
            // A well-typed input must never trip the policy itself: no policy_error.
            assert_ne!(d.rule, POLICY_ERROR, "{}", serde_json::to_string(&inp).unwrap());
        }
    }
}

#[test]
fn evaluations_during_reloads_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", &allow_policy("v0"));
    let e = Arc::new(engine_for(dir.path(), &prometheus::Registry::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (e, stop) = (e.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) || n < 50 {
                    let d = e.evaluate_value(&exec_input("ls"));
                    assert_eq!(d.action, Action::Allow, "{d:?}");
                    assert!(d.rule.starts_with('v'), "{d:?}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 1..=30 {
        // Alternate good and broken bundles: broken ones must never reach the workers.
        let text = if i % 3 == 0 {
            "package clawbutler\n\ndecision := {\n".to_string()
        } else {
            allow_policy(&format!("v{i}"))
        };
        write(dir.path(), "p.rego", &text);
        let _ = e.reload();
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.join().unwrap() >= 50);
    }
    assert_eq!(e.evaluate_value(&exec_input("ls")).rule, "v29");
}

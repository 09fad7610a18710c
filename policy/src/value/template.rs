//! Recent model calls' input documents on this thread, reused for the next call from the same
//! caller to the same model.
//!
//! Building the document is ~10,000 instructions of a model call's decision, most of it
//! regorus's object construction (each object's fields sorted into a `BTreeMap`, then frozen
//! into a slice), for the top level and for `model`. An agent's calls to one model mostly
//! differ only in the fields that change with every call: `trace_id`, `now`, `cost`, `budgets`
//! and `grants`. So each thread keeps the documents of its last few plain model calls, with the
//! fields each was built from that can stay the same (`version`, `agent`, `session`, `model`).
//! When a call's are equal to one's, a copy of its document gets the per-call fields replaced
//! in place (regorus keeps a frozen object frozen when only values change). The result is the
//! same document a fresh build gives: the tests compare the two over random sequences of calls
//! of every kind.
//!
//! Only plain model calls (no `exec`, `tool`, `plugin` or `mcp` part) are kept: the other
//! kinds carry features derived from their arguments.

use std::cell::RefCell;

use decision::{CallKind, ModelInput, PolicyInput};
use regorus::Value;

use super::Keys;

/// Documents kept per thread: a connection thread serves several agents in turn.
const SLOTS: usize = 4;

struct Template {
    version: u32,
    agent: String,
    session: Option<String>,
    model: ModelInput,
    value: Value,
}

#[derive(Default)]
struct Recent {
    slots: [Option<Template>; SLOTS],
    /// The slot the next new document replaces (round robin).
    next: usize,
}

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::new(Recent::default());
}

#[cfg(test)]
thread_local! {
    static HITS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn plain_model_call(i: &PolicyInput) -> Option<&ModelInput> {
    // Every field named, so a field added to the input does not compile here until it is
    // placed: kept (compared in `model_call` and stored in `Template`), replaced per call (in
    // `model_call`'s list), or excluded like the parts below.
    let PolicyInput {
        version: _,
        kind,
        agent: _,
        session: _,
        trace_id: _,
        model,
        exec,
        tool,
        plugin,
        cost: _,
        budgets: _,
        grants: _,
        mcp,
        now: _,
    } = i;
    let plain = *kind == CallKind::ModelCall && exec.is_none() && tool.is_none() && plugin.is_none() && mcp.is_none();
    if plain {
        model.as_ref()
    } else {
        None
    }
}

/// The document for `i` from a kept one, when `i` is a plain model call with its caller and
/// model; `None` otherwise (the caller builds it and hands it to [`remember`]).
pub(super) fn model_call(k: &Keys, i: &PolicyInput) -> Option<Value> {
    let model = plain_model_call(i)?;
    let mut value = RECENT.with(|recent| {
        let recent = recent.try_borrow().ok()?;
        let t =
            recent.slots.iter().flatten().find(|t| {
                t.agent == i.agent && t.version == i.version && t.session == i.session && t.model == *model
            })?;
        #[cfg(test)]
        HITS.with(|h| h.set(h.get() + 1));
        Some(t.value.clone())
    })?;
    // A copy (the kept document is shared), with the per-call values in place of the kept
    // ones: every key below is in every model call's document, so no key is added.
    let o = value.as_object_mut().ok()?;
    let fresh = [
        (&k.trace_id, Value::from(i.trace_id.as_str())),
        (&k.now, Value::from(i.now.as_str())),
        (&k.cost, super::cost(k, i)),
        (&k.budgets, super::budgets(k, i)),
        (&k.grants, super::grants(k, i)),
    ];
    for (key, v) in fresh {
        o.insert(key.clone(), v);
    }
    Some(value)
}

/// Keep `value`, the document just built for `i`, when `i` is a plain model call.
pub(super) fn remember(i: &PolicyInput, value: Value) -> Value {
    let Some(model) = plain_model_call(i) else { return value };
    RECENT.with(|recent| {
        if let Ok(mut recent) = recent.try_borrow_mut() {
            let at = recent.next;
            recent.next = (at + 1) % SLOTS;
            recent.slots[at] = Some(Template {
                version: i.version,
                agent: i.agent.clone(),
                session: i.session.clone(),
                model: model.clone(),
                value: value.clone(),
            });
        }
    });
    value
}

#[cfg(test)]
mod tests {
    use decision::{BudgetInput, CostInput, ExecInput, GrantInput, ToolInput};

    use super::*;
    use crate::needles::Needles;

    fn hits() -> usize {
        HITS.with(|h| h.get())
    }

    /// A call drawn from small sets, so the same caller and model come back (and more callers
    /// than slots, so kept documents are replaced), with every per-call field varying.
    fn call(next: &mut impl FnMut(usize) -> usize, n: usize) -> PolicyInput {
        let kind = [CallKind::ModelCall, CallKind::ModelCall, CallKind::ModelCall, CallKind::Exec, CallKind::ToolCall]
            [next(5)];
        let agents = ["main", "ops", "research", "cron", "night"];
        let mut i = PolicyInput::new(kind, agents[next(agents.len())], &format!("{n:032x}"));
        i.now = format!("2026-12-04T20:{:02}:{:02}Z", next(60), next(60));
        // Now and then a field that ends reuse: another session, version or model setting.
        let mut rarely = || next(8) == 0;
        i.session = rarely().then(|| "agent:main:main".to_string());
        i.version = if rarely() { 2 } else { 1 };
        match kind {
            CallKind::Exec => {
                i.exec = Some(ExecInput { command: "ls -la".into(), argv: vec!["ls".into()], ..Default::default() });
            }
            CallKind::ToolCall => {
                i.tool = Some(ToolInput {
                    server: Some("fs".into()),
                    name: "read".into(),
                    args: serde_json::json!({"path": "/tmp/x"}),
                });
            }
            _ => {}
        }
        if kind == CallKind::ModelCall || next(4) == 0 {
            i.model = Some(ModelInput {
                upstream: "openai".into(),
                upstream_kind: "openai".into(),
                endpoint: if next(8) == 0 { "responses" } else { "chat_completions" }.into(),
                name: if next(8) == 0 { "gpt-4o-mini" } else { "gpt-4o" }.into(),
                max_tokens: (next(8) != 0).then_some(1024),
                stream: next(8) != 0,
                tools: if next(8) == 0 { vec![] } else { vec!["exec".to_string(), "read".to_string()] },
            });
        }
        i.cost = match next(3) {
            0 => CostInput::default(),
            1 => CostInput { estimate_usd: Some(next(10_000) as f64 / 1e5), unbounded: vec![] },
            _ => CostInput { estimate_usd: None, unbounded: vec!["image".into()] },
        };
        for _ in 0..next(3) {
            i.budgets.push(BudgetInput {
                id: format!("b{}", next(3)),
                scope: "global".into(),
                window: "daily".into(),
                spent_usd: next(500) as f64 / 100.0,
                limit_usd: 5.0,
                remaining_usd: [f64::NAN, next(500) as f64 / 100.0][next(2)],
            });
        }
        if next(4) == 0 {
            i.grants.push(GrantInput {
                id: format!("g{}", next(3)),
                agent: i.agent.clone(),
                kind: CallKind::Exec,
                pattern: "git *".into(),
                arg_pattern: None,
                expires_at: None,
            });
        }
        i
    }

    #[test]
    fn a_kept_document_with_the_calls_own_fields_equals_a_fresh_build() {
        let needles = Needles::default();
        let mut next = crate::test_rng::seeded(0x5eed_7e3a);
        let before = hits();
        let mut models = 0;
        for n in 0..4_000 {
            let i = call(&mut next, n);
            models += usize::from(plain_model_call(&i).is_some());
            let got = super::super::input_value(&i, &needles);
            let fresh = super::super::KEYS.with(|k| super::super::build(k, &i, &needles));
            assert_eq!(got, fresh, "call {n}: {i:?}");
            if n % 97 == 0 {
                let json = crate::features::attach_to_json(&serde_json::to_value(&i).unwrap(), &needles);
                assert_eq!(got, json, "call {n}: {i:?}");
            }
        }
        // Both paths ran many times: kept documents reused, and documents built anew.
        let reused = hits() - before;
        assert!(reused > 200 && reused + 200 < models, "{reused} of {models} model calls reused a document");
    }

    #[test]
    fn the_kept_document_is_not_changed_by_a_later_call() {
        let needles = Needles::default();
        let mut first = PolicyInput::new(CallKind::ModelCall, "main", "11111111111111111111111111111111");
        first.model = Some(ModelInput { name: "gpt-4o".into(), ..Default::default() });
        let a = super::super::input_value(&first, &needles);
        let mut second = first.clone();
        second.trace_id = "22222222222222222222222222222222".into();
        second.cost.estimate_usd = Some(0.5);
        let before = hits();
        let b = super::super::input_value(&second, &needles);
        assert_eq!(hits(), before + 1);
        assert_eq!(a["trace_id"], Value::from("11111111111111111111111111111111"));
        assert_eq!(b["trace_id"], Value::from("22222222222222222222222222222222"));
        assert_eq!(b["cost"]["estimate_usd"], Value::from(0.5));
        // A third call like the first gets the first's values, not the second's.
        let c = super::super::input_value(&first, &needles);
        assert_eq!(c, a);
    }
}

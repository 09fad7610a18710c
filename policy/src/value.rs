//! Building the engine's input value straight from a [`PolicyInput`]. Going through
//! `serde_json::Value` and regorus's deserializer cost several microseconds per call; this
//! builds the same document (same field names, `null` for absent options) directly, with the
//! field-name keys allocated once per thread.

use std::collections::BTreeMap;

use regorus::Value;

use crate::{BudgetInput, GrantInput, PolicyInput};

macro_rules! keys {
    ($($name:ident),* $(,)?) => {
        /// Field names as engine values, shared by every input built on this thread.
        #[allow(non_snake_case)]
        struct Keys { $($name: Value),* }
        impl Keys {
            fn new() -> Keys { Keys { $($name: Value::from(stringify!($name))),* } }
        }
    };
}

keys!(
    version,
    kind,
    agent,
    session,
    trace_id,
    model,
    exec,
    tool,
    cost,
    budgets,
    grants,
    now,
    upstream,
    upstream_kind,
    endpoint,
    name,
    max_tokens,
    stream,
    tools,
    command,
    argv,
    cwd,
    resolved_path,
    workspace,
    server,
    args,
    estimate_usd,
    id,
    scope,
    window,
    spent_usd,
    limit_usd,
    remaining_usd,
    pattern,
    arg_pattern,
    expires_at,
);

thread_local! {
    static KEYS: Keys = Keys::new();
}

/// The input document for `input`, equal to converting its JSON serialization.
pub(crate) fn input_value(input: &PolicyInput) -> Value {
    KEYS.with(|k| build(k, input))
}

fn build(k: &Keys, i: &PolicyInput) -> Value {
    let mut m = BTreeMap::new();
    m.insert(k.version.clone(), Value::from(u64::from(i.version)));
    m.insert(k.kind.clone(), Value::from(i.kind.as_str()));
    m.insert(k.agent.clone(), Value::from(i.agent.as_str()));
    m.insert(k.session.clone(), opt_str(i.session.as_deref()));
    m.insert(k.trace_id.clone(), Value::from(i.trace_id.as_str()));
    let model = i.model.as_ref().map_or(Value::Null, |mo| {
        let mut o = BTreeMap::new();
        o.insert(k.upstream.clone(), Value::from(mo.upstream.as_str()));
        o.insert(k.upstream_kind.clone(), Value::from(mo.upstream_kind.as_str()));
        o.insert(k.endpoint.clone(), Value::from(mo.endpoint.as_str()));
        o.insert(k.name.clone(), Value::from(mo.name.as_str()));
        o.insert(k.max_tokens.clone(), mo.max_tokens.map_or(Value::Null, Value::from));
        o.insert(k.stream.clone(), Value::from(mo.stream));
        o.insert(k.tools.clone(), strings(&mo.tools));
        Value::from(o)
    });
    m.insert(k.model.clone(), model);
    let exec = i.exec.as_ref().map_or(Value::Null, |e| {
        let mut o = BTreeMap::new();
        o.insert(k.command.clone(), Value::from(e.command.as_str()));
        o.insert(k.argv.clone(), strings(&e.argv));
        o.insert(k.cwd.clone(), opt_str(e.cwd.as_deref()));
        o.insert(k.resolved_path.clone(), opt_str(e.resolved_path.as_deref()));
        o.insert(k.workspace.clone(), opt_str(e.workspace.as_deref()));
        Value::from(o)
    });
    m.insert(k.exec.clone(), exec);
    let tool = i.tool.as_ref().map_or(Value::Null, |t| {
        let mut o = BTreeMap::new();
        o.insert(k.server.clone(), opt_str(t.server.as_deref()));
        o.insert(k.name.clone(), Value::from(t.name.as_str()));
        o.insert(k.args.clone(), json(&t.args));
        Value::from(o)
    });
    m.insert(k.tool.clone(), tool);
    let mut cost = BTreeMap::new();
    cost.insert(k.estimate_usd.clone(), i.cost.estimate_usd.map_or(Value::Null, number));
    m.insert(k.cost.clone(), Value::from(cost));
    m.insert(k.budgets.clone(), Value::from(i.budgets.iter().map(|b| budget(k, b)).collect::<Vec<_>>()));
    m.insert(k.grants.clone(), Value::from(i.grants.iter().map(|g| grant(k, g)).collect::<Vec<_>>()));
    m.insert(k.now.clone(), Value::from(i.now.as_str()));
    Value::from(m)
}

fn budget(k: &Keys, b: &BudgetInput) -> Value {
    let mut o = BTreeMap::new();
    o.insert(k.id.clone(), Value::from(b.id.as_str()));
    o.insert(k.scope.clone(), Value::from(b.scope.as_str()));
    o.insert(k.window.clone(), Value::from(b.window.as_str()));
    o.insert(k.spent_usd.clone(), number(b.spent_usd));
    o.insert(k.limit_usd.clone(), number(b.limit_usd));
    o.insert(k.remaining_usd.clone(), number(b.remaining_usd));
    Value::from(o)
}

fn grant(k: &Keys, g: &GrantInput) -> Value {
    let mut o = BTreeMap::new();
    o.insert(k.id.clone(), Value::from(g.id.as_str()));
    o.insert(k.agent.clone(), Value::from(g.agent.as_str()));
    o.insert(k.kind.clone(), Value::from(g.kind.as_str()));
    o.insert(k.pattern.clone(), Value::from(g.pattern.as_str()));
    o.insert(k.arg_pattern.clone(), opt_str(g.arg_pattern.as_deref()));
    o.insert(k.expires_at.clone(), opt_str(g.expires_at.as_deref()));
    Value::from(o)
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

fn strings(items: &[String]) -> Value {
    Value::from(items.iter().map(|s| Value::from(s.as_str())).collect::<Vec<_>>())
}

/// JSON has no NaN or infinity: serde_json writes them as `null`, and so do we.
fn number(x: f64) -> Value {
    if x.is_finite() {
        Value::from(x)
    } else {
        Value::Null
    }
}

/// Arbitrary JSON (tool arguments), converted as regorus's deserializer would.
fn json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                n.as_f64().map_or(Value::Null, number)
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => {
            Value::from(o.iter().map(|(key, val)| (Value::from(key.as_str()), json(val))).collect::<BTreeMap<_, _>>())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallKind, CostInput, ExecInput, ModelInput, ToolInput};

    fn via_json(i: &PolicyInput) -> Value {
        Value::from(serde_json::to_value(i).unwrap())
    }

    #[test]
    fn direct_value_equals_the_json_conversion() {
        let mut m = PolicyInput::new(CallKind::ModelCall, "main", "t");
        m.session = Some("agent:main:main".into());
        m.model = Some(ModelInput {
            upstream: "openai".into(),
            upstream_kind: "openai".into(),
            endpoint: "chat_completions".into(),
            name: "gpt-4o".into(),
            max_tokens: Some(4096),
            stream: true,
            tools: vec!["exec".into(), "read".into()],
        });
        m.cost = CostInput { estimate_usd: Some(0.0412) };
        m.budgets.push(BudgetInput {
            id: "b".into(),
            scope: "global".into(),
            window: "daily".into(),
            spent_usd: 5.0,
            limit_usd: 5.0,
            remaining_usd: f64::NAN,
        });
        m.grants.push(GrantInput {
            id: "g1".into(),
            agent: "main".into(),
            kind: CallKind::Exec,
            pattern: "git *".into(),
            arg_pattern: None,
            expires_at: Some("2026-06-30T00:00:00Z".into()),
        });
        let mut x = PolicyInput::new(CallKind::Exec, "main", "t");
        x.exec = Some(ExecInput {
            command: "rm -rf /".into(),
            argv: vec!["rm".into(), "-rf".into()],
            cwd: None,
            resolved_path: Some("/bin/rm".into()),
            workspace: None,
        });
        let mut t = PolicyInput::new(CallKind::Plugin, "main", "t");
        t.tool = Some(ToolInput {
            server: None,
            name: "exec".into(),
            args: serde_json::json!({"command": "ls", "n": -3, "f": 1.5, "big": u64::MAX, "l": [null, true, {"z": 1}]}),
        });
        for i in [m, x, t, PolicyInput::new(CallKind::ToolCall, "a", "b")] {
            assert_eq!(input_value(&i), via_json(&i), "{i:?}");
        }
    }
}

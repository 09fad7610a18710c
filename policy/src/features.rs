//! Command features: the words and operators of an exec command, derived once per call in Rust
//! and handed to the policy as `input.exec.features` (see `docs/policy-input.md` §1). Splitting
//! and matching words in Rego cost a dozen builtin calls per decision; here it is one pass.
//!
//! Invariant: every field equals what the shipped bundle's Rego fallback (`exec_features_derived`
//! in `policies/exec.rego`) computes for the same command, so a bundle decides the same with or
//! without them; a unit test checks it on random commands. Features are never taken from the
//! caller: typed inputs have no such field, and [`attach_to_json`] overwrites a supplied one.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use decision::CallKind;
use regorus::Value;
use serde::Deserialize;

use crate::needles::Needles;

/// Substrings reported in `operators` when they occur anywhere in the command.
const OPERATORS: [&str; 9] = ["|", "||", "&&", ";", "&", ">", "<", "$(", "`"];

/// The command line under decision: `command`, or `argv` joined by spaces when it is empty.
pub(crate) fn command_line(command: &str, argv: &[String]) -> String {
    if command.is_empty() {
        argv.join(" ")
    } else {
        command.to_string()
    }
}

/// Field names of the features object (in key order, the cheapest order to build a map from),
/// the shared empty set and the operator strings, allocated once per thread.
struct Keys {
    names: [Value; 13],
    empty: Value,
    empty_object: Value,
    operators: [Value; 9],
}

thread_local! {
    static KEYS: Keys = Keys {
        names: [
            "cwd_in_workspace", "flags", "hits", "operators", "paths", "paths_in_workspace", "program",
            "raw_tokens", "redirects", "text", "tokens", "triggers", "words",
        ]
        .map(Value::from),
        empty: Value::new_set(),
        empty_object: Value::new_object(),
        operators: OPERATORS.map(Value::from),
    };
}

/// The features object for one command line run in `cwd` by an agent whose workspace is
/// `workspace` (`None` where the input's field is not a string); `needles` are the serving
/// bundle's declarations (`triggers`, `hits`).
pub(crate) fn features(command: &str, cwd: Option<&str>, workspace: Option<&str>, needles: &Needles) -> Value {
    KEYS.with(|k| build(k, command, cwd, workspace.filter(|ws| !ws.is_empty()), needles))
}

/// `path` is the workspace or below it (`path + "/"` starts with `workspace + "/"`, so
/// /home/u/proj2 is not under /home/u/proj).
fn inside(path: &str, workspace: &str) -> bool {
    path.as_bytes().starts_with(workspace.as_bytes()) && path.as_bytes().get(workspace.len()).is_none_or(|b| *b == b'/')
}

/// `workspace` is `None` where it is not a non-empty string.
fn build(k: &Keys, command: &str, cwd: Option<&str>, workspace: Option<&str>, needles: &Needles) -> Value {
    let in_workspace = matches!((cwd, workspace), (Some(cwd), Some(ws)) if inside(cwd, ws));
    // Shell operators become separate words, `||` is not a pipe. Same replacements, in the same
    // (sorted key) order, as the Rego `strings.replace_n` call.
    let mut spaced = if command.contains("||") { command.replace("||", " ; ") } else { command.to_string() };
    for (from, to) in [("\t", " "), ("\n", " "), ("&&", " && "), (";", " ; "), ("|", " | ")] {
        if spaced.contains(from) {
            spaced = spaced.replace(from, to);
        }
    }
    // Most commands are lower-case already: then the words as written are the lower-cased ones.
    let lower = spaced.bytes().any(|b| b.is_ascii_uppercase()) || !spaced.is_ascii();
    let text: Cow<str> = if lower { Cow::Owned(spaced.to_lowercase()) } else { Cow::Borrowed(&spaced) };
    // Most words have no "/": `tokens` and `words` share one engine string then (cloning a
    // value is a reference count).
    let mut tokens: Vec<Value> = Vec::with_capacity(16);
    tokens.extend(text.split(' ').filter(|t| !t.is_empty()).map(Value::from));
    let name = |t: &Value| match t {
        Value::String(s) => match s.rsplit_once('/') {
            Some((_, last)) => Value::from(last),
            None => t.clone(),
        },
        _ => t.clone(),
    };
    // Inserting into one small node is cheaper than collecting (a vector, a sort, a node).
    let (mut words, mut flags) = (BTreeSet::new(), BTreeSet::new());
    for t in &tokens {
        words.insert(name(t));
        if matches!(t, Value::String(s) if s.starts_with('-')) {
            flags.insert(t.clone());
        }
    }
    let program = tokens.first().map_or_else(|| Value::from(""), name);
    let tokens = Value::from(tokens);
    // Words as written: split once, only where they differ from `tokens` or a path or
    // redirection can be among them.
    let raw: Vec<&str> = if lower || command.contains(['>', '/', '~', '=']) {
        spaced.split(' ').filter(|t| !t.is_empty()).collect()
    } else {
        Vec::new()
    };
    let raw_tokens =
        if lower { Value::from(raw.iter().map(|t| Value::from(*t)).collect::<Vec<_>>()) } else { tokens.clone() };
    let mut operators = BTreeSet::new();
    for (op, v) in OPERATORS.iter().zip(&k.operators) {
        if command.contains(op) {
            operators.insert(v.clone());
        }
    }
    let (paths, paths_in_workspace) = absolute_paths(&raw, workspace, &k.empty);
    let redirects = if command.contains('>') { redirect_targets(&raw, &k.empty) } else { k.empty.clone() };
    let triggers = needles.triggers(&words, &k.empty_object);
    let hits = needles.hits(&text, &k.empty_object);
    let set = |s: BTreeSet<Value>| if s.is_empty() { k.empty.clone() } else { Value::from(s) };
    let values = [
        Some(Value::from(in_workspace)),
        Some(set(flags)),
        hits,
        Some(set(operators)),
        Some(paths),
        Some(Value::from(paths_in_workspace)),
        Some(program),
        Some(raw_tokens),
        Some(redirects),
        Some(Value::from(text.as_ref())),
        Some(tokens),
        triggers,
        Some(set(words)),
    ];
    let fields: BTreeMap<Value, Value> =
        k.names.iter().zip(values).filter_map(|(key, v)| v.map(|v| (key.clone(), v))).collect();
    Value::from(fields)
}

/// Absolute and home paths among the words as written (`/etc/x`, `~/.profile`), and the values
/// of `name=value` words that are such paths (`of=/dev/sda`, `--output=/tmp/x`).
/// Also whether every one of them is inside `workspace` (true when there is none).
fn absolute_paths(raw: &[&str], workspace: Option<&str>, empty: &Value) -> (Value, bool) {
    let absolute = |p: &str| p.starts_with('/') || p.starts_with('~');
    let (mut paths, mut all_inside) = (BTreeSet::new(), true);
    let mut add = |p: &str| {
        all_inside &= workspace.is_some_and(|ws| inside(p, ws));
        paths.insert(Value::from(p));
    };
    for t in raw {
        if absolute(t) {
            add(t);
        }
        if let Some((_, value)) = t.split_once('=') {
            if absolute(value) {
                add(value);
            }
        }
    }
    (if paths.is_empty() { empty.clone() } else { Value::from(paths) }, all_inside)
}

/// Targets of output redirections, as written. Every piece of a word after a `>` that does not
/// name a descriptor (`&1`) is one (`>out`, `2>>log`, `x>/tmp/y`), and a word ending in `>` (`>`,
/// `2>`, `&>>`) takes the next word. Words, not a shell parser: `a->b` counts `b`, which errs
/// towards holding (only absolute targets outside the workspace are held).
fn redirect_targets(raw: &[&str], empty: &Value) -> Value {
    let mut targets = BTreeSet::new();
    for (i, t) in raw.iter().enumerate().filter(|(_, t)| t.contains('>')) {
        for piece in t.split('>').skip(1) {
            if !piece.is_empty() && !piece.starts_with('&') {
                targets.insert(Value::from(piece));
            }
        }
        if t.ends_with('>') {
            if let Some(next) = raw.get(i + 1) {
                targets.insert(Value::from(*next));
            }
        }
    }
    if targets.is_empty() {
        empty.clone()
    } else {
        Value::from(targets)
    }
}

/// Features of a tool call that carries a shell command (`args.command` a string; kinds
/// `tool_call` and `plugin`), as `input.tool.features`: the same words as an exec command's,
/// with `cwd` the tool's `workdir` (else the workspace) and `workspace` the agent's
/// (`input.plugin.workspace`, unknown for MCP calls).
pub(crate) fn tool_features(
    kind: CallKind,
    args: &serde_json::Value,
    workspace: Option<&str>,
    needles: &Needles,
) -> Option<Value> {
    if !matches!(kind, CallKind::ToolCall | CallKind::Plugin) {
        return None;
    }
    let command = args.get("command")?.as_str()?;
    let cwd = args.get("workdir").and_then(serde_json::Value::as_str).filter(|w| !w.is_empty()).or(workspace);
    Some(features(command, cwd, workspace, needles))
}

/// The derived fields of `input.plugin` (`plugin.rs`), which a caller cannot supply.
const PLUGIN_DERIVED: [&str; 5] = ["family", "paths", "recipients", "hosts", "grant_args"];

/// Make an untyped input's derived fields the engine's own: `exec.features` (for `exec`
/// inputs whose command the Rego rules accept), `tool.features` (tool kinds whose
/// `args.command` is a string), `tool.name_features` and `tool.arg_features` (tool kinds; the
/// first when `name` is a string) and the facts of `plugin` (kind `plugin`); anything a caller
/// supplied under those names is replaced or removed.
pub(crate) fn attach_to_json(input: &serde_json::Value, needles: &Needles) -> Value {
    let mut json = input.clone();
    let kind = input.get("kind").and_then(|k| CallKind::deserialize(k).ok());
    let mut derived = None;
    if let Some(exec) = json.get_mut("exec").and_then(serde_json::Value::as_object_mut) {
        exec.remove("features");
        if kind == Some(CallKind::Exec) {
            let field = |name: &str| exec.get(name).and_then(serde_json::Value::as_str);
            derived = json_command(exec).map(|c| features(&c, field("cwd"), field("workspace"), needles));
        }
    }
    let workspace = input.pointer("/plugin/workspace").and_then(serde_json::Value::as_str).map(str::to_string);
    let (mut tool_derived, mut name_derived, mut paths_derived) = (None, None, None);
    if let Some(tool) = json.get_mut("tool").and_then(serde_json::Value::as_object_mut) {
        for field in ["features", "name_features", "arg_features"] {
            tool.remove(field);
        }
        if let Some(k) = kind {
            if let Some(args) = tool.get("args") {
                tool_derived = tool_features(k, args, workspace.as_deref(), needles);
            }
            if let Some(name) = tool.get("name").and_then(serde_json::Value::as_str) {
                name_derived = crate::tool_features::name_features(k, name, needles);
            }
            paths_derived = crate::tool_features::arg_features(k, tool.get("args"), needles);
        }
    }
    let mut facts = None;
    if let Some(plugin) = json.get_mut("plugin").and_then(serde_json::Value::as_object_mut) {
        for k in PLUGIN_DERIVED {
            plugin.remove(k);
        }
        let name = plugin.get("tool_name").and_then(serde_json::Value::as_str);
        let args = input.pointer("/tool/args");
        if let (Some(CallKind::Plugin), Some(name), Some(args)) = (kind, name, args) {
            let derived_paths: Vec<String> = plugin
                .get("derived_paths")
                .and_then(serde_json::Value::as_array)
                .map(|a| a.iter().filter_map(|p| p.as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            facts = Some(crate::plugin::facts(name, args, workspace.as_deref(), &derived_paths));
        }
    }
    let mut value = Value::from(json);
    {
        let root = &mut value;
        insert_under(root, "exec", "features", derived);
        insert_under(root, "tool", "features", tool_derived);
        insert_under(root, "tool", "name_features", name_derived);
        insert_under(root, "tool", "arg_features", paths_derived);
        if let Some(f) = facts {
            let strings = |v: &[String]| Value::from(v.iter().map(|s| Value::from(s.as_str())).collect::<Vec<_>>());
            insert_under(root, "plugin", "family", Some(Value::from(f.family.as_str())));
            insert_under(root, "plugin", "paths", Some(strings(&f.paths)));
            insert_under(root, "plugin", "recipients", Some(strings(&f.recipients)));
            insert_under(root, "plugin", "hosts", Some(strings(&f.hosts)));
            insert_under(root, "plugin", "grant_args", Some(f.grant_args.as_deref().map_or(Value::Null, Value::from)));
        }
    }
    value
}

/// Set `root[outer][field] = v` when `root[outer]` is an object and `v` is some.
fn insert_under(root: &mut Value, outer: &str, field: &str, v: Option<Value>) {
    let Some(v) = v else { return };
    let Ok(root) = root.as_object_mut() else { return };
    if let Some(Ok(o)) = root.get_mut(&Value::from(outer)).map(Value::as_object_mut) {
        o.insert(Value::from(field), v);
    }
}

/// The command line as the Rego `command` rule reads it from JSON, or `None` where that rule
/// is undefined (then the bundle's own fallback decides, as before features existed).
fn json_command(exec: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let command = exec.get("command")?.as_str()?;
    if !command.is_empty() {
        return Some(command.to_string());
    }
    let argv = exec.get("argv")?.as_array()?;
    let argv: Option<Vec<String>> = argv.iter().map(|a| a.as_str().map(str::to_string)).collect();
    Some(argv?.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle;
    use crate::engine::BundleSource;

    /// The Rust features must equal the shipped bundle's Rego fallback, or a decision would
    /// depend on whether they were supplied.
    #[test]
    fn rust_features_equal_the_rego_fallback() {
        let pieces = [
            "sudo",
            "/usr/bin/SUDO",
            "rm",
            "-RF",
            "||",
            "|",
            "&&",
            "&",
            ";",
            ";;",
            ">",
            ">>",
            "2>&1",
            "<(",
            "$(curl",
            "`x`",
            "\t",
            "\n",
            "  ",
            "",
            "a/b/",
            "/",
            "ΣΑΣ",
            "İx",
            "of=/dev/sda",
            "~/.ssh/id_rsa",
            "x|y",
            "a&&b||c",
            "2>/etc/x",
            "x>>y",
            "2>",
            "&>",
            ">&2",
            ">>",
            "a->b",
            "-Rf",
            "--recursive",
        ];
        let mut next = crate::test_rng::seeded(0x9E37_79B9_7F4A_7C15u64);
        let files = bundle::read_files(&BundleSource::Embedded).unwrap();
        let mut engine = bundle::build_engine(&files, &serde_json::Value::Null, false).unwrap();
        bundle::prepare(&mut engine).unwrap();
        let needles = Needles::from_engine(&engine);
        let mut commands: Vec<String> = vec!["".into(), " ".into(), "git status".into()];
        let dirs = [
            serde_json::json!("/home/u/proj"),
            serde_json::json!("/home/u/proj/"),
            serde_json::json!("/home/u/proj/src"),
            serde_json::json!("/home/u/proj2"),
            serde_json::json!("/home/u"),
            serde_json::json!("/home/u/projé"),
            serde_json::json!(""),
            serde_json::json!("/"),
            serde_json::Value::Null,
            serde_json::json!(5),
        ];
        for _ in 0..400 {
            let n = 1 + next(6);
            commands.push((0..n).map(|_| pieces[next(pieces.len())]).collect::<Vec<_>>().join([" ", ""][next(2)]));
        }
        for command in commands {
            let (cwd, ws) = (&dirs[next(dirs.len())], &dirs[next(dirs.len())]);
            let input = serde_json::json!({"kind": "exec",
                "exec": {"command": command, "argv": ["x"], "cwd": cwd, "workspace": ws}});
            engine.set_input(regorus::Value::from(input));
            let rego = engine.eval_rule("data.clawbutler.exec_features_derived".to_string()).unwrap();
            let rust = features(&command_line(&command, &["x".to_string()]), cwd.as_str(), ws.as_str(), &needles);
            assert_eq!(rust, rego, "{command:?} {cwd} {ws}");
        }
    }

    #[test]
    fn supplied_features_are_replaced_or_removed() {
        let spoofed = serde_json::json!({"words": ["git"], "text": "git"});
        let input = serde_json::json!({"kind": "exec", "exec": {"command": "sudo ls", "features": spoofed}});
        let v = attach_to_json(&input, &Needles::default());
        assert_eq!(v["exec"]["features"], features("sudo ls", None, None, &Needles::default()));
        let inside = serde_json::json!({"kind": "exec",
            "exec": {"command": "ls", "cwd": "/w/a", "workspace": "/w", "features": {"cwd_in_workspace": false}}});
        assert_eq!(
            attach_to_json(&inside, &Needles::default())["exec"]["features"]["cwd_in_workspace"],
            Value::from(true)
        );
        let outside = serde_json::json!({"kind": "exec",
            "exec": {"command": "ls", "cwd": "/w2", "workspace": "/w", "features": {"cwd_in_workspace": true}}});
        assert_eq!(
            attach_to_json(&outside, &Needles::default())["exec"]["features"]["cwd_in_workspace"],
            Value::from(false)
        );
        let input = serde_json::json!({"kind": "exec", "exec": {"command": 5, "features": spoofed}});
        assert_eq!(attach_to_json(&input, &Needles::default())["exec"]["features"], Value::Undefined);
        let input = serde_json::json!({"kind": "plugin", "exec": {"command": "ls", "features": spoofed}});
        assert_eq!(attach_to_json(&input, &Needles::default())["exec"]["features"], Value::Undefined);
    }

    #[test]
    fn tool_calls_carrying_a_command_get_the_same_features() {
        let n = Needles::default();
        let spoofed = serde_json::json!({"words": ["git"], "text": "git"});
        let input = serde_json::json!({"kind": "plugin",
            "tool": {"name": "exec", "args": {"command": "sudo rm -rf /", "workdir": "/w/sub"}, "features": spoofed},
            "plugin": {"tool_name": "exec", "workspace": "/w", "family": "other", "paths": ["/spoof"]}});
        let v = attach_to_json(&input, &n);
        assert_eq!(v["tool"]["features"], features("sudo rm -rf /", Some("/w/sub"), Some("/w"), &n));
        assert_eq!(v["tool"]["features"]["cwd_in_workspace"], Value::from(true));
        assert_eq!(v["plugin"]["family"], Value::from("exec"));
        assert_eq!(v["plugin"]["paths"], Value::from(Vec::<Value>::new()));
        assert_eq!(v["plugin"]["grant_args"], Value::from("sudo rm -rf /"));
        // Without a command, or for an exec input, there are none; a model call keeps no spoof.
        let none = serde_json::json!({"kind": "tool_call", "tool": {"name": "x", "args": {"command": 5}, "features": spoofed}});
        assert_eq!(attach_to_json(&none, &n)["tool"]["features"], Value::Undefined);
        let mcp = serde_json::json!({"kind": "tool_call", "tool": {"name": "run", "args": {"command": "ls"}}});
        assert_eq!(attach_to_json(&mcp, &n)["tool"]["features"], features("ls", None, None, &n));
        let model = serde_json::json!({"kind": "model_call", "plugin": {"tool_name": "write", "family": "x"}, "tool": {"args": {"command": "ls"}}});
        let v = attach_to_json(&model, &n);
        assert_eq!(
            (v["plugin"]["family"].clone(), v["tool"]["features"].clone()),
            (Value::Undefined, Value::Undefined)
        );
    }
}

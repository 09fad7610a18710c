//! Command features: the words and operators of an exec command, derived once per call in Rust
//! and handed to the policy as `input.exec.features` (see `docs/policy-input.md` §1). Splitting
//! and matching words in Rego cost a dozen builtin calls per decision; here it is one pass.
//!
//! Invariant: every field equals what the shipped bundle's Rego fallback (`exec_features_derived`
//! in `policies/exec.rego`) computes for the same command, so a bundle decides the same with or
//! without them; a unit test checks it on random commands. Features are never taken from the
//! caller: typed inputs have no such field, and [`attach_to_json`] overwrites a supplied one.

use std::collections::{BTreeMap, BTreeSet};

use regorus::Value;

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

/// Field names of the features object, allocated once per thread.
struct Keys([Value; 6]);

thread_local! {
    static KEYS: Keys =
        Keys(["operators", "program", "tokens", "words", "text", "cwd_in_workspace"].map(Value::from));
}

/// The features object for one command line run in `cwd` by an agent whose workspace is
/// `workspace` (`None` where the input's field is not a string).
pub(crate) fn features(command: &str, cwd: Option<&str>, workspace: Option<&str>) -> Value {
    KEYS.with(|k| build(k, command, cwd_in_workspace(cwd, workspace)))
}

/// `cwd` is the workspace or below it (`cwd + "/"` starts with `workspace + "/"`, so
/// /home/u/proj2 is not under /home/u/proj); false without a non-empty workspace.
fn cwd_in_workspace(cwd: Option<&str>, workspace: Option<&str>) -> bool {
    match (cwd, workspace) {
        (Some(cwd), Some(ws)) if !ws.is_empty() => {
            cwd.as_bytes().starts_with(ws.as_bytes()) && cwd.as_bytes().get(ws.len()).is_none_or(|b| *b == b'/')
        }
        _ => false,
    }
}

fn build(Keys(keys): &Keys, command: &str, in_workspace: bool) -> Value {
    // Shell operators become separate words, `||` is not a pipe. Same replacements, in the same
    // (sorted key) order, as the Rego `strings.replace_n` call.
    let mut spaced = if command.contains("||") { command.replace("||", " ; ") } else { command.to_string() };
    for (from, to) in [("\t", " "), ("\n", " "), ("&&", " && "), (";", " ; "), ("|", " | ")] {
        if spaced.contains(from) {
            spaced = spaced.replace(from, to);
        }
    }
    let text = spaced.to_lowercase();
    // Most words have no "/": `tokens` and `words` share one engine string then (cloning a
    // value is a reference count). Words as written (`raw_tokens` in Rego) are only needed on
    // rare paths, so the policy derives those itself.
    let tokens: Vec<Value> = text.split(' ').filter(|t| !t.is_empty()).map(Value::from).collect();
    let name = |t: &Value| match t {
        Value::String(s) => match s.rsplit_once('/') {
            Some((_, last)) => Value::from(last),
            None => t.clone(),
        },
        _ => t.clone(),
    };
    let words: BTreeSet<Value> = tokens.iter().map(name).collect();
    let program = tokens.first().map_or_else(|| Value::from(""), name);
    let operators: BTreeSet<Value> =
        OPERATORS.iter().filter(|op| command.contains(*op)).map(|op| Value::from(*op)).collect();
    let values = [
        Value::from(operators),
        program,
        Value::from(tokens),
        Value::from(words),
        Value::from(text),
        Value::from(in_workspace),
    ];
    Value::from(keys.iter().cloned().zip(values).collect::<BTreeMap<_, _>>())
}

/// Make an untyped input's `exec.features` the derived one (for `exec` inputs whose command the
/// Rego rules accept), or remove it, so a caller can never supply its own.
pub(crate) fn attach_to_json(input: &serde_json::Value) -> Value {
    let mut json = input.clone();
    let mut derived = None;
    if let Some(exec) = json.get_mut("exec").and_then(serde_json::Value::as_object_mut) {
        exec.remove("features");
        if input.get("kind").and_then(serde_json::Value::as_str) == Some("exec") {
            let field = |name: &str| exec.get(name).and_then(serde_json::Value::as_str);
            derived = json_command(exec).map(|c| features(&c, field("cwd"), field("workspace")));
        }
    }
    let mut value = Value::from(json);
    if let Some(f) = derived {
        if let Ok(root) = value.as_object_mut() {
            if let Some(exec) = root.get_mut(&Value::from("exec")) {
                let mut fields: BTreeMap<Value, Value> = exec
                    .as_object()
                    .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                fields.insert(Value::from("features"), f);
                *exec = Value::from(fields);
            }
        }
    }
    value
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
        ];
        let mut next = crate::test_rng::seeded(0x9E37_79B9_7F4A_7C15u64);
        let files = bundle::read_files(&BundleSource::Embedded).unwrap();
        let mut engine = bundle::build_engine(&files, &serde_json::Value::Null, false).unwrap();
        bundle::prepare(&mut engine).unwrap();
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
            let rust = features(&command_line(&command, &["x".to_string()]), cwd.as_str(), ws.as_str());
            assert_eq!(rust, rego, "{command:?} {cwd} {ws}");
        }
    }

    #[test]
    fn supplied_features_are_replaced_or_removed() {
        let spoofed = serde_json::json!({"words": ["git"], "text": "git"});
        let input = serde_json::json!({"kind": "exec", "exec": {"command": "sudo ls", "features": spoofed}});
        let v = attach_to_json(&input);
        assert_eq!(v["exec"]["features"], features("sudo ls", None, None));
        let inside = serde_json::json!({"kind": "exec",
            "exec": {"command": "ls", "cwd": "/w/a", "workspace": "/w", "features": {"cwd_in_workspace": false}}});
        assert_eq!(attach_to_json(&inside)["exec"]["features"]["cwd_in_workspace"], Value::from(true));
        let outside = serde_json::json!({"kind": "exec",
            "exec": {"command": "ls", "cwd": "/w2", "workspace": "/w", "features": {"cwd_in_workspace": true}}});
        assert_eq!(attach_to_json(&outside)["exec"]["features"]["cwd_in_workspace"], Value::from(false));
        let input = serde_json::json!({"kind": "exec", "exec": {"command": 5, "features": spoofed}});
        assert_eq!(attach_to_json(&input)["exec"]["features"], Value::Undefined);
        let input = serde_json::json!({"kind": "plugin", "exec": {"command": "ls", "features": spoofed}});
        assert_eq!(attach_to_json(&input)["exec"]["features"], Value::Undefined);
    }
}

//! Tool-call features: what the tool rules derive from a tool's name and arguments, computed
//! once per call in Rust and handed to the policy as `input.tool.name_features` and
//! `input.tool.arg_features` (see `docs/policy-input.md` §1). In Rego, splitting the name into
//! parts, testing a dozen substrings and walking the arguments for path-like keys and credential
//! hints cost most of a tool-call decision; here it is one pass each.
//!
//! Invariant: every field equals what the shipped bundle's Rego fallback
//! (`tool_name_features_derived` in `policies/tools.rego`, `tool_arg_features_derived` in
//! `policies/secrets.rego`) computes for the same call, so a bundle decides the same with or
//! without them; unit tests check it on tables of names and arguments. Like the command
//! features they are never taken from the caller (`features::attach_to_json` replaces them).

use std::collections::{BTreeMap, BTreeSet};

use decision::CallKind;
use regorus::Value;

use crate::needles::Needles;

/// The characters that separate a tool name's parts (`send_email`, `send-email`, `mail.send`,
/// `slack:post`, `github/create_issue` all split into words).
const SEPARATORS: [char; 5] = ['-', '.', ':', '/', '_'];

/// Field names of the name features, in key order, and the shared empty values, once per thread.
struct Keys {
    names: [Value; 5],
    /// `hits`, `paths`.
    arg_names: [Value; 2],
    empty_set: Value,
    empty_object: Value,
}

thread_local! {
    static KEYS: Keys = Keys {
        names: ["hit", "hits", "name", "parts", "words"].map(Value::from),
        arg_names: ["hits", "paths"].map(Value::from),
        empty_set: Value::new_set(),
        empty_object: Value::new_object(),
    };
}

/// `input.tool.name_features` for a call of tool `name` (kinds `tool_call` and `plugin` only):
/// the lower-cased `name`, its `parts`, the bundle's `words` / `hits`, and `hit` (either is not
/// empty). All or nothing: `None` unless the bundle declares both groups, so a rule that reads
/// one field may rely on the others.
pub(crate) fn name_features(kind: CallKind, name: &str, needles: &Needles) -> Option<Value> {
    if !matches!(kind, CallKind::ToolCall | CallKind::Plugin) {
        return None;
    }
    KEYS.with(|k| {
        let lower = name.to_lowercase();
        let parts: BTreeSet<Value> = lower.split(SEPARATORS).filter(|p| !p.is_empty()).map(Value::from).collect();
        let words = needles.tool_words(&parts, &k.empty_object)?;
        let hits = needles.tool_hits(&lower, &k.empty_object)?;
        let hit = words != k.empty_object || hits != k.empty_object;
        let parts = if parts.is_empty() { k.empty_set.clone() } else { Value::from(parts) };
        let values = [Value::from(hit), hits, Value::from(lower), parts, words];
        let fields: BTreeMap<Value, Value> = k.names.iter().cloned().zip(values).collect();
        Some(Value::from(fields))
    })
}

/// `input.tool.arg_features` (kinds `tool_call` and `plugin` only, and only when the bundle
/// declares `tool_path_keys` and `feature_substrings`): `paths`, the strings among the
/// top-level arguments named by one of those keys (a string value itself or the strings of an
/// array value; none when `args` is not an object), and `hits`, the substrings of
/// `feature_substrings` occurring in any of them as written (per group, as `exec.features.hits`).
pub(crate) fn arg_features(kind: CallKind, args: Option<&serde_json::Value>, needles: &Needles) -> Option<Value> {
    if !matches!(kind, CallKind::ToolCall | CallKind::Plugin) {
        return None;
    }
    let keys = needles.path_keys()?;
    let mut paths: BTreeSet<&str> = BTreeSet::new();
    if let Some(args) = args.and_then(serde_json::Value::as_object) {
        for v in args.iter().filter(|(key, _)| keys.contains(key.as_str())).map(|(_, v)| v) {
            match v {
                serde_json::Value::String(s) => {
                    paths.insert(s);
                }
                serde_json::Value::Array(items) => paths.extend(items.iter().filter_map(serde_json::Value::as_str)),
                _ => {}
            }
        }
    }
    KEYS.with(|k| {
        let hits = needles.hits_in_any(paths.iter().copied(), &k.empty_object)?;
        let paths = if paths.is_empty() {
            k.empty_set.clone()
        } else {
            Value::from(paths.into_iter().map(Value::from).collect::<BTreeSet<_>>())
        };
        let fields: BTreeMap<Value, Value> = k.arg_names.iter().cloned().zip([hits, paths]).collect();
        Some(Value::from(fields))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle;
    use crate::engine::BundleSource;

    fn shipped() -> (regorus::Engine, Needles) {
        let files = bundle::read_files(&BundleSource::Embedded).unwrap();
        let mut engine = bundle::build_engine(&files, &serde_json::Value::Null, false).unwrap();
        bundle::prepare(&mut engine).unwrap();
        let needles = Needles::from_engine(&engine);
        (engine, needles)
    }

    /// Names the rules look at, and tricky ones: unicode (whose lower-casing changes length),
    /// empty, only separators, namespaced `server__tool`, camelCase, dashes, very long.
    fn names() -> Vec<String> {
        let mut names: Vec<String> = [
            "",
            "_",
            "-.:/_",
            "echo",
            "send_email",
            "SendEmail",
            "sendEmail",
            "send-email",
            "mail.send",
            "slack:post",
            "github/create_issue",
            "mail__send_email",
            "cb-main__x",
            "list_emails",
            "get_messages",
            "read_drafts",
            "draft-send",
            "message",
            "MESSAGE",
            "reply",
            "notify_team",
            "post_message",
            "postMessage",
            "imessage",
            "pay",
            "pay_invoice",
            "Stripe.Charge",
            "paypal_search",
            "wallet_balance",
            "list_payments",
            "bank_transfer",
            "write",
            "write_file",
            "Write_File",
            "apply_patch",
            "create_directory",
            "read_file",
            "fetch_url",
            "browser_navigate",
            "http.request",
            "ΣΑΣ_send",
            "İstanbul",
            "émail",
            "K_mail",
            "🙂_send_🙂",
            "a__b___c",
        ]
        .map(String::from)
        .to_vec();
        names.push(format!("{}_send_{}", "x".repeat(5000), "Y".repeat(3000)));
        names
    }

    /// The Rust features must equal the shipped bundle's Rego fallback, or a decision would
    /// depend on whether they were supplied.
    #[test]
    fn rust_name_features_equal_the_rego_fallback() {
        let (mut engine, needles) = shipped();
        for kind in ["tool_call", "plugin"] {
            for name in names() {
                let input = serde_json::json!({"kind": kind, "tool": {"name": name, "args": {}}});
                engine.set_input(regorus::Value::from(input));
                let rego = engine.eval_rule("data.clawbutler.tool_name_features_derived".to_string()).unwrap();
                let rust = name_features(CallKind::ToolCall, &name, &needles).unwrap();
                assert_eq!(rust, rego, "{name:?}");
            }
        }
        // The shipped bundle declares both groups: a hit is reported, a plain name has none.
        let send = name_features(CallKind::ToolCall, "Send_Email", &needles).unwrap();
        assert_eq!(send["hits"]["message"], Value::from(BTreeSet::from(["email", "mail", "send"].map(Value::from))));
        let echo = name_features(CallKind::ToolCall, "echo", &needles).unwrap();
        assert_eq!((echo["hits"].clone(), echo["words"].clone()), (Value::new_object(), Value::new_object()));
        assert_eq!((echo["hit"].clone(), send["hit"].clone()), (Value::from(false), Value::from(true)));
        assert_eq!(name_features(CallKind::Exec, "x", &needles), None);
        // The example of docs/policy-input.md §1.
        let doc = name_features(CallKind::ToolCall, "Files.Write_File", &needles).unwrap();
        let expected = serde_json::json!({"name": "files.write_file", "parts": ["file", "files", "write"],
            "words": {"names": ["write"]}, "hits": {}, "hit": true});
        assert_eq!(doc.to_json_str().unwrap(), Value::from(expected).to_json_str().unwrap());
        let args = serde_json::json!({"path": "/home/u/.ssh/config", "content": "x"});
        let doc = arg_features(CallKind::ToolCall, Some(&args), &needles).unwrap();
        let expected = serde_json::json!({"paths": ["/home/u/.ssh/config"], "hits": {"secrets": [".ssh/", "/.ssh"]}});
        assert_eq!(doc.to_json_str().unwrap(), Value::from(expected).to_json_str().unwrap());
    }

    /// The tool rules' gate (`name_features.hit` in tools.rego) is sound: whenever the engine finds
    /// none of the declared words or substrings in a name, no name rule would have fired (checked
    /// on the Rego fallback, which evaluates every rule). Every exact name the rules list, in any
    /// case, opens the gate.
    #[test]
    fn names_without_a_hit_fire_no_name_rule() {
        let files = bundle::read_files(&BundleSource::Embedded).unwrap();
        let config = serde_json::json!({"workspace_roots": ["/srv"]});
        let mut engine = bundle::build_engine(&files, &config, false).unwrap();
        bundle::prepare(&mut engine).unwrap();
        let needles = Needles::from_engine(&engine);
        engine.set_input(Value::new_object());
        let exact = engine.eval_rule("data.clawbutler._exact_tool_names".to_string()).unwrap();
        let mut names = names();
        for n in exact.as_set().unwrap() {
            let n = n.as_string().unwrap().to_string();
            names.extend([n.to_uppercase(), format!("x_{n}"), n]);
        }
        let (mut closed, mut opened) = (0, 0);
        for kind in ["tool_call", "plugin"] {
            for name in &names {
                let f = name_features(CallKind::ToolCall, name, &needles).unwrap();
                let input = serde_json::json!({"kind": kind, "tool": {"name": name, "args": {"path": "/etc/x"}}});
                engine.set_input(regorus::Value::from(input));
                let holds = engine.eval_rule("data.clawbutler._tool_name_holds".to_string()).unwrap();
                let hit = f["hit"] == Value::from(true);
                assert_eq!(hit, f["words"] != Value::new_object() || f["hits"] != Value::new_object());
                if hit {
                    opened += 1;
                } else {
                    closed += 1;
                    assert_eq!(holds, Value::new_set(), "{name:?} fired a name rule without a hit");
                }
                if exact.as_set().unwrap().contains(&Value::from(name.to_lowercase())) {
                    assert!(hit, "{name:?}");
                }
            }
        }
        assert!(closed > 10 && opened > 10, "{closed} {opened}");
    }

    #[test]
    fn rust_arg_features_equal_the_rego_fallback() {
        let (mut engine, needles) = shipped();
        let args = [
            serde_json::Value::Null,
            serde_json::json!("path"),
            serde_json::json!(["/etc/x"]),
            serde_json::json!({}),
            serde_json::json!({"text": "hello ~/.ssh/id_rsa", "count": 3}),
            serde_json::json!({"path": "/srv/a", "filePath": "~/.ssh/id_rsa", "filepath": "b", "PATH": "/no/.env"}),
            serde_json::json!({"paths": ["/a", 5, null, "/b/.aws/credentials", ["/nested/.env"]], "files": [], "file": {"path": "/deep/.env"}}),
            serde_json::json!({"src": "", "dest": "é/ΣΑΣ", "dir": true, "cwd": 1.5, "target": "/HOME/.SSH/ID_RSA"}),
            serde_json::json!({"destination": "/a", "source": "/a", "directory": "x", "filename": ".env.example"}),
            serde_json::json!({"url": "https://x", "command": "cat ~/.aws/credentials", "path": "/x/curl/stripe"}),
            serde_json::json!({"path": ".ss", "file": "h/"}),
        ];
        let mut with_hits = 0;
        for kind in ["tool_call", "plugin"] {
            for a in &args {
                let input = serde_json::json!({"kind": kind, "tool": {"name": "x", "args": a}});
                engine.set_input(regorus::Value::from(input));
                let rego = engine.eval_rule("data.clawbutler.tool_arg_features_derived".to_string()).unwrap();
                let rust = arg_features(CallKind::ToolCall, Some(a), &needles).unwrap();
                assert_eq!(rust, rego, "{a}");
                with_hits += usize::from(rust["hits"]["secrets"] != Value::Undefined);
            }
        }
        // Hints are found as written: `/HOME/.SSH/ID_RSA` has none, `.env.example` has `.env`.
        assert_eq!(with_hits, 2 * 3);
        let input = serde_json::json!({"kind": "tool_call", "tool": {"name": "x"}});
        engine.set_input(regorus::Value::from(input));
        let rego = engine.eval_rule("data.clawbutler.tool_arg_features_derived".to_string()).unwrap();
        assert_eq!(arg_features(CallKind::ToolCall, None, &needles).unwrap(), rego);
        assert_eq!(arg_features(CallKind::ModelCall, None, &needles), None);
        assert_eq!(arg_features(CallKind::ToolCall, None, &Needles::default()), None);
    }
}

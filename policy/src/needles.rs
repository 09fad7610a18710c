//! What a bundle asks the engine to look for in every exec command. A bundle may declare two
//! constant rules in `package clawbutler`:
//!
//! - `feature_words`: an object of named groups of program names; `exec.features.triggers` maps
//!   each group with a member among the command's `words` to the set of those found;
//! - `feature_substrings`: an object of named groups of substrings; `exec.features.hits` maps
//!   each group with a substring in the command's lower-cased `text` to the set of those found.
//!
//! Both are read once per revision and matched in Rust (a hash lookup per word, one pass of an
//! Aho-Corasick automaton for all substrings), so a rule asks "does any credential hint occur?"
//! or "is `rm` among the programs?" with one lookup
//! (`input.exec.features.hits.secrets`) instead of a `strings.replace_n` scan per hint. A
//! bundle that declares neither gets neither field, and its rules derive what they need in Rego.
//!
//! The same two kinds of groups exist for tool names (`input.tool.name_features`, see
//! `tool_features.rs`): `tool_feature_words` (matched against the name's parts) and
//! `tool_feature_substrings` (matched in the lower-cased name); and `tool_path_keys`, a set of
//! argument names whose string values are the call's path-like arguments
//! (`input.tool.arg_features.paths`, in which `feature_substrings` are looked for: `.hits`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use aho_corasick::AhoCorasick;
use regorus::Value;

/// The rule names a bundle declares its needles under.
const WORDS_RULE: &str = "data.clawbutler.feature_words";
const SUBSTRINGS_RULE: &str = "data.clawbutler.feature_substrings";
const TOOL_WORDS_RULE: &str = "data.clawbutler.tool_feature_words";
const TOOL_SUBSTRINGS_RULE: &str = "data.clawbutler.tool_feature_substrings";
const PATH_KEYS_RULE: &str = "data.clawbutler.tool_path_keys";

/// One revision's needles; `None` where the bundle declares none (the field is then omitted).
#[derive(Default)]
pub(crate) struct Needles {
    words: Option<Words>,
    substrings: Option<Substrings>,
    tool_words: Option<Words>,
    tool_substrings: Option<Substrings>,
    path_keys: Option<HashSet<String>>,
}

struct Words {
    /// Word -> the indexes of its groups.
    groups_of: HashMap<String, Vec<usize>>,
    /// Group names as engine values, by index.
    groups: Vec<Value>,
    /// Length of the longest declared word: longer words are not looked up.
    longest: usize,
}

struct Substrings {
    automaton: AhoCorasick,
    /// Pattern `i` as (group index, engine value), shared by every input that reports it.
    patterns: Vec<(usize, Value)>,
    /// Group names as engine values, by index.
    groups: Vec<Value>,
}

impl Needles {
    /// Read the declarations from a prepared engine (a clone: evaluating leaves caches behind).
    /// A declaration of the wrong shape is ignored, with a log line: the bundle's rules then fall
    /// back to deriving the field themselves.
    pub(crate) fn from_engine(engine: &regorus::Engine) -> Needles {
        let mut engine = engine.clone();
        engine.set_input(Value::new_object());
        let mut read = |rule: &str| match engine.eval_rule(rule.to_string()) {
            Ok(Value::Undefined) | Err(_) => None,
            Ok(v) => Some(v),
        };
        let mut declared = |rule: &str| read(rule).map(|v| (rule.to_string(), v));
        Needles {
            words: parsed(declared(WORDS_RULE), Words::new),
            substrings: parsed(declared(SUBSTRINGS_RULE), Substrings::new),
            tool_words: parsed(declared(TOOL_WORDS_RULE), Words::new),
            tool_substrings: parsed(declared(TOOL_SUBSTRINGS_RULE), Substrings::new),
            path_keys: parsed(declared(PATH_KEYS_RULE), |v| {
                strings(v).map(|k| k.into_iter().collect()).ok_or_else(|| "must be a set of strings".to_string())
            }),
        }
    }

    /// `features.triggers`: group -> the declared words of that group among `words` (groups
    /// without one left out), or `None` without a declaration.
    pub(crate) fn triggers(&self, words: &BTreeSet<Value>, empty: &Value) -> Option<Value> {
        Some(self.words.as_ref()?.find(words, empty))
    }

    /// `features.hits`: group -> the declared substrings of that group occurring in `text`
    /// (groups without one left out), or `None` without a declaration. Overlapping matches
    /// count (`.ssh` inside `.ssh/` reports both).
    pub(crate) fn hits(&self, text: &str, empty: &Value) -> Option<Value> {
        self.substrings.as_ref()?.find(text, empty)
    }

    /// `tool.arg_features.hits`: as [`Needles::hits`], for the substrings of `feature_substrings`
    /// occurring in any of `texts` (a tool call's path-like arguments, as written).
    pub(crate) fn hits_in_any<'a>(&self, texts: impl IntoIterator<Item = &'a str>, empty: &Value) -> Option<Value> {
        self.substrings.as_ref()?.find_in_any(texts, empty)
    }

    /// `tool.name_features.words`: as [`Needles::triggers`], for a tool name's parts and the
    /// bundle's `tool_feature_words`.
    pub(crate) fn tool_words(&self, parts: &BTreeSet<Value>, empty: &Value) -> Option<Value> {
        Some(self.tool_words.as_ref()?.find(parts, empty))
    }

    /// `tool.name_features.hits`: as [`Needles::hits`], for a lower-cased tool name and the
    /// bundle's `tool_feature_substrings`.
    pub(crate) fn tool_hits(&self, name: &str, empty: &Value) -> Option<Value> {
        self.tool_substrings.as_ref()?.find(name, empty)
    }

    /// The bundle's `tool_path_keys`, or `None` without a declaration.
    pub(crate) fn path_keys(&self) -> Option<&HashSet<String>> {
        self.path_keys.as_ref()
    }
}

/// A declaration `(rule, value)` parsed, or `None` (logged) when it has the wrong shape.
fn parsed<T>(declared: Option<(String, Value)>, parse: impl Fn(&Value) -> Result<T, String>) -> Option<T> {
    let (rule, v) = declared?;
    parse(&v).map_err(|e| tracing::warn!(rule, error = %e, "ignored")).ok()
}

/// `{group name: found}` for the groups with a find; `empty` (the shared `{}`) without any.
fn grouped(found: BTreeMap<usize, BTreeSet<Value>>, names: &[Value], empty: &Value) -> Value {
    if found.is_empty() {
        return empty.clone();
    }
    let object: BTreeMap<Value, Value> =
        found.into_iter().filter_map(|(g, set)| Some((names.get(g)?.clone(), Value::from(set)))).collect();
    Value::from(object)
}

/// A declaration `{"group": {"member", ...}, ...}`: the group names and (group index, member).
type Groups = (Vec<Value>, Vec<(usize, String)>);

/// Parse a declaration of groups.
fn groups(declared: &Value) -> Result<Groups, String> {
    let Value::Object(groups) = declared else {
        return Err("must be an object of sets of strings".into());
    };
    let (mut names, mut members) = (Vec::new(), Vec::new());
    for (name, set) in groups.iter() {
        for m in strings(set).ok_or("every group must be a set of strings")? {
            members.push((names.len(), m));
        }
        names.push(name.clone());
    }
    Ok((names, members))
}

impl Words {
    /// From `{"group": {"word", ...}, ...}`.
    fn new(declared: &Value) -> Result<Words, String> {
        let (groups, members) = groups(declared)?;
        let longest = members.iter().map(|(_, w)| w.len()).max().unwrap_or(0);
        let mut groups_of: HashMap<String, Vec<usize>> = HashMap::new();
        for (g, w) in members {
            groups_of.entry(w).or_default().push(g);
        }
        Ok(Words { groups_of, groups, longest })
    }

    /// Group -> the declared words of that group among `words` (groups without one left out).
    fn find(&self, words: &BTreeSet<Value>, empty: &Value) -> Value {
        let mut found: BTreeMap<usize, BTreeSet<Value>> = BTreeMap::new();
        for w in words {
            let Value::String(s) = w else { continue };
            if s.len() > self.longest {
                continue;
            }
            for g in self.groups_of.get(s.as_ref()).into_iter().flatten() {
                found.entry(*g).or_default().insert(w.clone());
            }
        }
        grouped(found, &self.groups, empty)
    }
}

impl Substrings {
    /// From `{"group": {"substring", ...}, ...}`.
    fn new(declared: &Value) -> Result<Substrings, String> {
        let (groups, patterns) = groups(declared)?;
        let automaton = AhoCorasick::new(patterns.iter().map(|(_, p)| p)).map_err(|e| e.to_string())?;
        let patterns = patterns.into_iter().map(|(g, p)| (g, Value::from(p.as_str()))).collect();
        Ok(Substrings { automaton, patterns, groups })
    }

    /// Group -> the declared substrings of that group occurring in `text` (groups without one
    /// left out); `None` only if the automaton refuses overlapping search, which the default
    /// (standard) match kind, used here, never does.
    fn find(&self, text: &str, empty: &Value) -> Option<Value> {
        self.find_in_any([text], empty)
    }

    /// As [`Substrings::find`], for the substrings occurring in any of `texts` (each searched on
    /// its own: no match spans two of them).
    fn find_in_any<'a>(&self, texts: impl IntoIterator<Item = &'a str>, empty: &Value) -> Option<Value> {
        let mut found: BTreeMap<usize, BTreeSet<Value>> = BTreeMap::new();
        for text in texts {
            for m in self.automaton.try_find_overlapping_iter(text).ok()? {
                if let Some((group, value)) = self.patterns.get(m.pattern().as_usize()) {
                    found.entry(*group).or_default().insert(value.clone());
                }
            }
        }
        Some(grouped(found, &self.groups, empty))
    }
}

/// The strings of a set or array of strings; `None` for anything else.
fn strings(v: &Value) -> Option<Vec<String>> {
    let items: Vec<&Value> = match v {
        Value::Set(s) => s.iter().collect(),
        Value::Array(a) => a.iter().collect(),
        _ => return None,
    };
    items.iter().map(|v| v.as_string().ok().map(|s| s.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needles(rego: &str) -> Needles {
        let mut engine = regorus::Engine::new();
        engine.add_policy("n.rego".into(), format!("package clawbutler\n\n{rego}")).unwrap();
        Needles::from_engine(&engine)
    }

    #[test]
    fn hits_are_grouped_and_overlapping() {
        let n = needles(r#"feature_substrings := {"a": {".ssh", ".ssh/"}, "b": {"curl", "ssh"}}"#);
        let empty = Value::new_object();
        let hits = n.hits("cat ~/.ssh/id && curl x", &empty).unwrap();
        let expected = serde_json::json!({"a": [".ssh", ".ssh/"], "b": ["curl", "ssh"]});
        assert_eq!(hits.to_json_str().unwrap(), Value::from(expected).to_json_str().unwrap());
        assert_eq!(n.hits("ls -la", &empty), Some(empty.clone()));
    }

    #[test]
    fn declarations_of_the_wrong_shape_leave_the_fields_out() {
        let n = needles("feature_substrings := {\"curl\"}\nfeature_words := {\"a\": 1}");
        let empty = Value::new_object();
        assert_eq!(n.hits("curl", &empty), None);
        assert_eq!(n.triggers(&BTreeSet::from([Value::from("a")]), &empty), None);
    }

    #[test]
    fn triggers_are_grouped() {
        let n = needles(r#"feature_words := {"priv": {"sudo", "su"}, "rm": {"rm"}, "write": {"rm", "cp"}}"#);
        let empty = Value::new_object();
        let words = BTreeSet::from(["sudo", "rm", "ls", "averyveryverylongword"].map(Value::from));
        let expected = serde_json::json!({"priv": ["sudo"], "rm": ["rm"], "write": ["rm"]});
        let triggers = n.triggers(&words, &empty).unwrap();
        assert_eq!(triggers.to_json_str().unwrap(), Value::from(expected).to_json_str().unwrap());
        assert_eq!(n.triggers(&BTreeSet::from([Value::from("ls")]), &empty), Some(empty.clone()));
        assert_eq!(n.hits("x", &empty), None);
    }
}

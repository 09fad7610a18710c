//! What a bundle asks the engine to look for in every exec command. A bundle may declare two
//! constant rules in `package clawbutler`:
//!
//! - `feature_words`: a set of program names; `exec.features.triggers` is the set of them among
//!   the command's `words`;
//! - `feature_substrings`: an object of named groups of substrings; `exec.features.hits` maps
//!   each group with a substring in the command's lower-cased `text` to the set of those found.
//!
//! Both are read once per revision and matched in Rust (one pass of an Aho-Corasick automaton
//! for all substrings), so a rule asks "does any credential hint occur?" with one lookup
//! (`input.exec.features.hits.secrets`) instead of a `strings.replace_n` scan per hint. A
//! bundle that declares neither gets neither field, and its rules derive what they need in Rego.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aho_corasick::AhoCorasick;
use regorus::Value;

/// The rule names a bundle declares its needles under.
const WORDS_RULE: &str = "data.clawbutler.feature_words";
const SUBSTRINGS_RULE: &str = "data.clawbutler.feature_substrings";

/// One revision's needles; `None` where the bundle declares none (the field is then omitted).
#[derive(Default)]
pub(crate) struct Needles {
    words: Option<HashSet<String>>,
    /// Length of the longest declared word: longer words are not looked up.
    longest_word: usize,
    substrings: Option<Substrings>,
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
        let words: Option<HashSet<String>> = read(WORDS_RULE).and_then(|v| {
            let words = strings(&v);
            if words.is_none() {
                tracing::warn!(rule = WORDS_RULE, "must be a set of strings; ignored");
            }
            words.map(|w| w.into_iter().collect())
        });
        let longest_word = words.iter().flatten().map(String::len).max().unwrap_or(0);
        let substrings = read(SUBSTRINGS_RULE).and_then(|v| {
            let built = Substrings::new(&v);
            if let Err(e) = &built {
                tracing::warn!(rule = SUBSTRINGS_RULE, error = %e, "ignored");
            }
            built.ok()
        });
        Needles { words, longest_word, substrings }
    }

    /// `features.triggers`: the declared words among `words`, or `None` without a declaration.
    pub(crate) fn triggers(&self, words: &BTreeSet<Value>, empty: &Value) -> Option<Value> {
        let declared = self.words.as_ref()?;
        let mut found = BTreeSet::new();
        for w in words {
            if matches!(w, Value::String(s) if s.len() <= self.longest_word && declared.contains(s.as_ref())) {
                found.insert(w.clone());
            }
        }
        Some(if found.is_empty() { empty.clone() } else { Value::from(found) })
    }

    /// `features.hits`: group -> the declared substrings of that group occurring in `text`
    /// (groups without one left out), or `None` without a declaration. Overlapping matches
    /// count (`.ssh` inside `.ssh/` reports both).
    pub(crate) fn hits(&self, text: &str, empty: &Value) -> Option<Value> {
        let s = self.substrings.as_ref()?;
        // Fails only for match kinds other than the default (standard) one, which is used.
        let matches = s.automaton.try_find_overlapping_iter(text).ok()?;
        let mut found: BTreeMap<usize, BTreeSet<Value>> = BTreeMap::new();
        for m in matches {
            if let Some((group, value)) = s.patterns.get(m.pattern().as_usize()) {
                found.entry(*group).or_default().insert(value.clone());
            }
        }
        if found.is_empty() {
            return Some(empty.clone());
        }
        let object: BTreeMap<Value, Value> =
            found.into_iter().filter_map(|(g, set)| Some((s.groups.get(g)?.clone(), Value::from(set)))).collect();
        Some(Value::from(object))
    }
}

impl Substrings {
    /// From `{"group": {"substring", ...}, ...}`.
    fn new(declared: &Value) -> Result<Substrings, String> {
        let Value::Object(groups) = declared else {
            return Err("must be an object of sets of strings".into());
        };
        let mut names = Vec::new();
        let mut patterns = Vec::new();
        for (name, members) in groups.iter() {
            let members = strings(members).ok_or("every group must be a set of strings")?;
            for m in members {
                patterns.push((names.len(), m));
            }
            names.push(name.clone());
        }
        let automaton = AhoCorasick::new(patterns.iter().map(|(_, p)| p)).map_err(|e| e.to_string())?;
        let patterns = patterns.into_iter().map(|(g, p)| (g, Value::from(p.as_str()))).collect();
        Ok(Substrings { automaton, patterns, groups: names })
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
        let n = needles(
            r#"feature_substrings := {"curl"}
feature_words := {"a": 1}"#,
        );
        let empty = Value::new_set();
        assert_eq!(n.hits("curl", &empty), None);
        assert_eq!(n.triggers(&BTreeSet::from([Value::from("a")]), &empty), None);
        let n = needles(r#"feature_words := {"sudo", "rm"}"#);
        let words = BTreeSet::from([Value::from("sudo"), Value::from("ls"), Value::from("averyveryverylongword")]);
        assert_eq!(n.triggers(&words, &empty), Some(Value::from(BTreeSet::from([Value::from("sudo")]))));
        assert_eq!(n.hits("x", &empty), None);
    }
}

//! What a bundle asks the engine to look for in every exec command. A bundle may declare two
//! constant rules in `package clawbutler`:
//!
//! - `feature_words`: program names; `exec.features.triggers` is the set of them among the
//!   command's `words`;
//! - `feature_substrings`: substrings; `exec.features.hits` is the set of them that occur in the
//!   command's lower-cased `text`.
//!
//! Both are read once per revision and matched in Rust (one pass of an Aho-Corasick automaton
//! for the substrings), so a rule asks "does any credential hint occur?" with one set lookup
//! instead of a `strings.replace_n` scan per hint. A bundle that declares neither gets neither
//! field, and its rules derive what they need in Rego as before.

use std::collections::{BTreeSet, HashSet};

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
    /// The engine value of pattern `i`, shared by every input that reports it.
    values: Vec<Value>,
}

impl Needles {
    /// Read the declarations from a prepared engine (a clone: evaluating leaves caches behind).
    /// A declaration that is not a set or array of strings is ignored, with a log line: the
    /// bundle's rules then fall back to deriving the field themselves.
    pub(crate) fn from_engine(engine: &regorus::Engine) -> Needles {
        let mut engine = engine.clone();
        engine.set_input(Value::new_object());
        let mut read = |rule: &str| -> Option<Vec<String>> {
            let value = engine.eval_rule(rule.to_string()).ok()?;
            let items: Vec<&Value> = match &value {
                Value::Set(s) => s.iter().collect(),
                Value::Array(a) => a.iter().collect(),
                Value::Undefined => return None,
                _ => {
                    tracing::warn!(rule, "must be a set of strings; ignored");
                    return None;
                }
            };
            let strings: Option<Vec<String>> =
                items.iter().map(|v| v.as_string().ok().map(|s| s.to_string())).collect();
            if strings.is_none() {
                tracing::warn!(rule, "must be a set of strings; ignored");
            }
            strings
        };
        let words: Option<HashSet<String>> = read(WORDS_RULE).map(|w| w.into_iter().collect());
        let longest_word = words.iter().flatten().map(String::len).max().unwrap_or(0);
        let substrings = read(SUBSTRINGS_RULE).and_then(|list| {
            let list: Vec<String> = list.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
            match AhoCorasick::new(&list) {
                Ok(automaton) => {
                    Some(Substrings { automaton, values: list.iter().map(|s| Value::from(s.as_str())).collect() })
                }
                Err(e) => {
                    tracing::warn!(rule = SUBSTRINGS_RULE, error = %e, "cannot be matched; ignored");
                    None
                }
            }
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

    /// `features.hits`: the declared substrings occurring in `text`, or `None` without a
    /// declaration. Overlapping matches count (`.ssh` inside `.ssh/` reports both).
    pub(crate) fn hits(&self, text: &str, empty: &Value) -> Option<Value> {
        let s = self.substrings.as_ref()?;
        // Fails only for match kinds other than the default (standard) one, which is used.
        let matches = s.automaton.try_find_overlapping_iter(text).ok()?;
        let mut found = BTreeSet::new();
        for m in matches {
            if let Some(v) = s.values.get(m.pattern().as_usize()) {
                found.insert(v.clone());
            }
        }
        Some(if found.is_empty() { empty.clone() } else { Value::from(found) })
    }
}

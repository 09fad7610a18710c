//! Thread-private copies of a compiled program and its data document.
//!
//! regorus values share their contents through reference counts (`regorus::Rc` is `Arc` with
//! the `arc` feature). The VM loads a literal or reads the data document by cloning a value,
//! enters a rule by cloning its `RuleInfo` (whose body list is shared), and drops those clones
//! as it resets register windows: every decision adds to and takes from the reference counts
//! of the program's literals, rules and data. With one program shared by the connection
//! threads' VMs, those counts sit on cache lines that both cores write, and each clone or drop
//! waits for its line to come over from the other core. So each thread's VM gets its own deep
//! copy, made once per thread and revision: the same values and rules, in reference counts no
//! other thread touches.

use regorus::rvm::Program;
use regorus::value::{Array, Object, Set};
use regorus::{Rc, Value};

/// A copy of `p` that shares no reference-counted part with it.
pub(crate) fn program(p: &Program) -> Program {
    let mut own = p.clone();
    own.literals = p.literals.iter().map(value).collect();
    own.rule_tree = value(&p.rule_tree);
    for rule in &mut own.rule_infos {
        rule.definitions = Rc::new(rule.definitions.as_ref().clone());
    }
    own
}

/// A copy of `v` that shares no reference-counted part with it (numbers are copied as they
/// are: only a big integer holds a count, and policies rarely carry one).
pub(crate) fn value(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(Rc::from(s.as_ref())),
        Value::Array(a) => Value::Array(Rc::new(a.iter().map(value).collect::<Array>())),
        Value::Set(s) => Value::Set(Rc::new(s.iter().map(value).collect::<Set>())),
        Value::Object(o) => Value::Object(Rc::new(o.iter().map(|(k, v)| (value(k), value(v))).collect::<Object>())),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::Undefined => v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::String(x), Value::String(y)) => Rc::ptr_eq(x, y),
            (Value::Array(x), Value::Array(y)) => Rc::ptr_eq(x, y) || x.iter().zip(y.iter()).any(|(p, q)| shares(p, q)),
            (Value::Set(x), Value::Set(y)) => Rc::ptr_eq(x, y) || x.iter().zip(y.iter()).any(|(p, q)| shares(p, q)),
            (Value::Object(x), Value::Object(y)) => {
                Rc::ptr_eq(x, y) || x.iter().zip(y.iter()).any(|((k1, v1), (k2, v2))| shares(k1, k2) || shares(v1, v2))
            }
            _ => false,
        }
    }

    #[test]
    fn a_copy_is_equal_and_shares_nothing() {
        let mut v = Value::from_json_str(
            r#"{"a": ["x", 1, 2.5, null, true, {"b": "y"}], "c": {"d": [[]]}, "e": "long enough to be its own"}"#,
        )
        .unwrap();
        let set = Value::Set(Rc::new([Value::from("s1"), Value::from("s2")].into_iter().collect::<Set>()));
        v.as_object_mut().unwrap().insert(Value::from("set"), set);
        let copy = value(&v);
        assert_eq!(copy, v);
        assert!(!shares(&copy, &v), "{copy}");
        assert!(matches!(&copy["set"], Value::Set(_)), "a set stays a set");
    }

    #[test]
    fn a_program_copy_keeps_every_literal_and_rule_and_shares_none() {
        let program = crate::vm::Compiled::shipped_program();
        let own = super::program(&program);
        assert_eq!(own.literals, program.literals);
        assert!(own.literals.iter().zip(&program.literals).all(|(a, b)| !shares(a, b)));
        assert_eq!(own.rule_infos.len(), program.rule_infos.len());
        for (a, b) in own.rule_infos.iter().zip(&program.rule_infos) {
            assert_eq!(a.definitions, b.definitions);
            assert!(!Rc::ptr_eq(&a.definitions, &b.definitions), "{}", a.name);
        }
        assert_eq!(own.rule_tree, program.rule_tree);
    }
}

//! Parsing the policy's `decision` object into a [`Decision`]. Anything but a well-typed object
//! `{action, rule, reason, risk, obligations?}` is rejected so the caller fails closed. The
//! value is read in place (no detour through `serde_json`): this runs on every call.

use serde::de::IntoDeserializer;
use serde::Deserialize;

use decision::{Action, Decision, Obligations, ResultSecrets, Risk};

/// Why an output could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputError {
    /// The rule produced no value for this input.
    Undefined,
    /// The value is not a decision object (wrong type, missing or unknown field, empty text).
    IllTyped(String),
}

fn ill(text: impl Into<String>) -> OutputError {
    OutputError::IllTyped(text.into())
}

/// Turn the rule's value into a decision stamped with a fresh id and `revision`.
pub(crate) fn parse(value: &regorus::Value, revision: &str) -> Result<Decision, OutputError> {
    let regorus::Value::Object(obj) = value else {
        return Err(match value {
            regorus::Value::Undefined => OutputError::Undefined,
            _ => ill("decision must be an object"),
        });
    };
    let (mut action, mut rule, mut reason, mut risk, mut obligations) = (None, None, None, None, None);
    for (k, v) in obj.iter() {
        match key(k)? {
            "action" => action = Some(Action::deserialize(text(v, "action")?.into_deserializer()).map_err(de)?),
            "rule" => rule = Some(non_empty(v, "rule")?),
            "reason" => reason = Some(non_empty(v, "reason")?),
            "risk" => risk = Some(Risk::deserialize(text(v, "risk")?.into_deserializer()).map_err(de)?),
            "obligations" => obligations = Some(parse_obligations(v)?),
            other => return Err(ill(format!("unknown field `{other}`"))),
        }
    }
    Ok(Decision {
        id: decision::DecisionId::new(),
        bundle_revision: revision.to_string(),
        action: action.ok_or_else(|| ill("missing field `action`"))?,
        rule: rule.ok_or_else(|| ill("missing field `rule`"))?,
        reason: reason.ok_or_else(|| ill("missing field `reason`"))?,
        risk: risk.ok_or_else(|| ill("missing field `risk`"))?,
        obligations: obligations.unwrap_or_default(),
    })
}

fn de(e: serde::de::value::Error) -> OutputError {
    ill(e.to_string())
}

fn key(k: &regorus::Value) -> Result<&str, OutputError> {
    match k {
        regorus::Value::String(s) => Ok(s),
        _ => Err(ill("decision keys must be strings")),
    }
}

fn text<'a>(v: &'a regorus::Value, field: &str) -> Result<&'a str, OutputError> {
    match v {
        regorus::Value::String(s) => Ok(s),
        _ => Err(ill(format!("`{field}` must be a string"))),
    }
}

fn non_empty(v: &regorus::Value, field: &str) -> Result<String, OutputError> {
    let s = text(v, field)?;
    if s.trim().is_empty() {
        return Err(ill("rule and reason must be non-empty strings"));
    }
    Ok(s.to_string())
}

/// `null` means none, as an absent field does.
fn parse_obligations(v: &regorus::Value) -> Result<Obligations, OutputError> {
    let obj = match v {
        regorus::Value::Null => return Ok(Obligations::default()),
        regorus::Value::Object(obj) => obj,
        _ => return Err(ill("`obligations` must be an object")),
    };
    let mut out = Obligations::default();
    for (k, v) in obj.iter() {
        match key(k)? {
            "mask" => {
                let items: Vec<&regorus::Value> = match v {
                    regorus::Value::Array(a) => a.iter().collect(),
                    regorus::Value::Set(s) => s.iter().collect(),
                    _ => return Err(ill("`obligations.mask` must be an array of strings")),
                };
                out.mask = items
                    .into_iter()
                    .map(|m| text(m, "obligations.mask").map(str::to_string))
                    .collect::<Result<_, _>>()?;
            }
            "hold_ttl_s" => {
                out.hold_ttl_s = match v {
                    regorus::Value::Null => None,
                    regorus::Value::Number(n) => {
                        Some(n.as_u64().ok_or_else(|| ill("`obligations.hold_ttl_s` must be a non-negative integer"))?)
                    }
                    _ => return Err(ill("`obligations.hold_ttl_s` must be a non-negative integer")),
                };
            }
            "result_secrets" => {
                out.result_secrets = match v {
                    regorus::Value::Null => None,
                    _ => Some(
                        ResultSecrets::deserialize(text(v, "obligations.result_secrets")?.into_deserializer())
                            .map_err(de)?,
                    ),
                };
            }
            "rewrite" => {
                out.rewrite = match v {
                    regorus::Value::Null => None,
                    regorus::Value::Object(_) => match serde_json::to_value(v) {
                        Ok(serde_json::Value::Object(m)) => Some(m),
                        _ => return Err(ill("`obligations.rewrite` must be an object with string keys")),
                    },
                    _ => return Err(ill("`obligations.rewrite` must be an object")),
                };
            }
            other => return Err(ill(format!("unknown field `obligations.{other}`"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(json: &str) -> regorus::Value {
        regorus::Value::from_json_str(json).unwrap()
    }

    #[test]
    fn well_typed_object_parses() {
        let d = parse(
            &v(r#"{"action":"hold","rule":"exec.sudo","reason":"needs a human","risk":"high","obligations":{"hold_ttl_s":60}}"#),
            "abc",
        )
        .unwrap();
        assert_eq!(d.action, Action::Hold);
        assert_eq!(d.rule, "exec.sudo");
        assert_eq!(d.bundle_revision, "abc");
        assert_eq!(d.obligations.hold_ttl_s, Some(60));
        assert!(uuid::Uuid::parse_str(d.id.as_str()).is_ok());
        let d = parse(
            &v(r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"result_secrets":"pass"}}"#),
            "abc",
        )
        .unwrap();
        assert_eq!(d.obligations.result_secrets, Some(ResultSecrets::Pass));
    }

    #[test]
    fn rewrite_obligation_is_an_object_of_params() {
        let d = parse(
            &v(r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"rewrite":{"path":"/w/a","n":[1,{"b":true}]}}}"#),
            "abc",
        )
        .unwrap();
        let want = serde_json::json!({"path": "/w/a", "n": [1, {"b": true}]});
        assert_eq!(d.obligations.rewrite.map(serde_json::Value::Object), Some(want));
        let none = v(r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"rewrite":null}}"#);
        assert_eq!(parse(&none, "abc").unwrap().obligations.rewrite, None);
    }

    #[test]
    fn bad_shapes_are_rejected() {
        for bad in [
            r#"true"#,
            r#""allow""#,
            r#"["allow"]"#,
            r#"{"action":"allow","rule":"r","reason":"x"}"#,
            r#"{"action":"maybe","rule":"r","reason":"x","risk":"low"}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"extreme"}"#,
            r#"{"action":"allow","rule":"","reason":"x","risk":"low"}"#,
            r#"{"action":"allow","rule":"r","reason":7,"risk":"low"}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","extra":1}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"hold_ttl_s":-1}}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"hold_ttl_s":1.5}}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"mask":[1]}}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"extra":[]}}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":7}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"rewrite":"/tmp"}}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"rewrite":["a"]}}"#,
            r#"{"action":"allow","rule":"r","reason":"  ","risk":"low"}"#,
            r#"{"action":7,"rule":"r","reason":"x","risk":"low"}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"result_secrets":"hide"}}"#,
            r#"{"action":"allow","rule":"r","reason":"x","risk":"low","obligations":{"result_secrets":true}}"#,
        ] {
            assert!(matches!(parse(&v(bad), "r"), Err(OutputError::IllTyped(_))), "{bad}");
        }
        assert_eq!(parse(&regorus::Value::Undefined, "r"), Err(OutputError::Undefined));
    }
}

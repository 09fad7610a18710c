//! Parsing the policy's `decision` object into a [`Decision`]. Anything but a well-typed object
//! `{action, rule, reason, risk, obligations?}` is rejected so the caller fails closed.

use serde::Deserialize;

use crate::{Action, Decision, Obligations, Risk};

/// What a bundle must produce at `data.clawbutler.decision`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    action: Action,
    rule: String,
    reason: String,
    risk: Risk,
    #[serde(default)]
    obligations: Option<RawObligations>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObligations {
    #[serde(default)]
    mask: Vec<String>,
    #[serde(default)]
    hold_ttl_s: Option<u64>,
}

/// Why an output could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OutputError {
    /// The rule produced no value for this input.
    Undefined,
    /// The value is not a decision object (wrong type, missing or unknown field, empty text).
    IllTyped(String),
}

/// Turn the rule's value into a decision stamped with a fresh id and `revision`.
pub(crate) fn parse(value: &regorus::Value, revision: &str) -> Result<Decision, OutputError> {
    if matches!(value, regorus::Value::Undefined) {
        return Err(OutputError::Undefined);
    }
    let json = serde_json::to_value(value).map_err(|e| OutputError::IllTyped(e.to_string()))?;
    let raw: RawDecision = serde_json::from_value(json).map_err(|e| OutputError::IllTyped(e.to_string()))?;
    if raw.rule.trim().is_empty() || raw.reason.trim().is_empty() {
        return Err(OutputError::IllTyped("rule and reason must be non-empty strings".into()));
    }
    let obligations =
        raw.obligations.map(|o| Obligations { mask: o.mask, hold_ttl_s: o.hold_ttl_s }).unwrap_or_default();
    Ok(Decision {
        id: Decision::new_id(),
        bundle_revision: revision.to_string(),
        action: raw.action,
        rule: raw.rule,
        reason: raw.reason,
        risk: raw.risk,
        obligations,
    })
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
        assert!(uuid::Uuid::parse_str(&d.id).is_ok());
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
        ] {
            assert!(matches!(parse(&v(bad), "r"), Err(OutputError::IllTyped(_))), "{bad}");
        }
        assert_eq!(parse(&regorus::Value::Undefined, "r"), Err(OutputError::Undefined));
    }
}

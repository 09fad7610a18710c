//! The one `Decision` type: produced here, acted on by the proxy, recorded by the audit log,
//! shown by the control API.

use serde::{Deserialize, Serialize};

/// What happens to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Forward the call.
    Allow,
    /// Park the call until a human decides.
    Hold,
    /// Refuse the call.
    Deny,
}

impl Action {
    /// Stable label value for metrics and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Hold => "hold",
            Action::Deny => "deny",
        }
    }

    /// Combine two actions: deny beats hold beats allow.
    pub fn strongest(self, other: Action) -> Action {
        // The derive(Ord) order above is Allow < Hold < Deny, which is exactly precedence.
        self.max(other)
    }
}

/// How risky the call is, as judged by the rule that decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    #[default]
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    /// Stable label value for metrics and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }
}

/// Side instructions a rule attaches to its decision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Obligations {
    /// Extra values (paths, literals) the audit log must mask in this call's record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
    /// How long a hold may wait for a human before it expires (deny).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ttl_s: Option<u64>,
}

/// Reason string used whenever the policy could not produce a trustworthy decision.
pub const POLICY_ERROR: &str = "policy_error";

/// The outcome of evaluating one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// UUID v7, unique per call; returned to the caller as `x-clawbutler-decision-id`.
    pub id: String,
    /// Content hash of the bundle that decided (empty when no bundle was involved).
    pub bundle_revision: String,
    pub action: Action,
    /// The rule that made the decision, e.g. `exec.destructive_rm`.
    pub rule: String,
    /// Human-readable reason, shown to the caller on deny.
    pub reason: String,
    pub risk: Risk,
    #[serde(default)]
    pub obligations: Obligations,
}

impl Decision {
    /// A fresh decision id (UUID v7: time-ordered, so ids sort by creation).
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().to_string()
    }

    /// Fail-closed decision used for undefined, ill-typed or conflicting output, timeouts and
    /// engine errors.
    pub fn policy_error(bundle_revision: &str, detail: &str) -> Decision {
        Decision {
            id: Decision::new_id(),
            bundle_revision: bundle_revision.to_string(),
            action: Action::Deny,
            rule: POLICY_ERROR.to_string(),
            reason: format!("{POLICY_ERROR}: {detail}"),
            risk: Risk::High,
            obligations: Obligations::default(),
        }
    }

    /// A decision made outside Rego (kill switch, budget breaker, ...), so every refusal still
    /// carries one Decision.
    pub fn synthetic(action: Action, rule: &str, reason: &str, risk: Risk) -> Decision {
        Decision {
            id: Decision::new_id(),
            bundle_revision: String::new(),
            action,
            rule: rule.to_string(),
            reason: reason.to_string(),
            risk,
            obligations: Obligations::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_deny_hold_allow() {
        assert_eq!(Action::Allow.strongest(Action::Hold), Action::Hold);
        assert_eq!(Action::Deny.strongest(Action::Hold), Action::Deny);
        assert_eq!(Action::Allow.strongest(Action::Allow), Action::Allow);
    }

    #[test]
    fn policy_error_denies() {
        let d = Decision::policy_error("rev", "timeout");
        assert_eq!(d.action, Action::Deny);
        assert_eq!(d.rule, POLICY_ERROR);
        assert!(d.reason.starts_with("policy_error"));
    }
}

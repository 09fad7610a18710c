//! The approval's shape, as stored in sled, shown by the control API and carried in audit
//! records. Field names are part of the API contract (design §4).

use decision::{CallKind, DecisionId, Risk};
use serde::{Deserialize, Serialize};

use super::grants::{Grant, GrantScope};

/// Where an approval is in its life. Only `Pending` ever changes, and only once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Allowed,
    Denied,
    Expired,
    Cancelled,
}

impl Status {
    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Allowed => "allowed",
            Status::Denied => "denied",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }

    /// The audit outcome of reaching this status (`Pending` records as `created`).
    pub fn outcome(self) -> audit::Outcome {
        match self {
            Status::Pending => audit::Outcome::Created,
            Status::Allowed => audit::Outcome::Allowed,
            Status::Denied => audit::Outcome::Denied,
            Status::Expired => audit::Outcome::Expired,
            Status::Cancelled => audit::Outcome::Cancelled,
        }
    }

    /// Parse a status name (`pending`, `allowed`, ...).
    pub fn parse(s: &str) -> Option<Status> {
        [Status::Pending, Status::Allowed, Status::Denied, Status::Expired, Status::Cancelled]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// What a human answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DecisionKind {
    /// Let this one call through.
    #[serde(rename = "allow-once")]
    AllowOnce,
    /// Let this call through and create a standing grant for matching calls.
    #[serde(rename = "allow-always")]
    AllowAlways,
    /// Refuse the call.
    #[serde(rename = "deny")]
    Deny,
}

impl DecisionKind {
    /// Stable name (`allow-once`, `allow-always`, `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::AllowOnce => "allow-once",
            DecisionKind::AllowAlways => "allow-always",
            DecisionKind::Deny => "deny",
        }
    }

    /// The status an approval takes with this decision.
    pub fn status(self) -> Status {
        match self {
            DecisionKind::Deny => Status::Denied,
            _ => Status::Allowed,
        }
    }
}

/// One approval. `version` starts at 1 and grows with every change; a decision must name the
/// version it was made on, so a decision made on a stale view is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// UUID v7 (time-ordered: ids sort by creation).
    pub id: String,
    pub version: u64,
    pub status: Status,
    pub kind: CallKind,
    pub agent: String,
    pub session: Option<String>,
    pub trace_id: String,
    /// The policy decision that asked for the hold.
    pub decision_id: DecisionId,
    /// What is asked (model + prompt summary, command + cwd, tool + args), masked.
    pub subject: serde_json::Value,
    pub risk: Risk,
    pub rule: String,
    pub reason: String,
    pub cost_estimate_usd: Option<f64>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC; past it the approval expires (= deny).
    pub expires_at: String,
    /// Token name of the decider, or `system` (expiry, cancellation, restart).
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    /// The human decision, if one was made (none for expired/cancelled).
    pub decision: Option<DecisionKind>,
    pub decision_reason: Option<String>,
    /// Id of the same request in another system (e.g. an OpenClaw exec approval id).
    pub external_id: Option<String>,
    /// The grant `allow-always` creates unless the decider narrows or widens it.
    pub suggested_scope: GrantScope,
    /// The grant an `allow-always` decision created.
    pub grant_id: Option<String>,
    /// What may still refuse the call after it is approved (a nearly spent budget, a failing
    /// upstream). Refusals that are certain are made before a call is ever held, so these are
    /// only ever "may".
    #[serde(default)]
    pub cautions: Vec<Caution>,
}

/// Something that may refuse a held call once it is approved, shown on the approval so the
/// approver knows. `message` is the same in words (English), for the CLI and API readers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Caution {
    /// A budget that has little room left or is past its warning level.
    Budget {
        budget: String,
        /// Spend in percent of the limit.
        used_pct: f64,
        spent_usd: f64,
        limit_usd: f64,
        /// The call's worst-case cost.
        needed_usd: f64,
        message: String,
    },
    /// An upstream whose recent calls fail (by the agent health rule).
    Upstream { upstream: String, failed: u32, of_last: u32, message: String },
}

impl Caution {
    /// From a budget's outlook.
    pub fn budget(c: &crate::budget::BudgetCaution) -> Caution {
        Caution::Budget {
            budget: c.budget_id.clone(),
            used_pct: (c.used_pct * 10.0).round() / 10.0,
            spent_usd: c.spent_usd,
            limit_usd: c.limit_usd,
            needed_usd: c.needed_usd,
            message: format!(
                "budget {} may refuse: {:.0} % used (${:.2} of ${:.2}); this call may cost up to ${:.4}",
                c.budget_id, c.used_pct, c.spent_usd, c.limit_usd, c.needed_usd
            ),
        }
    }

    /// From the health tracker's view of an upstream.
    pub fn upstream(name: &str, failed: u32, of_last: u32) -> Caution {
        Caution::Upstream {
            upstream: name.to_string(),
            failed,
            of_last,
            message: format!("upstream {name} may fail: {failed} of its last {of_last} calls failed"),
        }
    }
}

/// How an approval ended, handed to whoever waits on the held call.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The approval in its final state (status never `Pending`).
    pub approval: Approval,
    /// The grant an `allow-always` decision created.
    pub grant: Option<Grant>,
}

impl Resolution {
    /// Whether the held call may proceed.
    pub fn is_allowed(&self) -> bool {
        self.approval.status == Status::Allowed
    }

    /// One sentence for the caller: who decided what, or that it expired / was cancelled.
    pub fn message(&self) -> String {
        let a = &self.approval;
        let who = a.decided_by.as_deref().unwrap_or("system");
        let why = a.decision_reason.as_deref().filter(|r| !r.is_empty()).map(|r| format!(": {r}")).unwrap_or_default();
        match a.status {
            Status::Allowed => format!("approved by {who} (approval {}){why}", a.id),
            Status::Denied => format!("denied by {who} (approval {}){why}", a.id),
            Status::Expired => format!("approval {} expired at {} with no decision{why}", a.id, a.expires_at),
            Status::Cancelled => format!("approval {} was cancelled{why}", a.id),
            Status::Pending => format!("approval {} is still pending", a.id),
        }
    }
}

/// What a caller asks the broker to hold.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub kind: CallKind,
    pub agent: String,
    pub session: Option<String>,
    pub trace_id: String,
    /// The policy decision (action `hold`): its id, rule, reason, risk, `obligations.hold_ttl_s`
    /// and `obligations.mask` are used.
    pub decision: decision::Decision,
    /// What is asked; masked by the broker (with the decision's mask obligations) before it is
    /// stored or shown.
    pub subject: serde_json::Value,
    pub cost_estimate_usd: Option<f64>,
    /// Id of the request in another system, for [`super::Broker::close_external`].
    pub external_id: Option<String>,
    /// The exact thing an `allow-always` would cover, as plain text: the model name, the
    /// command line or the tool name. The broker escapes it (`pattern::literal`), so the
    /// suggested grant matches exactly this and never acts as a wildcard.
    pub grant_pattern: String,
    /// For exec/tool holds: the arguments as `grants.rego` sees them, as plain text, to
    /// suggest an exact `arg_pattern` (None = the suggestion covers any arguments).
    pub grant_args: Option<String>,
    /// What may still refuse the call after approval (see [`Approval::cautions`]).
    pub cautions: Vec<Caution>,
}

/// A human's decision on one approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    pub decision: DecisionKind,
    /// The version the decider saw; anything else is refused as stale (409).
    pub expected_version: u64,
    #[serde(default)]
    pub reason: Option<String>,
    /// For `allow-always`: the grant's scope (defaults to the approval's `suggested_scope`).
    #[serde(default)]
    pub scope: Option<super::grants::ScopeInput>,
}

/// List filters (all optional) and cursor pagination, newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalQuery {
    pub status: Option<String>,
    pub agent: Option<String>,
    pub kind: Option<String>,
    pub risk: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size (default 50, at most 500).
    pub limit: Option<usize>,
}

/// One page of approvals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalPage {
    pub items: Vec<Approval>,
    pub next_cursor: Option<String>,
}

/// RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

//! What callers hand to the log: one event per decision or action. The log adds seq, ts,
//! prev_hash and hash, and masks secrets before anything is written.

use decision::{Action, Decision, DecisionId, Risk};
use serde::{Deserialize, Serialize};

/// Which kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    ModelCall,
    Exec,
    ToolCall,
    Approval,
    Grant,
    Budget,
    PolicyReload,
    KillSwitch,
    Config,
    Auth,
    Gateway,
    Retention,
}

impl RecordKind {
    /// Every kind, for pre-creating per-kind metric series.
    pub(crate) const ALL: [RecordKind; 12] = [
        RecordKind::ModelCall,
        RecordKind::Exec,
        RecordKind::ToolCall,
        RecordKind::Approval,
        RecordKind::Grant,
        RecordKind::Budget,
        RecordKind::PolicyReload,
        RecordKind::KillSwitch,
        RecordKind::Config,
        RecordKind::Auth,
        RecordKind::Gateway,
        RecordKind::Retention,
    ];

    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::ModelCall => "model_call",
            RecordKind::Exec => "exec",
            RecordKind::ToolCall => "tool_call",
            RecordKind::Approval => "approval",
            RecordKind::Grant => "grant",
            RecordKind::Budget => "budget",
            RecordKind::PolicyReload => "policy_reload",
            RecordKind::KillSwitch => "kill_switch",
            RecordKind::Config => "config",
            RecordKind::Auth => "auth",
            RecordKind::Gateway => "gateway",
            RecordKind::Retention => "retention",
        }
    }
}

/// Token usage of a model call.
///
/// Fields are declared in alphabetical order on purpose: the record's canonical JSON (see
/// `record`) is produced by serialising structs directly, which must yield sorted keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens written to a prompt cache (Anthropic; a subset of `input_tokens`).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// Input tokens read from a prompt cache (a subset of `input_tokens`).
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// All prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
}

/// One event to record. Every field but `kind` is optional so each kind fills what it has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub kind: Option<RecordKind>,
    pub decision_id: Option<DecisionId>,
    pub bundle_revision: Option<String>,
    pub trace_id: Option<String>,
    pub agent: Option<String>,
    pub session: Option<String>,
    pub action: Option<Action>,
    pub rule: Option<String>,
    pub risk: Option<Risk>,
    pub reason: Option<String>,
    /// What was asked: model / tool / command and its details (masked at write time).
    pub subject: serde_json::Value,
    pub usage: Option<Usage>,
    /// Cost in USD; `None` = unknown (never silently zero).
    pub cost_usd: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Who acted (token name, `policy`, `system`).
    pub actor: Option<String>,
    /// Result, e.g. `forwarded`, `denied`, `upstream_error`, `cancelled`, `approved`.
    pub outcome: Option<String>,
    /// Kind-specific extras (approval id, OpenClaw run id, finish reason, tool calls, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// Values a policy obligation asked to mask in this record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
}

impl AuditEvent {
    /// An event of `kind` carrying the decision's fields.
    pub fn from_decision(kind: RecordKind, d: &Decision) -> AuditEvent {
        AuditEvent {
            kind: Some(kind),
            decision_id: Some(d.id.clone()),
            bundle_revision: Some(d.bundle_revision.clone()),
            action: Some(d.action),
            rule: Some(d.rule.clone()),
            risk: Some(d.risk),
            reason: Some(d.reason.clone()),
            mask: d.obligations.mask.clone(),
            ..AuditEvent::default()
        }
    }
}

/// Mask an event into a record body (seq, ts and hashes are filled in by the writer), keying
/// the short hashes of masked values with the install's `salt`.
pub(crate) fn to_masked_record(ev: AuditEvent, salt: &crate::mask::Salt) -> crate::record::AuditRecord {
    use crate::mask;
    let extra = ev.mask;
    let scoped = |root: &str| -> Vec<String> {
        extra
            .iter()
            .map(|e| match e.strip_prefix(root) {
                Some(rest) if rest.is_empty() || rest.starts_with('.') || rest.starts_with('[') => format!("${rest}"),
                _ => e.clone(),
            })
            .collect()
    };
    let mut subject = ev.subject;
    mask::mask_json_salted(&mut subject, &scoped("$.subject"), salt);
    let mut details = ev.details;
    mask::mask_json_salted(&mut details, &scoped("$.details"), salt);
    let literals: Vec<String> = extra.iter().filter(|e| !e.starts_with('$')).cloned().collect();
    let text = |s: Option<String>| s.map(|s| mask::mask_text_with_salted(&s, &literals, salt));
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    crate::record::AuditRecord {
        kind: ev.kind,
        decision_id: ev.decision_id.map(String::from),
        bundle_revision: ev.bundle_revision,
        trace_id: ev.trace_id,
        agent: text(ev.agent),
        session: text(ev.session),
        action: ev.action,
        rule: ev.rule,
        risk: ev.risk,
        reason: text(ev.reason),
        subject,
        usage: ev.usage,
        cost_usd: finite(ev.cost_usd),
        latency_ms: finite(ev.latency_ms),
        actor: text(ev.actor),
        outcome: text(ev.outcome),
        details,
        ..Default::default()
    }
}

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
    /// An agent's health changed (healthy, degraded, offline).
    Health,
    /// The audit log could not write for a while and writes again (written after it).
    AuditOutage,
    /// A path of an agent went outside ClawButler or came back (drift of the governance
    /// report, `gateway.md`).
    Governance,
    /// The OpenClaw plugin gate: a tool-call or turn decision, a tool's outcome, a model
    /// call or a run's usage as OpenClaw reported it, the plugin's health.
    Plugin,
    /// A notification was delivered, failed for good, or was suppressed (`notifier`).
    Notification,
    /// Cost insight: a spend or call rate far above its baseline (`docs/cost.md`).
    Cost,
    /// Cron governance: a job created, changed, enabled, disabled, removed or run through
    /// ClawButler, a failure streak, a budget pause or resume (`docs/cron.md`).
    Cron,
}

impl RecordKind {
    /// Every kind, for pre-creating per-kind metric series.
    pub(crate) const ALL: [RecordKind; 19] = [
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
        RecordKind::Health,
        RecordKind::AuditOutage,
        RecordKind::Governance,
        RecordKind::Plugin,
        RecordKind::Notification,
        RecordKind::Cost,
        RecordKind::Cron,
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
            RecordKind::Health => "health",
            RecordKind::AuditOutage => "audit_outage",
            RecordKind::Governance => "governance",
            RecordKind::Plugin => "plugin",
            RecordKind::Notification => "notification",
            RecordKind::Cost => "cost",
            RecordKind::Cron => "cron",
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
    /// Server-side tool calls the upstream ran and bills per call (web search, file search,
    /// code execution, ...). Left out of the record when zero, so records written before this
    /// field existed keep their canonical form.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub server_tool_calls: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How the thing a record describes ended (or what step of it the record is). Stored as its
/// snake_case name; the names are part of the log format (docs/audit.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    // A model call's end, or its refusal.
    /// The response (or stream) completed.
    Completed,
    /// The client went away, or the call was abandoned before the upstream answered.
    Cancelled,
    /// The upstream failed (connect, timeout, error status, cut stream).
    UpstreamError,
    /// The upstream stream went silent past the idle timeout.
    #[serde(rename = "stream_idle_timeout")]
    IdleTimeout,
    /// A forwarded call started (written when it is sent upstream, so a crash leaves a trace).
    /// It opens a span that the call's end record (same kind and decision id) closes.
    Started,
    /// A started call whose end was never recorded because the sidecar stopped (SIGKILL, power
    /// loss); written at the next start, with the start's decision id.
    OutcomeUnknown,
    /// Refused by policy, kill switch or a hold that was not approved.
    Denied,
    /// Refused by a budget.
    BudgetExceeded,
    // Approvals and grants.
    /// An approval or grant was created.
    Created,
    /// An approval was allowed.
    Allowed,
    /// An approval expired with no decision.
    Expired,
    /// A grant was revoked.
    Revoked,
    /// An exec approval was held for a human.
    Held,
    /// An exec approval was approved by a human.
    Approved,
    /// The sidecar sent OpenClaw `allow-once` for an exec approval.
    #[serde(rename = "resolved_allow-once")]
    ResolvedAllowOnce,
    /// The sidecar sent OpenClaw `deny` for an exec approval.
    ResolvedDeny,
    /// Sending the resolution to OpenClaw failed.
    ResolveFailed,
    /// The exec approval was resolved in OpenClaw itself.
    ResolvedElsewhere,
    // Budgets.
    /// Spend crossed the warning threshold.
    Warn,
    /// The breaker opened.
    Open,
    /// The breaker closed (window reset).
    Close,
    /// An operator reset the spend.
    Reset,
    /// A budget was created or changed through the API.
    Upsert,
    /// A budget was deleted through the API.
    Delete,
    // Policies.
    /// A bundle reload took a new revision.
    Reloaded,
    /// A reload found the same revision.
    Unchanged,
    /// A reload (or another operation) failed.
    Error,
    // Audit log.
    /// Retention removed old segments.
    Pruned,
    /// The log writes again after an outage (`audit_outage`).
    Recovered,
    // Tokens.
    TokenCreated,
    TokenRevoked,
    // Kill switch (at the proxy, and what it changed in OpenClaw).
    BlockedAtProxy,
    UnblockedAtProxy,
    GlobalBlockedAtProxy,
    GlobalUnblockedAtProxy,
    GatewayPending,
    RunsAborted,
    ApprovalsDenied,
    ToolsDenied,
    ToolsDenyFailed,
    CronDisabled,
    ConfigRestored,
    CronRestored,
    // The gateway link.
    Connected,
    Disconnected,
    // Agent health (the state the agent is now in).
    Healthy,
    Degraded,
    Offline,
    // The plugin gate.
    /// A tool call was allowed with changed parameters.
    Rewritten,
    /// A tool call or a model call OpenClaw reported (after the fact).
    Reported,
    /// OpenClaw's usage and cost for a run agree with the sidecar's metering.
    UsageMatch,
    /// They do not (the record says by how much).
    UsageMismatch,
    // Governance: the state a path (kind `governance`, drift of the governance report) or a
    // gateway's plugin (kind `plugin`) is now in.
    /// The path goes through ClawButler again; the plugin is loaded and answering (built-in
    /// tools are governed).
    Governed,
    /// The path left ClawButler; the plugin is missing, disabled or not answering.
    Ungoverned,
    // Config safety (`config` records, docs/config-safety.md).
    /// A new version of an agent's (or the global) config slice was stored.
    Snapshot,
    /// The live config differs from the version ClawButler made or accepted.
    Drifted,
    /// A rollback was planned (dry run): nothing changed.
    RollbackPlanned,
    /// A rollback was applied.
    RolledBack,
    /// A rollback was refused because the config changed under it (stale baseHash).
    RollbackConflict,
    /// A rollback failed (the gateway refused it).
    RollbackFailed,
    /// An agent's model was changed on an admin's confirmation of a savings suggestion.
    ModelChanged,
    /// A confirmed model change was refused: the config changed since its preview.
    ModelChangeConflict,
    /// A confirmed model change failed (the gateway refused it).
    ModelChangeFailed,
    /// A critical rollback waits for a human in the approval inbox: nothing changed yet.
    RollbackHeld,
    /// A held rollback was denied, expired or cancelled in the inbox: nothing was applied.
    RollbackRefused,
    /// The live config was accepted as the new drift baseline (no rollback).
    DriftAccepted,
    /// An encrypted gateway backup (`.cbpkg`) was written.
    BackupCreated,
    /// A package import was previewed (dry run): nothing changed.
    ImportPlanned,
    /// A package was imported into the gateway.
    Imported,
    /// An import was refused because the config changed under it (stale baseHash).
    ImportConflict,
    /// An import failed (bad package, or the gateway refused it).
    ImportFailed,
    /// An import with a critical change waits for a human in the approval inbox.
    ImportHeld,
    /// A held import was denied, expired or cancelled in the inbox: nothing was applied.
    ImportRefused,
    /// A confirmed model change holds a critical change (e.g. a model added to a pinned
    /// `modelPolicy.allow`): it waits for a human in the approval inbox.
    ModelChangeHeld,
    /// A held model change was denied, expired or cancelled in the inbox: nothing was applied.
    ModelChangeRefused,
    // Notifications.
    /// A notification reached its channel.
    Delivered,
    /// A notification could not be delivered after every retry.
    DeliveryFailed,
    /// A notification was not sent: quiet hours or the recipient's preferences.
    Suppressed,
    // Cost insight.
    /// A spend or call rate far above its baseline (kind `cost`).
    Anomaly,
    // Cron governance (kind `cron`; `Created`, `Delete` and `Error` are reused).
    /// A job was changed.
    Updated,
    /// A job was enabled (resumed).
    Enabled,
    /// A job was disabled (paused).
    Disabled,
    /// A run was requested (run now).
    RunRequested,
    /// A job failed `[cron] failure_streak` times in a row.
    FailureStreak,
    /// An agent's budget breaker opened: its enabled jobs were disabled.
    BudgetPaused,
    /// The breaker closed: the jobs the pause disabled were enabled again.
    BudgetResumed,
    /// A change refused because the job changed concurrently (stale configRevision).
    Conflict,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Cancelled => "cancelled",
            Outcome::UpstreamError => "upstream_error",
            Outcome::IdleTimeout => "stream_idle_timeout",
            Outcome::Started => "started",
            Outcome::OutcomeUnknown => "outcome_unknown",
            Outcome::Denied => "denied",
            Outcome::BudgetExceeded => "budget_exceeded",
            Outcome::Created => "created",
            Outcome::Allowed => "allowed",
            Outcome::Expired => "expired",
            Outcome::Revoked => "revoked",
            Outcome::Held => "held",
            Outcome::Approved => "approved",
            Outcome::ResolvedAllowOnce => "resolved_allow-once",
            Outcome::ResolvedDeny => "resolved_deny",
            Outcome::ResolveFailed => "resolve_failed",
            Outcome::ResolvedElsewhere => "resolved_elsewhere",
            Outcome::Warn => "warn",
            Outcome::Open => "open",
            Outcome::Close => "close",
            Outcome::Reset => "reset",
            Outcome::Upsert => "upsert",
            Outcome::Delete => "delete",
            Outcome::Reloaded => "reloaded",
            Outcome::Unchanged => "unchanged",
            Outcome::Error => "error",
            Outcome::Pruned => "pruned",
            Outcome::Recovered => "recovered",
            Outcome::TokenCreated => "token_created",
            Outcome::TokenRevoked => "token_revoked",
            Outcome::BlockedAtProxy => "blocked_at_proxy",
            Outcome::UnblockedAtProxy => "unblocked_at_proxy",
            Outcome::GlobalBlockedAtProxy => "global_blocked_at_proxy",
            Outcome::GlobalUnblockedAtProxy => "global_unblocked_at_proxy",
            Outcome::GatewayPending => "gateway_pending",
            Outcome::RunsAborted => "runs_aborted",
            Outcome::ApprovalsDenied => "approvals_denied",
            Outcome::ToolsDenied => "tools_denied",
            Outcome::ToolsDenyFailed => "tools_deny_failed",
            Outcome::CronDisabled => "cron_disabled",
            Outcome::ConfigRestored => "config_restored",
            Outcome::CronRestored => "cron_restored",
            Outcome::Connected => "connected",
            Outcome::Disconnected => "disconnected",
            Outcome::Healthy => "healthy",
            Outcome::Degraded => "degraded",
            Outcome::Offline => "offline",
            Outcome::Rewritten => "rewritten",
            Outcome::Reported => "reported",
            Outcome::UsageMatch => "usage_match",
            Outcome::UsageMismatch => "usage_mismatch",
            Outcome::Governed => "governed",
            Outcome::Ungoverned => "ungoverned",
            Outcome::Snapshot => "snapshot",
            Outcome::Drifted => "drifted",
            Outcome::RollbackPlanned => "rollback_planned",
            Outcome::RolledBack => "rolled_back",
            Outcome::RollbackConflict => "rollback_conflict",
            Outcome::RollbackFailed => "rollback_failed",
            Outcome::ModelChanged => "model_changed",
            Outcome::ModelChangeConflict => "model_change_conflict",
            Outcome::ModelChangeFailed => "model_change_failed",
            Outcome::RollbackHeld => "rollback_held",
            Outcome::RollbackRefused => "rollback_refused",
            Outcome::DriftAccepted => "drift_accepted",
            Outcome::BackupCreated => "backup_created",
            Outcome::ImportPlanned => "import_planned",
            Outcome::Imported => "imported",
            Outcome::ImportConflict => "import_conflict",
            Outcome::ImportFailed => "import_failed",
            Outcome::ImportHeld => "import_held",
            Outcome::ImportRefused => "import_refused",
            Outcome::ModelChangeHeld => "model_change_held",
            Outcome::ModelChangeRefused => "model_change_refused",
            Outcome::Delivered => "delivered",
            Outcome::DeliveryFailed => "delivery_failed",
            Outcome::Suppressed => "suppressed",
            Outcome::Anomaly => "anomaly",
            Outcome::Updated => "updated",
            Outcome::Enabled => "enabled",
            Outcome::Disabled => "disabled",
            Outcome::RunRequested => "run_requested",
            Outcome::FailureStreak => "failure_streak",
            Outcome::BudgetPaused => "budget_paused",
            Outcome::BudgetResumed => "budget_resumed",
            Outcome::Conflict => "conflict",
        }
    }
}

/// One event to record. `kind` is required; the other fields are optional so each kind fills
/// what it has. Build one with [`AuditEvent::new`] (or [`AuditEvent::from_decision`]) and
/// struct-update syntax: `AuditEvent { actor: Some(..), ..AuditEvent::new(RecordKind::Auth) }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub kind: RecordKind,
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
    /// What this call added to every budget that applies to it, in USD (exactly, to the
    /// nano-dollar); `None` = no budget was charged. Summing it reconciles budget spend.
    #[serde(default)]
    pub charged_usd: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Who acted (token name, `policy`, `system`).
    pub actor: Option<String>,
    /// How it ended, or which step of it this record is.
    pub outcome: Option<Outcome>,
    /// Kind-specific extras (approval id, OpenClaw run id, finish reason, tool calls, ...).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// Values a policy obligation asked to mask in this record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mask: Vec<String>,
}

impl AuditEvent {
    /// An event of `kind` with every optional field empty.
    pub fn new(kind: RecordKind) -> AuditEvent {
        AuditEvent {
            kind,
            decision_id: None,
            bundle_revision: None,
            trace_id: None,
            agent: None,
            session: None,
            action: None,
            rule: None,
            risk: None,
            reason: None,
            subject: serde_json::Value::Null,
            usage: None,
            cost_usd: None,
            charged_usd: None,
            latency_ms: None,
            actor: None,
            outcome: None,
            details: serde_json::Value::Null,
            mask: Vec::new(),
        }
    }

    /// An event of `kind` carrying the decision's fields.
    pub fn from_decision(kind: RecordKind, d: &Decision) -> AuditEvent {
        AuditEvent {
            decision_id: Some(d.id.clone()),
            bundle_revision: Some(d.bundle_revision.clone()),
            action: Some(d.action),
            rule: Some(d.rule.clone()),
            risk: Some(d.risk),
            reason: Some(d.reason.clone()),
            mask: d.obligations.mask.clone(),
            ..AuditEvent::new(kind)
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
        kind: Some(ev.kind),
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
        charged_usd: finite(ev.charged_usd),
        latency_ms: finite(ev.latency_ms),
        actor: text(ev.actor),
        outcome: ev.outcome.map(|o| o.as_str().to_string()),
        details,
        ..Default::default()
    }
}

//! What a notification is about. The notifier reads the audit log's live stream (every record
//! is masked before it is written), and [`classify`] turns the records worth telling someone
//! about into an [`Event`], through one table, [`TABLE`]: record kind and outcome (and, for a
//! few, the record's `details.event`) to a notification event kind. A feature that records
//! something new gets a notification by adding a line here. Only the masked record's fields
//! are read, so nothing that the audit log masks can leave in a notification.

use audit::AuditRecord;
use decision::Risk;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Notification event kinds; routes match them by name (`approval.created`, `budget.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "approval.created")]
    ApprovalCreated,
    #[serde(rename = "approval.decided")]
    ApprovalDecided,
    #[serde(rename = "approval.expired")]
    ApprovalExpired,
    #[serde(rename = "approval.cancelled")]
    ApprovalCancelled,
    /// Still pending after `[notify.escalation] after_s` for its risk.
    #[serde(rename = "approval.escalated")]
    ApprovalEscalated,
    /// Still pending `before_expiry_s` before it expires.
    #[serde(rename = "approval.expiring")]
    ApprovalExpiring,
    #[serde(rename = "budget.warn")]
    BudgetWarn,
    #[serde(rename = "budget.open")]
    BudgetOpen,
    #[serde(rename = "budget.close")]
    BudgetClose,
    #[serde(rename = "gateway.up")]
    GatewayUp,
    #[serde(rename = "gateway.down")]
    GatewayDown,
    #[serde(rename = "agent.healthy")]
    AgentHealthy,
    #[serde(rename = "agent.degraded")]
    AgentDegraded,
    #[serde(rename = "agent.offline")]
    AgentOffline,
    #[serde(rename = "agent.killed")]
    AgentKilled,
    #[serde(rename = "agent.recovered")]
    AgentRecovered,
    #[serde(rename = "policy.reload_failed")]
    PolicyReloadFailed,
    #[serde(rename = "audit.verify_failed")]
    AuditVerifyFailed,
    /// The audit log could not write (recorded once it can again).
    #[serde(rename = "audit.outage")]
    AuditOutage,
    /// An agent's or a model's spend or call rate far above its baseline (`docs/cost.md`).
    #[serde(rename = "cost.anomaly")]
    CostAnomaly,
    /// A cron job failed `[cron] failure_streak` times in a row (`docs/cron.md`).
    #[serde(rename = "cron.failure_streak")]
    CronFailureStreak,
    /// The daily digest.
    #[serde(rename = "digest")]
    Digest,
    /// A test message (`POST /api/v1/notifications/routes/{id}/test`).
    #[serde(rename = "test")]
    Test,
}

impl EventKind {
    /// Every kind (metric series, the UI's pickers, docs).
    pub const ALL: [EventKind; 23] = [
        EventKind::ApprovalCreated,
        EventKind::ApprovalDecided,
        EventKind::ApprovalExpired,
        EventKind::ApprovalCancelled,
        EventKind::ApprovalEscalated,
        EventKind::ApprovalExpiring,
        EventKind::BudgetWarn,
        EventKind::BudgetOpen,
        EventKind::BudgetClose,
        EventKind::GatewayUp,
        EventKind::GatewayDown,
        EventKind::AgentHealthy,
        EventKind::AgentDegraded,
        EventKind::AgentOffline,
        EventKind::AgentKilled,
        EventKind::AgentRecovered,
        EventKind::PolicyReloadFailed,
        EventKind::AuditVerifyFailed,
        EventKind::AuditOutage,
        EventKind::CostAnomaly,
        EventKind::CronFailureStreak,
        EventKind::Digest,
        EventKind::Test,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ApprovalCreated => "approval.created",
            EventKind::ApprovalDecided => "approval.decided",
            EventKind::ApprovalExpired => "approval.expired",
            EventKind::ApprovalCancelled => "approval.cancelled",
            EventKind::ApprovalEscalated => "approval.escalated",
            EventKind::ApprovalExpiring => "approval.expiring",
            EventKind::BudgetWarn => "budget.warn",
            EventKind::BudgetOpen => "budget.open",
            EventKind::BudgetClose => "budget.close",
            EventKind::GatewayUp => "gateway.up",
            EventKind::GatewayDown => "gateway.down",
            EventKind::AgentHealthy => "agent.healthy",
            EventKind::AgentDegraded => "agent.degraded",
            EventKind::AgentOffline => "agent.offline",
            EventKind::AgentKilled => "agent.killed",
            EventKind::AgentRecovered => "agent.recovered",
            EventKind::PolicyReloadFailed => "policy.reload_failed",
            EventKind::AuditVerifyFailed => "audit.verify_failed",
            EventKind::AuditOutage => "audit.outage",
            EventKind::CostAnomaly => "cost.anomaly",
            EventKind::CronFailureStreak => "cron.failure_streak",
            EventKind::Digest => "digest",
            EventKind::Test => "test",
        }
    }

    /// Parse a name.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The risk of an event whose record carries none.
    fn default_risk(self) -> Risk {
        match self {
            EventKind::AuditVerifyFailed | EventKind::AuditOutage => Risk::Critical,
            EventKind::BudgetOpen
            | EventKind::GatewayDown
            | EventKind::AgentOffline
            | EventKind::AgentKilled
            | EventKind::PolicyReloadFailed => Risk::High,
            EventKind::BudgetWarn
            | EventKind::AgentDegraded
            | EventKind::CostAnomaly
            | EventKind::CronFailureStreak => Risk::Medium,
            _ => Risk::Low,
        }
    }

    /// Whether this is about one approval (the message carries its details and a link).
    pub fn is_approval(self) -> bool {
        matches!(
            self,
            EventKind::ApprovalCreated
                | EventKind::ApprovalDecided
                | EventKind::ApprovalExpired
                | EventKind::ApprovalCancelled
                | EventKind::ApprovalEscalated
                | EventKind::ApprovalExpiring
        )
    }
}

/// One line of [`TABLE`]: records of `kind` with `outcome` (`None`: any) and, when given,
/// `details.event` equal to `detail_event`, become `to`.
pub struct Rule {
    pub kind: &'static str,
    pub outcome: Option<&'static str>,
    pub detail_event: Option<&'static str>,
    pub to: EventKind,
}

const fn rule(kind: &'static str, outcome: &'static str, to: EventKind) -> Rule {
    Rule { kind, outcome: Some(outcome), detail_event: None, to }
}

/// Audit record (kind, outcome) to notification event: the one table. First match wins;
/// records that match no line are not notified (model calls, grants, tokens, ...).
pub const TABLE: &[Rule] = &[
    rule("approval", "created", EventKind::ApprovalCreated),
    rule("approval", "allowed", EventKind::ApprovalDecided),
    rule("approval", "denied", EventKind::ApprovalDecided),
    rule("approval", "expired", EventKind::ApprovalExpired),
    rule("approval", "cancelled", EventKind::ApprovalCancelled),
    rule("budget", "warn", EventKind::BudgetWarn),
    rule("budget", "open", EventKind::BudgetOpen),
    rule("budget", "close", EventKind::BudgetClose),
    rule("gateway", "connected", EventKind::GatewayUp),
    rule("gateway", "disconnected", EventKind::GatewayDown),
    rule("health", "healthy", EventKind::AgentHealthy),
    rule("health", "degraded", EventKind::AgentDegraded),
    rule("health", "offline", EventKind::AgentOffline),
    rule("kill_switch", "blocked_at_proxy", EventKind::AgentKilled),
    rule("kill_switch", "global_blocked_at_proxy", EventKind::AgentKilled),
    rule("kill_switch", "unblocked_at_proxy", EventKind::AgentRecovered),
    rule("kill_switch", "global_unblocked_at_proxy", EventKind::AgentRecovered),
    rule("policy_reload", "error", EventKind::PolicyReloadFailed),
    Rule {
        kind: "config",
        outcome: Some("error"),
        detail_event: Some("audit.verify_failed"),
        to: EventKind::AuditVerifyFailed,
    },
    // Written by the audit crate once it can write again after an outage (#22).
    Rule { kind: "audit_outage", outcome: None, detail_event: None, to: EventKind::AuditOutage },
    // Written by cost insight (`cost` crate) when an hour is far above its baseline.
    rule("cost", "anomaly", EventKind::CostAnomaly),
    // Written by the gateway link's cron governance (`docs/cron.md`).
    rule("cron", "failure_streak", EventKind::CronFailureStreak),
];

/// The approval an event is about, from the masked record's `details.approval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalInfo {
    pub id: String,
    pub kind: String,
    pub status: String,
    /// What exactly will run, in one line (masked).
    pub what: String,
    /// More of the request: the prompt summary, the working directory (masked).
    pub detail: Option<String>,
    pub rule: String,
    pub reason: String,
    pub cost_estimate_usd: Option<f64>,
    pub created_at: String,
    pub expires_at: String,
    pub decided_by: Option<String>,
    pub decision_reason: Option<String>,
}

/// Something to tell people about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// The audit record's seq (0: not from a record, e.g. a test or a digest).
    pub seq: u64,
    /// The record's time (RFC 3339 UTC).
    pub ts: String,
    pub agent: Option<String>,
    pub risk: Risk,
    /// One line: what happened.
    pub summary: String,
    /// Why (the record's masked reason).
    pub reason: Option<String>,
    /// Label and value pairs shown under the summary.
    pub facts: Vec<(String, String)>,
    pub approval: Option<ApprovalInfo>,
    /// Structured content for machine receivers (the digest's numbers); null otherwise.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// One line saying what a (masked) subject asks to run or call.
pub fn subject_line(subject: &Value) -> String {
    if let Some(c) = s(subject, "command") {
        return c;
    }
    if let Some(argv) = subject.get("argv").and_then(Value::as_array) {
        return argv.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
    }
    if let Some(tool) = s(subject, "tool").or_else(|| s(subject, "name").filter(|_| subject.get("server").is_some())) {
        let server = s(subject, "server").map(|x| format!("{x}/")).unwrap_or_default();
        let args =
            subject.get("args").or_else(|| subject.get("arguments")).map(|a| format!(" {a}")).unwrap_or_default();
        return format!("{server}{tool}{args}");
    }
    let model = subject.get("model").filter(|m| m.is_object()).unwrap_or(subject);
    let mut parts = Vec::new();
    if let Some(u) = s(model, "upstream") {
        parts.push(u);
    }
    if let Some(n) = s(model, "name").or_else(|| s(subject, "model")) {
        parts.push(n);
    }
    if parts.is_empty() {
        let mut t = subject.to_string();
        truncate(&mut t, 200);
        return t;
    }
    parts.join(" ")
}

/// Cut `t` to at most `max` characters, marking the cut.
pub fn truncate(t: &mut String, max: usize) {
    if t.chars().count() > max {
        *t = t.chars().take(max.saturating_sub(1)).collect::<String>() + "…";
    }
}

fn approval_info(rec: &AuditRecord) -> Option<ApprovalInfo> {
    let a = rec.details.get("approval")?;
    let subject = a.get("subject").cloned().unwrap_or(Value::Null);
    let mut what = subject_line(&subject);
    truncate(&mut what, 500);
    let detail =
        s(&subject, "prompt_summary").or_else(|| s(&subject, "cwd").map(|c| format!("in {c}"))).map(|mut d| {
            truncate(&mut d, 300);
            d
        });
    Some(ApprovalInfo {
        id: s(a, "id")?,
        kind: s(a, "kind").unwrap_or_default(),
        status: s(a, "status").unwrap_or_default(),
        what,
        detail,
        rule: s(a, "rule").unwrap_or_default(),
        reason: s(a, "reason").unwrap_or_default(),
        cost_estimate_usd: a.get("cost_estimate_usd").and_then(Value::as_f64),
        created_at: s(a, "created_at").unwrap_or_default(),
        expires_at: s(a, "expires_at").unwrap_or_default(),
        decided_by: s(a, "decided_by"),
        decision_reason: s(a, "decision_reason"),
    })
}

/// The notification event a record stands for, if any (see [`TABLE`]).
pub fn classify(rec: &AuditRecord) -> Option<Event> {
    let kind = rec.kind.map(|k| k.as_str())?;
    let outcome = rec.outcome.as_deref();
    let detail_event = rec.details.get("event").and_then(Value::as_str);
    let line = TABLE.iter().find(|r| {
        r.kind == kind
            && r.outcome.is_none_or(|o| Some(o) == outcome)
            && r.detail_event.is_none_or(|e| Some(e) == detail_event)
    })?;
    let to = line.to;
    let approval = if to.is_approval() { approval_info(rec) } else { None };
    let subject_name = |k: &str| s(&rec.subject, k);
    let agent = rec.agent.clone();
    let who = agent.clone().unwrap_or_else(|| "*".into());
    let summary = match to {
        EventKind::ApprovalCreated => format!("Approval needed: {} for agent {who}", kind_words(&approval)),
        EventKind::ApprovalDecided => format!(
            "Approval {} by {}: {} for agent {who}",
            outcome.unwrap_or("decided"),
            rec.actor.as_deref().unwrap_or("someone"),
            kind_words(&approval)
        ),
        EventKind::ApprovalExpired => format!("Approval expired unanswered: {} for agent {who}", kind_words(&approval)),
        EventKind::ApprovalCancelled => format!("Approval cancelled: {} for agent {who}", kind_words(&approval)),
        EventKind::BudgetWarn => {
            format!("Budget {} passed its warning level", subject_name("budget").unwrap_or_default())
        }
        EventKind::BudgetOpen => {
            format!("Budget {} breaker opened: calls are refused", subject_name("budget").unwrap_or_default())
        }
        EventKind::BudgetClose => format!("Budget {} breaker closed", subject_name("budget").unwrap_or_default()),
        EventKind::GatewayUp => "OpenClaw gateway link is up".to_string(),
        EventKind::GatewayDown => "OpenClaw gateway link is down: exec approvals cannot be answered".to_string(),
        EventKind::AgentHealthy => format!("Agent {who} is healthy again"),
        EventKind::AgentDegraded => format!("Agent {who} is degraded"),
        EventKind::AgentOffline => format!("Agent {who} is offline"),
        EventKind::AgentKilled if who == "*" => "Kill switch engaged for every agent".to_string(),
        EventKind::AgentKilled => format!("Agent {who} was stopped by the kill switch"),
        EventKind::AgentRecovered if who == "*" => "Global kill switch released".to_string(),
        EventKind::AgentRecovered => format!("Agent {who} was recovered"),
        EventKind::PolicyReloadFailed => "Policy reload failed: the last good bundle stays in force".to_string(),
        EventKind::AuditVerifyFailed => "Audit log verification FAILED".to_string(),
        EventKind::AuditOutage => "The audit log could not write".to_string(),
        EventKind::CostAnomaly => format!(
            "Cost anomaly: {} {} {} far above its baseline",
            subject_name("scope").unwrap_or_default(),
            subject_name("subject").unwrap_or_default(),
            subject_name("metric").unwrap_or_default()
        ),
        EventKind::CronFailureStreak => format!(
            "Cron job {} of agent {who} failed {} times in a row",
            subject_name("job_name").or_else(|| subject_name("job")).unwrap_or_default(),
            rec.details.get("consecutive_failures").and_then(Value::as_u64).unwrap_or_default()
        ),
        other => other.as_str().to_string(),
    };
    let mut facts = Vec::new();
    if to == EventKind::BudgetWarn || to == EventKind::BudgetOpen || to == EventKind::BudgetClose {
        let d = &rec.details;
        if let (Some(sp), Some(li)) =
            (d.get("spent_usd").and_then(Value::as_f64), d.get("limit_usd").and_then(Value::as_f64))
        {
            facts.push(("Spent".into(), format!("${sp:.4} of {}", usd_limit(li))));
        }
        if let Some(r) = s(d, "resets_at") {
            facts.push(("Resets".into(), r));
        }
    }
    if to == EventKind::CostAnomaly {
        facts.extend(cost_facts(&rec.details));
    }
    if to == EventKind::CronFailureStreak {
        if let Some(e) = s(&rec.details, "last_error") {
            facts.push(("Last error".into(), e));
        }
        if let Some(j) = s(&rec.subject, "job") {
            facts.push(("Job id".into(), j));
        }
    }
    if to == EventKind::AuditVerifyFailed {
        if let Some(n) = rec.details.get("first_bad_seq").and_then(Value::as_u64) {
            facts.push(("First bad record".into(), n.to_string()));
        }
    }
    Some(Event {
        kind: to,
        seq: rec.seq,
        ts: rec.ts.clone(),
        agent,
        risk: rec.risk.unwrap_or_else(|| to.default_risk()),
        summary,
        reason: rec.reason.clone(),
        facts,
        approval,
        data: Value::Null,
    })
}

/// The anomaly's numbers and its top contributor (agent -> model -> trace).
fn cost_facts(d: &Value) -> Vec<(String, String)> {
    let f = |k: &str| d.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let mut out = vec![
        ("Hour".to_string(), s(d, "hour").unwrap_or_default()),
        (
            "Value".to_string(),
            format!("{:.4} (baseline median {:.4}, threshold {:.4})", f("value"), f("baseline_median"), f("threshold")),
        ),
    ];
    let agent = d.pointer("/top/0");
    let model = d.pointer("/top/0/models/0");
    let trace = d.pointer("/top/0/models/0/traces/0/trace_id").and_then(Value::as_str);
    if let (Some(a), Some(m)) = (agent, model) {
        let mut line = format!("{} -> {}", s(a, "agent").unwrap_or_default(), s(m, "model").unwrap_or_default());
        if let Some(t) = trace {
            line.push_str(&format!(" -> trace {t}"));
        }
        out.push(("Top contributor".to_string(), line));
    }
    out
}

fn kind_words(a: &Option<ApprovalInfo>) -> String {
    match a.as_ref().map(|a| a.kind.as_str()) {
        Some("exec") => "command".into(),
        Some("model_call") => "model call".into(),
        Some("tool_call") => "tool call".into(),
        Some(k) => k.replace('_', " "),
        None => "request".into(),
    }
}

/// A budget limit as people wrote it: whole cents with two decimals, smaller amounts with four
/// (a $0.005 limit must not read "$0.01").
pub fn usd_limit(v: f64) -> String {
    if ((v * 100.0).round() - v * 100.0).abs() < 1e-9 {
        format!("${v:.2}")
    } else {
        format!("${v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn budget_limits_read_as_written() {
        assert_eq!(usd_limit(5.0), "$5.00");
        assert_eq!(usd_limit(0.25), "$0.25");
        assert_eq!(usd_limit(0.005), "$0.0050");
    }

    fn rec(kind: audit::RecordKind, outcome: &str, details: Value) -> AuditRecord {
        AuditRecord {
            seq: 9,
            ts: "2026-01-01T00:00:00.000Z".into(),
            kind: Some(kind),
            outcome: Some(outcome.into()),
            details,
            agent: Some("main".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_table_maps_records_to_events() {
        use audit::RecordKind as K;
        let cases = [
            (K::Budget, "open", EventKind::BudgetOpen),
            (K::Gateway, "disconnected", EventKind::GatewayDown),
            (K::Health, "offline", EventKind::AgentOffline),
            (K::KillSwitch, "blocked_at_proxy", EventKind::AgentKilled),
            (K::PolicyReload, "error", EventKind::PolicyReloadFailed),
        ];
        for (k, o, want) in cases {
            assert_eq!(classify(&rec(k, o, Value::Null)).unwrap().kind, want, "{k:?} {o}");
        }
        assert!(classify(&rec(K::ModelCall, "completed", Value::Null)).is_none());
        assert!(classify(&rec(K::PolicyReload, "reloaded", Value::Null)).is_none());
        assert!(classify(&rec(K::Config, "error", Value::Null)).is_none());
        let v =
            classify(&rec(K::Config, "error", json!({"event": "audit.verify_failed", "first_bad_seq": 4}))).unwrap();
        assert_eq!((v.kind, v.risk), (EventKind::AuditVerifyFailed, Risk::Critical));
        // Every kind's name parses back.
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), json!(k.as_str()));
        }
    }

    #[test]
    fn a_cron_failure_streak_becomes_its_event_with_the_job_and_last_error() {
        let mut r = rec(
            audit::RecordKind::Cron,
            "failure_streak",
            json!({"consecutive_failures": 3, "threshold": 3, "last_error": "HTTP 500"}),
        );
        r.subject = json!({"job": "j-1", "job_name": "nightly"});
        let e = classify(&r).unwrap();
        assert_eq!((e.kind, e.risk), (EventKind::CronFailureStreak, Risk::Medium));
        assert_eq!(e.summary, "Cron job nightly of agent main failed 3 times in a row");
        assert!(e.facts.contains(&("Last error".to_string(), "HTTP 500".to_string())), "{:?}", e.facts);
        // Other cron records (a pause, an edit) are not notified.
        assert!(classify(&rec(audit::RecordKind::Cron, "budget_paused", Value::Null)).is_none());
    }

    #[test]
    fn an_approval_event_carries_what_will_run_from_the_masked_record() {
        let a = json!({"id": "a1", "kind": "exec", "status": "pending", "rule": "exec.rm", "reason": "destructive",
            "subject": {"command": "rm -rf build", "cwd": "/w"}, "cost_estimate_usd": 0.5,
            "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:15:00Z"});
        let e = classify(&rec(audit::RecordKind::Approval, "created", json!({"approval": a}))).unwrap();
        assert_eq!(e.kind, EventKind::ApprovalCreated);
        let info = e.approval.unwrap();
        assert_eq!((info.what.as_str(), info.detail.as_deref()), ("rm -rf build", Some("in /w")));
        assert_eq!(info.cost_estimate_usd, Some(0.5));
        assert!(e.summary.contains("command") && e.summary.contains("main"), "{}", e.summary);
    }
}

//! The audit records of approvals and grants: one builder each, so every path (create,
//! decide, expire, cancel, grant changes) records the same fields.

use audit::{AuditEvent, Outcome, RecordKind};
use decision::Action;
use serde_json::json;

use super::broker::SYSTEM;
use super::grants::Grant;
use super::model::{Approval, Status};

/// The audit event of an approval at one step of its life.
pub(crate) fn event(a: &Approval, grant: Option<&Grant>, outcome: Outcome) -> AuditEvent {
    let action = match a.status {
        Status::Pending => Action::Hold,
        Status::Allowed => Action::Allow,
        _ => Action::Deny,
    };
    let created = a.status == Status::Pending;
    AuditEvent {
        decision_id: Some(a.decision_id.clone()),
        trace_id: Some(a.trace_id.clone()),
        agent: Some(a.agent.clone()),
        session: a.session.clone(),
        action: Some(action),
        rule: Some(a.rule.clone()),
        risk: Some(a.risk),
        reason: if created { Some(a.reason.clone()) } else { a.decision_reason.clone().or(Some(a.reason.clone())) },
        subject: a.subject.clone(),
        cost_usd: None,
        actor: Some(if created { "policy".to_string() } else { a.decided_by.clone().unwrap_or_else(|| SYSTEM.into()) }),
        outcome: Some(outcome),
        details: json!({
            "event": if created { "approval.created" } else { "approval.decided" },
            "approval": a,
            "grant": grant,
        }),
        ..AuditEvent::new(RecordKind::Approval)
    }
}

pub(crate) fn grant_event(g: &Grant, actor: &str, outcome: Outcome) -> AuditEvent {
    AuditEvent {
        agent: Some(g.scope.agent.clone()),
        actor: Some(actor.to_string()),
        outcome: Some(outcome),
        reason: Some(g.scope.description.clone()),
        subject: json!({ "kind": g.scope.kind, "pattern": g.scope.pattern, "arg_pattern": g.scope.arg_pattern }),
        details: json!({ "event": format!("grant.{}", outcome.as_str()), "grant": g }),
        ..AuditEvent::new(RecordKind::Grant)
    }
}

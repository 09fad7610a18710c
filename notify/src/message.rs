//! One message as every channel renders it: a title, plain lines, and the links. Built from
//! the (masked) events of one burst; an approval message carries what the inbox shows (agent,
//! what exactly will run, risk, cost estimate, time left) and a signed action link.

use chrono::{DateTime, Utc};
use decision::Risk;
use serde::Serialize;

use crate::event::{Event, EventKind};

/// Most events of a burst listed in one message (the count says how many there were).
pub const MAX_LISTED: usize = 5;

/// A rendered message.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub kind: EventKind,
    pub risk: Risk,
    pub agent: Option<String>,
    /// Events in the burst this message stands for.
    pub count: u32,
    pub title: String,
    /// Body lines, plain text.
    pub lines: Vec<String>,
    /// The signed, single-use action link (approvals only).
    pub action_url: Option<String>,
    /// Where to look in the UI (no secret in it).
    pub ui_url: String,
    /// The events (at most [`MAX_LISTED`]), masked as the audit log stores them.
    pub events: Vec<Event>,
    /// Whether this is a test message.
    pub test: bool,
}

fn risk_word(r: Risk) -> &'static str {
    match r {
        Risk::Low => "low",
        Risk::Medium => "medium",
        Risk::High => "HIGH",
        Risk::Critical => "CRITICAL",
    }
}

/// "14 min left", "1 h 05 min left", "expired".
pub fn time_left(expires_at: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(expires_at) else { return String::new() };
    let s = (t.with_timezone(&Utc) - now).num_seconds();
    if s <= 0 {
        return "expired".into();
    }
    if s < 120 {
        return format!("{s} s left");
    }
    let m = s / 60;
    if m < 60 {
        return format!("{m} min left");
    }
    format!("{} h {:02} min left", m / 60, m % 60)
}

impl Message {
    /// The message for a burst (`events` non-empty, oldest first; `count` >= events.len()).
    /// `action_url` is the signed link for the first event's approval, if any.
    pub fn build(
        events: &[Event],
        count: u32,
        action_url: Option<String>,
        public_url: &str,
        now: DateTime<Utc>,
    ) -> Message {
        let first = &events[0];
        let risk = events.iter().map(|e| e.risk).max().unwrap_or(first.risk);
        let more = if count > 1 { format!(" (+{} more)", count - 1) } else { String::new() };
        let title = format!("[{}] {}{more}", risk_word(risk), first.summary);
        let mut lines = Vec::new();
        if let Some(a) = &first.approval {
            lines.push(format!("Agent: {}", first.agent.as_deref().unwrap_or("?")));
            lines.push(format!("Runs: {}", a.what));
            if let Some(d) = &a.detail {
                lines.push(format!("Detail: {d}"));
            }
            lines.push(format!("Risk: {} (rule {})", risk_word(first.risk), a.rule));
            if !a.reason.is_empty() {
                lines.push(format!("Why held: {}", a.reason));
            }
            lines.push(match a.cost_estimate_usd {
                Some(c) => format!("Cost estimate: ${c:.4}"),
                None => "Cost estimate: unknown".to_string(),
            });
            if a.status == "pending"
                || matches!(
                    first.kind,
                    EventKind::ApprovalCreated | EventKind::ApprovalEscalated | EventKind::ApprovalExpiring
                )
            {
                let left = time_left(&a.expires_at, now);
                if !left.is_empty() {
                    lines.push(format!("Time left: {left} (expires {})", a.expires_at));
                }
            }
            if let Some(by) = &a.decided_by {
                lines.push(format!("Decided by: {by}"));
            }
            if let Some(r) = &a.decision_reason {
                lines.push(format!("Decision reason: {r}"));
            }
        } else {
            if let Some(agent) = &first.agent {
                lines.push(format!("Agent: {agent}"));
            }
            if let Some(r) = &first.reason {
                lines.push(format!("Reason: {r}"));
            }
        }
        for (k, v) in &first.facts {
            lines.push(format!("{k}: {v}"));
        }
        if count > 1 {
            lines.push(format!("{count} events of this kind arrived together:"));
            for e in events.iter().skip(1).take(MAX_LISTED - 1) {
                let what = e.approval.as_ref().map(|a| a.what.clone()).unwrap_or_else(|| e.summary.clone());
                lines.push(format!("- {what}"));
            }
            let listed = events.len().min(MAX_LISTED) as u32;
            if count > listed {
                lines.push(format!("- and {} more", count - listed));
            }
        }
        let base = public_url.trim_end_matches('/');
        let ui_url = match (&first.approval, first.kind) {
            (Some(a), _) => format!("{base}/#/approvals/{}", a.id),
            (None, EventKind::BudgetWarn | EventKind::BudgetOpen | EventKind::BudgetClose) => {
                format!("{base}/#/budgets")
            }
            (None, k) if k.as_str().starts_with("agent.") || k.as_str().starts_with("gateway.") => {
                format!("{base}/#/agents")
            }
            (None, EventKind::PolicyReloadFailed) => format!("{base}/#/policies"),
            _ => format!("{base}/#/audit"),
        };
        Message {
            kind: first.kind,
            risk,
            agent: first.agent.clone(),
            count,
            title,
            lines,
            action_url,
            ui_url,
            events: events.iter().take(MAX_LISTED).cloned().collect(),
            test: first.kind == EventKind::Test,
        }
    }

    /// Title, lines and links as plain text (e-mail body, logs).
    pub fn text(&self) -> String {
        let mut t = self.lines.join("\n");
        if let Some(u) = &self.action_url {
            t.push_str(&format!("\n\nOpen this approval (sign-in required; the link works once): {u}"));
        } else {
            t.push_str(&format!("\n\nOpen: {}", self.ui_url));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn time_left_reads_like_a_countdown() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(time_left("2026-01-01T00:00:30Z", now), "30 s left");
        assert_eq!(time_left("2026-01-01T00:14:00Z", now), "14 min left");
        assert_eq!(time_left("2026-01-01T01:05:00Z", now), "1 h 05 min left");
        assert_eq!(time_left("2025-12-31T23:00:00Z", now), "expired");
    }
}

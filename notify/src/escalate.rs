//! Escalation: an approval must never expire unseen. When one is created, a timer waits
//! `[notify.escalation] after_s` for its risk; if it is still pending then, `approval.escalated`
//! goes to the `escalate_to` routes of the routes that announced it (and to every route that
//! asks for that kind). `before_expiry_s` before it expires, if still pending,
//! `approval.expiring` goes the same way. The timers live in memory: a restart cancels every
//! pending approval anyway (the broker's rule), so nothing is left to escalate.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::event::{Event, EventKind};
use crate::message::time_left;
use crate::{Core, Input};

fn at(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Schedule the escalation steps of a new approval.
pub(crate) fn schedule(core: Arc<Core>, e: &Event, targets: Vec<String>) {
    let Some(a) = e.approval.clone() else { return };
    let (Some(created), Some(expires)) = (at(&a.created_at), at(&a.expires_at)) else { return };
    let esc = &core.settings.escalation;
    let mut steps = Vec::new();
    let after = esc.after_s.get(e.risk);
    if after > 0 {
        let t = created + chrono::Duration::seconds(after as i64);
        if t < expires {
            steps.push((t, EventKind::ApprovalEscalated));
        }
    }
    if esc.before_expiry_s > 0 {
        let t = expires - chrono::Duration::seconds(esc.before_expiry_s as i64);
        if t > created && steps.first().is_none_or(|(s, _)| t > *s) {
            steps.push((t, EventKind::ApprovalExpiring));
        }
    }
    if steps.is_empty() {
        return;
    }
    let base = e.clone();
    tokio::spawn(async move {
        let mut sd = core.shutdown.clone();
        for (when, kind) in steps {
            let wait = (when - Utc::now()).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = sd.changed() => return,
            }
            let pending =
                matches!(core.broker.get(&a.id), Ok(Some(x)) if x.status == governance::approvals::Status::Pending);
            if !pending {
                return;
            }
            let now = Utc::now();
            let waited = (now - created).num_seconds().max(0);
            let mut ev = base.clone();
            ev.kind = kind;
            ev.ts = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let who = ev.agent.clone().unwrap_or_else(|| "?".into());
            ev.summary = match kind {
                EventKind::ApprovalEscalated => {
                    format!("Still waiting after {}: approval for agent {who} nobody has answered", words(waited))
                }
                _ => format!("Expiring unanswered ({}): approval for agent {who}", time_left(&a.expires_at, now)),
            };
            let step = if kind == EventKind::ApprovalEscalated { "escalated" } else { "expiring" };
            core.metrics.escalations.with_label_values(&[step]).inc();
            core.metrics.events.with_label_values(&[kind.as_str()]).inc();
            if core.tx.try_send(Input::Escalation { event: Box::new(ev), targets: targets.clone() }).is_err() {
                core.metrics.drop(crate::metrics::Drop::QueueFull, 1);
            }
        }
    });
}

fn words(s: i64) -> String {
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else {
        format!("{} h", s / 3600)
    }
}

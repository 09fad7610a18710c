//! Deliveries: one per (message, channel). Each is logged when created, runs on its own task
//! (at most `max_in_flight` at once), is retried with exponential backoff while the failure
//! may pass (`SendError::retryable`), and ends delivered, failed or suppressed: logged,
//! counted in `clawbutler_notify_deliveries_total{channel,outcome}`, and audited (kind
//! `notification`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use audit::{AuditEvent, Outcome as AuditOutcome, RecordKind};
use serde_json::json;

use crate::channels::{Channel, SendCtx, SendError};
use crate::event::{Event, EventKind};
use crate::log::{Delivery, Status};
use crate::message::Message;
use crate::metrics::{Drop, Outcome};
use crate::route::RouteSpec;
use crate::store::now;
use crate::Core;

fn new_delivery(route: &str, ch: &Channel, first: &Event, count: u32, title: &str) -> Delivery {
    Delivery {
        id: uuid::Uuid::now_v7().to_string(),
        created_at: now(),
        route: route.to_string(),
        channel: ch.name.clone(),
        channel_kind: ch.kind,
        event: first.kind,
        seq: (first.seq > 0).then_some(first.seq),
        agent: first.agent.clone(),
        risk: first.risk,
        count,
        title: title.to_string(),
        approval_id: first.approval.as_ref().map(|a| a.id.clone()),
        status: Status::Queued,
        reason: None,
        attempts: 0,
        last_error: None,
        delivered_at: None,
        latency_ms: None,
        test: first.kind == EventKind::Test,
    }
}

/// The audit record of a delivery that ended.
fn audit(core: &Core, d: &Delivery, actor: &str) {
    let outcome = match d.status {
        Status::Delivered => AuditOutcome::Delivered,
        Status::Suppressed => AuditOutcome::Suppressed,
        _ => AuditOutcome::DeliveryFailed,
    };
    let ev = AuditEvent {
        agent: d.agent.clone(),
        risk: Some(d.risk),
        actor: Some(actor.to_string()),
        outcome: Some(outcome),
        rule: Some(format!("notify.route.{}", d.route)),
        reason: d.last_error.clone().or_else(|| d.reason.clone()),
        latency_ms: d.latency_ms,
        subject: json!({"route": d.route, "channel": d.channel, "channel_kind": d.channel_kind, "event": d.event, "count": d.count}),
        details: json!({"delivery": d.id, "attempts": d.attempts, "approval_id": d.approval_id, "seq": d.seq, "test": d.test}),
        ..AuditEvent::new(RecordKind::Notification)
    };
    if let Err(e) = core.audit.append(ev) {
        tracing::error!(error = %e, "audit append failed for a notification delivery");
    }
}

/// Quiet hours held this event back on `r`: one suppressed entry per channel.
pub(crate) fn suppress_quiet(core: &Core, r: &RouteSpec, e: &Event) {
    for ch in r.channels.iter().filter_map(|c| core.channels.get(c)) {
        let mut d = new_delivery(&r.id, ch, e, 1, &e.summary);
        d.status = Status::Suppressed;
        d.reason = Some("quiet_hours".into());
        let _ = core.log.put(&d);
        core.metrics.outcome(&ch.name, Outcome::SuppressedQuiet);
        audit(core, &d, "system");
    }
}

/// The signed action link for an approval event, if it is one that asks for a decision.
fn action_link(core: &Core, e: &Event) -> Option<String> {
    if !matches!(e.kind, EventKind::ApprovalCreated | EventKind::ApprovalEscalated | EventKind::ApprovalExpiring) {
        return None;
    }
    let a = e.approval.as_ref()?;
    let now = chrono::Utc::now().timestamp();
    let expires = chrono::DateTime::parse_from_rfc3339(&a.expires_at).map(|t| t.timestamp()).unwrap_or(now);
    let exp = expires.min(now + core.settings.link_ttl_s as i64);
    let token = core.links.issue(&a.id, exp)?;
    Some(format!("{}/n/{token}", core.public_url))
}

/// Send one merged burst through every channel of route `r`.
pub(crate) fn send_group(core: &Arc<Core>, r: &RouteSpec, events: &[Event], count: u32) {
    for ch in r.channels.iter().filter_map(|c| core.channels.get(c)) {
        let _ = start(core, r, ch, events, count, core.settings.retry_max, "system");
    }
}

/// Create, log and start one delivery; the handle resolves to its final entry.
fn start(
    core: &Arc<Core>,
    r: &RouteSpec,
    ch: &Arc<Channel>,
    events: &[Event],
    count: u32,
    retries: u32,
    actor: &str,
) -> Option<tokio::task::JoinHandle<Delivery>> {
    let first = events.first()?;
    let msg = Message::build(events, count, action_link(core, first), &core.public_url, chrono::Utc::now());
    let mut d = new_delivery(&r.id, ch, first, count, &msg.title);
    let wanted = first.kind == EventKind::Test
        || ch.user.as_deref().is_none_or(|u| core.push.prefs.get(u).wants(&ch.name, first.kind, first.risk));
    if !wanted {
        d.status = Status::Suppressed;
        d.reason = Some("preference".into());
        let _ = core.log.put(&d);
        core.metrics.outcome(&ch.name, Outcome::SuppressedPreference);
        audit(core, &d, actor);
        return None;
    }
    if core.in_flight.fetch_add(1, Ordering::AcqRel) >= core.settings.max_in_flight {
        core.in_flight.fetch_sub(1, Ordering::AcqRel);
        core.metrics.drop(Drop::Backlog, 1);
        d.status = Status::Failed;
        d.last_error = Some(format!("dropped: {} deliveries already in flight", core.settings.max_in_flight));
        let _ = core.log.put(&d);
        core.metrics.outcome(&ch.name, Outcome::Failed);
        audit(core, &d, actor);
        return None;
    }
    core.metrics.in_flight.inc();
    let _ = core.log.put(&d);
    let (core, ch, actor) = (core.clone(), ch.clone(), actor.to_string());
    let event_ts = first.ts.clone();
    Some(tokio::spawn(async move {
        let d = run(&core, &ch, d, &msg, retries, &event_ts, &actor).await;
        core.in_flight.fetch_sub(1, Ordering::AcqRel);
        core.metrics.in_flight.dec();
        d
    }))
}

fn backoff(core: &Core, attempt: u32) -> Duration {
    let base = core.settings.retry_initial_ms.max(1).saturating_mul(1u64 << attempt.min(20));
    let capped = base.min(core.settings.retry_max_ms.max(1));
    // Up to 20 % jitter, so many failed deliveries do not retry in lockstep.
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    let jitter = capped * u64::from(u16::from_le_bytes(b) % 200) / 1000;
    Duration::from_millis(capped + jitter)
}

async fn run(
    core: &Core,
    ch: &Channel,
    mut d: Delivery,
    msg: &Message,
    retries: u32,
    event_ts: &str,
    actor: &str,
) -> Delivery {
    let mut sd = core.shutdown.clone();
    loop {
        d.attempts += 1;
        let ctx = SendCtx {
            http: &core.http,
            timeout: Duration::from_millis(core.settings.timeout_ms.max(1)),
            delivery_id: &d.id,
            route: &d.route,
            push: &core.push,
        };
        match ch.send(&ctx, msg).await {
            Ok(note) => {
                d.status = Status::Delivered;
                d.delivered_at = Some(now());
                d.last_error = note;
                if let Ok(t) = chrono::DateTime::parse_from_rfc3339(event_ts) {
                    let ms = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0)
                        as f64
                        / 1000.0;
                    d.latency_ms = Some(ms.max(0.0));
                    core.metrics.latency.with_label_values(&[&ch.name]).observe(ms.max(0.0) / 1000.0);
                }
                core.metrics.outcome(&ch.name, Outcome::Delivered);
                break;
            }
            Err(SendError::NoRecipient(why)) => {
                d.status = Status::Suppressed;
                d.reason = Some("no_recipient".into());
                d.last_error = Some(why);
                core.metrics.outcome(&ch.name, Outcome::NoRecipient);
                let _ = core.log.put(&d);
                return d;
            }
            Err(e) => {
                d.last_error = Some(e.to_string());
                if e.retryable() && d.attempts <= retries {
                    d.status = Status::Retrying;
                    let _ = core.log.put(&d);
                    core.metrics.outcome(&ch.name, Outcome::Retried);
                    tracing::info!(delivery = %d.id, channel = %ch.name, attempt = d.attempts, error = %e, "notification attempt failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(core, d.attempts - 1)) => continue,
                        _ = sd.changed() => {
                            d.status = Status::Abandoned;
                            let _ = core.log.put(&d);
                            return d;
                        }
                    }
                }
                d.status = Status::Failed;
                core.metrics.outcome(&ch.name, Outcome::Failed);
                tracing::warn!(delivery = %d.id, channel = %ch.name, attempts = d.attempts, error = %e, "notification failed");
                break;
            }
        }
    }
    let _ = core.log.put(&d);
    audit(core, &d, actor);
    d
}

/// A test message through every channel of `r` (one attempt each, no quiet hours).
pub(crate) async fn test(core: &Arc<Core>, r: &RouteSpec, actor: &str) -> Vec<Delivery> {
    let e = Event {
        kind: EventKind::Test,
        seq: 0,
        ts: now(),
        agent: None,
        risk: decision::Risk::Low,
        summary: format!("Test message for route '{}' (sent by {actor})", r.id),
        reason: None,
        facts: vec![("Route".into(), r.id.clone()), ("Channels".into(), r.channels.join(", "))],
        approval: None,
        data: serde_json::Value::Null,
    };
    send_now(core, r, &[e], actor).await
}

/// Send `events` as one message through every channel of `r` now and wait for the outcome.
pub(crate) async fn send_now(core: &Arc<Core>, r: &RouteSpec, events: &[Event], actor: &str) -> Vec<Delivery> {
    let retries = if events.first().is_some_and(|e| e.kind == EventKind::Test) { 0 } else { core.settings.retry_max };
    let handles: Vec<_> = r
        .channels
        .iter()
        .filter_map(|c| core.channels.get(c))
        .filter_map(|ch| start(core, r, ch, events, events.len() as u32, retries, actor))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(d) = h.await {
            out.push(d);
        }
    }
    out
}

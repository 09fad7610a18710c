//! The daily digest, computed from the audit log and the budgets: approvals created, decided
//! and waiting; spend per agent (what budgets were charged, `charged_usd`, and what upstreams
//! reported, `cost_usd`); every budget's state; breakers; incidents (gateway down, agents
//! offline or degraded, kills, failed policy reloads, audit failures); top denied rules.
//! Sent at `[notify.digest] at` (local time in `timezone`) to the digest route, covering the
//! 24 hours before.

use std::collections::BTreeMap;
use std::sync::Arc;

use audit::RecordKind;
use chrono::{DateTime, TimeZone, Utc};
use decision::{Action, Risk};
use serde::Serialize;

use crate::error::NotifyError;
use crate::event::{classify, Event, EventKind};
use crate::log::Delivery;
use crate::settings::{parse_hhmm, parse_tz};
use crate::Core;

/// Records read for one digest, at most (a bound on the work, stated in the digest).
const MAX_RECORDS: usize = 2_000_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApprovalCounts {
    pub created: u64,
    pub allowed: u64,
    pub denied: u64,
    pub expired: u64,
    pub cancelled: u64,
    /// Pending when the digest was made.
    pub waiting_now: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentSpend {
    pub agent: String,
    /// Sum of `charged_usd`: what the agent's calls added to budgets.
    pub charged_usd: f64,
    /// Sum of `cost_usd`: what upstreams reported.
    pub cost_usd: f64,
    /// Forwarded model calls that ended.
    pub calls: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetState {
    pub id: String,
    pub spent_usd: f64,
    pub limit_usd: f64,
    pub open: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Breakers {
    pub warned: u64,
    pub opened: u64,
    pub closed: u64,
    pub open_now: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub ts: String,
    pub event: EventKind,
    pub agent: Option<String>,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleCount {
    pub rule: String,
    pub count: u64,
}

/// One digest.
#[derive(Debug, Clone, Serialize)]
pub struct Digest {
    pub from: String,
    pub to: String,
    pub approvals: ApprovalCounts,
    pub spend: Vec<AgentSpend>,
    pub total_charged_usd: f64,
    pub budgets: Vec<BudgetState>,
    pub breakers: Breakers,
    pub incident_count: u64,
    /// The latest incidents (at most 20).
    pub incidents: Vec<Incident>,
    pub denied_total: u64,
    pub top_denied_rules: Vec<RuleCount>,
    /// The window held more records than one digest reads ([`MAX_RECORDS`]).
    pub truncated: bool,
}

/// Every record of `kind` in `[from, to]` (newest first), handed to `f`; false if cut short.
fn scan(
    core: &Core,
    kind: RecordKind,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    read: &mut usize,
    f: &mut dyn FnMut(&audit::AuditRecord),
) -> Result<bool, NotifyError> {
    core.audit.scan(kind, from, to, read, MAX_RECORDS, f).map_err(|e| NotifyError::Store(e.to_string()))
}

fn round(x: f64) -> f64 {
    (x * 1e9).round() / 1e9
}

/// Compute the digest of `[from, to]` (blocking reads run off the async threads).
pub(crate) async fn compute(core: &Arc<Core>, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Digest, NotifyError> {
    let c = core.clone();
    tokio::task::spawn_blocking(move || compute_blocking(&c, from, to))
        .await
        .map_err(|e| NotifyError::Store(e.to_string()))?
}

fn compute_blocking(core: &Core, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Digest, NotifyError> {
    let mut read = 0usize;
    let mut complete = true;
    let mut approvals = ApprovalCounts::default();
    complete &= scan(core, RecordKind::Approval, from, to, &mut read, &mut |r| match r.outcome.as_deref() {
        Some("created") => approvals.created += 1,
        Some("allowed") => approvals.allowed += 1,
        Some("denied") => approvals.denied += 1,
        Some("expired") => approvals.expired += 1,
        Some("cancelled") => approvals.cancelled += 1,
        _ => {}
    })?;
    let mut spend: BTreeMap<String, AgentSpend> = BTreeMap::new();
    let mut denied: BTreeMap<String, u64> = BTreeMap::new();
    let mut denied_total = 0u64;
    for kind in [RecordKind::ModelCall, RecordKind::Exec, RecordKind::ToolCall] {
        complete &= scan(core, kind, from, to, &mut read, &mut |r| {
            let is_denial =
                r.action == Some(Action::Deny) && matches!(r.outcome.as_deref(), Some("denied" | "budget_exceeded"));
            if is_denial {
                denied_total += 1;
                *denied.entry(r.rule.clone().unwrap_or_else(|| "(none)".into())).or_default() += 1;
            }
            if kind == RecordKind::ModelCall {
                let agent = r.agent.clone().unwrap_or_else(|| "(none)".into());
                let s = spend.entry(agent.clone()).or_insert_with(|| AgentSpend { agent, ..Default::default() });
                s.charged_usd += r.charged_usd.unwrap_or(0.0);
                s.cost_usd += r.cost_usd.unwrap_or(0.0);
                if r.action == Some(Action::Allow) && r.outcome.as_deref() != Some("started") {
                    s.calls += 1;
                }
            }
        })?;
    }
    let mut breakers = Breakers::default();
    let mut incidents = Vec::new();
    let mut incident_count = 0u64;
    for kind in [
        RecordKind::Budget,
        RecordKind::Health,
        RecordKind::Gateway,
        RecordKind::KillSwitch,
        RecordKind::PolicyReload,
        RecordKind::Config,
    ] {
        complete &= scan(core, kind, from, to, &mut read, &mut |r| {
            let Some(e) = classify(r) else { return };
            match e.kind {
                EventKind::BudgetWarn => breakers.warned += 1,
                EventKind::BudgetOpen => breakers.opened += 1,
                EventKind::BudgetClose => breakers.closed += 1,
                _ => {}
            }
            let incident = matches!(
                e.kind,
                EventKind::GatewayDown
                    | EventKind::AgentOffline
                    | EventKind::AgentDegraded
                    | EventKind::AgentKilled
                    | EventKind::PolicyReloadFailed
                    | EventKind::AuditVerifyFailed
                    | EventKind::AuditOutage
                    | EventKind::BudgetOpen
            );
            if incident {
                incident_count += 1;
                incidents.push(Incident { ts: e.ts, event: e.kind, agent: e.agent, summary: e.summary });
            }
        })?;
    }
    incidents.sort_by(|a, b| b.ts.cmp(&a.ts));
    incidents.truncate(20);
    let budgets: Vec<BudgetState> = core
        .budgets
        .list()
        .into_iter()
        .map(|b| BudgetState { id: b.id, spent_usd: b.spent_usd, limit_usd: b.limit_usd, open: b.open })
        .collect();
    breakers.open_now = budgets.iter().filter(|b| b.open).map(|b| b.id.clone()).collect();
    let mut cursor = None;
    loop {
        let q = governance::approvals::ApprovalQuery {
            status: Some("pending".into()),
            cursor: cursor.take(),
            limit: Some(500),
            ..Default::default()
        };
        let page = core.broker.list(&q).map_err(|e| NotifyError::Store(e.to_string()))?;
        approvals.waiting_now += page.items.len() as u64;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut spend: Vec<AgentSpend> = spend.into_values().collect();
    for s in &mut spend {
        s.charged_usd = round(s.charged_usd);
        s.cost_usd = round(s.cost_usd);
    }
    spend.sort_by(|a, b| b.charged_usd.total_cmp(&a.charged_usd).then(a.agent.cmp(&b.agent)));
    let total_charged_usd = round(spend.iter().map(|s| s.charged_usd).sum());
    let mut top: Vec<RuleCount> = denied.into_iter().map(|(rule, count)| RuleCount { rule, count }).collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then(a.rule.cmp(&b.rule)));
    top.truncate(5);
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(Digest {
        from: ts(from),
        to: ts(to),
        approvals,
        spend,
        total_charged_usd,
        budgets,
        breakers,
        incident_count,
        incidents,
        denied_total,
        top_denied_rules: top,
        truncated: !complete,
    })
}

/// The digest as a notification event.
pub fn event(d: &Digest) -> Event {
    let a = &d.approvals;
    let mut facts = vec![
        ("Window".to_string(), format!("{} to {}", d.from, d.to)),
        (
            "Approvals".to_string(),
            format!(
                "{} asked, {} allowed, {} denied, {} expired, {} waiting now",
                a.created, a.allowed, a.denied, a.expired, a.waiting_now
            ),
        ),
        ("Spend".to_string(), format!("${:.4} charged to budgets", d.total_charged_usd)),
    ];
    for s in d.spend.iter().take(10) {
        facts.push((format!("  {}", s.agent), format!("${:.4} charged, {} calls", s.charged_usd, s.calls)));
    }
    for b in &d.budgets {
        let state = if b.open { "OPEN" } else { "ok" };
        facts.push((
            format!("Budget {}", b.id),
            format!("${:.4} of {} ({state})", b.spent_usd, crate::event::usd_limit(b.limit_usd)),
        ));
    }
    facts.push((
        "Breakers".to_string(),
        format!(
            "{} warned, {} opened, {} closed, open now: {}",
            d.breakers.warned,
            d.breakers.opened,
            d.breakers.closed,
            if d.breakers.open_now.is_empty() { "none".to_string() } else { d.breakers.open_now.join(", ") }
        ),
    ));
    facts.push(("Incidents".to_string(), d.incident_count.to_string()));
    for i in d.incidents.iter().take(5) {
        facts.push((format!("  {}", i.ts), i.summary.clone()));
    }
    facts.push(("Denied".to_string(), d.denied_total.to_string()));
    for r in &d.top_denied_rules {
        facts.push((format!("  {}", r.rule), r.count.to_string()));
    }
    Event {
        kind: EventKind::Digest,
        seq: 0,
        ts: crate::store::now(),
        agent: None,
        risk: Risk::Low,
        summary: format!(
            "Daily digest: {} approvals decided, {} waiting; ${:.2} spent; {} incidents",
            a.allowed + a.denied + a.expired,
            a.waiting_now,
            d.total_charged_usd,
            d.incident_count
        ),
        reason: None,
        facts,
        approval: None,
        data: serde_json::to_value(d).unwrap_or_default(),
    }
}

/// Compute the last 24 hours and send to the digest route now.
pub(crate) async fn send_now(core: &Arc<Core>, actor: &str) -> Result<(Digest, Vec<Delivery>), NotifyError> {
    let route_id = core
        .settings
        .digest
        .route
        .clone()
        .ok_or_else(|| NotifyError::Conflict("no digest route: set [notify.digest] route".into()))?;
    let route = core
        .routes
        .load()
        .iter()
        .find(|r| r.spec.id == route_id)
        .map(|r| r.spec.clone())
        .ok_or_else(|| NotifyError::NotFound(format!("no route '{route_id}'")))?;
    let to = Utc::now();
    let d = compute(core, to - chrono::Duration::hours(24), to).await?;
    let sent = crate::deliver::send_now(core, &route, &[event(&d)], actor).await;
    Ok((d, sent))
}

/// The next time the digest is due after `now`.
pub fn next_at(now: DateTime<Utc>, at: &str, tz: &str) -> Option<DateTime<Utc>> {
    let minutes = parse_hhmm(at)?;
    let tz = parse_tz(tz)?;
    let local = now.with_timezone(&tz).date_naive();
    for day in 0..3 {
        let d = local + chrono::Duration::days(day);
        let naive = d.and_hms_opt(minutes / 60, minutes % 60, 0)?;
        // A local time skipped by a DST change is taken an hour later.
        let t = tz
            .from_local_datetime(&naive)
            .earliest()
            .or_else(|| tz.from_local_datetime(&(naive + chrono::Duration::hours(1))).earliest())?;
        let t = t.with_timezone(&Utc);
        if t > now {
            return Some(t);
        }
    }
    None
}

/// Send the digest every day at the configured time (when a digest route is set).
pub(crate) async fn schedule(core: Arc<Core>) {
    if core.settings.digest.route.is_none() {
        return;
    }
    let mut sd = core.shutdown.clone();
    loop {
        let Some(next) = next_at(Utc::now(), &core.settings.digest.at, &core.settings.digest.timezone) else { return };
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sd.changed() => return,
        }
        match send_now(&core, "system").await {
            Ok((_, sent)) => tracing::info!(deliveries = sent.len(), "daily digest sent"),
            Err(e) => tracing::error!(error = %e, "daily digest failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_digest_is_the_next_local_time() {
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 10, 0, 0).unwrap();
        assert_eq!(next_at(now, "08:00", "UTC").unwrap(), Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap());
        assert_eq!(next_at(now, "11:30", "UTC").unwrap(), Utc.with_ymd_and_hms(2026, 3, 1, 11, 30, 0).unwrap());
        // 08:00 in Shanghai is 00:00 UTC.
        assert_eq!(next_at(now, "08:00", "Asia/Shanghai").unwrap(), Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap());
    }
}

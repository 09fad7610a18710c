//! The broker proper: creating holds, the one transition out of `pending`, and making every
//! transition durable and visible (sled, audit log, metrics) before anyone is answered
//! (`durable.rs`). A human's decision that cannot be made durable (the audit log cannot write,
//! the store fails) is undone and refused to the decider: the call stays held.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use audit::{AuditLog, Outcome};
use dashmap::DashMap;
use prometheus::{HistogramOpts, HistogramVec, IntGauge};
use tokio::sync::oneshot;

use super::fleet::{checked_reason, grant_scope, InboxLink};
use super::fleet_grants::GrantLink;
use super::grants::{self, Grant, GrantScope, GrantStore};
use super::model::{
    now_rfc3339, Approval, ApprovalPage, ApprovalQuery, DecideRequest, DecisionKind, HoldRequest, Resolution, Status,
};
use super::pattern;
use super::record::event;
use super::store::ApprovalStore;
use super::wait::wait;
use super::{ApprovalSettings, BrokerError};

/// Actor of transitions nobody made by hand.
pub(crate) const SYSTEM: &str = "system";

/// The channel a held caller waits on, and when it started waiting.
pub(super) type Waiter = (oneshot::Sender<Resolution>, Instant);

/// A pending approval and the channel its waiter listens on.
pub(super) struct Live {
    pub approval: Approval,
    pub tx: Option<oneshot::Sender<Resolution>>,
    pub created: Instant,
}

pub(super) struct Metrics {
    pub pending: IntGauge,
    pub wait: HistogramVec,
    /// Pending approvals older than half their TTL: the alert that pages a human while a
    /// decision can still arrive in time (see operations.md).
    pub past_half_ttl: IntGauge,
}

pub(super) struct Inner {
    pub settings: ApprovalSettings,
    pub audit: Arc<AuditLog>,
    pub store: ApprovalStore,
    pub grants: GrantStore,
    pub live: DashMap<String, Arc<Mutex<Live>>>,
    pub metrics: Metrics,
    /// Turns true at shutdown: no new holds; long-lived readers (SSE) end.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// The fleet's shared inbox (fleet mode only, `fleet.rs`).
    pub inbox: OnceLock<Arc<dyn InboxLink>>,
    /// The fleet's grants (fleet mode only, `fleet_grants.rs`) and the set last read.
    pub grant_link: OnceLock<Arc<dyn GrantLink>>,
    pub fleet_grants: ArcSwap<Vec<Grant>>,
    /// The kill switch, read again once a hold is registered (see [`Broker::watch_kill`]).
    pub kill: OnceLock<Arc<crate::KillSwitch>>,
}

/// A transition out of `pending`, made in memory and not yet durable: the approval before and
/// after, and its waiter (still to be answered).
pub(super) struct Taken {
    pub prev: Approval,
    pub now: Approval,
    pub waiter: Option<Waiter>,
}

/// The approval broker (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    pub(super) inner: Arc<Inner>,
}

/// A held call: a future that resolves when the approval is decided, expires or is closed
/// elsewhere. Dropping it before then cancels the approval (recorded, actor `system`), so a
/// caller that goes away never leaves an approval behind that could later be allowed.
/// It must be polled for expiry to fire (the timer lives inside it).
pub struct Held {
    approval: Approval,
    fut: Pin<Box<dyn Future<Output = Resolution> + Send>>,
}

impl Held {
    /// The approval as created (status `pending`, version 1).
    pub fn approval(&self) -> &Approval {
        &self.approval
    }
}

impl Future for Held {
    type Output = Resolution;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Resolution> {
        self.fut.as_mut().poll(cx)
    }
}

fn millis(d: Duration) -> chrono::Duration {
    chrono::Duration::milliseconds(d.as_millis().min(i64::MAX as u128) as i64)
}

fn scoped_mask(extra: &[String]) -> Vec<String> {
    // Mask obligations name paths of the audit record ("$.subject.x"); the subject is masked
    // here on its own, so those paths are re-rooted at it, like the audit log does.
    extra
        .iter()
        .map(|e| match e.strip_prefix("$.subject") {
            Some(rest) if rest.is_empty() || rest.starts_with('.') || rest.starts_with('[') => format!("${rest}"),
            _ => e.clone(),
        })
        .collect()
}

impl Broker {
    /// Open the broker's trees in the main store. Approvals found `pending` belong to callers
    /// of a previous run, which are gone: they become `cancelled` (recorded), never allowed.
    pub fn open(
        db: &storage::Store,
        settings: &ApprovalSettings,
        audit: Arc<AuditLog>,
        registry: &prometheus::Registry,
    ) -> Result<Broker, BrokerError> {
        let pending = IntGauge::new("clawbutler_approvals_pending", "Approvals waiting for a decision")?;
        let wait = HistogramVec::new(
            HistogramOpts::new("clawbutler_approval_wait_seconds", "Time from hold to resolution, by outcome")
                .buckets(vec![0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0]),
            &["outcome"],
        )?;
        let past_half_ttl = IntGauge::new(
            "clawbutler_approvals_past_half_ttl",
            "Approvals still pending after half their time to live",
        )?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(wait.clone()))?;
        registry.register(Box::new(past_half_ttl.clone()))?;
        // Every outcome's series at 0 from the start, so rates and dashboards work before the
        // first approval of each kind.
        for s in [Status::Allowed, Status::Denied, Status::Expired, Status::Cancelled] {
            wait.with_label_values(&[s.as_str()]);
        }
        let inner = Inner {
            settings: settings.clone(),
            audit,
            store: ApprovalStore::open(db)?,
            grants: GrantStore::open(db)?,
            live: DashMap::new(),
            metrics: Metrics { pending, wait, past_half_ttl },
            closing: tokio::sync::watch::Sender::new(false),
            inbox: OnceLock::new(),
            grant_link: OnceLock::new(),
            kill: OnceLock::new(),
            fleet_grants: ArcSwap::from_pointee(Vec::new()),
        };
        let orphans = inner.store.pending()?;
        for mut a in orphans.iter().cloned() {
            close(
                &mut a,
                Status::Cancelled,
                SYSTEM,
                None,
                Some("the sidecar restarted while this was pending; its caller is gone"),
            );
            inner.store_and_record_now(&a);
        }
        if !orphans.is_empty() {
            // Startup only: the cancellations are on disk before any caller can ask about them.
            inner.audit.flush()?;
            db.flush()?;
        }
        Ok(Broker { inner: Arc::new(inner) })
    }

    /// The settings the broker runs with.
    pub fn settings(&self) -> &ApprovalSettings {
        &self.inner.settings
    }

    /// Park a call: create a pending approval (stored, audited) and return the future that
    /// waits for its outcome. Expiry: `decision.obligations.hold_ttl_s`, else the configured
    /// `ttl_s`. Fails (caller should refuse the call) only if the approval cannot be stored.
    pub fn hold(&self, req: HoldRequest) -> Result<Held, BrokerError> {
        if *self.inner.closing.borrow() {
            return Err(BrokerError::Invalid("the sidecar is shutting down".into()));
        }
        // A hold nobody could record is never created (the caller refuses the call).
        self.inner.audit.require(super::durable::face(req.kind)).map_err(audit::AuditError::from)?;
        let ttl = Duration::from_secs(req.decision.obligations.hold_ttl_s.unwrap_or(self.inner.settings.ttl_s).max(1));
        let now = chrono::Utc::now();
        let mut subject = req.subject;
        let salt = self.inner.audit.mask_salt();
        audit::mask::mask_json_salted(&mut subject, &scoped_mask(&req.decision.obligations.mask), salt);
        // The suggestion covers exactly what was asked: the literal text with every glob
        // metacharacter escaped (a held `nginx*` must not become a wildcard), masked first so
        // a mask's `[class:...]` is escaped too.
        let literal =
            |t: &str| pattern::literal(&audit::mask::mask_text_with_salted(t, &req.decision.obligations.mask, salt));
        let suggested_scope = GrantScope::new(
            &req.agent,
            req.kind,
            &literal(&req.grant_pattern),
            req.grant_args.as_deref().map(literal),
            None,
        );
        let a = Approval {
            id: uuid::Uuid::now_v7().to_string(),
            version: 1,
            status: Status::Pending,
            kind: req.kind,
            agent: req.agent,
            session: req.session,
            trace_id: req.trace_id,
            decision_id: req.decision.id.clone(),
            subject,
            risk: req.decision.risk,
            rule: req.decision.rule.clone(),
            // Masked like the subject: a policy reason may quote the arguments (a recipient's
            // number, a token), and the inbox, notifications and grants must not carry them.
            reason: audit::mask::mask_text_with_salted(&req.decision.reason, &req.decision.obligations.mask, salt),
            cost_estimate_usd: req.cost_estimate_usd,
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            expires_at: (now + millis(ttl)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            decided_by: None,
            decided_at: None,
            decision: None,
            decision_reason: None,
            external_id: req.external_id,
            suggested_scope,
            grant_id: None,
            cautions: req.cautions,
        };
        // Registered and stored under the approval's own lock. The store is what the inbox
        // lists: a decision on a listed approval must find its waiter (stored first, a decision
        // that came before the waiter was registered was answered 409, as if someone had
        // decided first). A transition that finds it before it is stored (a kill of its agent)
        // waits for the lock, so its outcome is written after the pending state, never under it.
        let (tx, rx) = oneshot::channel();
        let live = Arc::new(Mutex::new(Live { approval: a.clone(), tx: Some(tx), created: Instant::now() }));
        {
            let _storing = live.lock().map_err(|_| BrokerError::Invalid("approval lock poisoned".into()))?;
            self.inner.live.insert(a.id.clone(), live.clone());
            if let Err(e) = self.inner.store.put(&a) {
                self.inner.live.remove(&a.id);
                return Err(e);
            }
        }
        self.inner.metrics.pending.inc();
        if let Err(e) = self.inner.audit.append(event(&a, None, Outcome::Created)) {
            // Not recorded: it must not exist either (nobody could decide it on the record).
            self.inner.live.remove(&a.id);
            self.inner.metrics.pending.dec();
            let mut gone = a.clone();
            close(&mut gone, Status::Cancelled, SYSTEM, None, Some("the audit log could not record this hold"));
            if let Err(se) = self.inner.store.put(&gone) {
                tracing::error!(error = %se, approval = %a.id, "storing a cancelled hold failed");
            }
            return Err(e.into());
        }
        self.inner.mirror(&a);
        // A kill that came between the caller's kill check and the registration above found
        // no hold of this call to deny; read the flag again now that the hold is registered
        // (a kill after this point finds it), so such a hold is denied at once, not left
        // pending until its TTL. A config change is not a call the kill switch stops (an
        // operator may roll back under a kill), so it is left to the human.
        let killed =
            if a.kind.is_config_change() { None } else { self.inner.kill.get().and_then(|k| k.blocked(&a.agent)) };
        let broker = self.clone();
        let id = a.id.clone();
        let fut = async move {
            if let Some(why) = killed {
                broker.close_all(vec![id.clone()], Status::Denied, Some(DecisionKind::Deny), &why, SYSTEM).await;
            }
            wait(broker.inner, id, rx, ttl).await
        };
        Ok(Held { approval: a, fut: Box::pin(fut) })
    }

    /// Deny a hold whose agent was stopped while it was being registered (see [`Broker::hold`]).
    /// Set once at start; a second call is ignored.
    pub fn watch_kill(&self, kill: Arc<crate::KillSwitch>) {
        let _ = self.inner.kill.set(kill);
    }

    /// Decide one approval as `actor` (a token name). Stale `expected_version` or an
    /// approval that is no longer pending: [`BrokerError::Conflict`] carrying who decided
    /// first. `allow-always` also creates the grant (scope from `req.scope`, else the
    /// approval's `suggested_scope`). Durable before it returns.
    pub async fn decide(&self, id: &str, req: &DecideRequest, actor: &str) -> Result<Resolution, BrokerError> {
        if self.in_fleet() {
            // One winner fleet-wide needs the inbox's conditional update (control API).
            return Err(BrokerError::Invalid("in fleet mode decisions go through the fleet inbox".into()));
        }
        let reason = checked_reason(req)?;
        // A decision that cannot be recorded is not taken: the approval stays pending.
        self.inner.audit_ready()?;
        let scope = match req.decision {
            DecisionKind::AllowAlways => {
                let current = self.current(id)?;
                if current.kind.is_config_change() {
                    return Err(BrokerError::Invalid(grants::NO_ROLLBACK_GRANT.into()));
                }
                if current.status != Status::Pending || current.version != req.expected_version {
                    return Err(BrokerError::Conflict(Box::new(current)));
                }
                grant_scope(&current, req)?
            }
            _ if req.scope.is_some() => {
                return Err(BrokerError::Invalid("scope only applies to allow-always".into()));
            }
            _ => None,
        };
        let grant_id = scope.as_ref().map(|_| grants::new_id());
        let taken = self.inner.transition(
            id,
            Some(req.expected_version),
            req.decision.status(),
            actor,
            Some(req.decision),
            reason,
            grant_id.clone(),
        )?;
        let grant = match (scope, grant_id) {
            (Some(scope), Some(gid)) => match self.inner.grants.insert(gid, scope, actor, Some(&taken.now.id)) {
                Ok(g) => Some(g),
                Err(e) => {
                    self.inner.rollback(taken, None).await;
                    return Err(e);
                }
            },
            _ => None,
        };
        self.inner.commit(taken, grant).await
    }

    /// Close the pending approval carrying `external_id` because it was resolved elsewhere
    /// (e.g. in OpenClaw's own UI). `status` must not be `pending`. Returns `None` when no
    /// pending approval has that id (already closed: closing twice is harmless).
    pub async fn close_external(
        &self,
        external_id: &str,
        status: Status,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<Option<Resolution>, BrokerError> {
        if status == Status::Pending {
            return Err(BrokerError::Invalid("an approval cannot be closed as pending".into()));
        }
        let Some(id) = self.find_live(|a| a.external_id.as_deref() == Some(external_id)).into_iter().next() else {
            return Ok(None);
        };
        let decision = match status {
            Status::Allowed => Some(DecisionKind::AllowOnce),
            Status::Denied => Some(DecisionKind::Deny),
            _ => None,
        };
        match self.inner.transition(&id, None, status, actor, decision, reason, None) {
            Ok(t) => Ok(Some(self.inner.finish(t, None).await)),
            Err(BrokerError::Conflict(_) | BrokerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Pending approvals of one agent, oldest first.
    pub fn pending_for_agent(&self, agent: &str) -> Vec<Approval> {
        let mut v: Vec<Approval> = self
            .inner
            .live
            .iter()
            .filter_map(|e| e.value().lock().ok().map(|l| l.approval.clone()))
            .filter(|a| a.agent == agent && a.status == Status::Pending)
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Deny every pending approval of `agent` (the kill switch); returns the denied ones.
    pub async fn deny_all_for_agent(&self, agent: &str, reason: &str, actor: &str) -> Vec<Approval> {
        let ids = self.find_live(|a| a.agent == agent);
        self.close_all(ids, Status::Denied, Some(DecisionKind::Deny), reason, actor).await
    }

    /// Deny every pending approval (the global kill switch); returns the denied ones.
    pub async fn deny_all(&self, reason: &str, actor: &str) -> Vec<Approval> {
        let ids = self.find_live(|_| true);
        self.close_all(ids, Status::Denied, Some(DecisionKind::Deny), reason, actor).await
    }

    /// Shut down: refuse new holds, end long-lived readers (see [`Broker::closing`]) and
    /// cancel every pending approval, so held callers are answered at once.
    pub async fn shutdown(&self, reason: &str) -> Vec<Approval> {
        self.inner.closing.send_replace(true);
        self.cancel_all(reason).await
    }

    /// A signal that turns true when [`Broker::shutdown`] starts (SSE streams end on it).
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// Cancel every pending approval; their callers are answered at once.
    pub async fn cancel_all(&self, reason: &str) -> Vec<Approval> {
        let ids = self.find_live(|_| true);
        self.close_all(ids, Status::Cancelled, None, reason, SYSTEM).await
    }

    async fn close_all(
        &self,
        ids: Vec<String>,
        status: Status,
        decision: Option<DecisionKind>,
        reason: &str,
        actor: &str,
    ) -> Vec<Approval> {
        let mut out = Vec::new();
        for id in ids {
            if let Ok(t) = self.inner.transition(&id, None, status, actor, decision, Some(reason), None) {
                out.push(self.inner.finish(t, None).await.approval);
            }
        }
        out
    }

    fn find_live(&self, pred: impl Fn(&Approval) -> bool) -> Vec<String> {
        let mut ids: Vec<String> = self
            .inner
            .live
            .iter()
            .filter(|e| e.value().lock().map(|l| pred(&l.approval)).unwrap_or(false))
            .map(|e| e.key().clone())
            .collect();
        ids.sort();
        ids
    }

    fn current(&self, id: &str) -> Result<Approval, BrokerError> {
        if let Some(l) = self.inner.live.get(id).map(|e| e.value().clone()) {
            if let Ok(l) = l.lock() {
                return Ok(l.approval.clone());
            }
        }
        self.inner.store.get(id)?.ok_or_else(|| BrokerError::NotFound(id.to_string()))
    }

    /// One approval as it is now.
    pub fn get(&self, id: &str) -> Result<Option<Approval>, BrokerError> {
        match self.current(id) {
            Ok(a) => Ok(Some(a)),
            Err(BrokerError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A filtered page of approvals, newest first.
    pub fn list(&self, q: &ApprovalQuery) -> Result<ApprovalPage, BrokerError> {
        self.inner.store.list(q)
    }
}

/// Move an approval out of `pending` (no checks: callers hold its lock and checked).
pub(super) fn close(a: &mut Approval, to: Status, by: &str, decision: Option<DecisionKind>, reason: Option<&str>) {
    a.status = to;
    a.version += 1;
    a.decided_by = Some(by.to_string());
    a.decided_at = Some(now_rfc3339());
    a.decision = decision;
    a.decision_reason = reason.map(audit::mask::mask_text);
}

impl Inner {
    /// In fleet mode, before expiring: a decision another sidecar made may have won in the
    /// inbox a moment ago; then it is applied (the expiry loop then finds the approval decided
    /// and receives that resolution).
    pub(super) async fn expire_in_fleet(self: &Arc<Self>, id: &str, reason: &str) {
        let Some(link) = self.inbox.get() else { return };
        let Some(mut expired) = self.live.get(id).and_then(|l| l.value().lock().ok().map(|l| l.approval.clone()))
        else {
            return;
        };
        close(&mut expired, Status::Expired, SYSTEM, None, Some(reason));
        if let Some(remote) = link.expire(&expired).await {
            Broker { inner: self.clone() }.apply_remote(remote).await;
        }
    }

    /// Hand a transition made here to the fleet inbox (fleet mode only).
    pub(super) fn mirror(&self, a: &Approval) {
        if let Some(link) = self.inbox.get() {
            link.write(a);
        }
    }

    /// The one way out of `pending`. Under the approval's lock: refuse if it is no longer
    /// pending or (when given) its version is not `expected`; else apply and take the waiter.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn transition(
        &self,
        id: &str,
        expected: Option<u64>,
        to: Status,
        by: &str,
        decision: Option<DecisionKind>,
        reason: Option<&str>,
        grant_id: Option<String>,
    ) -> Result<Taken, BrokerError> {
        let Some(live) = self.live.get(id).map(|e| e.value().clone()) else {
            return match self.store.get(id)? {
                Some(a) => Err(BrokerError::Conflict(Box::new(a))),
                None => Err(BrokerError::NotFound(id.to_string())),
            };
        };
        let taken = {
            let mut l = live.lock().map_err(|_| BrokerError::Invalid("approval lock poisoned".into()))?;
            if l.approval.status != Status::Pending || expected.is_some_and(|v| v != l.approval.version) {
                return Err(BrokerError::Conflict(Box::new(l.approval.clone())));
            }
            let prev = l.approval.clone();
            close(&mut l.approval, to, by, decision, reason);
            l.approval.grant_id = grant_id;
            let created = l.created;
            Taken { prev, now: l.approval.clone(), waiter: l.tx.take().map(|t| (t, created)) }
        };
        self.live.remove(id);
        self.metrics.pending.dec();
        Ok(taken)
    }

    /// Store and record without waiting (Drop and startup paths).
    pub(super) fn store_and_record_now(&self, a: &Approval) {
        if let Err(e) = self.store.put(a) {
            tracing::error!(error = %e, approval = %a.id, "storing an approval failed");
        }
        if let Err(e) = self.audit.append(event(a, None, a.status.outcome())) {
            tracing::error!(error = %e, approval = %a.id, "recording an approval failed");
        }
    }
}

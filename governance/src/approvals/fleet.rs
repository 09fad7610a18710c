//! The seam to the fleet's shared approval inbox (docs/fleet.md "Shared approval inbox"). In
//! fleet mode the approvals of every sidecar live in PostgreSQL and a human's decision is a
//! conditional update there (one winner fleet-wide), made through any sidecar's API. This
//! module states what the broker asks of the fleet crate and what the fleet hands back, so
//! governance does not depend on PostgreSQL:
//!
//! - [`InboxLink::write`]: every approval this sidecar creates or closes itself (expiry,
//!   cancellation, a kill's deny, a resolution made in OpenClaw) is written to the inbox; the
//!   link queues and retries, the broker never waits for it.
//! - [`InboxLink::expire`]: at expiry the broker first asks the inbox, because a decision made
//!   on another sidecar may have won there a moment before; if so that decision is applied,
//!   else (or when the database does not answer) the approval expires here as always.
//! - [`Broker::apply_remote`]: the fleet hands the holding sidecar a decision made anywhere;
//!   the held call is released exactly as by a local decision (recorded in this sidecar's
//!   audit log, actor = the decider's token name).
//!
//! Without a link (no `[fleet]`) nothing here runs and the broker decides locally.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::broker::{close, Broker};
use super::grants::{self, GrantScope, ScopeInput};
use super::model::{Approval, DecideRequest, DecisionKind, Resolution, Status};
use super::BrokerError;

/// A decision taken in the fleet inbox, as the holding sidecar applies it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteDecision {
    /// The approval as decided (status never `Pending`), `grant_id` set for allow-always.
    pub approval: Approval,
    /// The grant an allow-always decision creates: with fleet grants (`fleet_grants.rs`) the
    /// inbox stored it with the decision and the holding sidecar applies it at once; without
    /// (a recording inbox in tests) the holding sidecar stores it.
    pub grant_scope: Option<GrantScope>,
}

/// The future [`InboxLink::expire`] returns.
pub type ExpireFut<'a> = Pin<Box<dyn Future<Output = Option<RemoteDecision>> + Send + 'a>>;

/// The fleet inbox, as the broker sees it.
pub trait InboxLink: Send + Sync {
    /// Write the approval as it is now (a new pending one, or one this sidecar closed); a
    /// closed one never overwrites a decision the inbox already holds. Queued, never blocks.
    fn write(&self, a: &Approval);
    /// `expired` (the approval closed as expired) wins in the inbox unless a decision was
    /// taken there first, which is returned. `None` also when the database does not answer:
    /// the approval then expires here (fail closed).
    fn expire<'a>(&'a self, expired: &'a Approval) -> ExpireFut<'a>;
}

/// A decision checked against the approval as it is now and applied to a copy, ready to be
/// written: what the fleet inbox stores when it wins.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub approval: Approval,
    pub grant_scope: Option<GrantScope>,
}

/// The decider's reason, trimmed; refused past 2000 characters.
pub(super) fn checked_reason(req: &DecideRequest) -> Result<Option<&str>, BrokerError> {
    let reason = req.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.len() > 2000) {
        return Err(BrokerError::Invalid("reason is longer than 2000 characters".into()));
    }
    Ok(reason)
}

/// The grant an allow-always decision on `current` creates (its scope validated); `None` for
/// other decisions, which must not carry a scope.
pub(super) fn grant_scope(current: &Approval, req: &DecideRequest) -> Result<Option<GrantScope>, BrokerError> {
    match req.decision {
        DecisionKind::AllowAlways => {
            Ok(Some(current.suggested_scope.with_input(req.scope.as_ref().unwrap_or(&ScopeInput::default()))?))
        }
        _ if req.scope.is_some() => Err(BrokerError::Invalid("scope only applies to allow-always".into())),
        _ => Ok(None),
    }
}

/// Check `req` against `current` exactly as a local decision is checked (pending, the
/// expected version, the reason, the grant's scope) and apply it to a copy.
pub fn prepare(current: &Approval, req: &DecideRequest, actor: &str) -> Result<Prepared, BrokerError> {
    let reason = checked_reason(req)?;
    if current.status != Status::Pending || current.version != req.expected_version {
        return Err(BrokerError::Conflict(Box::new(current.clone())));
    }
    let grant_scope = grant_scope(current, req)?;
    let mut approval = current.clone();
    close(&mut approval, req.decision.status(), actor, Some(req.decision), reason);
    approval.grant_id = grant_scope.as_ref().map(|_| grants::new_id());
    Ok(Prepared { approval, grant_scope })
}

impl Broker {
    /// Connect the fleet inbox (fleet mode only; set once at start, before any hold).
    pub fn set_inbox(&self, link: Arc<dyn InboxLink>) {
        if self.inner.inbox.set(link).is_err() {
            tracing::warn!("the fleet inbox was already set; keeping the first");
        }
    }

    /// Whether decisions go through the fleet inbox.
    pub fn in_fleet(&self) -> bool {
        self.inner.inbox.get().is_some()
    }

    /// Ids of the approvals this sidecar holds a call for.
    pub fn live_ids(&self) -> Vec<String> {
        self.inner.live.iter().map(|e| e.key().clone()).collect()
    }

    /// Apply a decision taken in the fleet inbox to the call held here; `None` when no call
    /// waits here for it any more (expired, cancelled, or held elsewhere). The transition is
    /// recorded like a resolution made elsewhere: it mirrors what the inbox already holds, so
    /// it goes ahead even when this sidecar cannot record it (logged).
    pub async fn apply_remote(&self, r: RemoteDecision) -> Option<Resolution> {
        let a = &r.approval;
        if a.status == Status::Pending {
            return None;
        }
        let by = a.decided_by.as_deref().unwrap_or(super::broker::SYSTEM);
        let mut t = self
            .inner
            .transition(&a.id, None, a.status, by, a.decision, a.decision_reason.as_deref(), a.grant_id.clone())
            .ok()?;
        // The decision's own time, as every other sidecar shows it.
        t.now.decided_at = a.decided_at.clone();
        let grant = match (r.grant_scope, a.grant_id.clone()) {
            // Fleet grants: the inbox stored it with the decision; it applies here at once.
            (Some(scope), Some(gid)) if a.status == Status::Allowed && self.fleet_grants_on() => {
                Some(self.fleet_grant_of_decision(gid, scope, by, &a.id, a.decided_at.clone()))
            }
            (Some(scope), Some(gid)) if a.status == Status::Allowed => {
                match self.inner.grants.insert(gid, scope, by, Some(&a.id)) {
                    Ok(g) => Some(g),
                    Err(e) => {
                        tracing::error!(error = %e, approval = %a.id, "creating the grant of a fleet decision failed");
                        None
                    }
                }
            }
            _ => None,
        };
        Some(self.inner.finish_mirrored(t, grant).await)
    }
}

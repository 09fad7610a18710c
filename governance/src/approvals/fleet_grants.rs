//! The seam to the fleet's grants (docs/fleet.md "Fleet-wide grants"). In fleet mode a grant
//! lives in PostgreSQL and applies on every sidecar of the fleet; this module states what the
//! broker asks of the fleet crate, so governance does not depend on PostgreSQL:
//!
//! - [`GrantLink::create`] / [`GrantLink::revoke`]: a grant made or revoked through this
//!   sidecar's API is written to the fleet first, then recorded in this sidecar's audit log;
//!   a change the audit log cannot record is undone in the fleet and refused (as locally).
//! - [`Broker::set_fleet_grants`]: the fleet hands over the whole set it read (on a
//!   notification, every `poll_ms`, after its own change), or an empty one when the database
//!   has not been read within the heartbeat TTL (fail closed: a grant only widens what is
//!   allowed). The data path reads it from memory, no I/O.
//!
//! Grants this sidecar stored locally before it joined a fleet stay in its own store and
//! keep applying here only. Without a link (no `[fleet]`) nothing here runs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use audit::Outcome;
use decision::GrantInput;

use super::broker::Broker;
use super::grants::{self, Grant, GrantScope};
use super::record::grant_event;
use super::BrokerError;

/// The future a [`GrantLink`] call returns.
pub type GrantFut<'a, T> = Pin<Box<dyn Future<Output = Result<T, BrokerError>> + Send + 'a>>;

/// The fleet's grants, as the broker sees them.
pub trait GrantLink: Send + Sync {
    /// Store `g` fleet-wide, idempotently on its id (a row with that id is kept as it is);
    /// returns the grant as stored, `sidecar` set. In force on this sidecar when it returns.
    /// [`BrokerError::Unavailable`] when the database does not answer.
    fn create<'a>(&'a self, g: &'a Grant) -> GrantFut<'a, Grant>;
    /// Remove grant `id` fleet-wide; the grant as it was, `None` if the fleet has none.
    fn revoke<'a>(&'a self, id: &'a str) -> GrantFut<'a, Option<Grant>>;
}

impl Broker {
    /// Connect the fleet's grants (fleet mode only; set once at start, before serving).
    pub fn set_grant_link(&self, link: Arc<dyn GrantLink>) {
        if self.inner.grant_link.set(link).is_err() {
            tracing::warn!("the fleet grant link was already set; keeping the first");
        }
    }

    /// Whether grants are the fleet's.
    pub fn fleet_grants_on(&self) -> bool {
        self.inner.grant_link.get().is_some()
    }

    /// Replace the fleet grants this sidecar applies (what the fleet read; empty when it
    /// cannot be read within the TTL).
    pub fn set_fleet_grants(&self, all: Vec<Grant>) {
        self.inner.fleet_grants.store(Arc::new(all));
    }

    /// The fleet grants this sidecar applies now (expired ones included), as last read.
    pub fn fleet_grants(&self) -> Arc<Vec<Grant>> {
        self.inner.fleet_grants.load_full()
    }

    /// Apply `g` here at once (a grant this sidecar just learnt of, before the next read).
    pub(super) fn add_fleet_grant(&self, g: Grant) {
        self.inner.fleet_grants.rcu(|all| {
            let mut next: Vec<Grant> = all.iter().filter(|x| x.id != g.id).cloned().collect();
            next.push(g.clone());
            next.sort_by(|a, b| a.id.cmp(&b.id));
            next
        });
    }

    /// The fleet grants of `agent` in force now, appended to `out` (the data path: no I/O).
    pub(super) fn fleet_inputs(&self, agent: &str, out: &mut Vec<GrantInput>) {
        let all = self.inner.fleet_grants.load();
        if all.is_empty() {
            return;
        }
        let now = chrono::Utc::now();
        out.extend(all.iter().filter(|g| g.scope.agent == agent && !g.expired(now)).map(Grant::to_input));
    }

    /// The grant an allow-always decision taken in the fleet inbox created (the inbox stored
    /// it in the decision's transaction): applied here at once, recorded by the caller.
    pub(super) fn fleet_grant_of_decision(
        &self,
        id: String,
        scope: GrantScope,
        actor: &str,
        approval_id: &str,
        decided_at: Option<String>,
    ) -> Grant {
        let g = Grant {
            id,
            scope,
            created_at: decided_at.unwrap_or_else(super::model::now_rfc3339),
            created_by: actor.to_string(),
            approval_id: Some(approval_id.to_string()),
            sidecar: None,
        };
        self.add_fleet_grant(g.clone());
        g
    }

    /// [`Broker::create_grant`] in fleet mode: in the fleet, then recorded here; undone in the
    /// fleet if it cannot be recorded.
    pub(super) async fn create_fleet_grant(
        &self,
        link: &dyn GrantLink,
        scope: GrantScope,
        actor: &str,
    ) -> Result<Grant, BrokerError> {
        let draft = Grant {
            id: grants::new_id(),
            scope,
            created_at: super::model::now_rfc3339(),
            created_by: actor.to_string(),
            approval_id: None,
            sidecar: None,
        };
        let g = link.create(&draft).await?;
        if let Err(e) = self.inner.audit.append_durable(grant_event(&g, actor, Outcome::Created)).await {
            // Not recorded, not granted: nothing is left behind in the fleet either.
            if let Err(re) = link.revoke(&g.id).await {
                tracing::error!(error = %re, grant = %g.id, "removing a fleet grant that could not be recorded failed");
            }
            return Err(e.into());
        }
        Ok(g)
    }

    /// [`Broker::revoke_grant`] of a fleet grant: removed in the fleet, then recorded here; put
    /// back if it cannot be recorded.
    pub(super) async fn revoke_fleet_grant(
        &self,
        link: &dyn GrantLink,
        id: &str,
        actor: &str,
    ) -> Result<Grant, BrokerError> {
        let g = link.revoke(id).await?.ok_or_else(|| BrokerError::NotFound(id.to_string()))?;
        if let Err(e) = self.inner.audit.append_durable(grant_event(&g, actor, Outcome::Revoked)).await {
            if let Err(re) = link.create(&g).await {
                tracing::error!(error = %re, grant = %g.id, "restoring a fleet grant whose revocation failed failed");
            }
            return Err(e.into());
        }
        Ok(g)
    }
}

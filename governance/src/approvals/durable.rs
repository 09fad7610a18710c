//! Making approval transitions durable: the store (flushed) first, then the audit record
//! (fsynced). A human's decision ([`Inner::commit`]) that fails either step is undone
//! ([`Inner::rollback`]): the approval is pending again with its waiter, so the held call
//! stays held, its grant (allow-always) is removed, and the decider gets the error. Because
//! the store is written before the record and a failed durable append is never written, the
//! audit log never shows a decision that was undone. System transitions ([`Inner::finish`]:
//! expiry, cancellation, a kill's deny, a resolution made in OpenClaw) refuse or mirror what
//! already happened, so they go ahead even when they cannot be recorded (logged).

use audit::{AuditError, Face};
use decision::CallKind;

use super::broker::SYSTEM;
use super::broker::{Inner, Live, Taken, Waiter};
use super::grants::Grant;
use super::model::{Approval, Resolution, Status};
use super::record::{event, grant_event};
use super::BrokerError;

/// The audit face a held call of `kind` came through.
pub(super) fn face(kind: CallKind) -> Face {
    match kind {
        CallKind::ModelCall => Face::Model,
        CallKind::Exec => Face::Exec,
        CallKind::ToolCall => Face::Mcp,
        CallKind::Plugin => Face::Plugin,
        CallKind::ConfigRollback | CallKind::ConfigImport | CallKind::ConfigChange => Face::Control,
    }
}

impl Inner {
    /// Refuse a control-plane change while the audit log cannot write (before anything moves).
    pub(super) fn audit_ready(&self) -> Result<(), BrokerError> {
        self.audit.require(Face::Control).map_err(|u| BrokerError::Audit(AuditError::Unavailable(u)))
    }

    /// Store (flushed) and record (fsynced) a transition and its grant, in that order.
    async fn persist(&self, a: &Approval, grant: Option<&Grant>) -> Result<(), BrokerError> {
        self.store.put_durable(a).await?;
        if grant.is_some() {
            self.grants.flush().await?;
        }
        self.audit.append_durable(event(a, grant, a.status.outcome())).await?;
        if let Some(g) = grant {
            self.audit
                .append_durable(grant_event(g, a.decided_by.as_deref().unwrap_or("system"), audit::Outcome::Created))
                .await?;
        }
        Ok(())
    }

    /// A human's decision: durable, then the waiter is released; or undone and refused.
    pub(super) async fn commit(&self, t: Taken, grant: Option<Grant>) -> Result<Resolution, BrokerError> {
        if let Err(e) = self.persist(&t.now, grant.as_ref()).await {
            tracing::warn!(error = %e, approval = %t.now.id, "an approval decision could not be made durable; undone, the call stays held");
            self.rollback(t, grant.as_ref()).await;
            return Err(e);
        }
        self.mirror(&t.now);
        Ok(self.release(t.now, t.waiter, grant))
    }

    /// Undo a transition that could not be made durable: pending again, waiter back, grant gone.
    pub(super) async fn rollback(&self, t: Taken, grant: Option<&Grant>) {
        if let Some(g) = grant {
            if let Err(e) = self.grants.remove(&g.id) {
                tracing::error!(error = %e, grant = %g.id, "removing the grant of an undone decision failed");
            }
        }
        let waiter = t.waiter.filter(|(tx, _)| !tx.is_closed());
        let Some((tx, created)) = waiter else {
            // Its caller went away meanwhile: nobody waits for a decision any more.
            let mut gone = t.prev;
            super::broker::close(&mut gone, Status::Cancelled, SYSTEM, None, Some("the caller went away"));
            if let Err(e) = self.store.put(&gone) {
                tracing::error!(error = %e, approval = %gone.id, "storing a cancelled approval failed");
            }
            return;
        };
        if let Err(e) = self.store.put_durable(&t.prev).await {
            tracing::error!(error = %e, approval = %t.prev.id, "restoring an undone decision in the store failed");
        }
        let id = t.prev.id.clone();
        let live = Live { approval: t.prev, tx: Some(tx), created };
        self.live.insert(id, std::sync::Arc::new(std::sync::Mutex::new(live)));
        self.metrics.pending.inc();
    }

    /// A system transition: made durable as far as possible (failures logged: it refuses or
    /// mirrors what already happened), then the waiter is released.
    pub(super) async fn finish(&self, t: Taken, grant: Option<Grant>) -> Resolution {
        self.mirror(&t.now);
        self.finish_mirrored(t, grant).await
    }

    /// [`Inner::finish`] of a transition the fleet inbox already holds (a decision taken there).
    pub(super) async fn finish_mirrored(&self, t: Taken, grant: Option<Grant>) -> Resolution {
        if let Err(e) = self.persist(&t.now, grant.as_ref()).await {
            tracing::error!(error = %e, approval = %t.now.id, "recording an approval transition failed");
        }
        self.release(t.now, t.waiter, grant)
    }

    fn release(&self, a: Approval, waiter: Option<Waiter>, grant: Option<Grant>) -> Resolution {
        let outcome = a.status.as_str();
        let res = Resolution { approval: a, grant };
        if let Some((tx, created)) = waiter {
            self.metrics.wait.with_label_values(&[outcome]).observe(created.elapsed().as_secs_f64());
            let _ = tx.send(res.clone());
        }
        res
    }
}

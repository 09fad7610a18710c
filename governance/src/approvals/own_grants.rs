//! The broker's grants: listing them, the live ones of an agent as policy input, and creating
//! or revoking one directly (not from an approval), each recorded durably or undone. In fleet
//! mode the fleet's grants are handled in `fleet_grants.rs`.

use std::sync::Arc;

use audit::Outcome;
use decision::GrantInput;

use super::broker::Broker;
use super::grants::{self, Grant, ScopeInput};
use super::record::grant_event;
use super::BrokerError;

impl Broker {
    /// This sidecar's own grants (expired ones included), oldest first; in fleet mode the
    /// fleet's are [`Broker::fleet_grants`].
    pub fn grants(&self) -> Arc<Vec<Grant>> {
        self.inner.grants.all()
    }

    /// One grant of this sidecar's own, or of the fleet's as last read.
    pub fn grant(&self, id: &str) -> Option<Grant> {
        self.inner.grants.get(id).or_else(|| self.inner.fleet_grants.load().iter().find(|g| g.id == id).cloned())
    }

    /// Live grants of `agent` as policy input (`input.grants`): its own and, in fleet mode,
    /// the fleet's; no I/O, for the data path.
    pub fn grants_for(&self, agent: &str) -> Vec<GrantInput> {
        let mut v = self.inner.grants.inputs_for(agent);
        self.fleet_inputs(agent, &mut v);
        v
    }

    /// Create a grant directly (not from an approval); `agent`, `kind` and `pattern` are
    /// required. Recorded durably.
    pub async fn create_grant(&self, input: &ScopeInput, actor: &str) -> Result<Grant, BrokerError> {
        let (Some(agent), Some(kind), Some(pattern)) = (&input.agent, input.kind, &input.pattern) else {
            return Err(BrokerError::Invalid("a grant needs agent, kind and pattern".into()));
        };
        let scope = grants::build(agent, kind, pattern, input.arg_pattern.clone(), input)?;
        self.inner.audit_ready()?;
        if let Some(link) = self.inner.grant_link.get() {
            return self.create_fleet_grant(link.as_ref(), scope, actor).await;
        }
        let g = self.inner.grants.insert(grants::new_id(), scope, actor, None)?;
        let durable = async {
            self.inner.grants.flush().await?;
            self.inner.audit.append_durable(grant_event(&g, actor, Outcome::Created)).await?;
            Ok::<(), BrokerError>(())
        };
        if let Err(e) = durable.await {
            // Not durable, not granted: the caller is told, and nothing is left behind.
            if let Err(re) = self.inner.grants.remove(&g.id) {
                tracing::error!(error = %re, grant = %g.id, "removing a grant that could not be recorded failed");
            }
            return Err(e);
        }
        Ok(g)
    }

    /// Revoke a grant; later calls are held again. Recorded durably; a revocation that cannot
    /// be recorded is undone and refused.
    pub async fn revoke_grant(&self, id: &str, actor: &str) -> Result<Grant, BrokerError> {
        self.inner.audit_ready()?;
        // In fleet mode, a grant this sidecar does not hold itself is the fleet's.
        if let Some(link) = self.inner.grant_link.get().filter(|_| self.inner.grants.get(id).is_none()) {
            return self.revoke_fleet_grant(link.as_ref(), id, actor).await;
        }
        let g = self.inner.grants.remove(id)?.ok_or_else(|| BrokerError::NotFound(id.to_string()))?;
        let durable = async {
            self.inner.grants.flush().await?;
            self.inner.audit.append_durable(grant_event(&g, actor, Outcome::Revoked)).await?;
            Ok::<(), BrokerError>(())
        };
        if let Err(e) = durable.await {
            if let Err(re) = self.inner.grants.restore(&g) {
                tracing::error!(error = %re, grant = %g.id, "restoring a grant whose revocation failed failed");
            }
            return Err(e);
        }
        Ok(g)
    }
}

//! Carrying fleet kills into OpenClaw. A fleet kill (an agent on every sidecar, this
//! sidecar's gateway, or the whole fleet) is read from the fleet database into the sidecar's
//! `governance::KillSwitch`; this module makes OpenClaw follow it the way a local kill does
//! (`kill.rs`: abort the agent's runs, deny its exec approvals, deny its tools, disable its
//! enabled cron jobs, remembering which), and undoes exactly that when the fleet lifts it.
//!
//! It reconciles rather than reacts: the wanted state is "every agent of this gateway a fleet
//! kill stops here has a kill record held by the fleet", and every pass compares it with the
//! records in `gateway_kill` (which survive a restart). So a pass repeated, a notification
//! heard twice, or a restart while the kill is in force pauses nothing twice, and a fleet
//! recover that happened while this sidecar was down is carried out when it is back. Passes
//! run when the fleet's flags change (`KillSwitch::watch_fleet`), after every (re)connect of
//! the link, and every [`EVERY`] (retries, and agents that appear under a kill of the whole
//! gateway). A pass changes only what a fleet kill holds: a local kill's record gains or
//! loses the fleet as a second holder, and OpenClaw is restored only when neither holds it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::kill::Holder;
use crate::Gateway;

/// The safety-net pass interval.
pub(crate) const EVERY: Duration = Duration::from_secs(5);

/// What one pass did (agents killed / restored in OpenClaw on behalf of the fleet).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Pass {
    pub killed: Vec<String>,
    pub released: Vec<String>,
}

impl Gateway {
    /// Run passes until shutdown (see the module docs).
    pub(crate) async fn fleet_kill_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut changes = self.parts.kill.watch_fleet();
        let mut every = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                r = changes.changed() => if r.is_err() { return },
                _ = every.tick() => {}
            }
            if self.link.is_connected() {
                self.reconcile_fleet_kills().await;
            }
        }
    }

    /// One pass; passes never overlap.
    pub(crate) async fn reconcile_fleet_kills(&self) -> Pass {
        let _one = self.fleet_pass.lock().await;
        let mut pass = Pass::default();
        // Only agents this gateway has: a fleet kill of an agent it does not run changes nothing
        // in its config.
        for id in self.registry.ids() {
            let Some(e) = self.parts.kill.fleet_entry(&id) else { continue };
            if self.record(&id).is_some_and(|r| r.fleet) {
                continue;
            }
            match self.kill_as(&id, &e.reason, &e.actor, Holder::Fleet).await {
                Ok(_) => pass.killed.push(id),
                Err(err) => tracing::warn!(agent = %id, error = %err, "carrying a fleet kill into OpenClaw failed"),
            }
        }
        // Released: whatever the fleet no longer stops, whether or not the roster lists it now
        // (an empty roster after a failed `agents.list` must not look like a recover).
        for id in self.killed_ids() {
            let held = self.record(&id).is_some_and(|r| r.fleet);
            if !held || self.parts.kill.fleet_entry(&id).is_some() {
                continue;
            }
            let why = "the fleet kill switch no longer stops this agent here";
            match self.recover_as(&id, why, "fleet", Holder::Fleet).await {
                Ok(_) => pass.released.push(id),
                Err(err) => {
                    tracing::warn!(agent = %id, error = %err, "undoing a fleet kill in OpenClaw failed; retrying")
                }
            }
        }
        if pass != Pass::default() {
            tracing::info!(killed = ?pass.killed, released = ?pass.released, "fleet kill switch carried into OpenClaw");
        }
        pass
    }
}

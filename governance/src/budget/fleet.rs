//! The seam to fleet budgets (`fleet = true`, docs/fleet.md "Fleet budgets"). A fleet budget
//! is enforced across sidecars by the `fleet` crate with leases; this module only states what
//! the budgets ask of it, so governance does not depend on PostgreSQL:
//!
//! - [`FleetLink::acquire`] (async) carves a call's worst case out of this sidecar's lease on
//!   exactly the fleet budgets of the call, taking a new lease centrally when the local one
//!   lacks room. It is the one step that may wait for the database; while the lease has room
//!   it answers without any I/O.
//! - The [`FleetHold`] it returns rides on the call's [`super::Reservation`] and ends with it:
//!   settled with the real charge, released (charge 0) when the call is not sent, or charged
//!   in full when dropped unsettled (the conservative choice, like the reservation itself).
//!
//! Budgets without `fleet = true` never reach this module: their path is unchanged.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{Budgets, CallScope, Refusal};

/// One fleet budget of a call, in its current window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetShare {
    /// The budget's id in the fleet database: `<budget id>/<window key>` (budget ids never
    /// contain '/'), so each window is its own row and a window reset needs no central reset.
    pub central_id: String,
    /// The limit per window, in nano-USD.
    pub limit_nanos: u64,
}

/// Why the fleet refused a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetDenied {
    /// The fleet-wide budget has no room for the call's worst case (`spent + held` are
    /// fleet-wide, in nano-USD).
    Full { central_id: String, limit_nanos: u64, used_nanos: u64 },
    /// The lease is used up or expired and the database did not answer: fail closed.
    Unreachable,
}

/// What ends a hold (implemented by the fleet crate's lease pool).
pub trait HoldEnd: Send + Sync {
    /// The call ended having cost `charge_nanos` (0: it was never sent).
    fn end(self: Box<Self>, charge_nanos: u64);
}

/// A call's worst case carved out of a lease. See the module docs for how it ends.
pub struct FleetHold {
    end: Option<Box<dyn HoldEnd>>,
    amount: u64,
}

impl FleetHold {
    /// A hold of `amount_nanos` that `end` finishes.
    pub fn new(end: Box<dyn HoldEnd>, amount_nanos: u64) -> FleetHold {
        FleetHold { end: Some(end), amount: amount_nanos }
    }

    /// End with the real charge.
    pub fn settle(mut self, charge_nanos: u64) {
        if let Some(e) = self.end.take() {
            e.end(charge_nanos);
        }
    }

    /// The call was not sent: nothing was used.
    pub fn release(self) {
        self.settle(0)
    }
}

impl Drop for FleetHold {
    fn drop(&mut self) {
        if let Some(e) = self.end.take() {
            e.end(self.amount);
        }
    }
}

impl std::fmt::Debug for FleetHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetHold").field("amount", &self.amount).finish()
    }
}

/// The future [`FleetLink::acquire`] returns.
pub type AcquireFut<'a> = Pin<Box<dyn Future<Output = Result<FleetHold, FleetDenied>> + Send + 'a>>;

/// The fleet's lease pool, as the budgets see it.
pub trait FleetLink: Send + Sync {
    /// Carve `amount_nanos` for one call out of the lease on exactly `shares` (sorted by
    /// central id, no duplicates), taking a lease centrally when the local one lacks room.
    fn acquire(&self, shares: Vec<FleetShare>, amount_nanos: u64) -> AcquireFut<'_>;
}

impl Budgets {
    /// Connect the fleet's lease pool (fleet mode only; set once at start).
    pub fn set_fleet(&self, link: Arc<dyn FleetLink>) {
        if self.fleet.set(link).is_err() {
            tracing::warn!("the fleet lease pool was already set; keeping the first");
        }
    }

    /// Whether a fleet budget applies to a call. One atomic load when no budget has fleet
    /// scope, so the local path stays as it was.
    pub fn fleet_applies(&self, call: &CallScope<'_>) -> bool {
        self.has_fleet.load(std::sync::atomic::Ordering::Relaxed)
            && self.list.load().iter().any(|b| b.config.fleet && b.scope.matches(call))
    }

    /// Reserve a call's worst case on its fleet budgets (through the lease pool, which may
    /// wait for the database), then on every budget locally exactly as [`Budgets::reserve`]
    /// does; all or nothing. The local reserve keeps this sidecar's own view of the spend.
    pub async fn reserve_fleet(
        self: &Arc<Self>,
        call: &CallScope<'_>,
        worst_case_usd: f64,
    ) -> Result<super::Reservation, Refusal> {
        let amount = super::to_nanos(worst_case_usd);
        let mut fleet: Vec<_> = self.applicable(call).into_iter().filter(|b| b.config.fleet).collect();
        fleet.sort_by(|a, b| a.id.cmp(&b.id));
        let Some(first) = fleet.first().cloned() else {
            return self.reserve(call, worst_case_usd);
        };
        let shares: Vec<FleetShare> = fleet
            .iter()
            .map(|b| {
                let key = self.with_state(b, |st| st.window_key.clone());
                FleetShare { central_id: format!("{}/{key}", b.id), limit_nanos: b.limit }
            })
            .collect();
        let denied = |b: &super::Budget, cause: FleetCause, used: Option<u64>| {
            let mut r = self.with_state(b, |st| self.refusal(b, st, Some(amount)));
            if let Some(u) = used {
                r.spent_usd = super::usd(u);
            }
            r.fleet = Some(cause);
            r
        };
        let Some(link) = self.fleet.get() else {
            // A fleet budget on a sidecar without `[fleet]` (e.g. defined through the API):
            // it cannot be enforced across the fleet, so it is not enforced at all: refuse.
            return Err(denied(&first, FleetCause::NoFleet, None));
        };
        let hold = match link.acquire(shares, amount).await {
            Ok(h) => h,
            Err(FleetDenied::Unreachable) => return Err(denied(&first, FleetCause::Unreachable, None)),
            Err(FleetDenied::Full { central_id, used_nanos, .. }) => {
                let b = fleet.iter().find(|b| central_id.starts_with(&format!("{}/", b.id))).unwrap_or(&first);
                return Err(denied(b, FleetCause::Full, Some(used_nanos)));
            }
        };
        match self.reserve(call, worst_case_usd) {
            Ok(r) => Ok(r.with_fleet(hold)),
            Err(r) => {
                hold.release();
                Err(r)
            }
        }
    }
}

/// Why a fleet budget refused, on a [`Refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetCause {
    /// The fleet-wide spend and holds leave no room (the figures are fleet-wide).
    Full,
    /// The fleet database cannot be reached and this sidecar's lease is used up or expired.
    Unreachable,
    /// This sidecar has no `[fleet]`, so the budget cannot be enforced fleet-wide.
    NoFleet,
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;

//! A held reservation: settled with what the call is charged (its real cost, even above the
//! reservation), or, if dropped unsettled (a call abandoned in a way nobody reported), charged
//! in full: the conservative choice.

use std::sync::Arc;

use super::fleet::FleetHold;
use super::{to_nanos, Budget, Budgets};

/// Worst-case cost reserved against some budgets.
pub struct Reservation {
    budgets: Arc<Budgets>,
    held: Vec<Arc<Budget>>,
    amount: u64,
    settled: bool,
    /// The part carved out of a fleet lease, ended with the same charge.
    fleet: Option<FleetHold>,
}

impl Reservation {
    pub(crate) fn new(budgets: Arc<Budgets>, held: Vec<Arc<Budget>>, amount: u64) -> Reservation {
        Reservation { budgets, held, amount, settled: false, fleet: None }
    }

    /// Attach the fleet part of the reservation (it ends with this one).
    pub(crate) fn with_fleet(mut self, hold: FleetHold) -> Reservation {
        self.fleet = Some(hold);
        self
    }

    /// The reserved amount in USD.
    pub fn amount_usd(&self) -> f64 {
        self.amount as f64 / super::NANOS
    }

    /// Replace the reservation with what the call is charged, which may be more than was
    /// reserved (the real cost is always charged; the breaker opens on it). Returns the amount
    /// charged to every budget held, in USD, exactly (nano-dollar units): what the call's audit
    /// record states as `charged_usd`.
    pub fn settle(mut self, charge: Charge) -> f64 {
        let nanos = match charge {
            Charge::Usd(v) => to_nanos(v),
            Charge::Reserved => self.amount,
        };
        self.budgets.settle(&self.held, self.amount, nanos);
        if let Some(h) = self.fleet.take() {
            h.settle(nanos);
        }
        self.settled = true;
        nanos as f64 / super::NANOS
    }
}

/// What a settled call is charged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Charge {
    /// Exactly this many USD (rounded up to the nano-dollar): the real cost, or nothing.
    Usd(f64),
    /// The whole reservation: the cost is unknown.
    Reserved,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            self.budgets.settle(&self.held, self.amount, self.amount);
        }
    }
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("amount", &self.amount).field("budgets", &self.held.len()).finish()
    }
}

//! A held reservation: settled with the call's real cost, or, if dropped unsettled (a call
//! abandoned in a way nobody reported), charged in full: the conservative choice.

use std::sync::Arc;

use super::{to_nanos, Budget, Budgets};

/// Worst-case cost reserved against some budgets.
pub struct Reservation {
    budgets: Arc<Budgets>,
    held: Vec<Arc<Budget>>,
    amount: u64,
    settled: bool,
}

impl Reservation {
    pub(crate) fn new(budgets: Arc<Budgets>, held: Vec<Arc<Budget>>, amount: u64) -> Reservation {
        Reservation { budgets, held, amount, settled: false }
    }

    /// The reserved amount in USD.
    pub fn amount_usd(&self) -> f64 {
        self.amount as f64 / super::NANOS
    }

    /// Replace the reservation with the real cost (`None` = unknown: charge the reservation).
    pub fn settle(mut self, actual_usd: Option<f64>) {
        let actual = actual_usd.map_or(self.amount, to_nanos);
        self.budgets.settle(&self.held, self.amount, actual);
        self.settled = true;
    }
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

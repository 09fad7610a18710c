//! The recent outcomes of one agent (or upstream), lock-free: the data path records every
//! forwarded call here, so recording is one compare-and-swap on a word that packs the last
//! [`BITS`] outcomes (bit 0 = the newest, 1 = failed) with how many were recorded.
//!
//! The rule (documented in `docs/gateway.md`): degraded when [`DEGRADED_FAILURES`] or more of
//! the last [`WINDOW`] outcomes failed, until the last [`RECOVER_AFTER`] succeeded in a row.
//! After [`FORGET_AFTER_MS`] without a new outcome the earlier ones no longer count: an agent
//! is judged on what it did recently.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Outcomes kept.
pub const BITS: u32 = 32;
/// Outcomes the rule looks at.
pub const WINDOW: u32 = 10;
/// Failures among the last [`WINDOW`] that make an agent degraded.
pub const DEGRADED_FAILURES: u32 = 3;
/// Successes in a row after which it is healthy again.
pub const RECOVER_AFTER: u32 = 3;
/// After this long (10 minutes) without a new outcome, the earlier ones are forgotten.
pub const FORGET_AFTER_MS: i64 = 10 * 60 * 1000;

const MASK: u64 = (1 << BITS) - 1;

/// The packed outcomes; see the module docs.
#[derive(Debug, Default)]
pub struct Window {
    packed: AtomicU64,
    last_ms: AtomicI64,
}

/// A snapshot of a [`Window`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bit i set = the outcome i steps back failed.
    pub bits: u32,
    /// How many outcomes are recorded (at most [`BITS`]).
    pub n: u32,
}

fn unpack(v: u64) -> Counts {
    Counts { bits: (v & MASK) as u32, n: (v >> BITS) as u32 }
}

fn pack(c: Counts) -> u64 {
    (u64::from(c.n) << BITS) | u64::from(c.bits)
}

impl Counts {
    /// Failures among the last `k` recorded outcomes.
    pub fn failed_of_last(&self, k: u32) -> u32 {
        let k = k.min(self.n).min(BITS);
        if k == 0 {
            return 0;
        }
        let mask = if k >= 32 { u32::MAX } else { (1u32 << k) - 1 };
        (self.bits & mask).count_ones()
    }

    /// Outcomes the rule looks at (at most [`WINDOW`]).
    pub fn considered(&self) -> u32 {
        self.n.min(WINDOW)
    }

    /// The rule: see the module docs.
    pub fn degraded(&self) -> bool {
        self.failed_of_last(WINDOW) >= DEGRADED_FAILURES && self.failed_of_last(RECOVER_AFTER) > 0
    }
}

impl Window {
    /// Record one outcome at `now_ms`; returns the new counts.
    pub fn push(&self, failed: bool, now_ms: i64) -> Counts {
        let stale = now_ms.saturating_sub(self.last_ms.swap(now_ms, Ordering::Relaxed)) > FORGET_AFTER_MS;
        let mut next = Counts::default();
        // One CAS loop on one word: concurrent calls of one agent never lose an outcome.
        let _ = self.packed.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            let c = if stale { Counts::default() } else { unpack(v) };
            next = Counts { bits: (c.bits << 1) | u32::from(failed), n: (c.n + 1).min(BITS) };
            Some(pack(next))
        });
        next
    }

    /// The outcomes that still count at `now_ms`.
    pub fn counts(&self, now_ms: i64) -> Counts {
        if now_ms.saturating_sub(self.last_ms.load(Ordering::Relaxed)) > FORGET_AFTER_MS {
            return Counts::default();
        }
        unpack(self.packed.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(w: &Window, outcomes: &str, t: i64) -> Vec<bool> {
        outcomes.chars().map(|c| w.push(c == 'F', t).degraded()).collect()
    }

    #[test]
    fn three_failures_in_ten_degrade_three_successes_in_a_row_recover() {
        let w = Window::default();
        let t = 1_000_000;
        assert_eq!(run(&w, "SSFSF", t), [false; 5], "two failures are noise");
        assert_eq!(run(&w, "F", t), [true], "the third failure within ten calls degrades");
        assert_eq!(run(&w, "SS", t), [true, true]);
        assert_eq!(run(&w, "S", t), [false], "three successes in a row recover");
        assert_eq!(run(&w, "F", t), [true], "still 4 of the last 10 failed: one more failure degrades again");
        assert_eq!(run(&w, "SSSSSSSSS", t).last(), Some(&false));
        assert_eq!(run(&w, "F", t), [false], "one failure after a clean window is noise");
        let c = w.counts(t);
        assert_eq!((c.failed_of_last(WINDOW), c.considered(), c.n), (1, 10, 20));
    }

    #[test]
    fn old_outcomes_are_forgotten() {
        let w = Window::default();
        let t = 5_000_000;
        assert_eq!(run(&w, "FFF", t).last(), Some(&true));
        assert!(w.counts(t + FORGET_AFTER_MS).degraded(), "still recent at the edge");
        assert_eq!(w.counts(t + FORGET_AFTER_MS + 1), Counts::default(), "forgotten");
        assert_eq!(run(&w, "F", t + FORGET_AFTER_MS + 1), [false], "a new failure starts a fresh window");
    }

    #[test]
    fn concurrent_pushes_are_all_counted() {
        let w = std::sync::Arc::new(Window::default());
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for _ in 0..4 {
                        w.push(i % 2 == 0, 1);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let c = w.counts(1);
        assert_eq!((c.n, c.bits.count_ones()), (16, 8));
    }
}

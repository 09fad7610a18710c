//! Reconnect delays: capped exponential backoff with jitter ("full jitter" on the upper
//! half), so many sidecars restarting together do not reconnect in lockstep.

use std::time::Duration;

/// Backoff state; `next()` grows the delay, `reset()` after a good connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial_ms: u64,
    max_ms: u64,
    attempt: u32,
}

impl Backoff {
    /// Start at `initial_ms`, never exceed `max_ms`.
    pub fn new(initial_ms: u64, max_ms: u64) -> Backoff {
        Backoff { initial_ms: initial_ms.max(1), max_ms: max_ms.max(initial_ms.max(1)), attempt: 0 }
    }

    /// The delay before the next attempt: uniform in [d/2, d] where d = min(max, initial*2^n).
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        Duration::from_millis(half + random_below(ceiling - half + 1))
    }

    /// Upper bound of the next delay.
    pub fn ceiling(&self) -> u64 {
        let factor = 1u64.checked_shl(self.attempt.min(32)).unwrap_or(u64::MAX);
        self.initial_ms.saturating_mul(factor).min(self.max_ms)
    }

    /// Back to the first delay (after a successful handshake).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    if n == 0 || getrandom::getrandom(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b) % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap_with_jitter() {
        let mut b = Backoff::new(1000, 30_000);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let c = b.ceiling();
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= c / 2 && d <= c, "delay {d} within [{}, {c}]", c / 2);
            ceilings.push(c);
        }
        assert_eq!(ceilings, vec![1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        b.reset();
        assert_eq!(b.ceiling(), 1000);
        for _ in 0..100 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), 30_000, "no overflow after many attempts");
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..20 {
            seen.insert(Backoff::new(1000, 1000).next_delay());
        }
        assert!(seen.len() > 1, "delays are not all equal: {seen:?}");
    }
}

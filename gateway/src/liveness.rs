//! Dead-link detection that does not wait for the gateway's own `tick` (every 30 s, so two
//! missed ticks took a minute): the link sends a WebSocket ping every `ping_interval_ms`, and
//! a ping left unanswered for `pong_timeout_ms` declares the link dead. Any frame from the
//! gateway answers a ping (a pong is just the usual one): a peer that sends anything is not
//! hung. A frozen process (SIGSTOP) or a black-holed network sends nothing, no FIN and no
//! close frame, so this deadline is what notices it, within `ping_interval_ms +
//! pong_timeout_ms` (7 s with the defaults).
//!
//! Pure time bookkeeping, so it is tested without sockets; the session loop in `link.rs`
//! sleeps until [`Liveness::wake_at`] and acts on [`Liveness::due`].

use std::time::Duration;

use tokio::time::Instant;

/// What the session loop must do now.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Send a ping with this payload.
    Ping(Vec<u8>),
    /// The oldest unanswered ping is past its deadline: the link is dead.
    Dead(String),
    /// Nothing yet.
    Nothing,
}

/// Ping schedule and pong deadline of one session.
#[derive(Debug)]
pub struct Liveness {
    every: Duration,
    within: Duration,
    next_ping: Instant,
    /// When the oldest ping not yet answered was sent.
    awaiting: Option<Instant>,
    sent: u64,
}

impl Liveness {
    /// A schedule whose first ping goes out one interval after `now`.
    pub fn new(every: Duration, within: Duration, now: Instant) -> Liveness {
        let every = every.max(Duration::from_millis(1));
        Liveness { every, within, next_ping: now + every, awaiting: None, sent: 0 }
    }

    /// A frame arrived: the gateway is alive, every ping so far counts as answered.
    pub fn on_frame(&mut self) {
        self.awaiting = None;
    }

    /// Ping at once (an RPC missed its deadline: is the gateway still there?).
    pub fn probe(&mut self, now: Instant) {
        if self.awaiting.is_none() {
            self.next_ping = now;
        }
    }

    /// When the loop must call [`Liveness::due`] next.
    pub fn wake_at(&self) -> Instant {
        match self.awaiting {
            Some(t) => (t + self.within).min(self.next_ping),
            None => self.next_ping,
        }
    }

    /// What is due at `now`.
    pub fn due(&mut self, now: Instant) -> Due {
        if let Some(t) = self.awaiting {
            if now >= t + self.within {
                return Due::Dead(format!(
                    "no pong within {} ms (gateway hung or network unreachable)",
                    self.within.as_millis()
                ));
            }
        }
        if now >= self.next_ping {
            self.next_ping = now + self.every;
            self.awaiting.get_or_insert(now);
            self.sent += 1;
            return Due::Ping(self.sent.to_be_bytes().to_vec());
        }
        Due::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_answered_ping_keeps_the_link_alive() {
        let t0 = Instant::now();
        let mut l = Liveness::new(2000 * MS, 5000 * MS, t0);
        assert_eq!(l.wake_at(), t0 + 2000 * MS);
        assert_eq!(l.due(t0 + 1000 * MS), Due::Nothing);
        assert!(matches!(l.due(t0 + 2000 * MS), Due::Ping(_)));
        l.on_frame();
        for i in 2..20u32 {
            let now = t0 + 2000 * i * MS;
            assert!(matches!(l.due(now), Due::Ping(_)), "ping {i}");
            l.on_frame();
        }
    }

    #[test]
    fn a_silent_peer_is_dead_one_pong_timeout_after_the_first_unanswered_ping() {
        let t0 = Instant::now();
        let mut l = Liveness::new(2000 * MS, 5000 * MS, t0);
        // The peer hangs right after t0: pings at 2 s, 4 s, 6 s go unanswered.
        let dead_at = loop {
            let now = l.wake_at();
            match l.due(now) {
                Due::Dead(why) => {
                    assert!(why.contains("5000 ms"), "{why}");
                    break now;
                }
                Due::Ping(_) | Due::Nothing => {}
            }
            assert!(now < t0 + 60_000 * MS, "never declared dead");
        };
        assert_eq!(dead_at, t0 + 7000 * MS, "first ping at 2 s + 5 s deadline");
        assert!(dead_at - t0 <= 10_000 * MS);
    }

    #[test]
    fn a_probe_pings_at_once_but_does_not_restart_a_running_deadline() {
        let t0 = Instant::now();
        let mut l = Liveness::new(2000 * MS, 5000 * MS, t0);
        l.probe(t0 + 100 * MS);
        assert_eq!(l.wake_at(), t0 + 100 * MS);
        assert_eq!(l.due(t0 + 100 * MS), Due::Ping(1u64.to_be_bytes().to_vec()));
        // Unanswered: a second probe keeps the first deadline.
        l.probe(t0 + 200 * MS);
        assert_eq!(l.wake_at(), t0 + 2100 * MS, "next regular ping, before the 5.1 s deadline");
        assert!(matches!(l.due(t0 + 5100 * MS), Due::Dead(_)));
    }
}

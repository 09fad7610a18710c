//! Staying awake for an answer that is about to come. On a virtual machine whose idle vCPUs
//! halt (a VM exit), a thread that sleeps for the 20-100 us an upstream takes to answer, or a
//! client takes to send its next request, is woken late: the host must first run the halted
//! vCPU again, which measured here costs more than the sidecar's own work on a call
//! (docs/performance.md, "Staying awake"). So for a short window after a connection thread
//! sent something it expects an answer to ([`keep_awake`]), it does not sleep: a spinner task
//! keeps yielding, and between its turns the thread's runtime polls its reactor without
//! blocking (`epoll_wait` with a zero timeout), so the answer is taken up the moment it lands.
//! The window closes early when the answer comes ([`arrived`]).
//!
//! When, so that the CPU it burns buys something:
//! - only while the thread serves about one request at a time: at each [`keep_awake`] the
//!   requests in flight on the thread go into a moving average over the last ten or so, and at
//!   1 or more the thread does not spin. Other requests' events wake it soon anyway, and under
//!   load the CPU a spin burns is what the peers sharing the cores need (spinning at any load
//!   cost 5 % of the calls per second at saturation);
//! - only for a kind of wait ([`Awaiting`]) whose answers mostly come within the window: each
//!   window that closes by an answer counts a hit, each that runs out a miss, and a kind whose
//!   moving hit rate is under one half is spun only every 16th time (to notice when it rises
//!   again). A client that pauses between requests, or an upstream slower than the window,
//!   so costs about a sixteenth of a window per call.
//!
//! Only connection threads spin (the thread-local is set by their spinner); elsewhere the
//! functions here do nothing. A window of 0 turns it off.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// What a window waits for; each kind keeps its own hit rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    /// The upstream's answer to a call just sent to it.
    Upstream = 0,
    /// The client's next request, after an answer went out to it.
    Client = 1,
}

struct Spin {
    window: Duration,
    /// The open window: until when, and for what.
    open: Cell<Option<(Instant, Awaiting)>>,
    /// The spinner, while it waits for a window to open.
    idle: RefCell<Option<Waker>>,
    /// Requests being served on this thread ([`Active`]).
    active: Arc<AtomicUsize>,
    /// Moving average of `active` at [`keep_awake`].
    load: Cell<f32>,
    /// Moving hit rate per [`Awaiting`] kind.
    hits: [Cell<f32>; 2],
    /// Windows not opened for a kind under the hit threshold, per kind (every 16th opens).
    skipped: [Cell<u32>; 2],
}

/// Weight of the newest sample in the moving averages.
const NEWEST: f32 = 0.1;

thread_local! {
    static SPIN: RefCell<Option<Spin>> = const { RefCell::new(None) };
}

fn with<T>(f: impl FnOnce(&Spin) -> Option<T>) -> Option<T> {
    SPIN.with(|cell| cell.borrow().as_ref().and_then(f))
}

fn count(hit: &Cell<f32>, sample: f32) {
    hit.set(hit.get() * (1.0 - NEWEST) + sample * NEWEST);
}

/// One request being served, counted on its connection thread while it lives (a guard, so a
/// request dropped half way is uncounted too). Holds the counter itself, not the thread's
/// slot: it stays right wherever it is dropped. A request coming in is also the answer a
/// [`Awaiting::Client`] window waits for.
pub struct Active(Option<Arc<AtomicUsize>>);

impl Active {
    /// Count a request on the current thread (nothing off connection threads).
    pub fn enter() -> Active {
        arrived();
        Active(with(|spin| {
            spin.active.fetch_add(1, Ordering::Relaxed);
            Some(spin.active.clone())
        }))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Keep this thread awake for its window from now, awaiting `what` (a connection thread's,
/// when it serves one request at most and such waits mostly end within the window; see the
/// module docs).
pub fn keep_awake(what: Awaiting) {
    let idle = with(|spin| {
        // A window that ran out before the spinner saw it (the thread was off its CPU) is
        // still a miss: counted here, before its kind's rate decides this one.
        if let Some((until, was)) = spin.open.get() {
            if Instant::now() >= until {
                spin.open.set(None);
                count(&spin.hits[was as usize], 0.0);
            }
        }
        let load = spin.load.get() * (1.0 - NEWEST) + spin.active.load(Ordering::Relaxed) as f32 * NEWEST;
        spin.load.set(load);
        if load >= 1.0 {
            return None;
        }
        let k = what as usize;
        if spin.hits[k].get() < 0.5 {
            let n = spin.skipped[k].get().wrapping_add(1);
            spin.skipped[k].set(n);
            if n % 16 != 0 {
                return None;
            }
        }
        spin.open.set(Some((Instant::now() + spin.window, what)));
        spin.idle.borrow_mut().take()
    });
    if let Some(w) = idle {
        w.wake();
    }
}

/// What the open window waited for has come: close it, a hit.
pub fn arrived() {
    with(|spin| {
        let (_, what) = spin.open.take()?;
        count(&spin.hits[what as usize], 1.0);
        Some(())
    });
}

/// Where the spinner stands.
enum Step {
    /// No window open.
    Closed,
    /// Spin on.
    Open,
}

/// Close a window that ran out (a miss) and say whether one is open.
fn step() -> Step {
    with(|spin| {
        let (until, what) = spin.open.get()?;
        if Instant::now() < until {
            return Some(Step::Open);
        }
        spin.open.set(None);
        count(&spin.hits[what as usize], 0.0);
        None
    })
    .unwrap_or(Step::Closed)
}

/// The spinner of the current thread: runs for the thread's life (spawned on its runtime).
pub(crate) async fn spinner(window: Duration) {
    if window.is_zero() {
        return;
    }
    SPIN.with(|s| {
        *s.borrow_mut() = Some(Spin {
            window,
            open: Cell::new(None),
            idle: RefCell::new(None),
            active: Arc::new(AtomicUsize::new(0)),
            load: Cell::new(0.0),
            hits: [Cell::new(1.0), Cell::new(1.0)],
            skipped: [Cell::new(0), Cell::new(0)],
        });
    });
    loop {
        // Wait (parked, costing nothing) for a window to open.
        std::future::poll_fn(|cx| {
            if with(|spin| spin.open.get()).is_some() {
                return Poll::Ready(());
            }
            with(|spin| spin.idle.borrow_mut().replace(cx.waker().clone()));
            Poll::Pending
        })
        .await;
        // A yielded task is polled again only after the runtime has polled its reactor
        // without blocking: this loop is the busy poll. Each turn also offers the CPU to any
        // thread waiting for it (`sched_yield`): the peer being woken to answer (an upstream,
        // the client) is often placed on this very CPU, and must not wait out the window.
        while let Step::Open = step() {
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> bool {
        with(|spin| spin.open.get()).is_some()
    }

    fn hit_rate(what: Awaiting) -> f32 {
        with(|spin| Some(spin.hits[what as usize].get())).unwrap_or(-1.0)
    }

    /// Run `body` as a connection thread does: a current-thread runtime with the spinner task
    /// (windows of `window`) already started.
    fn on_a_connection_thread<F: std::future::Future<Output = ()>>(window: Duration, body: F) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            tokio::spawn(spinner(window));
            tokio::task::yield_now().await;
            body.await;
        });
    }

    #[test]
    fn off_a_connection_thread_nothing_happens() {
        keep_awake(Awaiting::Upstream);
        arrived();
        let _a = Active::enter();
        assert!(!open());
    }

    #[test]
    fn a_window_opens_at_keep_awake_and_closes_when_the_answer_comes_or_it_runs_out() {
        on_a_connection_thread(Duration::from_millis(30), async {
            assert!(!open(), "no window before anything was sent");
            keep_awake(Awaiting::Upstream);
            assert!(open());
            arrived();
            assert!(!open(), "the answer closes it");
            assert_eq!(hit_rate(Awaiting::Upstream), 1.0);
            // A client's next request closes its window too.
            keep_awake(Awaiting::Client);
            let a = Active::enter();
            assert!(!open());
            drop(a);
            // Nothing comes: the window runs out, a miss.
            let sent = Instant::now();
            keep_awake(Awaiting::Upstream);
            // The spinner closes it once its turn comes after the window (later than 30 ms
            // when the thread is off its CPU, so polled).
            while open() && sent.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(!open(), "closed after the window");
            assert!(sent.elapsed() >= Duration::from_millis(30), "not before the window ran out");
            assert!(hit_rate(Awaiting::Upstream) < 1.0);
        });
    }

    #[test]
    fn no_spin_while_several_requests_are_served_at_once() {
        on_a_connection_thread(Duration::from_millis(30), async {
            let busy: Vec<Active> = (0..3).map(|_| Active::enter()).collect();
            // The average rises over a few calls; after that no window opens.
            for _ in 0..20 {
                keep_awake(Awaiting::Upstream);
                arrived();
            }
            keep_awake(Awaiting::Upstream);
            assert!(!open(), "no spin under load");
            drop(busy);
            // Back to one request at a time (one in flight when sending, none after answering):
            // the average falls below one within a few calls.
            let mut calls = 0;
            while !open() {
                let a = Active::enter();
                keep_awake(Awaiting::Upstream);
                arrived();
                drop(a);
                keep_awake(Awaiting::Client);
                calls += 1;
                assert!(calls < 30, "spinning again at one request at a time");
            }
        });
    }

    #[test]
    fn a_window_that_runs_out_while_the_thread_is_off_its_cpu_is_still_a_miss() {
        on_a_connection_thread(Duration::from_millis(2), async {
            keep_awake(Awaiting::Client);
            // Blocking: the spinner gets no turn to see the window run out.
            std::thread::sleep(Duration::from_millis(5));
            keep_awake(Awaiting::Upstream);
            assert!(hit_rate(Awaiting::Client) < 1.0, "the client's window was a miss");
            assert_eq!(hit_rate(Awaiting::Upstream), 1.0);
            arrived();
            assert_eq!(hit_rate(Awaiting::Upstream), 1.0, "the new window was the one answered");
        });
    }

    #[test]
    fn a_kind_of_wait_that_mostly_runs_out_is_spun_only_every_sixteenth_time() {
        on_a_connection_thread(Duration::from_millis(2), async {
            // A client that pauses longer than the window between requests.
            for _ in 0..8 {
                keep_awake(Awaiting::Client);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(hit_rate(Awaiting::Client) < 0.5);
            // Skipped, until a probe every 16th time.
            let mut skipped = 0;
            loop {
                keep_awake(Awaiting::Client);
                if open() {
                    break;
                }
                skipped += 1;
                assert!(skipped <= 15, "a probe every 16th time");
            }
            assert!(skipped >= 14, "{skipped}");
            // The probe's hit brings the client's rate back up, and with it the spin.
            arrived();
            // The upstream's answers came in time all along: its windows kept opening.
            keep_awake(Awaiting::Upstream);
            assert!(open());
            arrived();
            keep_awake(Awaiting::Client);
            assert!(open(), "recovered: {}", hit_rate(Awaiting::Client));
        });
    }
}

//! Fleet budgets, the sidecar half (docs/fleet.md "Fleet budgets"): a pool of leases per set
//! of fleet budgets a call falls under. A call carves its worst case out of a lease with room
//! under a plain mutex, with no database round trip; only when no lease has room does it take
//! a new one centrally ([`budget::take_sized`]), one take at a time per set on this sidecar
//! (the calls that waited re-check the fresh lease first). Far from the limit the next lease
//! is taken ahead, in the background, when the current one is down to its last quarter. When the call ends, what it really
//! cost is added to the lease's use. A lease goes back ([`budget::settle`]: its unused part
//! returns to the fleet) once it has no call in flight and is retired (too short for the call
//! that asked), past its deadline, or idle in the last quarter of its life.
//!
//! Invariants:
//! - A lease admits calls only until `deadline` = the moment its take was *sent* + the TTL,
//!   never later than the server's own expiry (`now()` at commit + the TTL). So a sidecar cut
//!   off from the database serves fleet-budget calls for at most the TTL, then refuses.
//! - Settles and unknown-outcome takes that fail are queued and retried until the database
//!   takes them; a lease the sweeper charged in full meanwhile is refunded once by that settle.
//! - The worst case of every call in flight stays carved until it ends, so the lease's
//!   `used + in flight <= amount` as long as real costs stay within their worst cases.
//! - A call is carved only once the lease's `used + in flight` is in the [`Journal`], so a
//!   restart after this process died settles the leases it held with no less than they may
//!   have spent (their unused part goes back once; see `journal.rs`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use governance::budget::fleet::{AcquireFut, FleetDenied, FleetHold, FleetLink, FleetShare, HoldEnd};
use tokio::sync::{watch, Notify};

use crate::budget::{self, Ask, Sized};
use crate::journal::Journal;
use crate::{FleetError, FleetSettings};

/// Nano-USD (local accounting, as governance keeps it) per micro-USD (the database's unit).
const NANOS_PER_MICRO: u64 = 1_000;

pub(crate) fn micro_up(nanos: u64) -> i64 {
    nanos.div_ceil(NANOS_PER_MICRO) as i64
}

struct Lease {
    id: Arc<str>,
    /// Granted, in nano-USD.
    amount: u64,
    /// Real cost of the calls that ended.
    used: u64,
    /// Worst cases of the calls in flight.
    inflight: u64,
    deadline: Instant,
    /// Too short for a call that asked: admits nothing more, goes back when idle.
    retired: bool,
}

impl Lease {
    fn room(&self) -> u64 {
        self.amount.saturating_sub(self.used).saturating_sub(self.inflight)
    }

    fn admits(&self, now: Instant, amount: u64) -> bool {
        !self.retired && now < self.deadline && self.room() >= amount
    }
}

#[derive(Default)]
struct Key {
    /// Held while taking a lease centrally: one take at a time per budget set.
    refill: tokio::sync::Mutex<()>,
    /// A take ahead is under way.
    ahead: std::sync::atomic::AtomicBool,
    leases: Mutex<Vec<Lease>>,
}

struct Inner {
    pool: Pool,
    sidecar_id: String,
    /// Distinguishes this run's lease ids from an earlier run's (ids are never reused).
    boot: u128,
    seq: AtomicU64,
    ttl: Duration,
    timeout: Duration,
    parts: i64,
    max_calls: u64,
    live_ms: i64,
    keys: Mutex<HashMap<String, Arc<Key>>>,
    /// Settles to send: (lease id, used micro-USD).
    pending: Mutex<Vec<(Arc<str>, i64)>>,
    wake: Notify,
    metrics: Metrics,
    journal: Journal,
}

/// The pool's metrics (docs/metrics.md).
struct Metrics {
    /// By outcome: `granted`, `refused` (no headroom), `failed` (no answer: fail closed).
    takes: prometheus::IntCounterVec,
    pending: prometheus::IntGauge,
    expired: prometheus::IntCounter,
}

impl Metrics {
    fn new(registry: &prometheus::Registry) -> Result<Metrics, prometheus::Error> {
        let takes = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "clawbutler_fleet_lease_takes_total",
                "Fleet-budget leases this sidecar asked the database for, by outcome.",
            ),
            &["outcome"],
        )?;
        let pending = prometheus::IntGauge::new(
            "clawbutler_fleet_lease_settles_pending",
            "Lease settles queued because the fleet database has not taken them yet.",
        )?;
        let expired = prometheus::IntCounter::new(
            "clawbutler_fleet_leases_expired_total",
            "Expired fleet-budget leases (of any sidecar) this sidecar's sweeper charged in full.",
        )?;
        registry.register(Box::new(takes.clone()))?;
        registry.register(Box::new(pending.clone()))?;
        registry.register(Box::new(expired.clone()))?;
        Ok(Metrics { takes, pending, expired })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// This sidecar's lease pool; the budgets reach it as a [`FleetLink`].
pub struct Leases(Arc<Inner>);

impl Leases {
    /// The pool, its journal in `journal_dir`; the leases an earlier run of this sidecar left
    /// unsettled (it died holding them) are queued to settle with what they may have used.
    pub(crate) fn new(
        pool: Pool,
        s: &FleetSettings,
        registry: &prometheus::Registry,
        journal_dir: &Path,
    ) -> Result<Leases, FleetError> {
        let boot =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let metrics = Metrics::new(registry).map_err(|e| FleetError::Pool(e.to_string()))?;
        let (journal, carried) = Journal::open(journal_dir, boot)?;
        if !carried.is_empty() {
            tracing::info!(leases = carried.len(), "fleet leases of this sidecar's previous run: settling them");
        }
        metrics.pending.add(carried.len() as i64);
        let pending = carried.into_iter().map(|(id, used)| (Arc::<str>::from(id), used)).collect();
        Ok(Leases(Arc::new(Inner {
            pool,
            sidecar_id: s.sidecar_id.clone(),
            boot,
            seq: AtomicU64::new(0),
            ttl: Duration::from_millis(s.lease_ttl_ms),
            timeout: Duration::from_millis(s.timeout_ms),
            parts: i64::from(s.lease_parts),
            max_calls: u64::from(s.lease_max_calls),
            live_ms: s.heartbeat_ttl_ms as i64,
            keys: Mutex::new(HashMap::new()),
            pending: Mutex::new(pending),
            wake: Notify::new(),
            metrics,
            journal,
        })))
    }

    /// Return leases that are done, send queued settles and sweep expired leases, every
    /// `tick` and whenever a lease is done, until `stop`; then return what is idle once.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tick = (self.0.ttl / 8).clamp(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = self.0.wake.notified() => {}
                _ = stop.changed() => {
                    self.0.return_idle(true);
                    let _ = tokio::time::timeout(self.0.timeout, self.0.flush()).await;
                    return;
                }
            }
            self.0.return_idle(false);
            self.0.flush().await;
            self.0.journal.rotate_if_big(|| self.0.snapshot());
            match tokio::time::timeout(self.0.timeout, budget::sweep(&self.0.pool)).await {
                Ok(Ok(n)) if n > 0 => {
                    self.0.metrics.expired.inc_by(n);
                    tracing::warn!(leases = n, "expired fleet-budget leases charged in full");
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "fleet lease sweep failed"),
                Err(_) => tracing::debug!("fleet lease sweep timed out"),
            }
        }
    }
}

impl Inner {
    fn key(&self, name: &str) -> Arc<Key> {
        lock(&self.keys).entry(name.to_string()).or_default().clone()
    }

    /// Carve `amount` out of a lease with room; retire the lease if it cannot serve another
    /// such call (so its rest goes back as soon as its calls end, not stranded).
    ///
    /// Also says whether to take the next lease ahead, in the background: when the lease is
    /// large (4 calls or more: far from the limit) and down to its last quarter of room or of
    /// life, and no other lease is waiting, so busy sidecars rarely make a call wait for the
    /// database. Near the limit leases are one call each and nothing is taken ahead.
    fn carve(&self, key: &Key, amount: u64) -> Option<(Arc<str>, bool)> {
        let now = Instant::now();
        let mut leases = lock(&key.leases);
        let spare = leases.iter().filter(|l| l.admits(now, amount)).count() > 1;
        let l = leases.iter_mut().find(|l| l.admits(now, amount))?;
        // Fail closed: a call the journal does not cover is not admitted.
        if let Err(e) = self.journal.record(&l.id, l.used + l.inflight + amount) {
            tracing::error!(error = %e, "fleet lease journal not written: call refused");
            return None;
        }
        l.inflight += amount;
        if l.room() < amount {
            l.retired = true;
        }
        let low = l.room() < l.amount / 4 || now + self.ttl / 4 >= l.deadline;
        let ahead = !spare && l.amount >= 4 * amount && low;
        Some((l.id.clone(), ahead))
    }

    /// Take the next lease in the background (see [`Inner::carve`]); one at a time per set.
    async fn take_ahead(self: Arc<Self>, key: Arc<Key>, shares: Vec<FleetShare>, amount: u64) {
        let _refill = key.refill.lock().await;
        let now = Instant::now();
        let fresh = lock(&key.leases)
            .iter()
            .any(|l| l.admits(now, amount) && l.room() >= l.amount / 2 && now + self.ttl / 2 < l.deadline);
        if !fresh {
            if let Err(e) = self.grant(&key, &shares, amount).await {
                tracing::debug!(?e, "fleet lease take ahead refused");
            }
        }
        key.ahead.store(false, Ordering::Release);
    }

    fn queue(&self, id: Arc<str>, used_micro: i64) {
        // Best effort: without a record a restart leaves the lease charged in full.
        let _ = self.journal.record(&id, (used_micro as u64).saturating_mul(NANOS_PER_MICRO));
        lock(&self.pending).push((id, used_micro));
        self.metrics.pending.inc();
        self.wake.notify_one();
    }

    /// Leases with no call in flight that are retired, past (or, idle, near) their deadline,
    /// or all of them at shutdown: queue their settle.
    fn return_idle(&self, all: bool) {
        let soon = Instant::now() + self.ttl / 4;
        let keys: Vec<Arc<Key>> = lock(&self.keys).values().cloned().collect();
        for key in keys {
            let mut back = Vec::new();
            lock(&key.leases).retain(|l| {
                let done = l.inflight == 0 && (all || l.retired || soon >= l.deadline);
                if done {
                    back.push((l.id.clone(), micro_up(l.used)));
                }
                !done
            });
            self.metrics.pending.add(back.len() as i64);
            lock(&self.pending).extend(back);
        }
        // Forget sets with no lease that nothing else refers to (e.g. last window's): a set
        // is only handed out under this lock, and holds and takes keep their own reference.
        lock(&self.keys).retain(|_, k| Arc::strong_count(k) > 1 || !lock(&k.leases).is_empty());
    }

    /// Send queued settles, oldest first; what fails stays queued for the next round. The
    /// pending gauge counts up when a settle is queued and down when the database took it.
    async fn flush(&self) {
        let todo = std::mem::take(&mut *lock(&self.pending));
        let mut rest = todo.into_iter();
        while let Some((id, used)) = rest.next() {
            match tokio::time::timeout(self.timeout, budget::settle(&self.pool, &id, used)).await {
                Ok(Ok(_)) => {
                    self.metrics.pending.dec();
                    self.journal.done(&id);
                }
                failed => {
                    if let Ok(Err(e)) = failed {
                        tracing::debug!(error = %e, lease = %id, "fleet lease settle failed; retrying");
                    }
                    let mut p = lock(&self.pending);
                    p.push((id, used));
                    p.extend(rest);
                    return;
                }
            }
        }
    }

    /// Record every lease still open or waiting for its settle (the journal's rotation).
    fn snapshot(&self) {
        let keys: Vec<Arc<Key>> = lock(&self.keys).values().cloned().collect();
        for key in keys {
            let leases = lock(&key.leases);
            for l in leases.iter() {
                let _ = self.journal.record(&l.id, l.used + l.inflight);
            }
        }
        let pending = lock(&self.pending).clone();
        for (id, used) in pending {
            let _ = self.journal.record(&id, (used as u64).saturating_mul(NANOS_PER_MICRO));
        }
    }

    /// Take a lease centrally for a call of `amount` on `shares`, then carve the call.
    async fn take(&self, key: &Key, shares: &[FleetShare], amount: u64) -> Result<(Arc<str>, bool), FleetDenied> {
        {
            // Leases too short for this call admit nothing more; they go back when idle.
            let mut leases = lock(&key.leases);
            for l in leases.iter_mut().filter(|l| l.room() < amount) {
                l.retired = true;
            }
        }
        self.wake.notify_one();
        self.grant(key, shares, amount).await?;
        self.carve(key, amount).ok_or(FleetDenied::Unreachable)
    }

    /// Take a lease centrally (sized for calls of `amount`) and add it to the set's leases.
    async fn grant(&self, key: &Key, shares: &[FleetShare], amount: u64) -> Result<(), FleetDenied> {
        let lease_id: Arc<str> =
            format!("{}.{:x}.{}", self.sidecar_id, self.boot, self.seq.fetch_add(1, Ordering::Relaxed)).into();
        let budgets: Vec<(String, i64)> =
            shares.iter().map(|s| (s.central_id.clone(), (s.limit_nanos / NANOS_PER_MICRO) as i64)).collect();
        let min = micro_up(amount).max(1);
        let ask = Ask {
            lease_id: &lease_id,
            sidecar_id: &self.sidecar_id,
            budgets: &budgets,
            min_micro: min,
            max_micro: min.saturating_mul(self.max_calls as i64),
            parts: self.parts,
            live_ms: self.live_ms,
            ttl_ms: self.ttl.as_millis() as i64,
        };
        let sent = Instant::now();
        let mut outcome = None;
        // One retry with the same lease id: safe after an unknown commit outcome.
        for _ in 0..2 {
            match tokio::time::timeout(self.timeout, budget::take_sized(&self.pool, &ask)).await {
                Ok(Ok(s)) => {
                    outcome = Some(s);
                    break;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "fleet lease take failed"),
                Err(_) => tracing::warn!(ms = self.timeout.as_millis() as u64, "fleet lease take timed out"),
            }
        }
        let label = match outcome {
            Some(Sized::Granted(_)) => "granted",
            Some(Sized::Refused { .. }) => "refused",
            Some(Sized::Ended) | None => "failed",
        };
        self.metrics.takes.with_label_values(&[label]).inc();
        match outcome {
            Some(Sized::Granted(m)) => {
                let granted = m as u64 * NANOS_PER_MICRO;
                let lease = Lease {
                    id: lease_id,
                    amount: granted,
                    used: 0,
                    inflight: 0,
                    deadline: sent + self.ttl,
                    retired: false,
                };
                // Best effort: without a record a restart leaves the lease charged in full.
                let _ = self.journal.record(&lease.id, 0);
                lock(&key.leases).push(lease);
                Ok(())
            }
            Some(Sized::Refused { budget_id, limit, used }) => Err(FleetDenied::Full {
                central_id: budget_id,
                limit_nanos: limit as u64 * NANOS_PER_MICRO,
                used_nanos: used.max(0) as u64 * NANOS_PER_MICRO,
            }),
            Some(Sized::Ended) | None => {
                // The outcome is unknown: should the take have committed, settling the id
                // with nothing used gives the grant back (a settle of an unknown id is a no-op).
                self.queue(lease_id, 0);
                Err(FleetDenied::Unreachable)
            }
        }
    }
}

/// One call's worst case carved out of a lease.
struct Held {
    inner: Arc<Inner>,
    key: Arc<Key>,
    lease: Arc<str>,
    amount: u64,
}

impl HoldEnd for Held {
    fn end(self: Box<Self>, charge_nanos: u64) {
        let now = Instant::now();
        let mut leases = lock(&self.key.leases);
        let Some(i) = leases.iter().position(|l| l.id == self.lease) else { return };
        let l = &mut leases[i];
        l.inflight = l.inflight.saturating_sub(self.amount);
        l.used = l.used.saturating_add(charge_nanos);
        // A lower figure than the carve's when the call cost less than its worst case; a
        // lost record leaves the higher one (fail closed).
        let _ = self.inner.journal.record(&l.id, l.used + l.inflight);
        if l.inflight == 0 && (l.retired || now >= l.deadline) {
            let l = leases.swap_remove(i);
            drop(leases);
            self.inner.queue(l.id, micro_up(l.used));
        }
    }
}

impl FleetLink for Leases {
    fn acquire(&self, shares: Vec<FleetShare>, amount_nanos: u64) -> AcquireFut<'_> {
        let inner = self.0.clone();
        Box::pin(async move {
            let name = shares.iter().map(|s| s.central_id.as_str()).collect::<Vec<_>>().join("\u{1f}");
            let key = inner.key(&name);
            let hold = |lease: Arc<str>| {
                let end = Held { inner: inner.clone(), key: key.clone(), lease, amount: amount_nanos };
                FleetHold::new(Box::new(end), amount_nanos)
            };
            let ahead = |go: bool| {
                if go && !key.ahead.swap(true, Ordering::AcqRel) {
                    tokio::spawn(inner.clone().take_ahead(key.clone(), shares.clone(), amount_nanos));
                }
            };
            // The call path: no database round trip while a lease has room.
            if let Some((l, go)) = inner.carve(&key, amount_nanos) {
                ahead(go);
                return Ok(hold(l));
            }
            let carved = {
                let _refill = key.refill.lock().await;
                match inner.carve(&key, amount_nanos) {
                    Some(c) => Ok(c),
                    None => inner.take(&key, &shares, amount_nanos).await,
                }
            };
            let (l, go) = carved?;
            ahead(go);
            Ok(hold(l))
        })
    }
}

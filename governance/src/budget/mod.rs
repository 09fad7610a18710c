//! Budget circuit breakers: hard dollar caps per agent, model, upstream and globally.
//!
//! Invariant: a call is forwarded only after its estimated worst-case cost has been reserved
//! against every budget that applies, under each budget's lock; afterwards the reservation is
//! replaced by what the call really cost, even when that is more than was reserved, so spend
//! never falls below what the upstream billed. The overshoot past a limit is therefore at
//! most the estimation error (real cost minus reservation) of the calls in flight when the
//! last call was admitted: zero when every estimate is a true bound (docs/budgets.md). A
//! budget whose spend reached its limit is an open breaker until its window resets or an
//! operator resets it.

pub mod fleet;
mod ledger;
mod model;
mod precheck;
mod reservation;
pub mod window;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use prometheus::{GaugeVec, Opts};

pub use ledger::Ledger;
pub use model::{BudgetConfig, BudgetView, CallScope, Refusal, Scope, Source};
pub use precheck::{BudgetCaution, Outlook};
pub use reservation::{Charge, Reservation};
pub use window::{Clock, SystemClock, Window};

/// Nano-USD per USD: spend is kept in integers so sums are exact.
pub const NANOS: f64 = 1e9;

#[derive(Debug)]
struct State {
    window_key: String,
    resets_at: DateTime<Utc>,
    spent: u64,
    reserved: u64,
    warned: bool,
    open: bool,
}

/// One budget and its live state.
pub struct Budget {
    pub id: String,
    pub scope_text: String,
    pub scope: Scope,
    pub window: Window,
    pub limit: u64,
    pub warn_at: f64,
    pub tz: Tz,
    pub source: Source,
    pub config: BudgetConfig,
    state: Mutex<State>,
}

/// Errors of budget definitions and the store.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("budget store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("budgets.{id}: {msg}")]
    Invalid { id: String, msg: String },
    #[error("budget {0} not found")]
    NotFound(String),
    #[error("budget {0} is defined in clawbutler.toml; change it there")]
    ConfigManaged(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Budget events worth an audit record (and an SSE event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Warn,
    Open,
    Close,
    Reset,
}

impl EventKind {
    fn outcome(self) -> audit::Outcome {
        match self {
            EventKind::Warn => audit::Outcome::Warn,
            EventKind::Open => audit::Outcome::Open,
            EventKind::Close => audit::Outcome::Close,
            EventKind::Reset => audit::Outcome::Reset,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            EventKind::Warn => "warn",
            EventKind::Open => "open",
            EventKind::Close => "close",
            EventKind::Reset => "reset",
        }
    }
}

/// All budgets, their ledger and metrics.
pub struct Budgets {
    list: ArcSwap<Vec<Arc<Budget>>>,
    ledger: Ledger,
    clock: Arc<dyn Clock>,
    audit: Arc<audit::AuditLog>,
    spent_gauge: GaugeVec,
    open_gauge: GaugeVec,
    /// The limit and the warning fraction, so an alert or a dashboard compares spend with
    /// them without copying the config (API budgets change at run time).
    limit_gauge: GaugeVec,
    warn_gauge: GaugeVec,
    /// Whether any budget has fleet scope: the one check the local path pays.
    has_fleet: AtomicBool,
    /// The fleet's lease pool (fleet mode only).
    fleet: OnceLock<Arc<dyn fleet::FleetLink>>,
}

fn usd(n: u64) -> f64 {
    n as f64 / NANOS
}

/// USD to nano-USD, rounding up so reservations are never short.
pub fn to_nanos(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        (v * NANOS).ceil() as u64
    } else {
        0
    }
}

impl Budget {
    fn from_config(c: &BudgetConfig, source: Source) -> Result<Budget, BudgetError> {
        let id = c.id.clone().unwrap_or_else(|| format!("{}@{}", c.scope, c.window.as_str()));
        let bad = |msg: String| BudgetError::Invalid { id: id.clone(), msg };
        let scope = Scope::parse(&c.scope).map_err(bad)?;
        if !(c.limit_usd.is_finite() && c.limit_usd >= 0.0) {
            return Err(bad("limit_usd must be a number >= 0".into()));
        }
        let warn_at = c.warn_at.unwrap_or(0.8);
        if !(0.0..=1.0).contains(&warn_at) {
            return Err(bad("warn_at must be between 0 and 1".into()));
        }
        let tz: Tz = match &c.timezone {
            None => Tz::UTC,
            Some(t) => t.parse().map_err(|_| bad(format!("unknown timezone '{t}'")))?,
        };
        if id.is_empty() || id.len() > 128 || id.contains(['/', '\u{1f}']) {
            return Err(bad("id must be 1-128 characters without '/'".into()));
        }
        Ok(Budget {
            id,
            scope_text: c.scope.clone(),
            scope,
            window: c.window,
            limit: to_nanos(c.limit_usd),
            warn_at,
            tz,
            source,
            config: c.clone(),
            state: Mutex::new(State {
                window_key: String::new(),
                resets_at: DateTime::<Utc>::MIN_UTC,
                spent: 0,
                reserved: 0,
                warned: false,
                open: false,
            }),
        })
    }
}

impl Budgets {
    /// Load config budgets and API-defined ones from the store, with the wall clock.
    pub fn open(
        store: &storage::Store,
        cfg: &[BudgetConfig],
        audit: Arc<audit::AuditLog>,
        registry: &prometheus::Registry,
    ) -> Result<Budgets, BudgetError> {
        Budgets::open_with_clock(store, cfg, audit, registry, Arc::new(SystemClock))
    }

    /// Same, with an injectable clock (tests of window rollover).
    pub fn open_with_clock(
        store: &storage::Store,
        cfg: &[BudgetConfig],
        audit: Arc<audit::AuditLog>,
        registry: &prometheus::Registry,
        clock: Arc<dyn Clock>,
    ) -> Result<Budgets, BudgetError> {
        let ledger = Ledger::open(store)?;
        let mut list = Vec::new();
        for c in cfg {
            let b = Budget::from_config(c, Source::Config)?;
            if list.iter().any(|x: &Arc<Budget>| x.id == b.id) {
                return Err(BudgetError::Invalid { id: b.id, msg: "duplicate id".into() });
            }
            list.push(Arc::new(b));
        }
        for kv in ledger.defs.iter() {
            let (_, v) = kv?;
            match serde_json::from_slice::<BudgetConfig>(&v)
                .map_err(|e| e.to_string())
                .and_then(|c| Budget::from_config(&c, Source::Api).map_err(|e| e.to_string()))
            {
                Ok(b) if !list.iter().any(|x| x.id == b.id) => list.push(Arc::new(b)),
                Ok(b) => tracing::warn!(budget = %b.id, "API budget shadowed by a config budget with the same id"),
                Err(e) => tracing::error!(error = %e, "skipping an unreadable stored budget"),
            }
        }
        let spent_gauge = GaugeVec::new(
            Opts::new("clawbutler_budget_spent_usd", "Spend in the budget's current window."),
            &["scope", "window"],
        )?;
        let open_gauge = GaugeVec::new(
            Opts::new("clawbutler_budget_breaker_open", "1 while the budget's breaker is open."),
            &["scope", "window"],
        )?;
        let limit_gauge = GaugeVec::new(
            Opts::new("clawbutler_budget_limit_usd", "The budget's limit per window."),
            &["scope", "window"],
        )?;
        let warn_gauge = GaugeVec::new(
            Opts::new(
                "clawbutler_budget_warn_ratio",
                "The fraction of the limit at which the budget warns (0: never).",
            ),
            &["scope", "window"],
        )?;
        for g in [&spent_gauge, &open_gauge, &limit_gauge, &warn_gauge] {
            registry.register(Box::new(g.clone()))?;
        }
        let has_fleet = AtomicBool::new(list.iter().any(|b| b.config.fleet));
        let budgets = Budgets {
            has_fleet,
            fleet: OnceLock::new(),
            list: ArcSwap::from_pointee(list),
            ledger,
            clock,
            audit,
            spent_gauge,
            open_gauge,
            limit_gauge,
            warn_gauge,
        };
        for b in budgets.list.load().iter() {
            budgets.with_state(b, |_| ());
        }
        Ok(budgets)
    }

    /// Lock a budget's state after rolling it into the current window.
    fn with_state<T>(&self, b: &Budget, f: impl FnOnce(&mut State) -> T) -> T {
        let now = self.clock.now();
        let mut st = b.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = false;
        if now >= st.resets_at || st.window_key.is_empty() {
            let (key, resets_at) = window::current(b.window, b.tz, now);
            if key != st.window_key {
                closed = st.open;
                st.spent = self.ledger.spent(&b.id, &key);
                st.warned = self.ledger.warned(&b.id, &key);
                st.open = st.spent >= b.limit;
                st.window_key = key;
            }
            st.resets_at = resets_at;
        }
        let out = f(&mut st);
        self.publish(b, &st);
        drop(st);
        if closed {
            self.event(b, EventKind::Close, "window reset", "system");
        }
        out
    }

    fn publish(&self, b: &Budget, st: &State) {
        let labels = [b.scope_text.as_str(), b.window.as_str()];
        self.spent_gauge.with_label_values(&labels).set(usd(st.spent));
        self.open_gauge.with_label_values(&labels).set(if st.open { 1.0 } else { 0.0 });
        self.limit_gauge.with_label_values(&labels).set(usd(b.limit));
        self.warn_gauge.with_label_values(&labels).set(b.warn_at);
    }

    fn view(&self, b: &Budget) -> BudgetView {
        self.with_state(b, |st| BudgetView {
            id: b.id.clone(),
            scope: b.scope_text.clone(),
            window: b.window,
            limit_usd: usd(b.limit),
            spent_usd: usd(st.spent),
            reserved_usd: usd(st.reserved),
            remaining_usd: usd(b.limit.saturating_sub(st.spent)),
            warn_at: b.warn_at,
            timezone: b.tz.name().to_string(),
            open: st.open,
            window_key: st.window_key.clone(),
            resets_at: st.resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            source: b.source,
        })
    }

    /// Every budget's current state.
    pub fn list(&self) -> Vec<BudgetView> {
        self.list.load().iter().map(|b| self.view(b)).collect()
    }

    /// One budget's state.
    pub fn get(&self, id: &str) -> Option<BudgetView> {
        self.list.load().iter().find(|b| b.id == id).map(|b| self.view(b))
    }

    fn applicable(&self, call: &CallScope<'_>) -> Vec<Arc<Budget>> {
        self.list.load().iter().filter(|b| b.scope.matches(call)).cloned().collect()
    }

    /// The budgets that apply to a call, as policy input.
    pub fn snapshot(&self, call: &CallScope<'_>) -> Vec<decision::BudgetInput> {
        self.applicable(call)
            .iter()
            .map(|b| {
                let v = self.view(b);
                decision::BudgetInput {
                    id: v.id,
                    scope: v.scope,
                    window: b.window.as_str().to_string(),
                    spent_usd: v.spent_usd,
                    limit_usd: v.limit_usd,
                    remaining_usd: v.remaining_usd,
                }
            })
            .collect()
    }

    fn refusal(&self, b: &Budget, st: &State, needed: Option<u64>) -> Refusal {
        let now = self.clock.now();
        Refusal {
            budget_id: b.id.clone(),
            scope: b.scope_text.clone(),
            window: b.window,
            limit_usd: usd(b.limit),
            spent_usd: usd(st.spent),
            needed_usd: needed.map(usd),
            retry_after_s: (st.resets_at - now).num_seconds().max(1) as u64,
            fleet: None,
        }
    }

    /// The first open breaker that applies to a call, if any.
    pub fn check_open(&self, call: &CallScope<'_>) -> Option<Refusal> {
        for b in self.applicable(call) {
            if let Some(r) = self.with_state(&b, |st| st.open.then(|| self.refusal(&b, st, None))) {
                return Some(r);
            }
        }
        None
    }

    /// Whether any budget applies to a call.
    pub fn any_apply(&self, call: &CallScope<'_>) -> bool {
        self.list.load().iter().any(|b| b.scope.matches(call))
    }

    /// Reserve a call's worst-case cost against every budget that applies. All or nothing.
    pub fn reserve(self: &Arc<Self>, call: &CallScope<'_>, worst_case_usd: f64) -> Result<Reservation, Refusal> {
        let mut bs = self.applicable(call);
        // One lock order for everyone: no deadlock between concurrent multi-budget calls.
        bs.sort_by(|a, b| a.id.cmp(&b.id));
        let amount = to_nanos(worst_case_usd);
        let now = self.clock.now();
        let mut guards = Vec::with_capacity(bs.len());
        for b in &bs {
            let mut st = b.state.lock().unwrap_or_else(|p| p.into_inner());
            if now >= st.resets_at || st.window_key.is_empty() {
                drop(st);
                self.with_state(b, |_| ());
                st = b.state.lock().unwrap_or_else(|p| p.into_inner());
            }
            if st.open || st.spent.saturating_add(st.reserved).saturating_add(amount) > b.limit {
                let needed = (!st.open).then_some(amount);
                return Err(self.refusal(b, &st, needed));
            }
            guards.push(st);
        }
        for st in guards.iter_mut() {
            st.reserved += amount;
        }
        drop(guards);
        Ok(Reservation::new(self.clone(), bs, amount))
    }

    /// Replace a reservation with the amount charged (not capped: the real cost is what the
    /// upstream billed, whatever was reserved).
    pub(crate) fn settle(&self, budgets: &[Arc<Budget>], reserved: u64, charge: u64) {
        for b in budgets {
            let mut events = Vec::new();
            self.with_state(b, |st| {
                st.reserved = st.reserved.saturating_sub(reserved);
                if charge == 0 {
                    return;
                }
                st.spent = st.spent.saturating_add(charge);
                self.ledger.set_spent(&b.id, &st.window_key, st.spent);
                if !st.warned && b.warn_at > 0.0 && st.spent as f64 >= b.warn_at * b.limit as f64 {
                    st.warned = true;
                    self.ledger.set_warned(&b.id, &st.window_key);
                    events.push(EventKind::Warn);
                }
                if !st.open && st.spent >= b.limit {
                    st.open = true;
                    events.push(EventKind::Open);
                }
            });
            for e in events {
                let why = match e {
                    EventKind::Warn => format!("spend crossed {:.0}% of the limit", b.warn_at * 100.0),
                    _ => "limit reached".to_string(),
                };
                self.event(b, e, &why, "system");
            }
        }
    }

    /// Zero the current window's spend and close the breaker (operator action).
    pub fn reset(&self, id: &str, reason: &str, actor: &str) -> Result<BudgetView, BudgetError> {
        let b = self.find(id)?;
        let before = self.with_state(&b, |st| {
            let before = st.spent;
            st.spent = 0;
            st.open = false;
            self.ledger.set_spent(&b.id, &st.window_key, 0);
            before
        });
        self.event(&b, EventKind::Reset, &format!("{reason} (spend was ${:.4})", usd(before)), actor);
        Ok(self.view(&b))
    }

    fn store_list(&self, next: Vec<Arc<Budget>>) {
        self.has_fleet.store(next.iter().any(|b| b.config.fleet), Ordering::Relaxed);
        self.list.store(Arc::new(next));
    }

    fn find(&self, id: &str) -> Result<Arc<Budget>, BudgetError> {
        self.list.load().iter().find(|b| b.id == id).cloned().ok_or_else(|| BudgetError::NotFound(id.to_string()))
    }

    /// Create or replace an API-defined budget (spend in the current window is kept).
    pub fn upsert(&self, mut c: BudgetConfig, actor: &str) -> Result<BudgetView, BudgetError> {
        let fresh = Budget::from_config(&c, Source::Api)?;
        c.id = Some(fresh.id.clone());
        let cur = self.list.load_full();
        if let Some(old) = cur.iter().find(|b| b.id == fresh.id) {
            if old.source == Source::Config {
                return Err(BudgetError::ConfigManaged(fresh.id));
            }
        }
        let bytes =
            serde_json::to_vec(&c).map_err(|e| BudgetError::Invalid { id: fresh.id.clone(), msg: e.to_string() })?;
        self.ledger.defs.insert(fresh.id.as_bytes(), bytes)?;
        self.ledger.defs.flush()?;
        let fresh = Arc::new(fresh);
        let mut next: Vec<Arc<Budget>> = cur.iter().filter(|b| b.id != fresh.id).cloned().collect();
        next.push(fresh.clone());
        self.store_list(next);
        self.audit_config(&fresh, audit::Outcome::Upsert, actor);
        Ok(self.view(&fresh))
    }

    /// Remove an API-defined budget.
    pub fn delete(&self, id: &str, actor: &str) -> Result<(), BudgetError> {
        let b = self.find(id)?;
        if b.source == Source::Config {
            return Err(BudgetError::ConfigManaged(id.to_string()));
        }
        self.ledger.defs.remove(id.as_bytes())?;
        self.ledger.defs.flush()?;
        let next: Vec<Arc<Budget>> = self.list.load().iter().filter(|x| x.id != id).cloned().collect();
        self.store_list(next);
        let labels = [b.scope_text.as_str(), b.window.as_str()];
        let _ = self.spent_gauge.remove_label_values(&labels);
        let _ = self.open_gauge.remove_label_values(&labels);
        let _ = self.limit_gauge.remove_label_values(&labels);
        let _ = self.warn_gauge.remove_label_values(&labels);
        self.audit_config(&b, audit::Outcome::Delete, actor);
        Ok(())
    }

    /// Write pending spend to the store and flush (shutdown).
    pub fn sync(&self) -> Result<(), BudgetError> {
        Ok(self.ledger.sync()?)
    }

    /// Write pending spend, flush, and stop the ledger's flusher thread, so the store is
    /// released when the sidecar's other handles go (shutdown).
    pub fn close(&self) -> Result<(), BudgetError> {
        Ok(self.ledger.close()?)
    }

    /// Roll every budget into its current window (closing breakers at reset) and refresh
    /// the gauges; the app calls this periodically.
    pub fn tick(&self) {
        for b in self.list.load().iter() {
            self.with_state(b, |_| ());
        }
    }

    fn event(&self, b: &Budget, kind: EventKind, reason: &str, actor: &str) {
        let v = self.view_unlocked(b);
        let ev = audit::AuditEvent {
            rule: Some(format!("budget.{}", kind.as_str())),
            reason: Some(reason.to_string()),
            actor: Some(actor.to_string()),
            outcome: Some(kind.outcome()),
            subject: serde_json::json!({"budget": b.id, "scope": b.scope_text, "window": b.window.as_str()}),
            details: serde_json::to_value(v).unwrap_or_default(),
            risk: Some(match kind {
                EventKind::Open => decision::Risk::High,
                EventKind::Warn => decision::Risk::Medium,
                _ => decision::Risk::Low,
            }),
            ..audit::AuditEvent::new(audit::RecordKind::Budget)
        };
        if let Err(e) = self.audit.append(ev) {
            tracing::error!(error = %e, "audit append failed for a budget event");
        }
        tracing::info!(budget = %b.id, event = kind.as_str(), reason, "budget event");
    }

    fn view_unlocked(&self, b: &Budget) -> serde_json::Value {
        let st = b.state.lock().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({
            "limit_usd": usd(b.limit), "spent_usd": usd(st.spent), "window_key": st.window_key,
            "open": st.open, "resets_at": st.resets_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }

    fn audit_config(&self, b: &Budget, what: audit::Outcome, actor: &str) {
        let ev = audit::AuditEvent {
            rule: Some(format!("budget.{}", what.as_str())),
            actor: Some(actor.to_string()),
            outcome: Some(what),
            subject: serde_json::json!({"budget": b.id, "scope": b.scope_text, "window": b.window.as_str()}),
            details: serde_json::to_value(&b.config).unwrap_or_default(),
            ..audit::AuditEvent::new(audit::RecordKind::Budget)
        };
        if let Err(e) = self.audit.append(ev) {
            tracing::error!(error = %e, "audit append failed for a budget change");
        }
    }
}

impl Drop for Budgets {
    fn drop(&mut self) {
        if let Err(e) = self.ledger.sync() {
            tracing::error!(error = %e, "budget ledger sync at drop failed");
        }
    }
}

#[cfg(test)]
mod tests;

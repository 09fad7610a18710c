//! The fleet seam with a recording lease pool: which budgets reach it, how its holds end
//! (real charge, release on a local refusal, full charge when dropped), and the refusals.

use std::sync::{Arc, Mutex};

use super::*;
use crate::budget::{BudgetConfig, Budgets, Charge, Window};

#[derive(Default)]
struct Link {
    asked: Mutex<Vec<(Vec<FleetShare>, u64)>>,
    ended: Arc<Mutex<Vec<u64>>>,
    deny: Mutex<Option<FleetDenied>>,
}

struct End(Arc<Mutex<Vec<u64>>>);

impl HoldEnd for End {
    fn end(self: Box<Self>, charge_nanos: u64) {
        self.0.lock().unwrap().push(charge_nanos);
    }
}

impl FleetLink for Link {
    fn acquire(&self, shares: Vec<FleetShare>, amount_nanos: u64) -> AcquireFut<'_> {
        self.asked.lock().unwrap().push((shares, amount_nanos));
        let r = match self.deny.lock().unwrap().clone() {
            Some(d) => Err(d),
            None => Ok(FleetHold::new(Box::new(End(self.ended.clone())), amount_nanos)),
        };
        Box::pin(async move { r })
    }
}

fn cfg(scope: &str, limit: f64, fleet: bool) -> BudgetConfig {
    BudgetConfig {
        id: None,
        scope: scope.into(),
        window: Window::Daily,
        limit_usd: limit,
        warn_at: None,
        timezone: None,
        fleet,
    }
}

struct Fx {
    _dir: tempfile::TempDir,
    budgets: Arc<Budgets>,
}

fn open(list: &[BudgetConfig]) -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let db = storage::Store::open(&dir.path().join("state")).unwrap();
    let reg = prometheus::Registry::new();
    let audit = Arc::new(audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &reg).unwrap());
    Fx { budgets: Arc::new(Budgets::open(&db, list, audit, &reg).unwrap()), _dir: dir }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

const MAIN: CallScope<'static> = CallScope { agent: "main", model: "m", upstream: "u", mcp_server: "" };
const OPS: CallScope<'static> = CallScope { agent: "ops", model: "m", upstream: "u", mcp_server: "" };

#[test]
fn only_fleet_budgets_reach_the_link_and_the_hold_ends_with_the_real_charge() {
    let fx = open(&[cfg("agent:main", 1.0, true), cfg("global", 1.0, false)]);
    let b = &fx.budgets;
    let link = Arc::new(Link::default());
    b.set_fleet(link.clone());
    assert!(b.fleet_applies(&MAIN));
    assert!(!b.fleet_applies(&OPS), "ops is only under the local global budget");

    let res = run(b.reserve_fleet(&MAIN, 0.01)).unwrap();
    let asked = link.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    let (shares, amount) = &asked[0];
    assert_eq!(*amount, 10_000_000);
    assert_eq!(shares.len(), 1, "the local global budget is not a fleet share");
    assert!(shares[0].central_id.starts_with("agent:main@daily/"), "{shares:?}");
    assert_eq!(shares[0].limit_nanos, 1_000_000_000);
    assert_eq!(b.get("global@daily").unwrap().reserved_usd, 0.01, "the local budgets reserve too");
    res.settle(Charge::Usd(0.004));
    assert_eq!(*link.ended.lock().unwrap(), [4_000_000]);

    // Dropped unsettled: charged in full, like the reservation.
    drop(run(b.reserve_fleet(&MAIN, 0.01)).unwrap());
    assert_eq!(link.ended.lock().unwrap()[1], 10_000_000);
}

#[test]
fn a_local_refusal_releases_the_fleet_hold_and_fleet_refusals_keep_the_openclaw_form() {
    let fx = open(&[cfg("agent:main", 1.0, true), cfg("global", 0.005, false)]);
    let b = &fx.budgets;
    // Without [fleet] a fleet budget cannot be enforced: refused.
    let r = run(b.reserve_fleet(&MAIN, 0.001)).unwrap_err();
    assert_eq!(r.fleet, Some(FleetCause::NoFleet));
    assert!(r.message().contains("daily limit reached for agent:main") && r.message().contains("[fleet]"));

    let link = Arc::new(Link::default());
    b.set_fleet(link.clone());
    let r = run(b.reserve_fleet(&MAIN, 0.01)).unwrap_err();
    assert_eq!(r.budget_id, "global@daily", "the local budget refused");
    assert_eq!(*link.ended.lock().unwrap(), [0], "the fleet hold was released unused");

    *link.deny.lock().unwrap() = Some(FleetDenied::Unreachable);
    let r = run(b.reserve_fleet(&MAIN, 0.001)).unwrap_err();
    assert!(r.message().starts_with("daily limit reached for agent:main") && r.message().contains("does not answer"));
    assert_eq!(b.get("global@daily").unwrap().reserved_usd, 0.0, "nothing reserved locally");

    let central_id = link.asked.lock().unwrap()[0].0[0].central_id.clone();
    *link.deny.lock().unwrap() =
        Some(FleetDenied::Full { central_id, limit_nanos: 1_000_000_000, used_nanos: 999_500_000 });
    let r = run(b.reserve_fleet(&MAIN, 0.001)).unwrap_err();
    assert_eq!((r.budget_id.as_str(), r.fleet), ("agent:main@daily", Some(FleetCause::Full)));
    assert!(r.message().contains("$0.0005 of $1.00 remains fleet-wide"), "{}", r.message());
}

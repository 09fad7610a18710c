//! The fleet database's primary SIGKILLed under load in a 3-node synchronous-quorum cluster
//! (`ANY 1 (n2, n3)`), the standby furthest ahead promoted: sidecars reconnect through a
//! multi-host `database_url` (`target_session_attrs=read-write`), no acknowledged lease take
//! (reservation) or fleet kill decision is lost, and model calls on a fleet budget are not
//! refused while the sidecars' leases last.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::fleet::budget::{self, Ask, Sized};
use ::fleet::{Connector, FleetSettings};
use serde_json::json;
use testkit::http::post_json;
use testkit::postgres::replication::Replicated;
use testkit::rig::Rig;

use super::budget_path::{body, fleet_budget, tokens_per_call, PRICES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_sigkilled_and_a_standby_promoted_loses_no_acknowledged_reservation_or_decision() {
    let Some(mut db) = Replicated::start_or_skip("fleet failover", &["n2", "n3"]) else { return };
    let url = db.url();
    let k = tokens_per_call().await;
    let tables = format!("{PRICES}{}", fleet_budget("main", 1_000_000.0));
    let fleet = |id: &str| {
        format!("[fleet]\ndatabase_url = \"{url}\"\nsidecar_id = \"{id}\"\ntimeout_ms = 1000\nlease_max_calls = 1000\n")
    };
    let a = Rig::builder().table(&fleet("sc-a")).table(&tables).start().await;
    let b = Rig::builder().table(&fleet("sc-b")).table(&tables).start().await;
    let stop = Arc::new(AtomicBool::new(false));

    // Reservations: lease takes straight through the fleet crate, each id kept once acknowledged.
    let s = FleetSettings { database_url: url.clone(), sidecar_id: "taker".into(), ..Default::default() };
    let pool = Connector::new(&s).unwrap().pool(&s).unwrap();
    let acked_takes = Arc::new(Mutex::new(Vec::<String>::new()));
    let takers: Vec<_> = (0..4)
        .map(|t| {
            let (pool, stop, acked) = (pool.clone(), stop.clone(), acked_takes.clone());
            tokio::spawn(async move {
                let budgets = vec![("failover/1".to_string(), i64::MAX / 4)];
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("t{t}-{n}");
                    n += 1;
                    let ask = Ask {
                        lease_id: &id,
                        sidecar_id: "taker",
                        budgets: &budgets,
                        min_micro: 1,
                        max_micro: 1,
                        parts: 1,
                        live_ms: 10_000,
                        ttl_ms: 600_000,
                    };
                    let r = tokio::time::timeout(Duration::from_secs(2), budget::take_sized(&pool, &ask)).await;
                    match r {
                        Ok(Ok(Sized::Granted(_))) => acked.lock().unwrap().push(id),
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            })
        })
        .collect();
    // Decisions: fleet kills and recovers of agent `ops` through B's API; acknowledged epochs.
    let acked_epoch = Arc::new(Mutex::new(0i64));
    let decider = {
        let (b_ctl, stop, acked) = (b.control(""), stop.clone(), acked_epoch.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let (path, body) = if i % 2 == 0 {
                    ("/api/v1/fleet/kill", json!({"agent": "ops", "reason": format!("k{i}")}))
                } else {
                    ("/api/v1/fleet/recover", json!({"agent": "ops", "reason": format!("r{i}"), "confirm": true}))
                };
                i += 1;
                let r = post_json(&format!("{b_ctl}{path}"), &testkit::rig::bearer(testkit::rig::ADMIN), &body).await;
                if r.status == 200 {
                    let e = r.json()["epoch"].as_i64().unwrap();
                    let mut a = acked.lock().unwrap();
                    *a = (*a).max(e);
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        })
    };
    // Calls on a fleet budget through both sidecars.
    let callers: Vec<_> = [a.url("/a/main/fake/v1/chat/completions"), b.url("/a/main/fake/v1/chat/completions")]
        .into_iter()
        .map(|u| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let r = post_json(&u, &[], &body(k)).await;
                    if r.status == 200 {
                        ok += 1
                    } else {
                        eprintln!("refused: {} {}", r.status, r.text());
                        refused += 1
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (ok, refused)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Load has run before the crash: at least one take and the kill acknowledged (polled, as
    // the kill commits through a synchronous standby on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    while (acked_takes.lock().unwrap().is_empty() || *acked_epoch.lock().unwrap() == 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = acked_takes.lock().unwrap().len();
    assert!(before > 0 && *acked_epoch.lock().unwrap() > 0, "load runs before the crash");
    // The HA manager's part, done here by hand: crash, promote the standby furthest ahead,
    // point the other at it (psql and pg_ctl block: off the runtime's other tasks).
    let crashed = Instant::now();
    let promoted = tokio::task::block_in_place(|| {
        db.crash_primary();
        let p = db.fail_over();
        db.wait_quorum(&db.standbys[p].1, 1);
        p
    });
    let promoted_after = crashed.elapsed();
    let new = &db.standbys[promoted].1;
    // Load until reservations are acknowledged again, then a little longer.
    let resumed = {
        let t0 = Instant::now();
        loop {
            if acked_takes.lock().unwrap().len() > before + 50 {
                break crashed.elapsed();
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "reservations never resumed after the failover");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for t in takers {
        t.await.unwrap();
    }
    decider.await.unwrap();
    let (mut ok, mut refused) = (0, 0);
    for c in callers {
        let (o, r) = c.await.unwrap();
        ok += o;
        refused += r;
    }

    let acked: Vec<String> = acked_takes.lock().unwrap().clone();
    let stored: HashSet<String> =
        new.psql("SELECT lease_id FROM fleet_lease WHERE sidecar_id = 'taker'").lines().map(str::to_string).collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    let epoch: i64 = new.psql("SELECT epoch FROM fleet_control WHERE scope = 'agent:ops'").trim().parse().unwrap();
    let acked_epoch = *acked_epoch.lock().unwrap();
    println!(
        "FLEET FAILOVER: promoted {} {promoted_after:?} after the crash; reservations acknowledged again \
         {resumed:?} after it; {} acknowledged takes, {} lost; kill epoch acknowledged {acked_epoch}, stored {epoch}; \
         calls {ok} served, {refused} refused",
        db.standbys[promoted].0,
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged reservations lost: {lost:?}");
    assert!(epoch >= acked_epoch, "an acknowledged kill decision was lost: stored {epoch} < {acked_epoch}");
    assert_eq!(refused, 0, "calls refused while the sidecars' leases lasted");
    assert!(ok > 0);
    for r in [&a, &b] {
        let m = r.metrics().await;
        assert!(m.contains("clawbutler_fleet_connected 1"), "the sidecar reconnected: {m}");
    }
}

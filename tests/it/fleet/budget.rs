//! Fleet budgets, central half: racing lease takes from three pools (three sidecars' worth of
//! connections) on one budget reserve exactly its limit, retries with the same lease id change
//! nothing, and settling returns the holds and records the spend once.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use ::fleet::budget::{self, Take};
use ::fleet::{Connector, FleetSettings};
use testkit::postgres::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_lease_takes_from_three_sidecars_reserve_exactly_the_limit() {
    let Some(pg) = PgCluster::start_or_skip("fleet budget race") else { return };
    let s = FleetSettings { database_url: pg.url(), sidecar_id: "x".into(), pool_size: 16, ..Default::default() };
    let pools: Vec<_> = (0..3).map(|_| Connector::new(&s).unwrap().pool(&s).unwrap()).collect();
    ::fleet::migrate(&pools[0]).await.unwrap();
    const LIMIT: i64 = 500;
    budget::define(&pools[0], "team:payments@daily", LIMIT).await.unwrap();
    let ids = vec!["team:payments@daily".to_string()];

    let granted = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for (sc, pool) in pools.iter().enumerate() {
        for t in 0..16 {
            let (pool, ids, granted) = (pool.clone(), ids.clone(), granted.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                for i in 0..15 {
                    let lease = format!("sc{sc}-t{t}-{i}");
                    if budget::take(&pool, &lease, &format!("sc{sc}"), &ids, 1, 60_000).await.unwrap() == Take::Granted
                    {
                        granted.fetch_add(1, Ordering::SeqCst);
                        // A retry after an unknown outcome: the same id, no second hold.
                        assert_eq!(budget::take(&pool, &lease, "x", &ids, 1, 60_000).await.unwrap(), Take::Granted);
                        mine.push(lease);
                    }
                }
                mine
            }));
        }
    }
    let mut leases = Vec::new();
    for t in tasks {
        leases.extend(t.await.unwrap());
    }
    let (limit, spent, held) = budget::totals(&pools[0], &ids[0]).await.unwrap().unwrap();
    println!("FLEET BUDGET RACE: 720 takes of 1 on limit {limit} from 3 pools x 16 tasks: granted {}", leases.len());
    assert_eq!(leases.len() as i64, LIMIT, "exactly the limit is granted");
    assert_eq!((spent, held), (0, LIMIT));
    assert_eq!(granted.load(Ordering::SeqCst), LIMIT);

    for l in &leases {
        assert!(budget::settle(&pools[1], l, 1).await.unwrap());
        assert!(!budget::settle(&pools[2], l, 1).await.unwrap(), "a repeated settle changes nothing");
    }
    assert_eq!(
        budget::totals(&pools[0], &ids[0]).await.unwrap().unwrap(),
        (LIMIT, LIMIT, 0),
        "spend == limit, 0 overshoot"
    );
    assert_eq!(budget::take(&pools[0], "late", "x", &ids, 1, 60_000).await.unwrap(), Take::Refused);
}

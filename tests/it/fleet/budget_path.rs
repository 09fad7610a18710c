//! Fleet budgets on the call path: three sidecars on one PostgreSQL enforce one `fleet = true`
//! budget with leases (exactly N of 1,000 concurrent calls reach the upstreams, spend ==
//! limit, 0 overshoot); a sidecar cut off from the database serves from its lease (never
//! beyond it) for at most the lease TTL, then refuses in the 429 form until the cut ends (2x
//! the TTL); an expired lease is charged in full by the sweeper and refunded once by a late
//! settle. The measurements (central takes/s, the call path with fleet mode on vs off) are in
//! `benches/fleet_load.rs`.

use std::time::{Duration, Instant};

use ::fleet::budget::{self, Ask, Sized};
use ::fleet::{Connector, FleetSettings};
use serde_json::{json, Value};
use testkit::http::{post_json, HttpResponse};
use testkit::postgres::PgCluster;
use testkit::rig::{Rig, RigBuilder};

/// Prices so a call's cost equals its worst case exactly: input free, $0.001 per output
/// token, and requests capped at exactly the tokens the scripted model answers with.
pub(super) const PRICES: &str = "[prices.\"metered-model\"]\ninput = 0.0\noutput = 1000.0\n";

pub(super) fn body(max_tokens: u64) -> Value {
    json!({"model": "metered-model", "max_tokens": max_tokens, "stream": false,
           "messages": [{"role": "user", "content": "fleet race"}]})
}

/// Output tokens the scripted model answers with (the tokens one call costs).
pub(super) async fn tokens_per_call() -> u64 {
    let probe = Rig::start(PRICES).await;
    let v = post_json(&probe.direct("/v1/chat/completions"), &[], &body(100)).await.json();
    v["usage"]["completion_tokens"].as_u64().unwrap()
}

pub(super) fn fleet_budget(agent: &str, limit_usd: f64) -> String {
    format!("[[budgets]]\nscope = \"agent:{agent}\"\nwindow = \"daily\"\nlimit_usd = {limit_usd}\nfleet = true\n")
}

async fn send(rig: &Rig, agent: &str, k: u64) -> HttpResponse {
    post_json(&rig.url(&format!("/a/{agent}/fake/v1/chat/completions")), &[], &body(k)).await
}

pub(super) fn assert_budget_refusal(r: &HttpResponse, also: &str) {
    assert_eq!(r.status, 429, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["type"], "budget_exceeded", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.contains("daily limit reached for agent:main") && msg.contains(also), "{msg}");
    assert!(r.header("retry-after").is_some());
}

/// `(limit, spent, held)` in micro-USD of every central row of a budget id prefix, summed.
pub(super) fn central(pg: &PgCluster, id: &str) -> (i64, i64, i64) {
    let out = pg.psql(&format!(
        "SELECT coalesce(sum(limit_micro),0), coalesce(sum(spent_micro),0), coalesce(sum(held_micro),0) \
         FROM fleet_budget WHERE budget_id LIKE '{id}/%'"
    ));
    let v: Vec<i64> = out.trim().split('|').map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_admit_exactly_n_of_a_thousand_calls_on_a_fleet_budget() {
    let Some(pg) = PgCluster::start_or_skip("fleet budget exactly N") else { return };
    let k = tokens_per_call().await;
    let n = 60u64;
    let limit_micro = (n * k * 1000) as i64;
    let tables = format!("{PRICES}{}", fleet_budget("main", n as f64 * k as f64 * 0.001));
    let rigs = pg.sidecars(3, "", &tables).await;

    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let url = rigs[i % 3].url("/a/main/fake/v1/chat/completions");
            tokio::spawn(async move { post_json(&url, &[], &body(k)).await })
        })
        .collect();
    let (mut ok, mut refused) = (0u64, 0u64);
    for t in tasks {
        let r = t.await.unwrap();
        if r.status == 200 {
            ok += 1;
        } else {
            assert_budget_refusal(&r, "");
            refused += 1;
        }
    }
    let reached: u64 = rigs.iter().map(|r| r.up.request_count() as u64).sum();
    let per: Vec<usize> = rigs.iter().map(|r| r.up.request_count()).collect();
    println!("FLEET BUDGET EXACTLY N: n {n}, admitted {ok}, refused {refused}, upstream calls per sidecar {per:?}");
    assert_eq!(ok, n, "exactly N calls fit the fleet budget");
    assert_eq!(reached, n, "a refused call reached an upstream");
    assert_eq!(refused, 1000 - n);

    // Every lease goes back once its calls ended: spend == limit, nothing held, 0 overshoot.
    let t0 = Instant::now();
    loop {
        let (limit, spent, held) = central(&pg, "agent:main@daily");
        assert!(spent + held <= limit, "overshoot: spent {spent} + held {held} > limit {limit}");
        if held == 0 {
            assert_eq!((limit, spent), (limit_micro, limit_micro), "spend == limit after settling");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "leases never went back: held {held}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let states = pg.psql("SELECT state, count(*) FROM fleet_lease GROUP BY state ORDER BY state");
    assert!(!states.contains("open") && !states.contains("expired"), "{states}");
    let mut refused_takes = 0;
    for r in &rigs {
        let mut m = r.metrics().await;
        for _ in 0..40 {
            if m.contains("clawbutler_fleet_lease_settles_pending 0") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            m = r.metrics().await;
        }
        assert!(m.contains("clawbutler_fleet_lease_settles_pending 0"), "{m}");
        refused_takes +=
            m.lines().filter(|l| l.starts_with("clawbutler_fleet_lease_takes_total{outcome=\"refused\"}")).count();
    }
    assert!(refused_takes > 0, "the fleet ran out: takes were refused");
    // A next call anywhere is refused.
    assert_budget_refusal(&send(&rigs[1], "main", k).await, "");
}

async fn fleet_sidecar(pg: &PgCluster, id: &str, extra: &str, tables: &str) -> Rig {
    let b: RigBuilder = Rig::builder().table(&pg.fleet_table(id, extra)).table(tables);
    b.start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_cut_off_from_the_database_serves_within_its_lease_then_refuses() {
    let Some(pg) = PgCluster::start_or_skip("fleet budget cut off") else { return };
    let k = tokens_per_call().await;
    let tables = format!("{PRICES}{}", fleet_budget("main", 1000.0 * k as f64 * 0.001));
    const TTL: Duration = Duration::from_millis(6_000);
    // A: leases of at most 5 calls (the room bound); B: leases far larger than the calls it
    // can make within the TTL (the time bound).
    let a = fleet_sidecar(&pg, "sc-a", "lease_max_calls = 5\nlease_ttl_ms = 6000\ntimeout_ms = 500", &tables).await;
    let b = fleet_sidecar(&pg, "sc-b", "lease_max_calls = 1000\nlease_ttl_ms = 6000\ntimeout_ms = 500", &tables).await;
    assert_eq!(send(&a, "main", k).await.status, 200);
    assert_eq!(send(&b, "main", k).await.status, 200);
    // B's lease was taken (its take sent) before this instant: it admits nothing after
    // `taken + TTL`.
    let taken = Instant::now();
    let (_, _, held) = central(&pg, "agent:main@daily");
    let b_room = held / (k as i64 * 1000) - 5 - 1; // B's lease, in calls, after its first
    assert!(b_room >= 40, "B's lease holds {b_room} more calls");

    drop(pg); // the database goes away: its postmaster is stopped
    let cut = Instant::now();

    // A serves exactly the 4 calls left in its lease, then fails closed.
    let mut served = 0;
    for _ in 0..10 {
        let r = send(&a, "main", k).await;
        if r.status == 200 {
            served += 1;
        } else {
            assert_budget_refusal(&r, "fleet database does not answer");
        }
    }
    assert_eq!(served, 4, "A serves what its lease holds, never more");
    assert_eq!(a.up.request_count(), 5, "a refused call reached the upstream");
    let m = a.metrics().await;
    assert!(m.contains("clawbutler_fleet_lease_takes_total{outcome=\"failed\"}"), "{m}");
    assert!(m.contains("clawbutler_fleet_lease_takes_total{outcome=\"granted\"} 1"), "{m}");

    // B serves from its lease while it lives, then refuses within the TTL (+ one timeout).
    let mut last_ok = None;
    loop {
        let start = taken.elapsed();
        let r = send(&b, "main", k).await;
        if r.status == 200 {
            last_ok = Some(start);
            assert!(start < TTL, "admitted after the lease TTL: sent at {start:?}");
        } else {
            assert_budget_refusal(&r, "fleet database does not answer");
            break;
        }
        assert!(cut.elapsed() < TTL + Duration::from_secs(2), "still serving past the lease TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_at = taken.elapsed();
    println!("FLEET BUDGET CUT OFF: TTL {TTL:?}; B's last call served was sent at {last_ok:?}, first refusal at {refused_at:?}");
    // An idle lease goes back in the last quarter of its life: B serves until then at least.
    assert!(last_ok.is_some_and(|t| t > TTL / 2), "B served from its lease after the cut");
    assert!(refused_at < TTL + Duration::from_millis(1_500), "refused only at {refused_at:?}");
    // Fail closed for as long as the cut lasts: 2x the lease TTL, nothing more reaches an
    // upstream. Past `heartbeat_ttl_ms` (10 s) the kill switch's `refuse_all` refuses first.
    let before = (a.up.request_count(), b.up.request_count());
    while cut.elapsed() < 2 * TTL {
        for rig in [&a, &b] {
            let r = send(rig, "main", k).await;
            if r.status == 429 {
                assert_budget_refusal(&r, "fleet database does not answer");
            } else {
                assert!(r.text().contains("cannot be read"), "{}", r.text());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!((a.up.request_count(), b.up.request_count()), before, "a call went out while cut off");
}

#[tokio::test]
async fn an_expired_lease_is_charged_in_full_and_refunded_once_on_a_late_settle() {
    let Some(pg) = PgCluster::start_or_skip("fleet lease expiry") else { return };
    let s = FleetSettings { database_url: pg.url(), sidecar_id: "x".into(), ..Default::default() };
    let pool = Connector::new(&s).unwrap().pool(&s).unwrap();
    ::fleet::migrate(&pool).await.unwrap();
    let budgets = vec![("agent:main@daily/2026-12-03".to_string(), 1_000)];
    let ask = |id: &'static str, ttl_ms| Ask {
        lease_id: id,
        sidecar_id: "sc-a",
        budgets: &budgets,
        min_micro: 10,
        max_micro: 300,
        parts: 1,
        live_ms: 10_000,
        ttl_ms,
    };
    // Sized to the headroom (one live sidecar at most, 1 part), capped at max.
    assert_eq!(budget::take_sized(&pool, &ask("l1", 100)).await.unwrap(), Sized::Granted(300));
    assert_eq!(budget::take_sized(&pool, &ask("l2", 60_000)).await.unwrap(), Sized::Granted(300));
    assert_eq!(budget::take_sized(&pool, &ask("l1", 100)).await.unwrap(), Sized::Granted(300), "a retry is a no-op");
    assert_eq!(budget::totals(&pool, &budgets[0].0).await.unwrap(), Some((1_000, 0, 600)));

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(budget::sweep(&pool).await.unwrap(), 1, "l1 expired: charged in full");
    assert_eq!(budget::sweep(&pool).await.unwrap(), 0, "once");
    assert_eq!(budget::totals(&pool, &budgets[0].0).await.unwrap(), Some((1_000, 300, 300)));
    assert_eq!(budget::take_sized(&pool, &ask("l1", 100)).await.unwrap(), Sized::Ended, "a stale retry grants nothing");

    // The late settle refunds what l1 did not use, once.
    assert!(budget::settle(&pool, "l1", 120).await.unwrap());
    assert!(!budget::settle(&pool, "l1", 120).await.unwrap());
    assert_eq!(budget::totals(&pool, &budgets[0].0).await.unwrap(), Some((1_000, 120, 300)));
    assert!(budget::settle(&pool, "l2", 300).await.unwrap());
    assert_eq!(budget::totals(&pool, &budgets[0].0).await.unwrap(), Some((1_000, 420, 0)));

    // Near the limit a lease is exactly the call's worst case; past it, refused.
    let small = |id: &'static str| Ask { min_micro: 250, max_micro: 25_000, parts: 4, ..ask(id, 60_000) };
    assert_eq!(budget::take_sized(&pool, &small("l3")).await.unwrap(), Sized::Granted(250));
    assert_eq!(budget::take_sized(&pool, &small("l4")).await.unwrap(), Sized::Granted(250));
    let refused = budget::take_sized(&pool, &small("l5")).await.unwrap();
    assert_eq!(refused, Sized::Refused { budget_id: budgets[0].0.clone(), limit: 1_000, used: 920 });
}

#[test]
fn a_fleet_budget_without_fleet_mode_is_refused_at_start() {
    let toml = format!("{}{PRICES}", fleet_budget("main", 1.0));
    let err = clawbutler::config::Config::from_toml_str(&toml).and_then(|c| c.validate().map(|_| c));
    let Err(e) = err else { panic!("fleet = true without [fleet] must be refused") };
    let e = e.to_string();
    assert!(e.contains("budgets.fleet") && e.contains("[fleet]"), "{e}");
}

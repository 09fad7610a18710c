//! A network partition between a sidecar and the fleet database, made with the test kit's
//! black-hole relay (`testkit::blackhole`): unlike a stopped postmaster, nothing answers and
//! nothing closes, so every query hangs until the sidecar's own `timeout_ms`. The sidecar must
//! serve only what its lease holds, answer every call promptly (a refusal, never a hang), let
//! nothing through while cut off, and come back by itself when the path heals.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use testkit::blackhole::Blackhole;
use testkit::http::{post_json, HttpResponse};
use testkit::postgres::PgCluster;
use testkit::rig::Rig;

use super::budget_path::{assert_budget_refusal, body, central, fleet_budget, tokens_per_call, PRICES};

async fn send(rig: &Rig, k: u64) -> (HttpResponse, Duration) {
    let t0 = Instant::now();
    let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &body(k)).await;
    (r, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_database_path_fails_closed_promptly_and_heals_by_itself() {
    let Some(pg) = PgCluster::start_or_skip("fleet partition") else { return };
    let k = tokens_per_call().await;
    let hole = Blackhole::start(SocketAddr::from(([127, 0, 0, 1], pg.port))).await;
    let limit_calls = 100;
    let tables = format!("{PRICES}{}", fleet_budget("main", limit_calls as f64 * k as f64 * 0.001));
    let fleet = format!(
        "[fleet]\ndatabase_url = \"host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=disable\"\n\
         sidecar_id = \"sc-a\"\nlease_max_calls = 5\nlease_ttl_ms = 4000\ntimeout_ms = 500\n\
         heartbeat_ms = 200\nheartbeat_ttl_ms = 3000\npoll_ms = 300\n",
        hole.addr.port()
    );
    let a = Rig::builder().table(&fleet).table(&tables).start().await;
    assert_eq!(send(&a, k).await.0.status, 200);

    hole.stop_forwarding();
    let cut = Instant::now();
    // Within its lease's life the sidecar serves the 4 calls its lease has left, no more; every
    // answer comes within one database timeout (plus a margin for a loaded machine).
    let mut served = 0;
    let mut slowest = Duration::ZERO;
    while cut.elapsed() < Duration::from_secs(8) {
        let before = a.up.request_count();
        let (r, took) = send(&a, k).await;
        slowest = slowest.max(took);
        if a.up.request_count() > before {
            assert_eq!(r.status, 200, "{}", r.text());
            served += 1;
        } else if r.status == 429 {
            assert_budget_refusal(&r, "fleet database does not answer");
        } else {
            // Past `heartbeat_ttl_ms` without reading the fleet's kill flags, `refuse_all`
            // answers in OpenClaw's friendly form (a 200 whose text says why).
            assert!(r.text().contains("cannot be read"), "{}: {}", r.status, r.text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = a.metrics().await;
    let takes: Vec<&str> = m.lines().filter(|l| l.starts_with("clawbutler_fleet_lease")).collect();
    assert_eq!(served, 4, "served beyond its lease while cut off; {takes:#?}");
    assert_eq!(a.up.request_count(), 5, "a refused call reached the upstream");
    assert!(slowest < Duration::from_secs(5), "a call hung behind the black hole for {slowest:?}");

    // The path heals: the pool's connections, held open by the relay, flow again or are
    // replaced, and the sidecar serves without a restart.
    hole.resume();
    let healed = Instant::now();
    let took = testkit::wait::until("a call served after the path healed", Duration::from_secs(30), || async {
        send(&a, k).await.0.status == 200
    })
    .await;
    println!("FLEET PARTITION: slowest answer while cut off {slowest:?}; served again {took:?} after the path healed");
    assert!(healed.elapsed() < Duration::from_secs(30));
    let (limit, spent, held) = central(&pg, "agent:main@daily");
    assert!(spent + held <= limit, "spent {spent} + held {held} > limit {limit}");
}

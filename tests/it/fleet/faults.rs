//! Fleet faults with the real `clawbutler serve` binary: a sidecar SIGKILLed while holding a
//! fleet-budget lease (with a call in flight). Its lease expires and another sidecar's
//! sweeper charges it in full; the restarted sidecar settles it from its lease journal and the
//! unused part is refunded exactly once (a second restart refunds nothing); the fleet then
//! admits exactly the calls that fit: 0 overshoot, spend never above the limit.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::http::post_json;
use testkit::postgres::PgCluster;
use testkit::rig::Rig;
use testkit::upstream::ScriptedUpstream;
use testkit::wait;

use super::budget_path::{assert_budget_refusal, body, central, fleet_budget, tokens_per_call, PRICES};
use crate::hardening_money::crash::Binary;

const BUDGET: &str = "agent:main@daily";

/// The state of every lease of `sidecar`, oldest first.
fn lease_states(pg: &PgCluster, sidecar: &str) -> Vec<String> {
    let out = pg.psql(&format!("SELECT state FROM fleet_lease WHERE sidecar_id = '{sidecar}' ORDER BY expires_at"));
    out.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_sigkilled_holding_a_lease_is_charged_at_expiry_and_refunded_once_on_restart() {
    let Some(pg) = PgCluster::start_or_skip("fleet SIGKILL with a lease") else { return };
    let k = tokens_per_call().await;
    let call_micro = k as i64 * 1000;
    let n = 40i64; // the budget, in calls
    let limit = n * call_micro;
    let tables = format!("{PRICES}{}", fleet_budget("main", n as f64 * k as f64 * 0.001));
    // Leases of at most 10 calls, 3 s to live; the sweeper of B charges A's at expiry.
    let fleet_keys = "lease_ttl_ms = 3000\nlease_max_calls = 10\nlease_parts = 1\ntimeout_ms = 1000";
    let b = Rig::builder().table(&pg.fleet_table("sc-b", fleet_keys)).table(&tables).start().await;
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let a = Binary::with(dir.path(), &up.base_url(), |c| c.table(&pg.fleet_table("sc-a", fleet_keys)).table(&tables));
    let chat_url = format!("{}/a/main/fake/v1/chat/completions", a.data);
    let never_over = |what: &str| {
        let (lim, spent, held) = central(&pg, BUDGET);
        assert!(spent + held <= lim, "{what}: spent {spent} + held {held} > limit {lim}");
        (spent, held)
    };

    let mut p = a.start().await;
    for _ in 0..3 {
        assert_eq!(post_json(&chat_url, &[], &body(k)).await.status, 200);
    }
    // A call in flight at the kill: it may have cost its worst case, so it counts in full.
    // (Written by hand on a raw socket: the kill closes it, which an HTTP client reports as
    // a panic in its task.)
    let hang = {
        let v = json!({"model": "metered-model", "max_tokens": k, "stream": false,
                       "messages": [{"role": "user", "content": "HANG"}]})
        .to_string();
        let addr = a.data.trim_start_matches("http://").to_string();
        let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!(
            "POST /a/main/fake/v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{v}",
            v.len()
        );
        tokio::io::AsyncWriteExt::write_all(&mut sock, req.as_bytes()).await.unwrap();
        sock
    };
    assert!(up.wait_for_requests(4, Duration::from_secs(10)).await);
    assert_eq!(never_over("holding"), (0, 10 * call_micro), "A holds one lease of 10 calls");
    assert_eq!(lease_states(&pg, "sc-a"), ["open"]);
    p.0.kill().unwrap(); // SIGKILL
    p.0.wait().unwrap();
    drop(hang);
    let killed = Instant::now();

    // The lease outlives A: B's sweeper charges it in full at expiry.
    wait::until("A's lease charged in full", Duration::from_secs(15), || async {
        never_over("expiring");
        lease_states(&pg, "sc-a") == ["expired"]
    })
    .await;
    let expired_after = killed.elapsed();
    assert_eq!(never_over("expired"), (10 * call_micro, 0), "charged in full, nothing held");
    // Counted once B's sweeper has its commit's reply (a moment after the row reads expired).
    wait::until("B counts the expired lease", Duration::from_secs(5), || async {
        b.metrics().await.contains("clawbutler_fleet_leases_expired_total 1")
    })
    .await;

    // The restart settles it from A's journal: 3 calls done + 1 in flight are spent, the
    // other 6 go back. Then a second restart changes nothing (refunded once).
    let mut p = a.start().await;
    let refund = wait::until("A's restart settles its lease", Duration::from_secs(10), || async {
        never_over("settling");
        lease_states(&pg, "sc-a") == ["settled"]
    })
    .await;
    assert_eq!(never_over("settled"), (4 * call_micro, 0), "refunded what was not used");
    p.0.kill().unwrap();
    p.0.wait().unwrap();
    let mut p = a.start().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(never_over("second restart"), (4 * call_micro, 0), "refunded once");

    // The fleet admits exactly what is left: 36 calls (on A until it refuses), then none on B.
    let mut after = 0;
    loop {
        let r = post_json(&chat_url, &[], &body(k)).await;
        if r.status != 200 {
            assert_budget_refusal(&r, "");
            break;
        }
        after += 1;
        assert!(after <= 36, "admitted past the budget");
    }
    assert_budget_refusal(&post_json(&b.url("/a/main/fake/v1/chat/completions"), &[], &body(k)).await, "");
    let reached = up.request_count() + b.up.request_count();
    println!(
        "FLEET SIGKILL: lease expired {expired_after:?} after the kill, settled {refund:?} after the restart was \
         ready; then {after} calls admitted; upstream requests {reached} (budget {n} calls)"
    );
    assert_eq!(after, 36, "exactly the refunded room is admitted");
    assert_eq!(reached, n as usize, "calls reaching an upstream == the budget in calls");
    wait::until("every lease settled", Duration::from_secs(10), || async { central(&pg, BUDGET).2 == 0 }).await;
    assert_eq!(never_over("drained"), (limit, 0), "spend == limit: 0 overshoot");
    p.0.kill().unwrap();
    p.0.wait().unwrap();
}

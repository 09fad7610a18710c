//! The central audit trail: every sidecar ships its hash-chained log and signed checkpoints to
//! PostgreSQL; the copy is searched fleet-wide and verified with the log's own checks
//! (`clawbutler audit verify --fleet`); a tampered or deleted central row fails verification;
//! the shipper resumes after a restart and never holds a call while the database is down.

use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::http::get;
use testkit::postgres::PgCluster;
use testkit::rig::{bearer, Rig, ADMIN};
use testkit::wait;

use super::call;

/// Ship often, checkpoint every 4 records (the writer checks when it writes), so a short test
/// has several signed checkpoints.
const FLEET: &str = "audit_ship_ms = 100";
const AUDIT: &str = "[audit]\ncheckpoint_every_records = 4\n";

/// The newest durable seq of a sidecar's own log (its local search, newest first), once the
/// end records of `calls` model calls of `main` are searchable.
async fn head(rig: &Rig, calls: usize) -> u64 {
    rig.model_calls("main", calls).await;
    let r = get(&rig.control("/api/v1/audit?limit=1"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"][0]["seq"].as_u64().unwrap_or(0)
}

fn central(pg: &PgCluster, sql: &str) -> u64 {
    pg.psql(sql).trim().parse().unwrap_or(0)
}

/// Wait until the central copy of `id` holds exactly seq 1..=`upto`, each once.
async fn shipped(pg: &PgCluster, id: &str, upto: u64) {
    let q = format!("SELECT coalesce(max(seq), 0) FROM fleet_audit_record WHERE sidecar_id = '{id}'");
    wait::until(&format!("{id} shipped through seq {upto}"), Duration::from_secs(20), || {
        let n = central(pg, &q);
        async move { n >= upto }
    })
    .await;
    // One snapshot for both: the shipper may add a batch between two queries.
    let both =
        pg.psql(&format!("SELECT count(*), coalesce(max(seq), 0) FROM fleet_audit_record WHERE sidecar_id = '{id}'"));
    let (count, max): (u64, u64) =
        both.trim().split_once('|').map(|(c, m)| (c.parse::<u64>().unwrap(), m.parse().unwrap())).unwrap();
    let missing = pg.psql(&format!(
        "SELECT string_agg(s::text, ',') FROM generate_series(1, {max}) s \
         WHERE s NOT IN (SELECT seq FROM fleet_audit_record WHERE sidecar_id = '{id}')"
    ));
    assert_eq!(count, max, "{id}: every record exactly once, none missing (missing: {missing})");
}

/// `clawbutler audit verify --fleet` with a config holding only `[fleet]`: (exit code, stdout,
/// stderr).
fn verify_cli(pg: &PgCluster, dir: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let cfg = dir.join("auditor.toml");
    std::fs::write(&cfg, pg.fleet_table("auditor", "")).unwrap();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
            .args(["--config", cfg.to_str().unwrap(), "audit", "verify", "--fleet"])
            .args(extra)
            .env_remove("CLAWBUTLER_CONFIG")
            .output()
    })
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout.to_string(), stderr.to_string())
}

/// Every page of a fleet search (following `next_cursor`), from `rig`.
async fn fleet_search(rig: &Rig, query: &str, page: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = rig.control(&format!("/api/v1/audit?scope=fleet&{query}&limit={page}&cursor={cursor}"));
        let r = get(&url, &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        out.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_shipped_from_three_sidecars_verifies_centrally_and_a_tampered_row_fails() {
    let Some(pg) = PgCluster::start_or_skip("fleet central audit") else { return };
    let rigs = pg.sidecars(3, FLEET, AUDIT).await;
    // 20 calls: at least 20 records each (a quick call has its end record only), so at
    // least two checkpoints of 4 records each whatever the group commits.
    for rig in &rigs {
        for _ in 0..20 {
            assert!(call(rig, "main").await.1);
        }
    }
    let t0 = Instant::now();
    for (rig, id) in rigs.iter().zip(["sc-a", "sc-b", "sc-c"]) {
        let upto = head(rig, 20).await;
        assert!(upto >= 20, "{id}: head {upto}");
        shipped(&pg, id, upto).await;
        let q = format!("SELECT count(*) FROM fleet_audit_checkpoint WHERE sidecar_id = '{id}'");
        wait::until(&format!("{id}: two checkpoints shipped"), Duration::from_secs(10), || {
            let n = central(&pg, &q);
            async move { n >= 2 }
        })
        .await;
    }
    eprintln!("FLEET AUDIT shipped 3 sidecars in {:?} after the last call", t0.elapsed());

    // The copy verifies centrally, sidecar by sidecar, with the log's own checks.
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = verify_cli(&pg, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    for id in ["sc-a", "sc-b", "sc-c"] {
        assert!(out.contains(&format!("sidecar {id}: audit log OK")), "{out}");
    }
    let (code, out, err) = verify_cli(&pg, dir.path(), &["--sidecar", "sc-b", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["sidecar_id"], "sc-b", "{out}");
    assert!(v[0]["report"]["checkpoints"].as_u64().unwrap() >= 2, "{out}");

    // Fleet search from B finds every sidecar's records with the local search's filters,
    // page by page with no record twice.
    // (A call gets a `started` record too when it runs past a group-commit window.)
    let all = fleet_search(&rigs[1], "kind=model_call&agent=main", 7).await;
    let ends = |id: &str| all.iter().filter(|r| r["sidecar_id"] == id && r["outcome"] != "started").count();
    assert!((60..=120).contains(&all.len()), "3 sidecars x 20 calls: {}", all.len());
    let mut keys: Vec<(String, u64)> =
        all.iter().map(|r| (r["sidecar_id"].as_str().unwrap().to_string(), r["seq"].as_u64().unwrap())).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), all.len());
    for id in ["sc-a", "sc-b", "sc-c"] {
        assert_eq!(ends(id), 20, "{id}");
    }
    let ts: Vec<&str> = all.iter().map(|r| r["ts"].as_str().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let only_a = fleet_search(&rigs[2], "kind=model_call&sidecar=sc-a", 1000).await;
    assert_eq!(only_a.len(), all.iter().filter(|r| r["sidecar_id"] == "sc-a").count());
    assert!(only_a.iter().all(|r| r["sidecar_id"] == "sc-a"));
    // Bad input is the caller's, in problem+json.
    for bad in ["scope=everywhere", "sidecar=sc-a", "scope=fleet&cursor=nope", "scope=fleet&limit=0"] {
        let r = get(&rigs[0].control(&format!("/api/v1/audit?{bad}")), &bearer(ADMIN)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{bad}");
    }

    // The fleet view and the metrics show no shipping lag.
    let v = get(&rigs[0].control("/api/v1/fleet/sidecars"), &bearer(ADMIN)).await.json();
    for row in v["items"].as_array().unwrap() {
        assert!(row["audit_lag_records"].as_i64().is_some_and(|n| n >= 0), "{row}");
    }
    wait::until("a's lag gauge at 0", Duration::from_secs(10), || async {
        rigs[0].metrics().await.contains("clawbutler_fleet_audit_lag_records 0")
    })
    .await;
    assert!(rigs[0].metrics().await.contains("clawbutler_fleet_audit_gap_records_total 0"));

    // A central row edited behind the shipper's back fails, naming the sidecar and the seq.
    let seq = central(
        &pg,
        "SELECT min(seq) FROM fleet_audit_record WHERE sidecar_id = 'sc-b' AND line LIKE '%\"outcome\":\"completed\"%'",
    );
    pg.psql(&format!(
        "UPDATE fleet_audit_record SET line = replace(line, '\"outcome\":\"completed\"', '\"outcome\":\"denied\"') \
         WHERE sidecar_id = 'sc-b' AND seq = {seq}"
    ));
    // And a deleted one on C: a hole in the chain.
    let gone = central(&pg, "SELECT min(seq) + 3 FROM fleet_audit_record WHERE sidecar_id = 'sc-c'");
    pg.psql(&format!("DELETE FROM fleet_audit_record WHERE sidecar_id = 'sc-c' AND seq = {gone}"));
    let (code, out, err) = verify_cli(&pg, dir.path(), &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("sidecar sc-a: audit log OK"), "{out}");
    assert!(out.contains(&format!("sidecar sc-b: audit log FAILED at seq {seq}")), "{out}");
    assert!(out.contains(&format!("seq {seq}: content does not match its hash")), "{out}");
    assert!(out.contains(&format!("sidecar sc-c: audit log FAILED at seq {gone}")), "{out}");
    assert!(out.contains(&format!("expected seq {gone}, found seq {} (missing record(s))", gone + 1)), "{out}");
    // The sidecars' own logs are untouched.
    for rig in &rigs {
        let r = get(&rig.control("/api/v1/audit/verify"), &bearer(ADMIN)).await.json();
        assert_eq!(r["ok"], true, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shipper_catches_up_after_an_outage_and_a_restart_and_calls_never_wait() {
    let Some(mut pg) = PgCluster::start_or_skip("fleet audit shipper") else { return };
    let fleet = format!("{FLEET}\npartitioned = \"keep_last\"");
    let mut rigs = pg.sidecars(1, &fleet, AUDIT).await;
    let rig = rigs.remove(0);
    for _ in 0..3 {
        call(&rig, "main").await;
    }
    shipped(&pg, "sc-a", head(&rig, 3).await).await;

    // The database goes away: calls are served as before, the lag grows.
    pg.stop();
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        assert!(call(&rig, "main").await.1);
        slowest = slowest.max(t.elapsed());
    }
    eprintln!("FLEET AUDIT slowest call with the database down: {slowest:?}");
    assert!(slowest < Duration::from_secs(1), "{slowest:?}");
    wait::until("the lag gauge to count the unshipped records", Duration::from_secs(10), || async {
        let m = rig.metrics().await;
        let lag = m.lines().find_map(|l| l.strip_prefix("clawbutler_fleet_audit_lag_records ")).unwrap_or("0");
        lag.parse::<u64>().unwrap_or(0) >= 10
    })
    .await;
    let r = get(&rig.control("/api/v1/audit?scope=fleet"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());

    // It comes back: the shipper catches up, every record once.
    pg.start_again();
    let t0 = Instant::now();
    shipped(&pg, "sc-a", head(&rig, 13).await).await;
    eprintln!("FLEET AUDIT caught up {:?} after the database came back", t0.elapsed());

    // A restart resumes from the central max(seq): nothing shipped twice, nothing skipped.
    let cfg = rig.cfg.clone();
    let rig = rig.restart_with(cfg).await;
    for _ in 0..3 {
        call(&rig, "main").await;
    }
    shipped(&pg, "sc-a", head(&rig, 16).await).await;
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = verify_cli(&pg, dir.path(), &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("sidecar sc-a: audit log OK"), "{out}");
}

//! Issue #22: when the audit log cannot write, no call goes unrecorded. The sidecar runs with
//! its data dir on a filesystem that fills (a real tmpfs of a few MiB mounted by the test, or
//! the audit crate's fault-injecting disk where mounting is not allowed; see `disk.rs`), in
//! front of a scripted upstream, and is driven as an operator and a client would: calls until
//! the disk is full, then more, then space is freed. Asserted: refusals in each caller's own
//! format with 503 + `Retry-After` and none reaching the upstream, `/readyz` naming the audit,
//! metrics and the `audit_health` event, recovery without a restart, a chain that verifies,
//! exactly one start and one end record per answered call, and the outage on record.

mod disk;
mod faces;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clawbutler::app::Sidecar;
use http::Method;
use serde_json::{json, Value};
use testkit::http::{get, post_json, send_streaming, HttpResponse};
use testkit::rig::{bearer, bundle_dir, Rig, SidecarConfig, ADMIN, HOLD_RULE};
use testkit::upstream::ScriptedUpstream;

use disk::TestDisk;

/// Reserve and warning threshold the tests run with: well inside the 6 MiB disk.
const RESERVE: u64 = 256 * 1024;
const WARN: u64 = 2 * 1024 * 1024;

fn audit_table(extra: &str) -> String {
    format!(
        "[audit]\nreserve_free_bytes = {RESERVE}\nwarn_free_bytes = {WARN}\nwarn_free_ratio = 0.0\n\
         disk_check_ms = 50\nretry_max_ms = 200\n{extra}"
    )
}

/// A sidecar whose data dir is on `disk`.
async fn start(disk: &TestDisk, audit_extra: &str, hold: bool) -> Rig {
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sc = SidecarConfig::new(disk.data_dir()).upstreams(&up.base_url()).table(&audit_table(audit_extra));
    if hold {
        sc = sc.policy_dir(&bundle_dir(dir.path(), &[("zz_test_hold.rego", HOLD_RULE)]));
    }
    let mut cfg = sc.build();
    cfg.audit.test_disk = disk.hook();
    let sidecar = Sidecar::start(cfg).await.unwrap();
    Rig { sidecar, up, dir, cfg: sc }
}

/// The two client formats, alternately.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    OpenAi,
    Anthropic,
}

async fn call(rig: &Rig, f: Format, i: usize) -> HttpResponse {
    let prompt = format!("call number {i} with some text to make the record a realistic size");
    match f {
        Format::OpenAi => {
            let body =
                json!({"model": "gpt-4o-mini", "stream": false, "messages": [{"role": "user", "content": prompt}]});
            post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &body).await
        }
        Format::Anthropic => {
            let body = json!({"model": "claude-haiku-4-5", "max_tokens": 64, "stream": false,
                              "messages": [{"role": "user", "content": prompt}]});
            post_json(&rig.url("/a/main/anth/v1/messages"), &[], &body).await
        }
    }
}

fn format_of(i: usize) -> Format {
    if i.is_multiple_of(2) {
        Format::OpenAi
    } else {
        Format::Anthropic
    }
}

/// A refusal because the audit log cannot write, in `f`'s own error shape.
fn assert_audit_refusal(r: &HttpResponse, f: Format) {
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("5"), "Retry-After");
    let v = r.json();
    let (kind, message) = match f {
        Format::OpenAi => (&v["error"]["type"], &v["error"]["message"]),
        Format::Anthropic => {
            assert_eq!(v["type"], "error", "{v}");
            (&v["error"]["type"], &v["error"]["message"])
        }
    };
    assert_eq!(kind, "audit_unavailable", "{v}");
    let m = message.as_str().unwrap();
    assert!(m.contains("audit log cannot record"), "{m}");
    assert!(m.contains("no space left") || m.contains("reserve_free_bytes"), "the cause is named: {m}");
}

/// One series of the Prometheus text.
fn series(text: &str, name_and_labels: &str) -> f64 {
    let prefix = format!("{name_and_labels} ");
    let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {name_and_labels}"));
    line[prefix.len()..].trim().parse().unwrap()
}

async fn readyz(rig: &Rig) -> (u16, Value) {
    let r = get(&rig.control("/readyz"), &[]).await;
    (r.status.as_u16(), r.json())
}

fn check<'a>(ready: &'a Value, name: &str) -> &'a Value {
    ready["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{ready}"))
}

/// Collect `/api/v1/events?kind=audit_health` in the background.
fn watch_health(rig: &Rig) -> Arc<Mutex<String>> {
    let seen = Arc::new(Mutex::new(String::new()));
    let (url, out) = (rig.control("/api/v1/events?kind=audit_health"), seen.clone());
    tokio::spawn(async move {
        let mut s = send_streaming(Method::GET, &url, &bearer(ADMIN), Bytes::new()).await;
        while let Some(chunk) = s.next_chunk().await {
            out.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    seen
}

/// The `audit_health` events seen so far.
fn health_events(seen: &Mutex<String>) -> Vec<Value> {
    let text = seen.lock().unwrap().clone();
    text.split("\n\n")
        .filter(|f| f.contains("event: audit_health"))
        .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Every model-call record, all pages.
async fn model_records(rig: &Rig) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = rig.control("/api/v1/audit?kind=model_call&limit=1000");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let r = get(&url, &bearer(ADMIN)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Wait (bounded) for exactly `n` records matching `query`.
async fn records(rig: &Rig, query: &str, n: usize) -> Vec<Value> {
    for _ in 0..400 {
        let v = rig.audit(query).await;
        if v.len() >= n {
            assert_eq!(v.len(), n, "{v:?}");
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} records for {query}");
}

/// After the disk filled the log notices at its next write: make one (a call, which goes
/// ahead if it was admitted in that instant: its records wait in memory for the disk), then
/// wait until `/readyz` says the log cannot write.
async fn trigger_outage(rig: &Rig) {
    let _ = call(rig, Format::OpenAi, 1000).await;
    for _ in 0..400 {
        if readyz(rig).await.0 == 503 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the audit log never noticed the full disk");
}

fn decision_id(r: &HttpResponse) -> String {
    r.header("x-clawbutler-decision-id").expect("every answer names its decision").to_string()
}

/// The whole story on `disk`: fill, refuse, free, recover, verify.
async fn full_disk_story(disk: TestDisk) {
    let rig = start(&disk, "", false).await;
    let health = watch_health(&rig);
    let mut answered: Vec<String> = Vec::new();
    for i in 0..6 {
        let r = call(&rig, format_of(i), i).await;
        assert_eq!(r.status, 200, "{}", r.text());
        answered.push(decision_id(&r));
    }
    let (code, ready) = readyz(&rig).await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(check(&ready, "audit")["ok"], true);

    // The disk fills up with the sidecar's own records until the log stops writing.
    disk.fill_to(RESERVE + 160 * 1024);
    let mut refused: Vec<(String, Format)> = Vec::new();
    let mut i = 6;
    while refused.is_empty() {
        assert!(i < 3000, "the log never stopped writing ({} bytes free)", disk.free());
        let f = format_of(i);
        let r = call(&rig, f, i).await;
        match r.status.as_u16() {
            200 => answered.push(decision_id(&r)),
            _ => {
                assert_audit_refusal(&r, f);
                refused.push((decision_id(&r), f));
            }
        }
        i += 1;
    }
    let filled_after = i;
    // Now entirely full (not just below the reserve): every later call is refused too, in
    // each format, and none reaches the upstream.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    disk.fill();
    let upstream_before = rig.up.request_count();
    for k in 0..6 {
        let f = format_of(k);
        let r = call(&rig, f, i).await;
        assert_audit_refusal(&r, f);
        refused.push((decision_id(&r), f));
        i += 1;
    }
    assert_eq!(rig.up.request_count(), upstream_before, "a refused call reached the upstream");
    assert_eq!(rig.up.request_count(), answered.len(), "the upstream saw exactly the answered calls");

    let (code, ready) = readyz(&rig).await;
    assert_eq!(code, 503, "{ready}");
    let a = check(&ready, "audit");
    assert_eq!(a["ok"], false, "{ready}");
    assert!(a["detail"].as_str().unwrap().contains("cannot write"), "{a}");
    let m = rig.metrics().await;
    assert_eq!(series(&m, "clawbutler_audit_writer_state{state=\"failing\"}"), 1.0);
    let errors = series(&m, "clawbutler_audit_append_errors_total{cause=\"reserve\"}")
        + series(&m, "clawbutler_audit_append_errors_total{cause=\"no_space\"}");
    assert!(errors >= 1.0, "append errors by cause");
    assert!(series(&m, "clawbutler_audit_refused_calls_total{face=\"model\"}") >= refused.len() as f64);
    let mut free = series(&m, "clawbutler_audit_disk_free_bytes");
    for _ in 0..100 {
        if free < RESERVE as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        free = series(&rig.metrics().await, "clawbutler_audit_disk_free_bytes");
    }
    assert!(free < RESERVE as f64, "free {free}");
    wait_for("a failing audit_health event", || health_events(&health).iter().any(|h| h["state"] == "failing")).await;

    // Space comes back: calls flow again without a restart.
    disk.free_all();
    let freed = Instant::now();
    let recovered_after = loop {
        let f = format_of(i);
        let r = call(&rig, f, i).await;
        i += 1;
        if r.status == 200 {
            answered.push(decision_id(&r));
            break freed.elapsed();
        }
        assert_audit_refusal(&r, f);
        refused.push((decision_id(&r), f));
        assert!(freed.elapsed() < Duration::from_secs(30), "no recovery 30 s after space was freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!(
        "audit_failure ({}): log full after {filled_after} calls; {} refused; first call answered {} ms after \
         space was freed",
        if disk.is_real() { "tmpfs" } else { "faulty disk" },
        refused.len(),
        recovered_after.as_millis()
    );
    for k in 0..4 {
        let r = call(&rig, format_of(k), i + k).await;
        assert_eq!(r.status, 200, "{}", r.text());
        answered.push(decision_id(&r));
    }
    let (code, ready) = readyz(&rig).await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(check(&ready, "state_store")["ok"], true, "{ready}");
    wait_for("an ok audit_health event", || {
        health_events(&health).iter().skip_while(|h| h["state"] != "failing").any(|h| h["state"] == "ok")
    })
    .await;

    // The record of the outage, how long it lasted and how many calls it refused.
    let outage = records(&rig, "kind=audit_outage", 1).await;
    let d = &outage[0]["details"];
    assert_eq!(d["refused_calls"]["model"], refused.len(), "{d}");
    assert!(d["duration_ms"].as_u64().unwrap() > 0, "{d}");
    assert!(["reserve", "no_space"].contains(&d["cause"].as_str().unwrap()), "{d}");

    // Every answered call has exactly one end record (and a started one only if it ran past a
    // group-commit window: at most one); refused ones none.
    // A record is durable at the next group commit after its call ends; on this shared
    // machine an fsync can take a while, so wait (bounded) for the last ones.
    let t0 = Instant::now();
    let by_id = loop {
        let recs = model_records(&rig).await;
        let mut by_id: HashMap<String, (usize, usize)> = HashMap::new();
        for r in &recs {
            let e = by_id.entry(r["decision_id"].as_str().unwrap().to_string()).or_default();
            if r["outcome"] == "started" {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let whole = |id: &String| by_id.get(id).is_some_and(|&(s, e)| s <= 1 && e == 1);
        if answered.iter().all(whole) || t0.elapsed() > Duration::from_secs(10) {
            break by_id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for (n, id) in answered.iter().enumerate() {
        let got = by_id.get(id);
        assert!(
            got.is_some_and(|&(s, e)| s <= 1 && e == 1),
            "answered call #{n} of {} ({id}): (started, end) records {got:?}",
            answered.len()
        );
    }
    for (id, _) in &refused {
        assert!(!by_id.contains_key(id), "refused call {id} has a record");
    }
    assert_eq!(by_id.len(), answered.len());

    // The chain verifies, live and from the files after a clean stop.
    let v = get(&rig.control("/api/v1/audit/verify"), &bearer(ADMIN)).await.json();
    assert_eq!(v["ok"], true, "{v}");
    let audit_dir = disk.data_dir().join("audit");
    let Rig { sidecar, up, .. } = rig;
    sidecar.shutdown().await;
    up.shutdown().await;
    let rep = audit::verify_dir(&audit_dir, None);
    assert!(rep.ok, "{rep}");
    assert!(rep.warnings.iter().all(|w| w.contains("public key stored next to the log")), "no torn tail: {rep}");
    assert_eq!(rep.signed_through, rep.last_seq, "the clean stop signed everything: {rep}");
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_filesystem_refuses_calls_and_recovers_without_a_restart() {
    full_disk_story(TestDisk::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_fault_injected_disk_refuses_calls_and_recovers_without_a_restart() {
    full_disk_story(TestDisk::faulty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_low_space_warning_comes_while_calls_still_succeed() {
    let disk = TestDisk::new();
    let rig = start(&disk, "", false).await;
    let health = watch_health(&rig);
    assert_eq!(series(&rig.metrics().await, "clawbutler_audit_disk_low"), 0.0);
    let size = series(&rig.metrics().await, "clawbutler_audit_disk_size_bytes");
    assert!(size >= disk::SIZE as f64 * 0.9, "{size}");

    // Below the warning threshold, well above the reserve.
    disk.fill_to(WARN - 256 * 1024);
    wait_for("the low-space event", || health_events(&health).iter().any(|h| h["disk"]["low"] == true)).await;
    let m = rig.metrics().await;
    assert_eq!(series(&m, "clawbutler_audit_disk_low"), 1.0);
    assert!(series(&m, "clawbutler_audit_disk_free_bytes") < WARN as f64);
    // The warning came before anything was refused: calls still succeed, the sidecar is ready
    // (its audit check says space is low).
    for i in 0..4 {
        let r = call(&rig, format_of(i), i).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let (code, ready) = readyz(&rig).await;
    assert_eq!(code, 200, "{ready}");
    assert!(check(&ready, "audit")["detail"].as_str().unwrap().contains("(low)"), "{ready}");
    assert_eq!(series(&rig.metrics().await, "clawbutler_audit_writer_state{state=\"ok\"}"), 1.0);

    disk.free_all();
    wait_for("the end of the low-space warning", || {
        health_events(&health).iter().skip_while(|h| h["disk"]["low"] != true).any(|h| h["disk"]["low"] == false)
    })
    .await;
    let Rig { sidecar, .. } = rig;
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_call_stays_held_and_control_changes_are_refused_while_the_log_cannot_write() {
    let disk = TestDisk::faulty();
    let rig = start(&disk, "", true).await;
    let held = rig.call("main", "needs-approval-1", "please");
    let pending = rig.wait_pending("main", 1).await;
    let id = pending[0]["id"].as_str().unwrap().to_string();
    let version = pending[0]["version"].as_u64().unwrap();
    let tokens_before = get(&rig.control("/api/v1/tokens"), &bearer(ADMIN)).await.json()["items"].clone();

    disk.fill();
    trigger_outage(&rig).await;
    assert_audit_refusal(&call(&rig, Format::Anthropic, 1).await, Format::Anthropic);

    // The approver's decision cannot be recorded: refused, and the call stays held.
    let d = rig.decide(ADMIN, &id, &json!({"decision": "allow-once", "expected_version": version}), None).await;
    assert_eq!(d.status, 503, "{}", d.text());
    assert_eq!(d.header("content-type"), Some("application/problem+json"));
    assert_eq!(d.header("retry-after"), Some("5"));
    assert!(d.json()["detail"].as_str().unwrap().contains("nothing was changed"), "{}", d.text());
    let now = get(&rig.control(&format!("/api/v1/approvals/{id}")), &bearer(ADMIN)).await.json();
    assert_eq!(now["status"], "pending", "{now}");
    assert!(!held.is_finished(), "the held call was answered");
    // A new token cannot be made while it could not be recorded, and none is left behind.
    let t = post_json(&rig.control("/api/v1/tokens"), &bearer(ADMIN), &json!({"name": "ops", "role": "viewer"})).await;
    assert_eq!(t.status, 503, "{}", t.text());
    let tokens_now = get(&rig.control("/api/v1/tokens"), &bearer(ADMIN)).await.json()["items"].clone();
    assert_eq!(tokens_now, tokens_before);
    let m = rig.metrics().await;
    assert!(series(&m, "clawbutler_audit_refused_calls_total{face=\"control\"}") >= 2.0);

    // Space back: the same decision goes through and the held call is answered.
    disk.free_all();
    let mut decided = None;
    for _ in 0..100 {
        let d = rig.decide(ADMIN, &id, &json!({"decision": "allow-once", "expected_version": version}), None).await;
        if d.status == 200 {
            decided = Some(d);
            break;
        }
        assert_eq!(d.status, 503, "{}", d.text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(decided.is_some(), "the decision never went through after recovery");
    let r = tokio::time::timeout(Duration::from_secs(10), held).await.unwrap().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let recs = rig.audit("kind=approval").await;
    assert_eq!(recs.iter().filter(|r| r["outcome"] == "allowed").count(), 1, "{recs:?}");
    let v = get(&rig.control("/api/v1/audit/verify"), &bearer(ADMIN)).await.json();
    assert_eq!(v["ok"], true, "{v}");
    let Rig { sidecar, .. } = rig;
    sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_unaudited_lets_calls_through_and_counts_every_one() {
    let disk = TestDisk::faulty();
    let rig = start(&disk, "on_failure = \"continue_unaudited\"\noutage_queue_records = 4", false).await;
    assert_eq!(call(&rig, Format::OpenAi, 0).await.status, 200);
    disk.fill();
    trigger_outage(&rig).await;
    // The call that made the log notice may itself have been let through unaudited (when the
    // free-space monitor saw the fill first): count from here.
    let let_through = series(&rig.metrics().await, "clawbutler_audit_unaudited_calls_total{face=\"model\"}");
    let before = rig.up.request_count();
    for i in 1..=8 {
        let f = format_of(i);
        let r = call(&rig, f, i).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(rig.up.request_count(), before + 8, "the calls went upstream");
    let m = rig.metrics().await;
    assert_eq!(series(&m, "clawbutler_audit_writer_state{state=\"failing\"}"), 1.0);
    let unaudited = series(&m, "clawbutler_audit_unaudited_calls_total{face=\"model\"}");
    assert_eq!(unaudited - let_through, 8.0, "every call let through is counted");
    assert_eq!(series(&m, "clawbutler_audit_refused_calls_total{face=\"model\"}"), 0.0);
    disk.free_all();
    let outage = records(&rig, "kind=audit_outage", 1).await;
    assert_eq!(outage[0]["details"]["unaudited_calls"]["model"].as_f64().unwrap(), unaudited);
    let v = get(&rig.control("/api/v1/audit/verify"), &bearer(ADMIN)).await.json();
    assert_eq!(v["ok"], true, "{v}");
    let Rig { sidecar, .. } = rig;
    sidecar.shutdown().await;
}

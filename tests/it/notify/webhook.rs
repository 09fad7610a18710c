//! The signed webhook, end to end: a held call reaches two routes' receivers within a second;
//! the receiver verifies the signature and timestamp exactly as docs/notifications.md says and
//! refuses a replay and a tampered body; the message carries what the inbox shows, masked;
//! its action link opens the approval once; the delivery is logged, counted and audited.
//! Also the figures for the note: event -> delivered p50/p99 for the webhook channel.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use testkit::http::{get, send};
use testkit::rig::{bearer, ADMIN};

use super::receiver::{Got, Handler, Receiver};
use super::{assert_single_use, deliveries, link_token, metric, rig, secret_file, wait_deliveries, LEAKED_KEY};

const SECRET: &str = "whsec-test-4f1c9a7e2b";

/// A receiver doing what docs/notifications.md tells one to do: recompute
/// HMAC-SHA256(secret, "<timestamp>.<delivery>.<raw body>"), compare in constant time, refuse a
/// timestamp more than 300 s off its clock, and refuse a delivery id it already accepted.
fn verifying(secret: &'static str) -> Handler {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    Arc::new(move |g: &Got| {
        let (Some(ts), Some(id), Some(sig)) =
            (g.header("x-clawbutler-timestamp"), g.header("x-clawbutler-delivery"), g.header("x-clawbutler-signature"))
        else {
            return (400, "missing signature headers".into());
        };
        let Ok(ts_n) = ts.parse::<i64>() else { return (400, "bad timestamp".into()) };
        if (chrono::Utc::now().timestamp() - ts_n).abs() > 300 {
            return (401, "stale timestamp".into());
        }
        let Some(hexsig) = sig.strip_prefix("v1=") else { return (401, "unknown signature version".into()) };
        let Ok(raw) = hex::decode(hexsig) else { return (401, "bad signature".into()) };
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{ts}.{id}.").as_bytes());
        mac.update(&g.body);
        if mac.verify_slice(&raw).is_err() {
            return (401, "signature mismatch".into());
        }
        if !seen.lock().unwrap().insert(id.to_string()) {
            return (409, "replay: delivery already accepted".into());
        }
        (200, "{\"accepted\":true}".into())
    })
}

fn hook_tables(dir: &std::path::Path, a: &Receiver, b: &Receiver, burst_ms: u64) -> String {
    let s = secret_file(dir, "hook.secret", SECRET);
    format!(
        r#"[notify]
public_url = "https://butler.example.test"
[[notify.channels]]
name = "ops-hook"
kind = "webhook"
url = "{}"
secret_file = "{s}"
[[notify.channels]]
name = "oncall-hook"
kind = "webhook"
url = "{}"
secret_file = "{s}"
[[notify.routes]]
id = "ops"
events = ["approval.*"]
channels = ["ops-hook"]
burst_ms = {burst_ms}
[[notify.routes]]
id = "oncall"
events = ["approval.created"]
risks = ["high", "critical"]
channels = ["oncall-hook"]
burst_ms = {burst_ms}
[[notify.routes]]
id = "budget-only"
events = ["budget.*"]
channels = ["oncall-hook"]
"#,
        a.url("/hooks/ops"),
        b.url("/hooks/oncall")
    )
}

#[tokio::test]
async fn a_held_call_reaches_every_matching_route_signed_masked_and_with_a_single_use_link() {
    let (ops, oncall) = (Receiver::start(verifying(SECRET)).await, Receiver::start(verifying(SECRET)).await);
    let tmp = tempfile::tempdir().unwrap();
    let rig = rig(&hook_tables(tmp.path(), &ops, &oncall, 300)).await;

    let held = rig.call("main", "needs-approval-deploy", &format!("Deploy with {LEAKED_KEY} to prod, then report"));
    let a = rig.wait_pending("main", 1).await.remove(0);
    let id = a["id"].as_str().unwrap().to_string();
    let created = chrono::DateTime::parse_from_rfc3339(a["created_at"].as_str().unwrap()).unwrap();

    // One message per matching route ("budget-only" does not match), each within 1 s.
    let mut got = Vec::new();
    for r in [&ops, &oncall] {
        let g = r.next(Duration::from_secs(5)).await.expect("a webhook for the held call");
        let lag = chrono::Utc::now().signed_duration_since(created);
        assert!(lag < chrono::Duration::milliseconds(1000), "delivered {lag} after the hold");
        assert_eq!(g.status, 200, "the receiver's verdict: {}", g.answer);
        assert_eq!(g.method, "POST");
        assert_eq!(g.header("content-type"), Some("application/json"));
        got.push(g);
    }
    assert!(oncall.quiet_for(Duration::from_millis(700)).await.is_empty(), "one message per route");

    let b = got[0].json();
    assert_eq!(b["event"], "approval.created");
    assert_eq!(b["route"], "ops");
    assert_eq!(b["agent"], "main");
    assert_eq!(b["risk"], "high");
    assert_eq!(b["count"], 1);
    assert_eq!(b["delivery"].as_str(), got[0].header("x-clawbutler-delivery"));
    let text = b["text"].as_str().unwrap();
    for want in ["Agent: main", "needs-approval-deploy", "Risk: HIGH", "Cost estimate:", "Time left:"] {
        assert!(text.contains(want), "{want:?} missing from {text}");
    }
    // The secret in the prompt never leaves: not in the body, not in any header.
    for g in &got {
        assert!(!g.text().contains(LEAKED_KEY) && !g.text().contains("Zq3vT8wLm2Xc9Rk4"), "{}", g.text());
        assert!(g.headers.iter().all(|(_, v)| !v.contains("Zq3vT8wLm2Xc9Rk4")));
    }
    assert!(text.contains("[apikey:"), "the prompt summary is shown, masked: {text}");
    let link = b["action_url"].as_str().unwrap();
    assert!(link.starts_with("https://butler.example.test/n/"), "{link}");
    assert_eq!(b["ui_url"], format!("https://butler.example.test/#/approvals/{id}"));

    // Replaying a captured request, byte for byte, is refused; so is a tampered body.
    let g = &got[0];
    let headers: Vec<(&str, &str)> = g
        .headers
        .iter()
        .filter(|(k, _)| k != "content-length" && k != "host")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let replay = send(http::Method::POST, &ops.url("/hooks/ops"), &headers, g.body.clone()).await;
    assert_eq!(replay.status, 409, "{}", replay.text());
    let tampered = g.text().replace("\"risk\":\"high\"", "\"risk\":\"low\"");
    assert_ne!(tampered, g.text());
    let t = send(http::Method::POST, &ops.url("/hooks/ops"), &headers, bytes::Bytes::from(tampered)).await;
    assert_eq!(t.status, 401, "{}", t.text());
    assert_eq!(ops.take(2, Duration::from_secs(1)).await.len(), 2, "the receiver saw the replay and the forgery");

    // The link opens the approval once.
    assert_single_use(&rig, &link_token(link), &id).await;
    // Each route's link is its own: the on-call one still works after the ops one was used.
    let other = link_token(got[1].json()["action_url"].as_str().unwrap());
    assert_eq!(get(&rig.control(&format!("/n/{other}")), &[]).await.status, 200);

    // Deciding is announced on the route that asks for every approval event, not on on-call.
    let r = rig.decide(ADMIN, &id, &json!({"decision": "allow-once", "expected_version": a["version"]}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(held.await.unwrap().status, 200);
    let decided = ops.next(Duration::from_secs(5)).await.expect("approval.decided");
    assert_eq!(decided.json()["event"], "approval.decided");
    assert!(decided.json()["action_url"].is_null(), "a decided approval needs no action link");
    assert!(decided.json()["text"].as_str().unwrap().contains("Decided by: "), "{}", decided.text());

    // Logged, counted and audited.
    let log = wait_deliveries(&rig, "route=ops", 2).await;
    assert!(log.iter().all(|d| d["status"] == "delivered" && d["attempts"] == 1), "{log:#?}");
    assert!(log.iter().any(|d| d["approval_id"] == id.as_str() && d["event"] == "approval.created"));
    let m = rig.metrics().await;
    assert_eq!(metric(&m, r#"clawbutler_notify_deliveries_total{channel="ops-hook",outcome="delivered"}"#), 2.0);
    assert_eq!(metric(&m, r#"clawbutler_notify_deliveries_total{channel="oncall-hook",outcome="delivered"}"#), 1.0);
    let audit = super::wait_audit(&rig, 3).await;
    let rec = audit
        .iter()
        .find(|r| r["subject"]["channel"] == "oncall-hook")
        .unwrap_or_else(|| panic!("no audit record of the on-call delivery: {audit:#?}"));
    assert_eq!(rec["outcome"], "delivered");
    assert_eq!(rec["details"]["approval_id"], id.as_str());
    // Neither the API nor the audit log shows the receiver's URL or the signing secret.
    let overview = get(&rig.control("/api/v1/notifications"), &bearer(ADMIN)).await.text();
    for t in [overview, serde_json::to_string(&audit).unwrap(), serde_json::to_string(&log).unwrap()] {
        assert!(!t.contains(SECRET) && !t.contains("/hooks/"), "{t}");
    }
}

#[tokio::test]
async fn webhook_event_to_delivered_latency() {
    // Figures for the issue's note: burst merging off (burst_ms = 0), so this is the notifier's
    // own path: audit record -> classify -> route -> sign -> POST -> 2xx.
    let (ops, oncall) = (Receiver::start(verifying(SECRET)).await, Receiver::start(verifying(SECRET)).await);
    let tmp = tempfile::tempdir().unwrap();
    let rig = rig(&hook_tables(tmp.path(), &ops, &oncall, 0)).await;
    const N: usize = 40;
    let mut calls = Vec::new();
    for i in 0..N {
        calls.push(rig.call(&format!("lat-{i}"), "needs-approval-x", "hi"));
        let g = ops.next(Duration::from_secs(5)).await.expect("webhook");
        assert_eq!(g.status, 200, "{}", g.answer);
    }
    let log = wait_deliveries(&rig, "channel=ops-hook&limit=500", N).await;
    let mut ms: Vec<f64> = log.iter().map(|d| d["latency_ms"].as_f64().unwrap()).collect();
    assert_eq!(ms.len(), N);
    ms.sort_by(f64::total_cmp);
    let (p50, p99) = (ms[N / 2], ms[(N * 99).div_ceil(100) - 1]);
    eprintln!("webhook event->delivered over {N} holds: p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms", ms[N - 1]);
    assert!(p99 < 1000.0, "every held call is announced within 1 s: p99 {p99} ms");
    assert!(deliveries(&rig, "status=failed").await.is_empty());
    for c in calls {
        c.abort();
    }
}

//! Notifications as approvers and operators receive them: real receivers on loopback for every
//! channel, fed by held calls through an in-process sidecar. A scripted webhook receiver checks
//! the HMAC signature and timestamp the way docs/notifications.md tells a receiver to, and
//! refuses a replay; Slack and Telegram receivers check the wire format; a real SMTP server
//! (Python `aiosmtpd`, STARTTLS + AUTH) receives the approval e-mail whose single-use link the
//! test then opens; a scripted push service gets the Web Push request, checks the VAPID JWT
//! and decrypts the RFC 8291 payload with the subscription's private key. Escalation, quiet
//! hours, burst merging, retries with backoff (delivery log, metric and audit record) and
//! secret masking are asserted on what the receivers got.

mod browser;
mod chat;
mod delivery;
mod digest;
mod email;
mod operators;
mod push;
mod receiver;
mod webhook;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use testkit::http::{get, send};
use testkit::rig::{bearer, bundle_dir, Rig, SidecarConfig, ADMIN, HOLD_RULE};
use testkit::upstream::ScriptedUpstream;

/// Hold rules by risk: `needs-approval*` is held at high risk ([`HOLD_RULE`]); these add
/// `quiet-medium*` (medium) and `loud-critical*` (critical).
const RISK_RULES: &str = r#"package clawbutler

hold_findings contains f if {
	input.kind == "model_call"
	startswith(object.get(input.model, "name", ""), "quiet-medium")
	f := {"rule": "test.medium_hold", "reason": "Medium-risk test hold", "risk": "medium"}
}

hold_findings contains f if {
	input.kind == "model_call"
	startswith(object.get(input.model, "name", ""), "loud-critical")
	f := {"rule": "test.critical_hold", "reason": "Critical-risk test hold", "risk": "critical"}
}
"#;

/// A sidecar running the shipped bundle plus the hold rules above, with `tables` appended
/// (the `[notify]` config of the test).
pub async fn rig(tables: &str) -> Rig {
    rig_with("", tables).await
}

/// [`rig`] with extra `[policies]` lines too.
pub async fn rig_with(policies: &str, tables: &str) -> Rig {
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), &[("zz_test_hold.rego", HOLD_RULE), ("zz_test_risks.rego", RISK_RULES)]);
    let cfg = SidecarConfig::new(&dir.path().join("data"))
        .upstreams(&up.base_url())
        .policy_dir(&bundle)
        .policies(policies)
        .table(tables);
    let sidecar = clawbutler::app::Sidecar::start(cfg.build()).await.unwrap();
    Rig { sidecar, up, dir, cfg }
}

/// Write a secret into a file of the test's temp dir; returns its path (for `*_file` keys).
pub fn secret_file(dir: &Path, name: &str, value: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    p.display().to_string()
}

/// The delivery log (newest first), filtered by a query string.
pub async fn deliveries(rig: &Rig, query: &str) -> Vec<Value> {
    let r = get(&rig.control(&format!("/api/v1/notifications/deliveries?{query}")), &bearer(ADMIN)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().cloned().unwrap_or_default()
}

/// Wait until the delivery log has `n` entries matching `query` in a final state.
pub async fn wait_deliveries(rig: &Rig, query: &str, n: usize) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..200 {
        last = deliveries(rig, query).await;
        let done = last.iter().filter(|d| !matches!(d["status"].as_str(), Some("queued" | "retrying"))).count();
        if done >= n {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} finished deliveries for {query}: {last:#?}");
}

/// The `notification` audit records (newest first), once there are at least `n`: a delivery
/// is audited right after its final log entry is written.
pub async fn wait_audit(rig: &Rig, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let recs = rig.audit("kind=notification").await;
        if recs.len() >= n {
            return recs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} notification audit records: {:#?}", rig.audit("kind=notification").await);
}

/// The value of one metric series (`name{labels}`) in the Prometheus text, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

/// The action link's token from `<public_url>/n/<token>`.
pub fn link_token(url: &str) -> String {
    url.rsplit_once("/n/").unwrap_or_else(|| panic!("not an action link: {url}")).1.to_string()
}

/// Use an action link as its page's form does (POST): status, `location`, body.
pub async fn open_link(rig: &Rig, token: &str) -> (u16, Option<String>, String) {
    let r = send(http::Method::POST, &rig.control(&format!("/n/{token}")), &[], bytes::Bytes::new()).await;
    (r.status.as_u16(), r.header("location").map(str::to_string), r.text())
}

/// Assert a link opens once: the page offers it, the POST sends the browser to the approval,
/// and every later use is refused as used.
pub async fn assert_single_use(rig: &Rig, token: &str, approval_id: &str) {
    let page = get(&rig.control(&format!("/n/{token}")), &[]).await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("data-testid=\"open-link\""), "{}", page.text());
    // A second look (a mail scanner, a link preview) does not use it up either.
    assert_eq!(get(&rig.control(&format!("/n/{token}")), &[]).await.status, 200);
    let (status, location, body) = open_link(rig, token).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(location.as_deref(), Some(format!("/#/approvals/{approval_id}").as_str()));
    let (again, _, body) = open_link(rig, token).await;
    assert_eq!(again, 410, "a used link must be refused: {body}");
    assert!(body.contains("data-reason=\"used\""), "{body}");
    let page = get(&rig.control(&format!("/n/{token}")), &[]).await;
    assert_eq!(page.status, 410);
    // A forged token (one byte changed) is not one of ours.
    let mut forged = token.to_string().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(get(&rig.control(&format!("/n/{forged}")), &[]).await.status, 404);
}

/// The secret a test agent puts in its prompt; no notification may carry it.
pub const LEAKED_KEY: &str = "sk-proj-Zq3vT8wLm2Xc9Rk4Bn7Hy1Pd6Fs0Ja5E";

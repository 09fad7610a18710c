//! How deliveries behave over time, seen from the receivers and the delivery log: a failing
//! receiver is retried with growing delays and the outcome is logged, counted and audited
//! while held calls and decisions go on unaffected; ten holds in a burst become one message
//! with a count; quiet hours hold back a medium-risk message and let a critical one through;
//! an approval nobody decides escalates to the next route, and again before it expires.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::rig::ADMIN;

use super::receiver::Receiver;
use super::{metric, rig, rig_with, wait_audit, wait_deliveries};

fn one_route(url: &str, extra_notify: &str, route_extra: &str) -> String {
    format!(
        r#"[notify]
{extra_notify}
[[notify.channels]]
name = "hook"
kind = "slack"
url = "{url}"
[[notify.routes]]
id = "main"
events = ["approval.created"]
channels = ["hook"]
{route_extra}
"#
    )
}

#[tokio::test]
async fn a_failing_receiver_is_retried_with_backoff_and_its_outcome_logged_counted_audited() {
    let recv = Receiver::ok().await;
    // Two failures (500, 503), then the receiver recovers.
    recv.script(&[500, 503]);
    let rig =
        rig(&one_route(&recv.url("/slack"), "retry_initial_ms = 300\nretry_max_ms = 5000\nretry_max = 4", "")).await;
    let held = rig.call("main", "needs-approval-1", "hello");
    let a = rig.wait_pending("main", 1).await.remove(0);
    let tries = recv.take(3, Duration::from_secs(10)).await;
    assert_eq!(tries.iter().map(|g| g.status).collect::<Vec<_>>(), vec![500, 503, 200]);
    let (g1, g2) = (tries[1].at - tries[0].at, tries[2].at - tries[1].at);
    // Backoff: 300 ms then 600 ms (plus up to 20 % jitter): the second wait is at least twice
    // the first's floor (comparing the two directly would fail on a first retry made late by
    // a busy machine, not by the backoff).
    assert!(g1 >= Duration::from_millis(290) && g1 < Duration::from_millis(1500), "first retry after {g1:?}");
    assert!(g2 >= Duration::from_millis(590) && g2 < Duration::from_millis(2500), "second retry after {g2:?}");
    let log = wait_deliveries(&rig, "route=main", 1).await;
    assert_eq!(log[0]["status"], "delivered", "{log:#?}");
    assert_eq!(log[0]["attempts"], 3);
    let m = rig.metrics().await;
    assert_eq!(metric(&m, r#"clawbutler_notify_deliveries_total{channel="hook",outcome="retried"}"#), 2.0);
    assert_eq!(metric(&m, r#"clawbutler_notify_deliveries_total{channel="hook",outcome="delivered"}"#), 1.0);
    let audit = wait_audit(&rig, 1).await;
    assert!(recv.quiet_for(Duration::from_millis(300)).await.is_empty());
    assert_eq!(
        rig.audit("kind=notification").await.len(),
        1,
        "one audit record per delivery, not per attempt: {audit:#?}"
    );
    assert_eq!(audit[0]["outcome"], "delivered");
    assert_eq!(audit[0]["details"]["attempts"], 3);
    let r = rig
        .decide(ADMIN, a["id"].as_str().unwrap(), &json!({"decision": "allow-once", "expected_version": 1}), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(held.await.unwrap().status, 200);
}

#[tokio::test]
async fn a_dead_receiver_fails_visibly_without_slowing_held_calls_or_decisions() {
    let recv = Receiver::ok().await;
    recv.script(&[500; 20]);
    let rig =
        rig(&one_route(&recv.url("/slack"), "retry_initial_ms = 1000\nretry_max_ms = 2000\nretry_max = 2", "")).await;
    let held = rig.call("main", "needs-approval-1", "hello");
    let a = rig.wait_pending("main", 1).await.remove(0);
    // Decided while the notifier is still retrying: the caller is answered at once.
    let t0 = Instant::now();
    let r = rig
        .decide(ADMIN, a["id"].as_str().unwrap(), &json!({"decision": "allow-once", "expected_version": 1}), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(held.await.unwrap().status, 200);
    let decided_in = t0.elapsed();
    let tries = recv.take(3, Duration::from_secs(10)).await;
    assert_eq!(tries.len(), 3, "retry_max = 2: three attempts");
    assert!(decided_in < tries[2].at.duration_since(t0), "the decision did not wait for the notifier");
    assert!(recv.quiet_for(Duration::from_millis(1200)).await.is_empty(), "no fourth attempt");
    let log = wait_deliveries(&rig, "route=main&status=failed", 1).await;
    assert_eq!(log[0]["attempts"], 3);
    assert!(log[0]["last_error"].as_str().unwrap().contains("HTTP 500"), "{log:#?}");
    assert!(!log[0]["last_error"].as_str().unwrap().contains("/slack"), "errors never carry the URL");
    let m = rig.metrics().await;
    assert_eq!(metric(&m, r#"clawbutler_notify_deliveries_total{channel="hook",outcome="failed"}"#), 1.0);
    assert_eq!(metric(&m, r#"clawbutler_notify_deliveries_total{channel="hook",outcome="retried"}"#), 2.0);
    let audit = wait_audit(&rig, 1).await;
    assert_eq!(audit[0]["outcome"], "delivery_failed", "{audit:#?}");
}

#[tokio::test]
async fn ten_holds_in_a_burst_become_one_message_with_a_count() {
    let recv = Receiver::ok().await;
    let rig = rig(&one_route(&recv.url("/slack"), "", "burst_ms = 2000")).await;
    let calls: Vec<_> = (0..10).map(|i| rig.call("main", &format!("needs-approval-{i}"), "hello")).collect();
    rig.wait_pending("main", 10).await;
    let got = recv.take(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the critical one breaks through");
    assert_eq!(got.len(), 1);
    let b = got[0].json();
    assert!(b["text"].as_str().unwrap().contains("(+9 more)"), "{b}");
    let section = b["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(section.contains("10 events of this kind arrived together"), "{section}");
    assert!(section.contains("and 5 more"), "five listed, the rest counted: {section}");
    assert!(recv.quiet_for(Duration::from_millis(2500)).await.is_empty(), "one message for the burst");
    let log = wait_deliveries(&rig, "route=main", 1).await;
    assert_eq!((log.len(), log[0]["count"].as_u64()), (1, Some(10)));
    for c in calls {
        c.abort();
    }
}

#[tokio::test]
async fn quiet_hours_hold_back_medium_risk_and_let_critical_through() {
    let recv = Receiver::ok().await;
    // A quiet window around now, in a time zone that is not UTC.
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).unwrap(); // Asia/Tokyo keeps no summer time
    let now = chrono::Utc::now().with_timezone(&tokyo);
    let (start, end) =
        ((now - chrono::Duration::hours(1)).format("%H:%M"), (now + chrono::Duration::hours(1)).format("%H:%M"));
    let quiet = format!(
        "burst_ms = 0\nevents = [\"approval.created\"]\n[notify.routes.quiet_hours]\nstart = \"{start}\"\nend = \"{end}\"\ntimezone = \"Asia/Tokyo\"\nbreak_through = \"critical\"",
    );
    let tables = format!(
        "[notify]\n[[notify.channels]]\nname = \"hook\"\nkind = \"slack\"\nurl = \"{}\"\n[[notify.routes]]\nid = \"night\"\nchannels = [\"hook\"]\n{quiet}\n",
        recv.url("/slack")
    );
    let rig = rig(&tables).await;
    let _medium = rig.call("main", "quiet-medium-1", "hello");
    rig.wait_pending("main", 1).await;
    let _critical = rig.call("main", "loud-critical-1", "hello");
    rig.wait_pending("main", 2).await;
    let got = recv.take(1, Duration::from_secs(10)).await;
    assert!(got[0].json()["text"].as_str().unwrap().starts_with("[CRITICAL]"), "{}", got[0].text());
    let more = recv.quiet_for(Duration::from_millis(1500)).await;
    assert!(more.is_empty(), "only the critical one: {more:#?}");
    let log = wait_deliveries(&rig, "route=night", 2).await;
    let held_back: Vec<_> = log.iter().filter(|d| d["status"] == "suppressed").collect();
    assert_eq!(held_back.len(), 1, "{log:#?}");
    assert_eq!((held_back[0]["reason"].as_str(), held_back[0]["risk"].as_str()), (Some("quiet_hours"), Some("medium")));
    let m = rig.metrics().await;
    assert_eq!(metric(&m, r#"clawbutler_notify_deliveries_total{channel="hook",outcome="suppressed_quiet"}"#), 1.0);
}

#[tokio::test]
async fn an_approval_nobody_decides_escalates_to_the_next_route_then_warns_before_expiry() {
    let (first, second) = (Receiver::ok().await, Receiver::ok().await);
    let tables = format!(
        r#"[notify]
[notify.escalation]
after_s = {{ low = 0, medium = 0, high = 2, critical = 0 }}
before_expiry_s = 2
[[notify.channels]]
name = "approver"
kind = "slack"
url = "{}"
[[notify.channels]]
name = "lead"
kind = "slack"
url = "{}"
[[notify.routes]]
id = "approvers"
events = ["approval.created"]
channels = ["approver"]
escalate_to = "lead"
burst_ms = 0
[[notify.routes]]
id = "lead"
events = ["approval.escalated", "approval.expiring"]
agents = ["nobody-matches-this"]
channels = ["lead"]
burst_ms = 0
"#,
        first.url("/a"),
        second.url("/b")
    );
    let rig = rig_with("hold_ttl_s = 7", &tables).await;
    // One approval is decided in time: it never escalates.
    let decided = rig.call("fast", "needs-approval-1", "hello");
    let a = rig.wait_pending("fast", 1).await.remove(0);
    let r =
        rig.decide(ADMIN, a["id"].as_str().unwrap(), &json!({"decision": "deny", "expected_version": 1}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(decided.await.unwrap().status, 200);
    // The other is left alone.
    let _left = rig.call("main", "needs-approval-2", "hello");
    let b = rig.wait_pending("main", 1).await.remove(0);
    let created = chrono::DateTime::parse_from_rfc3339(b["created_at"].as_str().unwrap()).unwrap();
    let since = |t: chrono::DateTime<chrono::Utc>| (t - created.with_timezone(&chrono::Utc)).num_milliseconds();
    assert_eq!(first.take(2, Duration::from_secs(3)).await.len(), 2, "both were announced to the approvers");

    let esc = second.next(Duration::from_secs(6)).await.expect("escalation to the lead");
    let at = since(chrono::Utc::now());
    assert!((1800..3500).contains(&at), "escalated {at} ms after the hold (after_s.high = 2)");
    let body = esc.json();
    assert!(body["text"].as_str().unwrap().contains("Still waiting after"), "{body}");
    let blocks = body["blocks"].to_string();
    assert!(blocks.contains("/n/"), "the escalation carries an action link: {blocks}");
    assert!(blocks.contains("main"), "{blocks}");

    let warn = second.next(Duration::from_secs(6)).await.expect("a warning before expiry");
    let at = since(chrono::Utc::now());
    assert!((4500..6500).contains(&at), "warned {at} ms after the hold (ttl 7 s, before_expiry_s 2)");
    assert!(warn.json()["text"].as_str().unwrap().contains("Expiring unanswered"), "{}", warn.text());
    // Nothing about the decided approval reached the lead.
    assert!(second.quiet_for(Duration::from_millis(500)).await.is_empty());
    let m = rig.metrics().await;
    assert_eq!(metric(&m, r#"clawbutler_notify_escalations_total{step="escalated"}"#), 1.0);
    assert_eq!(metric(&m, r#"clawbutler_notify_escalations_total{step="expiring"}"#), 1.0);
}

#[tokio::test]
async fn an_expired_action_link_is_refused() {
    let recv = Receiver::ok().await;
    let rig = rig(&one_route(&recv.url("/slack"), "link_ttl_s = 1", "burst_ms = 0")).await;
    let _held = rig.call("main", "needs-approval-1", "hello");
    let g = recv.next(Duration::from_secs(5)).await.expect("the approval message");
    let link = g.json()["blocks"][2]["elements"][0]["url"].as_str().unwrap().to_string();
    let token = super::link_token(&link);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let page = testkit::http::get(&rig.control(&format!("/n/{token}")), &[]).await;
    assert_eq!(page.status, 410, "{}", page.text());
    assert!(page.text().contains("data-reason=\"expired\""), "{}", page.text());
    let (status, location, _) = super::open_link(&rig, &token).await;
    assert_eq!((status, location), (410, None), "an expired link opens nothing");
}

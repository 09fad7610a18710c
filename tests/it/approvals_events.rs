//! `/api/v1/events` over real HTTP: approval and decision events arrive live, a client that
//! reconnects with Last-Event-ID gets exactly the events it missed, in order, and heartbeats
//! arrive at the configured interval.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use testkit::http::{send_streaming, StreamingResponse};
use testkit::rig::{bearer, Rig, ADMIN};

/// One parsed SSE event (or a comment, with `comment` set).
#[derive(Debug, Clone, PartialEq)]
struct Ev {
    id: Option<u64>,
    event: Option<String>,
    data: Option<Value>,
    comment: Option<String>,
}

struct Sse {
    res: StreamingResponse,
    buf: String,
}

impl Sse {
    async fn open(rig: &Rig, last: Option<u64>, query: &str) -> Sse {
        let mut h = bearer(ADMIN);
        let last_s;
        if let Some(l) = last {
            last_s = l.to_string();
            h.push(("last-event-id", Box::leak(last_s.clone().into_boxed_str())));
        }
        let res = send_streaming(Method::GET, &rig.control(&format!("/api/v1/events{query}")), &h, Bytes::new()).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.headers.get("content-type").unwrap(), "text/event-stream");
        Sse { res, buf: String::new() }
    }

    /// The next event or comment, within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Ev> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = Ev { id: None, event: None, data: None, comment: None };
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(": ") {
                        ev.comment = Some(c.to_string());
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        ev.data = serde_json::from_str(v).ok();
                    }
                }
                return Some(ev);
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.next_chunk()).await.ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next real event (comments skipped).
    async fn event(&mut self, wait: Duration) -> Option<Ev> {
        loop {
            let e = self.next(wait).await?;
            if e.id.is_some() {
                return Some(e);
            }
        }
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn reconnect_with_last_event_id_gets_exactly_the_missed_events_in_order() {
    let rig = Rig::holding("", "[approvals]\nevents_heartbeat_ms = 60000").await;
    let approver = rig.token("approver", "april").await;
    // `steady` stays connected throughout: the reference of what was emitted.
    let mut steady = Sse::open(&rig, None, "").await;
    let mut flaky = Sse::open(&rig, None, "").await;

    let h1 = rig.call("main", "needs-approval-1", "MARK:one");
    let e = flaky.event(WAIT).await.unwrap();
    assert_eq!(e.event.as_deref(), Some("approval"));
    let approval = e.data.as_ref().unwrap()["details"]["approval"].clone();
    assert_eq!(approval["status"], "pending");
    let seen = e.id.unwrap();
    drop(flaky);

    // While it is away: a decision, more holds, a grant, a token creation (audit).
    let id = approval["id"].as_str().unwrap();
    rig.decide(&approver, id, &json!({"decision": "allow-once", "expected_version": 1}), None).await;
    h1.await.unwrap();
    let h2 = rig.call("main", "needs-approval-2", "MARK:two");
    let pending = rig.wait_pending("main", 1).await;
    rig.decide(
        &approver,
        pending[0]["id"].as_str().unwrap(),
        &json!({"decision": "deny", "expected_version": 1}),
        None,
    )
    .await;
    h2.await.unwrap();
    rig.token("viewer", "late").await;

    // The reference stream: everything after `seen`, until the token record.
    let mut reference = Vec::new();
    loop {
        let e = steady.event(WAIT).await.expect("steady stream stalled");
        if e.id.unwrap() <= seen {
            continue;
        }
        let done = e.data.as_ref().unwrap()["outcome"] == "token_created";
        reference.push(e);
        if done {
            break;
        }
    }
    let mut back = Sse::open(&rig, Some(seen), "").await;
    let mut resumed = Vec::new();
    while resumed.len() < reference.len() {
        resumed.push(back.event(WAIT).await.expect("resumed stream stalled"));
    }
    assert_eq!(resumed, reference, "exactly the missed events, in order");
    // Unfiltered, the ids are the audit seqs with no gap.
    let ids: Vec<u64> = resumed.iter().map(|e| e.id.unwrap()).collect();
    assert_eq!(ids, (seen + 1..seen + 1 + ids.len() as u64).collect::<Vec<_>>());
    let names: Vec<&str> = resumed.iter().map(|e| e.event.as_deref().unwrap()).collect();
    assert!(names.contains(&"decision") && names.contains(&"approval") && names.contains(&"audit"), "{names:?}");
    // No duplicate after the catch-up: the next live event is new.
    let h3 = rig.call("main", "needs-approval-3", "MARK:three");
    let live = back.event(WAIT).await.unwrap();
    assert_eq!(live.id.unwrap(), ids.last().unwrap() + 1);
    let pending = rig.wait_pending("main", 1).await;
    rig.decide(
        &approver,
        pending[0]["id"].as_str().unwrap(),
        &json!({"decision": "deny", "expected_version": 1}),
        None,
    )
    .await;
    h3.await.unwrap();
}

#[tokio::test]
async fn filters_and_heartbeats() {
    let rig = Rig::holding("", "[approvals]\nevents_heartbeat_ms = 150").await;
    let mut only_other = Sse::open(&rig, None, "?agent=other&kind=approval,decision").await;
    let mut comments = 0;
    let t0 = tokio::time::Instant::now();
    while comments < 3 {
        let e = only_other.next(Duration::from_secs(5)).await.expect("no heartbeat");
        if e.comment.as_deref() == Some("heartbeat") {
            comments += 1;
        }
    }
    assert!(t0.elapsed() >= Duration::from_millis(300), "heartbeats follow the configured interval");
    let h_main = rig.call("main", "needs-approval-1", "x");
    let h_other = rig.call("other", "needs-approval-1", "y");
    let e = only_other.event(WAIT).await.unwrap();
    assert_eq!(e.data.as_ref().unwrap()["agent"], "other");
    assert_eq!(e.event.as_deref(), Some("approval"));
    drop(h_main);
    drop(h_other);
}

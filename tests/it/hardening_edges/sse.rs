//! Class 1 (high): `GET /api/v1/events` with `Last-Event-ID: 18446744073709551615` from any
//! viewer made the catch-up loop wrap the sequence and spin a core forever, even after the
//! client left. Now: an id beyond the log head resumes from the present (said in a comment),
//! garbage is 400 problem+json, every catch-up is bounded, and the stream's work ends when
//! its client goes.

use std::time::Duration;

use bytes::Bytes;
use http::Method;
use testkit::http::{get, send, send_streaming, StreamingResponse};
use testkit::rig::{bearer, Rig, ADMIN};

use super::{cpu_time, wait_gauge};

const WAIT: Duration = Duration::from_secs(10);

struct Stream {
    res: StreamingResponse,
    buf: String,
}

impl Stream {
    async fn open(rig: &Rig, token: &str, last: &str) -> Stream {
        let mut h = bearer(token);
        h.push(("last-event-id", Box::leak(last.to_string().into_boxed_str())));
        let res = send_streaming(Method::GET, &rig.control("/api/v1/events"), &h, Bytes::new()).await;
        assert_eq!(res.status, 200, "Last-Event-ID {last}");
        Stream { res, buf: String::new() }
    }

    /// Read until `needle` has arrived; everything read so far.
    async fn until(&mut self, needle: &str) -> &str {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.buf.contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, self.res.next_chunk())
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} on the stream; got {:?}", self.buf))
                .unwrap_or_else(|| panic!("stream ended before {needle:?}; got {:?}", self.buf));
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
        &self.buf
    }
}

/// The newest audit seq.
async fn head(rig: &Rig) -> u64 {
    let r = get(&rig.control("/api/v1/audit?limit=1"), &bearer(ADMIN)).await;
    r.json()["items"][0]["seq"].as_u64().unwrap()
}

#[tokio::test]
async fn a_viewers_resume_from_any_last_event_id_is_bounded_and_ends_when_the_client_leaves() {
    let rig = Rig::start("[approvals]\nevents_heartbeat_ms = 100").await;
    let viewer = rig.token("viewer", "vera").await;
    for i in 0..3 {
        rig.token("viewer", &format!("history-{i}")).await;
    }
    let max = u64::MAX.to_string();
    for (n, last) in ["max", "head+1", "0"].into_iter().enumerate() {
        let h = head(&rig).await;
        let id = match last {
            "max" => max.clone(),
            "head+1" => (h + 1).to_string(),
            _ => "0".to_string(),
        };
        let mut s = Stream::open(&rig, &viewer, &id).await;
        s.until(": connected").await;
        if last == "0" {
            // From the start: the history is replayed, up to the head.
            let seen = s.until(&format!("id: {h}\n")).await;
            assert!(seen.contains("id: 1\n"), "{seen}");
        } else {
            let seen = s.until("\n\n: resumed from the present").await;
            assert!(seen.contains(&format!("Last-Event-ID {id} is beyond the log head {h}")), "{seen}");
        }
        // Then the stream is live: the next record arrives, with the next seq.
        rig.token("viewer", &format!("live-{n}")).await;
        let seen = s.until(&format!("id: {}\n", h + 1)).await.to_string();
        let live = &seen[seen.find(&format!("id: {}\n", h + 1)).unwrap()..];
        assert!(live.contains("\"outcome\":\"token_created\""), "{seen}");
        if last != "0" {
            assert!(!seen.contains(&format!("id: {h}\n")), "nothing before the present: {seen}");
        }
        drop(s);
    }
    // Every stream's pump ends once its client is gone (heartbeats find out within 100 ms)...
    let live = wait_gauge(&rig, "clawbutler_event_streams", 0, WAIT).await;
    assert_eq!(live, 0, "event streams still running after their clients left");
    // ...and nothing spins: a quiet second costs (almost) no CPU. A wrapped catch-up loop
    // burns most of a core.
    let before = cpu_time();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_time() - before;
    assert!(used < Duration::from_millis(300), "{used:?} of CPU in a quiet second");
}

#[tokio::test]
async fn a_last_event_id_that_is_not_a_seq_is_400_problem_json() {
    let rig = Rig::start("").await;
    let viewer = rig.token("viewer", "vic").await;
    for bad in ["abc", "-1", "+5", "1.5", "0x10", "18446744073709551616", "99999999999999999999999", "1 2"] {
        let mut h = bearer(&viewer);
        h.push(("last-event-id", bad));
        let r = send(Method::GET, &rig.control("/api/v1/events"), &h, Bytes::new()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{bad}");
        assert!(r.json()["detail"].as_str().unwrap().contains("Last-Event-ID"), "{bad}");
    }
    assert_eq!(wait_gauge(&rig, "clawbutler_event_streams", 0, WAIT).await, 0);
}

//! Approvals through the real control API of an in-process sidecar: roles on every route,
//! held model calls approved / denied / expired, racing decisions, idempotent retries, batch
//! decisions and allow-always grants. Everything asserted is what a caller, an approver or an
//! auditor sees.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use testkit::http::{get, post_json, send, send_streaming};
use testkit::rig::{bearer, reply_text, Rig, ADMIN};

async fn status(method: Method, url: &str, token: Option<&str>, body: Option<&Value>) -> u16 {
    let mut h = token.map(bearer).unwrap_or_default();
    h.push(("content-type", "application/json"));
    let b = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    if url.ends_with("/api/v1/events") {
        let r = send_streaming(method, url, &h, b).await;
        return r.status.as_u16();
    }
    let r = send(method, url, &h, b).await;
    if r.status.as_u16() == 401 || r.status.as_u16() == 403 {
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{url}: {}", r.text());
        assert!(r.json()["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    r.status.as_u16()
}

#[tokio::test]
async fn every_role_against_every_route() {
    let rig = Rig::holding("", "").await;
    let viewer = rig.token("viewer", "vera").await;
    let approver = rig.token("approver", "april").await;
    let held = rig.call("main", "needs-approval-1", "hello");
    let a = rig.wait_pending("main", 1).await.remove(0);
    let id = a["id"].as_str().unwrap().to_string();

    let stale = json!({"decision": "deny", "expected_version": 999});
    let batch = json!({"items": [{"id": id, "decision": "deny", "expected_version": 999}]});
    let grant = json!({"agent": "other", "kind": "exec", "pattern": "git status"});
    // (method, path, body, allowed roles: viewer, approver, admin) — "allowed" means neither 401 nor 403.
    let routes: Vec<(Method, String, Option<Value>, [bool; 3])> = vec![
        (Method::GET, "/api/v1/approvals".into(), None, [true, true, true]),
        (Method::GET, format!("/api/v1/approvals/{id}"), None, [true, true, true]),
        (Method::POST, format!("/api/v1/approvals/{id}/decision"), Some(stale.clone()), [false, true, true]),
        (Method::POST, "/api/v1/approvals/batch".into(), Some(batch), [false, true, true]),
        (Method::GET, "/api/v1/grants".into(), None, [true, true, true]),
        (Method::POST, "/api/v1/grants".into(), Some(grant), [false, true, true]),
        (Method::GET, "/api/v1/events".into(), None, [true, true, true]),
        (Method::GET, "/api/v1/tokens".into(), None, [false, false, true]),
        (Method::POST, "/api/v1/tokens".into(), Some(json!({"name": "x", "role": "viewer"})), [false, false, true]),
    ];
    for (m, path, body, allowed) in &routes {
        let url = rig.control(path);
        assert_eq!(status(m.clone(), &url, None, body.as_ref()).await, 401, "{m} {path} without a token");
        for (i, tok) in [&viewer, &approver, &ADMIN.to_string()].iter().enumerate() {
            let s = status(m.clone(), &url, Some(tok), body.as_ref()).await;
            if allowed[i] {
                assert!(s != 401 && s != 403 && s < 500, "{m} {path} as role #{i}: {s}");
            } else {
                assert_eq!(s, 403, "{m} {path} as role #{i}");
            }
        }
    }
    // Every role may ask who it is (the UI offers only what the role may do).
    assert_eq!(status(Method::GET, &rig.control("/api/v1/whoami"), None, None).await, 401);
    for (tok, name, role) in [(&viewer, "vera", "viewer"), (&approver, "april", "approver")] {
        let me = get(&rig.control("/api/v1/whoami"), &bearer(tok)).await;
        assert_eq!(me.status, 200);
        assert_eq!((me.json()["name"].as_str(), me.json()["role"].as_str()), (Some(name), Some(role)));
    }
    assert_eq!(get(&rig.control("/api/v1/whoami"), &bearer(ADMIN)).await.json()["role"], "admin");
    // Routes with per-call targets: grant revoke (approver+) and token revoke (admin).
    for (i, tok) in [&viewer, &approver, &ADMIN.to_string()].iter().enumerate() {
        let g = post_json(
            &rig.control("/api/v1/grants"),
            &bearer(ADMIN),
            &json!({"agent": "x", "kind": "exec", "pattern": "ls"}),
        )
        .await;
        let gid = g.json()["id"].as_str().unwrap().to_string();
        let s = status(Method::DELETE, &rig.control(&format!("/api/v1/grants/{gid}")), Some(tok), None).await;
        assert_eq!(s, if i == 0 { 403 } else { 200 }, "DELETE grant as role #{i}");
        let t = post_json(
            &rig.control("/api/v1/tokens"),
            &bearer(ADMIN),
            &json!({"name": format!("tmp-{i}"), "role": "viewer"}),
        )
        .await;
        let tid = t.json()["id"].as_str().unwrap().to_string();
        let s = status(Method::DELETE, &rig.control(&format!("/api/v1/tokens/{tid}")), Some(tok), None).await;
        assert_eq!(s, if i == 2 { 200 } else { 403 }, "DELETE token as role #{i}");
    }
    assert_eq!(status(Method::DELETE, &rig.control("/api/v1/grants/nope"), None, None).await, 401);
    assert_eq!(status(Method::DELETE, &rig.control("/api/v1/tokens/abcdefgh"), None, None).await, 401);
    // The OpenAPI document is public and describes every route above.
    let doc = get(&rig.control("/api/v1/openapi.json"), &[]).await;
    assert_eq!(doc.status, 200);
    let paths = doc.json()["paths"].clone();
    for p in [
        "/api/v1/approvals",
        "/api/v1/approvals/{id}",
        "/api/v1/approvals/{id}/decision",
        "/api/v1/approvals/batch",
        "/api/v1/grants",
        "/api/v1/grants/{id}",
        "/api/v1/events",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/whoami",
        "/api/v1/budgets",
        "/api/v1/budgets/{id}/reset",
        "/api/v1/agents/{id}/kill",
        "/api/v1/agents/{id}/recover",
        "/api/v1/policies/eval",
        "/api/v1/audit/{seq}",
        "/livez",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.get(p).is_some(), "openapi.json lacks {p}");
    }
    // The viewer's token names appear as actors: the approver's stale decision was refused, not recorded.
    drop(held);
}

#[tokio::test]
async fn held_call_completes_when_approved_and_is_refused_in_shape_when_denied() {
    let rig = Rig::holding("", "").await;
    let approver = rig.token("approver", "april").await;
    let t0 = Instant::now();
    let held = rig.call("main", "needs-approval-1", "MARK:approved please wire $5 to bob");
    let a = rig.wait_pending("main", 1).await.remove(0);
    assert_eq!(a["status"], "pending");
    assert_eq!(a["version"], 1);
    assert_eq!(a["kind"], "model_call");
    assert_eq!(a["risk"], "high");
    assert_eq!(a["rule"], "test.model_hold");
    assert_eq!(a["subject"]["model"], "needs-approval-1");
    assert!(a["subject"]["prompt_summary"].as_str().unwrap().contains("wire $5"), "{a}");
    assert_eq!(a["suggested_scope"]["breadth"], "exact");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!held.is_finished(), "the call must wait for a human");

    let id = a["id"].as_str().unwrap();
    let r = rig
        .decide(&approver, id, &json!({"decision": "allow-once", "expected_version": 1, "reason": "ok"}), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["approval"]["status"], "allowed");
    assert_eq!(r.json()["approval"]["decided_by"], "april");
    let res = held.await.unwrap();
    assert_eq!(res.status, 200, "{}", res.text());
    assert!(reply_text(&res.json()).contains("[approved]"), "{}", res.text());
    assert_eq!(res.header("x-clawbutler-approval-id"), Some(id));
    assert!(t0.elapsed() >= Duration::from_millis(100));

    // Denied: the caller gets a chat reply (its own shape) naming who denied it and why.
    let held = rig.call("main", "needs-approval-1", "second");
    let a = rig.wait_pending("main", 1).await.remove(0);
    let id = a["id"].as_str().unwrap();
    let r = rig
        .decide(&approver, id, &json!({"decision": "deny", "expected_version": 1, "reason": "not today"}), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let res = held.await.unwrap();
    assert_eq!(res.status, 200, "{}", res.text());
    let text = reply_text(&res.json());
    assert!(text.contains("denied by april") && text.contains("not today"), "{text}");
    assert_eq!(res.json()["object"], "chat.completion");

    // Anthropic caller, denied: refused in Anthropic's shape.
    let url = rig.url("/a/claude/anth/v1/messages");
    let body = json!({"model": "needs-approval-2", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let held = tokio::spawn(async move { post_json(&url, &[], &body).await });
    let a = rig.wait_pending("claude", 1).await.remove(0);
    rig.decide(&approver, a["id"].as_str().unwrap(), &json!({"decision": "deny", "expected_version": 1}), None).await;
    let res = held.await.unwrap();
    assert_eq!(res.json()["type"], "message", "{}", res.text());
    assert!(res.text().contains("denied by april"));

    // The audit log has the hold and each decision with the approver's name as actor.
    let recs = rig.audit("kind=approval").await;
    let outcomes: Vec<(&str, &str)> =
        recs.iter().map(|r| (r["outcome"].as_str().unwrap(), r["actor"].as_str().unwrap())).collect();
    assert_eq!(outcomes.iter().filter(|o| o.0 == "created").count(), 3, "{outcomes:?}");
    assert!(
        outcomes.contains(&("allowed", "april")) && outcomes.iter().filter(|o| **o == ("denied", "april")).count() == 2
    );
    // Upstream saw only the approved call.
    assert_eq!(rig.up.request_count(), 1);
}

#[tokio::test]
async fn expiry_denies_exactly_once_and_later_decisions_get_409() {
    // 3 s: long enough to see it pending on a busy machine, short enough to wait out.
    let rig = Rig::holding("hold_ttl_s = 3", "").await;
    let approver = rig.token("approver", "april").await;
    let held = rig.call("main", "needs-approval-1", "will expire");
    let a = rig.wait_pending("main", 1).await.remove(0);
    let id = a["id"].as_str().unwrap().to_string();
    let res = tokio::time::timeout(Duration::from_secs(10), held).await.unwrap().unwrap();
    let text = reply_text(&res.json());
    assert!(text.contains("expired"), "{text}");
    let now = get(&rig.control(&format!("/api/v1/approvals/{id}")), &bearer(ADMIN)).await.json();
    assert_eq!(now["status"], "expired");
    assert_eq!(now["decided_by"], "system");
    let r = rig.decide(&approver, &id, &json!({"decision": "allow-once", "expected_version": 1}), None).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.json()["detail"].as_str().unwrap().contains("already expired by system"), "{}", r.text());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let recs = rig.audit("kind=approval").await;
    let expired =
        recs.iter().filter(|r| r["outcome"] == "expired" && r["details"]["approval"]["id"] == id.as_str()).count();
    assert_eq!(expired, 1, "{recs:?}");
    assert_eq!(rig.up.request_count(), 0);
}

#[tokio::test]
async fn racing_decisions_have_exactly_one_winner_1000_times() {
    let rig = Rig::holding("", "").await;
    let alice = rig.token("approver", "alice").await;
    let bob = rig.token("approver", "bob").await;
    let mut allowed_calls = 0;
    for round in 0..10 {
        let agent = format!("race{round}");
        let calls: Vec<_> = (0..100).map(|i| rig.call(&agent, "needs-approval-r", &format!("MARK:r{i}"))).collect();
        let pending = rig.wait_pending(&agent, 100).await;
        let mut round_allowed = 0;
        let races: Vec<_> = pending
            .iter()
            .map(|a| {
                let id = a["id"].as_str().unwrap().to_string();
                let (u1, u2) = (
                    rig.control(&format!("/api/v1/approvals/{id}/decision")),
                    rig.control(&format!("/api/v1/approvals/{id}/decision")),
                );
                let (h1, h2) = (bearer(&alice), bearer(&bob));
                tokio::spawn(async move {
                    let (ba, bb) = (
                        json!({"decision": "allow-once", "expected_version": 1}),
                        json!({"decision": "deny", "expected_version": 1}),
                    );
                    let a = post_json(&u1, &h1, &ba);
                    let b = post_json(&u2, &h2, &bb);
                    tokio::join!(a, b)
                })
            })
            .collect();
        for r in races {
            let (a, b) = r.await.unwrap();
            let mut codes = [a.status.as_u16(), b.status.as_u16()];
            codes.sort();
            assert_eq!(codes, [200, 409], "{} / {}", a.text(), b.text());
            let (winner, loser, name) = if a.status == 200 { (&a, &b, "alice") } else { (&b, &a, "bob") };
            assert_eq!(winner.json()["approval"]["decided_by"], name);
            assert_eq!(loser.json()["decided_by"], name, "the 409 names who decided first");
            if name == "alice" {
                round_allowed += 1;
            }
        }
        let mut forwarded = 0;
        for c in calls {
            let res = c.await.unwrap();
            assert_eq!(res.status, 200);
            if reply_text(&res.json()).contains("Hello from the scripted model") {
                forwarded += 1;
            }
        }
        assert_eq!(forwarded, round_allowed, "held calls released exactly as decided");
        allowed_calls += round_allowed;
    }
    assert_eq!(rig.up.request_count(), allowed_calls, "exactly the allowed calls reached the upstream");
}

#[tokio::test]
async fn idempotent_retries_and_batch() {
    let rig = Rig::holding("", "").await;
    let approver = rig.token("approver", "april").await;
    let held = rig.call("main", "needs-approval-1", "MARK:idem");
    let id = rig.wait_pending("main", 1).await.remove(0)["id"].as_str().unwrap().to_string();
    let body = json!({"decision": "allow-once", "expected_version": 1, "reason": "retry-safe"});
    let first = rig.decide(&approver, &id, &body, Some("key-1")).await;
    let again = rig.decide(&approver, &id, &body, Some("key-1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(again.status, 200, "a retry gets the first answer, not a 409");
    assert_eq!(first.json(), again.json());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = rig.decide(&approver, &id, &json!({"decision": "deny", "expected_version": 1}), Some("key-1")).await;
    assert_eq!(other.status, 422, "same key, other body: {}", other.text());
    let fresh = rig.decide(&approver, &id, &body, Some("key-2")).await;
    assert_eq!(fresh.status, 409, "a new key is a new decision, and this one is taken");
    assert!(reply_text(&held.await.unwrap().json()).contains("[idem]"));
    let decided = rig.audit("kind=approval").await.iter().filter(|r| r["outcome"] == "allowed").count();
    assert_eq!(decided, 1, "one decision recorded");

    // Batch: one result per id, in order. Each call is held before the next is made, so the
    // pending list (oldest first) is in call order: calls on different connections are served
    // by different threads and would otherwise be held in any order.
    let mut calls = Vec::new();
    for i in 0..3 {
        calls.push(rig.call("batch", "needs-approval-1", &format!("MARK:b{i}")));
        rig.wait_pending("batch", i + 1).await;
    }
    let p = rig.wait_pending("batch", 3).await;
    let ids: Vec<&str> = p.iter().map(|a| a["id"].as_str().unwrap()).collect();
    let r = post_json(
        &rig.control("/api/v1/approvals/batch"),
        &bearer(&approver),
        &json!({"items": [
            {"id": ids[0], "decision": "allow-once", "expected_version": 1},
            {"id": ids[1], "decision": "deny", "expected_version": 1, "reason": "batch no"},
            {"id": ids[2], "decision": "allow-once", "expected_version": 7},
            {"id": "no-such-approval", "decision": "deny", "expected_version": 1},
        ]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let items = r.json()["items"].as_array().cloned().unwrap();
    let got: Vec<(String, u64)> =
        items.iter().map(|i| (i["id"].as_str().unwrap().to_string(), i["status"].as_u64().unwrap())).collect();
    assert_eq!(
        got,
        vec![(ids[0].into(), 200), (ids[1].into(), 200), (ids[2].into(), 409), ("no-such-approval".into(), 404)]
    );
    assert_eq!(items[0]["approval"]["status"], "allowed");
    assert_eq!(items[1]["approval"]["status"], "denied");
    assert!(items[2]["error"]["detail"].as_str().unwrap().contains("version"));
    // The stale one is still pending; decide it properly so its call ends.
    rig.decide(&approver, ids[2], &json!({"decision": "deny", "expected_version": 1}), None).await;
    let texts: Vec<String> =
        futures_util::future::join_all(calls).await.into_iter().map(|r| reply_text(&r.unwrap().json())).collect();
    assert!(
        texts[0].contains("[b0]") && texts[1].contains("batch no") && texts[2].contains("denied by april"),
        "{texts:?}"
    );
}

#[tokio::test]
async fn allow_always_grant_lets_matching_calls_through_and_others_still_hold() {
    let rig = Rig::holding("", "").await;
    let approver = rig.token("approver", "april").await;
    let held = rig.call("main", "needs-approval-a", "MARK:first");
    let id = rig.wait_pending("main", 1).await.remove(0)["id"].as_str().unwrap().to_string();
    let r = rig
        .decide(
            &approver,
            &id,
            &json!({"decision": "allow-always", "expected_version": 1, "scope": {"expires_in_s": 3600}}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let g = r.json()["grant"].clone();
    assert_eq!(g["agent"], "main");
    assert_eq!(g["kind"], "model_call");
    assert_eq!(g["pattern"], "needs-approval-a");
    assert_eq!(g["breadth"], "exact");
    assert!(g["description"].as_str().unwrap().contains("call model 'needs-approval-a'"), "{g}");
    assert!(g["expires_at"].is_string());
    assert!(reply_text(&held.await.unwrap().json()).contains("[first]"));

    // Matching call: no hold at all.
    let res = tokio::time::timeout(Duration::from_secs(5), rig.call("main", "needs-approval-a", "MARK:granted"))
        .await
        .unwrap()
        .unwrap();
    assert!(reply_text(&res.json()).contains("[granted]"), "{}", res.text());
    // Other model, or other agent: still held.
    let other_model = rig.call("main", "needs-approval-b", "MARK:b");
    let other_agent = rig.call("second", "needs-approval-a", "MARK:c");
    let p1 = rig.wait_pending("main", 1).await;
    let p2 = rig.wait_pending("second", 1).await;
    assert_eq!(p1[0]["subject"]["model"], "needs-approval-b");
    assert_eq!(p2[0]["subject"]["model"], "needs-approval-a");

    // The grant is listed with its breadth; a broad one needs confirmation; revoking brings the hold back.
    let list = get(&rig.control("/api/v1/grants?agent=main"), &bearer(&approver)).await.json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let broad = post_json(
        &rig.control("/api/v1/grants"),
        &bearer(&approver),
        &json!({"agent": "main", "kind": "model_call", "pattern": "*"}),
    )
    .await;
    assert_eq!(broad.status, 422, "{}", broad.text());
    let gid = g["id"].as_str().unwrap();
    let del =
        send(Method::DELETE, &rig.control(&format!("/api/v1/grants/{gid}")), &bearer(&approver), Bytes::new()).await;
    assert_eq!(del.status, 200);
    let again = rig.call("main", "needs-approval-a", "MARK:again");
    let p = rig.wait_pending("main", 2).await;
    assert!(p.iter().any(|a| a["subject"]["model"] == "needs-approval-a"));
    let grant_recs = rig.audit("kind=grant").await;
    let outs: Vec<&str> = grant_recs.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert!(outs.contains(&"created") && outs.contains(&"revoked"), "{outs:?}");
    for a in rig.wait_pending("main", 2).await.iter().chain(p2.iter()) {
        rig.decide(&approver, a["id"].as_str().unwrap(), &json!({"decision": "deny", "expected_version": 1}), None)
            .await;
    }
    for h in [other_model, other_agent, again] {
        assert!(reply_text(&h.await.unwrap().json()).contains("denied by april"));
    }
}

#[tokio::test]
async fn grants_are_listed_newest_first_in_pages() {
    let rig = Rig::holding("", "").await;
    let mut made = Vec::new();
    for i in 0..5 {
        let g = json!({"agent": "main", "kind": "exec", "pattern": format!("make target-{i}")});
        let r = post_json(&rig.control("/api/v1/grants"), &bearer(ADMIN), &g).await;
        assert_eq!(r.status, 201, "{}", r.text());
        made.push(r.json()["id"].as_str().unwrap().to_string());
    }
    // A grant for another agent is filtered out before the page is cut.
    let other = json!({"agent": "other", "kind": "exec", "pattern": "ls"});
    assert_eq!(post_json(&rig.control("/api/v1/grants"), &bearer(ADMIN), &other).await.status, 201);
    let mut seen = Vec::new();
    let mut path = "/api/v1/grants?agent=main&limit=2".to_string();
    loop {
        let page = get(&rig.control(&path), &bearer(ADMIN)).await;
        assert_eq!(page.status, 200, "{}", page.text());
        let v = page.json();
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|g| g["id"].as_str().unwrap().to_string()));
        match v["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/grants?agent=main&limit=2&cursor={c}"),
            None => break,
        }
    }
    made.reverse();
    assert_eq!(seen, made, "every grant once, newest first");
    for bad in ["limit=0", "limit=501"] {
        let r = get(&rig.control(&format!("/api/v1/grants?{bad}")), &bearer(ADMIN)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.text().contains("limit must be 1 to 500"), "{}", r.text());
    }
}

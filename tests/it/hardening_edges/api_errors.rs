//! Class 5 (low): `GET /api/v1/audit?cursor=abc` answered 500; hyper's own 400/414/431 had
//! empty bodies; a 405 said nothing. Now a bad query parameter is 400 on every list route,
//! hyper's early answers carry a body in the listener's dialect (OpenAI or Anthropic JSON on
//! the data path, problem+json on the control API), and 405 carries `Allow` on both.

use bytes::Bytes;
use http::Method;
use testkit::http::{get, send};
use testkit::rig::{bearer, Rig, ADMIN};

use super::{raw, request};

#[tokio::test]
async fn a_bad_query_parameter_is_400_problem_json_on_every_list() {
    let rig = Rig::start("").await;
    let viewer = rig.token("viewer", "quinn").await;
    for q in [
        "/api/v1/audit?cursor=abc",
        "/api/v1/audit?cursor=-1",
        "/api/v1/audit?cursor=18446744073709551616",
        "/api/v1/audit?limit=0",
        "/api/v1/audit?limit=1001",
        "/api/v1/audit?limit=lots",
        "/api/v1/audit?from=yesterday",
        "/api/v1/audit?kind=nonsense",
        "/api/v1/audit?agnet=main",
        "/api/v1/approvals?cursor=abc",
        "/api/v1/approvals?limit=0",
        "/api/v1/approvals?limit=501",
        "/api/v1/approvals?status=bogus",
        "/api/v1/approvals?colour=blue",
        "/api/v1/grants?cursor=abc",
        "/api/v1/grants?limit=501",
        "/api/v1/grants?colour=blue",
        "/api/v1/events?colour=blue",
    ] {
        let r = get(&rig.control(q), &bearer(&viewer)).await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{q}");
        assert_eq!(r.json()["status"], 400, "{q}");
    }
    // Real cursors still page, and an empty one means none.
    for _ in 0..3 {
        rig.token("viewer", &format!("page-{}", uuid::Uuid::new_v4())).await;
    }
    let first = get(&rig.control("/api/v1/audit?limit=2&cursor="), &bearer(&viewer)).await.json();
    let next = first["next_cursor"].as_str().unwrap().to_string();
    let second = get(&rig.control(&format!("/api/v1/audit?limit=2&cursor={next}")), &bearer(&viewer)).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert!(second.json()["items"][0]["seq"].as_u64().unwrap() < first["items"][1]["seq"].as_u64().unwrap());
    assert_eq!(get(&rig.control("/api/v1/approvals?limit=500&cursor="), &bearer(&viewer)).await.status, 200);
}

#[tokio::test]
async fn hypers_own_answers_speak_the_listeners_dialect() {
    let rig = Rig::start("").await;
    let data = rig.sidecar.data_addr;
    let control = rig.sidecar.control_addr;
    let many: Vec<(String, String)> = (0..150).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let long = format!("/a/main/anth/v1/messages?{}", "q".repeat(70_000));
    let malformed = |path: &str, host: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nthis line has no colon\r\n\r\n").into_bytes()
    };
    let d = data.to_string();
    let c = control.to_string();

    // Data path, OpenAI callers: 431 (too many headers), 400 (a malformed header).
    let r = raw(data, &request("POST", "/a/main/fake/v1/chat/completions", &d, &many, "{}")).await;
    assert_eq!(r.status, 431, "{r:?}");
    assert_eq!(r.json()["error"]["type"], "request_header_fields_too_large");
    let r = raw(data, &malformed("/a/main/fake/v1/chat/completions", &d)).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"]["type"], "invalid_request_error");
    // Anthropic callers: 414 (a URI over 64 KiB), 431.
    let r = raw(data, &request("POST", &long, &d, &[], "{}")).await;
    assert_eq!(r.status, 414, "{r:?}");
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "uri_too_long");
    let r = raw(data, &request("POST", "/a/main/anth/v1/messages", &d, &many, "{}")).await;
    assert_eq!(r.status, 431);
    assert_eq!(r.json()["error"]["type"], "request_header_fields_too_large");

    // Control API: problem+json, the same three.
    for (req, status) in [
        (request("GET", "/api/v1/audit", &c, &many, ""), 431),
        (malformed("/api/v1/audit", &c), 400),
        (request("GET", &format!("/api/v1/audit?{}", "q".repeat(70_000)), &c, &[], ""), 414),
    ] {
        let r = raw(control, &req).await;
        assert_eq!(r.status, status, "{r:?}");
        assert_eq!(r.header("content-type").as_deref(), Some("application/problem+json"));
        assert_eq!(r.json()["status"], status);
    }
}

#[tokio::test]
async fn method_not_allowed_carries_allow_on_both_listeners() {
    let rig = Rig::start("").await;
    let json = [("content-type", "application/json")];
    let r = send(Method::GET, &rig.url("/a/main/fake/v1/chat/completions"), &[], Bytes::new()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json()["error"]["type"], "method_not_allowed");
    let r = send(Method::POST, &rig.url("/a/main/fake/v1/models"), &json, Bytes::from_static(b"{}")).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    let r = send(Method::DELETE, &rig.url("/a/main/anth/v1/messages"), &[], Bytes::new()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    assert_eq!(r.json()["type"], "error");

    for (m, path, allowed) in [
        (Method::DELETE, "/api/v1/audit", "GET"),
        (Method::PUT, "/api/v1/tokens", "POST"),
        (Method::POST, "/livez", "GET"),
    ] {
        let r = send(m.clone(), &rig.control(path), &bearer(ADMIN), Bytes::new()).await;
        assert_eq!(r.status, 405, "{m} {path}");
        assert!(r.header("allow").is_some_and(|a| a.contains(allowed)), "{m} {path}: {:?}", r.headers);
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{m} {path}");
        assert_eq!(r.json()["status"], 405);
    }
}

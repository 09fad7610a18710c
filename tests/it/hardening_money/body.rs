//! Only one JSON object in UTF-8 is forwarded, refused the same way streamed or not, and the
//! client's bytes reach the upstream unchanged except for the one field the sidecar adds.
//! The issue's reproduction: `[...]` bodies were forwarded; a streamed body was re-serialised
//! (big integers became `1.23e+29`) and invalid UTF-8 was forwarded.

use bytes::Bytes;
use http::Method;
use testkit::http::send;
use testkit::rig::Rig;

async fn post_raw(rig: &Rig, path: &str, body: &[u8]) -> testkit::http::HttpResponse {
    send(Method::POST, &rig.url(path), &[("content-type", "application/json")], Bytes::copy_from_slice(body)).await
}

#[tokio::test]
async fn non_objects_and_invalid_utf8_are_refused_in_the_callers_shape_streamed_or_not() {
    let rig = Rig::start("").await;
    let chat = "/a/main/fake/v1/chat/completions";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // The reproduction, and variants of it.
        (chat, br#"[{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}]"#.to_vec()),
        (chat, br#"[]"#.to_vec()),
        (chat, br#"  "a string""#.to_vec()),
        (
            chat,
            b"{\"model\":\"gpt-4o-mini\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}"
                .to_vec(),
        ),
        (
            chat,
            b"{\"model\":\"gpt-4o-mini\",\"stream\":false,\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}"
                .to_vec(),
        ),
        (chat, br#"{"model":"gpt-4o-mini","stream":true} {"model":"x"}"#.to_vec()),
        (chat, br#"{"model":"gpt-4o-mini","model":"gpt-4o","stream":true}"#.to_vec()),
        ("/a/main/anth/v1/messages", br#"[{"model":"claude-haiku-4-5","max_tokens":5}]"#.to_vec()),
        ("/a/main/anth/v1/messages", b"{\"model\":\"claude-haiku-4-5\",\"max_tokens\":5,\"x\":\"\xff\"}".to_vec()),
    ];
    for (path, body) in &cases {
        let r = post_raw(&rig, path, body).await;
        assert_eq!(r.status, 400, "{path} {}: {}", String::from_utf8_lossy(body), r.text());
        if path.ends_with("/messages") {
            assert_eq!(r.json()["type"], "error", "{}", r.text());
            assert_eq!(r.json()["error"]["type"], "invalid_request_error");
        } else {
            assert_eq!(r.json()["error"]["type"], "invalid_request_error", "{}", r.text());
        }
    }
    assert_eq!(rig.up.request_count(), 0, "a refused body reached the upstream");
}

#[tokio::test]
async fn the_upstream_gets_the_clients_bytes_with_only_include_usage_spliced_in() {
    let rig = Rig::start("").await;
    let chat = "/a/main/fake/v1/chat/completions";
    // Streamed without include_usage: the field is added before the closing brace, and
    // nothing else changes (the reproduction: big integers used to become 1.23e+29).
    let body = br#"{"model":"gpt-4o-mini",  "seed":123456789012345678901234567890, "temperature":1.0,
        "metadata":{"note":"caf\u00e9 \ud83d\ude00"}, "stream":true, "messages":[{"role":"user","content":"hi"}] }"#;
    let r = post_raw(&rig, chat, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("\"usage\""), "usage the client did not ask for leaked");
    let mut want = body[..body.len() - 2].to_vec();
    want.extend_from_slice(br#" ,"stream_options":{"include_usage":true}}"#);
    let sent = rig.up.requests()[0].body.clone();
    assert_eq!(String::from_utf8_lossy(&sent), String::from_utf8_lossy(&want));

    // Variant: stream_options present with include_usage false and a field of its own: only
    // the object's value is rewritten; its other members keep their bytes.
    let body = br#"{"stream":true,"stream_options":{"include_usage":false,"x":123456789012345678901234567890},"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"n":1}"#;
    assert_eq!(post_raw(&rig, chat, body).await.status, 200);
    let sent = rig.up.requests()[1].body.clone();
    let want = br#"{"stream":true,"stream_options":{"include_usage":true,"x":123456789012345678901234567890},"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"n":1}"#;
    assert_eq!(String::from_utf8_lossy(&sent), String::from_utf8_lossy(want));

    // Non-streamed, and streamed with include_usage already: byte for byte.
    for body in [
        &br#"{"model":"gpt-4o-mini","seed":123456789012345678901234567890,"messages":[{"role":"user","content":"hi"}]}"#[..],
        br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"seed":1.50,"messages":[{"role":"user","content":"hi"}]}"#,
    ] {
        let n = rig.up.request_count();
        assert_eq!(post_raw(&rig, chat, body).await.status, 200);
        assert_eq!(rig.up.requests()[n].body, Bytes::copy_from_slice(body));
    }
}

//! Response framing from an upstream that sends both `Transfer-Encoding: chunked` and a
//! `Content-Length` (RFC 9112 §6.3: the chunked coding wins, and the length must not be
//! passed on). Forwarding the stale length beside the re-framed body would leave the client
//! waiting for bytes that never come, or reading the next response as part of this one.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{raw, request};

/// An upstream that answers every request with `reply` on the raw socket, then closes.
async fn raw_upstream(reply: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                // Read the request's head and body (the sidecar sends a content-length).
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = s.read(&mut buf).await else { return };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

const BODY: &str = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"framed"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

/// Undo chunked framing (the client's side of it).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap_or_else(|| panic!("bad chunk framing: {body:?}"));
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or_else(|_| panic!("bad chunk size {size:?}"));
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

#[tokio::test]
async fn a_reply_with_both_chunked_and_a_content_length_reaches_the_client_whole_without_the_length() {
    let reply: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{BODY}\r\n0\r\n\r\n",
            BODY.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let up = raw_upstream(reply).await;
    let rig = testkit::rig::Rig::start(&format!(
        "[[upstreams]]\nname = \"both\"\nkind = \"openai\"\nurl = \"http://{up}/v1\"\n"
    ))
    .await;
    let body = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let host = rig.sidecar.data_addr.to_string();
    let req = request("POST", "/a/main/both/v1/chat/completions", &host, &[("content-type", "application/json")], body);
    let r = raw(rig.sidecar.data_addr, &req).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_ne!(r.header("content-length").as_deref(), Some("100000"), "the stale length was passed on: {r:?}");
    let got = match r.header("content-length") {
        Some(n) => {
            assert_eq!(n.parse::<usize>().unwrap(), r.body.len(), "{r:?}");
            r.body.clone()
        }
        None => {
            assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"), "{r:?}");
            dechunk(&r.body)
        }
    };
    assert_eq!(got, BODY);
    // Metered as usual: the reply was decoded, not taken as cut short.
    rig.audit_until("kind=model_call", |recs| {
        recs.iter().any(|x| x["usage"]["output_tokens"] == 1 && x["outcome"] == "completed")
    })
    .await;
}

//! Class 3 (medium): the data path accepted cross-site requests: a `text/plain` POST with a
//! foreign `Origin`/`Host` got 200 with the sidecar's key injected (blind form CSRF, DNS
//! rebinding). Now the guard step refuses a foreign `Origin` or `Sec-Fetch-Site: cross-site`
//! (403), a rebound `Host` on a loopback connection (403), and a body that is not JSON (415),
//! each in the caller's shape, before anything reaches the upstream; OpenClaw's own requests
//! (JSON, no Origin, loopback Host) pass, as the e2e tests with a real gateway show.

use clawbutler::app::Sidecar;
use testkit::rig::{Rig, SidecarConfig};
use testkit::upstream::ScriptedUpstream;

use super::{raw, request};

const BODY: &str = r#"{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"spend the key"}]}"#;
const ANTH: &str =
    r#"{"model":"claude-haiku-4-5","max_tokens":64,"messages":[{"role":"user","content":"spend the key"}]}"#;

/// (method, path, Host, extra headers, body, status, error type)
type Case<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str, u16, &'a str);

/// A sidecar whose upstream `keyed` holds its own key (injected into every forwarded call),
/// with `extra` appended to its config. Per-agent keys are off: the guard must hold on its
/// own, for operators who run without them (the identity tests cover the keys).
async fn keyed_rig(extra: &str) -> Rig {
    std::env::set_var("CB_TEST_EDGES_HELD_KEY", "sk-held-by-the-sidecar");
    let up = ScriptedUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = up.base_url();
    let cfg = SidecarConfig::new(&dir.path().join("data")).upstreams(&base).agent_keys("off").table(&format!(
        "[[upstreams]]\nname = \"keyed\"\nkind = \"openai\"\nurl = \"{base}/v1\"\napi_key_env = \"CB_TEST_EDGES_HELD_KEY\"\n{extra}"
    ));
    let sidecar = Sidecar::start(cfg.build()).await.unwrap();
    Rig { sidecar, up, dir, cfg }
}

#[tokio::test]
async fn requests_a_web_page_can_make_are_refused_before_the_upstream() {
    let rig = keyed_rig("").await;
    let addr = rig.sidecar.data_addr;
    let local = addr.to_string();
    let chat = "/a/main/keyed/v1/chat/completions";
    let msgs = "/a/main/anth/v1/messages";
    let cases: Vec<Case> = vec![
        // The issue's reproduction: a form-style text/plain POST from a foreign page and host.
        (
            "POST",
            chat,
            "evil.example",
            vec![("origin", "http://evil.example"), ("content-type", "text/plain")],
            BODY,
            403,
            "cross_site_request",
        ),
        // A fetch that even gets the type right still carries its Origin.
        (
            "POST",
            chat,
            &local,
            vec![("origin", "https://evil.example"), ("content-type", "application/json")],
            BODY,
            403,
            "cross_site_request",
        ),
        (
            "POST",
            chat,
            &local,
            vec![("origin", "null"), ("content-type", "application/json")],
            BODY,
            403,
            "cross_site_request",
        ),
        // A cross-site navigation or no-cors fetch (Sec-Fetch-Site, no Origin on a GET).
        (
            "GET",
            "/a/main/keyed/v1/models",
            &local,
            vec![("sec-fetch-site", "cross-site")],
            "",
            403,
            "cross_site_request",
        ),
        // DNS rebinding: the page's own host name now resolves to 127.0.0.1, no Origin needed.
        (
            "POST",
            chat,
            "rebind.evil.example:8787",
            vec![("content-type", "application/json")],
            BODY,
            403,
            "host_not_allowed",
        ),
        // Bodies a form or a simple request can carry without a preflight.
        ("POST", chat, &local, vec![("content-type", "text/plain;charset=UTF-8")], BODY, 415, "unsupported_media_type"),
        (
            "POST",
            chat,
            &local,
            vec![("content-type", "application/x-www-form-urlencoded")],
            BODY,
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            chat,
            &local,
            vec![("content-type", "multipart/form-data; boundary=x")],
            BODY,
            415,
            "unsupported_media_type",
        ),
        ("POST", chat, &local, vec![], BODY, 415, "unsupported_media_type"),
    ];
    for (method, path, host, headers, body, status, kind) in &cases {
        let r = raw(addr, &request(method, path, host, headers, body)).await;
        assert_eq!(r.status, *status, "{method} {path} host {host} {headers:?}: {r:?}");
        assert_eq!(r.json()["error"]["type"], *kind, "{r:?}");
        assert!(r.header("x-clawbutler-decision-id").is_some());
    }
    // The Anthropic dialect gets its own shape.
    let r = raw(
        addr,
        &request(
            "POST",
            msgs,
            &local,
            &[("origin", "https://evil.example"), ("content-type", "application/json")],
            ANTH,
        ),
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "cross_site_request");
    assert_eq!(rig.up.request_count(), 0, "a refused request reached the upstream");

    // What OpenClaw sends (JSON, no Origin, a loopback Host, Node's `sec-fetch-mode: cors`)
    // still goes through, with the held key injected.
    for host in [local.clone(), format!("localhost:{}", addr.port())] {
        let r = raw(
            addr,
            &request("POST", chat, &host, &[("content-type", "application/json"), ("sec-fetch-mode", "cors")], BODY),
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let seen = rig.up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].headers["authorization"], "Bearer sk-held-by-the-sidecar");
}

#[tokio::test]
async fn configured_origins_and_host_names_are_let_through() {
    let rig =
        keyed_rig("[proxy]\nallowed_origins = [\"https://console.example\"]\nallowed_hosts = [\"sidecar.test\"]\n")
            .await;
    let addr = rig.sidecar.data_addr;
    let chat = "/a/main/keyed/v1/chat/completions";
    let json = ("content-type", "application/json");
    let ok =
        raw(addr, &request("POST", chat, "sidecar.test:8787", &[("origin", "https://console.example"), json], BODY))
            .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let other =
        raw(addr, &request("POST", chat, "sidecar.test", &[("origin", "https://console.example.evil"), json], BODY))
            .await;
    assert_eq!(other.status, 403);
    let rebound = raw(addr, &request("POST", chat, "other.test", &[json], BODY)).await;
    assert_eq!(rebound.status, 403);
    assert_eq!(rig.up.request_count(), 1);
}

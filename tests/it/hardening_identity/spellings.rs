//! The path names the agent; the key proves it. After `kill main`, nothing an attacker on the
//! host can send reaches the upstream on `main`'s behalf: other spellings of `main` are 400,
//! `main`'s key on another agent's path is 401, and `main` itself gets the kill refusal.

use super::{chat, messages, IdentityRig, HELD_KEY};
use testkit::http::{get, post_json};

/// Every other way to write `main` an attacker would try (raw path segments: the sidecar
/// never percent-decodes or case-folds them).
const SPELLINGS: [&str; 22] = [
    "MAIN",
    "Main",
    "mAIN",
    "main.",
    "main..",
    "main:",
    "main:0",
    "m%61in",
    "%6Dain",
    "%6dain",
    "main%2e",
    "main%20",
    "%20main",
    "main%00",
    "main%2F",
    "ma%C4%B1n",     // dotless i
    "%EF%BD%8Dain",  // fullwidth m
    "m%D0%B0in",     // Cyrillic a
    "main%E2%80%8B", // zero-width space
    "-main",
    ".",
    "..",
];

#[tokio::test]
async fn a_killed_agent_is_refused_under_every_spelling_and_on_another_agents_path() {
    let rig = IdentityRig::start(None).await;
    let main_key = rig.key("main").await;
    let other_key = rig.key("other").await;
    let bearer = |k: &str| format!("Bearer {k}");

    // Before the kill both agents work with their own keys (so the refusals below are real).
    let r = post_json(&rig.data("/a/main/held/v1/chat/completions"), &[("authorization", &bearer(&main_key))], &chat())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r =
        post_json(&rig.data("/a/other/held/v1/chat/completions"), &[("authorization", &bearer(&other_key))], &chat())
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let forwarded = rig.up.request_count();

    rig.kill("main").await;
    // main under its own name: the kill switch answers.
    let r = post_json(&rig.data("/a/main/held/v1/chat/completions"), &[("authorization", &bearer(&main_key))], &chat())
        .await;
    assert_eq!(r.header("x-clawbutler-action"), Some("deny"), "{}", r.text());
    assert!(r.text().contains("kill switch"), "{}", r.text());

    // Every other spelling: 400 in the caller's shape, before anything is forwarded.
    for s in SPELLINGS {
        for (auth, key) in [("authorization", bearer(&main_key)), ("x-api-key", main_key.clone())] {
            let r = post_json(&rig.data(&format!("/a/{s}/held/v1/chat/completions")), &[(auth, &key)], &chat()).await;
            assert_eq!(r.status, 400, "/a/{s}/: {}", r.text());
            assert_eq!(r.json()["error"]["type"], "invalid_agent_id", "/a/{s}/: {}", r.text());
            let r = post_json(&rig.data(&format!("/a/{s}/anthheld/v1/messages")), &[(auth, &key)], &messages()).await;
            assert_eq!(r.status, 400, "/a/{s}/ (anthropic): {}", r.text());
            assert_eq!(r.json()["type"], "error", "{}", r.text());
            assert_eq!(r.json()["error"]["type"], "invalid_agent_id", "{}", r.text());
        }
    }
    let r = post_json(&rig.data("/a/MAIN/held/v1/chat/completions"), &[], &chat()).await;
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("did you mean 'main'"), "{}", r.text());

    // Another agent's path with main's key, no key, a junk key, or the real upstream key: 401.
    for (path, body, anthropic) in [
        ("/a/other/held/v1/chat/completions", chat(), false),
        ("/a/other/anthheld/v1/messages", messages(), true),
        ("/a/newagent/held/v1/chat/completions", chat(), false),
    ] {
        let cases: Vec<Vec<(&str, String)>> = vec![
            vec![("authorization", bearer(&main_key))],
            vec![("x-api-key", main_key.clone())],
            vec![("x-clawbutler-agent-key", main_key.clone())],
            vec![],
            vec![("authorization", "Bearer cbk_00".into())],
            vec![("authorization", bearer(HELD_KEY))],
            vec![("x-clawbutler-agent-key", main_key.clone()), ("authorization", bearer(&other_key))],
        ];
        for h in cases {
            let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = post_json(&rig.data(path), &hs, &body).await;
            assert_eq!(r.status, 401, "{path} {:?}: {}", h.iter().map(|(k, _)| k).collect::<Vec<_>>(), r.text());
            // OpenAI `{"error":{type,...}}`, Anthropic `{"type":"error","error":{type,...}}`.
            let v = r.json();
            assert_eq!(v["error"]["type"], "authentication_error", "{}", r.text());
            assert_eq!(v["type"] == "error", anthropic, "{}", r.text());
            assert!(!r.text().contains(&main_key), "the key is not echoed");
        }
    }
    // The killed agent's key on its own path under the header: still the kill refusal.
    let r =
        post_json(&rig.data("/a/main/passthru/v1/chat/completions"), &[("x-clawbutler-agent-key", &main_key)], &chat())
            .await;
    assert_eq!(r.header("x-clawbutler-action"), Some("deny"), "{}", r.text());

    assert_eq!(rig.up.request_count(), forwarded, "nothing reached the upstream after the kill");
    // `other` still works with its own key: only the attacker's paths are closed.
    let r =
        post_json(&rig.data("/a/other/held/v1/chat/completions"), &[("authorization", &bearer(&other_key))], &chat())
            .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let metrics = get(&rig.control("/metrics"), &[]).await.text();
    let count = |reason: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("clawbutler_identity_refusals_total{{reason=\"{reason}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("bad_agent_id") >= (SPELLINGS.len() * 4) as u64, "{metrics}");
    assert!(count("wrong_key") >= 10 && count("missing_key") >= 3, "{metrics}");
    rig.sc.shutdown().await;
}

#[tokio::test]
async fn pass_through_routes_check_a_presented_key_and_required_mode_demands_one() {
    // Default mode: a pass-through call needs no agent key (the caller needs a real upstream
    // key anyway), but a presented one must be right, and it never goes upstream.
    let rig = IdentityRig::start(None).await;
    let key = rig.key("main").await;
    let url = rig.data("/a/main/passthru/v1/chat/completions");
    let r = post_json(&url, &[("authorization", "Bearer sk-callers-own")], &chat()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r =
        post_json(&url, &[("authorization", "Bearer sk-callers-own"), ("x-clawbutler-agent-key", "cbk_nope")], &chat())
            .await;
    assert_eq!(r.status, 401, "{}", r.text());
    let r =
        post_json(&url, &[("authorization", "Bearer sk-callers-own"), ("x-clawbutler-agent-key", &key)], &chat()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let last = rig.up.requests().pop().unwrap();
    assert_eq!(last.headers.get("authorization").unwrap(), "Bearer sk-callers-own", "the caller's key passes");
    assert!(last.headers.get("x-clawbutler-agent-key").is_none(), "the agent key is stripped");
    // A held upstream without a key: 401 naming what to do.
    let r = post_json(&rig.data("/a/main/held/v1/chat/completions"), &[], &chat()).await;
    assert_eq!(r.status, 401);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("agent-key create main") && msg.contains("attach"), "{msg}");
    rig.sc.shutdown().await;

    // required: pass-through calls need the agent key too, in the header.
    let rig = IdentityRig::start(Some("required")).await;
    let key = rig.key("main").await;
    let url = rig.data("/a/main/passthru/v1/chat/completions");
    let r = post_json(&url, &[("authorization", "Bearer sk-callers-own")], &chat()).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("x-clawbutler-agent-key"), "{}", r.text());
    let r = post_json(&url, &[("authorization", &format!("Bearer {key}"))], &chat()).await;
    assert_eq!(r.status, 401, "on a pass-through route the API key is the upstream's, not the agent key");
    let r =
        post_json(&url, &[("authorization", "Bearer sk-callers-own"), ("x-clawbutler-agent-key", &key)], &chat()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    rig.sc.shutdown().await;

    // off: the path alone decides (the documented, warned-about opt-out).
    let rig = IdentityRig::start(Some("off")).await;
    let r = post_json(&rig.data("/a/main/held/v1/chat/completions"), &[], &chat()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(&rig.data("/a/MAIN/held/v1/chat/completions"), &[], &chat()).await;
    assert_eq!(r.status, 400, "the id grammar holds in every mode");
    rig.sc.shutdown().await;
}

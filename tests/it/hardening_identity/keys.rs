//! Managing per-agent keys: admin only, the secret shown once (and never stored, listed,
//! logged or audited), revocation takes effect on the next call, the CLI works through the
//! API; the kill-switch API refuses ids that are not canonical.

use std::process::Command;

use super::{chat, IdentityRig};
use serde_json::json;
use testkit::http::{get, post_json, send};
use testkit::rig::{bearer, ADMIN};

fn cli(args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clawbutler"));
    c.args(args).env_remove("CLAWBUTLER_CONFIG").env_remove("CLAWBUTLER_TOKEN");
    if let Some(t) = token {
        c.env("CLAWBUTLER_TOKEN", t);
    }
    c.output().unwrap()
}

#[tokio::test]
async fn keys_are_admin_only_shown_once_hashed_audited_and_revocable() {
    let rig = IdentityRig::start(None).await;
    let approver = {
        let r = post_json(&rig.control("/api/v1/tokens"), &bearer(ADMIN), &json!({"name": "appr", "role": "approver"}))
            .await;
        r.json()["token"].as_str().unwrap().to_string()
    };
    let keys_url = rig.control("/api/v1/agents/main/keys");
    for t in [approver.as_str(), "not-a-token"] {
        let r = post_json(&keys_url, &bearer(t), &json!({})).await;
        assert!(r.status == 403 || r.status == 401, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(matches!(get(&rig.control("/api/v1/agent-keys"), &bearer(t)).await.status.as_u16(), 401 | 403));
    }
    // (Control-API path parameters are percent-decoded like any REST API's: `m%61in` is `main`
    // there. The data path never decodes.)
    for bad in ["MAIN", "main.", "main:", "-x"] {
        let r = post_json(&rig.control(&format!("/api/v1/agents/{bad}/keys")), &bearer(ADMIN), &json!({})).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.json()["detail"].as_str().unwrap().contains("agent id"), "{}", r.text());
    }

    let r = post_json(&keys_url, &bearer(ADMIN), &json!({"label": "hand-wired"})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let created = r.json();
    let secret = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(secret.starts_with("cbk_") && secret.len() == 68, "{secret}");
    assert_eq!(created["label"], "hand-wired");

    let listed = get(&rig.control("/api/v1/agent-keys"), &bearer(ADMIN)).await;
    assert_eq!(listed.json()["items"][0]["id"], id.as_str());
    assert!(!listed.text().contains(&secret) && listed.json()["items"][0].get("key").is_none());
    let one = get(&keys_url, &bearer(ADMIN)).await.json();
    assert_eq!(one["items"].as_array().unwrap().len(), 1);

    let call = |k: String| {
        let url = rig.data("/a/main/held/v1/chat/completions");
        async move { post_json(&url, &[("authorization", &format!("Bearer {k}"))], &chat()).await }
    };
    assert_eq!(call(secret.clone()).await.status, 200);

    // Recorded with the admin as actor, the key id and agent, never the secret.
    let audit = get(&rig.control("/api/v1/audit?kind=auth&limit=100"), &bearer(ADMIN)).await;
    let items = audit.json()["items"].as_array().cloned().unwrap();
    assert!(
        items.iter().any(|r| r["outcome"] == "created" && r["agent"] == "main" && r["actor"] == "seeded-admin"),
        "{items:?}"
    );
    assert!(!audit.text().contains(&secret));

    let r = send(
        http::Method::DELETE,
        &rig.control(&format!("/api/v1/agents/main/keys/{id}")),
        &bearer(ADMIN),
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(secret.clone()).await;
    assert_eq!(r.status, 401, "a revoked key stops working at once: {}", r.text());
    let r = send(
        http::Method::DELETE,
        &rig.control(&format!("/api/v1/agents/main/keys/{id}")),
        &bearer(ADMIN),
        bytes::Bytes::new(),
    )
    .await;
    assert_eq!(r.status, 404);
    let items = get(&rig.control("/api/v1/audit?kind=auth&limit=100"), &bearer(ADMIN)).await.json();
    assert!(items["items"].as_array().unwrap().iter().any(|r| r["outcome"] == "revoked" && r["agent"] == "main"));

    // The kill-switch API speaks the same grammar.
    let r = post_json(&rig.control("/api/v1/agents/MAIN/kill"), &bearer(ADMIN), &json!({"reason": "x"})).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // The secret is nowhere on disk (state store and audit log).
    rig.sc.shutdown().await;
    let mut stack = vec![rig._dir.path().to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let hex_part = &secret.as_bytes()[4..];
                assert!(!bytes.windows(hex_part.len()).any(|w| w == hex_part), "secret in {}", p.display());
            }
        }
    }
}

// Multi-threaded: the CLI runs as a blocking child process while the sidecar answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_key_cli_works_through_the_control_api() {
    let rig = IdentityRig::start(None).await;
    let url = rig.control("");
    let out = cli(&["agent-key", "create", "main", "--url", &url], None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CLAWBUTLER_TOKEN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = cli(&["agent-key", "create", "main", "--label", "by hand", "--url", &url], Some(ADMIN));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(secret.starts_with("cbk_") && !secret.contains(' '), "one key on stdout: {secret:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only once"));
    let r = post_json(
        &rig.data("/a/main/held/v1/chat/completions"),
        &[("authorization", &format!("Bearer {secret}"))],
        &chat(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    let out = cli(&["agent-key", "list", "--url", &url], Some(ADMIN));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!listed.contains(&secret));
    let line = listed.lines().find(|l| l.starts_with("main\t")).unwrap_or_else(|| panic!("listed: {listed}"));
    let id = line.split('\t').nth(1).unwrap();
    assert!(line.ends_with("by hand"), "{line}");

    let out = cli(&["agent-key", "create", "Main", "--url", &url], Some(ADMIN));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean 'main'"));

    let out = cli(&["agent-key", "revoke", "main", id, "--url", &url], Some(ADMIN));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = post_json(
        &rig.data("/a/main/held/v1/chat/completions"),
        &[("authorization", &format!("Bearer {secret}"))],
        &chat(),
    )
    .await;
    assert_eq!(r.status, 401);
    rig.sc.shutdown().await;
}

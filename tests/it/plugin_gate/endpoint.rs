//! The decision endpoint on its own: who may call it and what it accepts.

use std::process::Command;

use http::Method;
use serde_json::json;
use testkit::http::{get, post_json, send};
use testkit::rig::{bearer, ADMIN};

use super::{tool_call, Plugin, GW, WS};

#[tokio::test]
async fn wrong_or_missing_tokens_are_401_and_malformed_bodies_400_naming_the_field() {
    let p = Plugin::start("", "").await;
    let body = tool_call("write", json!({"path": "a.md", "content": "x"}), "r1", "c1");
    let url = p.url("/v1/decide");
    for (headers, why) in [
        (vec![], "missing plugin token"),
        (bearer("cbp_0123456789ab_00"), "unknown or revoked"),
        (bearer(ADMIN), "unknown or revoked"),
        (vec![("authorization", "Basic Zm9vOmJhcg==")], "missing plugin token"),
    ] {
        let r = post_json(&url, &headers, &body).await;
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"clawbutler-plugin\""));
        assert!(r.json()["detail"].as_str().unwrap().contains(why), "{}", r.text());
    }
    let report = post_json(&p.url("/v1/decide/report"), &[], &json!({"version": 1, "kind": "heartbeat"})).await;
    assert_eq!(report.status, 401);

    let auth = format!("Bearer {}", p.token);
    let raw = |b: &'static str| {
        let (url, auth) = (url.clone(), auth.clone());
        async move {
            send(Method::POST, &url, &[("authorization", &auth), ("content-type", "application/json")], b.into()).await
        }
    };
    for (b, want) in [
        ("{", "not a JSON object"),
        ("[]", "found an array"),
        (r#"{"kind":"tool_call","agentId":"main","toolName":"x"}"#, "missing field `version`"),
        (r#"{"version":7,"kind":"tool_call"}"#, "unsupported protocol version 7"),
        (r#"{"version":1,"kind":"tool_callz"}"#, "unknown kind `tool_callz`"),
        (r#"{"version":1,"kind":"tool_call","agentId":"main"}"#, "missing field `toolName`"),
        (
            r#"{"version":1,"kind":"tool_call","agentId":"main","toolName":"x","params":[1]}"#,
            "`params` must be an object",
        ),
        (r#"{"version":1,"kind":"tool_call","agentId":"../etc","toolName":"x"}"#, "agentId"),
        (r#"{"version":1,"kind":"agent_run","agentId":"main","trigger":3}"#, "`trigger` must be a string"),
    ] {
        let r = raw(b).await;
        assert_eq!(r.status, 400, "{b}: {}", r.text());
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_string();
        assert!(detail.contains(want), "{b}: {detail}");
    }
    let r = post_json(&p.url("/v1/decide/report"), &bearer(&p.token), &json!({"version": 1, "kind": "gossip"})).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Other paths, methods and browsers.
    assert_eq!(post_json(&p.url("/v1/decidex"), &bearer(&p.token), &body).await.status, 404);
    let r = get(&url, &bearer(&p.token)).await;
    assert_eq!((r.status.as_u16(), r.header("allow")), (405, Some("POST")));
    let mut h = bearer(&p.token);
    h.push(("origin", "https://evil.example"));
    assert_eq!(post_json(&url, &h, &body).await.status, 403);
    let m = p.rig.metrics().await;
    assert!(m.contains("clawbutler_plugin_rejected_total{reason=\"unauthorized\"} 5"), "{m}");
    assert!(m.contains("clawbutler_plugin_rejected_total{reason=\"bad_request\"} 10"), "{m}");
}

#[tokio::test]
async fn unknown_fields_are_tolerated_and_revoked_tokens_stop_working() {
    let p = Plugin::start("", "").await;
    let mut body = tool_call("read", json!({"path": "README.md"}), "r1", "c1");
    body["somethingNew"] = json!({"from": "a future plugin"});
    body["requester"]["newField"] = json!(1);
    let r = p.decide(&body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["action"], "allow");
    assert!(r.header("x-clawbutler-decision-id").is_some());

    let list = get(&p.rig.control("/api/v1/plugin-tokens"), &bearer(ADMIN)).await.json();
    let t = &list["items"][0];
    assert_eq!(t["gateway"], GW);
    assert!(!list.to_string().contains(&p.token), "secrets are never listed");
    let id = t["id"].as_str().unwrap();
    let r =
        send(Method::DELETE, &p.rig.control(&format!("/api/v1/plugin-tokens/{id}")), &bearer(ADMIN), "".into()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(p.decide(&body).await.status, 401);
    let auth = p.rig.audit("kind=auth").await;
    let outcomes: Vec<&str> = auth.iter().filter_map(|r| r["outcome"].as_str()).collect();
    assert!(outcomes.contains(&"created") && outcomes.contains(&"revoked"), "{outcomes:?}");
    assert!(!serde_json::to_string(&auth).unwrap().contains(&p.token), "no secret in the audit log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_decisions_are_all_answered() {
    let p = Plugin::start("", "").await;
    let mut tasks = Vec::new();
    for i in 0..1000 {
        // Decisions that answer at once (a hold would wait for a human): writes inside the
        // workspace and another built-in tool.
        let (name, params) = if i % 2 == 0 {
            ("write", json!({"path": format!("{WS}/f{i}.md"), "content": "x"}))
        } else {
            ("sessions_list", json!({"limit": i}))
        };
        tasks.push(p.spawn_decide(tool_call(name, params, &format!("run-{}", i / 10), &format!("call{i}"))));
    }
    let mut allowed = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        if r.json()["action"] == "allow" {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 1000);
    let m = p.rig.metrics().await;
    assert!(m.contains("clawbutler_plugin_decisions_total{action=\"allow\",family=\"file_write\"} 500"), "{m}");
    assert!(m.contains("clawbutler_plugin_decisions_total{action=\"allow\",family=\"other\"} 500"), "{m}");
    assert!(m.contains("clawbutler_plugin_decide_seconds_count{kind=\"tool_call\"} 1000"), "{m}");
}

fn cli(args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clawbutler"));
    c.args(args).env_remove("CLAWBUTLER_CONFIG").env_remove("CLAWBUTLER_TOKEN");
    if let Some(t) = token {
        c.env("CLAWBUTLER_TOKEN", t);
    }
    c.output().unwrap()
}

// Multi-threaded: the CLI runs as a blocking child process while the sidecar answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_token_cli_works_through_the_control_api() {
    let p = Plugin::start("", "").await;
    let url = p.rig.control("");
    let out = cli(&["plugin-token", "create", "--gateway", "ws://127.0.0.1:1", "--url", &url], None);
    assert!(!out.status.success());
    let out =
        cli(&["plugin-token", "create", "--gateway", "ws://127.0.0.1:1", "--label", "cli", "--url", &url], Some(ADMIN));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(secret.starts_with("cbp_") && !secret.contains(' '), "one token on stdout: {secret:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only once"));
    let body = tool_call("read", json!({"path": "a.md"}), "r", "c");
    let r = post_json(&p.url("/v1/decide"), &bearer(&secret), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let out = cli(&["plugin-token", "list", "--gateway", "ws://127.0.0.1:1", "--url", &url], Some(ADMIN));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!listed.contains(&secret));
    let line = listed.lines().next().unwrap_or_else(|| panic!("listed: {listed}"));
    assert!(line.contains("ws://127.0.0.1:1") && line.ends_with("cli"), "{line}");
    let id = line.split('\t').next().unwrap();
    let out = cli(&["plugin-token", "revoke", id, "--url", &url], Some(ADMIN));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(post_json(&p.url("/v1/decide"), &bearer(&secret), &body).await.status, 401);
    let out = cli(&["plugin-token", "revoke", id, "--url", &url], Some(ADMIN));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no plugin token"));
}

//! Contracts that keep the sidecar's own promises checkable: the state store refuses a data
//! dir from a newer build, the token CLI works against a running sidecar, the OpenAPI
//! document describes every method the router serves, and every metric family served is
//! documented.

use std::collections::BTreeSet;
use std::process::Command;

use clawbutler::app::Sidecar;
use http::Method;
use serde_json::json;
use testkit::http::{get, post_json, send};
use testkit::rig::{bearer, Rig, SidecarConfig, ADMIN};

#[tokio::test]
async fn a_data_dir_from_a_newer_build_is_refused_naming_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = SidecarConfig::new(&data);
    Sidecar::start(cfg.build()).await.unwrap().shutdown().await;
    storage::Store::open(&data.join("state")).unwrap().stamp_format(storage::FORMAT_VERSION + 1).unwrap();
    let err = Sidecar::start(cfg.build()).await.err().expect("a newer store must be refused");
    let text = err.to_string();
    assert!(text.contains(&format!("format version {}", storage::FORMAT_VERSION + 1)), "{text}");
    assert!(text.contains(&format!("this build's {}", storage::FORMAT_VERSION)), "{text}");
    assert!(text.contains(&data.join("state").display().to_string()), "names the store: {text}");
}

fn cli(args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clawbutler"));
    c.args(args).env_remove("CLAWBUTLER_CONFIG").env_remove("CLAWBUTLER_TOKEN");
    if let Some(t) = token {
        c.env("CLAWBUTLER_TOKEN", t);
    }
    c.output().unwrap()
}

// Multi-threaded: `cli` blocks its thread while the sidecar must answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_cli_works_against_a_running_sidecar() {
    let rig = Rig::holding("", "").await;
    let url = rig.control("");
    // Without an admin token the API refuses, with a hint.
    let out = cli(&["token", "create", "--role", "viewer", "--name", "ops-viewer", "--url", &url], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401") && err.contains("CLAWBUTLER_TOKEN"), "{err}");

    let out = cli(&["token", "create", "--role", "viewer", "--name", "ops-viewer", "--url", &url], Some(ADMIN));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let viewer = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!viewer.is_empty() && !viewer.contains(' '), "one token on stdout: {viewer:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown only once"));

    // The printed token works: it reads approvals and is refused a decision.
    let list = get(&rig.control("/api/v1/approvals"), &bearer(&viewer)).await;
    assert_eq!(list.status, 200, "{}", list.text());
    let held = rig.call("main", "needs-approval-1", "viewer may not decide this");
    let pending = rig.wait_pending("main", 1).await;
    let id = pending[0]["id"].as_str().unwrap();
    let r = rig.decide(&viewer, id, &json!({"decision": "allow-once", "expected_version": 1}), None).await;
    assert_eq!(r.status, 403, "{}", r.text());
    let r = rig.decide(ADMIN, id, &json!({"decision": "deny", "expected_version": 1}), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    held.await.unwrap();

    // list shows it (no secret), revoke through the API makes it stop working.
    let out = cli(&["token", "list", "--url", &url], Some(ADMIN));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let line = listed.lines().find(|l| l.contains("ops-viewer")).expect("listed").to_string();
    assert!(!listed.contains(&viewer), "secrets are never listed");
    let id = line.split('\t').next().unwrap();
    let out = cli(&["token", "revoke", id, "--url", &url], Some(ADMIN));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(get(&rig.control("/api/v1/approvals"), &bearer(&viewer)).await.status, 401);
    // Recorded with the admin as actor.
    let recs = rig.audit("kind=auth").await;
    assert!(recs.iter().any(|r| r["outcome"] == "token_created" && r["actor"] == "seeded-admin"), "{recs:?}");
}

#[tokio::test]
async fn token_cli_works_offline_on_a_stopped_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SidecarConfig::new(&dir.path().join("data")).listen("127.0.0.1:0", "127.0.0.1:1");
    std::fs::write(dir.path().join("clawbutler.toml"), cfg.to_toml()).unwrap();
    let conf = dir.path().join("clawbutler.toml").display().to_string();
    // Nothing listens on the control address: the CLI says so and uses the store directly.
    let out = cli(&["token", "create", "--role", "approver", "--name", "offline", "--config", &conf], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("looks stopped"));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let sc = Sidecar::start(cfg.listen("127.0.0.1:0", "127.0.0.1:0").build()).await.unwrap();
    let who = get(&format!("http://{}/api/v1/whoami", sc.control_addr), &bearer(&token)).await;
    assert_eq!(who.json()["role"], "approver", "{}", who.text());
    sc.shutdown().await;
}

/// For every API path the router serves, probe each method: whatever is not answered 405 is
/// served, and must be an operation in openapi.json. A route added without a spec entry, or a
/// method added to a path without its operation, fails here.
#[tokio::test]
async fn openapi_describes_every_served_method() {
    let rig = Rig::start("").await;
    let doc = get(&rig.control("/api/v1/openapi.json"), &[]).await.json();
    let methods = [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    let mut served = BTreeSet::new();
    for path in control_api::api_paths() {
        let concrete = path.replace("{id}", "x").replace("{seq}", "1").replace("{trace_id}", "t");
        for m in &methods {
            // No token and an empty body: auth or validation fails, but never with 405.
            let status = send(m.clone(), &rig.control(&concrete), &[], bytes::Bytes::new()).await.status;
            if status != 405 {
                served.insert((path, m.as_str().to_lowercase()));
            }
        }
    }
    assert!(served.len() > 25, "probing found too little: {served:?}");
    let missing: Vec<_> = served.iter().filter(|(p, m)| doc["paths"][*p].get(m.as_str()).is_none()).collect();
    assert!(missing.is_empty(), "served but not described in openapi.json: {missing:?}");
    for (p, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys().filter(|k| methods.iter().any(|x| x.as_str().eq_ignore_ascii_case(k)))
        {
            assert!(served.contains(&(p.as_str(), m.clone())), "openapi.json describes {m} {p}, which is not served");
        }
    }
}

#[tokio::test]
async fn every_metric_family_served_is_documented() {
    // A gateway link (to nothing) and a budget, so their families exist too.
    std::env::set_var("CB_TEST_METRICS_GATEWAY_TOKEN", "x");
    let rig = Rig::start(
        "[gateway]\nurl = \"ws://127.0.0.1:9\"\ntoken_env = \"CB_TEST_METRICS_GATEWAY_TOKEN\"\n[[budgets]]\nscope = \"global\"\nwindow = \"daily\"\nlimit_usd = 1.0\n",
    )
    .await;
    // A call and a reload, so families that appear on first use exist.
    post_json(
        &rig.url("/a/main/fake/v1/chat/completions"),
        &[],
        &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    post_json(&rig.control("/api/v1/policies/reload"), &bearer(ADMIN), &json!({})).await;
    let text = rig.metrics().await;
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let families: BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_whitespace().next()).collect();
    assert!(families.len() >= 14, "{families:?}");
    let undocumented: Vec<_> = families.iter().filter(|f| !doc.contains(&format!("`{f}`"))).collect();
    assert!(undocumented.is_empty(), "metric families missing from docs/metrics.md: {undocumented:?}");
}

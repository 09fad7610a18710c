//! Policy reloads on a live sidecar: a new bundle takes effect on the next call, a broken
//! bundle never replaces the good one, the file watcher picks up edits, and calls running
//! while bundles swap are all answered.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use testkit::http::{get, post_json};
use testkit::rig::Rig;

const AUTH: (&str, &str) = ("authorization", "Bearer test-admin-token");

fn copy_bundle(to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for e in std::fs::read_dir(shipped).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// An extra rule denying one model by name.
const DENY_FORBIDDEN: &str = r#"package clawbutler

model_denies contains f if {
	input.kind == "model_call"
	input.model.name == "forbidden-model"
	f := {"rule": "test.forbidden_model", "reason": "forbidden-model is switched off for this test", "risk": "high"}
}
"#;

fn chat(model: &str) -> serde_json::Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_swap_atomically_under_load_and_keep_the_last_good_bundle() {
    let bundle = tempfile::tempdir().unwrap();
    copy_bundle(bundle.path());
    let rig = Rig::start_with(&format!("dir = \"{}\"\nwatch = false", bundle.path().display()), "").await;
    let url = rig.url("/a/main/fake/v1/chat/completions");
    let status = get(&rig.control("/api/v1/policies"), &[AUTH]).await.json();
    let rev0 = status["revision"].as_str().unwrap().to_string();

    // Before: the model is allowed.
    let r = post_json(&url, &[], &chat("forbidden-model")).await;
    assert!(r.header("x-clawbutler-action").is_none(), "{}", r.text());

    // Load: calls keep flowing while bundles are swapped (good and broken ones).
    let load = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..30 {
                let batch: Vec<_> = (0..10)
                    .map(|_| {
                        let url = url.clone();
                        tokio::spawn(async move { post_json(&url, &[], &chat("gpt-4o-mini")).await.status })
                    })
                    .collect();
                for t in batch {
                    statuses.push(t.await.unwrap());
                }
            }
            statuses
        })
    };
    std::fs::write(bundle.path().join("zz_forbidden.rego"), DENY_FORBIDDEN).unwrap();
    let ok = post_json(&rig.control("/api/v1/policies/reload"), &[AUTH], &json!({})).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let rev1 = ok.json()["revision"].as_str().unwrap().to_string();
    assert_ne!(rev1, rev0);
    // A broken bundle: refused with the reason, the good one keeps serving.
    std::fs::write(bundle.path().join("zz_broken.rego"), "package clawbutler\n\nthis is not rego {\n").unwrap();
    let bad = post_json(&rig.control("/api/v1/policies/reload"), &[AUTH], &json!({})).await;
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(bad.text().contains("zz_broken.rego"), "the error names the file: {}", bad.text());
    let statuses = load.await.unwrap();
    assert_eq!(statuses.len(), 300);
    assert!(statuses.iter().all(|s| *s == 200), "a call failed during reloads: {statuses:?}");

    let status = get(&rig.control("/api/v1/policies"), &[AUTH]).await.json();
    assert_eq!(status["revision"], rev1.as_str(), "the broken bundle replaced the good one");
    assert!(status["last_error"].as_str().is_some_and(|e| e.contains("zz_broken.rego")), "{status}");
    // The new rule is in force on the next call, and the caller sees its reason.
    let r = post_json(&url, &[], &chat("forbidden-model")).await;
    assert_eq!(r.header("x-clawbutler-action"), Some("deny"));
    assert!(r.text().contains("forbidden-model is switched off"), "{}", r.text());
    // Reload attempts are audited with the caller as actor.
    let audit = get(&rig.control("/api/v1/audit?kind=policy_reload"), &[AUTH]).await.json();
    let actors: Vec<_> = audit["items"].as_array().unwrap().iter().map(|i| i["actor"].clone()).collect();
    assert!(actors.len() >= 2 && actors.iter().all(|a| a == "seeded-admin"), "{audit}");
    // Only admins reload.
    let viewer = post_json(&rig.control("/api/v1/policies/reload"), &[], &json!({})).await;
    assert_eq!(viewer.status, 401);
}

#[tokio::test]
async fn the_file_watcher_reloads_after_an_edit() {
    let bundle = tempfile::tempdir().unwrap();
    copy_bundle(bundle.path());
    let rig = Rig::start_with(&format!("dir = \"{}\"", bundle.path().display()), "").await;
    let url = rig.url("/a/main/fake/v1/chat/completions");
    std::fs::write(bundle.path().join("zz_forbidden.rego"), DENY_FORBIDDEN).unwrap();
    for _ in 0..100 {
        let r = post_json(&url, &[], &chat("forbidden-model")).await;
        if r.header("x-clawbutler-action") == Some("deny") {
            // The reload's audit record reaches the index with the next group commit.
            let audit_url = rig.control("/api/v1/audit?kind=policy_reload");
            testkit::wait::until("the watcher's policy_reload record", Duration::from_secs(10), || async {
                get(&audit_url, &[AUTH]).await.json()["items"][0]["actor"] == "watch"
            })
            .await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the edit was not picked up within 10 s");
}

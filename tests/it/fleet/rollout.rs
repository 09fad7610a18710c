//! Policy rollout across three sidecars on one PostgreSQL: a bundle signed with the fleet key
//! (made by `clawbutler fleet keygen`) and published on C (`clawbutler policy publish`) is
//! applied by A, B and C; calls through A and B are decided by its new rule and their audit
//! records carry its revision; the fleet view shows the revision on every sidecar. A bundle
//! whose own test fails and one signed with another key are refused by C's API (nothing is
//! stored); the same bundles written straight into the database are refused by every sidecar,
//! which keeps its last good bundle and reports why. Also measures the rollout time to three
//! sidecars (publish on C until all three serve the new revision) and prints it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::postgres::PgCluster;
use testkit::rig::{bearer, chat, reply_text, Rig, ADMIN};

use super::admin_post;

/// The published rule: agent `payroll` may not call models.
const RULE: &str = r#"package clawbutler

model_denies contains f if {
	input.agent == "payroll"
	f := {"rule": "fleet.payroll_paused", "reason": "payroll is paused fleet-wide", "risk": "high"}
}
"#;

const RULE_TEST: &str = r#"package clawbutler_test

test_payroll_is_paused if {
	d := decide(object.union(model_input("gpt-4o"), {"agent": "payroll"}))
	d.action == "deny"
	d.rule == "fleet.payroll_paused"
}
"#;

/// A test that cannot pass: the shipped bundle allows a plain model call of `main`.
const FAILING_TEST: &str = r#"package clawbutler_test

test_main_is_denied if {
	decide(model_input("gpt-4o")).action == "deny"
}
"#;

/// The shipped bundle with its tests, plus `extra` files, in `dir/name`.
fn bundle(dir: &Path, name: &str, extra: &[(&str, &str)]) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(&out).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, out.join(p.file_name().unwrap())).unwrap();
    }
    for (n, text) in extra {
        std::fs::write(out.join(n), text).unwrap();
    }
    out
}

/// Run the real binary off the runtime thread (the sidecars run on this runtime).
async fn cli(args: &[&str]) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clawbutler"));
    c.args(args).env_remove("CLAWBUTLER_CONFIG").env("CLAWBUTLER_TOKEN", ADMIN);
    let out = tokio::task::spawn_blocking(move || c.output().unwrap()).await.unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// One model call for `agent`: the reply text and whether it reached the upstream.
async fn call(rig: &Rig, agent: &str) -> (String, bool) {
    let before = rig.up.request_count();
    let r = post_json(&rig.url(&format!("/a/{agent}/fake/v1/chat/completions")), &[], &chat("gpt-4o-mini", "hi")).await;
    (format!("{} {}", r.status, reply_text(&r.json())), rig.up.request_count() > before)
}

async fn revision(rig: &Rig) -> String {
    let v = get(&rig.control("/api/v1/policies"), &bearer(ADMIN)).await.json();
    v["revision"].as_str().unwrap().to_string()
}

async fn fleet_view(rig: &Rig) -> Vec<Value> {
    let v = get(&rig.control("/api/v1/fleet/sidecars"), &bearer(ADMIN)).await.json();
    v["items"].as_array().unwrap().clone()
}

/// Wait until every sidecar serves a revision other than `old`; how long that took.
async fn all_move_from(rigs: &[Rig], old: &str) -> Duration {
    let t0 = Instant::now();
    for r in rigs {
        while revision(r).await == old {
            assert!(t0.elapsed() < Duration::from_secs(30), "the bundle did not reach every sidecar");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    t0.elapsed()
}

/// Wait until every row of the fleet view satisfies `ok`; the rows.
async fn view_until(rig: &Rig, what: &str, ok: impl Fn(&Value) -> bool) -> Vec<Value> {
    let last = std::sync::Mutex::new(Vec::new());
    testkit::wait::until(what, Duration::from_secs(20), || {
        let (last, ok) = (&last, &ok);
        async move {
            let rows = fleet_view(rig).await;
            let done = rows.len() == 3 && rows.iter().all(|s| ok(&s["policy"]));
            *last.lock().unwrap() = rows;
            done
        }
    })
    .await;
    last.into_inner().unwrap()
}

fn sign(dir: &Path, key: &Path) -> Value {
    let key = audit::keys::load_private(key).unwrap();
    serde_json::to_value(policy::SignedBundle::from_dir(dir, &key, chrono::Utc::now()).unwrap()).unwrap()
}

/// Store a bundle as a publisher bypassing the API would (someone with database access).
fn insert(pg: &PgCluster, b: &Value) -> i64 {
    let digest = serde_json::from_value::<policy::SignedBundle>(b.clone()).unwrap().digest();
    let sql = format!(
        "INSERT INTO fleet_policy (digest, files, published_at, signature, published_by, via_sidecar) VALUES \
         ('{digest}', $j${}$j$, '{}', '{}', 'db-user', 'none') RETURNING seq; NOTIFY clawbutler_policy",
        b["files"],
        b["published_at"].as_str().unwrap(),
        b["signature"].as_str().unwrap()
    );
    pg.psql(&sql).lines().next().unwrap().trim().parse().unwrap()
}

// Multi-threaded: the CLI blocks a thread while it talks to an in-process sidecar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_published_on_c_is_applied_by_all_and_bad_bundles_are_refused() {
    let Some(pg) = PgCluster::start_or_skip("fleet policy rollout") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("fleet-policy.key");
    let (ok, out, err) = cli(&["fleet", "keygen", "--out", key.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    let public = out.lines().find_map(|l| l.strip_prefix("public key: ")).expect(&out).to_string();
    let other_key = tmp.path().join("other.key");
    assert!(cli(&["fleet", "keygen", "--out", other_key.to_str().unwrap()]).await.0);
    let (ok, _, err) = cli(&["fleet", "keygen", "--out", key.to_str().unwrap()]).await;
    assert!(!ok && err.contains("exists"), "an existing key file is never overwritten: {err}");

    let rigs = pg.sidecars(3, &format!("policy_keys = [\"{public}\"]"), "").await;
    let (a, b, c) = (&rigs[0], &rigs[1], &rigs[2]);
    let r0 = revision(a).await;
    assert!(call(a, "payroll").await.1, "payroll passes before the rollout");
    view_until(b, "each sidecar reports its own bundle", |p| {
        p["revision"] == r0.as_str() && p["applied_seq"].is_null()
    })
    .await;

    // Publish on C with the CLI.
    let good = bundle(tmp.path(), "good", &[("fleet_rule.rego", RULE), ("fleet_rule_test.rego", RULE_TEST)]);
    let url = c.control("");
    let (ok, out, err) =
        cli(&["policy", "publish", good.to_str().unwrap(), "--key", key.to_str().unwrap(), "--url", &url]).await;
    assert!(ok, "{err}");
    let published: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(published["seq"], 1, "{published}");
    assert_eq!(published["via_sidecar"], "sc-c");
    all_move_from(&rigs, &r0).await;
    let r1 = revision(a).await;
    for r in &rigs {
        assert_eq!(revision(r).await, r1, "one revision fleet-wide");
    }

    // Calls through A and B are decided by the new rule; other agents still pass.
    for r in [a, b] {
        let (text, reached) = call(r, "payroll").await;
        assert!(!reached, "denied by the published rule: {text}");
        assert!(text.contains("payroll is paused fleet-wide"), "{text}");
        assert!(call(r, "main").await.1);
        let denied = r.model_calls("payroll", 1).await;
        let last = denied.last().unwrap();
        assert_eq!(last["rule"], "fleet.payroll_paused", "{last}");
        assert_eq!(last["bundle_revision"], r1.as_str(), "the decision's record carries the applied revision: {last}");
        let reloads = r.audit("kind=policy_reload").await;
        assert!(
            reloads.iter().any(|e| e["details"]["trigger"] == "fleet"
                && e["details"]["bundle"].as_str().unwrap_or("").starts_with("fleet bundle #1")
                && e["bundle_revision"] == r1.as_str()),
            "{reloads:?}"
        );
    }
    // The fleet view, on any sidecar, shows every sidecar's revision and bundle.
    let view = view_until(b, "every sidecar reports bundle #1", |p| p["applied_seq"] == 1).await;
    for s in &view {
        assert_eq!(s["policy"]["revision"], r1.as_str(), "{s}");
        assert!(s["policy"]["error"].is_null(), "{s}");
    }
    let v = get(&a.control("/api/v1/fleet/policy"), &bearer(ADMIN)).await.json();
    assert_eq!(v["newest"]["seq"], 1, "{v}");
    assert_eq!(v["newest"]["published_by"], "seeded-admin", "{v}");

    // Refused at the API: a bundle whose own test fails, and one signed with another key.
    let failing = bundle(tmp.path(), "failing", &[("fleet_rule.rego", RULE), ("zz_test.rego", FAILING_TEST)]);
    let (st, p) = admin_post(c, "/api/v1/fleet/policy", &sign(&failing, &key)).await;
    assert_eq!(st, 422, "{p}");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("tests failed") && detail.contains("test_main_is_denied"), "{detail}");
    let forged = sign(&good, &other_key);
    let (st, p) = admin_post(b, "/api/v1/fleet/policy", &forged).await;
    assert_eq!(st, 422, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("does not match"), "{p}");
    let mut altered = sign(&good, &key);
    altered["files"][0]["contents"] = json!("package clawbutler\n");
    assert_eq!(admin_post(a, "/api/v1/fleet/policy", &altered).await.0, 422, "altered after signing");
    let v = get(&a.control("/api/v1/fleet/policy"), &bearer(ADMIN)).await.json();
    assert_eq!(v["newest"]["seq"], 1, "nothing refused was stored: {v}");
    let c_audit = c.audit("kind=policy_reload").await;
    assert!(c_audit.iter().any(|e| e["outcome"] == "error" && e["details"]["action"] == "publish"), "{c_audit:?}");

    // Refused by every sidecar: the same bundles written straight into the database.
    let seq = insert(&pg, &sign(&failing, &key));
    let view = view_until(b, "every sidecar refuses the failing bundle", |p| p["refused_seq"] == seq).await;
    for s in &view {
        let error = s["policy"]["error"].as_str().unwrap();
        assert!(error.contains("tests failed") && error.contains("test_main_is_denied"), "{s}");
        assert_eq!(s["policy"]["applied_seq"], 1, "keeps the last good: {s}");
        assert_eq!(s["policy"]["revision"], r1.as_str());
    }
    let seq = insert(&pg, &sign(&good, &other_key));
    let view = view_until(b, "every sidecar refuses the forged bundle", |p| p["refused_seq"] == seq).await;
    for s in &view {
        assert!(s["policy"]["error"].as_str().unwrap().contains("does not match"), "{s}");
        assert_eq!(s["policy"]["revision"], r1.as_str());
    }
    for r in &rigs {
        assert!(!call(r, "payroll").await.1, "the last good bundle still decides");
        let reloads = r.audit("kind=policy_reload").await;
        assert!(reloads.iter().any(|e| e["details"]["trigger"] == "fleet" && e["outcome"] == "error"), "{reloads:?}");
    }

    // Rollout time to three sidecars: from the publish on C until A, B and C all serve it.
    // Two bundles take turns so every publication changes the revision.
    let other =
        bundle(tmp.path(), "other", &[("fleet_rule_test.rego", "package clawbutler_test\n\ntest_one if { true }\n")]);
    let (mut checked, mut applied) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let dir = if i % 2 == 0 { &other } else { &good };
        let before = revision(a).await;
        let body = sign(dir, &key);
        let t0 = Instant::now();
        let (st, p) = admin_post(c, "/api/v1/fleet/policy", &body).await;
        assert_eq!(st, 200, "{p}");
        checked.push(t0.elapsed());
        all_move_from(&rigs, &before).await;
        applied.push(t0.elapsed());
    }
    let ms = |v: &mut Vec<Duration>, i: usize| {
        v.sort();
        v[i].as_secs_f64() * 1000.0
    };
    println!(
        "FLEET POLICY ROLLOUT to 3 sidecars over 3 publications, ms: publish answered by C (its check, stored) \
         p50 {:.0} max {:.0}; until A, B and C all serve it p50 {:.0} max {:.0}",
        ms(&mut checked, 1),
        ms(&mut checked, 2),
        ms(&mut applied, 1),
        ms(&mut applied, 2)
    );
}

//! Critical backup imports are held for a human (issue #16, `docs/config-safety.md`
//! "Critical imports wait for approval"), in process: a sidecar linked to the fake gateway,
//! which serves a config with `config.get` and applies `config.patch` only on its current
//! hash, as OpenClaw does. One package, four imports: a non-critical one applies at once; a
//! critical one answers 202 and changes nothing until approved, then applies; a denied one
//! applies nothing; an approved one whose config changed in between is a conflict and
//! overwrites nothing. The same on a real gateway: `e2e_backups`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::fake_gateway::{FakeGateway, TOKEN};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, Rig, ADMIN};

const ENV: &str = "CLAWBUTLER_TEST_BACKUP_HOLD_GATEWAY_TOKEN";
const PASS: &str = "correct horse battery staple";

/// The config the package is made of: the agent may not run commands.
fn governed() -> Value {
    json!({"agents": {"entries": {"main": {"name": "Main", "model": "direct/m", "tools": {"deny": ["exec"]}}}},
           "models": {"providers": {"direct": {"baseUrl": "http://127.0.0.1:9/v1"}}}})
}

async fn import(rig: &Rig, id: &str) -> (u16, Value) {
    let body = json!({"id": id, "passphrase": PASS, "strategy": "exact_restore"});
    let r = post_json(&rig.control("/api/v1/backups/import"), &bearer(ADMIN), &body).await;
    (r.status.as_u16(), r.json())
}

/// Poll a held import until it left `awaiting_approval`/`applying`.
async fn settled(rig: &Rig, poll: &str) -> Value {
    let url = rig.control(poll);
    testkit::wait::until("the held import to settle", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let now = get(&url, &bearer(ADMIN)).await.json();
            !matches!(now["status"].as_str(), Some("awaiting_approval" | "applying"))
        }
    })
    .await;
    get(&url, &bearer(ADMIN)).await.json()
}

/// Decide a held import's approval as the admin; the HTTP status.
async fn decide(rig: &Rig, held: &Value, decision: &str) -> u16 {
    let a = &held["approval"];
    let body = json!({"decision": decision, "expected_version": a["version"], "reason": "checked by the test"});
    let r = rig.decide(ADMIN, a["id"].as_str().unwrap(), &body, None).await;
    r.status.as_u16()
}

fn patches(gw: &FakeGateway) -> usize {
    gw.shared.calls.lock().unwrap().iter().filter(|(_, m, _)| m == "config.patch").count()
}

fn outcomes(records: &[Value]) -> Vec<String> {
    records.iter().filter_map(|r| r["outcome"].as_str().map(str::to_string)).collect()
}

// Multi-threaded, as the sidecar runs: a package's scrypt runs on the blocking pool, and the
// fake gateway's ticks (on this same runtime) must keep flowing meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_import_waits_for_a_human_and_applies_only_on_what_they_saw() {
    std::env::set_var(ENV, TOKEN);
    let gw = FakeGateway::start().await;
    gw.set_config(governed());
    let rig = Rig::start(&format!("[gateway]\nurl = \"{}\"\ntoken_env = \"{ENV}\"\n", gw.url())).await;
    let link = rig.sidecar.gateway.clone().unwrap().link().clone();
    assert!(link.wait_connected(Duration::from_secs(10)).await);

    let r =
        post_json(&rig.control("/api/v1/backups"), &bearer(ADMIN), &json!({"intent": "backup", "passphrase": PASS}))
            .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let pkg = r.json()["id"].as_str().unwrap().to_string();

    // Not critical (a renamed agent is low risk): applied at once, as before.
    let mut renamed = governed();
    renamed["agents"]["entries"]["main"]["name"] = json!("Renamed outside");
    gw.set_config(renamed);
    let (code, v) = import(&rig, &pkg).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["applied"], true, "{v}");
    assert_eq!(gw.config().unwrap().doc, governed());

    // Critical (the tool policy and a provider endpoint): held, nothing changes.
    let mut open = governed();
    open["agents"]["entries"]["main"]["tools"] = json!({});
    open["models"]["providers"]["direct"]["baseUrl"] = json!("http://other.example/v1");
    gw.set_config(open.clone());
    let before = patches(&gw);
    let (code, held) = import(&rig, &pkg).await;
    assert_eq!(code, 202, "{held}");
    assert_eq!(held["status"], "awaiting_approval");
    assert_eq!(held["applied"], false);
    let a = &held["approval"];
    assert_eq!(a["kind"], "config_import", "{a}");
    assert_eq!(a["risk"], "critical");
    assert_eq!(a["agent"], "@global");
    let critical = a["subject"]["critical_paths"].as_array().unwrap();
    assert!(critical.iter().any(|p| p == "models.providers.direct.baseUrl"), "{a}");
    assert!(critical.iter().any(|p| p.as_str().unwrap().starts_with("agents.entries.main.tools")), "{a}");
    let subject = a["subject"].to_string();
    assert!(!subject.contains("127.0.0.1:9") && !subject.contains("other.example"), "no values: {subject}");
    assert!(!subject.contains(PASS), "never the key: {subject}");
    let poll = held["poll"].as_str().unwrap().to_string();
    assert_eq!(poll, format!("/api/v1/backups/import/{}", a["id"].as_str().unwrap()));
    let now = get(&rig.control(&poll), &bearer(ADMIN)).await.json();
    assert_eq!(now["status"], "awaiting_approval", "{now}");
    assert!(now.get("base_hash").is_none(), "{now}");
    assert_eq!(patches(&gw), before, "nothing applied while it waits");
    assert_eq!(gw.config().unwrap().doc, open);
    // Allow-always is refused: each one is approved on its own.
    assert_eq!(decide(&rig, &held, "allow-always").await, 422);

    let t0 = Instant::now();
    assert_eq!(decide(&rig, &held, "allow-once").await, 200);
    let done = settled(&rig, &poll).await;
    let applied_in = t0.elapsed();
    assert_eq!(done["status"], "applied", "{done}");
    assert_eq!(done["complete"], true, "{done}");
    assert!(done["checkpoint"].as_str().is_some_and(|c| c.contains("-backup-")), "{done}");
    assert_eq!(gw.config().unwrap().doc, governed(), "the package's config, as approved");
    eprintln!("approved critical import applied {:.2} s after the approval was posted", applied_in.as_secs_f64());

    // Denied: nothing applied, and the refusal is audited.
    gw.set_config(open.clone());
    let (code, held) = import(&rig, &pkg).await;
    assert_eq!(code, 202, "{held}");
    let before = patches(&gw);
    assert_eq!(decide(&rig, &held, "deny").await, 200);
    let done = settled(&rig, held["poll"].as_str().unwrap()).await;
    assert_eq!(done["status"], "denied", "{done}");
    assert!(done["why"].as_str().unwrap().contains("was not applied"), "{done}");
    assert_eq!(patches(&gw), before);
    assert_eq!(gw.config().unwrap().doc, open);

    // Approved, but the config changed after the approver saw it: a conflict, nothing
    // overwritten.
    let (code, held) = import(&rig, &pkg).await;
    assert_eq!(code, 202, "{held}");
    let mut edited = open.clone();
    edited["agents"]["entries"]["main"]["name"] = json!("Edited meanwhile");
    gw.set_config(edited.clone());
    let before = patches(&gw);
    assert_eq!(decide(&rig, &held, "allow-once").await, 200);
    let done = settled(&rig, held["poll"].as_str().unwrap()).await;
    assert_eq!(done["status"], "conflict", "{done}");
    assert!(done["why"].as_str().unwrap().contains("nothing was applied"), "{done}");
    assert_eq!(patches(&gw), before, "no config.patch was sent");
    assert_eq!(gw.config().unwrap().doc, edited, "the edit made meanwhile stays");

    // Unknown and malformed ids.
    let r = get(&rig.control("/api/v1/backups/import/0000-0000"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = get(&rig.control("/api/v1/backups/import/not%20an%20id"), &bearer(ADMIN)).await;
    assert_eq!(r.status, 400, "{}", r.text());

    let wanted = ["import_held", "imported", "import_refused", "import_conflict"];
    let records = rig
        .audit_until("kind=config", |r| {
            let seen = outcomes(r);
            wanted.iter().all(|w| seen.iter().any(|o| o == w))
        })
        .await;
    let approved = records
        .iter()
        .find(|r| r["outcome"] == "imported" && r["actor"].as_str().is_some_and(|a| a.contains("approved by")));
    assert!(approved.is_some(), "the approved import names its approver: {records:?}");
}

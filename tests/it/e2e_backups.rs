//! End to end: encrypted gateway backups (`.cbpkg`, issue #16) between two real OpenClaw
//! 2026.9.6 gateways, each linked to its own sidecar that can read its gateway's config file.
//!
//! Gateway 1 holds planted secrets (a provider key, an MCP server token), a cron job and
//! workspace identity files. Then:
//!
//! 1. a `backup` package of gateway 1 (no secret missing), downloaded: no secret in its bytes;
//! 2. to gateway 2, a wrong passphrase, a flipped byte, a truncated file and a newer format are
//!    each refused with their own message, and gateway 2's config does not change;
//! 3. an `exact_restore` preview changes nothing; the restore (through the real `clawbutler
//!    backup restore --wait` CLI) holds critical changes (secrets, endpoints, tool policy), so
//!    it waits in the approval inbox (the approval names paths, never a secret) and nothing
//!    changes; once approved it makes gateway 2's config (secrets included, read from its
//!    file), cron jobs and identity files equal gateway 1's, after a checkpoint package;
//! 4. `clone` and `share` packages hold none of the planted secrets (scanned decrypted);
//! 5. `merge` adds an agent gateway 1 gained without touching gateway 2's others;
//! 6. `replace_scope` of one agent, from a package the real `clawbutler backup create --out`
//!    wrote with a key file (a passphrase on it is refused), is critical (its tool policy):
//!    held; an outside edit lands before the approval, so the approved import is a conflict
//!    and overwrites nothing; asked again and approved, it replaces that agent only.
//!
//! Prints the create and restore times, and how long an approved import took to apply. Needs `scripts/install-openclaw.sh`; skipped with a
//! notice otherwise, failed when `CLAWBUTLER_E2E=1`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, Gateway};
use testkit::rig::{SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

const PASS: &str = "correct horse battery staple";
const KEY_DIRECT: &str = "sk-plantedDirectKey0123456789abcdef";
const MCP_TOKEN: &str = "planted-mcp-token-5f1e2d3c4b5a";
const SOUL: &str = "# Soul\nYou are the ops agent. Be terse.\n";

fn model(id: &str) -> Value {
    json!({"id": id, "name": id, "reasoning": false, "input": ["text"],
           "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
           "contextWindow": 128000, "maxTokens": 4096})
}

fn config_one(up: &str) -> Value {
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "direct": {"baseUrl": format!("{up}/v1"), "apiKey": KEY_DIRECT, "api": "openai-completions",
                       "models": [model("gpt-4o-mini")]}
        }},
        "mcp": {"servers": {"files": {"command": "npx", "args": ["-y", "files-mcp"], "env": {"FILES_TOKEN": MCP_TOKEN}}}},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": {
            "main": {"model": "direct/gpt-4o-mini"},
            "ops": {"model": "direct/gpt-4o-mini", "tools": {"deny": ["exec"]}}
        }},
    })
}

fn config_two(up: &str) -> Value {
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "local": {"baseUrl": format!("{up}/v1"), "apiKey": "k-local", "api": "openai-completions",
                      "models": [model("gpt-4o-mini")]}
        }},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": {
            "main": {"model": "local/gpt-4o-mini"}
        }},
    })
}

struct Side {
    gw: Gateway,
    sidecar: clawbutler::app::Sidecar,
    link: std::sync::Arc<gateway::Link>,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Side {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.sidecar.control_addr)
    }
    async fn get(&self, path: &str) -> (u16, Value, Vec<u8>) {
        let auth = format!("Bearer {ADMIN}");
        let r = testkit::http::get(&self.url(path), &[("authorization", &auth)]).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null), r.body.to_vec())
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let auth = format!("Bearer {ADMIN}");
        let r = testkit::http::post_json(&self.url(path), &[("authorization", &auth)], &body).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
    fn config_file(&self) -> PathBuf {
        self.gw.home().join(".openclaw/openclaw.json")
    }
    /// The gateway's config as `config.get` shows it, and as its file holds it (secrets in
    /// clear), both without the machine-local sections.
    async fn configs(&self) -> (String, Value, Value) {
        let v = self.link.call("config.get", json!({})).await.expect("config.get");
        let file: Value =
            serde_json::from_slice(&std::fs::read(self.config_file()).expect("config file")).expect("json");
        (v["hash"].as_str().unwrap_or_default().to_string(), portable(&v["parsed"]), portable(&file))
    }
    async fn cron(&self) -> BTreeMap<(String, String), Value> {
        let v = self.link.call("cron.list", json!({"includeDisabled": true, "limit": 200})).await.expect("cron.list");
        v["jobs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["payload"]["kind"] != "heartbeat" && j.get("declarationKey").is_none_or(Value::is_null))
            .map(|j| {
                let key =
                    (j["agentId"].as_str().unwrap_or("").to_string(), j["name"].as_str().unwrap_or("").to_string());
                (key, gateway::backup::portable_job(j))
            })
            .collect()
    }
    async fn file(&self, agent: &str, name: &str) -> Option<String> {
        let v = self.link.call("agents.files.get", json!({"agentId": agent, "name": name})).await.ok()?;
        v["file"]["content"].as_str().map(str::to_string)
    }
}

fn portable(c: &Value) -> Value {
    gateway::backup::plan::portable(c)
}

async fn start_side(install: &testkit::openclaw::Install, config: Value, env: &str, up: &str) -> Side {
    let gw = Gateway::start(install, config).await;
    std::env::set_var(env, gw.token());
    let dir = tempfile::tempdir().unwrap();
    let file = gw.home().join(".openclaw/openclaw.json");
    let cfg = SidecarConfig::new(dir.path())
        .listen("127.0.0.1:0", "127.0.0.1:0")
        .upstreams(up)
        .table(&format!(
            "[gateway]\nurl = \"{}\"\ntoken_env = \"{env}\"\nreconnect_initial_ms = 500\nreconnect_max_ms = 2000\nconfig_file = \"{}\"",
            gw.ws_url(),
            file.display()
        ))
        .build();
    let sidecar = clawbutler::app::Sidecar::start(cfg).await.expect("sidecar starts");
    let (link, stop) = gateway::attach::connect(&gw.ws_url(), env, dir.path()).await.expect("test client");
    Side { gw, sidecar, link, _stop: stop, _dir: dir }
}

/// A change made on the gateway by another client (the OpenClaw UI or CLI would do the same).
async fn outside_patch(link: &gateway::Link, patch: Value) {
    let v = link.call("config.get", json!({})).await.expect("config.get");
    let p = json!({"raw": patch.to_string(), "baseHash": v["hash"], "note": "an operator edits by hand"});
    link.call("config.patch", p).await.expect("outside config.patch");
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn wait_linked(side: &Side) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if side.get("/api/v1/agents/main/config/versions").await.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the sidecar never linked to its gateway");
}

/// Wait for the one pending backup import in `side`'s inbox and check it shows no secret.
async fn pending_import(side: &Side) -> Value {
    let t0 = Instant::now();
    let a = loop {
        let (code, page, _) = side.get("/api/v1/approvals?status=pending&kind=config_import").await;
        assert_eq!(code, 200, "{page}");
        if let Some(a) = page["items"].as_array().and_then(|i| i.first()) {
            break a.clone();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no backup import waiting for approval");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((a["risk"].as_str(), a["agent"].as_str()), (Some("critical"), Some("@global")), "{a}");
    let shown = a.to_string();
    assert!(!shown.contains(KEY_DIRECT) && !shown.contains(MCP_TOKEN) && !shown.contains(PASS), "{shown}");
    a
}

/// Allow an approval as the admin; returns when.
async fn allow(side: &Side, a: &Value) -> Instant {
    let id = a["id"].as_str().unwrap_or_default();
    let body = json!({"decision": "allow-once", "expected_version": a["version"]});
    let (code, r) = side.post(&format!("/api/v1/approvals/{id}/decision"), body).await;
    assert_eq!(code, 200, "{r}");
    Instant::now()
}

/// Poll a held import until it settled.
async fn settled(side: &Side, poll: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (code, v, _) = side.get(poll).await;
        assert_eq!(code, 200, "{v}");
        if !matches!(v["status"].as_str(), Some("awaiting_approval" | "applying")) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "the held import never settled: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write_pkg(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_backups_restore_exactly_on_a_second_gateway_and_refuse_bad_packages() {
    let Some(install) = find_or_skip("gateway_backups_restore_exactly_on_a_second_gateway_and_refuse_bad_packages")
    else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    let one = start_side(&install, config_one(&up.base_url()), "CLAWBUTLER_E2E_BACKUP_TOKEN_1", &up.base_url()).await;
    let two = start_side(&install, config_two(&up.base_url()), "CLAWBUTLER_E2E_BACKUP_TOKEN_2", &up.base_url()).await;
    wait_linked(&one).await;
    wait_linked(&two).await;

    // Gateway 1: a write through the gateway (so the file is in the gateway's own shape), a
    // cron job and identity files.
    outside_patch(&one.link, json!({"agents": {"entries": {"ops": {"identity": {"name": "Ops", "emoji": "🛠"}}}}}))
        .await;
    one.link
        .call(
            "cron.add",
            json!({"name": "nightly-report", "agentId": "ops", "enabled": true,
                   "schedule": {"kind": "every", "everyMs": 86_400_000}, "sessionTarget": "isolated",
                   "wakeMode": "now", "payload": {"kind": "agentTurn", "message": "write the nightly report"},
                   "delivery": {"mode": "none"}}),
        )
        .await
        .expect("cron.add");
    for (agent, name, content) in [("ops", "SOUL.md", SOUL), ("main", "AGENTS.md", "# Main\nAnswer in English.\n")] {
        one.link
            .call("agents.files.set", json!({"agentId": agent, "name": name, "content": content}))
            .await
            .unwrap_or_else(|e| panic!("agents.files.set {agent} {name}: {e}"));
    }

    // 1. The backup package.
    let t0 = Instant::now();
    let (code, made) = one.post("/api/v1/backups", json!({"intent": "backup", "passphrase": PASS})).await;
    let create_took = t0.elapsed();
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["manifest"]["secrets"]["missing"], json!([]), "every secret read from the file: {made}");
    assert!(made["manifest"]["secrets"]["included"].as_u64().unwrap_or(0) >= 2, "{made}");
    let id = made["id"].as_str().unwrap().to_string();
    let (code, _, bytes) = one.get(&format!("/api/v1/backups/{id}/download")).await;
    assert_eq!(code, 200);
    assert!(!contains(&bytes, KEY_DIRECT) && !contains(&bytes, MCP_TOKEN), "the secrets are encrypted");
    let (_, list, _) = one.get("/api/v1/backups").await;
    assert_eq!(list["items"][0]["id"], id.as_str(), "{list}");
    let (code, seen) = one.post("/api/v1/backups/inspect", json!({"id": id, "passphrase": PASS})).await;
    assert_eq!((code, seen["verified"].as_bool()), (200, Some(true)), "{seen}");
    assert!(!seen.to_string().contains(KEY_DIRECT), "inspect never shows a secret value");

    // 2. Bad packages: refused with their reason, gateway 2 unchanged.
    let (hash0, before, _) = two.configs().await;
    let mut flipped = bytes.clone();
    let n = flipped.len();
    flipped[n - 40] ^= 0x01;
    let mut newer = bytes.clone();
    newer[6..8].copy_from_slice(&9u16.to_be_bytes());
    let cases: [(&str, String, &str); 4] = [
        ("wrong passphrase", b64(&bytes), "wrong passphrase"),
        ("flipped byte", b64(&flipped), "tampered"),
        ("truncated", b64(&bytes[..n / 2]), "truncated"),
        ("newer format", b64(&newer), "newer than this ClawButler"),
    ];
    for (what, pkg, says) in cases {
        let pass = if what == "wrong passphrase" { "not the passphrase" } else { PASS };
        let (code, p) = two
            .post("/api/v1/backups/import", json!({"package": pkg, "passphrase": pass, "strategy": "exact_restore"}))
            .await;
        assert_eq!(code, 422, "{what}: {p}");
        assert!(p["detail"].as_str().unwrap_or("").contains(says), "{what}: {p}");
    }
    let (hash1, after, _) = two.configs().await;
    assert_eq!((hash1, after), (hash0, before.clone()), "a refused package changes nothing");

    // 3. exact_restore: the preview changes nothing, then the real CLI restores.
    let (code, preview) = two
        .post(
            "/api/v1/backups/import",
            json!({"package": b64(&bytes), "passphrase": PASS, "strategy": "exact_restore", "dry_run": true}),
        )
        .await;
    assert_eq!(code, 200, "{preview}");
    assert!(preview["by"]["agents"]["ops"].is_array(), "ops is added: {preview}");
    assert!(preview["by"]["sections"]["mcp"].is_array(), "{preview}");
    assert!(!preview.to_string().contains(KEY_DIRECT), "a preview masks secrets");
    assert_eq!(two.configs().await.1, before, "a preview changes nothing");
    let work = tempfile::tempdir().unwrap();
    let pkg_file = write_pkg(work.path(), "one.cbpkg", &bytes);
    let url = one.url("");
    let t0 = Instant::now();
    let cli = tokio::task::spawn_blocking({
        let url = two.url("");
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
                .args(["backup", "restore"])
                .arg(&pkg_file)
                .args(["--strategy", "exact_restore", "--wait", "120", "--url", &url, "--json"])
                .env("CLAWBUTLER_TOKEN", ADMIN)
                .env("CLAWBUTLER_BACKUP_PASSPHRASE", PASS)
                .output()
                .expect("run clawbutler")
        }
    });
    // Critical (secrets, endpoints, a tool policy): it waits, and gateway 2 is unchanged.
    let held = pending_import(&two).await;
    let critical = held["subject"]["critical_paths"].to_string();
    assert!(critical.contains("models.providers."), "{critical}");
    assert_eq!(two.configs().await.1, before, "nothing changes while the import waits");
    let allowed_at = allow(&two, &held).await;
    let cli = cli.await.unwrap();
    let restore_took = t0.elapsed();
    let approved_took = allowed_at.elapsed();
    let text = String::from_utf8_lossy(&cli.stdout).to_string();
    assert_eq!(cli.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&cli.stderr));
    let done: Value = serde_json::from_str(&text).expect("--json");
    assert_eq!((done["status"].as_str(), done["complete"].as_bool()), (Some("applied"), Some(true)), "{done}");
    assert_eq!(done["approval_id"], held["id"], "{done}");
    assert!(done["decided_by"].is_string(), "{done}");
    assert_eq!(done["not_restored"], json!([]), "{done}");
    let restore_ms = done["took_ms"].clone();
    let checkpoint = done["checkpoint"].as_str().unwrap_or_default();
    assert_eq!(two.get(&format!("/api/v1/backups/{checkpoint}")).await.0, 200, "the checkpoint is stored: {done}");
    let (_, shown1, file1) = one.configs().await;
    let (_, shown2, file2) = two.configs().await;
    assert_eq!(shown2, shown1, "config.get of gateway 2 equals gateway 1's");
    assert_eq!(file2, file1, "and so does its config file, secrets included");
    assert_eq!(file2["models"]["providers"]["direct"]["apiKey"], KEY_DIRECT);
    assert_eq!(two.cron().await, one.cron().await, "the cron jobs are the same");
    assert!(two.cron().await.contains_key(&("ops".to_string(), "nightly-report".to_string())));
    assert_eq!(two.file("ops", "SOUL.md").await.as_deref(), Some(SOUL), "identity files restored");
    assert_eq!(two.file("main", "AGENTS.md").await, one.file("main", "AGENTS.md").await);

    // 4. clone and share: no planted secret, in the bytes or decrypted.
    for intent in ["clone", "share"] {
        let (code, made) = one.post("/api/v1/backups", json!({"intent": intent, "passphrase": PASS})).await;
        assert_eq!(code, 201, "{intent}: {made}");
        let (_, _, bytes) = one.get(&format!("/api/v1/backups/{}/download", made["id"].as_str().unwrap())).await;
        let secret = gateway::backup::container::Secret::Passphrase(PASS.into());
        let (_, payload) = gateway::backup::container::open(&bytes, &secret).expect("opens");
        let plain = payload.to_string();
        for planted in [KEY_DIRECT, MCP_TOKEN, one.gw.token()] {
            assert!(!contains(&bytes, planted) && !plain.contains(planted), "{intent} holds a planted secret");
        }
        if intent == "share" {
            assert!(!plain.contains(&one.gw.home().display().to_string()), "no personal path: {plain}");
            assert!(payload["config"]["agents"]["entries"]["ops"].get("identity").is_none(), "no identity");
        } else {
            assert_eq!(
                payload["config"]["models"]["providers"]["direct"]["apiKey"],
                "__CBPKG_SECRET__:models.providers.direct.apiKey"
            );
        }
    }

    // 5. merge: gateway 1 gains an agent and changes ops; gateway 2 gets the agent only.
    outside_patch(
        &one.link,
        json!({"agents": {"entries": {"research": {"model": "direct/gpt-4o-mini"},
                                      "ops": {"tools": {"deny": ["exec", "browser"]}}}}}),
    )
    .await;
    let (code, made) = one.post("/api/v1/backups", json!({"intent": "backup", "passphrase": PASS})).await;
    assert_eq!(code, 201, "{made}");
    let (_, _, bytes) = one.get(&format!("/api/v1/backups/{}/download", made["id"].as_str().unwrap())).await;
    let (_, before, _) = two.configs().await;
    let (code, merged) = two
        .post("/api/v1/backups/import", json!({"package": b64(&bytes), "passphrase": PASS, "strategy": "merge"}))
        .await;
    assert_eq!((code, merged["complete"].as_bool()), (200, Some(true)), "{merged}");
    let (_, now, _) = two.configs().await;
    assert_eq!(now["agents"]["entries"]["research"]["model"], "direct/gpt-4o-mini", "the agent is added");
    assert_eq!(now["agents"]["entries"]["ops"], before["agents"]["entries"]["ops"], "ops untouched by a merge");
    assert_eq!(now["agents"]["entries"]["main"], before["agents"]["entries"]["main"], "main untouched");

    // 6. replace_scope with a key file, the package written by the real `clawbutler backup
    //    create --out`: ops becomes gateway 1's, research and main stay.
    let key_file = write_pkg(work.path(), "backup.key", hex::encode([42u8; 32]).as_bytes());
    let out = work.path().join("scoped.cbpkg");
    let cli = tokio::task::spawn_blocking({
        let (url, key_file, out) = (one.url(""), key_file.clone(), out.clone());
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
                .args(["backup", "create", "--intent", "backup", "--url", &url, "--key-file"])
                .arg(&key_file)
                .arg("--out")
                .arg(&out)
                .env("CLAWBUTLER_TOKEN", ADMIN)
                .output()
                .expect("run clawbutler")
        }
    })
    .await
    .unwrap();
    assert_eq!(cli.status.code(), Some(0), "{}", String::from_utf8_lossy(&cli.stderr));
    let scoped = std::fs::read(&out).expect("--out written");
    let (code, p) = two.post("/api/v1/backups/inspect", json!({"package": b64(&scoped), "passphrase": PASS})).await;
    assert_eq!(code, 422, "a passphrase on a key-file package: {p}");
    assert!(p["detail"].as_str().unwrap_or("").contains("locked with a key file"), "{p}");
    let key = hex::encode([42u8; 32]);
    let scoped_import = json!({"package": b64(&scoped), "key": key, "strategy": "replace_scope", "agents": ["ops"]});
    // Critical (ops's tool policy): held. An outside edit before the approval makes it a
    // conflict: nothing of the package is written, the edit stays.
    let (code, held) = two.post("/api/v1/backups/import", scoped_import.clone()).await;
    assert_eq!((code, held["status"].as_str()), (202, Some("awaiting_approval")), "{held}");
    outside_patch(&two.link, json!({"agents": {"entries": {"main": {"identity": {"name": "Edited meanwhile"}}}}}))
        .await;
    let (_, edited, _) = two.configs().await;
    let t_conflict = Instant::now();
    allow(&two, &pending_import(&two).await).await;
    let conflict = settled(&two, held["poll"].as_str().unwrap_or_default()).await;
    let conflict_took = t_conflict.elapsed();
    assert_eq!(conflict["status"], "conflict", "{conflict}");
    assert_eq!(two.configs().await.1, edited, "the approved import overwrote nothing");
    // The audit search indexes shortly after the append.
    testkit::wait::until("the import_conflict audit record", Duration::from_secs(10), || async {
        let (_, audit, _) = two.get("/api/v1/audit?kind=config&limit=50").await;
        audit["items"].as_array().into_iter().flatten().any(|r| r["outcome"] == "import_conflict")
    })
    .await;
    // Asked again on the config as it is now, and approved: applied.
    let before = edited;
    let (code, held) = two.post("/api/v1/backups/import", scoped_import).await;
    assert_eq!((code, held["status"].as_str()), (202, Some("awaiting_approval")), "{held}");
    allow(&two, &pending_import(&two).await).await;
    let done = settled(&two, held["poll"].as_str().unwrap_or_default()).await;
    assert_eq!((done["status"].as_str(), done["complete"].as_bool()), (Some("applied"), Some(true)), "{done}");
    let (_, now, _) = two.configs().await;
    let (_, theirs, _) = one.configs().await;
    assert_eq!(now["agents"]["entries"]["ops"], theirs["agents"]["entries"]["ops"], "ops replaced");
    assert_eq!(now["agents"]["entries"]["research"], before["agents"]["entries"]["research"]);
    assert_eq!(now["agents"]["entries"]["main"], before["agents"]["entries"]["main"]);

    eprintln!(
        "backup create (HTTP, real gateway, scrypt N=2^15): {create_took:?}; exact_restore through the CLI: {restore_took:?} \
         (import took {restore_ms} ms inside the sidecar; the CLI returned {approved_took:?} after the approval was \
         posted); an approved import hit by an outside edit was refused {conflict_took:?} after the approval; \
         package {} bytes; control API {url}",
        bytes.len()
    );

    for side in [one, two] {
        let _ = side._stop.send(true);
        side.sidecar.shutdown().await;
        drop(side.gw);
    }
    up.shutdown().await;
}

//! "Allow always" that cannot turn into "allow anything".

use std::time::Duration;

use governance::approvals::pattern::{self, scope_matches, shell_ops, Subject};
use serde_json::{json, Value};
use testkit::fake_gateway::{event, Cmd, FakeGateway, TOKEN};
use testkit::http::post_json;
use testkit::rig::{bearer, Rig, ADMIN};

/// A seeded xorshift (the same cases every run; the seed is in the failure message).
fn rng(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    }
}

const WORDS: [&str; 24] = [
    "git",
    "status",
    "sudo",
    "systemctl",
    "nginx",
    "ls",
    "-la",
    "rm",
    "-rf",
    "/",
    "build",
    "x",
    "echo",
    "'a b'",
    "é",
    "ı",
    "--no-preserve-root",
    "/etc/passwd",
    "make",
    "all",
    "cd",
    "=",
    "v1.2",
    "\"q\"",
];
const METAS: [&str; 12] = ["*", "?", "[abc]", "[!x]", "{a,b}", "\\", "]", "}", "**", "\\*", "[", "{"];
const OPS: [&str; 16] =
    [";", "&&", "||", "|", "\n", "$(id)", "`id`", ">", ">>", "<", "&", "(", ")", "$HOME", "\\n", "\r"];

fn piece(next: &mut impl FnMut(usize) -> usize, ops: bool) -> String {
    match next(if ops { 10 } else { 8 }) {
        0..=5 => WORDS[next(WORDS.len())].to_string(),
        6 | 7 => METAS[next(METAS.len())].to_string(),
        _ => OPS[next(OPS.len())].to_string(),
    }
}

fn command(next: &mut impl FnMut(usize) -> usize, ops: bool) -> String {
    let n = 1 + next(6);
    let mut parts = Vec::new();
    for _ in 0..n {
        parts.push(piece(next, ops));
    }
    parts.join(if next(4) == 0 { "" } else { " " })
}

/// An exec call as `grants.rego` sees it (no argv: the args are the command line).
fn exec(cmd: &str) -> Subject<'_> {
    Subject { kind: decision::CallKind::Exec, text: cmd, args: cmd, carries_command: false }
}

/// Run `cases` (pattern, command, expected) through the shipped `grants.rego` with the real
/// engine: a generated Rego test file beside the shipped bundle, one test rule per chunk.
fn rego_disagreements(cases: &[(String, String, bool)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let bundle = testkit::rig::bundle_dir(dir.path(), &[]);
    let mut text = String::from("package clawbutler_prop_test\n\n");
    text.push_str(
        "got(c) := true if {\n\tinp := {\"version\": 1, \"kind\": \"exec\", \"agent\": \"main\", \"trace_id\": \"t\", \
         \"now\": \"2026-06-01T12:00:00Z\", \"exec\": {\"command\": c.c, \"argv\": [], \"cwd\": \"/w\", \"workspace\": \"/w\"}, \
         \"cost\": {}, \"budgets\": [], \"grants\": [{\"id\": \"g\", \"agent\": \"main\", \"kind\": \"exec\", \"pattern\": c.p, \
         \"arg_pattern\": null, \"expires_at\": null}]}\n\t\"g\" in data.clawbutler.matching_grants with input as inp\n} else := false\n\n",
    );
    for (i, chunk) in cases.chunks(40).enumerate() {
        // One case per line: the Rego parser limits a line to 1024 columns.
        let list: Vec<String> = chunk.iter().map(|(p, c, w)| json!({"p": p, "c": c, "want": w}).to_string()).collect();
        text.push_str(&format!(
            "cases_{i} := [\n{}\n]\n\ntest_chunk_{i} if {{\n\tbad := [c | some c in cases_{i}; got(c) != c.want]\n\tprint(bad)\n\tcount(bad) == 0\n}}\n\n",
            list.join(",\n")
        ));
    }
    std::fs::write(bundle.join("zz_prop_test.rego"), text).unwrap();
    let report = policy::run_tests(&policy::BundleSource::Dir(bundle), &Value::Null).unwrap();
    assert!(report.results.iter().filter(|r| r.name.starts_with("test_chunk_")).count() == cases.chunks(40).count());
    report.results.iter().filter(|r| !r.passed).map(|r| format!("{}: {:?}", r.name, r.error)).collect()
}

#[test]
fn a_grant_derived_from_any_held_command_never_allows_an_added_shell_operator() {
    let seed = 0x5eed_c1a3_u64;
    let mut next = rng(seed);
    let mut cases: Vec<(String, String, bool)> = Vec::new();
    for _ in 0..160 {
        let held = command(&mut next, true);
        let grant = pattern::literal(&held);
        assert!(scope_matches(&grant, None, &exec(&held)), "seed {seed:#x}: {grant:?} must match {held:?}");
        cases.push((grant.clone(), held.clone(), true));
        // The attacker's variants: an operator (and more) appended, prepended or inserted.
        let op = OPS[next(OPS.len())];
        let tail = command(&mut next, false);
        let at = held.char_indices().map(|(i, _)| i).nth(next(held.chars().count().max(1))).unwrap_or(held.len());
        for attack in [
            format!("{held}{op}{tail}"),
            format!("{held} {op} {tail}"),
            format!("{tail}{op}{held}"),
            format!("{}{op}{}", &held[..at], &held[at..]),
            format!("{held}\nrm -rf / --no-preserve-root"),
        ] {
            let allowed = scope_matches(&grant, None, &exec(&attack));
            assert!(!allowed, "seed {seed:#x}: grant {grant:?} (from {held:?}) allows {attack:?}");
            cases.push((grant.clone(), attack, false));
        }
    }
    // Globs a human might write from a held command: wildcards replace words. They may match
    // other commands, but never one with other shell operators than they write.
    let mut wild = 0;
    for _ in 0..200 {
        let held = command(&mut next, true);
        let words: Vec<&str> = held.split(' ').collect();
        let glob: Vec<String> = words
            .iter()
            .map(|w| match next(3) {
                0 => "*".to_string(),
                1 => "?*".to_string(),
                _ => pattern::literal(w),
            })
            .collect();
        let glob = glob.join(" ");
        if pattern::Matcher::new(&glob).is_err() {
            continue;
        }
        for cmd in [held.clone(), command(&mut next, true), format!("{held}; rm -rf /"), format!("{held} $(id)")] {
            let m = scope_matches(&glob, None, &exec(&cmd));
            if m {
                wild += 1;
                assert_eq!(shell_ops(&glob), shell_ops(&cmd), "seed {seed:#x}: {glob:?} matched {cmd:?}");
            }
            cases.push((glob.clone(), cmd, m));
        }
    }
    assert!(wild > 50, "the human-written globs matched something ({wild}): the property is not vacuous");
    // Random pattern/command pairs, for parity only.
    for _ in 0..150 {
        let (p, c) = (command(&mut next, true), command(&mut next, true));
        if pattern::Matcher::new(&p).is_ok() {
            let m = scope_matches(&p, None, &exec(&c));
            cases.push((p, c, m));
        }
    }
    // The same answers from grants.rego, evaluated by the real engine.
    let bad = rego_disagreements(&cases);
    assert!(
        bad.is_empty(),
        "seed {seed:#x}: grants.rego and pattern.rs disagree on {} chunk(s):\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[tokio::test]
async fn patterns_that_match_everything_need_confirm_any() {
    let rig = Rig::start("").await;
    let url = rig.control("/api/v1/grants");
    for (kind, p) in [
        ("exec", "?*"),
        ("exec", "[!x]*"),
        ("exec", "**"),
        ("exec", "*"),
        ("exec", "sudo *"),
        ("exec", "bash -c *"),
        ("model_call", "?*"),
        ("tool_call", "[!x]*"),
    ] {
        let body = json!({"agent": "main", "kind": kind, "pattern": p});
        let r = post_json(&url, &bearer(ADMIN), &body).await;
        assert_eq!(r.status, 422, "{kind} {p}: {}", r.text());
        assert!(r.json()["detail"].as_str().unwrap().contains("confirm_any"), "{}", r.text());
        let mut confirmed = body.clone();
        confirmed["confirm_any"] = json!(true);
        let r = post_json(&url, &bearer(ADMIN), &confirmed).await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(r.json()["breadth"], "any", "{kind} {p}");
    }
    let r = post_json(&url, &bearer(ADMIN), &json!({"agent": "main", "kind": "exec", "pattern": "git *"})).await;
    assert_eq!((r.status.as_u16(), r.json()["breadth"].as_str()), (201, Some("pattern")), "{}", r.text());
    for bad in ["ls [;]*", "ls ["] {
        let r = post_json(&url, &bearer(ADMIN), &json!({"agent": "main", "kind": "exec", "pattern": bad})).await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
    }
    let r = post_json(&url, &bearer(ADMIN), &json!({"agent": "Main", "kind": "exec", "pattern": "ls"})).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("did you mean 'main'"), "{}", r.text());
    rig.sidecar.shutdown().await;
}

/// The reported reproduction over a gateway link: `sudo systemctl status nginx*` is held and
/// approved "always" with the suggested scope; the same command then runs without asking, and
/// `sudo systemctl status nginx; rm -rf / --no-preserve-root` is held again.
#[tokio::test]
async fn the_reported_widening_stays_held_over_the_gateway_link() {
    const ENV: &str = "CLAWBUTLER_TEST_IDENTITY_GATEWAY_TOKEN";
    std::env::set_var(ENV, TOKEN);
    let gw = FakeGateway::start().await;
    let rig = Rig::start(&format!("[gateway]\nurl = \"{}\"\ntoken_env = \"{ENV}\"\n", gw.url())).await;
    let link = rig.sidecar.gateway.clone().unwrap().link().clone();
    assert!(link.wait_connected(Duration::from_secs(10)).await);
    // After connecting the link reconciles with `exec.approval.list` (empty here), which would
    // cancel a hold made before it: start once that re-read is done.
    for _ in 0..500 {
        if gw.methods_in(1).contains(&"exec.approval.list".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ask = |id: &str, cmd: &str| {
        let payload =
            json!({"id": id, "request": {"command": cmd, "agentId": "main", "sessionKey": "agent:main:main"}});
        gw.cmd(Cmd::Send(event("exec.approval.requested", payload, None)));
    };
    let resolved = |id: &str| -> Option<String> {
        gw.shared.calls.lock().unwrap().iter().find_map(|(_, m, p)| {
            (m == "exec.approval.resolve" && p["id"] == id)
                .then(|| p["decision"].as_str().unwrap_or_default().to_string())
        })
    };
    let held = "sudo systemctl status nginx*";
    ask("ap-1", held);
    let a = rig.wait_pending("main", 1).await.remove(0);
    assert_eq!(a["suggested_scope"]["pattern"], "sudo systemctl status nginx\\*", "{a}");
    assert_eq!(a["suggested_scope"]["breadth"], "exact", "{a}");
    let r = rig
        .decide(
            ADMIN,
            a["id"].as_str().unwrap(),
            &json!({"decision": "allow-always", "expected_version": a["version"]}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    ask("ap-2", "sudo systemctl status nginx; rm -rf / --no-preserve-root");
    ask("ap-3", held);
    let pending = rig.wait_pending("main", 1).await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["external_id"], "ap-2", "the widened command is held for a human");
    for _ in 0..100 {
        if resolved("ap-3").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(resolved("ap-1").as_deref(), Some("allow-once"));
    assert_eq!(resolved("ap-3").as_deref(), Some("allow-once"), "the exact command is allowed by the grant");
    assert_eq!(resolved("ap-2"), None, "nothing allowed the widened command");
    rig.sidecar.shutdown().await;
}

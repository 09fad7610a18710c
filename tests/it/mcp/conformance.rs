//! The official MCP conformance suite (`@modelcontextprotocol/conformance` 0.1.16, every
//! server scenario) against the project's fixture server, once directly and once through
//! the sidecar (policy allow-all for the fixture's tools, no name prefix for that one
//! upstream, the agent served without a token because the suite sends no headers). Every
//! check must pass directly, and through the sidecar each check must end the same way with
//! the same details (content, not only pass counts), except the differences listed with
//! their reason in `tests/conformance/baseline.txt` (never a failure: no check may fail through
//! the sidecar, baseline or not).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::{http_server, tools, McpRig};

/// Keys whose values differ between any two runs (times, ids, URLs, headers).
const VOLATILE: [&str; 11] = [
    "timestamp",
    "serverUrl",
    "eventId",
    "lastEventId",
    "sessionId",
    "date",
    "mcp-session-id",
    "url",
    "hostHeader",
    "originHeader",
    "headers",
];

fn norm(v: &Value, parent: Option<&str>) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !(VOLATILE.contains(&k.as_str()) || parent == Some("event") && k.as_str() == "id"))
                .map(|(k, x)| (k.clone(), norm(x, Some(k))))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| norm(x, parent)).collect()),
        Value::String(s) => Value::String(uuid_free(s)),
        other => other.clone(),
    }
}

/// `s` with every UUID replaced by `<uuid>`.
fn uuid_free(s: &str) -> String {
    let b = s.as_bytes();
    let shape = |i: usize| {
        let d = [8, 13, 18, 23];
        (0..36).all(|k| {
            let c = b[i + k];
            if d.contains(&k) {
                c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if i + 36 <= b.len() && shape(i) {
            out.push_str("<uuid>");
            i += 36;
        } else {
            let ch = s[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Where `<scenario>-<YYYY-MM-DDT...>` has its timestamp (the first `-dddd-dd-ddT`).
fn timestamp_at(name: &str) -> usize {
    let b = name.as_bytes();
    let at = |i: usize| {
        let pat = b"-dddd-dd-ddT";
        i + pat.len() <= b.len()
            && pat.iter().enumerate().all(|(k, p)| if *p == b'd' { b[i + k].is_ascii_digit() } else { b[i + k] == *p })
    };
    (0..b.len()).find(|i| at(*i)).unwrap_or_else(|| panic!("no timestamp in {name}"))
}

/// (scenario, check id, index) → (status, normalized details, error message).
type Checks = BTreeMap<(String, String, usize), (String, Value, Value)>;

fn load(dir: &Path) -> Checks {
    let mut out = Checks::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("server-") else { continue };
        let scenario = rest[..timestamp_at(rest)].to_string();
        let checks: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(p.join("checks.json")).unwrap()).unwrap();
        for (i, c) in checks.iter().enumerate() {
            out.insert(
                (scenario.clone(), c["id"].as_str().unwrap().to_string(), i),
                (c["status"].as_str().unwrap().to_string(), norm(&c["details"], None), c["errorMessage"].clone()),
            );
        }
    }
    out
}

/// The accepted differences: `<scenario> <check id>  # reason` lines.
fn baseline() -> Vec<(String, String)> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/baseline.txt");
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let l = l.split('#').next().unwrap().trim();
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect()
}

async fn run_suite(tools: &testkit::mcp::Tools, url: &str, out: &Path) -> String {
    let o = tokio::process::Command::new(tools.node())
        .arg(tools.conformance())
        .args(["server", "--url", url, "--suite", "all", "-o"])
        .arg(out)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_the_same_through_the_sidecar() {
    let Some(tools) = tools("mcp::conformance::the_conformance_suite_passes_the_same_through_the_sidecar") else {
        return;
    };
    let scripts = Arc::new(tools.scripts());
    let fx = scripts.fixture_http(&[]);
    let m = McpRig::start(
        &format!("[mcp]\nopen_agents = [\"conf\"]\n{}", http_server("conf", &fx.url(), "prefix = \"\"")),
        &[],
    )
    .await;
    // The fixture adds a tool 2 s after it starts: both runs must see the same list.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let out = tempfile::tempdir().unwrap();
    let (direct_dir, proxied_dir) = (out.path().join("direct"), out.path().join("proxied"));
    let direct_log = run_suite(&tools, &fx.url(), &direct_dir).await;
    let proxied_log = run_suite(&tools, &m.endpoint("conf"), &proxied_dir).await;
    let (direct, proxied) = (load(&direct_dir), load(&proxied_dir));

    let scenarios: std::collections::BTreeSet<&String> = direct.keys().map(|k| &k.0).collect();
    assert!(scenarios.len() >= 30, "{} scenarios ran directly:\n{direct_log}", scenarios.len());
    let failing: Vec<_> = direct.iter().filter(|(_, v)| v.0 == "FAILURE").map(|(k, _)| k).collect();
    assert!(failing.is_empty(), "the fixture fails checks directly: {failing:?}\n{direct_log}");

    let failing: Vec<_> = proxied.iter().filter(|(_, v)| v.0 == "FAILURE").collect();
    assert!(failing.is_empty(), "checks fail through the sidecar: {failing:?}\n{proxied_log}");
    let accepted = baseline();
    let mut differ = Vec::new();
    for k in direct.keys().chain(proxied.keys()).collect::<std::collections::BTreeSet<_>>() {
        if direct.get(k) != proxied.get(k) && !accepted.iter().any(|(s, c)| *s == k.0 && (c == "*" || *c == k.1)) {
            differ.push(format!(
                "{} / {}:\n  direct : {}\n  proxied: {}",
                k.0,
                k.1,
                serde_json::to_string(&direct.get(k)).unwrap(),
                serde_json::to_string(&proxied.get(k)).unwrap()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} checks differ through the sidecar:\n{}\n{proxied_log}",
        differ.len(),
        differ.join("\n")
    );
    let passed = |c: &Checks| c.values().filter(|v| v.0 == "SUCCESS").count();
    eprintln!(
        "conformance: {} scenarios; checks passed directly {}/{}, through the sidecar {}/{}",
        scenarios.len(),
        passed(&direct),
        direct.len(),
        passed(&proxied),
        proxied.len()
    );
}

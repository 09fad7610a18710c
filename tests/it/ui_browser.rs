//! The web console in a real browser: Debian's headless Chromium driven over W3C WebDriver by
//! chromedriver (spawned here on a free port), against a sidecar started in process whose
//! policy holds one model. An approver signs in, sees the held call appear live, approves it
//! and the caller gets its answer; a second held call is denied from a phone-sized window in
//! Simplified Chinese and the caller gets a refusal. Screenshots land in
//! `target/ui-artifacts/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/install-browser.sh`;
//! override with `CLAWBUTLER_CHROMIUM` / `CLAWBUTLER_CHROMEDRIVER`). Without them the test
//! prints a notice and passes, unless `CLAWBUTLER_E2E=1`, which makes their absence a failure.

use std::os::unix::process::CommandExt;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use http::Method;
use serde_json::{json, Value};
use testkit::http::{get, post_json, send};
use testkit::rig::{Rig, ADMIN};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The model name the test bundle holds for a human.
const HELD_MODEL: &str = "gpt-needs-approval";

/// A policy rule added to the shipped bundle: calls to `HELD_MODEL` wait for a human.
const HOLD_RULE: &str = r#"package clawbutler

hold_findings contains f if {
	input.kind == "model_call"
	input.model.name == "gpt-needs-approval"
	f := {"rule": "test.model_needs_approval", "reason": "Calls to gpt-needs-approval need a human's approval", "risk": "high"}
}
"#;

pub(crate) fn browser_paths() -> Option<(PathBuf, PathBuf)> {
    let chromium = PathBuf::from(std::env::var("CLAWBUTLER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let driver =
        PathBuf::from(std::env::var("CLAWBUTLER_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into()));
    if chromium.exists() && driver.exists() {
        return Some((chromium, driver));
    }
    let msg = format!(
        "ui_browser: {} or {} is missing (run scripts/install-browser.sh)",
        chromium.display(),
        driver.display()
    );
    assert!(std::env::var("CLAWBUTLER_E2E").as_deref() != Ok("1"), "{msg}; CLAWBUTLER_E2E=1 makes this a failure");
    eprintln!("SKIPPED {msg}");
    None
}

pub(crate) fn artifacts_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// chromedriver, killed (by its own pid) when dropped.
pub(crate) struct Driver {
    child: Child,
    base: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started share a process group of their own: end the
        // whole group, so a failing test never leaves a browser behind.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    pub(crate) async fn start(bin: &Path) -> Driver {
        // Below the ephemeral range: the driver binds it a moment later.
        let port = testkit::openclaw::free_port();
        let child = Command::new(bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let d = Driver { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        d
    }
}

/// One WebDriver session (a fresh browser profile).
pub(crate) struct Browser {
    base: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn open(driver: &Driver, chromium: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,900", "--lang=en-US",
                         format!("--user-data-dir={}", profile.path().display())],
            },
        }}});
        let r = post_json(&format!("{}/session", driver.base), &[], &caps).await;
        let v = r.json();
        let id = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("new session failed: {v}")).to_string();
        Browser { base: format!("{}/session/{id}", driver.base), _profile: profile }
    }

    pub(crate) async fn cmd(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let r = match body {
            Some(b) => send(method, &url, &[("content-type", "application/json")], b.to_string().into()).await,
            None => send(method, &url, &[], bytes::Bytes::new()).await,
        };
        let v = r.json();
        assert!(r.status.is_success(), "WebDriver {path}: {} {v}", r.status);
        v["value"].clone()
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.cmd(Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    /// Run JS in the page (`return ...;`).
    pub(crate) async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// Wait until the JS expression is truthy; returns its value.
    pub(crate) async fn wait_js(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // An expression on an element the page has not rendered yet throws (null.textContent):
            // that is "not yet", not a failure.
            let v = self.js(&format!("try {{ return ({expr}); }} catch (e) {{ return null; }}"), json!([])).await;
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                let body = self.js("return document.body.innerText;", json!([])).await;
                panic!("timed out waiting for {what} ({expr}); page text:\n{}", body.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element a CSS selector matches (waits for it; retries when a live re-render swaps
    /// the node between the check and the lookup).
    pub(crate) async fn find(&self, css: &str) -> String {
        let sel = serde_json::to_string(css).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.wait_js(css, &format!("document.querySelector({sel})")).await;
            let url = format!("{}/element", self.base);
            let body = json!({"using": "css selector", "value": css}).to_string();
            let r = send(Method::POST, &url, &[("content-type", "application/json")], body.into()).await;
            if r.status.is_success() {
                let v = r.json();
                return v["value"][ELEMENT].as_str().unwrap_or_else(|| panic!("find {css}: {v}")).to_string();
            }
            assert!(Instant::now() < deadline, "find {css}: {} {}", r.status, r.text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn click(&self, css: &str) {
        self.on_element(css, Method::POST, "click").await;
    }

    /// Look `css` up and send `method` `/element/{e}/{action}` for it; when a live update
    /// replaced the node between the lookup and the command (a stale element), look it up
    /// again, a few times.
    async fn on_element(&self, css: &str, method: Method, action: &str) -> testkit::http::HttpResponse {
        for attempt in 0..5 {
            let e = self.find(css).await;
            let url = format!("{}/element/{e}/{action}", self.base);
            let r = if method == Method::POST {
                send(Method::POST, &url, &[("content-type", "application/json")], "{}".into()).await
            } else {
                send(method.clone(), &url, &[], bytes::Bytes::new()).await
            };
            if r.status.is_success() {
                return r;
            }
            assert!(attempt < 4 && r.text().contains("stale element"), "{action} {css}: {} {}", r.status, r.text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        unreachable!("the fifth stale answer fails the assertion above")
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(Method::POST, &format!("/element/{e}/clear"), Some(json!({}))).await;
        self.cmd(Method::POST, &format!("/element/{e}/value"), Some(json!({ "text": text }))).await;
    }

    pub(crate) async fn text(&self, css: &str) -> String {
        let r = self.on_element(css, Method::GET, "text").await;
        r.json()["value"].as_str().unwrap_or_default().to_string()
    }

    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.cmd(Method::POST, "/window/rect", Some(json!({ "width": width, "height": height }))).await;
    }

    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(b64.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        let path = artifacts_dir().join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }

    pub(crate) async fn close(self) {
        let _ = send(Method::DELETE, &self.base, &[], bytes::Bytes::new()).await;
    }
}

/// The shipped bundle plus [`HOLD_RULE`], in a temp dir for `[policies] dir`.
fn hold_bundle() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for e in std::fs::read_dir(&shipped).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") {
            std::fs::copy(&p, dir.path().join(&name)).unwrap();
        }
    }
    std::fs::write(dir.path().join("zz_test_hold.rego"), HOLD_RULE).unwrap();
    dir
}

/// A chat call to the held model, run in the background; resolves when the sidecar answers.
fn held_call(rig: &Rig, prompt: &str) -> tokio::task::JoinHandle<testkit::http::HttpResponse> {
    let url = rig.url("/a/main/fake/v1/chat/completions");
    let body = json!({"model": HELD_MODEL, "stream": false, "messages": [{"role": "user", "content": prompt}]});
    tokio::spawn(async move { post_json(&url, &[], &body).await })
}

async fn finished(
    call: tokio::task::JoinHandle<testkit::http::HttpResponse>,
    what: &str,
) -> testkit::http::HttpResponse {
    tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .unwrap_or_else(|_| panic!("{what}: the held call did not complete"))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approver_signs_in_sees_a_held_call_live_and_approves_it() {
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let bundle = hold_bundle();
    // The held model has a price: under a budget an unpriced model is refused before anyone
    // is asked (docs/approvals.md), and this test is about a call that goes ahead.
    let budget = "[[budgets]]\nscope = \"agent:main\"\nwindow = \"daily\"\nlimit_usd = 5.0\n\
                  [prices.\"gpt-needs-approval\"]\ninput = 0.15\noutput = 0.6\n";
    let rig = Rig::start_with(&format!("dir = \"{}\"\nwatch = false", bundle.path().display()), budget).await;
    let console = format!("http://{}", rig.sidecar.control_addr);

    // The shell is served with a CSP that forbids inline script.
    let shell = get(&format!("{console}/"), &[]).await;
    assert_eq!(shell.status, 200);
    assert!(shell.header("content-security-policy").unwrap().contains("script-src 'self'"));

    let driver = Driver::start(&driver_bin).await;
    let b = Browser::open(&driver, &chromium).await;
    b.goto(&format!("{console}/")).await;

    // A wrong token is refused with the server's own explanation; the right one signs in.
    b.type_into("[data-testid=token]", "not-a-token").await;
    b.click("[data-testid=signin]").await;
    b.wait_js("sign-in error", "document.querySelector('.form-msg').textContent.includes('unknown or revoked token')")
        .await;
    b.type_into("[data-testid=token]", ADMIN).await;
    b.click("[data-testid=signin]").await;
    b.find("[data-testid=empty]").await;
    assert!(b.text("[data-testid=empty]").await.contains("Nothing is waiting for you"));
    b.wait_js("live stream", "document.querySelector('[data-testid=live]').classList.contains('live-live')").await;

    // A held call shows up in the open inbox without a reload, with what is asked.
    let call = held_call(&rig, "MARK:first held call");
    b.find("[data-testid=approval]").await;
    let card = b.text("[data-testid=approval]").await;
    assert!(card.contains(HELD_MODEL), "card shows the model: {card}");
    assert!(card.contains("test.model_needs_approval"), "card names the rule: {card}");
    assert!(card.contains("need a human's approval"), "card shows the reason: {card}");
    assert!(card.contains("@main"), "card names the agent: {card}");
    assert_eq!(
        b.js("return document.querySelector('[data-testid=approval] [data-risk]').dataset.risk", json!([])).await,
        "high"
    );
    b.wait_js("countdown", "/\\d+:\\d\\d/.test(document.querySelector('.countdown').textContent)").await;
    assert!(!call.is_finished(), "the call is still held while the approval is pending");
    b.screenshot("approvals-pending-desktop.png").await;

    // Approve in the UI: the held call completes with the upstream's answer.
    b.click("[data-testid=allow-once]").await;
    let r = finished(call, "allow-once").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(r.header("x-clawbutler-action"), Some("deny"), "forwarded, not refused after approval: {}", r.text());
    assert!(r.json()["choices"][0]["message"]["content"].is_string(), "{}", r.text());
    b.find("[data-testid=empty]").await;

    // The approval and the call are in the audit log, and its trace view chains them.
    b.goto(&format!("{console}/#/audit")).await;
    b.type_into("[data-testid=f-agent]", "main").await;
    b.click("[data-testid=audit-search]").await;
    b.wait_js("model call record", "document.querySelector('[data-testid=audit-record][data-kind=model_call]')").await;
    b.click("[data-testid=audit-record][data-kind=model_call] [data-testid=trace-link]").await;
    b.wait_js("trace with the approval", "document.querySelector('[data-testid=trace] .timeline') && document.querySelector('[data-testid=trace]').innerText.includes('Approval')").await;
    b.screenshot("audit-trace-desktop.png").await;

    // Policies page shows the serving revision; the dry run answers hold for the held model.
    b.goto(&format!("{console}/#/policies")).await;
    let rev = b.text("[data-testid=policy-revision]").await;
    assert!(!rev.is_empty());
    let input = json!({"version": 1, "kind": "model_call", "agent": "main",
                       "model": {"upstream": "fake", "name": HELD_MODEL, "stream": false}});
    b.js(
        "const t = document.querySelector('[data-testid=eval-input]'); t.value = arguments[0];",
        json!([input.to_string()]),
    )
    .await;
    b.click("[data-testid=eval-run]").await;
    b.wait_js("dry-run decision", "document.querySelector('[data-testid=eval-result] .st-hold')").await;

    // Every other page renders its content or an empty state, never an error.
    for page in ["grants", "budgets", "agents"] {
        b.goto(&format!("{console}/#/{page}")).await;
        let state = b
            .wait_js(
                page,
                "(() => { const e = document.querySelector('main .card, main [data-testid=empty], \
                main [data-testid=error]'); return e && (e.dataset.testid || 'card'); })()",
            )
            .await;
        assert_ne!(state, "error", "{page}: {}", b.text("main").await);
        eprintln!("{page}: {state}");
    }

    // An agent whose upstream fails turns degraded on the open agents page, live, with why
    // and since when; the approval of a call over that upstream says it may fail.
    for i in 0..3 {
        let r = post_json(
            &rig.url("/a/flaky/fake/v1/chat/completions"),
            &[],
            &json!({"model": "gpt-4o-mini",
            "stream": false, "messages": [{"role": "user", "content": format!("FAIL500 {i}")}]}),
        )
        .await;
        assert_eq!(r.status, 500);
    }
    b.wait_js(
        "flaky degraded on the agents page",
        "[...document.querySelectorAll('[data-testid=agent]')].some((c) => c.innerText.includes('flaky') \
         && c.querySelector('[data-testid=health]').textContent === 'Degraded' \
         && c.querySelector('[data-testid=health-reason]').textContent.includes('HTTP 500') \
         && c.innerText.includes('In this state since'))",
    )
    .await;
    b.screenshot("agents-degraded-desktop.png").await;
    b.goto(&format!("{console}/#/approvals")).await;
    let call = held_call(&rig, "over a failing upstream");
    b.wait_js(
        "the upstream caution on the approval",
        "document.querySelector('[data-testid=cautions]') && document.querySelector('[data-testid=cautions]')\
         .innerText.includes('Upstream fake may fail it: 3 of its last 4 calls failed')",
    )
    .await;
    let a = rig.wait_pending("main", 1).await.remove(0);
    let d = rig
        .decide(ADMIN, a["id"].as_str().unwrap(), &json!({"decision": "deny", "expected_version": a["version"]}), None)
        .await;
    assert_eq!(d.status, 200, "{}", d.text());
    finished(call, "deny over a failing upstream").await;
    b.find("[data-testid=empty]").await;

    // zh-CN: the language switch changes the visible text.
    b.goto(&format!("{console}/#/approvals")).await;
    b.js("const s = document.querySelector('[data-testid=lang]'); s.value = 'zh-CN'; s.dispatchEvent(new Event('change'));", json!([])).await;
    b.wait_js("Chinese nav", "document.querySelector('[data-testid=nav-approvals]').textContent === '审批'").await;
    assert!(b.text("[data-testid=empty]").await.contains("没有等待您处理的请求"));
    // A toast still on screen from the English approval is said again in Chinese.
    let toasts = b.js("return [...document.querySelectorAll('.toast')].map((t) => t.textContent)", json!([])).await;
    assert!(!toasts.to_string().contains("Allowed once"), "an English toast after the switch: {toasts}");
    assert_eq!(b.js("return document.documentElement.lang", json!([])).await, "zh-CN");

    // On a phone-sized window, a second held call is denied with a reason.
    b.resize(390, 844).await;
    let call = held_call(&rig, "MARK:second held call");
    b.find("[data-testid=approval]").await;
    b.wait_js("countdown", "/\\d+:\\d\\d/.test(document.querySelector('.countdown').textContent)").await;
    let overflow =
        b.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth", json!([])).await;
    assert!(overflow.as_i64().unwrap_or(99) <= 0, "no sideways scrolling on a phone (overflow {overflow})");
    b.screenshot("approvals-pending-phone-zh.png").await;
    // Allow-always opens the scope editor, which states the grant's breadth before anything is granted.
    b.click("[data-testid=allow-always]").await;
    b.type_into("[data-testid=scope-pattern]", "gpt-*").await;
    b.wait_js(
        "pattern breadth",
        "document.querySelector('[data-testid=scope-breadth] [data-breadth]').dataset.breadth === 'pattern'",
    )
    .await;
    b.screenshot("scope-editor-phone-zh.png").await;
    b.click("[data-testid=deny]").await;
    b.type_into("[data-testid=deny-reason]", "not during the freeze").await;
    b.click("[data-testid=deny-confirm]").await;
    b.wait_js("Chinese toast", "[...document.querySelectorAll('.toast')].some((t) => t.textContent === '已拒绝')")
        .await;
    let r = finished(call, "deny").await;
    assert!(r.text().contains("not during the freeze"), "the caller sees the denial and its reason: {}", r.text());
    b.find("[data-testid=empty]").await;
    b.screenshot("approvals-empty-phone-zh.png").await;

    b.close().await;
    drop(driver);
    rig.sidecar.shutdown().await;
}

/// A viewer sees the inbox and who is signed in, but no decision, grant or admin actions: the UI
/// offers only what `GET /api/v1/whoami`'s role may do (the server refuses the rest anyway).
#[tokio::test]
async fn viewer_sees_held_calls_but_is_offered_no_decisions() {
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let bundle = hold_bundle();
    let rig = Rig::start_with(&format!("dir = \"{}\"\nwatch = false", bundle.path().display()), "").await;
    let console = format!("http://{}", rig.sidecar.control_addr);
    let admin = format!("Bearer {ADMIN}");
    let created = post_json(
        &format!("{console}/api/v1/tokens"),
        &[("authorization", &admin)],
        &json!({"name": "vera", "role": "viewer"}),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let viewer = created.json()["token"].as_str().unwrap().to_string();

    let driver = Driver::start(&driver_bin).await;
    let b = Browser::open(&driver, &chromium).await;
    b.goto(&format!("{console}/")).await;
    b.type_into("[data-testid=token]", &viewer).await;
    b.click("[data-testid=signin]").await;
    b.wait_js("identity", "document.querySelector('[data-testid=whoami]').textContent === 'vera · viewer'").await;

    let call = held_call(&rig, "MARK:seen by a viewer");
    b.find("[data-testid=approval]").await;
    assert!(b.text("[data-testid=approval]").await.contains(HELD_MODEL));
    let shown = "return [...document.querySelectorAll(arguments[0])].filter((e) => e.offsetParent !== null).length";
    for sel in ["[data-testid=allow-once]", "[data-testid=allow-always]", "[data-testid=deny]", "input.pick"] {
        assert_eq!(b.js(shown, json!([sel])).await, 0, "{sel} is offered to a viewer");
    }
    b.goto(&format!("{console}/#/policies")).await;
    b.find("[data-testid=policy-revision]").await;
    assert_eq!(b.js(shown, json!(["[data-testid=policy-reload]"])).await, 0, "reload is offered to a viewer");
    b.screenshot("approvals-viewer-desktop.png").await;

    // The admin decides through the API; the viewer's console does not change that.
    let pending = get(&format!("{console}/api/v1/approvals?status=pending"), &[("authorization", &admin)]).await;
    let a = &pending.json()["items"][0];
    let url = format!("{console}/api/v1/approvals/{}/decision", a["id"].as_str().unwrap());
    let body = json!({"decision": "allow-once", "expected_version": a["version"]});
    assert_eq!(post_json(&url, &[("authorization", &admin)], &body).await.status, 200);
    assert_eq!(finished(call, "allow-once").await.status, 200);

    b.close().await;
    drop(driver);
    rig.sidecar.shutdown().await;
}

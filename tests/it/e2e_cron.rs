//! End to end: cron governance (issue #19) against a real OpenClaw 2026.9.6 gateway whose
//! `main` agent reaches its model (a scripted upstream) through the sidecar, with the
//! `session_id` header (`compat.sendSessionAffinityHeaders`) so its calls can be joined to
//! cron runs.
//!
//! 1. A job created through the control API is in OpenClaw's `cron.list`; run now, its run
//!    shows in the history with its model calls and cost (the sidecar's own records joined by
//!    session), and the job's cost in the list.
//! 2. Roles: an approver may pause and resume but not edit, remove or run (403); a viewer
//!    may do none of it; a stale `expected_revision` is a 409 and changes nothing.
//! 3. A job whose runs fail three times in a row (time out) raises the alert: one `cron` audit record
//!    `failure_streak`, the metric, the `clawbutler cron` CLI shows the failures.
//!    The Cron tab in Chromium, signed in as that approver, shows both jobs with their state
//!    and the streak, offers no "Run now", and its Pause / Resume reach OpenClaw.
//! 4. An open budget breaker of `main` disables its enabled jobs in OpenClaw (a job a person
//!    disabled stays untouched); resetting the budget enables exactly those again.
//!
//! Needs `scripts/install-openclaw.sh`; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};
use testkit::openclaw::{find_or_skip, free_port, Gateway};
use testkit::rig::{SidecarConfig, ADMIN};
use testkit::upstream::ScriptedUpstream;

use crate::ui_browser::{browser_paths, Browser, Driver};
use testkit::wait::until as wait_until;

const TOKEN_ENV: &str = "CLAWBUTLER_E2E_CRON_TOKEN";

/// main on `cb-main` through the sidecar at `data`, sending the session header.
pub(crate) fn openclaw_config(data: SocketAddr) -> Value {
    let model = json!({"id": "gpt-4o-mini", "name": "gpt-4o-mini", "reasoning": false, "input": ["text"],
           "cost": {"input": 0.15, "output": 0.6, "cacheRead": 0, "cacheWrite": 0},
           "contextWindow": 128000, "maxTokens": 4096,
           "compat": {"sendSessionAffinityHeaders": true}});
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": {
            "cb-main": {"baseUrl": format!("http://{data}/a/main/fake/v1"), "apiKey": "k-main",
                        "api": "openai-completions", "timeoutSeconds": 120, "models": [model]}
        }},
        "agents": {"defaults": {"skipBootstrap": true, "model": {"primary": "cb-main/gpt-4o-mini"}},
                   "entries": {"main": {"model": "cb-main/gpt-4o-mini"}}},
    })
}

struct Api {
    control: SocketAddr,
}

impl Api {
    async fn call(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let url = format!("http://{}{path}", self.control);
        let mut h = vec![("authorization", auth.as_str())];
        if body.is_some() {
            h.push(("content-type", "application/json"));
        }
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let r = testkit::http::send(method, &url, &h, bytes.into()).await;
        (r.status.as_u16(), serde_json::from_slice(&r.body).unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(ADMIN, Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(ADMIN, Method::POST, path, Some(body)).await
    }
    async fn token(&self, name: &str, role: &str) -> String {
        let (code, v) = self.post("/api/v1/tokens", json!({"name": name, "role": role})).await;
        assert_eq!(code, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }
    async fn runs(&self, id: &str) -> Vec<Value> {
        let (_, v) = self.get(&format!("/api/v1/cron/jobs/{id}/runs?limit=50")).await;
        v["items"].as_array().cloned().unwrap_or_default()
    }
    async fn audit(&self, q: &str) -> Vec<Value> {
        let (_, v) = self.get(&format!("/api/v1/audit?kind=cron&limit=200{q}")).await;
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

/// OpenClaw's own view of a job (a second operator connection, as the OpenClaw UI would).
async fn openclaw_job(link: &gateway::Link, id: &str) -> Option<Value> {
    let v = link.call("cron.list", json!({"includeDisabled": true, "limit": 200})).await.expect("cron.list");
    v["jobs"].as_array().unwrap().iter().find(|j| j["id"] == id).cloned()
}

pub(crate) fn job_body(name: &str, message: &str, enabled: bool) -> Value {
    json!({"name": name, "agentId": "main", "enabled": enabled, "schedule": {"kind": "every", "everyMs": 3_600_000},
           "sessionTarget": "isolated", "wakeMode": "now",
           "payload": {"kind": "agentTurn", "message": message}, "delivery": {"mode": "none"}})
}

/// Run a job now and wait for one more finished run; returns that run.
async fn run_and_wait(api: &Api, id: &str) -> (Value, Duration) {
    let before = api.runs(id).await.len();
    let (code, r) = api.post(&format!("/api/v1/cron/jobs/{id}/run"), json!({})).await;
    assert_eq!(code, 200, "{r}");
    let took =
        wait_until("the run to finish", Duration::from_secs(120), || async { api.runs(id).await.len() > before }).await;
    (api.runs(id).await[0].clone(), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_jobs_are_governed_through_the_gateway() {
    let Some(install) = find_or_skip("cron_jobs_are_governed_through_the_gateway") else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    let data: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = Gateway::start(&install, openclaw_config(data)).await;
    std::env::set_var(TOKEN_ENV, gw.token());
    let dir = tempfile::tempdir().unwrap();
    let sidecar_cfg = SidecarConfig::new(dir.path())
        .listen(&data.to_string(), "127.0.0.1:0")
        .upstreams(&up.base_url())
        .table(&format!(
            "[prices.\"gpt-4o-mini\"]\ninput = 0.15\noutput = 0.6\n\
             [gateway]\nurl = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\nreconnect_initial_ms = 500\nreconnect_max_ms = 2000\n\
             [cron]\nfailure_streak = 3\nbudget_check_ms = 300",
            gw.ws_url()
        ));
    let sidecar = clawbutler::app::Sidecar::start(sidecar_cfg.build()).await.expect("sidecar starts");
    let api = Api { control: sidecar.control_addr };
    let (other, stop_other) = gateway::attach::connect(&gw.ws_url(), TOKEN_ENV, dir.path()).await.expect("2nd client");
    wait_until("the link", Duration::from_secs(30), || async { api.get("/api/v1/cron/jobs").await.0 == 200 }).await;

    // 1. Create through ClawButler: in OpenClaw's cron.list; run now; cost attributed.
    let (code, job) = api.post("/api/v1/cron/jobs", job_body("cb-nightly", "nightly summary MARK:cron1", true)).await;
    assert_eq!(code, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let oc = openclaw_job(&other, &id).await.expect("the job is in OpenClaw's cron.list");
    assert_eq!(
        (oc["name"].as_str(), oc["agentId"].as_str(), oc["enabled"].as_bool()),
        (Some("cb-nightly"), Some("main"), Some(true))
    );
    let (run, took) = run_and_wait(&api, &id).await;
    eprintln!("run now -> run in the history: {took:?}");
    assert_eq!(run["status"], "ok", "{run}");
    let sent = up.requests().iter().any(|r| String::from_utf8_lossy(&r.body).contains("MARK:cron1"));
    assert!(sent, "the run's model call went through the sidecar to the upstream");
    if run["model_calls"].as_u64().unwrap_or(0) == 0 {
        let (_, recs) = api.get("/api/v1/audit?kind=model_call&limit=20").await;
        let sessions: Vec<(Value, Value, Value)> = recs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["agent"].clone(), r["session"].clone(), r["trace_id"].clone()))
            .collect();
        let headers: Vec<String> = up.requests().iter().map(|r| format!("{:?}", r.headers)).collect();
        panic!("the run's calls are attributed to it: {run}\nrecords: {sessions:?}\nheaders: {headers:?}");
    }
    // ...and counted as cron work in the cost by task type.
    let calls = run["model_calls"].as_u64();
    wait_until("the run's calls under task type cron", Duration::from_secs(15), || async {
        let (_, c) = api.get("/api/v1/cost?by=task&agent=main&since=1d").await;
        c["rows"].as_array().into_iter().flatten().any(|r| r["key"] == "cron" && r["calls"].as_u64() >= calls)
    })
    .await;
    let run_cost = run["cost_usd"].as_f64().expect("a cost");
    assert!(run_cost > 0.0, "{run}");
    // The attributed calls are exactly the sidecar's records of the job's key (isolated cron
    // runs send `session_id: openclaw-cron-<hash of job, agent, provider, model>`).
    let (_, recs) = api.get("/api/v1/audit?kind=model_call&agent=main&limit=200").await;
    let mine: Vec<&Value> = recs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !["started", "denied", "budget_exceeded"].contains(&r["outcome"].as_str().unwrap_or("")))
        .filter(|r| r["session"].as_str().is_some_and(|s| s.starts_with("openclaw-cron-")))
        .collect();
    assert_eq!(mine.len() as u64, run["model_calls"].as_u64().unwrap(), "{recs}");
    let sum: f64 = mine.iter().map(|r| r["cost_usd"].as_f64().unwrap_or(0.0)).sum();
    assert!((sum - run_cost).abs() < 1e-12, "run cost {run_cost} = sum of its records {sum}");
    let (_, list) = api.get("/api/v1/cron/jobs?agent=main").await;
    let row = list["items"].as_array().unwrap().iter().find(|j| j["id"] == id.as_str()).cloned().unwrap();
    assert_eq!(row["cost"]["usd"].as_f64(), Some(run_cost), "{row}");
    assert!(row["last_run_at"].is_string() && row["next_run_at"].is_string(), "{row}");
    assert_eq!(row["schedule"]["everyMs"], 3_600_000);

    // 2. Roles and revisions.
    let approver = api.token("cron-approver", "approver").await;
    let viewer = api.token("cron-viewer", "viewer").await;
    let job_path = format!("/api/v1/cron/jobs/{id}");
    let edit = json!({"patch": {"name": "renamed"}});
    for (method, path, body) in [
        (Method::PATCH, job_path.clone(), Some(edit.clone())),
        (Method::POST, format!("{job_path}/run"), Some(json!({}))),
        (Method::DELETE, job_path.clone(), None),
        (Method::POST, "/api/v1/cron/jobs".to_string(), Some(job_body("x", "y", false))),
    ] {
        let (code, p) = api.call(&approver, method.clone(), &path, body).await;
        assert_eq!(code, 403, "approver {method} {path}: {p}");
    }
    let (code, _) = api.call(&viewer, Method::POST, &format!("{job_path}/disable"), None).await;
    assert_eq!(code, 403, "a viewer cannot pause");
    let (code, v) = api.call(&viewer, Method::GET, &job_path, None).await;
    assert_eq!(code, 200, "a viewer reads: {v}");
    let (code, off) = api.call(&approver, Method::POST, &format!("{job_path}/disable"), None).await;
    assert_eq!((code, off["enabled"].as_bool()), (200, Some(false)), "{off}");
    assert_eq!(openclaw_job(&other, &id).await.unwrap()["enabled"], false);
    let (code, on) = api.call(&approver, Method::POST, &format!("{job_path}/enable"), None).await;
    assert_eq!((code, on["enabled"].as_bool()), (200, Some(true)), "{on}");
    let (code, p) = api
        .call(
            ADMIN,
            Method::PATCH,
            &job_path,
            Some(json!({"patch": {"name": "renamed"}, "expected_revision": "stale"})),
        )
        .await;
    assert_eq!(code, 409, "{p}");
    assert_eq!(openclaw_job(&other, &id).await.unwrap()["name"], "cb-nightly", "nothing overwritten");
    let rev = on["config_revision"].as_str().unwrap().to_string();
    let (code, p) = api
        .call(
            ADMIN,
            Method::PATCH,
            &job_path,
            Some(json!({"patch": {"description": "by admin"}, "expected_revision": rev})),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(openclaw_job(&other, &id).await.unwrap()["description"], "by admin");
    // Every change is in the log (records become searchable once written: wait for them).
    let want = ["created", "run_requested", "disabled", "enabled", "conflict", "updated"];
    wait_until("every change audited", Duration::from_secs(10), || async {
        let got: Vec<String> =
            api.audit("").await.iter().filter_map(|r| r["outcome"].as_str().map(str::to_string)).collect();
        want.iter().all(|o| got.iter().any(|x| x == o))
    })
    .await;

    // 3. Three failures in a row: the alert, once.
    // A run that cannot finish in its time budget: the model streams for a minute, the job
    // allows 3 s (a failing run; a 500 from the model fails too, but after ~90 s of retries).
    let mut failing = job_body("cb-failing", "SLOW please", true);
    failing["payload"]["timeoutSeconds"] = json!(3);
    let (code, bad) = api.post("/api/v1/cron/jobs", failing).await;
    assert_eq!(code, 201, "{bad}");
    let bad_id = bad["id"].as_str().unwrap().to_string();
    for n in 1..=3 {
        let (run, took) = run_and_wait(&api, &bad_id).await;
        eprintln!("failing run {n}: {} in {took:?}", run["status"]);
        assert_ne!(run["status"], "ok", "{run}");
    }
    wait_until("the failure streak alert", Duration::from_secs(10), || async {
        api.audit("").await.iter().any(|r| r["outcome"] == "failure_streak")
    })
    .await;
    let streaks: Vec<Value> = api.audit("").await.into_iter().filter(|r| r["outcome"] == "failure_streak").collect();
    assert_eq!(streaks.len(), 1, "{streaks:?}");
    assert_eq!(streaks[0]["subject"]["job"], bad_id.as_str());
    assert_eq!(streaks[0]["details"]["consecutive_failures"], 3);
    let metrics = testkit::http::get(&format!("http://{}/metrics", api.control), &[]).await.text();
    assert!(metrics.contains("clawbutler_cron_failure_streaks_total 1"), "{metrics}");
    // ...on the SSE stream too (replayed from the start with Last-Event-ID: 0, kind=cron).
    let auth = format!("Bearer {ADMIN}");
    let mut sse = testkit::http::send_streaming(
        Method::GET,
        &format!("http://{}/api/v1/events?kind=cron", api.control),
        &[("authorization", &auth), ("last-event-id", "0")],
        Default::default(),
    )
    .await;
    assert_eq!(sse.status, 200);
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(c) = sse.next_chunk().await {
            seen.push_str(&String::from_utf8_lossy(&c));
            if seen.contains("\"failure_streak\"") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "the streak on the SSE stream: {seen}");
    drop(sse);
    let cli = tokio::task::spawn_blocking({
        let url = format!("http://{}", api.control);
        move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
                .args(["cron", "list", "--agent", "main", "--url", &url])
                .env("CLAWBUTLER_TOKEN", ADMIN)
                .output()
                .expect("run clawbutler")
        }
    });
    let out = cli.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with(&bad_id)).unwrap_or_else(|| panic!("{text}"));
    assert!(line.split_whitespace().any(|w| w == "3"), "3 failures in a row: {line}");
    cron_tab_in_chromium(&api, &approver, &other, &id).await;

    // 4. Budget breaker: pause the enabled jobs, leave a human's disabled job alone, resume.
    let (code, human) = api.post("/api/v1/cron/jobs", job_body("cb-human-off", "never", false)).await;
    assert_eq!(code, 201, "{human}");
    let human_id = human["id"].as_str().unwrap().to_string();
    let (code, b) = api
        .call(
            ADMIN,
            Method::PUT,
            "/api/v1/budgets/cron-stop",
            Some(json!({"scope": "agent:main", "window": "daily", "limit_usd": 0.0})),
        )
        .await;
    assert_eq!((code, b["open"].as_bool()), (200, Some(true)), "a zero budget is an open breaker: {b}");
    let t0 = Instant::now();
    wait_until("main's jobs paused in OpenClaw", Duration::from_secs(15), || async {
        openclaw_job(&other, &id).await.unwrap()["enabled"] == false
            && openclaw_job(&other, &bad_id).await.unwrap()["enabled"] == false
    })
    .await;
    eprintln!("breaker open -> jobs disabled in OpenClaw: {:?}", t0.elapsed());
    let (_, shown) = api.get(&job_path).await;
    assert_eq!(shown["budget_paused"]["budget"], "cron-stop", "{shown}");
    wait_until("the pause's record", Duration::from_secs(10), || async {
        api.audit("").await.iter().any(|r| r["outcome"] == "budget_paused")
    })
    .await;
    let paused = api.audit("").await.into_iter().find(|r| r["outcome"] == "budget_paused").unwrap();
    let jobs: Vec<&str> = paused["details"]["jobs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(
        jobs.contains(&id.as_str()) && jobs.contains(&bad_id.as_str()) && !jobs.contains(&human_id.as_str()),
        "{paused}"
    );
    let metrics = testkit::http::get(&format!("http://{}/metrics", api.control), &[]).await.text();
    assert!(metrics.contains(&format!("clawbutler_cron_jobs_budget_paused {}", jobs.len())), "{metrics}");
    // A restart does not forget which jobs it paused (nor pauses them twice).
    sidecar.shutdown().await;
    let sidecar = clawbutler::app::Sidecar::start(sidecar_cfg.build()).await.expect("sidecar restarts");
    let api = Api { control: sidecar.control_addr };
    wait_until("the link again", Duration::from_secs(30), || async { api.get("/api/v1/cron/jobs").await.0 == 200 })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, shown) = api.get(&job_path).await;
    assert_eq!(
        (shown["enabled"].as_bool(), shown["budget_paused"]["budget"].as_str()),
        (Some(false), Some("cron-stop")),
        "{shown}"
    );
    let (code, r) = api.post("/api/v1/budgets/cron-stop/reset", json!({"reason": "cron e2e"})).await;
    assert_eq!(code, 200, "{r}");
    let t0 = Instant::now();
    wait_until("main's jobs resumed in OpenClaw", Duration::from_secs(15), || async {
        openclaw_job(&other, &id).await.unwrap()["enabled"] == true
            && openclaw_job(&other, &bad_id).await.unwrap()["enabled"] == true
    })
    .await;
    eprintln!("budget reset -> jobs enabled again: {:?}", t0.elapsed());
    assert_eq!(openclaw_job(&other, &human_id).await.unwrap()["enabled"], false, "a human's disabled job stays off");
    wait_until("the resume's record", Duration::from_secs(10), || async {
        api.audit("").await.iter().any(|r| r["outcome"] == "budget_resumed")
    })
    .await;
    let resumed = api.audit("").await.into_iter().find(|r| r["outcome"] == "budget_resumed").unwrap();
    assert_eq!(resumed["details"]["jobs"].as_array().map(Vec::len), Some(jobs.len()), "{resumed}");

    // Remove.
    let (code, _) = api.call(ADMIN, Method::DELETE, &format!("/api/v1/cron/jobs/{human_id}"), None).await;
    assert_eq!(code, 200);
    assert!(openclaw_job(&other, &human_id).await.is_none(), "removed in OpenClaw");
    let (code, _) = api.get(&format!("/api/v1/cron/jobs/{human_id}")).await;
    assert_eq!(code, 404);

    let _ = stop_other.send(true);
    sidecar.shutdown().await;
    drop(gw);
    up.shutdown().await;
}

/// The Cron tab in Chromium as an approver: the jobs with their state, `cb-failing`'s streak
/// of 3, no "Run now" (admins only); Pause in the page disables `cb-nightly` in OpenClaw and
/// Resume enables it again. Then the phone width.
async fn cron_tab_in_chromium(api: &Api, approver: &str, other: &gateway::Link, id: &str) {
    let Some((chromium, driver_bin)) = browser_paths() else { return };
    let driver = Driver::start(&driver_bin).await;
    let b = Browser::open(&driver, &chromium).await;
    b.goto(&format!("http://{}/", api.control)).await;
    b.type_into("[data-testid=token]", approver).await;
    b.click("[data-testid=signin]").await;
    b.click("[data-testid=nav-cron]").await;
    // A job's card (its position among the cards, 1-based, for CSS) by the job's name.
    let index = |name: &str| {
        format!(
            "[...document.querySelectorAll('[data-testid=cron-job]')].findIndex(c => c.querySelector('strong').textContent === {}) + 1",
            serde_json::to_string(name).unwrap()
        )
    };
    let card_text = |name: &str| {
        // Lower case: the badges are upper case by style.
        format!("document.querySelectorAll('[data-testid=cron-job]')[({}) - 1].innerText.toLowerCase()", index(name))
    };
    b.wait_js("both jobs", &format!("({}) > 0 && ({}) > 0", index("cb-nightly"), index("cb-failing"))).await;
    let failing = b.js(&format!("return {};", card_text("cb-failing")), json!([])).await;
    assert!(failing.as_str().unwrap().contains("3 failures in a row"), "{failing}");
    let nightly = b.js(&format!("return {};", card_text("cb-nightly")), json!([])).await;
    let nightly = nightly.as_str().unwrap();
    assert!(nightly.contains("enabled") && nightly.contains("agent main"), "{nightly}");
    assert!(!nightly.contains("run now"), "an approver is offered no run: {nightly}");
    let n = b.js(&format!("return {};", index("cb-nightly")), json!([])).await;
    let button = format!("[data-testid=cron] > article:nth-child({n}) button[data-needs=approver]");
    assert_eq!(b.text(&button).await, "Pause");
    b.click(&button).await;
    wait_until("paused in OpenClaw from the page", Duration::from_secs(15), || async {
        openclaw_job(other, id).await.unwrap()["enabled"] == false
    })
    .await;
    b.wait_js("the card shows it paused", &format!("{}.includes('paused')", card_text("cb-nightly"))).await;
    let n = b.js(&format!("return {};", index("cb-nightly")), json!([])).await;
    let button = format!("[data-testid=cron] > article:nth-child({n}) button[data-needs=approver]");
    b.wait_js(
        "Resume offered",
        &format!("document.querySelector({}).textContent === 'Resume'", serde_json::to_string(&button).unwrap()),
    )
    .await;
    b.click(&button).await;
    wait_until("enabled in OpenClaw again from the page", Duration::from_secs(15), || async {
        openclaw_job(other, id).await.unwrap()["enabled"] == true
    })
    .await;
    b.resize(390, 844).await;
    b.wait_js("no sideways scrolling at phone width", "document.documentElement.scrollWidth <= window.innerWidth + 1")
        .await;
    b.screenshot("cron-phone.png").await;
    b.close().await;
}

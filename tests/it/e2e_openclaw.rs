//! End to end with a real OpenClaw gateway: OpenClaw -> sidecar -> scripted model server.
//!
//! One gateway, two agents: `main` on an `openai-completions` provider whose baseUrl is
//! `http://<sidecar>/a/main/fake/v1`, and `claude` on an `anthropic-messages` provider whose baseUrl is
//! `http://<sidecar>/a/claude/anth`. Each agent runs a turn through the `openclaw agent` CLI; the test checks
//! what the user sees, what reached the model server, and what the sidecar audited.
//!
//! Needs `scripts/install-openclaw.sh` to have run; skipped with a notice otherwise, failed when
//! `CLAWBUTLER_E2E=1`. Takes about a minute (gateway start ~10-25 s, a turn ~5-12 s).

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use testkit::openclaw::{find_or_skip, AgentTurn, Gateway};
use testkit::rig::{SidecarConfig, ADMIN};
use testkit::upstream::{reply_for, RecordedRequest, ScriptedUpstream, Usage};

/// USD per million tokens, as in `proxy/prices.toml` (the sidecar's shipped table).
const GPT_4O_MINI: (f64, f64) = (0.15, 0.60);
const CLAUDE_HAIKU_4_5: (f64, f64) = (1.0, 5.0);

/// One agent wired through the sidecar.
struct AgentCase {
    agent: &'static str,
    provider: &'static str,
    api: &'static str,
    /// Upstream name in the sidecar config (the second path segment).
    upstream: &'static str,
    model: &'static str,
    /// Path the scripted server sees once the sidecar strips `/a/<agent>/<upstream>`.
    upstream_path: &'static str,
    api_key: &'static str,
    price: (f64, f64),
}

const CASES: [AgentCase; 2] = [
    AgentCase {
        agent: "main",
        provider: "cb-main",
        api: "openai-completions",
        upstream: "fake",
        model: "gpt-4o-mini",
        upstream_path: "/v1/chat/completions",
        api_key: "k-main",
        price: GPT_4O_MINI,
    },
    AgentCase {
        agent: "claude",
        provider: "cb-claude",
        api: "anthropic-messages",
        upstream: "anth",
        model: "claude-haiku-4-5",
        upstream_path: "/v1/messages",
        api_key: "k-claude",
        price: CLAUDE_HAIKU_4_5,
    },
];

impl AgentCase {
    /// OpenAI kinds get `/v1` in the baseUrl (OpenClaw appends `/chat/completions`); Anthropic does not
    /// (OpenClaw appends `/v1/messages`).
    fn base_url(&self, data: SocketAddr) -> String {
        let suffix = if self.api == "anthropic-messages" { "" } else { "/v1" };
        format!("http://{data}/a/{}/{}{suffix}", self.agent, self.upstream)
    }

    fn key_header<'a>(&self, r: &'a RecordedRequest) -> Option<&'a str> {
        let h =
            if self.api == "anthropic-messages" { r.headers.get("x-api-key") } else { r.headers.get("authorization") };
        h.and_then(|v| v.to_str().ok())
    }
}

/// Output cap of the `capped` agent's model.
const CAPPED_MAX_TOKENS: u64 = 100;

/// The gateway config: one provider per agent, each agent pinned to its provider, no network catalog.
fn openclaw_config(data: SocketAddr) -> Value {
    let mut providers = serde_json::Map::new();
    let mut entries = serde_json::Map::new();
    for c in &CASES {
        providers.insert(
            c.provider.into(),
            json!({
                "baseUrl": c.base_url(data), "apiKey": c.api_key, "api": c.api, "timeoutSeconds": 120,
                "models": [{
                    "id": c.model, "name": c.model, "reasoning": false, "input": ["text"],
                    "cost": {"input": c.price.0, "output": c.price.1, "cacheRead": 0, "cacheWrite": 0},
                    "contextWindow": 128000, "maxTokens": 4096
                }]
            }),
        );
        entries.insert(
            c.agent.into(),
            json!({"model": format!("{}/{}", c.provider, c.model), "modelPolicy": {"allow": [format!("{}/*", c.provider)]}}),
        );
    }
    // A third agent for the budget breaker: output-only price (set in the sidecar) and a fixed
    // output cap, so each call's worst case is exactly CAPPED_MAX_TOKENS x $1/M.
    providers.insert(
        "cb-capped".into(),
        json!({
            "baseUrl": format!("http://{data}/a/capped/fake/v1"), "apiKey": "k-capped", "api": "openai-completions",
            "timeoutSeconds": 120,
            "models": [{"id": "capped-model", "name": "capped-model", "reasoning": false, "input": ["text"],
                        "cost": {"input": 0, "output": 1, "cacheRead": 0, "cacheWrite": 0},
                        "contextWindow": 128000, "maxTokens": CAPPED_MAX_TOKENS}]
        }),
    );
    entries
        .insert("capped".into(), json!({"model": "cb-capped/capped-model", "modelPolicy": {"allow": ["cb-capped/*"]}}));
    json!({
        "models": {"mode": "merge", "catalogRefresh": {"enabled": false}, "providers": providers},
        "agents": {"ownership": "explicit", "defaults": {"skipBootstrap": true}, "entries": entries},
    })
}

fn sum_usage(reqs: &[RecordedRequest]) -> (u64, u64) {
    reqs.iter().filter_map(|r| r.usage).fold((0, 0), |(i, o), u: Usage| (i + u.input_tokens, o + u.output_tokens))
}

/// `GET /api/v1/audit?agent=..&kind=model_call`, polled until `want` items are there (the audit log may
/// commit a little after the response ends). The `started` record a forwarded call also gets when
/// it runs past a group-commit window (streamed turns do) is checked to belong to a forwarded call
/// (at most one each) and left out.
async fn audit_items(control: SocketAddr, agent: &str, want: usize) -> Vec<Value> {
    let url = format!("http://{control}/api/v1/audit?agent={agent}&kind=model_call");
    let auth = format!("Bearer {ADMIN}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let resp = testkit::http::get(&url, &[("authorization", &auth)]).await;
        assert_eq!(resp.status, 200, "GET {url}: {}", resp.text());
        let body = resp.json();
        assert!(body.get("next_cursor").is_some(), "audit list has next_cursor: {body}");
        let all = body["items"].as_array().unwrap_or_else(|| panic!("audit list has items[]: {body}")).clone();
        let (starts, items): (Vec<Value>, Vec<Value>) = all.into_iter().partition(|i| i["outcome"] == "started");
        let forwarded: Vec<&Value> =
            items.iter().filter(|i| i["action"] == "allow").map(|i| &i["decision_id"]).collect();
        let closed = starts.iter().all(|s| forwarded.iter().filter(|&&id| id == &s["decision_id"]).count() == 1);
        if (items.len() >= want && closed) || tokio::time::Instant::now() >= deadline {
            assert!(closed, "each started record belongs to one forwarded call: {starts:#?} {items:#?}");
            return items;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Run a turn and check reply, upstream traffic and usage as OpenClaw saw it; returns the model calls.
async fn run_turn(
    gw: &Gateway,
    up: &ScriptedUpstream,
    c: &AgentCase,
    message: &str,
    want_reply: &str,
) -> Vec<RecordedRequest> {
    let before = up.requests().len();
    let turn: AgentTurn = gw.agent_turn(c.agent, message).await;
    let ctx = || format!("{}\n{}", turn.describe(), gw.log_tail(40));
    assert!(turn.ok(), "agent {} turn failed:\n{}", c.agent, ctx());
    assert_eq!(turn.reply_text().as_deref(), Some(want_reply), "reply the user sees (agent {}):\n{}", c.agent, ctx());

    let calls: Vec<RecordedRequest> = up.requests()[before..].to_vec();
    assert!(!calls.is_empty(), "agent {}: no request reached the scripted upstream:\n{}", c.agent, ctx());
    for r in &calls {
        assert_eq!(r.path, c.upstream_path, "agent {}: the sidecar forwards to the upstream route", c.agent);
        // The provider's key passes through (no api_key_env on these upstreams): it is OpenClaw's request.
        let key = c.key_header(r).unwrap_or_default();
        assert!(key.ends_with(c.api_key), "agent {}: client key passed through, got {key:?}", c.agent);
        let body = r.json().unwrap_or_default();
        assert_eq!(body["model"], c.model);
        assert_eq!(body["stream"], true, "OpenClaw always streams");
        assert!(r.usage.is_some_and(|u| u.input_tokens > 0 && u.output_tokens > 0), "scripted usage {:?}", r.usage);
    }
    // Usage survived the sidecar's stream handling all the way into OpenClaw's accounting.
    assert_eq!(turn.usage(), Some(sum_usage(&calls)), "agent {}: usage OpenClaw recorded:\n{}", c.agent, ctx());
    calls
}

/// The sidecar's audit records for the agent match the calls the upstream answered.
async fn check_audit(control: SocketAddr, c: &AgentCase, calls: &[RecordedRequest]) {
    let items = audit_items(control, c.agent, calls.len()).await;
    assert_eq!(
        items.len(),
        calls.len(),
        "agent {}: one model_call audit record per upstream call: {items:#?}",
        c.agent
    );
    for item in &items {
        assert_eq!(item["agent"], c.agent, "{item:#}");
        assert_eq!(item["kind"], "model_call", "{item:#}");
        assert_eq!(item["subject"]["model"], c.model, "{item:#}");
        assert_eq!(item["subject"]["upstream"], c.upstream, "{item:#}");
        assert!(item["outcome"].is_string() || item["outcome"].is_object(), "outcome recorded: {item:#}");
        let input = item["usage"]["input_tokens"].as_u64().unwrap_or_else(|| panic!("usage.input_tokens: {item:#}"));
        let output = item["usage"]["output_tokens"].as_u64().unwrap_or_else(|| panic!("usage.output_tokens: {item:#}"));
        assert!(
            calls.iter().filter_map(|r| r.usage).any(|u| u.input_tokens == input && u.output_tokens == output),
            "agent {}: audited usage {input}/{output} is what the upstream reported ({:?})",
            c.agent,
            calls.iter().map(|r| r.usage).collect::<Vec<_>>()
        );
        let want_cost = (input as f64 * c.price.0 + output as f64 * c.price.1) / 1e6;
        let cost = item["cost_usd"].as_f64().unwrap_or_else(|| panic!("cost_usd is a number: {item:#}"));
        assert!((cost - want_cost).abs() < 1e-9, "agent {}: cost {cost} != {want_cost}: {item:#}", c.agent);
    }
    let (ai, ao) = items.iter().fold((0, 0), |(i, o), it| {
        (i + it["usage"]["input_tokens"].as_u64().unwrap_or(0), o + it["usage"]["output_tokens"].as_u64().unwrap_or(0))
    });
    assert_eq!((ai, ao), sum_usage(calls), "agent {}: audited totals", c.agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openclaw_agents_reach_the_model_through_the_sidecar() {
    let Some(install) = find_or_skip("openclaw_agents_reach_the_model_through_the_sidecar") else {
        return;
    };
    let up = ScriptedUpstream::start().await;
    let data_dir = tempfile::tempdir().expect("tempdir");
    let upstream_base = up.base_url();
    let cfg = SidecarConfig::new(data_dir.path())
        .upstreams(&upstream_base)
        .table("[prices.\"capped-model\"]\ninput = 0.0\noutput = 1.0")
        .build();
    let sidecar = clawbutler::app::Sidecar::start(cfg).await.expect("sidecar starts");
    let (data, control) = (sidecar.data_addr, sidecar.control_addr);

    let gw = Gateway::start(&install, openclaw_config(data)).await;
    eprintln!("openclaw gateway ready in {:?} at {}", gw.started_in(), gw.ws_url());

    for c in &CASES {
        let message = format!("hello from the e2e test MARK:{}", c.agent);
        let calls = run_turn(&gw, &up, c, &message, &reply_for(&message)).await;
        check_audit(control, c, &calls).await;
    }

    // A tool round trip: the streamed tool call survives the sidecar, OpenClaw runs `exec`, and the second
    // model call carries the result back.
    let main = &CASES[0];
    let before = audit_items(control, main.agent, 0).await.len();
    let calls = run_turn(&gw, &up, main, "RUN_EXEC: echo e2e-exec-ok", "exec finished: e2e-exec-ok").await;
    assert!(calls.len() >= 2, "tool call and follow-up both went upstream: {}", calls.len());
    let items = audit_items(control, main.agent, before + calls.len()).await;
    assert_eq!(items.len(), before + calls.len(), "every model call of the tool round trip is audited");

    budget_breaker_through_openclaw(&gw, &up, control).await;

    drop(gw);
    let _ = sidecar.shutdown().await;
    up.shutdown().await;
}

async fn budget(control: SocketAddr, method: http::Method, path: &str, body: Value) -> Value {
    let auth = format!("Bearer {ADMIN}");
    let r = testkit::http::send(
        method,
        &format!("http://{control}{path}"),
        &[("authorization", &auth), ("content-type", "application/json")],
        bytes::Bytes::from(body.to_string()),
    )
    .await;
    assert!(r.status.is_success(), "{path}: {} {}", r.status, r.text());
    r.json()
}

/// Budget settled (no reservation in flight): its spend.
async fn settled_spend(control: SocketAddr) -> f64 {
    for _ in 0..100 {
        let b = budget(control, http::Method::GET, "/api/v1/budgets/capped-daily", Value::Null).await;
        if b["reserved_usd"].as_f64() == Some(0.0) {
            return b["spent_usd"].as_f64().unwrap_or(0.0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("budget reservation never settled");
}

/// An agent over its daily cap gets the sidecar's message in its reply after exactly one request,
/// and works again after a reset through the API.
async fn budget_breaker_through_openclaw(gw: &Gateway, up: &ScriptedUpstream, control: SocketAddr) {
    let put = |limit: f64| json!({"scope": "agent:capped", "window": "daily", "limit_usd": limit});
    budget(control, http::Method::PUT, "/api/v1/budgets/capped-daily", put(1.0)).await;
    let first = gw.agent_turn("capped", "first capped turn").await;
    assert!(first.ok(), "capped agent's first turn:\n{}", first.describe());
    let spent = settled_spend(control).await;
    assert!(spent > 0.0, "the first turn was charged");
    // Worst case of one call is CAPPED_MAX_TOKENS x $1/M; allow one call's worst case plus half
    // of what was already spent: the next call no longer fits, a call after a reset does.
    let worst = CAPPED_MAX_TOKENS as f64 / 1e6;
    budget(control, http::Method::PUT, "/api/v1/budgets/capped-daily", put(worst + spent / 2.0)).await;

    let upstream_before = up.requests().len();
    let audited_before = audit_items(control, "capped", 0).await.len();
    let over = gw.agent_turn("capped", "second capped turn").await;
    let shown = format!("{}\n{}", over.reply_text().unwrap_or_default(), over.describe());
    assert!(shown.contains("daily limit reached"), "the user sees the sidecar's budget message:\n{shown}");
    assert_eq!(up.requests().len(), upstream_before, "a refused call reached the model");
    let items = audit_items(control, "capped", audited_before + 1).await;
    let refused: Vec<_> = items.iter().filter(|i| i["outcome"] == "budget_exceeded").collect();
    assert_eq!(refused.len(), 1, "OpenClaw sent exactly one request for the over-budget turn: {items:#?}");

    budget(control, http::Method::POST, "/api/v1/budgets/capped-daily/reset", json!({"reason": "e2e: raised by ops"}))
        .await;
    let again = gw.agent_turn("capped", "third capped turn").await;
    assert!(again.ok(), "after the reset the agent works again:\n{}", again.describe());
    assert_eq!(again.reply_text().as_deref(), Some(reply_for("third capped turn").as_str()));
}

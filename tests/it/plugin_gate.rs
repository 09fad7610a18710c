//! Issue 14, the plugin gate in process: the decision endpoint (`/v1/decide`,
//! `/v1/decide/report`) driven as the OpenClaw plugin drives it, with the shipped bundle, the
//! real broker and audit log, and (for the gateway side) the fake gateway.
//!
//! - `endpoint`: tokens (401), malformed bodies (400, naming the field), unknown fields
//!   tolerated, browsers refused, 1,000 concurrent decisions all answered, the token API and CLI.
//! - `decisions`: allow / block / rewrite; holds approved, denied, expired before the plugin
//!   gives up, cancelled when the plugin hangs up; an allow-always grant for a message's
//!   recipient; the kill switch and budget breakers on turns; audit records on the trace.
//! - `reports`: tool results and model calls on the turn's trace; OpenClaw's usage against the
//!   sidecar's metering (match and mismatch, on the trace API); metrics.
//! - `gateway`: plugin health from `plugins.list` and heartbeats (`/readyz`, the agents list),
//!   native approvals resolved over the link, an exec approved at the gate not asked twice.
//! - `e2e`: a real OpenClaw gateway with the plugin installed live; its agent's built-in tool
//!   calls allowed, denied, held and approved or denied, its turns blocked, fail closed.

mod decisions;
mod e2e;
mod endpoint;
mod gateway;
mod reports;

use serde_json::{json, Value};
use testkit::http::{post_json, HttpResponse};
use testkit::rig::{bearer, Rig, ADMIN};

/// The gateway the test plugin token belongs to.
pub const GW: &str = "ws://gw-under-test:18789";
/// Agent `main`'s workspace as OpenClaw reports it.
pub const WS: &str = "/srv/agents/main";
/// The trace of the test turn (as OpenClaw's `traceparent` would carry it).
pub const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A rig with a plugin token for [`GW`].
pub struct Plugin {
    pub rig: Rig,
    pub token: String,
}

impl Plugin {
    /// A sidecar with `[policies]` lines and extra tables, and a plugin token.
    pub async fn start(policies: &str, tables: &str) -> Plugin {
        let rig = Rig::builder().policies(policies).table(tables).start().await;
        let token = create_token(&rig, GW).await;
        Plugin { rig, token }
    }

    pub fn url(&self, path: &str) -> String {
        self.rig.url(path)
    }

    /// `POST /v1/decide` with the plugin's token.
    pub async fn decide(&self, body: &Value) -> HttpResponse {
        post_json(&self.url("/v1/decide"), &bearer(&self.token), body).await
    }

    /// `POST /v1/decide/report` with the plugin's token.
    pub async fn report(&self, body: &Value) -> HttpResponse {
        post_json(&self.url("/v1/decide/report"), &bearer(&self.token), body).await
    }

    /// A decision in the background (it may be held).
    pub fn spawn_decide(&self, body: Value) -> tokio::task::JoinHandle<HttpResponse> {
        let (url, token) = (self.url("/v1/decide"), self.token.clone());
        tokio::spawn(async move { post_json(&url, &bearer(&token), &body).await })
    }

    /// Decide a pending approval through the control API.
    pub async fn decide_approval(&self, approval: &Value, decision: &str) -> HttpResponse {
        let body =
            json!({"decision": decision, "expected_version": approval["version"], "reason": "checked by the test"});
        self.rig.decide(ADMIN, approval["id"].as_str().unwrap(), &body, None).await
    }

    /// `plugin` audit records with `outcome` (for `""` every decision's; a gateway's health
    /// changes, which the sweeper writes every 5 s, only when asked for by outcome), oldest
    /// first, once there are at least `at_least` of them (records are committed just after the
    /// answer; given up after 10 s, returning what there is for the caller's assertion to show).
    pub async fn plugin_records(&self, outcome: &str, at_least: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut v = self.rig.audit("kind=plugin").await;
            v.reverse();
            v.retain(|r| {
                if outcome.is_empty() {
                    r["details"]["kind"] != "plugin_health"
                } else {
                    r["outcome"] == outcome
                }
            });
            if v.len() >= at_least || std::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Create a plugin token for `gateway` through the control API.
pub async fn create_token(rig: &Rig, gateway: &str) -> String {
    let r =
        post_json(&rig.control("/api/v1/plugin-tokens"), &bearer(ADMIN), &json!({"gateway": gateway, "label": "test"}))
            .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()["token"].as_str().unwrap().to_string()
}

/// A `tool_call` request as the plugin sends it for an interactive-less (CLI) run of `main`.
pub fn tool_call(name: &str, params: Value, run: &str, call: &str) -> Value {
    json!({"version": 1, "kind": "tool_call", "agentId": "main", "sessionKey": "agent:main:main",
        "sessionId": "s-1", "runId": run, "toolCallId": call, "toolName": name, "params": params,
        "requester": {"senderIsOwner": true}, "trace": {"traceId": TRACE, "spanId": "00f067aa0ba902b7"},
        "workspace": WS, "run": {"trigger": "user"}, "timeoutMs": 599000})
}

/// An `agent_run` request for `agent`.
pub fn agent_run(agent: &str, run: &str) -> Value {
    json!({"version": 1, "kind": "agent_run", "agentId": agent, "sessionKey": format!("agent:{agent}:main"),
        "sessionId": "s-1", "runId": run, "trigger": "user", "senderIsOwner": true,
        "model": {"provider": "cb-main", "id": "gpt-4o-mini"}, "workspace": WS,
        "trace": {"traceId": TRACE, "spanId": "00f067aa0ba902b7"}, "promptChars": 12})
}

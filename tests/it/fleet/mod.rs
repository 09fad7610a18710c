//! Fleet mode on a real PostgreSQL (a throwaway cluster per test, `testkit::postgres`):
//! migrations and the sidecar registry (`registry`), the fleet kill switch across three
//! sidecars with its propagation measured (`kill`) and carried into a real OpenClaw
//! (`openclaw`), fleet budgets central (`budget`) and on the call path (`budget_path`), the
//! shared approval inbox (`inbox`), fleet-wide grants (`grants`), the central audit trail
//! (`audit`), the policy rollout (`rollout`), and faults: the real binary SIGKILLed holding a
//! lease (`faults`), the primary of a synchronous-quorum cluster SIGKILLed and a standby
//! promoted (`failover`), the network path to the database black-holed (`partition`).
//! Skipped without PostgreSQL unless `CLAWBUTLER_E2E=1`, when a missing server is a failure.

mod audit;
mod browser;
mod budget;
mod budget_path;
mod failover;
mod faults;
mod grants;
mod inbox;
mod kill;
mod openclaw;
mod partition;
mod registry;
mod rollout;

use serde_json::Value;
use testkit::http::post_json;
use testkit::rig::{bearer, chat, reply_text, Rig, ADMIN};

/// One model call for `agent` through `rig`: the assistant text, and whether it reached the
/// upstream.
pub async fn call(rig: &Rig, agent: &str) -> (String, bool) {
    let before = rig.up.request_count();
    let url = rig.url(&format!("/a/{agent}/fake/v1/chat/completions"));
    let r = post_json(&url, &[], &chat("gpt-4o-mini", "hello fleet")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    (reply_text(&r.json()), rig.up.request_count() > before)
}

/// POST a control-API JSON body as the admin; the status and body.
pub async fn admin_post(rig: &Rig, path: &str, body: &Value) -> (u16, Value) {
    let r = post_json(&rig.control(path), &bearer(ADMIN), body).await;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status.as_u16(), v)
}

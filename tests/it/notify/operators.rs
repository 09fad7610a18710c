//! Operators hear about what is not an approval: a breaker opening, a killed and recovered
//! agent, a policy reload that failed. Each reaches the operators' route as its own event kind,
//! with the reason the operator gave or the sidecar recorded.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::post_json;
use testkit::rig::{bearer, ADMIN};

use super::receiver::Receiver;
use super::{rig, secret_file};

/// Messages until one of `event` arrives (at most 5 s); returns it.
async fn until(recv: &Receiver, event: &str) -> Value {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while tokio::time::Instant::now() < end {
        let Some(g) = recv.next(Duration::from_millis(200)).await else { continue };
        let v = g.json();
        if v["event"] == event {
            return v;
        }
        seen.push(v["event"].clone());
    }
    panic!("no {event} message; saw {seen:?}");
}

#[tokio::test]
async fn breakers_kills_and_failed_reloads_reach_the_operators() {
    let recv = Receiver::ok().await;
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path(), "s", "ops-secret");
    let rig = rig(&format!(
        "[prices.\"metered-model\"]\ninput = 0.0\noutput = 1000.0\n\
         [[budgets]]\nscope = \"agent:spender\"\nwindow = \"daily\"\nlimit_usd = 0.005\n\
         [notify]\n[[notify.channels]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{secret}\"\n\
         [[notify.routes]]\nid = \"operators\"\nevents = [\"budget.*\", \"agent.killed\", \"agent.recovered\", \"policy.reload_failed\"]\nchannels = [\"ops\"]\nburst_ms = 0\n",
        recv.url("/ops")
    ))
    .await;

    // One call spends the whole budget: its breaker opens.
    let body = json!({"model": "metered-model", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let r = post_json(&rig.url("/a/spender/fake/v1/chat/completions"), &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let open = until(&recv, "budget.open").await;
    assert_eq!(open["risk"], "high");
    assert!(open["title"].as_str().unwrap().contains("agent:spender@daily breaker opened"), "{open}");
    assert!(open["text"].as_str().unwrap().contains("Spent: $0.0050 of $0.0050"), "{open}");
    assert!(open["ui_url"].as_str().unwrap().ends_with("/#/budgets"), "{open}");

    // Kill and recover an agent, with reasons.
    let r =
        post_json(&rig.control("/api/v1/agents/main/kill"), &bearer(ADMIN), &json!({"reason": "runaway loop"})).await;
    assert!(r.status.is_success(), "{}", r.text());
    let killed = until(&recv, "agent.killed").await;
    assert_eq!(killed["agent"], "main");
    assert!(killed.to_string().contains("runaway loop"), "{killed}");
    let r = post_json(
        &rig.control("/api/v1/agents/main/recover"),
        &bearer(ADMIN),
        &json!({"reason": "fixed", "confirm": true}),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    assert_eq!(until(&recv, "agent.recovered").await["agent"], "main");

    // A broken rule file: the reload fails (the old bundle keeps serving) and operators hear it.
    std::fs::write(rig.dir.path().join("bundle/zz_broken.rego"), "package clawbutler\n\nthis is not rego {\n").unwrap();
    let r = post_json(&rig.control("/api/v1/policies/reload"), &bearer(ADMIN), &json!({})).await;
    assert!(!r.status.is_success(), "{}", r.text());
    let failed = until(&recv, "policy.reload_failed").await;
    assert_eq!(failed["risk"], "high");
    assert!(failed["ui_url"].as_str().unwrap().ends_with("/#/policies"), "{failed}");
}

/// The notifier takes the live stream in gathers (`dispatch.rs`, `GATHER`): a burst larger than
/// the stream's buffer arriving meanwhile is read back from the log, and every event still
/// reaches the route once. With a buffer of two records, thirty agents are killed and
/// recovered at once.
#[tokio::test]
async fn a_burst_beyond_the_live_streams_buffer_is_read_back_and_every_event_announced() {
    const N: usize = 30;
    let recv = Receiver::ok().await;
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path(), "s", "ops-secret");
    let rig = rig(&format!(
        "[audit]\nbroadcast_capacity = 2\n\
         [notify]\n[[notify.channels]]\nname = \"ops\"\nkind = \"webhook\"\nurl = \"{}\"\nsecret_file = \"{secret}\"\n\
         [[notify.routes]]\nid = \"operators\"\nevents = [\"agent.killed\", \"agent.recovered\"]\nchannels = [\"ops\"]\nburst_ms = 0\n",
        recv.url("/ops")
    ))
    .await;
    for (action, body) in
        [("kill", json!({"reason": "burst"})), ("recover", json!({"reason": "over", "confirm": true}))]
    {
        let calls = (0..N).map(|i| {
            let (url, body) = (rig.control(&format!("/api/v1/agents/burst-{i}/{action}")), &body);
            async move { post_json(&url, &bearer(ADMIN), body).await }
        });
        for r in futures_util::future::join_all(calls).await {
            assert!(r.status.is_success(), "{}", r.text());
        }
    }
    let mut seen = std::collections::BTreeMap::<(String, String), usize>::new();
    let mut count = |v: Value| {
        let key = (v["event"].as_str().unwrap_or("").to_string(), v["agent"].as_str().unwrap_or("").to_string());
        *seen.entry(key).or_default() += 1;
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut messages = 0;
    while messages < 2 * N && tokio::time::Instant::now() < end {
        let Some(g) = recv.next(Duration::from_millis(200)).await else { continue };
        count(g.json());
        messages += 1;
    }
    // A repeat would come soon after the first: listen a little longer.
    while let Some(g) = recv.next(Duration::from_millis(500)).await {
        count(g.json());
    }
    for i in 0..N {
        for event in ["agent.killed", "agent.recovered"] {
            let n = seen.get(&(event.to_string(), format!("burst-{i}"))).copied().unwrap_or(0);
            assert_eq!(n, 1, "{event} of burst-{i} announced {n} times; saw {seen:?}");
        }
    }
    assert_eq!(seen.len(), 2 * N, "{seen:?}");
}

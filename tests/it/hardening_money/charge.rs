//! Budgets charge what was spent. The issue's reproduction: six calls with `"n": 100` against
//! a $0.01 budget were audited at $9.00, charged $0.000118, and the breaker never opened.

use serde_json::{json, Value};
use testkit::http::post_json;
use testkit::rig::{bundle_dir, Rig};
use testkit::upstream::UpstreamOptions;

use super::{agent_budget, charged, ended_calls, settled, start, PRICES};

fn chat(extra: Value) -> Value {
    let mut b = json!({"model": "metered-model", "messages": [{"role": "user", "content": "hello"}]});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    b
}

/// Output only: $0.001 per output token, input free, so estimates are exact token counts.
const OUTPUT_ONLY: &str = "[prices.\"out-model\"]\ninput = 0.0\noutput = 1000.0\n";

fn out_chat(extra: Value) -> Value {
    let mut b = chat(extra);
    b["model"] = json!("out-model");
    b
}

#[tokio::test]
async fn n_100_calls_against_a_cent_budget_are_refused_before_anything_is_spent() {
    let tables = format!(
        "{OUTPUT_ONLY}{}{}{}",
        agent_budget("main", 0.01),
        agent_budget("pair", 0.01),
        agent_budget("caps", 0.005)
    );
    let rig = start(UpstreamOptions::default(), &tables).await;
    // The reproduction: each call may cost 100 choices x 5 tokens = $0.50, so none fits.
    for _ in 0..6 {
        let r =
            post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &out_chat(json!({"n": 100, "max_tokens": 5})))
                .await;
        assert_eq!(r.status, 429, "{}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains("may cost up to $0.5000"), "{msg}");
    }
    assert_eq!(rig.up.request_count(), 0, "an n=100 call reached the upstream");
    assert_eq!(settled(&rig, "agent:main@daily").await["spent_usd"], 0.0);

    // Variant: n = 2 fits exactly ($0.01: two choices of 5 tokens); it is charged what the
    // upstream reports for both choices, and the breaker opens on it.
    let r =
        post_json(&rig.url("/a/pair/fake/v1/chat/completions"), &[], &out_chat(json!({"n": 2, "max_tokens": 5}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"].as_array().unwrap().len(), 2);
    assert_eq!(r.json()["usage"]["completion_tokens"], 10);
    let b = settled(&rig, "agent:pair@daily").await;
    let ends = ended_calls(&rig, "pair", 1).await;
    assert_eq!(ends.len(), 1);
    assert!((ends[0]["cost_usd"].as_f64().unwrap() - 0.01).abs() < 1e-12, "{}", ends[0]);
    assert_eq!(ends[0]["charged_usd"].as_f64().unwrap(), b["spent_usd"].as_f64().unwrap());
    assert!((b["spent_usd"].as_f64().unwrap() - 0.01).abs() < 1e-9, "{b}");
    assert_eq!(b["open"], true, "{b}");
    let r = post_json(&rig.url("/a/pair/fake/v1/chat/completions"), &[], &out_chat(json!({"max_tokens": 1}))).await;
    assert_eq!(r.status, 429);
    assert!(r.text().contains("daily limit reached for agent:pair"), "{}", r.text());

    // Variant: a tiny `max_completion_tokens` next to a larger `max_tokens`, which the
    // upstream honours: the estimate takes the larger cap, so the call does not fit.
    let r = post_json(
        &rig.url("/a/caps/fake/v1/chat/completions"),
        &[],
        &out_chat(json!({"max_completion_tokens": 1, "max_tokens": 6})),
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("may cost up to $0.0060"), "{}", r.text());
    assert_eq!(rig.up.request_count(), 1);
}

#[tokio::test]
async fn a_call_the_estimate_under_counts_is_charged_its_real_cost_and_opens_the_breaker() {
    // A deliberately short ceiling for what the body cannot show: a previous response's
    // context is then under-estimated, and must still be charged in full.
    let tables = format!("{PRICES}{}[proxy]\nunbounded_input_tokens = 10\n", agent_budget("main", 0.05));
    let rig = start(UpstreamOptions::default(), &tables).await;
    let long = "word ".repeat(2000);
    let first = post_json(
        &rig.url("/a/setup/fake/v1/responses"),
        &[],
        &json!({"model": "metered-model", "input": long, "max_output_tokens": 5}),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let prev = first.json()["id"].as_str().unwrap().to_string();
    let body =
        json!({"model": "metered-model", "input": "and now?", "previous_response_id": prev, "max_output_tokens": 5});
    let r = post_json(&rig.url("/a/main/fake/v1/responses"), &[], &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let input = r.json()["usage"]["input_tokens"].as_u64().unwrap();
    assert!(input > 2500, "the stored context is billed as input: {input}");
    let b = settled(&rig, "agent:main@daily").await;
    let end = &ended_calls(&rig, "main", 1).await[0];
    let (cost, reserved) = (end["cost_usd"].as_f64().unwrap(), end["details"]["reserved_usd"].as_f64().unwrap());
    assert!(cost > 0.25 && reserved < 0.05, "cost {cost}, reserved {reserved}");
    assert_eq!(end["charged_usd"].as_f64().unwrap(), b["spent_usd"].as_f64().unwrap());
    assert!(
        (b["spent_usd"].as_f64().unwrap() - cost).abs() < 1e-9,
        "charged the real cost, not min(cost, reserved): {b}"
    );
    assert_eq!(end["details"]["charge"], "cost");
    assert_eq!(b["open"], true);
    let r = post_json(&rig.url("/a/main/fake/v1/responses"), &[], &body).await;
    assert_eq!(r.status, 429, "{}", r.text());

    // Variant: a conversation's stored items cost the same way (agent `conv`, its own budget).
    let tables = format!("{PRICES}{}[proxy]\nunbounded_input_tokens = 10\n", agent_budget("conv", 0.05));
    let rig = start(UpstreamOptions::default(), &tables).await;
    let conv = |input: &str| json!({"model": "metered-model", "input": input, "conversation": "conv_1", "max_output_tokens": 5});
    let r = post_json(&rig.url("/a/setup/fake/v1/responses"), &[], &conv(&long)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(&rig.url("/a/conv/fake/v1/responses"), &[], &conv("more")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = settled(&rig, "agent:conv@daily").await;
    let end = &ended_calls(&rig, "conv", 1).await[0];
    assert!(end["cost_usd"].as_f64().unwrap() > 0.25, "{end}");
    assert!((b["spent_usd"].as_f64().unwrap() - end["cost_usd"].as_f64().unwrap()).abs() < 1e-9, "{b}");
    assert_eq!(b["open"], true);
}

/// A bundle rule that holds back what the estimate cannot bound, as an operator might write it.
const UNBOUNDED_RULE: &str = r#"package clawbutler

model_denies contains f if {
	input.kind == "model_call"
	some reason in input.cost.unbounded
	reason in {"previous_response_id", "image", "server_tool"}
	f := {"rule": "test.unbounded_cost", "reason": sprintf("cost cannot be bounded: %v", [input.cost.unbounded]), "risk": "medium"}
}
"#;

#[tokio::test]
async fn unbounded_features_are_visible_to_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir(dir.path(), &[("zz_unbounded.rego", UNBOUNDED_RULE)]);
    let tables = format!("{PRICES}{}", agent_budget("main", 10.0));
    let up = testkit::upstream::ScriptedUpstream::start().await;
    let cfg = testkit::rig::SidecarConfig::new(&dir.path().join("data"))
        .upstreams(&up.base_url())
        .policy_dir(&bundle)
        .table(&tables);
    let sidecar = clawbutler::app::Sidecar::start(cfg.build()).await.unwrap();
    let rig = Rig { sidecar, up, dir, cfg };
    let cases = [
        (
            "/a/main/fake/v1/responses",
            json!({"model": "metered-model", "input": "x", "previous_response_id": "resp_x", "max_output_tokens": 5}),
        ),
        (
            "/a/main/fake/v1/chat/completions",
            chat(
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]}),
            ),
        ),
        (
            "/a/main/anth/v1/messages",
            json!({"model": "metered-model", "max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "web_search"}], "messages": [{"role": "user", "content": "x"}]}),
        ),
    ];
    for (path, body) in &cases {
        let r = post_json(&rig.url(path), &[], body).await;
        assert!(r.text().contains("test.unbounded_cost"), "{path}: {}", r.text());
    }
    assert_eq!(rig.up.request_count(), 0);
    // A plain call with a cap is bounded and passes; its records show no unbounded reason.
    let r = post_json(&rig.url("/a/main/fake/v1/chat/completions"), &[], &chat(json!({"max_tokens": 5}))).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let end = &ended_calls(&rig, "main", 1).await[0];
    assert!(end["details"]["unbounded"].is_null(), "{end}");
    assert!(end["details"]["reserved_usd"].as_f64().unwrap() > 0.0);
    // Without a cap the estimate assumes the default cap, and says so.
    let r = post_json(&rig.url("/a/nocap/fake/v1/chat/completions"), &[], &chat(json!({}))).await;
    assert_eq!(r.status, 200);
    let end = &ended_calls(&rig, "nocap", 1).await[0];
    assert_eq!(end["details"]["unbounded"], json!(["no_output_cap"]));
}

/// One call of each kind whose cost the body alone does not show.
fn mixed_call(i: usize, prev: &str) -> (&'static str, Value) {
    let img = json!({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}});
    match i % 6 {
        0 => ("/a/main/fake/v1/chat/completions", chat(json!({"n": 20, "max_tokens": 5}))),
        1 => (
            "/a/main/fake/v1/responses",
            json!({"model": "metered-model", "input": "go on", "previous_response_id": prev, "max_output_tokens": 5}),
        ),
        2 => (
            "/a/main/fake/v1/chat/completions",
            chat(
                json!({"max_tokens": 5, "messages": [{"role": "user", "content": [img, {"type": "text", "text": "what is it"}]}]}),
            ),
        ),
        3 => (
            "/a/main/fake/v1/responses",
            json!({"model": "metered-model", "input": "SEARCHES:2 look it up", "tools": [{"type": "web_search"}],
                   "max_tool_calls": 2, "max_output_tokens": 5}),
        ),
        4 => (
            "/a/main/anth/v1/messages",
            json!({"model": "metered-model", "max_tokens": 5, "stream": true,
                   "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}],
                   "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}, {"type": "text", "text": "find it"}]}]}),
        ),
        _ => (
            "/a/main/fake/v1/chat/completions",
            chat(json!({"max_tokens": 5, "stream": true, "web_search_options": {}})),
        ),
    }
}

/// Fire `n` mixed calls at once against a $`limit` budget; returns (spend, overshoot, bound,
/// admitted, breaker open) after checking spend against the log.
async fn burst(ceiling: u64, limit: f64, n: usize) -> (f64, f64, f64, usize, bool) {
    let tables = format!(
        "{PRICES}{}[proxy]\nunbounded_input_tokens = {ceiling}\nserver_tool_call_usd = 0.01\n",
        agent_budget("main", limit)
    );
    let rig = start(UpstreamOptions::default(), &tables).await;
    let first = post_json(
        &rig.url("/a/setup/fake/v1/responses"),
        &[],
        &json!({"model": "metered-model", "input": "word ".repeat(4000), "max_output_tokens": 5}),
    )
    .await;
    let prev = first.json()["id"].as_str().unwrap().to_string();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (path, body) = mixed_call(i, &prev);
            let url = rig.url(path);
            tokio::spawn(async move { post_json(&url, &[], &body).await })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => admitted += 1,
            429 => assert!(r.text().contains("daily limit reached"), "{}", r.text()),
            s => panic!("status {s}: {}", r.text()),
        }
    }
    let b = settled(&rig, "agent:main@daily").await;
    let ends = ended_calls(&rig, "main", admitted).await;
    assert_eq!(ends.len(), admitted);
    let spent = b["spent_usd"].as_f64().unwrap();
    // The log reconciles the budget, and the budget never holds less than the upstream billed.
    assert!((charged(&ends) - spent).abs() < 1e-6, "log {} vs budget {spent}", charged(&ends));
    let audited: f64 = ends.iter().filter_map(|r| r["cost_usd"].as_f64()).sum();
    assert!(ends.iter().all(|r| r["cost_usd"].is_f64()), "every call's usage was read");
    assert!(spent + 1e-9 >= audited, "spend {spent} below the audited cost {audited}");
    // Overshoot <= the estimation error (cost - reservation) of the calls in flight.
    let bound: f64 = ends
        .iter()
        .map(|r| (r["charged_usd"].as_f64().unwrap() - r["details"]["reserved_usd"].as_f64().unwrap()).max(0.0))
        .sum();
    let overshoot = (spent - limit).max(0.0);
    assert!(overshoot <= bound + 1e-9, "overshoot {overshoot} beyond the in-flight estimation error {bound}");
    let open = b["open"] == true;
    assert_eq!(open, spent >= limit, "{b}");
    (spent, overshoot, bound, admitted, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_with_every_multiplier_never_leave_spend_below_the_audited_cost() {
    // A ceiling above what any of these calls adds: every estimate is a bound, so the
    // budget is never overshot at all.
    let (spent, overshoot, bound, admitted, _) = burst(6000, 3.0, 48).await;
    eprintln!("bounded estimates: 48 concurrent calls, {admitted} admitted, spent ${spent:.4} of $3, overshoot ${overshoot:.4}, in-flight estimation error ${bound:.4}");
    assert_eq!((overshoot, bound), (0.0, 0.0));
    assert!(admitted > 0);
    // A ceiling far too short: estimates under-count, the calls in flight overshoot the limit
    // by at most their estimation error, the real cost is charged and the breaker opens.
    let (spent, overshoot, bound, admitted, open) = burst(10, 3.0, 48).await;
    eprintln!("under-estimates: 48 concurrent calls, {admitted} admitted, spent ${spent:.4} of $3, overshoot ${overshoot:.4}, in-flight estimation error ${bound:.4}");
    assert!(open, "the breaker opens on the real cost");
    assert!(overshoot > 0.0 && bound > 0.0);
}

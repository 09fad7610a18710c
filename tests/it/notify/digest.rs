//! The daily digest holds the numbers the audit log and the budgets hold: approvals asked,
//! allowed, denied and waiting; spend per agent; budget state and breakers; denials by rule.
//! Each figure is compared with what the audit API and the budgets API say, then the digest
//! is sent to its route and the receiver's message carries the same numbers.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::http::{get, post_json};
use testkit::rig::{bearer, chat, ADMIN};

use super::receiver::Receiver;
use super::{rig_with, wait_deliveries};

fn metered(prompt: &str) -> Value {
    json!({"model": "metered-model", "max_tokens": 50, "messages": [{"role": "user", "content": prompt}]})
}

#[tokio::test]
async fn the_digest_matches_the_audit_log_and_the_budgets() {
    let recv = Receiver::ok().await;
    let rig = rig_with(
        "model_allowlist = [\"metered-model\", \"needs-approval-a\", \"needs-approval-b\", \"needs-approval-c\"]",
        &format!(
            "[prices.\"metered-model\"]\ninput = 0.0\noutput = 1000.0\n\
             [[budgets]]\nscope = \"agent:spender\"\nwindow = \"daily\"\nlimit_usd = 100.0\n\
             [[budgets]]\nscope = \"agent:other\"\nwindow = \"daily\"\nlimit_usd = 0.054\n\
             [notify]\n[notify.digest]\nroute = \"daily\"\nat = \"07:30\"\ntimezone = \"Europe/Berlin\"\n\
             [[notify.channels]]\nname = \"digest-hook\"\nkind = \"slack\"\nurl = \"{}\"\n\
             [[notify.routes]]\nid = \"daily\"\nevents = [\"digest\"]\nchannels = [\"digest-hook\"]\n",
            recv.url("/digest")
        ),
    )
    .await;
    // Spend: three calls by `spender`, one by `other`, whose second call its small budget refuses.
    for (agent, prompt) in [("spender", "one"), ("spender", "two two"), ("spender", "three"), ("other", "four")] {
        let r = post_json(&rig.url(&format!("/a/{agent}/fake/v1/chat/completions")), &[], &metered(prompt)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = post_json(&rig.url("/a/other/fake/v1/chat/completions"), &[], &metered("five")).await;
    assert_eq!(r.status, 429, "{}", r.text());
    // Two denials by the model allowlist.
    for _ in 0..2 {
        let r = post_json(&rig.url("/a/spender/fake/v1/chat/completions"), &[], &chat("forbidden-model", "x")).await;
        assert!(r.text().contains("forbidden-model"), "{}", r.text());
    }
    // Three approvals: one allowed, one denied, one left waiting.
    let (a, b) = (rig.call("holder", "needs-approval-a", "a"), rig.call("holder", "needs-approval-b", "b"));
    let held = rig.wait_pending("holder", 2).await;
    let _c = rig.call("holder", "needs-approval-c", "c");
    rig.wait_pending("holder", 3).await;
    for (item, d) in held.iter().zip(["allow-once", "deny"]) {
        let r =
            rig.decide(ADMIN, item["id"].as_str().unwrap(), &json!({"decision": d, "expected_version": 1}), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    a.await.unwrap();
    b.await.unwrap();
    // Let the last model-call records land (allowed calls are recorded when they end).
    rig.model_calls("other", 2).await;
    rig.model_calls("spender", 5).await;

    let d = get(&rig.control("/api/v1/notifications/digest?hours=1"), &bearer(ADMIN)).await;
    assert_eq!(d.status, 200, "{}", d.text());
    let d = d.json();

    // Approvals, against the audit log and the inbox.
    let approvals = rig.audit("kind=approval").await;
    let count = |o: &str| approvals.iter().filter(|r| r["outcome"] == o).count() as u64;
    assert_eq!((count("created"), count("allowed"), count("denied")), (3, 1, 1));
    assert_eq!(d["approvals"]["created"], count("created"));
    assert_eq!(d["approvals"]["allowed"], count("allowed"));
    assert_eq!(d["approvals"]["denied"], count("denied"));
    let pending = get(&rig.control("/api/v1/approvals?status=pending"), &bearer(ADMIN)).await.json();
    assert_eq!(d["approvals"]["waiting_now"], pending["items"].as_array().unwrap().len() as u64);
    assert_eq!(d["approvals"]["waiting_now"], 1);

    // Spend per agent, against the audit log's charges and the budgets' ledgers.
    let calls = rig.audit("kind=model_call").await;
    let charged = |agent: &str| -> f64 {
        calls.iter().filter(|r| r["agent"] == agent).filter_map(|r| r["charged_usd"].as_f64()).sum()
    };
    let spend = |agent: &str| d["spend"].as_array().unwrap().iter().find(|s| s["agent"] == agent).cloned().unwrap();
    for agent in ["spender", "other"] {
        let s = spend(agent);
        assert!(charged(agent) > 0.0, "{agent} was charged");
        assert!(
            (s["charged_usd"].as_f64().unwrap() - charged(agent)).abs() < 1e-6,
            "{agent}: {s} vs {}",
            charged(agent)
        );
        let b = get(&rig.control(&format!("/api/v1/budgets/agent:{agent}@daily")), &bearer(ADMIN)).await.json();
        assert!((s["charged_usd"].as_f64().unwrap() - b["spent_usd"].as_f64().unwrap()).abs() < 1e-6, "{s} vs {b}");
    }
    assert_eq!(spend("spender")["calls"], 3);
    let total: f64 = ["spender", "other", "holder"].iter().map(|a| charged(a)).sum();
    assert!((d["total_charged_usd"].as_f64().unwrap() - total).abs() < 1e-6, "{d}");

    // Budgets and breakers, against the budgets API.
    let budgets = get(&rig.control("/api/v1/budgets"), &bearer(ADMIN)).await.json();
    for b in budgets["items"].as_array().unwrap() {
        let mine = d["budgets"].as_array().unwrap().iter().find(|x| x["id"] == b["id"]).cloned().unwrap();
        assert_eq!(
            (mine["open"].as_bool(), mine["limit_usd"].as_f64()),
            (b["open"].as_bool(), b["limit_usd"].as_f64())
        );
    }
    let open_now: Vec<&Value> =
        budgets["items"].as_array().unwrap().iter().filter(|b| b["open"] == true).map(|b| &b["id"]).collect();
    assert_eq!(d["breakers"]["open_now"].as_array().unwrap().iter().collect::<Vec<_>>(), open_now);
    let budget_recs = rig.audit("kind=budget").await;
    for (k, o) in [("opened", "open"), ("warned", "warn"), ("closed", "close")] {
        assert_eq!(d["breakers"][k], budget_recs.iter().filter(|r| r["outcome"] == o).count() as u64, "{k}");
    }

    // Denials by rule, against the audit log: the allowlist's two, the budget's refusal and the
    // approver's "deny" (recorded on the held call with the hold rule).
    let denials: Vec<&Value> = calls
        .iter()
        .filter(|r| r["action"] == "deny" && (r["outcome"] == "denied" || r["outcome"] == "budget_exceeded"))
        .collect();
    assert_eq!(denials.len(), 4, "{denials:#?}");
    assert_eq!(d["denied_total"], denials.len() as u64);
    let rule = "model.not_allowed";
    assert_eq!(denials.iter().filter(|r| r["rule"] == rule).count(), 2);
    assert_eq!(d["top_denied_rules"][0], json!({"rule": rule, "count": 2}), "{d}");

    // Sent now to the digest route: the message carries the same numbers.
    let r = post_json(&rig.control("/api/v1/notifications/digest/send"), &bearer(ADMIN), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = recv.next(Duration::from_secs(5)).await.expect("the digest message");
    let text = got.json()["blocks"][1]["text"]["text"].as_str().unwrap().to_string();
    assert!(text.contains("3 asked, 1 allowed, 1 denied, 0 expired, 1 waiting now"), "{text}");
    assert!(text.contains(&format!("${:.4} charged to budgets", d["total_charged_usd"].as_f64().unwrap())), "{text}");
    assert!(text.contains("Budget agent:other@daily") && text.contains("Budget agent:spender@daily"), "{text}");
    assert!(text.contains(rule), "{text}");
    assert_eq!(wait_deliveries(&rig, "route=daily", 1).await[0]["status"], "delivered");
}

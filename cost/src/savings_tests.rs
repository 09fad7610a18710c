//! Savings suggestions over generated calls (several agents, models and task types, a fixed
//! clock): the cheaper cost equals the price table applied to every call's tokens one by one;
//! tool use, errors and retries make a suggestion risky; a model with no cheaper model of its
//! family gets none; the evidence (retries included) survives a restart.

use std::collections::HashMap;
use std::sync::Arc;

use audit::{AuditRecord, RecordKind, Usage};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

use crate::savings::{PriceBook, SuggestQuery, Suggestions, Verdict};
use crate::{Clock, Cost, CostSettings};

/// USD per million: (family, input, output, cached input).
struct Book(HashMap<&'static str, (&'static str, f64, f64, f64)>);

impl Book {
    fn new() -> Book {
        Book(HashMap::from([
            ("big", ("openai", 10.0, 40.0, 1.0)),
            ("mid", ("openai", 2.0, 8.0, 0.5)),
            ("small", ("openai", 0.5, 2.0, 0.05)),
            ("text-embedding-z", ("openai", 0.01, 0.0, 0.01)),
            ("claude-x", ("anthropic", 3.0, 15.0, 0.3)),
        ]))
    }
}

impl PriceBook for Book {
    fn resolve(&self, model: &str) -> Option<(String, String)> {
        self.0.get_key_value(model).map(|(k, v)| (k.to_string(), v.0.to_string()))
    }
    fn entries(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.to_string(), v.0.to_string())).collect()
    }
    fn cost(&self, model: &str, u: &Usage) -> Option<f64> {
        let (_, i, o, c) = self.0.get(model)?;
        let plain = u.input_tokens - u.cached_input_tokens;
        Some((plain as f64 * i + u.cached_input_tokens as f64 * c + u.output_tokens as f64 * o) / 1e6)
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

struct Gen {
    recs: Vec<AuditRecord>,
}

impl Gen {
    /// One model call's end, priced by the book (as the proxy prices it).
    #[allow(clippy::too_many_arguments)] // one record, every field a test varies
    fn call(
        &mut self,
        t: DateTime<Utc>,
        agent: &str,
        session: &str,
        model: &str,
        outcome: &str,
        u: Usage,
        tools: bool,
    ) {
        let cost = Book::new().cost(model, &u);
        self.recs.push(AuditRecord {
            seq: self.recs.len() as u64 + 1,
            ts: t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            kind: Some(RecordKind::ModelCall),
            agent: Some(agent.into()),
            session: Some(session.into()),
            trace_id: Some(format!("tr-{}", self.recs.len())),
            subject: json!({"model": model, "upstream": "u", "tools": if tools { json!(["exec"]) } else { json!([]) }}),
            details: json!({"finish_reason": if tools { "tool_calls" } else { "stop" }, "tool_calls": u64::from(tools)}),
            usage: Some(u),
            cost_usd: if outcome == "completed" { cost } else { Some(0.0) },
            latency_ms: Some(1500.0),
            outcome: Some(outcome.into()),
            ..Default::default()
        });
    }
}

fn u(input: u64, cached: u64, output: u64) -> Usage {
    Usage { input_tokens: input, cached_input_tokens: cached, output_tokens: output, ..Default::default() }
}

/// Three days of traffic (ending at t0 + 3 days), plus one dear call 10 days back (outside a
/// 7-day window).
fn traffic() -> Vec<AuditRecord> {
    let mut g = Gen { recs: Vec::new() };
    let cron = "agent:summarizer:cron:digest";
    g.call(t0() - Duration::days(7), "summarizer", cron, "mid", "completed", u(9_000_000, 0, 0), false);
    for i in 0..60i64 {
        let t = t0() + Duration::minutes(i * 70);
        // Short, tool-free answers on the dear model, some prompt cached: a good candidate.
        g.call(t, "summarizer", cron, "big", "completed", u(2000 + i as u64 * 13, 500, 80 + i as u64 % 7), false);
        // A coder calling tools in half its answers: risky.
        let tools = i % 2 == 0;
        g.call(t, "coder", "agent:coder:main", "big", "completed", u(8000, 0, 300), tools);
        // A model with no cheaper one in its family, and one that is already the cheapest.
        g.call(t, "writer", "agent:writer:main", "claude-x", "completed", u(3000, 0, 100), false);
        g.call(t, "frugal", "agent:frugal:main", "small", "completed", u(3000, 0, 100), false);
        // A flaky agent: every third call fails and is retried 5 s later in its session.
        let s = format!("agent:flaky:main-{}", i % 4);
        if i % 3 == 0 {
            g.call(t, "flaky", &s, "mid", "upstream_error", u(0, 0, 0), false);
            g.call(t + Duration::seconds(6), "flaky", &s, "mid", "completed", u(1000, 0, 50), false);
        } else {
            g.call(t, "flaky", &s, "mid", "completed", u(1000, 0, 50), false);
        }
    }
    for i in 0..5 {
        g.call(t0() + Duration::hours(i), "newbie", "agent:newbie:main", "big", "completed", u(500, 0, 10), false);
    }
    g.recs
}

fn open(dir: &std::path::Path, clock: Clock) -> Arc<Cost> {
    let db = storage::Store::reopen(&dir.join("state")).unwrap();
    let reg = prometheus::Registry::new();
    let audit = Arc::new(audit::AuditLog::open(&dir.join("audit"), &Default::default(), &db, &reg).unwrap());
    let cost = Arc::new(Cost::open(&db, audit, CostSettings::default(), clock, &reg).unwrap());
    cost.set_prices(Arc::new(Book::new()));
    cost
}

fn week() -> SuggestQuery {
    let until = t0() + Duration::days(3);
    SuggestQuery { since: until - Duration::days(7), until, agent: None, limit: 100 }
}

fn find<'a>(s: &'a Suggestions, agent: &str) -> &'a crate::savings::Suggestion {
    s.items.iter().find(|i| i.agent == agent).unwrap_or_else(|| panic!("no suggestion for {agent}: {s:?}"))
}

/// The book's price of each matching call's tokens, one call at a time.
fn per_call(recs: &[AuditRecord], agent: &str, model_of_calls: &str, priced_on: &str, since: DateTime<Utc>) -> f64 {
    recs.iter()
        .filter(|r| r.agent.as_deref() == Some(agent) && r.subject["model"] == model_of_calls)
        .filter(|r| DateTime::parse_from_rfc3339(&r.ts).unwrap() >= since)
        .map(|r| Book::new().cost(priced_on, r.usage.as_ref().unwrap()).unwrap())
        .sum()
}

#[test]
fn cheaper_costs_are_the_price_table_on_the_same_tokens_and_verdicts_explain_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + Duration::days(3);
    let cost = open(dir.path(), Arc::new(move || now));
    let recs = traffic();
    for chunk in recs.chunks(37) {
        cost.apply(chunk).unwrap();
    }
    let s = cost.suggestions(&week()).unwrap();
    let since = week().since;

    // The summarizer: its cron task on `big` (the older, dearer `mid` call is outside the
    // window), cheaper on `small` then `mid`, never on another family's model or an embedding.
    let sum = find(&s, "summarizer");
    assert_eq!((sum.task.as_str(), sum.model.as_str(), sum.calls), ("cron", "big", 60));
    let names: Vec<&str> = sum.candidates.iter().map(|c| c.model.as_str()).collect();
    assert_eq!(names, ["small", "mid"]);
    let priced = per_call(&recs, "summarizer", "big", "big", since);
    assert!((sum.priced_usd - priced).abs() < 1e-9, "{} vs {priced}", sum.priced_usd);
    assert!((sum.cost_usd - priced).abs() < 1e-6, "the real cost is the same table's");
    for c in &sum.candidates {
        let want = per_call(&recs, "summarizer", "big", &c.model, since);
        assert!((c.cost_usd - want).abs() < 1e-9, "{}: {} vs {want}", c.model, c.cost_usd);
        assert!((c.saving_usd - (priced - want)).abs() < 1e-9);
        assert!((c.saving_pct - (priced - want) / priced * 100.0).abs() < 1e-6);
    }
    assert_eq!(sum.evidence.cached_input_tokens, 60 * 500);
    assert_eq!((sum.evidence.short_calls, sum.evidence.tool_free_calls), (60, 60));
    assert_eq!(sum.verdict, Verdict::GoodCandidate, "{:?}", sum.reasons);
    assert!(sum.reasons[0].contains("100% of answers were short"), "{:?}", sum.reasons);

    // Tool use makes it risky, with the number.
    let coder = find(&s, "coder");
    assert_eq!(coder.verdict, Verdict::Risky);
    assert_eq!(coder.evidence.tool_use_calls, 30);
    assert!(coder.reasons.iter().any(|r| r.contains("50% of answers called a tool")), "{:?}", coder.reasons);

    // Errors and retries: 20 failed calls, each retried within the window.
    let flaky = find(&s, "flaky");
    assert_eq!((flaky.evidence.calls, flaky.evidence.errors, flaky.evidence.retries), (80, 20, 20));
    assert_eq!(flaky.verdict, Verdict::Risky);
    assert!(flaky.reasons.iter().any(|r| r.contains("25% of calls failed")), "{:?}", flaky.reasons);
    assert!(flaky.reasons.iter().any(|r| r.contains("25% of calls were retries")), "{:?}", flaky.reasons);

    // Too few calls to judge.
    assert_eq!(find(&s, "newbie").verdict, Verdict::NotEnoughData);

    // No cheaper model of the same family: no suggestion, and the reason.
    for agent in ["writer", "frugal"] {
        assert!(s.items.iter().all(|i| i.agent != agent), "{agent}");
        let why = s.no_suggestion.iter().find(|n| n.agent == agent).unwrap();
        assert!(why.why.contains("no cheaper"), "{why:?}");
    }
    // Ranked by the best saving.
    let best: Vec<f64> = s.items.iter().map(|i| i.candidates[0].saving_usd).collect();
    assert!(best.windows(2).all(|w| w[0] >= w[1]), "{best:?}");

    // One agent, and a limit.
    let one = cost.suggestions(&SuggestQuery { agent: Some("coder".into()), ..week() }).unwrap();
    assert_eq!(one.items.len(), 1);
    let top = cost.suggestions(&SuggestQuery { limit: 1, ..week() }).unwrap();
    assert_eq!((top.items.len(), top.items_left_off), (1, s.items.len() - 1));
}

#[test]
fn evidence_and_a_pending_retry_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let now = t0() + Duration::days(3);
    let clock: Clock = Arc::new(move || now);
    let recs = traffic();
    // Stop right after flaky's first failure (its retry is the next flaky record).
    let cut =
        recs.iter().position(|r| r.agent.as_deref() == Some("flaky") && r.outcome.as_deref() != Some("completed"));
    let cut = cut.unwrap() + 1;
    let before = {
        let cost = open(dir.path(), clock.clone());
        cost.apply(&recs[..cut]).unwrap();
        cost.flush().unwrap();
        cost.suggestions(&week()).unwrap()
    };
    let cost = open(dir.path(), clock.clone());
    let again = cost.suggestions(&week()).unwrap();
    assert_eq!(again.items, before.items);
    cost.apply(&recs).unwrap(); // the first `cut` are at or below the cursor: skipped
    let after = cost.suggestions(&week()).unwrap();
    assert_eq!(find(&after, "flaky").evidence.retries, 20, "the retry across the restart counts");

    // The same records in one store, never restarted: the same answer.
    let dir2 = tempfile::tempdir().unwrap();
    let fresh = open(dir2.path(), clock);
    fresh.apply(&recs).unwrap();
    assert_eq!(fresh.suggestions(&week()).unwrap().items, after.items);
}

#[test]
fn without_a_price_table_suggestions_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = storage::Store::open(&dir.path().join("state")).unwrap();
    let reg = prometheus::Registry::new();
    let audit = Arc::new(audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &reg).unwrap());
    let cost = Cost::open(&db, audit, CostSettings::default(), crate::system_clock(), &reg).unwrap();
    assert!(matches!(cost.suggestions(&week()), Err(crate::CostError::NoPrices)));
}

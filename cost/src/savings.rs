//! Savings suggestions (`docs/cost.md`, "Savings suggestions"): for each agent and task type,
//! the model it spends most on, what the same tokens would have cost on each cheaper model of
//! the same family in the price table, and the evidence (`evidence`) that the task suits a
//! smaller model, judged into an explainable verdict. Read from the in-memory aggregates, never
//! from the log. Nothing here changes anything: a suggestion is for a human to act on.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::bucket::{nano_to_usd, usd_to_nano, Counts};
use crate::evidence::{Evidence, RETRY_WINDOW_S, SHORT_OUTPUT_TOKENS};
use crate::query::{hour_range, hour_start};
use crate::store::{EvidenceHours, Hours};

/// Fewer calls with evidence than this: "not enough data", whatever the shares say.
pub const MIN_EVIDENCE_CALLS: u64 = 20;
/// Answers that called a tool above this share make a switch risky.
pub const MAX_TOOL_USE_SHARE: f64 = 0.30;
/// Errors, or retries, above this share of calls make a switch risky.
pub const MAX_ERROR_RATE: f64 = 0.10;
/// A good candidate has at least this share of short answers.
pub const MIN_SHORT_SHARE: f64 = 0.60;
/// Cheaper models listed per suggestion, the biggest saving first.
pub const MAX_CANDIDATES: usize = 3;

/// The price table, as suggestions need it (the binary implements it over the proxy's table,
/// so this crate does not depend on the data path).
pub trait PriceBook: Send + Sync {
    /// The entry `model` is priced by and its family (`openai`, `anthropic`, `custom`, ...);
    /// `None` when the table has no price for it.
    fn resolve(&self, model: &str) -> Option<(String, String)>;
    /// Every entry: (name, family).
    fn entries(&self) -> Vec<(String, String)>;
    /// What `usage` costs on `model`, USD (`None` when unpriced).
    fn cost(&self, model: &str, usage: &audit::Usage) -> Option<f64>;
}

/// A suggestions query.
#[derive(Debug, Clone)]
pub struct SuggestQuery {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub agent: Option<String>,
    pub limit: usize,
}

/// The judgement on a suggestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    GoodCandidate,
    Review,
    Risky,
    NotEnoughData,
}

/// A cheaper model, priced on the same tokens.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Candidate {
    pub model: String,
    pub cost_usd: f64,
    pub saving_usd: f64,
    pub saving_pct: f64,
}

/// The evidence of one suggestion, with its shares (`null` without a denominator).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvidenceView {
    /// Calls counted with evidence (calls from before evidence was kept have none).
    pub calls: u64,
    pub completed: u64,
    pub errors: u64,
    pub retries: u64,
    pub short_calls: u64,
    pub tool_free_calls: u64,
    pub tool_use_calls: u64,
    /// Short answers among completed calls.
    pub short_share: Option<f64>,
    /// Requests that offered no tool, among calls.
    pub tool_free_share: Option<f64>,
    /// Answers that called a tool, among completed calls.
    pub tool_use_share: Option<f64>,
    pub error_rate: Option<f64>,
    pub retry_rate: Option<f64>,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_write_tokens: u64,
    pub output_tokens: u64,
}

fn share(n: u64, of: u64) -> Option<f64> {
    (of > 0).then(|| n as f64 / of as f64)
}

impl From<&Evidence> for EvidenceView {
    fn from(e: &Evidence) -> EvidenceView {
        EvidenceView {
            calls: e.calls,
            completed: e.completed,
            errors: e.errors,
            retries: e.retries,
            short_calls: e.short,
            tool_free_calls: e.tool_free,
            tool_use_calls: e.tool_use,
            short_share: share(e.short, e.completed),
            tool_free_share: share(e.tool_free, e.calls),
            tool_use_share: share(e.tool_use, e.completed),
            error_rate: share(e.errors, e.calls),
            retry_rate: share(e.retries, e.calls),
            input_tokens: e.input_tokens,
            cached_input_tokens: e.cached_input_tokens,
            cache_write_tokens: e.cache_write_tokens,
            output_tokens: e.output_tokens,
        }
    }
}

/// One suggestion: an agent's task type, the model it spends most on, the cheaper models.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Suggestion {
    pub agent: String,
    pub task: String,
    /// The model as the calls named it.
    pub model: String,
    /// The price-table entry it is priced by, and its family.
    pub priced_as: String,
    pub family: String,
    /// This model's share of the agent's spend on this task type.
    pub model_share: f64,
    /// Real figures of this agent, task and model in the window (from the buckets).
    pub calls: u64,
    pub cost_nano: u64,
    pub cost_usd: f64,
    /// This model's price on the evidence's tokens: what candidates are compared with.
    pub priced_usd: f64,
    pub evidence: EvidenceView,
    pub verdict: Verdict,
    /// Why, with the numbers behind it.
    pub reasons: Vec<String>,
    /// Cheaper models, the biggest saving first.
    pub candidates: Vec<Candidate>,
}

/// An agent's task type that got no suggestion, and why.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NoSuggestion {
    pub agent: String,
    pub task: String,
    pub model: String,
    pub why: String,
}

/// The thresholds the verdicts use, so an answer explains itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Definitions {
    pub short_output_tokens: u64,
    pub retry_window_s: i64,
    pub min_evidence_calls: u64,
    pub max_tool_use_share: f64,
    pub max_error_rate: f64,
    pub max_retry_rate: f64,
    pub min_short_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Suggestions {
    pub since: String,
    pub until: String,
    pub definitions: Definitions,
    pub items: Vec<Suggestion>,
    /// Items left out past `limit`.
    pub items_left_off: usize,
    pub no_suggestion: Vec<NoSuggestion>,
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// The verdict and its reasons (see the constants).
pub fn judge(e: &EvidenceView) -> (Verdict, Vec<String>) {
    if e.calls < MIN_EVIDENCE_CALLS {
        return (
            Verdict::NotEnoughData,
            vec![format!(
                "not enough data: {} calls with evidence in the window, {MIN_EVIDENCE_CALLS} needed",
                e.calls
            )],
        );
    }
    let (tool_use, errors, retries) =
        (e.tool_use_share.unwrap_or(0.0), e.error_rate.unwrap_or(0.0), e.retry_rate.unwrap_or(0.0));
    // (share, limit, what, count, of): each share over its limit is one reason.
    let checks = [
        (tool_use, MAX_TOOL_USE_SHARE, "of answers called a tool", e.tool_use_calls, e.completed),
        (errors, MAX_ERROR_RATE, "of calls failed", e.errors, e.calls),
        (retries, MAX_ERROR_RATE, "of calls were retries", e.retries, e.calls),
    ];
    let risks: Vec<String> = checks
        .iter()
        .filter(|c| c.0 > c.1)
        .map(|&(share, max, what, n, of)| format!("risky: {} {what} ({n} of {of}; over {})", pct(share), pct(max)))
        .collect();
    if !risks.is_empty() {
        return (Verdict::Risky, risks);
    }
    let short = e.short_share.unwrap_or(0.0);
    let facts = format!(
        "{} of answers called a tool, {} of requests offered none; {} errors, {} retries",
        pct(tool_use),
        pct(e.tool_free_share.unwrap_or(0.0)),
        pct(errors),
        pct(retries)
    );
    if short >= MIN_SHORT_SHARE {
        (
            Verdict::GoodCandidate,
            vec![
                format!("good candidate: {} of answers were short (<= {SHORT_OUTPUT_TOKENS} tokens)", pct(short)),
                facts,
            ],
        )
    } else {
        (
            Verdict::Review,
            vec![
                format!(
                    "review: only {} of answers were short (<= {SHORT_OUTPUT_TOKENS} tokens; {} for a good candidate): \
                     long answers may need the stronger model, try a sample first",
                    pct(short),
                    pct(MIN_SHORT_SHARE)
                ),
                facts,
            ],
        )
    }
}

type Key = (Arc<str>, Arc<str>, Arc<str>);
/// Per (agent, task): its main model, that model's counts, and the task's whole spend (nano).
type MainModels = HashMap<(Arc<str>, Arc<str>), (Arc<str>, Counts, u64)>;

/// Compute the suggestions over `hours` and `evidence`.
pub fn run(hours: &Hours, evidence: &EvidenceHours, book: &dyn PriceBook, q: &SuggestQuery) -> Suggestions {
    let (from, to) = hour_range(q.since, q.until);
    let skip = |agent: &str, model: &str| {
        model == "-" || model == crate::bucket::OTHER_MODEL || q.agent.as_deref().is_some_and(|a| a != agent)
    };
    let mut counts: HashMap<Key, Counts> = HashMap::new();
    for (_, buckets) in hours.range(from..to) {
        for (d, c) in buckets.iter().filter(|(d, c)| c.calls > 0 && !skip(&d.agent, &d.model)) {
            counts.entry((d.agent.clone(), d.task.clone(), d.model.clone())).or_default().add(c);
        }
    }
    let mut ev: HashMap<Key, Evidence> = HashMap::new();
    for (_, buckets) in evidence.range(from..to) {
        for (d, e) in buckets.iter().filter(|(d, _)| !skip(&d.agent, &d.model)) {
            ev.entry((d.agent.clone(), d.task.clone(), d.model.clone())).or_default().add(e);
        }
    }
    // Per (agent, task): the model with the most spend (then calls, then name), and the total.
    let mut main: MainModels = HashMap::new();
    for ((agent, task, model), c) in &counts {
        let e = main.entry((agent.clone(), task.clone())).or_insert_with(|| (model.clone(), *c, 0));
        e.2 += c.cost_nano;
        let better = (c.cost_nano, c.calls, std::cmp::Reverse(model.clone()))
            > (e.1.cost_nano, e.1.calls, std::cmp::Reverse(e.0.clone()));
        if better {
            (e.0, e.1) = (model.clone(), *c);
        }
    }
    let entries = book.entries();
    let mut items = Vec::new();
    let mut none = Vec::new();
    for ((agent, task), (model, c, total_nano)) in main {
        let no = |why: String| NoSuggestion {
            agent: agent.to_string(),
            task: task.to_string(),
            model: model.to_string(),
            why,
        };
        let Some((entry, family)) = book.resolve(&model) else {
            none.push(no("the price table has no price for this model".into()));
            continue;
        };
        let e = ev.get(&(agent.clone(), task.clone(), model.clone())).copied().unwrap_or_default();
        let usage = e.usage();
        let priced = book.cost(&model, &usage).unwrap_or(0.0);
        let mut candidates: Vec<Candidate> = entries
            .iter()
            .filter(|(name, fam)| *fam == family && *name != entry && !name.contains("embedding"))
            .filter_map(|(name, _)| {
                let cost = book.cost(name, &usage)?;
                // Compared in nano-dollars, so a rounding wobble is never a "saving".
                (usd_to_nano(cost) < usd_to_nano(priced)).then(|| Candidate {
                    model: name.clone(),
                    cost_usd: cost,
                    saving_usd: priced - cost,
                    saving_pct: (priced - cost) / priced * 100.0,
                })
            })
            .collect();
        if e.calls == 0 {
            none.push(no("no calls with evidence in the window (counted before evidence was kept)".into()));
            continue;
        }
        if candidates.is_empty() {
            none.push(no(format!("no cheaper {family} model in the price table for the same tokens")));
            continue;
        }
        candidates.sort_by(|a, b| b.saving_usd.total_cmp(&a.saving_usd).then_with(|| a.model.cmp(&b.model)));
        candidates.truncate(MAX_CANDIDATES);
        let view = EvidenceView::from(&e);
        let (verdict, reasons) = judge(&view);
        items.push(Suggestion {
            agent: agent.to_string(),
            task: task.to_string(),
            model: model.to_string(),
            priced_as: entry,
            family,
            model_share: if total_nano > 0 { c.cost_nano as f64 / total_nano as f64 } else { 1.0 },
            calls: c.calls,
            cost_nano: c.cost_nano,
            cost_usd: nano_to_usd(c.cost_nano),
            priced_usd: priced,
            evidence: view,
            verdict,
            reasons,
            candidates,
        });
    }
    let best = |s: &Suggestion| s.candidates.first().map_or(0.0, |c| c.saving_usd);
    items.sort_by(|a, b| best(b).total_cmp(&best(a)).then_with(|| (&a.agent, &a.task).cmp(&(&b.agent, &b.task))));
    none.sort_by(|a, b| (&a.agent, &a.task).cmp(&(&b.agent, &b.task)));
    let left_off = items.len().saturating_sub(q.limit);
    items.truncate(q.limit);
    let fmt = |h: u32| hour_start(h).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Suggestions {
        since: fmt(from),
        until: fmt(to),
        definitions: Definitions {
            short_output_tokens: SHORT_OUTPUT_TOKENS,
            retry_window_s: RETRY_WINDOW_S,
            min_evidence_calls: MIN_EVIDENCE_CALLS,
            max_tool_use_share: MAX_TOOL_USE_SHARE,
            max_error_rate: MAX_ERROR_RATE,
            max_retry_rate: MAX_ERROR_RATE,
            min_short_share: MIN_SHORT_SHARE,
        },
        items,
        items_left_off: left_off,
        no_suggestion: none,
    }
}

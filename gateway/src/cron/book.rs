//! The bookkeeping of cron governance, free of I/O so it is unit-tested alone: failure
//! streaks (when to alert, once per streak) and budget pauses (which agents to pause or
//! resume, and whether a paused job may be enabled again).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One job's current failure streak, persisted so a restart neither re-alerts nor forgets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// Runs in a row that did not succeed.
    pub failures: u32,
    /// Whether this streak was already alerted.
    pub alerted: bool,
}

/// Fold one finished run into a streak. `reported` is OpenClaw's own count
/// (`state.consecutiveErrors`) when the event carries it: the larger count wins, since runs
/// finished while the link was down are only in OpenClaw's, and OpenClaw's may not include
/// the run just finished yet. Returns the new streak and whether to alert now (the streak
/// reached `threshold` and was not alerted yet): once per streak, a success ends it.
pub fn observe(prev: &Streak, ok: bool, reported: Option<u32>, threshold: u32) -> (Streak, bool) {
    if ok {
        return (Streak::default(), false);
    }
    let failures = prev.failures.saturating_add(1).max(reported.unwrap_or(0));
    let alert = failures >= threshold.max(1) && !prev.alerted;
    (Streak { failures, alerted: prev.alerted || alert }, alert)
}

/// A job disabled by a budget pause, with the definition revision it had after the pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PausedJob {
    pub id: String,
    /// `configRevision` after the disable (a hash of the definition, `enabled` included).
    pub revision: Option<String>,
}

/// What a budget pause of one agent did, persisted until the resume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// The open budget that caused it.
    pub budget: String,
    /// RFC 3339 time of the pause.
    pub at: String,
    pub jobs: Vec<PausedJob>,
}

/// The agents whose jobs must not run: each with the first open budget that covers it. An
/// open `agent:<id>` budget covers that agent; an open `global` budget covers every agent in
/// `agents`. Other scopes (model, upstream, MCP) do not stop an agent as a whole.
pub fn open_agents(budgets: &[governance::budget::BudgetView], agents: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for b in budgets.iter().filter(|b| b.open) {
        if b.scope == "global" {
            for a in agents {
                out.entry(a.clone()).or_insert_with(|| b.id.clone());
            }
        } else if let Some(a) = b.scope.strip_prefix("agent:") {
            out.entry(a.to_string()).or_insert_with(|| b.id.clone());
        }
    }
    out
}

/// Agents to pause now (breaker open, not paused yet) and to resume (paused, breaker closed).
pub fn plan(open: &BTreeMap<String, String>, paused: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let pause = open.keys().filter(|a| !paused.contains(*a)).cloned().collect();
    let resume = paused.iter().filter(|a| !open.contains_key(*a)).cloned().collect();
    (pause, resume)
}

/// Whether a job the pause disabled may be enabled again, judged on the job as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    Enable,
    /// Left alone, with why: a person (or anything else) took the job over since the pause.
    Skip(&'static str),
}

/// See [`Resume`]: only a job still disabled with exactly the definition the pause left is
/// enabled; one removed, enabled meanwhile, or edited since is left as it is.
pub fn resume(now: Option<&Value>, paused: &PausedJob) -> Resume {
    let Some(job) = now else { return Resume::Skip("removed since the pause") };
    if job.get("enabled").and_then(Value::as_bool) != Some(false) {
        return Resume::Skip("enabled since the pause");
    }
    let rev = job.get("configRevision").and_then(Value::as_str);
    if paused.revision.is_some() && rev != paused.revision.as_deref() {
        return Resume::Skip("changed since the pause");
    }
    Resume::Enable
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_streak_alerts_once_when_it_reaches_the_threshold() {
        let mut s = Streak::default();
        let mut alerts = Vec::new();
        for ok in [false, false, false, false, false] {
            let (n, a) = observe(&s, ok, None, 3);
            s = n;
            alerts.push(a);
        }
        assert_eq!(alerts, [false, false, true, false, false]);
        assert_eq!(s, Streak { failures: 5, alerted: true });
    }

    #[test]
    fn a_success_ends_the_streak_and_the_next_one_alerts_again() {
        let (s, _) = observe(&Streak::default(), false, Some(3), 3);
        assert!(s.alerted);
        let (s, a) = observe(&s, true, None, 3);
        assert_eq!((s.clone(), a), (Streak::default(), false));
        let (s, a) = observe(&s, false, None, 3);
        assert!(!a);
        let (s, a) = observe(&s, false, None, 3);
        assert!(!a);
        let (_, a) = observe(&s, false, None, 3);
        assert!(a, "the second streak alerts too");
    }

    #[test]
    fn openclaws_larger_count_wins() {
        // Runs missed while the link was down: OpenClaw says 4 in a row, alert at once.
        let (s, a) = observe(&Streak::default(), false, Some(4), 3);
        assert_eq!((s.failures, a), (4, true));
        // OpenClaw's count not yet including this run: ours goes on.
        let (s, a) = observe(&Streak { failures: 2, alerted: false }, false, Some(2), 3);
        assert_eq!((s.failures, a), (3, true));
    }

    fn view(id: &str, scope: &str, open: bool) -> governance::budget::BudgetView {
        governance::budget::BudgetView {
            id: id.into(),
            scope: scope.into(),
            window: governance::budget::Window::Daily,
            limit_usd: 1.0,
            spent_usd: 0.0,
            reserved_usd: 0.0,
            remaining_usd: 1.0,
            warn_at: 0.8,
            timezone: "UTC".into(),
            open,
            window_key: String::new(),
            resets_at: String::new(),
            source: governance::budget::Source::Api,
        }
    }

    #[test]
    fn open_breakers_cover_their_agent_or_everyone() {
        let agents: BTreeSet<String> = ["main".to_string(), "ops".to_string()].into();
        let b = [view("m", "agent:main", true), view("o", "agent:ops", false), view("x", "model:gpt", true)];
        let open = open_agents(&b, &agents);
        assert_eq!(open.into_iter().collect::<Vec<_>>(), [("main".to_string(), "m".to_string())]);
        let g = [view("g", "global", true)];
        assert_eq!(open_agents(&g, &agents).len(), 2);
    }

    #[test]
    fn plan_pauses_newly_open_agents_and_resumes_closed_ones() {
        let open: BTreeMap<String, String> = [("main".into(), "m".into()), ("ops".into(), "o".into())].into();
        let paused: BTreeSet<String> = ["ops".to_string(), "dev".to_string()].into();
        assert_eq!(plan(&open, &paused), (vec!["main".to_string()], vec!["dev".to_string()]));
    }

    #[test]
    fn only_a_job_left_as_the_pause_left_it_is_enabled_again() {
        let p = PausedJob { id: "j".into(), revision: Some("r1".into()) };
        assert_eq!(resume(Some(&json!({"enabled": false, "configRevision": "r1"})), &p), Resume::Enable);
        assert_eq!(resume(None, &p), Resume::Skip("removed since the pause"));
        assert_eq!(
            resume(Some(&json!({"enabled": true, "configRevision": "r1"})), &p),
            Resume::Skip("enabled since the pause")
        );
        assert_eq!(
            resume(Some(&json!({"enabled": false, "configRevision": "r2"})), &p),
            Resume::Skip("changed since the pause")
        );
    }
}

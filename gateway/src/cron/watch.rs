//! What cron governance does on its own: failure streaks from the `cron` event, and the
//! budget loop that pauses an agent's jobs while its breaker is open (`docs/cron.md`).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::book::{self, Pause, PausedJob, Resume};
use crate::Gateway;

impl Gateway {
    /// A `cron` event: a `finished` run moves its job's failure streak (see `book::observe`).
    pub(crate) async fn on_cron_event(self: Arc<Self>, payload: Value) {
        if payload.get("action").and_then(Value::as_str) != Some("finished") {
            return;
        }
        let Some(id) = payload.get("jobId").and_then(Value::as_str) else { return };
        let ok = match payload.get("status").and_then(Value::as_str) {
            Some("ok") => true,
            Some("error") | Some("timeout") | Some("failed") => false,
            // Skipped (not due, disabled) is neither a success nor a failure.
            _ => return,
        };
        let job = match payload.get("job").filter(|j| j.is_object()) {
            Some(j) => j.clone(),
            None => self.cron_get(id).await.unwrap_or_else(|_| json!({"id": id})),
        };
        // A removed job's last run ("Cron job removed by operator.") starts no streak.
        if payload.get("error").and_then(Value::as_str).is_some_and(|e| e.contains("removed by operator")) {
            return;
        }
        let reported = job.pointer("/state/consecutiveErrors").and_then(Value::as_u64).map(|n| n as u32);
        let (streak, alert) = {
            let _serial = self.cron.lock.lock().await;
            let prev = self.cron.streak(id);
            let (next, alert) = book::observe(&prev, ok, reported, self.cron.settings.failure_streak);
            self.cron.set_streak(id, &next);
            (next, alert)
        };
        if alert {
            self.cron.streaks.inc();
            let last_error = payload.get("error").cloned().unwrap_or(Value::Null);
            let why = format!("{} runs in a row failed", streak.failures);
            tracing::warn!(job = id, failures = streak.failures, "cron job failure streak");
            self.audit_cron(
                &job,
                audit::Outcome::FailureStreak,
                "system",
                Some(why),
                json!({"consecutive_failures": streak.failures, "threshold": self.cron.settings.failure_streak,
                       "last_error": last_error, "run_at": payload.get("runAtMs")}),
            );
        }
    }

    /// Compare the budget breakers with the paused agents every `budget_check_ms`.
    pub(crate) async fn cron_budget_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(budgets) = self.parts.budgets.clone() else { return };
        if !self.cron.settings.budget_pause {
            return;
        }
        let mut every = tokio::time::interval(Duration::from_millis(self.cron.settings.budget_check_ms));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = every.tick() => {
                    if self.link.is_connected() {
                        self.budget_step(&budgets).await;
                    }
                }
            }
        }
    }

    async fn budget_step(&self, budgets: &governance::Budgets) {
        let paused: BTreeSet<String> = self.cron.pauses().into_iter().map(|(a, _)| a).collect();
        let mut agents: BTreeSet<String> = self.registry.ids().into_iter().collect();
        agents.extend(paused.iter().cloned());
        let open = book::open_agents(&budgets.list(), &agents);
        let (pause, resume) = book::plan(&open, &paused);
        for a in pause {
            let budget = open.get(&a).cloned().unwrap_or_default();
            self.pause_agent(&a, &budget).await;
        }
        for a in resume {
            self.resume_agent(&a).await;
        }
    }

    /// Disable the agent's enabled jobs and remember exactly those (before the next tick).
    async fn pause_agent(&self, agent: &str, budget: &str) {
        let _serial = self.cron.lock.lock().await;
        let jobs = match self.cron_jobs(Some(agent)).await {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(agent, error = %e, "cron.list for a budget pause failed; retrying");
                return;
            }
        };
        let mut pause = Pause { budget: budget.to_string(), at: chrono::Utc::now().to_rfc3339(), jobs: Vec::new() };
        let mut failed = Vec::new();
        for job in jobs.iter().filter(|j| j.get("enabled").and_then(Value::as_bool) == Some(true)) {
            let Some(id) = job.get("id").and_then(Value::as_str) else { continue };
            let mut p = json!({"id": id, "patch": {"enabled": false}});
            if let Some(r) = job.get("configRevision") {
                p["expectedConfigRevision"] = r.clone();
            }
            match self.link.call("cron.update", p).await {
                Ok(after) => pause.jobs.push(PausedJob {
                    id: id.to_string(),
                    revision: after.get("configRevision").and_then(Value::as_str).map(str::to_string),
                }),
                Err(e) => failed.push(format!("{id}: {e}")),
            }
            // Saved after each job: a crash mid-way still resumes the ones already paused.
            self.cron.set_pause(agent, Some(&pause));
        }
        self.cron.set_pause(agent, Some(&pause));
        let ids: Vec<&str> = pause.jobs.iter().map(|j| j.id.as_str()).collect();
        tracing::info!(agent, budget, jobs = ?ids, "budget breaker open: cron jobs paused");
        self.audit_cron(
            &json!({"agentId": agent}),
            audit::Outcome::BudgetPaused,
            "system",
            Some(format!("budget {budget} breaker open")),
            json!({"budget": budget, "jobs": ids, "failed": failed}),
        );
    }

    /// Enable again the jobs the pause disabled and nobody touched since.
    async fn resume_agent(&self, agent: &str) {
        let _serial = self.cron.lock.lock().await;
        let Some((_, pause)) = self.cron.pauses().into_iter().find(|(a, _)| a == agent) else { return };
        // A killed agent stays stopped: recover comes first, the jobs resume after it.
        if self.record(agent).is_some() {
            return;
        }
        let (mut enabled, mut skipped, mut left) = (Vec::new(), Vec::new(), Vec::new());
        for pj in &pause.jobs {
            let now = match self.cron_get(&pj.id).await {
                Ok(j) => Some(j),
                Err(governance::cron::CronError::NotFound(_)) => None,
                Err(e) => {
                    tracing::warn!(agent, job = %pj.id, error = %e, "cron.get for a budget resume failed; retrying");
                    left.push(pj.clone());
                    continue;
                }
            };
            match book::resume(now.as_ref(), pj) {
                Resume::Skip(why) => skipped.push(json!({"job": pj.id, "why": why})),
                Resume::Enable => {
                    let mut p = json!({"id": pj.id, "patch": {"enabled": true}});
                    if let Some(r) = &pj.revision {
                        p["expectedConfigRevision"] = json!(r);
                    }
                    match self.link.call("cron.update", p).await {
                        Ok(_) => enabled.push(pj.id.clone()),
                        Err(e) => {
                            tracing::warn!(agent, job = %pj.id, error = %e, "cron resume failed; retrying");
                            left.push(pj.clone());
                        }
                    }
                }
            }
        }
        if left.is_empty() {
            self.cron.set_pause(agent, None);
        } else {
            self.cron.set_pause(agent, Some(&Pause { jobs: left, ..pause.clone() }));
        }
        tracing::info!(agent, jobs = ?enabled, "budget breaker closed: cron jobs resumed");
        self.audit_cron(
            &json!({"agentId": agent}),
            audit::Outcome::BudgetResumed,
            "system",
            Some(format!("budget {} breaker closed", pause.budget)),
            json!({"budget": pause.budget, "jobs": enabled, "skipped": skipped}),
        );
    }
}

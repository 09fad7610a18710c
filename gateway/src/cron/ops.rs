//! The cron jobs through the link, for the control API ([`CronControl`]). Every change is
//! audited (kind `cron`) and refused when the audit log cannot record it; every update sends
//! the job's `configRevision` as `expectedConfigRevision` (the caller's, or the one read just
//! before), so OpenClaw refuses a job changed concurrently (`CRON_JOB_CHANGED`: 409 here).
//!
//! Cost of a run: the sidecar's own `model_call` records of the job's agent whose `session`
//! is the job's isolated-cron key (the `session_id` header OpenClaw sends with
//! `compat.sendSessionAffinityHeaders`; see [`isolated_cache_key`]), split between the job's
//! sequential runs by time, or the run's own `sessionId` / `sessionKey`. A run none of whose
//! calls carry one shows `cost_usd: null` and OpenClaw's own token usage (`docs/cron.md`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use governance::cron::{CronChange, CronControl, CronError, CronFuture};
use serde_json::{json, Value};

use crate::{Gateway, GatewayError};

/// Audit pages read per cost join (1,000 records each).
const COST_PAGES: usize = 10;
/// Slack around a run's `[runAtMs, runAtMs + durationMs]` when splitting a job's calls
/// between its runs (runs of one job never overlap; the clocks are the same host's).
const RUN_SLACK_MS: i64 = 2_000;

/// What OpenClaw hashes into the `session_id` header of an isolated cron run's model calls
/// (`resolveIsolatedCronPromptCacheKey`, 2026.9.6): the fields in this order, as
/// `JSON.stringify` writes them.
#[derive(serde::Serialize)]
struct CacheKeyMaterial<'a> {
    version: u32,
    kind: &'a str,
    #[serde(rename = "jobId")]
    job_id: &'a str,
    #[serde(rename = "agentId")]
    agent_id: &'a str,
    #[serde(rename = "agentSessionKey")]
    agent_session_key: &'a str,
    provider: &'a str,
    model: &'a str,
}

/// `openclaw-cron-<first 32 hex of sha256(material)>`: the job's key on the wire, per job,
/// agent, provider and model (not per run). `agentSessionKey` is the run's `sessionKey`
/// without its `:run:<sessionId>` suffix. None when the run lacks a field.
pub(crate) fn isolated_cache_key(job: &str, agent: &str, run: &Value) -> Option<String> {
    use sha2::Digest;
    let run_key = str_of(run, "sessionKey")?;
    let agent_session_key = run_key.split_once(":run:").map_or(run_key, |(k, _)| k);
    let material = CacheKeyMaterial {
        version: 1,
        kind: "isolated-cron",
        job_id: job,
        agent_id: agent,
        agent_session_key,
        provider: str_of(run, "provider")?,
        model: str_of(run, "model")?,
    };
    let json = serde_json::to_string(&material).ok()?;
    let digest = hex::encode(sha2::Sha256::digest(json.as_bytes()));
    Some(format!("openclaw-cron-{}", &digest[..32]))
}

fn cron_error(e: GatewayError) -> CronError {
    match e {
        GatewayError::Rpc { error, .. } => match error.details.get("code").and_then(Value::as_str) {
            Some("CRON_JOB_NOT_FOUND") => CronError::NotFound(error.message),
            Some("CRON_JOB_CHANGED") => CronError::Conflict(format!(
                "the job changed since revision {} (now {}); read it again before changing it",
                error.details.get("expectedConfigRevision").and_then(Value::as_str).unwrap_or("?"),
                error.details.get("actualConfigRevision").and_then(Value::as_str).unwrap_or("?"),
            )),
            _ if error.code == "INVALID_REQUEST" => CronError::BadRequest(error.message),
            _ => CronError::Unavailable(format!("gateway refused: {error}")),
        },
        other => CronError::Unavailable(other.to_string()),
    }
}

fn ms_to_rfc3339(v: Option<&Value>) -> Value {
    v.and_then(Value::as_i64)
        .and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

fn str_of<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// The job as the API shows it: the fields people ask for first, then OpenClaw's own.
pub(crate) fn job_view(job: &Value) -> Value {
    let st = job.get("state").cloned().unwrap_or(Value::Null);
    let next = job.get("nextRunAtMs").or_else(|| st.get("nextRunAtMs"));
    json!({
        "id": job.get("id"),
        "name": job.get("displayName").filter(|v| v.is_string()).or_else(|| job.get("name")),
        "agent": job.get("agentId"),
        "enabled": job.get("enabled"),
        "schedule": job.get("schedule"),
        "last_run_at": ms_to_rfc3339(st.get("lastRunAtMs")),
        "last_status": st.get("lastRunStatus").or_else(|| st.get("lastStatus")),
        "last_error": st.get("lastError"),
        "next_run_at": ms_to_rfc3339(next),
        "consecutive_failures": st.get("consecutiveErrors").and_then(Value::as_u64).unwrap_or(0),
        "config_revision": job.get("configRevision"),
        "openclaw": job,
    })
}

impl Gateway {
    pub(crate) async fn cron_get(&self, id: &str) -> Result<Value, CronError> {
        let v = self.link.call("cron.get", json!({"id": id})).await.map_err(cron_error)?;
        Ok(v.get("job").filter(|j| j.is_object()).cloned().unwrap_or(v))
    }

    pub(crate) async fn cron_jobs(&self, agent: Option<&str>) -> Result<Vec<Value>, CronError> {
        let mut p = json!({"includeDisabled": true, "limit": 200});
        if let Some(a) = agent {
            p["agentId"] = json!(a);
        }
        let v = self.link.call("cron.list", p).await.map_err(cron_error)?;
        let jobs = v.get("jobs").and_then(Value::as_array).cloned().unwrap_or_default();
        // `agentId` filters by the job's agent; a job without one runs as the default agent.
        Ok(jobs.into_iter().filter(|j| agent.is_none_or(|a| str_of(j, "agentId").is_none_or(|x| x == a))).collect())
    }

    async fn cron_runs_page(&self, id: &str, limit: u32, offset: u32) -> Result<Value, CronError> {
        self.link
            .call("cron.runs", json!({"id": id, "scope": "job", "limit": limit, "offset": offset, "sortDir": "desc"}))
            .await
            .map_err(cron_error)
    }

    /// Each run's cost from the sidecar's own records (see the module docs): run id ->
    /// (USD, calls). Runs none of whose calls could be joined are absent.
    fn run_costs(&self, job: &str, agent: &str, runs: &[Value]) -> HashMap<String, (f64, u64)> {
        let mut by_session: HashMap<String, usize> = HashMap::new();
        let mut job_keys: Vec<String> = Vec::new();
        let mut windows: Vec<(usize, i64, i64)> = Vec::new();
        let mut oldest: Option<i64> = None;
        for (i, r) in runs.iter().enumerate() {
            for k in ["sessionId", "sessionKey"] {
                if let Some(s) = str_of(r, k) {
                    by_session.insert(s.to_string(), i);
                }
            }
            if let Some(key) = isolated_cache_key(job, agent, r) {
                if !job_keys.contains(&key) {
                    job_keys.push(key);
                }
            }
            if let Some(t) = r.get("runAtMs").or_else(|| r.get("ts")).and_then(Value::as_i64) {
                let dur = r.get("durationMs").and_then(Value::as_i64).unwrap_or(0);
                windows.push((i, t, t + dur));
                oldest = Some(oldest.map_or(t, |o| o.min(t)));
            }
        }
        let mut out: HashMap<String, (f64, u64)> = HashMap::new();
        let Some(oldest) = oldest else { return out };
        let mut q = audit::AuditQuery {
            agent: Some(agent.to_string()),
            kind: Some(audit::RecordKind::ModelCall),
            // A minute of slack before the oldest run: `runAtMs` may be its schedule time.
            from: DateTime::<Utc>::from_timestamp_millis(oldest - 60_000),
            limit: Some(audit::MAX_LIMIT),
            ..Default::default()
        };
        let mut add = |i: usize, rec: &audit::AuditRecord| {
            let key = str_of(&runs[i], "runId").or_else(|| str_of(&runs[i], "sessionId")).unwrap_or_default();
            let e = out.entry(key.to_string()).or_default();
            e.0 += rec.cost_usd.unwrap_or(0.0);
            e.1 += 1;
        };
        for _ in 0..COST_PAGES {
            let page = match self.parts.audit.search(&q) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "audit search for cron cost failed");
                    break;
                }
            };
            for rec in &page.items {
                // One record per call end: `started` is followed by its end, and a refused
                // call was never sent.
                if matches!(rec.outcome.as_deref(), Some("started" | "denied" | "budget_exceeded")) {
                    continue;
                }
                let Some(session) = rec.session.as_deref() else { continue };
                if let Some(i) = by_session.get(session) {
                    add(*i, rec);
                } else if job_keys.iter().any(|k| k == session) {
                    // The job's own key: which of its (sequential) runs was going on then.
                    let at = DateTime::parse_from_rfc3339(&rec.ts).map(|t| t.timestamp_millis()).ok();
                    if let Some((i, _, _)) = at.and_then(|at| {
                        windows.iter().find(|(_, from, to)| at >= from - RUN_SLACK_MS && at <= to + RUN_SLACK_MS)
                    }) {
                        add(*i, rec);
                    }
                }
            }
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        out
    }

    fn with_costs(&self, job: &str, agent: &str, runs: &[Value]) -> (Vec<Value>, Option<f64>, u64) {
        let costs = self.run_costs(job, agent, runs);
        let (mut total, mut calls, mut any) = (0.0, 0, false);
        let out = runs
            .iter()
            .map(|r| {
                let key = str_of(r, "runId").or_else(|| str_of(r, "sessionId")).unwrap_or_default();
                let c = costs.get(key);
                if let Some((usd, n)) = c {
                    total += usd;
                    calls += n;
                    any = true;
                }
                json!({
                    "run_id": r.get("runId"),
                    "at": ms_to_rfc3339(r.get("runAtMs").or_else(|| r.get("ts"))),
                    "status": r.get("status"),
                    "completion_status": r.get("completionStatus"),
                    "error": r.get("error"),
                    "summary": r.get("summary"),
                    "duration_ms": r.get("durationMs"),
                    "model": r.get("model"),
                    "session_id": r.get("sessionId"),
                    "session_key": r.get("sessionKey"),
                    "usage": r.get("usage"),
                    "cost_usd": c.map(|c| c.0),
                    "model_calls": c.map(|c| c.1),
                })
            })
            .collect();
        (out, any.then_some(total), calls)
    }

    async fn job_with_cost(&self, job: &Value) -> Value {
        let mut view = job_view(job);
        let id = str_of(job, "id").unwrap_or_default();
        let agent = str_of(job, "agentId").unwrap_or("main");
        let runs = match self.cron_runs_page(id, self.cron.settings.cost_runs, 0).await {
            Ok(p) => p.get("entries").and_then(Value::as_array).cloned().unwrap_or_default(),
            Err(e) => {
                view["cost"] = json!({"error": e.to_string()});
                return view;
            }
        };
        let (_, usd, calls) = self.with_costs(id, agent, &runs);
        view["cost"] = json!({"usd": usd, "model_calls": calls, "runs": runs.len(),
                              "over": format!("the last {} runs", self.cron.settings.cost_runs)});
        if let Some(p) = self.cron.pauses().into_iter().find(|(_, p)| p.jobs.iter().any(|j| j.id == id)) {
            view["budget_paused"] = json!({"agent": p.0, "budget": p.1.budget, "at": p.1.at});
        }
        view
    }

    pub(crate) fn audit_cron(
        &self,
        job: &Value,
        outcome: audit::Outcome,
        actor: &str,
        reason: Option<String>,
        details: Value,
    ) {
        let ev = audit::AuditEvent {
            agent: str_of(job, "agentId").map(str::to_string),
            actor: Some(actor.to_string()),
            outcome: Some(outcome),
            reason,
            subject: json!({"job": job.get("id"), "job_name": job.get("name")}),
            details,
            risk: Some(match outcome {
                audit::Outcome::FailureStreak | audit::Outcome::BudgetPaused => decision::Risk::Medium,
                _ => decision::Risk::Low,
            }),
            ..audit::AuditEvent::new(audit::RecordKind::Cron)
        };
        if let Err(e) = self.parts.audit.append(ev) {
            tracing::error!(error = %e, "cron audit append failed");
        }
    }

    fn require_audit(&self) -> Result<(), CronError> {
        self.parts.audit.require(audit::Face::Control).map_err(|u| CronError::AuditUnavailable(u.to_string()))
    }

    async fn change_job(
        &self,
        id: &str,
        change: CronChange,
        revision: Option<String>,
        actor: &str,
    ) -> Result<Value, CronError> {
        self.require_audit()?;
        let _serial = self.cron.lock.lock().await;
        let before = self.cron_get(id).await?;
        let revision = revision.or_else(|| str_of(&before, "configRevision").map(str::to_string));
        let (patch, outcome) = match &change {
            CronChange::Update(p) if !p.is_object() => {
                return Err(CronError::BadRequest("patch must be a JSON object".into()))
            }
            CronChange::Update(p) => (p.clone(), audit::Outcome::Updated),
            CronChange::Enabled(true) => (json!({"enabled": true}), audit::Outcome::Enabled),
            CronChange::Enabled(false) => (json!({"enabled": false}), audit::Outcome::Disabled),
        };
        let mut p = json!({"id": id, "patch": patch});
        if let Some(r) = &revision {
            p["expectedConfigRevision"] = json!(r);
        }
        match self.link.call("cron.update", p).await.map_err(cron_error) {
            Ok(job) => {
                // A person decided this job's state: a budget resume must not undo it.
                if matches!(change, CronChange::Enabled(_)) || patch.get("enabled").is_some() {
                    self.forget_paused(id);
                }
                self.audit_cron(
                    &job,
                    outcome,
                    actor,
                    None,
                    json!({"patch": patch, "revision_before": revision, "revision_after": job.get("configRevision")}),
                );
                Ok(job_view(&job))
            }
            Err(e) => {
                if let CronError::Conflict(why) = &e {
                    self.audit_cron(
                        &before,
                        audit::Outcome::Conflict,
                        actor,
                        Some(why.clone()),
                        json!({"patch": patch, "expected_revision": revision}),
                    );
                }
                Err(e)
            }
        }
    }

    /// Drop a job from every budget-pause record (a person changed its enabled state).
    fn forget_paused(&self, id: &str) {
        for (agent, mut p) in self.cron.pauses() {
            if p.jobs.iter().any(|j| j.id == id) {
                p.jobs.retain(|j| j.id != id);
                self.cron.set_pause(&agent, Some(&p));
            }
        }
    }
}

impl CronControl for Gateway {
    fn list<'a>(&'a self, agent: Option<&'a str>) -> CronFuture<'a> {
        Box::pin(async move {
            let jobs = self.cron_jobs(agent).await?;
            let mut out = Vec::with_capacity(jobs.len());
            for j in &jobs {
                out.push(self.job_with_cost(j).await);
            }
            Ok(json!({"items": out}))
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> CronFuture<'a> {
        Box::pin(async move {
            let job = self.cron_get(id).await?;
            Ok(self.job_with_cost(&job).await)
        })
    }

    fn runs<'a>(&'a self, id: &'a str, limit: u32, offset: u32) -> CronFuture<'a> {
        Box::pin(async move {
            let job = self.cron_get(id).await?;
            let page = self.cron_runs_page(id, limit, offset).await?;
            let entries = page.get("entries").and_then(Value::as_array).cloned().unwrap_or_default();
            let agent = str_of(&job, "agentId").unwrap_or("main");
            let (items, usd, calls) = self.with_costs(id, agent, &entries);
            let next = page.get("nextOffset").and_then(Value::as_u64).filter(|_| page["hasMore"] == true);
            Ok(json!({"items": items, "total": page.get("total"), "offset": offset, "limit": limit,
                      "next_offset": next, "page_cost_usd": usd, "page_model_calls": calls}))
        })
    }

    fn create<'a>(&'a self, job: Value, actor: &'a str) -> CronFuture<'a> {
        Box::pin(async move {
            if !job.is_object() {
                return Err(CronError::BadRequest("the job must be a JSON object (cron.add parameters)".into()));
            }
            self.require_audit()?;
            let created = self.link.call("cron.add", job.clone()).await.map_err(cron_error)?;
            let created = created.get("job").filter(|j| j.is_object()).cloned().unwrap_or(created);
            self.audit_cron(&created, audit::Outcome::Created, actor, None, json!({"job": job}));
            Ok(job_view(&created))
        })
    }

    fn change<'a>(
        &'a self,
        id: &'a str,
        change: CronChange,
        revision: Option<String>,
        actor: &'a str,
    ) -> CronFuture<'a> {
        Box::pin(async move { self.change_job(id, change, revision, actor).await })
    }

    fn remove<'a>(&'a self, id: &'a str, actor: &'a str) -> CronFuture<'a> {
        Box::pin(async move {
            self.require_audit()?;
            let job = self.cron_get(id).await?;
            let r = self.link.call("cron.remove", json!({"id": id})).await.map_err(cron_error)?;
            self.forget_paused(id);
            self.cron.forget_streak(id);
            self.audit_cron(&job, audit::Outcome::Delete, actor, None, json!({"result": r}));
            Ok(json!({"removed": true, "id": id}))
        })
    }

    fn run_now<'a>(&'a self, id: &'a str, actor: &'a str) -> CronFuture<'a> {
        Box::pin(async move {
            self.require_audit()?;
            let job = self.cron_get(id).await?;
            let r = self.link.call("cron.run", json!({"id": id, "mode": "force"})).await.map_err(cron_error)?;
            self.audit_cron(&job, audit::Outcome::RunRequested, actor, None, json!({"result": r}));
            Ok(json!({"enqueued": r.get("enqueued"), "run_id": r.get("runId"), "id": id}))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_isolated_cron_key_is_the_one_openclaw_sends() {
        // Seen on the wire from OpenClaw 2026.9.6: `session_id: openclaw-cron-0a71...` for a
        // run of this job through provider cb-main.
        let job = "ac394fd6-4852-4282-9afc-f49b90fcf091";
        let run = json!({"sessionKey": format!("agent:main:cron:{job}:run:2815e563-70a8-4bef-ab48-c03c7bbfa3ed"),
                         "provider": "cb-main", "model": "gpt-4o-mini"});
        assert_eq!(
            isolated_cache_key(job, "main", &run).as_deref(),
            Some("openclaw-cron-0a713e0edf210ba0f7ab6253a3d86624")
        );
        assert_eq!(isolated_cache_key(job, "main", &json!({"sessionKey": "x"})), None, "no provider: no key");
    }
}

//! Generation in the background, one report at a time (a report reads up to a million audit
//! records; two at once would only share the same cores): queued -> running -> done | failed.
//! At start, queued reports are queued again and a report found `running` (cut by a restart)
//! is marked failed, to be retried. The scheduler makes each schedule's report once per
//! period: the period made last is kept per schedule (tree `report_schedules`), so a restart
//! neither repeats nor skips one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::model::{FileMeta, FileRef, Format, Status};
use crate::{data, links, ts, Parts, ReportSettings, Reports, ReportsError, Schedule};

pub(crate) const DEF_PREFIX: &[u8] = b"def/";
const LAST_PREFIX: &str = "last/";
/// How often the scheduler looks for a period that ended.
const SCHEDULE_EVERY: Duration = Duration::from_secs(60);

pub(crate) fn def_key(name: &str) -> Vec<u8> {
    [DEF_PREFIX, name.as_bytes()].concat()
}

impl Reports {
    /// Open the trees and the link key, and start the worker and the scheduler.
    pub fn start(
        parts: Parts,
        settings: ReportSettings,
        configured: Vec<Schedule>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Reports>, Vec<JoinHandle<()>>), ReportsError> {
        let key =
            notifier::link::load_or_create_key(&parts.data_dir.join("report-link.key")).map_err(ReportsError::Key)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let r = Arc::new(Reports {
            reports: parts.db.tree(storage::Tree::Reports)?,
            files: parts.db.tree(storage::Tree::ReportFiles)?,
            schedules: parts.db.tree(storage::Tree::ReportSchedules)?,
            links: notifier::link::LinkSigner::new(key, parts.db.tree(storage::Tree::ReportLinks)?),
            audit: parts.audit,
            cost: parts.cost,
            agents: parts.agents,
            settings,
            configured,
            queue: tx,
            write: Mutex::new(()),
            passes: Mutex::new(()),
        });
        r.recover()?;
        let tasks =
            vec![tokio::spawn(work(r.clone(), rx, shutdown.clone())), tokio::spawn(schedule(r.clone(), shutdown))];
        Ok((r, tasks))
    }

    /// Queue again what was queued; fail what a restart cut.
    pub(crate) fn recover(&self) -> Result<(), ReportsError> {
        let (all, _) = self.list(usize::MAX, None)?;
        for r in all.into_iter().rev() {
            match r.status {
                Status::Queued => self.enqueue(&r.id),
                Status::Running => {
                    self.update(&r.id, |r| {
                        r.status = Status::Failed;
                        r.error = Some("interrupted by a restart of the sidecar; retry it".into());
                        Ok(true)
                    })?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Make one report: gather, render both files, store them, mark it done (or failed).
    async fn generate(self: &Arc<Self>, id: &str) -> Result<(), ReportsError> {
        let started = ts(self.now());
        let r = self.update(id, |r| {
            if r.status != Status::Queued {
                return Ok(false);
            }
            r.status = Status::Running;
            r.attempts += 1;
            r.started_at = Some(started);
            r.finished_at = None;
            Ok(true)
        })?;
        if r.status != Status::Running {
            return Ok(());
        }
        let outcome = self.render(&r.since, &r.until, &r.timezone).await;
        let finished = ts(self.now());
        let files = match outcome {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(report = id, error = %e, "report generation failed");
                self.update(id, |r| {
                    r.status = Status::Failed;
                    r.error = Some(e.to_string());
                    r.finished_at = Some(finished);
                    Ok(true)
                })?;
                return Ok(());
            }
        };
        let mut metas = Vec::new();
        for (format, bytes) in files {
            let file_id = uuid::Uuid::new_v4().to_string();
            self.files.insert(file_id.as_bytes(), bytes.as_slice())?;
            self.files
                .insert(links::meta_key(&file_id), serde_json::to_vec(&FileRef { report: id.to_string(), format })?)?;
            metas.push(FileMeta { format, id: file_id, bytes: bytes.len() as u64 });
        }
        self.update(id, |r| {
            r.status = Status::Done;
            r.error = None;
            r.files = metas;
            r.finished_at = Some(finished);
            Ok(true)
        })?;
        self.files.flush_async().await?;
        Ok(())
    }

    async fn render(
        self: &Arc<Self>,
        since: &str,
        until: &str,
        timezone: &str,
    ) -> Result<Vec<(Format, Vec<u8>)>, ReportsError> {
        let tz = crate::zone::parse(timezone)?;
        let parse = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| ReportsError::Render(format!("stored period {s:?}: {e}")))
        };
        let (since, until) = (parse(since)?, parse(until)?);
        // Cron health first: it needs the gateway link, the part most likely to fail.
        let cron = match self.agents.as_ref().and_then(|a| a.cron()) {
            None => None,
            Some(c) => Some(c.list(None).await.map_err(|e| {
                ReportsError::Cron(format!("the gateway link could not list the cron jobs ({e}); retry when it is up"))
            })?),
        };
        let me = self.clone();
        let mut d = tokio::task::spawn_blocking(move || {
            // Everything durable in the log is counted before the figures are read.
            me.cost.catch_up()?;
            data::gather(&me.cost, &me.audit, since, until, me.now(), tz)
        })
        .await
        .map_err(|e| ReportsError::Render(e.to_string()))??;
        if let Some(list) = cron {
            d.cron.linked = true;
            d.cron.jobs = data::cron_jobs(&list);
        }
        let csv = crate::csv_out::render(&d)?;
        let pdf = crate::pdf::render(&d);
        Ok(vec![(Format::Csv, csv), (Format::Pdf, pdf)])
    }

    /// Queue each schedule's report for the last whole period, once.
    pub(crate) fn run_schedules(&self) -> Result<usize, ReportsError> {
        let _pass = self.passes.lock().map_err(|_| ReportsError::Render("a lock was poisoned".into()))?;
        let now = self.now();
        let mut made = 0;
        for (s, _) in self.schedules()? {
            let tz = crate::zone::parse(s.timezone.as_deref().unwrap_or("UTC"))?;
            let (since, until) = s.every.last_period(now, tz);
            let mark = format!("{LAST_PREFIX}{}", s.name);
            let last = self.schedules.get(mark.as_bytes())?;
            let end = ts(until);
            if last.as_deref() == Some(end.as_bytes()) {
                continue;
            }
            // Claim the period first (compare-and-swap on the mark), so a period is made once
            // even if the mark changed under this pass (passes are serialised above).
            if self.schedules.compare_and_swap(mark.as_bytes(), last.as_ref(), Some(end.as_bytes()))?.is_err() {
                continue;
            }
            if let Err(e) = self.create(since, until, &format!("schedule:{}", s.name), Some(s.name.clone()), tz) {
                // Not made: give the period back so the next pass tries again.
                let _ = self.schedules.compare_and_swap(mark.as_bytes(), Some(end.as_bytes()), last.as_ref())?;
                return Err(e);
            }
            made += 1;
        }
        Ok(made)
    }
}

async fn work(r: Arc<Reports>, mut rx: mpsc::UnboundedReceiver<String>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let id = tokio::select! {
            id = rx.recv() => match id { Some(id) => id, None => return },
            _ = shutdown.changed() => return,
        };
        if let Err(e) = r.generate(&id).await {
            tracing::error!(report = %id, error = %e, "report store failed");
        }
    }
}

async fn schedule(r: Arc<Reports>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = r.run_schedules() {
            tracing::warn!(error = %e, "report schedules");
        }
        tokio::select! {
            _ = tokio::time::sleep(SCHEDULE_EVERY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

//! Reports: cost and governance reports for a period (spend by agent, model and task with the
//! trend, anomalies, approvals and their waiting times, denials by rule, budget events, cron
//! health), as CSV and PDF. Made on demand or by a schedule, in the background (`worker`:
//! queued -> running -> done | failed, and retry); stored in the state store (trees `reports`,
//! `report_files`); downloaded through expiring, single-use signed links (`links`).
//! `docs/cost.md`, "Reports", is the user's page.

pub mod csv_out;
pub mod data;
mod links;
pub mod model;
pub mod pdf;
pub mod settings;
mod worker;
pub mod zone;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

pub use links::{Download, Link};
pub use model::{FileMeta, Format, Report, Status};
pub use settings::{Every, ReportSettings, Schedule};

/// Errors of reports; the control API turns each into its problem.
#[derive(Debug, thiserror::Error)]
pub enum ReportsError {
    #[error("report store: {0}")]
    Store(#[from] storage::StoreError),
    #[error("report store: {0}")]
    Sled(#[from] sled::Error),
    #[error("report store: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cost figures: {0}")]
    Cost(#[from] cost::CostError),
    #[error("audit log: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("rendering: {0}")]
    Render(String),
    #[error("cron health: {0}")]
    Cron(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Link(#[from] notifier::LinkError),
    #[error("report link key: {0}")]
    Key(std::io::Error),
}

/// What reports read and where they keep things.
pub struct Parts {
    pub db: storage::Store,
    pub audit: Arc<audit::AuditLog>,
    pub cost: Arc<cost::Cost>,
    /// The gateway link (cron health); `None` without a linked gateway.
    pub agents: Option<Arc<dyn governance::agents::AgentControl>>,
    pub data_dir: std::path::PathBuf,
}

/// The reports service.
pub struct Reports {
    reports: sled::Tree,
    files: sled::Tree,
    schedules: sled::Tree,
    links: notifier::link::LinkSigner,
    audit: Arc<audit::AuditLog>,
    cost: Arc<cost::Cost>,
    agents: Option<Arc<dyn governance::agents::AgentControl>>,
    settings: ReportSettings,
    /// Schedules from the config file (read-only through the API).
    configured: Vec<Schedule>,
    queue: mpsc::UnboundedSender<String>,
    /// Serialises read-modify-write of one report's record.
    write: Mutex<()>,
    /// One schedule pass at a time: a pass asked for while the scheduler's is between claiming
    /// a period and queueing its report waits for it, so when any pass returns, every period
    /// that has ended has its report listed.
    passes: Mutex<()>,
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Most days one report may cover.
pub const MAX_DAYS: i64 = 400;

impl Reports {
    pub fn now(&self) -> DateTime<Utc> {
        self.cost.now()
    }

    fn put(&self, r: &Report) -> Result<(), ReportsError> {
        self.reports.insert(r.id.as_bytes(), serde_json::to_vec(r)?)?;
        Ok(())
    }

    /// One report.
    pub fn get(&self, id: &str) -> Result<Option<Report>, ReportsError> {
        Ok(match self.reports.get(id.as_bytes())? {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    /// Change one report under the write lock; `None` from `f` leaves it as it is.
    fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Report) -> Result<bool, ReportsError>,
    ) -> Result<Report, ReportsError> {
        let _g = self.write.lock().map_err(|_| ReportsError::Render("a lock was poisoned".into()))?;
        let mut r = self.get(id)?.ok_or_else(|| ReportsError::NotFound(format!("no report {id}")))?;
        if f(&mut r)? {
            self.put(&r)?;
        }
        Ok(r)
    }

    /// Reports newest first: at most `limit` after `cursor` (an id from `next_cursor`).
    pub fn list(&self, limit: usize, cursor: Option<&str>) -> Result<(Vec<Report>, Option<String>), ReportsError> {
        let iter = match cursor {
            Some(c) => self.reports.range(..c.as_bytes().to_vec()),
            None => self.reports.range::<Vec<u8>, _>(..),
        };
        let mut out = Vec::new();
        for kv in iter.rev() {
            let (_, v) = kv?;
            if out.len() == limit {
                let next = out.last().map(|r: &Report| r.id.clone());
                return Ok((out, next));
            }
            out.push(serde_json::from_slice(&v)?);
        }
        Ok((out, None))
    }

    /// Queue a report of `[since, until)` (rounded out to whole hours, the cost aggregates'
    /// resolution, so its figures are the cost API's for the same times), its days in `tz`.
    pub fn create(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        requested_by: &str,
        schedule: Option<String>,
        tz: chrono_tz::Tz,
    ) -> Result<Report, ReportsError> {
        let (from, to) = cost::query::hour_range(since, until);
        let (since, until) = (cost::query::hour_start(from), cost::query::hour_start(to));
        if since >= until {
            return Err(ReportsError::BadRequest("since must be before until".into()));
        }
        if until - since > chrono::Duration::days(MAX_DAYS) {
            return Err(ReportsError::BadRequest(format!("a report covers at most {MAX_DAYS} days")));
        }
        zone::check_whole_hours(tz, since, until)?;
        let pending = self.pending()?;
        if pending >= self.settings.max_pending {
            return Err(ReportsError::Busy(format!(
                "{pending} reports are queued or running ([report_settings] max_pending); try again when they finish"
            )));
        }
        let r = Report {
            id: uuid::Uuid::now_v7().to_string(),
            since: ts(since),
            until: ts(until),
            timezone: tz.name().to_string(),
            status: Status::Queued,
            requested_by: requested_by.to_string(),
            schedule,
            created_at: ts(self.now()),
            started_at: None,
            finished_at: None,
            attempts: 0,
            error: None,
            files: Vec::new(),
        };
        self.put(&r)?;
        self.prune()?;
        self.enqueue(&r.id);
        Ok(r)
    }

    /// Queue a failed report again.
    pub fn retry(&self, id: &str) -> Result<Report, ReportsError> {
        let r = self.update(id, |r| {
            if r.status != Status::Failed {
                return Err(ReportsError::Conflict(format!(
                    "report {} is {}: only a failed report can be retried",
                    r.id,
                    r.status.as_str()
                )));
            }
            r.status = Status::Queued;
            r.error = None;
            Ok(true)
        })?;
        self.enqueue(&r.id);
        Ok(r)
    }

    fn enqueue(&self, id: &str) {
        if self.queue.send(id.to_string()).is_err() {
            tracing::warn!(report = id, "report worker stopped; the report stays queued until the next start");
        }
    }

    fn pending(&self) -> Result<usize, ReportsError> {
        let mut n = 0;
        for kv in self.reports.iter() {
            let (_, v) = kv?;
            let r: Report = serde_json::from_slice(&v)?;
            n += usize::from(matches!(r.status, Status::Queued | Status::Running));
        }
        Ok(n)
    }

    /// Past `keep` reports, remove the oldest finished ones and their files.
    fn prune(&self) -> Result<(), ReportsError> {
        let excess = self.reports.len().saturating_sub(self.settings.keep);
        if excess == 0 {
            return Ok(());
        }
        let mut removed = 0;
        for kv in self.reports.iter() {
            if removed == excess {
                break;
            }
            let (k, v) = kv?;
            let r: Report = serde_json::from_slice(&v)?;
            if matches!(r.status, Status::Done | Status::Failed) {
                for f in &r.files {
                    self.files.remove(f.id.as_bytes())?;
                    self.files.remove(links::meta_key(&f.id))?;
                }
                self.reports.remove(k)?;
                removed += 1;
            }
        }
        Ok(())
    }

    /// Every schedule: the config file's, then the API's.
    pub fn schedules(&self) -> Result<Vec<(Schedule, &'static str)>, ReportsError> {
        let mut out: Vec<(Schedule, &'static str)> = self.configured.iter().map(|s| (s.clone(), "config")).collect();
        for kv in self.schedules.scan_prefix(worker::DEF_PREFIX) {
            let (_, v) = kv?;
            out.push((serde_json::from_slice(&v)?, "api"));
        }
        Ok(out)
    }

    /// Add a schedule through the API.
    pub fn add_schedule(&self, s: Schedule) -> Result<(), ReportsError> {
        s.validate().map_err(ReportsError::BadRequest)?;
        if self.schedules()?.iter().any(|(x, _)| x.name == s.name) {
            return Err(ReportsError::Conflict(format!("a schedule named {:?} exists", s.name)));
        }
        self.schedules.insert(worker::def_key(&s.name), serde_json::to_vec(&s)?)?;
        Ok(())
    }

    /// Remove a schedule added through the API (the config file's stay).
    pub fn remove_schedule(&self, name: &str) -> Result<(), ReportsError> {
        if self.configured.iter().any(|s| s.name == name) {
            return Err(ReportsError::Conflict(format!(
                "schedule {name:?} is in the config file ([[reports]]); remove it there"
            )));
        }
        match self.schedules.remove(worker::def_key(name))? {
            Some(_) => Ok(()),
            None => Err(ReportsError::NotFound(format!("no schedule {name:?}"))),
        }
    }
}

#[cfg(test)]
mod tests;

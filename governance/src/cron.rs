//! What the control API needs from cron governance on the gateway link (issue #19): every
//! OpenClaw cron job with its state and cost, its run history, and the changes a person may
//! make (create, update, enable, disable, remove, run now), each synced to OpenClaw with its
//! `expectedConfigRevision` so a concurrent change is refused, never overwritten. The trait
//! lives here, beside [`AgentControl`], so the control API and the gateway crate meet in
//! governance and neither depends on the other; the gateway reaches it through
//! [`AgentControl::cron`].
//!
//! [`AgentControl`]: crate::agents::AgentControl
//! [`AgentControl::cron`]: crate::agents::AgentControl::cron

use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

/// Why a cron request failed; the control API turns each into its problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// No such job.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or OpenClaw rejected its parameters.
    #[error("{0}")]
    BadRequest(String),
    /// The job changed since the revision the caller saw: nothing was overwritten.
    #[error("{0}")]
    Conflict(String),
    /// The gateway link is down or the gateway failed.
    #[error("{0}")]
    Unavailable(String),
    /// The audit log cannot record the change, so it is not made.
    #[error("{0}")]
    AuditUnavailable(String),
}

/// Boxed future of a cron action.
pub type CronFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, CronError>> + Send + 'a>>;

/// One change to a job, as the caller asked it.
#[derive(Debug, Clone, PartialEq)]
pub enum CronChange {
    /// `cron.update` with this patch (OpenClaw's job fields).
    Update(Value),
    /// Enable (`true`) or disable (`false`): pause and resume.
    Enabled(bool),
}

/// Cron jobs on the linked gateway (see the module docs). `actor` is the token name.
pub trait CronControl: Send + Sync {
    /// Every job (disabled ones too), optionally of one agent, with state and cost.
    fn list<'a>(&'a self, agent: Option<&'a str>) -> CronFuture<'a>;
    /// One job with state and cost.
    fn get<'a>(&'a self, id: &'a str) -> CronFuture<'a>;
    /// A page of a job's run history, newest first, each run with its attributed cost.
    fn runs<'a>(&'a self, id: &'a str, limit: u32, offset: u32) -> CronFuture<'a>;
    /// Create a job (OpenClaw's `cron.add` parameters).
    fn create<'a>(&'a self, job: Value, actor: &'a str) -> CronFuture<'a>;
    /// Change a job; `revision` is the `configRevision` the caller saw (None: read it now).
    fn change<'a>(
        &'a self,
        id: &'a str,
        change: CronChange,
        revision: Option<String>,
        actor: &'a str,
    ) -> CronFuture<'a>;
    /// Remove a job.
    fn remove<'a>(&'a self, id: &'a str, actor: &'a str) -> CronFuture<'a>;
    /// Run a job now (enqueued; its run shows in the history).
    fn run_now<'a>(&'a self, id: &'a str, actor: &'a str) -> CronFuture<'a>;
}

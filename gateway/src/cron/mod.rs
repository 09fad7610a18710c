//! Cron governance (issue #19, `docs/cron.md`): OpenClaw's cron jobs seen and changed through
//! the gateway link, failure streaks raised as alerts, and budget-aware pausing.
//!
//! * `ops.rs`: [`governance::cron::CronControl`] for the control API: list, get, run
//!   history with each run's cost, create / update / enable / disable / remove / run now,
//!   each audited (kind `cron`) and each change sent with `expectedConfigRevision`, so a job
//!   changed concurrently is a conflict, never overwritten.
//! * `watch.rs`: the `cron` event's `finished` runs feed the failure streaks; a budget loop
//!   pauses an agent's enabled jobs when its breaker opens and resumes exactly those.
//! * `book.rs`: the bookkeeping of both, without I/O.
//!
//! State (`storage::Tree::CronState`): `streak/<job>` and `pause/<agent>`, so a restart
//! neither re-alerts a streak nor forgets which jobs it paused.

mod book;
mod ops;
mod watch;

use prometheus::{IntCounter, IntGauge, Opts};
use serde::{Deserialize, Serialize};

pub use book::{Pause, PausedJob, Streak};

/// `[cron]` config section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CronSettings {
    /// Runs in a row that fail before the alert (audit, SSE, metric, `cron.failure_streak`).
    pub failure_streak: u32,
    /// Pause an agent's enabled jobs while its budget breaker is open.
    pub budget_pause: bool,
    /// How often the budget breakers are compared with the paused agents.
    pub budget_check_ms: u64,
    /// Runs (newest) whose cost is summed into a job's `cost` in the list.
    pub cost_runs: u32,
}

impl Default for CronSettings {
    fn default() -> Self {
        CronSettings { failure_streak: 3, budget_pause: true, budget_check_ms: 1000, cost_runs: 20 }
    }
}

impl CronSettings {
    /// Check the ranges; the message names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=1000).contains(&self.failure_streak) {
            return Err(("cron.failure_streak".into(), "must be between 1 and 1000".into()));
        }
        if !(100..=3_600_000).contains(&self.budget_check_ms) {
            return Err(("cron.budget_check_ms".into(), "must be between 100 and 3600000".into()));
        }
        if !(1..=200).contains(&self.cost_runs) {
            return Err(("cron.cost_runs".into(), "must be between 1 and 200".into()));
        }
        Ok(())
    }
}

/// The cron side's state and metrics.
pub(crate) struct CronState {
    pub settings: CronSettings,
    pub tree: sled::Tree,
    /// `clawbutler_cron_failure_streaks_total`.
    pub streaks: IntCounter,
    /// `clawbutler_cron_jobs_budget_paused`.
    pub paused: IntGauge,
    /// Serialises pause and resume with each other and with the API's enable/disable.
    pub lock: tokio::sync::Mutex<()>,
}

impl CronState {
    pub fn new(
        settings: CronSettings,
        tree: sled::Tree,
        registry: &prometheus::Registry,
    ) -> Result<CronState, super::GatewayError> {
        let streaks = IntCounter::with_opts(Opts::new(
            "clawbutler_cron_failure_streaks_total",
            "Cron jobs that failed [cron] failure_streak runs in a row (one per streak).",
        ))?;
        let paused = IntGauge::with_opts(Opts::new(
            "clawbutler_cron_jobs_budget_paused",
            "Cron jobs disabled in OpenClaw because their agent's budget breaker is open.",
        ))?;
        registry.register(Box::new(streaks.clone()))?;
        registry.register(Box::new(paused.clone()))?;
        let st = CronState { settings, tree, streaks, paused, lock: tokio::sync::Mutex::new(()) };
        st.paused.set(st.pauses().iter().map(|(_, p)| p.jobs.len() as i64).sum());
        Ok(st)
    }

    pub fn streak(&self, job: &str) -> Streak {
        self.get(&format!("streak/{job}")).unwrap_or_default()
    }

    pub fn set_streak(&self, job: &str, s: &Streak) {
        self.put(&format!("streak/{job}"), s);
    }

    pub fn forget_streak(&self, job: &str) {
        let _ = self.tree.remove(format!("streak/{job}").as_bytes());
    }

    pub fn pauses(&self) -> Vec<(String, Pause)> {
        self.tree
            .scan_prefix(b"pause/")
            .filter_map(Result::ok)
            .filter_map(|(k, v)| {
                let agent = std::str::from_utf8(&k).ok()?.strip_prefix("pause/")?.to_string();
                Some((agent, serde_json::from_slice(&v).ok()?))
            })
            .collect()
    }

    pub fn set_pause(&self, agent: &str, p: Option<&Pause>) {
        let key = format!("pause/{agent}");
        match p {
            Some(p) => self.put(&key, p),
            None => {
                if let Err(e) = self.tree.remove(key.as_bytes()) {
                    tracing::error!(error = %e, "cron state remove failed");
                }
                let _ = self.tree.flush();
            }
        }
        self.paused.set(self.pauses().iter().map(|(_, p)| p.jobs.len() as i64).sum());
    }

    fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let v = self.tree.get(key.as_bytes()).ok()??;
        serde_json::from_slice(&v).ok()
    }

    fn put<T: Serialize>(&self, key: &str, v: &T) {
        let Ok(bytes) = serde_json::to_vec(v) else { return };
        if let Err(e) = self.tree.insert(key.as_bytes(), bytes) {
            tracing::error!(error = %e, "cron state write failed");
        }
        // Flushed at once: a pause forgotten by a crash would never be resumed.
        let _ = self.tree.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_and_streaks_survive_a_reopen_of_the_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = storage::Store::open(&dir.path().join("state")).unwrap();
            let st = CronState::new(
                CronSettings::default(),
                db.tree(storage::Tree::CronState).unwrap(),
                &Default::default(),
            )
            .unwrap();
            let p = Pause {
                budget: "b".into(),
                at: "t".into(),
                jobs: vec![PausedJob { id: "j1".into(), revision: Some("r".into()) }],
            };
            st.set_pause("main", Some(&p));
            st.set_streak("j2", &Streak { failures: 3, alerted: true });
            assert_eq!(st.paused.get(), 1);
        }
        let db = storage::Store::reopen(&dir.path().join("state")).unwrap();
        let st =
            CronState::new(CronSettings::default(), db.tree(storage::Tree::CronState).unwrap(), &Default::default())
                .unwrap();
        let pauses = st.pauses();
        assert_eq!(pauses.len(), 1);
        assert_eq!((pauses[0].0.as_str(), pauses[0].1.jobs[0].id.as_str()), ("main", "j1"));
        assert_eq!(st.paused.get(), 1, "the gauge is set from the store at start");
        assert_eq!(st.streak("j2"), Streak { failures: 3, alerted: true });
        st.set_pause("main", None);
        assert!(st.pauses().is_empty());
        assert_eq!(st.paused.get(), 0);
    }

    #[test]
    fn settings_ranges_name_the_key() {
        assert!(CronSettings::default().validate().is_ok());
        let bad = CronSettings { failure_streak: 0, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().0, "cron.failure_streak");
    }
}

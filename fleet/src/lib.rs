//! Fleet mode: many ClawButler sidecars sharing state in one PostgreSQL database. This crate
//! owns the connection to that database (rustls TLS, a pool, one LISTEN connection), its
//! versioned schema, the sidecar registry with heartbeats, and the fleet kill switch kept in
//! step with each sidecar's `governance::KillSwitch`. Without `[fleet]` nothing here runs and
//! every sidecar is an island, exactly as before (docs/fleet.md).

pub mod budget;
mod control;
mod db;
mod error;
mod leases;
mod migrate;
mod settings;
mod sidecars;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use control::{FleetKill, KillSync, CHANNEL};
pub use db::Connector;
pub use error::FleetError;
pub use leases::Leases;
pub use migrate::{migrate, SCHEMA_VERSION};
pub use settings::{FleetSettings, Partitioned};
pub use sidecars::SidecarRow;

/// A started fleet member.
pub struct Fleet {
    settings: FleetSettings,
    pool: Pool,
    sync: Arc<KillSync>,
    leases: Arc<Leases>,
}

impl Fleet {
    /// Connect, migrate, register this sidecar and read the fleet's kill flags before
    /// returning (a sidecar never serves without having read them), then start the heartbeat,
    /// the LISTEN connection, the poll and the TTL watch, all stopped by `shutdown`.
    pub async fn start(
        s: &FleetSettings,
        version: &str,
        kill: Arc<governance::KillSwitch>,
        registry: &prometheus::Registry,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Fleet>, Vec<JoinHandle<()>>), FleetError> {
        let conn = Connector::new(s)?;
        let pool = conn.pool(s)?;
        let t = Duration::from_millis(s.timeout_ms);
        let bounded = |what| FleetError::Timeout { what, ms: s.timeout_ms };
        tokio::time::timeout(t, migrate(&pool)).await.map_err(|_| bounded("migrations"))??;
        let started_at = Utc::now();
        tokio::time::timeout(t, sidecars::heartbeat(&pool, &s.sidecar_id, version, started_at))
            .await
            .map_err(|_| bounded("heartbeat"))??;
        let connected = prometheus::IntGauge::new(
            "clawbutler_fleet_connected",
            "1 while this sidecar has read the fleet's kill flags within the heartbeat TTL, else 0",
        )
        .map_err(|e| FleetError::Pool(e.to_string()))?;
        registry.register(Box::new(connected.clone())).map_err(|e| FleetError::Pool(e.to_string()))?;
        let sync = Arc::new(KillSync::new(pool.clone(), kill, s, connected));
        tokio::time::timeout(t, sync.refresh()).await.map_err(|_| bounded("kill flags"))??;

        let leases = Arc::new(Leases::new(pool.clone(), s, registry)?);
        let fleet = Arc::new(Fleet { settings: s.clone(), pool, sync, leases: leases.clone() });
        let tasks = vec![
            tokio::spawn(leases.run(shutdown.clone())),
            tokio::spawn(fleet.clone().heartbeats(version.to_string(), started_at, shutdown.clone())),
            tokio::spawn(fleet.clone().poll(shutdown.clone())),
            tokio::spawn(fleet.clone().ttl_watch(shutdown.clone())),
            tokio::spawn(listen::run(conn, fleet.sync.clone(), shutdown)),
        ];
        Ok((fleet, tasks))
    }

    /// This sidecar's id.
    pub fn sidecar_id(&self) -> &str {
        &self.settings.sidecar_id
    }

    /// The fleet-budget lease pool (what `governance::Budgets::set_fleet` takes).
    pub fn leases(&self) -> Arc<Leases> {
        self.leases.clone()
    }

    /// The settings in force.
    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    /// Every registered sidecar.
    pub async fn sidecars(&self) -> Result<Vec<SidecarRow>, FleetError> {
        self.bounded(sidecars::list(&self.pool, self.settings.heartbeat_ttl_ms)).await
    }

    /// Every fleet kill scope ever set.
    pub async fn kills(&self) -> Result<Vec<FleetKill>, FleetError> {
        self.bounded(self.sync.list()).await
    }

    /// Kill or recover one agent (or, with `None`, the whole fleet) fleet-wide.
    pub async fn set_kill(
        &self,
        agent: Option<&str>,
        killed: bool,
        reason: &str,
        actor: &str,
    ) -> Result<FleetKill, FleetError> {
        self.bounded(self.sync.set(agent, killed, reason, actor, &self.settings.sidecar_id)).await
    }

    /// Lift every fleet kill.
    pub async fn recover_all(&self, reason: &str, actor: &str) -> Result<Vec<FleetKill>, FleetError> {
        self.bounded(self.sync.recover_all(reason, actor, &self.settings.sidecar_id)).await
    }

    async fn bounded<T>(&self, f: impl std::future::Future<Output = Result<T, FleetError>>) -> Result<T, FleetError> {
        let ms = self.settings.timeout_ms;
        tokio::time::timeout(Duration::from_millis(ms), f)
            .await
            .map_err(|_| FleetError::Timeout { what: "query", ms })?
    }

    async fn heartbeats(self: Arc<Self>, version: String, started_at: DateTime<Utc>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_millis(self.settings.heartbeat_ms));
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = stop.changed() => return,
            }
            let beat = sidecars::heartbeat(&self.pool, &self.settings.sidecar_id, &version, started_at);
            if let Err(e) = self.bounded(beat).await {
                tracing::warn!(error = %e, "fleet heartbeat failed");
            }
        }
    }

    /// The safety net: read the flags every `poll_ms`, and at once when LISTEN rings.
    async fn poll(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = Duration::from_millis(self.settings.poll_ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.sync.wake.notified() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = self.bounded(self.sync.refresh()).await {
                tracing::warn!(error = %e, "fleet kill flags read failed");
            }
        }
    }

    async fn ttl_watch(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = every.tick() => self.sync.check_stale(),
                _ = stop.changed() => return,
            }
        }
    }
}

mod listen {
    //! The dedicated LISTEN connection: every notification (and every reconnect, since
    //! notifications sent while it was down are lost) makes the poll read at once.

    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;
    use tokio_postgres::AsyncMessage;

    use crate::{Connector, KillSync, CHANNEL};

    pub(crate) async fn run(conn: Connector, sync: Arc<KillSync>, mut stop: watch::Receiver<bool>) {
        loop {
            match conn.pg.connect(conn.tls.clone()).await {
                Ok((client, mut connection)) => {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    let driver = tokio::spawn(async move {
                        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            match m {
                                Ok(AsyncMessage::Notification(_)) => {
                                    if tx.send(()).is_err() {
                                        return;
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "fleet LISTEN connection lost");
                                    return;
                                }
                            }
                        }
                    });
                    match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        Ok(()) => {
                            sync.wake.notify_one();
                            loop {
                                tokio::select! {
                                    m = rx.recv() => match m {
                                        Some(()) => sync.wake.notify_one(),
                                        None => break,
                                    },
                                    _ = stop.changed() => { driver.abort(); return; }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "fleet LISTEN failed"),
                    }
                    driver.abort();
                }
                Err(e) => tracing::warn!(error = %e, "fleet LISTEN connection failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

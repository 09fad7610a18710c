//! Fleet mode: many ClawButler sidecars sharing state in one PostgreSQL database. This crate
//! owns the connection to that database (rustls TLS, a pool, one LISTEN connection), its
//! versioned schema, the sidecar registry with heartbeats, the fleet kill switch kept in
//! step with each sidecar's `governance::KillSwitch`, fleet budget leases, the shared
//! approval inbox the sidecar's `governance::Broker` decides through, fleet-wide grants, the
//! policy rollout
//! (signed bundles published to every sidecar's `policy::PolicyEngine`) and the central
//! audit trail (each sidecar's log shipped, searched and verified centrally). Without
//! `[fleet]` nothing here runs and
//! every sidecar is an island, exactly as before (docs/fleet.md).

pub mod budget;
pub mod central;
mod control;
mod db;
mod error;
pub mod grants;
pub mod inbox;
mod journal;
mod leases;
mod migrate;
pub mod rollout;
mod settings;
mod ship;
mod sidecars;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use central::{FleetAuditPage, SidecarVerify};
pub use control::{FleetKill, KillScope, KillSync, CHANNEL};
pub use db::Connector;
pub use error::FleetError;
pub use grants::GrantSync;
pub use inbox::Inbox;
pub use leases::Leases;
pub use migrate::{migrate, SCHEMA_VERSION};
pub use rollout::Rollout;
pub use settings::{FleetSettings, Partitioned};
pub use ship::Shipper;
pub use sidecars::SidecarRow;

/// A started fleet member.
pub struct Fleet {
    settings: FleetSettings,
    pool: Pool,
    sync: Arc<KillSync>,
    leases: Arc<Leases>,
    inbox: Arc<Inbox>,
    grants: Arc<GrantSync>,
    rollout: Arc<Rollout>,
    /// Whether the gateway link is up (set once the link starts; unset: no `[gateway]`).
    gateway_link: OnceLock<GatewayLink>,
}

/// Verify the central audit copy of every sidecar (or `sidecar`'s) without starting a sidecar:
/// `clawbutler audit verify --fleet` connects with `[fleet]` and runs this.
pub async fn verify_central_audit(
    s: &FleetSettings,
    sidecar: Option<&str>,
    pubkeys: Option<&[audit::VerifyingKey]>,
) -> Result<Vec<SidecarVerify>, FleetError> {
    let pool = Connector::new(s)?.pool(s)?;
    central::verify(&pool, sidecar, pubkeys).await
}

/// Reads whether this sidecar's OpenClaw gateway link is connected.
pub type GatewayLink = Arc<dyn Fn() -> bool + Send + Sync>;

impl Fleet {
    /// Connect, migrate, register this sidecar and read the fleet's kill flags before
    /// returning (a sidecar never serves without having read them), then start the heartbeat,
    /// the LISTEN connection, the poll and the TTL watch, all stopped by `shutdown`. From
    /// here on `broker` decides through the fleet inbox, and `policy` serves the fleet's
    /// newest bundle (applied here before returning when it passes its checks). The lease
    /// journal lives in `data_dir/fleet-leases`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        s: &FleetSettings,
        data_dir: &std::path::Path,
        version: &str,
        kill: Arc<governance::KillSwitch>,
        broker: Arc<governance::Broker>,
        policy: Arc<policy::PolicyEngine>,
        registry: &prometheus::Registry,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Fleet>, Vec<JoinHandle<()>>), FleetError> {
        let conn = Connector::new(s)?;
        let pool = conn.pool(s)?;
        let t = Duration::from_millis(s.timeout_ms);
        let bounded = |what| FleetError::Timeout { what, ms: s.timeout_ms };
        tokio::time::timeout(t, migrate(&pool)).await.map_err(|_| bounded("migrations"))??;
        let started_at = Utc::now();
        tokio::time::timeout(t, sidecars::heartbeat(&pool, &s.sidecar_id, version, started_at, None))
            .await
            .map_err(|_| bounded("heartbeat"))??;
        let connected = prometheus::IntGauge::new(
            "clawbutler_fleet_connected",
            "1 while this sidecar has read the fleet's kill flags within the heartbeat TTL, else 0",
        )
        .map_err(|e| FleetError::Pool(e.to_string()))?;
        registry.register(Box::new(connected.clone())).map_err(|e| FleetError::Pool(e.to_string()))?;
        let sync = Arc::new(KillSync::new(pool.clone(), kill, &broker, s, connected));
        tokio::time::timeout(t, sync.refresh()).await.map_err(|_| bounded("kill flags"))??;

        let leases = Arc::new(Leases::new(pool.clone(), s, registry, &data_dir.join("fleet-leases"))?);
        let inbox = Arc::new(Inbox::new(pool.clone(), s, &broker, registry)?);
        let orphans = tokio::time::timeout(t, inbox.cancel_orphans()).await.map_err(|_| bounded("inbox"))??;
        if orphans > 0 {
            tracing::info!(orphans, "fleet inbox: approvals of this sidecar's previous run cancelled");
        }
        broker.set_inbox(inbox.clone());
        // Read before serving, so a restarted sidecar applies the fleet's grants from its
        // first call. Unlike the kill flags a failed read does not stop the start: without
        // them fewer calls are allowed (fail closed), and the poll applies them once read.
        let grants = Arc::new(GrantSync::new(pool.clone(), s, &broker, registry)?);
        if let Err(e) = grants.refresh().await {
            tracing::warn!(error = %e, "fleet grants: the first read failed; none apply until the poll reads them");
        }
        broker.set_grant_link(grants.clone());
        let keys = s.policy_keys().map_err(|(key, msg)| FleetError::Invalid(format!("{key}: {msg}")))?;
        let rollout = Arc::new(Rollout::new(pool.clone(), policy, keys, &s.sidecar_id));
        // The bundle check runs the bundle's tests: bounded by the query timeout plus room for them.
        tokio::time::timeout(t * 4, rollout.refresh()).await.map_err(|_| bounded("policy bundle"))??;
        let fleet = Arc::new(Fleet {
            settings: s.clone(),
            pool,
            sync,
            leases: leases.clone(),
            inbox: inbox.clone(),
            grants: grants.clone(),
            rollout: rollout.clone(),
            gateway_link: OnceLock::new(),
        });
        let tasks = vec![
            tokio::spawn(leases.run(shutdown.clone())),
            tokio::spawn(inbox.clone().run(shutdown.clone())),
            tokio::spawn(fleet.clone().heartbeats(version.to_string(), started_at, shutdown.clone())),
            tokio::spawn(fleet.clone().poll(shutdown.clone())),
            tokio::spawn(fleet.clone().grants_poll(shutdown.clone())),
            tokio::spawn(fleet.clone().ttl_watch(shutdown.clone())),
            tokio::spawn(fleet.clone().policy_poll(shutdown.clone())),
            tokio::spawn(listen::run(conn, fleet.sync.clone(), inbox, grants, rollout, shutdown)),
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

    /// Report the gateway link's state in every heartbeat (the fleet view shows it).
    pub fn set_gateway_link(&self, link: GatewayLink) {
        if self.gateway_link.set(link).is_err() {
            tracing::warn!("the gateway link of the fleet heartbeat was already set; keeping the first");
        }
    }

    /// The shared approval inbox.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The fleet's grants (list, one).
    pub fn grants(&self) -> &GrantSync {
        &self.grants
    }

    /// The policy rollout (publish, the newest bundle, every sidecar's policy).
    pub fn rollout(&self) -> &Rollout {
        &self.rollout
    }

    /// The settings in force.
    pub fn settings(&self) -> &FleetSettings {
        &self.settings
    }

    /// Every registered sidecar.
    pub async fn sidecars(&self) -> Result<Vec<SidecarRow>, FleetError> {
        let mut rows = self.bounded(sidecars::list(&self.pool, self.settings.heartbeat_ttl_ms)).await?;
        let policies: std::collections::HashMap<_, _> =
            self.bounded(self.rollout.states()).await?.into_iter().collect();
        let kills = self.bounded(self.sync.list()).await?;
        for r in &mut rows {
            r.policy = policies.get(&r.id).cloned();
            r.kill = kills.iter().find(|k| k.killed && k.sidecar.as_deref() == Some(r.id.as_str())).cloned();
        }
        Ok(rows)
    }

    /// Start shipping `log` to the central audit trail (a task off the data path, stopped by
    /// `shutdown`; docs/fleet.md "Central audit").
    pub fn ship_audit(
        &self,
        log: Arc<audit::AuditLog>,
        registry: &prometheus::Registry,
        shutdown: watch::Receiver<bool>,
    ) -> Result<JoinHandle<()>, FleetError> {
        let s = &self.settings;
        let shipper = Shipper::new(self.pool.clone(), &s.sidecar_id, log, s.audit_ship_ms, s.timeout_ms, registry)?;
        Ok(tokio::spawn(shipper.run(shutdown)))
    }

    /// Search the central audit trail (every sidecar's shipped records, or `sidecar`'s).
    pub async fn audit_search(
        &self,
        q: &audit::AuditQuery,
        sidecar: Option<&str>,
    ) -> Result<FleetAuditPage, FleetError> {
        self.bounded(central::search(&self.pool, q, sidecar)).await
    }

    /// Every fleet kill scope ever set.
    pub async fn kills(&self) -> Result<Vec<FleetKill>, FleetError> {
        self.bounded(self.sync.list()).await
    }

    /// Kill or recover one agent fleet-wide, one sidecar's gateway, or the whole fleet.
    pub async fn set_kill(
        &self,
        target: KillScope<'_>,
        killed: bool,
        reason: &str,
        actor: &str,
    ) -> Result<FleetKill, FleetError> {
        self.bounded(self.sync.set(target, killed, reason, actor, &self.settings.sidecar_id)).await
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
            let link = self.gateway_link.get().map(|up| if up() { "connected" } else { "disconnected" });
            let beat = sidecars::heartbeat(&self.pool, &self.settings.sidecar_id, &version, started_at, link);
            if let Err(e) = self.bounded(beat).await {
                tracing::warn!(error = %e, "fleet heartbeat failed");
            }
        }
    }

    /// The safety net: read the flags every `poll_ms`, and at once when LISTEN rings.
    async fn poll(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let read = || self.bounded(self.sync.refresh());
        self.every_poll(&self.sync.wake, stop, "fleet kill flags read failed", read).await;
    }

    /// The grants' safety net: read the set every `poll_ms`, and at once when LISTEN rings.
    async fn grants_poll(self: Arc<Self>, stop: watch::Receiver<bool>) {
        self.every_poll(&self.grants.wake, stop, "fleet grants read failed", || self.grants.refresh()).await;
    }

    /// Run `read` every `poll_ms` and whenever `wake` rings, until `stop`; failures are logged
    /// as `failed` (the next round retries).
    async fn every_poll<F, Fut>(
        &self,
        wake: &tokio::sync::Notify,
        mut stop: watch::Receiver<bool>,
        failed: &str,
        read: F,
    ) where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), FleetError>>,
    {
        let every = Duration::from_millis(self.settings.poll_ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake.notified() => {}
                _ = stop.changed() => return,
            }
            if let Err(e) = read().await {
                tracing::warn!(error = %e, "{failed}");
            }
        }
    }

    /// The policy rollout's safety net: read the newest bundle every `poll_ms`, and at once
    /// when LISTEN rings.
    async fn policy_poll(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = Duration::from_millis(self.settings.poll_ms);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.rollout.wake.notified() => {}
                _ = stop.changed() => return,
            }
            // The bound leaves room for the bundle's tests (they run before a swap).
            let ms = self.settings.timeout_ms * 4;
            match tokio::time::timeout(Duration::from_millis(ms), self.rollout.refresh()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.rollout.failed(&e),
                Err(_) => self.rollout.failed(&FleetError::Timeout { what: "policy bundle", ms }),
            }
        }
    }

    async fn ttl_watch(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut every = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = every.tick() => {
                    self.sync.check_stale();
                    self.grants.check_stale();
                }
                _ = stop.changed() => return,
            }
        }
    }
}

mod listen {
    //! The dedicated LISTEN connection: every notification (and every reconnect, since
    //! notifications sent while it was down are lost) makes the kill-flag poll, the inbox,
    //! the grants or the policy rollout (by channel) read at once.

    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::watch;
    use tokio_postgres::AsyncMessage;

    use crate::{grants, inbox, rollout, Connector, GrantSync, Inbox, KillSync, Rollout, CHANNEL};

    pub(crate) async fn run(
        conn: Connector,
        sync: Arc<KillSync>,
        inbox: Arc<Inbox>,
        grants: Arc<GrantSync>,
        rollout: Arc<Rollout>,
        mut stop: watch::Receiver<bool>,
    ) {
        let wake = |channel: &str| match channel {
            c if c == inbox::CHANNEL => inbox.wake.notify_one(),
            c if c == grants::CHANNEL => grants.wake.notify_one(),
            c if c == rollout::CHANNEL => rollout.wake.notify_one(),
            _ => sync.wake.notify_one(),
        };
        loop {
            match conn.pg.connect(conn.tls.clone()).await {
                Ok((client, mut connection)) => {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    let driver = tokio::spawn(async move {
                        while let Some(m) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            match m {
                                Ok(AsyncMessage::Notification(n)) => {
                                    if tx.send(n.channel().to_string()).is_err() {
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
                    let listen = format!(
                        "LISTEN {CHANNEL}; LISTEN {}; LISTEN {}; LISTEN {}",
                        inbox::CHANNEL,
                        grants::CHANNEL,
                        rollout::CHANNEL
                    );
                    match client.batch_execute(&listen).await {
                        Ok(()) => {
                            for c in [CHANNEL, inbox::CHANNEL, grants::CHANNEL, rollout::CHANNEL] {
                                wake(c);
                            }
                            loop {
                                tokio::select! {
                                    m = rx.recv() => match m {
                                        Some(c) => wake(&c),
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

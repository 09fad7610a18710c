//! The fleet kill switch. The flags live in `fleet_control` (one row per scope: `global` or
//! `agent:<id>`); a change is an upsert plus `pg_notify` in one transaction, so the
//! notification leaves only if the change committed. Every sidecar re-reads the whole set on a
//! notification, on every `poll_ms` (the safety net: NOTIFY is a hint, never the state), and
//! right after its own change, and hands it to `governance::KillSwitch::set_fleet`, which the
//! data path already asks on every call. Reads are serialized, so an older read can never
//! overwrite a newer one.
//!
//! Beyond `heartbeat_ttl_ms` without a successful read the `partitioned` policy applies
//! (docs/fleet.md): by default every call is refused until the flags are read again.
//!
//! Calls this sidecar holds for approval for an agent a fleet kill stops are denied right
//! after the read that finds the kill (with the kill's reason; their rows in the fleet inbox
//! are closed as denied through the broker's outbox), and again after every later read, which
//! catches a call held in the instant the kill arrived. What the kill changes in OpenClaw is
//! the gateway link's part (`gateway::fleet_kill`), driven by `KillSwitch::watch_fleet`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use governance::kill::KillEntry;
use governance::{Broker, KillSwitch};
use serde::Serialize;
use tokio::sync::Notify;

use crate::{FleetError, FleetSettings, Partitioned};

/// The notification channel.
pub const CHANNEL: &str = "clawbutler_fleet";

/// What a fleet kill stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillScope<'a> {
    /// Every agent on every sidecar.
    Fleet,
    /// One agent, on every sidecar.
    Agent(&'a str),
    /// Every agent of one sidecar, i.e. its OpenClaw gateway (a sidecar per gateway).
    Sidecar(&'a str),
}

impl KillScope<'_> {
    /// The `fleet_control.scope` key: `global`, `agent:<id>` or `sidecar:<id>`.
    fn key(self) -> String {
        match self {
            KillScope::Fleet => "global".into(),
            KillScope::Agent(a) => format!("agent:{a}"),
            KillScope::Sidecar(s) => format!("sidecar:{s}"),
        }
    }
}

/// One fleet-wide flag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetKill {
    /// The agent it stops everywhere; `null` with `sidecar` `null` for the whole fleet.
    pub agent: Option<String>,
    /// The sidecar (and so its gateway) whose every agent it stops.
    pub sidecar: Option<String>,
    pub killed: bool,
    /// Bumped on every change of this scope.
    pub epoch: i64,
    pub reason: String,
    pub updated_by: String,
    /// The sidecar whose API made the change.
    pub sidecar_id: String,
    pub updated_at: DateTime<Utc>,
}

fn row_to_kill(r: &tokio_postgres::Row) -> FleetKill {
    let scope: String = r.get(0);
    FleetKill {
        agent: scope.strip_prefix("agent:").map(str::to_string),
        sidecar: scope.strip_prefix("sidecar:").map(str::to_string),
        killed: r.get(1),
        epoch: r.get(2),
        reason: r.get(3),
        updated_by: r.get(4),
        sidecar_id: r.get(5),
        updated_at: r.get(6),
    }
}

const COLUMNS: &str = "scope, killed, epoch, reason, updated_by, sidecar_id, updated_at";

/// Keeps the local kill switch in step with `fleet_control`.
pub struct KillSync {
    pool: Pool,
    /// This sidecar's id: a `sidecar:<id>` kill of it stops every call here.
    sidecar_id: String,
    kill: Arc<KillSwitch>,
    /// Denies the held calls of what a fleet kill stops. Weak, as the inbox's: the sidecar's
    /// store must close when the sidecar stops, whatever still holds this sync.
    broker: std::sync::Weak<Broker>,
    ttl: Duration,
    partitioned: Partitioned,
    last_ok: Mutex<Instant>,
    /// Serializes read + apply (see the module docs).
    reading: tokio::sync::Mutex<()>,
    /// Rung by the LISTEN connection: read now.
    pub(crate) wake: Notify,
    connected: prometheus::IntGauge,
}

impl KillSync {
    pub(crate) fn new(
        pool: Pool,
        kill: Arc<KillSwitch>,
        broker: &Arc<Broker>,
        s: &FleetSettings,
        connected: prometheus::IntGauge,
    ) -> KillSync {
        KillSync {
            pool,
            sidecar_id: s.sidecar_id.clone(),
            kill,
            broker: Arc::downgrade(broker),
            ttl: Duration::from_millis(s.heartbeat_ttl_ms),
            partitioned: s.partitioned,
            last_ok: Mutex::new(Instant::now()),
            reading: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            connected,
        }
    }

    /// Read every flag and apply the ones in force.
    pub async fn refresh(&self) -> Result<(), FleetError> {
        let _one = self.reading.lock().await;
        let rows = self.list().await?;
        let mut global = None;
        let mut this_sidecar = None;
        let mut agents = BTreeMap::new();
        for k in rows.into_iter().filter(|k| k.killed) {
            let at = k.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let entry = KillEntry { reason: k.reason, actor: k.updated_by, at };
            match (k.agent, k.sidecar) {
                (Some(a), _) => {
                    agents.insert(a, entry);
                }
                // Another sidecar's gateway: not this one's concern.
                (None, Some(sc)) if sc != self.sidecar_id => {}
                (None, Some(_)) => this_sidecar = Some(entry),
                (None, None) => global = Some(entry),
            }
        }
        // A kill of this sidecar stops every call here, as the whole fleet's kill does; the
        // fleet's own flag, when also set, is the one shown.
        let global = global.or(this_sidecar);
        self.kill.set_fleet(global.clone(), agents.clone());
        *self.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.connected.set(1);
        self.deny_held(global.as_ref(), &agents).await;
        Ok(())
    }

    /// Deny the held calls of whatever the fleet stops here (a no-op when none is held).
    async fn deny_held(&self, global: Option<&KillEntry>, agents: &BTreeMap<String, KillEntry>) {
        let Some(broker) = self.broker.upgrade() else { return };
        let denied = match global {
            Some(g) => broker.deny_all(&format!("fleet kill switch: {}", g.reason), &g.actor).await,
            None => {
                let mut all = Vec::new();
                for (agent, e) in agents {
                    let why = format!("fleet kill switch: {}", e.reason);
                    all.extend(broker.deny_all_for_agent(agent, &why, &e.actor).await);
                }
                all
            }
        };
        if !denied.is_empty() {
            let ids: Vec<&str> = denied.iter().map(|a| a.id.as_str()).collect();
            tracing::info!(approvals = ?ids, "held calls denied by the fleet kill switch");
        }
    }

    /// Every scope ever set, killed or not.
    pub async fn list(&self) -> Result<Vec<FleetKill>, FleetError> {
        let client = self.pool.get().await?;
        let rows = client.query(&format!("SELECT {COLUMNS} FROM fleet_control ORDER BY scope"), &[]).await?;
        Ok(rows.iter().map(row_to_kill).collect())
    }

    /// Kill (or recover) one agent fleet-wide, one sidecar's gateway, or the whole fleet; the
    /// change is in force on this sidecar when this returns.
    pub async fn set(
        &self,
        target: KillScope<'_>,
        killed: bool,
        reason: &str,
        actor: &str,
        sidecar: &str,
    ) -> Result<FleetKill, FleetError> {
        if let KillScope::Agent(a) = target {
            decision::agent_id::check(a)?;
        }
        let scope = target.key();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_one(
                &format!(
                    "INSERT INTO fleet_control (scope, killed, reason, updated_by, sidecar_id) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (scope) DO UPDATE SET killed = EXCLUDED.killed, epoch = fleet_control.epoch + 1, \
                     reason = EXCLUDED.reason, updated_by = EXCLUDED.updated_by, sidecar_id = EXCLUDED.sidecar_id, \
                     updated_at = now() RETURNING {COLUMNS}"
                ),
                &[&scope, &killed, &reason, &actor, &sidecar],
            )
            .await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &scope]).await?;
        tx.commit().await?;
        self.refresh().await?;
        Ok(row_to_kill(&row))
    }

    /// Lift every fleet flag (the whole fleet, every sidecar, every agent); returns the scopes
    /// lifted.
    pub async fn recover_all(&self, reason: &str, actor: &str, sidecar: &str) -> Result<Vec<FleetKill>, FleetError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                &format!(
                    "UPDATE fleet_control SET killed = false, epoch = epoch + 1, reason = $1, updated_by = $2, \
                     sidecar_id = $3, updated_at = now() WHERE killed RETURNING {COLUMNS}"
                ),
                &[&reason, &actor, &sidecar],
            )
            .await?;
        tx.execute("SELECT pg_notify($1, 'all')", &[&CHANNEL]).await?;
        tx.commit().await?;
        self.refresh().await?;
        Ok(rows.iter().map(row_to_kill).collect())
    }

    /// Apply the partition policy when the last good read is older than the TTL.
    pub(crate) fn check_stale(&self) {
        let since = self.last_ok.lock().map(|t| t.elapsed()).unwrap_or_else(|p| p.into_inner().elapsed());
        if since <= self.ttl {
            return;
        }
        if self.connected.get() == 1 {
            tracing::error!(
                ttl_ms = self.ttl.as_millis() as u64,
                policy = ?self.partitioned,
                "no contact with the fleet database within the heartbeat TTL"
            );
        }
        self.connected.set(0);
        if self.partitioned == Partitioned::RefuseAll {
            self.kill.set_fleet_unreachable(Some(format!(
                "no contact with the fleet database for {} ms (heartbeat TTL {} ms)",
                since.as_millis(),
                self.ttl.as_millis()
            )));
        }
    }
}

//! Fleet-wide grants (docs/fleet.md "Fleet-wide grants"). A grant lives in `fleet_grant`
//! (one row per grant id, its body the grant as the API shows it) and applies on every sidecar
//! of the fleet. It is written by the sidecar whose API created it: an allow-always decision
//! in the inbox's transaction (the grant id the decision names, so there is only ever one),
//! `POST /api/v1/grants` in its own; a revocation deletes the row. Each write sends
//! `pg_notify` in its transaction, so the notification leaves only if the change committed.
//!
//! Every sidecar re-reads the whole set on a notification, every `poll_ms` (the safety net),
//! and right after its own change, and hands it to `governance::Broker::set_fleet_grants`,
//! which the data path reads from memory. Reads are serialized, so an older read never
//! overwrites a newer one. A sidecar that has not read the set within `heartbeat_ttl_ms`
//! drops every fleet grant (fail closed: a grant only widens what is allowed) until a read
//! succeeds again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use governance::approvals::{BrokerError, Grant, GrantFut, GrantLink};
use governance::Broker;
use tokio::sync::Notify;

use crate::{FleetError, FleetSettings};

/// The notification channel of grant changes (payload: the grant id).
pub const CHANNEL: &str = "clawbutler_grants";

/// Store `g` (its `sidecar` set) unless a grant with its id exists, and notify; in the
/// caller's transaction. The number of rows written (0 or 1).
pub(crate) async fn insert(tx: &tokio_postgres::Transaction<'_>, g: &Grant) -> Result<u64, FleetError> {
    // An expiry that does not parse was refused when the scope was built; stored as none.
    let expires = g
        .scope
        .expires_at
        .as_deref()
        .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let body = serde_json::to_string(g)?;
    let n = tx
        .execute(
            "INSERT INTO fleet_grant (grant_id, sidecar_id, agent, kind, approval_id, expires_at, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb) ON CONFLICT (grant_id) DO NOTHING",
            &[&g.id, &g.sidecar, &g.scope.agent, &g.scope.kind.as_str(), &g.approval_id, &expires, &body],
        )
        .await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &g.id]).await?;
    Ok(n)
}

fn parse(row: &tokio_postgres::Row) -> Result<Grant, FleetError> {
    Ok(serde_json::from_str(row.get(0))?)
}

/// Keeps the broker's fleet grants in step with `fleet_grant`, and writes them.
pub struct GrantSync {
    pool: Pool,
    sidecar_id: String,
    timeout_ms: u64,
    ttl: Duration,
    broker: Weak<Broker>,
    last_ok: Mutex<Instant>,
    /// Set while the grants are dropped for want of a read within the TTL.
    dropped: AtomicBool,
    /// Serializes read + apply (see the module docs).
    reading: tokio::sync::Mutex<()>,
    /// Rung by the LISTEN connection: read now.
    pub(crate) wake: Notify,
    applied: prometheus::IntGauge,
}

impl GrantSync {
    pub(crate) fn new(
        pool: Pool,
        s: &FleetSettings,
        broker: &Arc<Broker>,
        registry: &prometheus::Registry,
    ) -> Result<GrantSync, FleetError> {
        let applied = prometheus::IntGauge::new(
            "clawbutler_fleet_grants_applied",
            "Fleet grants this sidecar applies (0 while it has not read them within the heartbeat TTL)",
        )
        .and_then(|g| registry.register(Box::new(g.clone())).map(|_| g))
        .map_err(|e| FleetError::Pool(e.to_string()))?;
        Ok(GrantSync {
            pool,
            sidecar_id: s.sidecar_id.clone(),
            timeout_ms: s.timeout_ms,
            ttl: Duration::from_millis(s.heartbeat_ttl_ms),
            broker: Arc::downgrade(broker),
            last_ok: Mutex::new(Instant::now()),
            dropped: AtomicBool::new(false),
            reading: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            applied,
        })
    }

    async fn bounded<T>(&self, f: impl std::future::Future<Output = Result<T, FleetError>>) -> Result<T, FleetError> {
        let ms = self.timeout_ms;
        tokio::time::timeout(Duration::from_millis(ms), f)
            .await
            .map_err(|_| FleetError::Timeout { what: "grants", ms })?
    }

    /// Read every fleet grant and apply the set here.
    pub async fn refresh(&self) -> Result<(), FleetError> {
        let _one = self.reading.lock().await;
        let rows = self
            .bounded(async {
                let client = self.pool.get().await?;
                Ok(client.query("SELECT body::text FROM fleet_grant ORDER BY grant_id", &[]).await?)
            })
            .await?;
        let all = rows.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
        self.applied.set(all.len() as i64);
        if let Some(b) = self.broker.upgrade() {
            b.set_fleet_grants(all);
        }
        *self.last_ok.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if self.dropped.swap(false, Ordering::Relaxed) {
            tracing::info!("fleet grants read again: applied");
        }
        Ok(())
    }

    /// A page of the fleet's grants, newest first: at most `limit`, older than `cursor`.
    pub async fn list(
        &self,
        agent: Option<&str>,
        kind: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Grant>, FleetError> {
        let rows = self
            .bounded(async {
                let client = self.pool.get().await?;
                let q = "SELECT body::text FROM fleet_grant WHERE ($1::text IS NULL OR agent = $1) \
                         AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR grant_id < $3) \
                         ORDER BY grant_id DESC LIMIT $4";
                Ok(client.query(q, &[&agent, &kind, &cursor, &(limit as i64)]).await?)
            })
            .await?;
        rows.iter().map(parse).collect()
    }

    /// One fleet grant.
    pub async fn get(&self, id: &str) -> Result<Option<Grant>, FleetError> {
        let row = self
            .bounded(async {
                let client = self.pool.get().await?;
                Ok(client.query_opt("SELECT body::text FROM fleet_grant WHERE grant_id = $1", &[&id]).await?)
            })
            .await?;
        row.as_ref().map(parse).transpose()
    }

    /// Read again after this sidecar's own change, so it is in force here on return (a failed
    /// read is logged: the change is stored, the poll applies it).
    async fn apply_own_change(&self) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, "fleet grants: reading after a change failed");
        }
    }

    /// Drop every fleet grant when the last good read is older than the TTL.
    pub(crate) fn check_stale(&self) {
        let since = self.last_ok.lock().map(|t| t.elapsed()).unwrap_or_else(|p| p.into_inner().elapsed());
        if since <= self.ttl || self.dropped.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::error!(
            ttl_ms = self.ttl.as_millis() as u64,
            "fleet grants not read within the heartbeat TTL: dropped until they are read again"
        );
        self.applied.set(0);
        if let Some(b) = self.broker.upgrade() {
            b.set_fleet_grants(Vec::new());
        }
    }
}

fn unavailable(e: FleetError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

impl GrantLink for GrantSync {
    fn create<'a>(&'a self, g: &'a Grant) -> GrantFut<'a, Grant> {
        Box::pin(async move {
            let mut g = g.clone();
            g.sidecar.get_or_insert_with(|| self.sidecar_id.clone());
            let stored = self
                .bounded(async {
                    let mut client = self.pool.get().await?;
                    let tx = client.transaction().await?;
                    insert(&tx, &g).await?;
                    let row = tx.query_one("SELECT body::text FROM fleet_grant WHERE grant_id = $1", &[&g.id]).await?;
                    let stored = parse(&row)?;
                    tx.commit().await?;
                    Ok(stored)
                })
                .await
                .map_err(unavailable)?;
            self.apply_own_change().await;
            Ok(stored)
        })
    }

    fn revoke<'a>(&'a self, id: &'a str) -> GrantFut<'a, Option<Grant>> {
        Box::pin(async move {
            let gone = self
                .bounded(async {
                    let mut client = self.pool.get().await?;
                    let tx = client.transaction().await?;
                    let row = tx
                        .query_opt("DELETE FROM fleet_grant WHERE grant_id = $1 RETURNING body::text", &[&id])
                        .await?;
                    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id]).await?;
                    let gone = row.as_ref().map(parse).transpose()?;
                    tx.commit().await?;
                    Ok(gone)
                })
                .await
                .map_err(unavailable)?;
            if gone.is_some() {
                self.apply_own_change().await;
            }
            Ok(gone)
        })
    }
}

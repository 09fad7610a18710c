//! The sidecar registry: each sidecar upserts its row every `heartbeat_ms`; any sidecar lists
//! them all (`GET /api/v1/fleet/sidecars`), with the age of each heartbeat as the database's
//! clock sees it, so no two sidecars' clocks are compared.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;

use crate::FleetError;

/// One sidecar as the registry knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SidecarRow {
    pub id: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat: DateTime<Utc>,
    /// Milliseconds since its last heartbeat (database clock).
    pub heartbeat_age_ms: i64,
    /// No heartbeat within the heartbeat TTL: down, cut off, or stopped.
    pub stale: bool,
    /// Its OpenClaw gateway link at its last heartbeat: `connected`, `disconnected`, or
    /// `null` when it has no `[gateway]` link.
    pub gateway_link: Option<String>,
    /// Central audit: its records not yet shipped and the age of the oldest of them, as its
    /// shipper last reported (`null`: it has not shipped yet).
    pub audit_lag_records: Option<i64>,
    pub audit_lag_seconds: Option<f64>,
    /// Its policy as it last reported it (policy rollout); `null` before its first report.
    pub policy: Option<crate::rollout::PolicyState>,
    /// The fleet kill of this sidecar's gateway (`sidecar:<id>`) while in force.
    pub kill: Option<crate::FleetKill>,
}

/// Write this sidecar's heartbeat (creating its row, or restarting it with `started_at`).
pub async fn heartbeat(
    pool: &Pool,
    id: &str,
    version: &str,
    started_at: DateTime<Utc>,
    gateway_link: Option<&str>,
) -> Result<(), FleetError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO fleet_sidecar (sidecar_id, version, started_at, last_heartbeat, gateway_link) \
             VALUES ($1, $2, $3, now(), $4) \
             ON CONFLICT (sidecar_id) DO UPDATE SET version = EXCLUDED.version, \
             started_at = EXCLUDED.started_at, last_heartbeat = now(), gateway_link = EXCLUDED.gateway_link",
            &[&id, &version, &started_at, &gateway_link],
        )
        .await?;
    Ok(())
}

/// Every registered sidecar, by id.
pub async fn list(pool: &Pool, ttl_ms: u64) -> Result<Vec<SidecarRow>, FleetError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT sidecar_id, version, started_at, last_heartbeat, \
             (extract(epoch FROM (now() - last_heartbeat)) * 1000)::bigint, gateway_link, \
             a.local_head - a.shipped_seq, a.lag_seconds \
             FROM fleet_sidecar LEFT JOIN fleet_audit_shipper a USING (sidecar_id) ORDER BY sidecar_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let age: i64 = r.get(4);
            SidecarRow {
                id: r.get(0),
                version: r.get(1),
                started_at: r.get(2),
                last_heartbeat: r.get(3),
                heartbeat_age_ms: age,
                stale: age > ttl_ms as i64,
                gateway_link: r.get(5),
                audit_lag_records: r.get(6),
                audit_lag_seconds: r.get(7),
                policy: None,
                kill: None,
            }
        })
        .collect())
}

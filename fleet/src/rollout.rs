//! Policy rollout (docs/fleet.md, "Policy rollout"). A bundle signed with the fleet's key is
//! published through any sidecar's API: that sidecar verifies it and runs its tests first
//! (so a bad bundle is refused to the publisher and never stored), then stores it in
//! `fleet_policy` with a `pg_notify` in the same transaction. Every sidecar reads the newest
//! row when notified, every `poll_ms` (the safety net) and at start before serving; it
//! verifies the signature against its own `policy_keys`, refuses a bundle published before
//! the one it serves (a replay), and hands the rest to `PolicyEngine::apply_published`, which
//! runs the bundle's tests and swaps atomically or keeps the last good. Whatever happened is
//! written to `fleet_policy_state` (one row per sidecar: the revision serving, the bundle
//! applied, the last refusal and why), which the fleet view shows.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use ed25519_dalek::VerifyingKey;
use policy::{PolicyEngine, SignedBundle};
use serde::Serialize;
use tokio::sync::Notify;

use crate::FleetError;

/// The notification channel (payload: the new bundle's sequence number).
pub const CHANNEL: &str = "clawbutler_policy";

/// A bundle as stored, without its files (the API's answer to a publish, and the newest).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BundleRow {
    /// Fleet-wide sequence number, in publication order.
    pub seq: i64,
    /// SHA-256 of the files and the publication time (what was signed).
    pub digest: String,
    pub published_at: String,
    /// The token name that published it, and through which sidecar.
    pub published_by: String,
    pub via_sidecar: String,
    pub files: usize,
    pub stored_at: DateTime<Utc>,
}

/// One sidecar's policy as it last reported it (the fleet view's `policy`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicyState {
    /// The revision serving: what each decision's audit record carries (`bundle_revision`).
    pub revision: String,
    /// The fleet bundle serving; `null`: the sidecar's own (`[policies]`) bundle.
    pub applied_seq: Option<i64>,
    /// The newest fleet bundle it refused, and why; cleared when a newer one applies.
    pub refused_seq: Option<i64>,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What this sidecar holds now.
#[derive(Debug, Default)]
struct Local {
    applied_seq: Option<i64>,
    applied_at: Option<DateTime<Utc>>,
    refused_seq: Option<i64>,
    error: Option<String>,
    /// The revision last written to `fleet_policy_state` (a local reload changes it too).
    reported: Option<String>,
}

/// Keeps the sidecar's policy engine on the fleet's newest bundle.
pub struct Rollout {
    pool: Pool,
    engine: Arc<PolicyEngine>,
    keys: Vec<VerifyingKey>,
    sidecar_id: String,
    local: tokio::sync::Mutex<Local>,
    /// Rung by the LISTEN connection: read now.
    pub(crate) wake: Notify,
    last_error: Mutex<Option<String>>,
}

const ROW: &str = "seq, digest, published_at, published_by, via_sidecar, jsonb_array_length(files), stored_at";

fn row(r: &tokio_postgres::Row) -> BundleRow {
    let files: i32 = r.get(5);
    BundleRow {
        seq: r.get(0),
        digest: r.get(1),
        published_at: r.get(2),
        published_by: r.get(3),
        via_sidecar: r.get(4),
        files: files.max(0) as usize,
        stored_at: r.get(6),
    }
}

fn label(seq: i64, digest: &str) -> String {
    format!("fleet bundle #{seq} sha256:{}", &digest[..digest.len().min(12)])
}

impl Rollout {
    pub(crate) fn new(pool: Pool, engine: Arc<PolicyEngine>, keys: Vec<VerifyingKey>, sidecar_id: &str) -> Rollout {
        Rollout {
            pool,
            engine,
            keys,
            sidecar_id: sidecar_id.to_string(),
            local: tokio::sync::Mutex::new(Local::default()),
            wake: Notify::new(),
            last_error: Mutex::new(None),
        }
    }

    /// Verify, test and store a bundle for the whole fleet; refused (nothing stored) when
    /// its signature does not verify here, its tests fail or it does not compile.
    pub async fn publish(&self, bundle: &SignedBundle, actor: &str) -> Result<BundleRow, FleetError> {
        let refused = |e: policy::PolicyError| FleetError::Refused(e.to_string());
        bundle.validate().map_err(refused)?;
        bundle.verify(&self.keys).map_err(refused)?;
        let digest = bundle.digest();
        let checked = bundle.clone().into_published(format!("bundle sha256:{}", &digest[..12]));
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || engine.check_published(checked))
            .await
            .map_err(|e| FleetError::Refused(format!("bundle check stopped: {e}")))?
            .map_err(refused)?;
        let files = serde_json::to_string(&bundle.files)?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let r = tx
            .query_one(
                &format!(
                    "INSERT INTO fleet_policy (digest, files, published_at, signature, published_by, via_sidecar) \
                     VALUES ($1, $2::text::jsonb, $3, $4, $5, $6) RETURNING {ROW}"
                ),
                &[&digest, &files, &bundle.published_at, &bundle.signature, &actor, &self.sidecar_id],
            )
            .await?;
        let stored = row(&r);
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &stored.seq.to_string()]).await?;
        tx.commit().await?;
        self.wake.notify_one();
        Ok(stored)
    }

    /// The newest bundle published, if any.
    pub async fn newest(&self) -> Result<Option<BundleRow>, FleetError> {
        let client = self.pool.get().await?;
        let r = client.query_opt(&format!("SELECT {ROW} FROM fleet_policy ORDER BY seq DESC LIMIT 1"), &[]).await?;
        Ok(r.as_ref().map(row))
    }

    /// Every sidecar's reported policy, by sidecar id.
    pub async fn states(&self) -> Result<Vec<(String, PolicyState)>, FleetError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT sidecar_id, revision, applied_seq, refused_seq, error, updated_at FROM fleet_policy_state \
                 ORDER BY sidecar_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let s = PolicyState {
                    revision: r.get(1),
                    applied_seq: r.get(2),
                    refused_seq: r.get(3),
                    error: r.get(4),
                    updated_at: r.get(5),
                };
                (r.get(0), s)
            })
            .collect())
    }

    /// Read the newest bundle and apply it if it is new here; report the outcome. Serialized,
    /// so two reads never apply out of order.
    pub async fn refresh(&self) -> Result<(), FleetError> {
        let mut local = self.local.lock().await;
        let client = self.pool.get().await?;
        let newest = client
            .query_opt(
                "SELECT seq, digest, files::text, published_at, signature FROM fleet_policy ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await?;
        drop(client);
        if let Some(r) = newest {
            let seq: i64 = r.get(0);
            if local.applied_seq != Some(seq) && local.refused_seq != Some(seq) {
                let digest: String = r.get(1);
                let files: String = r.get(2);
                let bundle = serde_json::from_str(&files).map(|files| SignedBundle {
                    files,
                    published_at: r.get(3),
                    signature: r.get(4),
                });
                self.try_apply(&mut local, seq, &digest, bundle).await;
            }
        }
        let revision = self.engine.revision();
        if local.reported.as_deref() != Some(revision.as_str()) {
            self.report(&local, &revision).await?;
            local.reported = Some(revision);
        }
        Ok(())
    }

    async fn try_apply(
        &self,
        local: &mut Local,
        seq: i64,
        digest: &str,
        bundle: Result<SignedBundle, serde_json::Error>,
    ) {
        let name = label(seq, digest);
        let checked = bundle.map_err(|e| format!("unreadable bundle row: {e}")).and_then(|b| {
            b.validate().map_err(|e| e.to_string())?;
            if b.digest() != digest {
                return Err("the stored digest does not match the bundle's files".to_string());
            }
            b.verify(&self.keys).map_err(|e| e.to_string())?;
            let at = b.published().map_err(|e| e.to_string())?;
            if local.applied_at.is_some_and(|applied| at <= applied) {
                return Err(format!(
                    "published at {} but the bundle serving here was published later: an older bundle replayed? \
                     (to go back, publish the old files again)",
                    b.published_at
                ));
            }
            Ok((b, at))
        });
        let result = match checked {
            Ok((b, at)) => {
                let engine = self.engine.clone();
                let published = b.into_published(name.clone());
                match tokio::task::spawn_blocking(move || engine.apply_published(published)).await {
                    Ok(Ok(_)) => Ok(at),
                    // The engine already told its callback (audit) and status.
                    Ok(Err(e)) => Err((e.to_string(), false)),
                    Err(e) => Err((format!("the bundle check stopped: {e}"), true)),
                }
            }
            Err(e) => Err((e, true)),
        };
        match result {
            Ok(at) => {
                tracing::info!(seq, bundle = %name, "fleet policy bundle applied");
                local.applied_seq = Some(seq);
                local.applied_at = Some(at);
                local.refused_seq = None;
                local.error = None;
            }
            Err((error, tell_engine)) => {
                tracing::error!(seq, bundle = %name, %error, "fleet policy bundle refused; keeping the last good");
                let error = if tell_engine {
                    self.engine.refuse_published(&name, error).error.unwrap_or_default()
                } else {
                    format!("{name} refused: {error}")
                };
                local.refused_seq = Some(seq);
                local.error = Some(error);
            }
        }
        // Always written after an attempt, even with the revision unchanged.
        local.reported = None;
    }

    async fn report(&self, local: &Local, revision: &str) -> Result<(), FleetError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO fleet_policy_state (sidecar_id, revision, applied_seq, refused_seq, error, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, now()) ON CONFLICT (sidecar_id) DO UPDATE SET \
                 revision = EXCLUDED.revision, applied_seq = EXCLUDED.applied_seq, \
                 refused_seq = EXCLUDED.refused_seq, error = EXCLUDED.error, updated_at = now()",
                &[&self.sidecar_id, &revision, &local.applied_seq, &local.refused_seq, &local.error],
            )
            .await?;
        Ok(())
    }

    /// Log a failed read once per distinct error (the poll retries every `poll_ms`).
    pub(crate) fn failed(&self, e: &FleetError) {
        let text = e.to_string();
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(text.as_str()) {
            tracing::warn!(error = %text, "fleet policy read failed");
            *last = Some(text);
        }
    }
}

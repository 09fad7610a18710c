//! The fleet's shared approval inbox (docs/fleet.md "Shared approval inbox"). Every sidecar
//! writes the approvals it holds a call for to `fleet_approval`; any sidecar's API lists them
//! and decides them. A decision is one READ COMMITTED transaction: lock the row, check it as
//! a local decision is checked (`governance::approvals::fleet::prepare`), then a conditional
//! `UPDATE ... WHERE state = 'pending' AND version = $expected AND expires_at > now()`, plus
//! `pg_notify` and the Idempotency-Key's stored answer in the same transaction. So of any
//! number of racing decisions on any sidecars exactly one wins, and a retry with the same key
//! on another sidecar replays the first answer.
//!
//! The sidecar holding the call learns of the decision from its LISTEN connection (any
//! notification on [`CHANNEL`] makes it check the approvals it holds) and, as the safety net,
//! by checking them every `poll_ms`; it then releases the call through
//! `Broker::apply_remote`. An allow-always decision writes its grant to `fleet_grant` in the
//! same transaction (`grants.rs`), so it applies fleet-wide from the commit on. Approvals this sidecar creates or closes itself go through an
//! outbox that is retried until the database takes them; a closed one never overwrites a
//! decision already in the inbox.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool, Transaction};
use governance::approvals::fleet::{prepare, ExpireFut};
use governance::approvals::store::{status_filter, DEFAULT_LIMIT, MAX_LIMIT};
use governance::approvals::{
    Approval, ApprovalPage, ApprovalQuery, BrokerError, DecideRequest, Grant, InboxLink, RemoteDecision, Status,
};
use governance::Broker;
use serde_json::Value;
use tokio::sync::{watch, Notify};

use crate::{FleetError, FleetSettings};

/// The notification channel of decisions (payload: the approval id).
pub const CHANNEL: &str = "clawbutler_approvals";

/// Stored Idempotency-Key answers are pruned after a day, at most every ten minutes.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What a decision through the inbox answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Decided now (won, or refused: 409, 404, 422): HTTP status and body.
    Fresh(u16, Value),
    /// The stored answer of an earlier request with the same Idempotency-Key.
    Replayed(u16, Value),
    /// The Idempotency-Key was used before with another body.
    KeyReused,
}

/// An Idempotency-Key (already scoped to the approval) and the hash of the request body.
#[derive(Debug, Clone, Copy)]
pub struct Idem<'a> {
    pub key: &'a str,
    pub body_hash: &'a str,
}

/// Turns the decision's outcome into the HTTP answer (status, body) that is also stored for
/// replay; the control API owns the format.
/// A won allow-always carries the grant it created.
pub type Render<'a> = &'a (dyn Fn(Result<(Approval, Option<Grant>), BrokerError>) -> (u16, Value) + Sync);

/// The inbox of one sidecar.
pub struct Inbox {
    pool: Pool,
    sidecar_id: String,
    timeout_ms: u64,
    poll: Duration,
    /// Weak: the broker holds this inbox (`Broker::set_inbox`), and a cycle would keep both,
    /// and the sidecar's store with them, alive after shutdown.
    broker: Weak<Broker>,
    /// Approvals to write, latest snapshot per id.
    outbox: Mutex<BTreeMap<String, Approval>>,
    /// `clawbutler_fleet_inbox_writes_pending`: the outbox's length.
    pending: prometheus::IntGauge,
    /// Rung by the LISTEN connection: check the held approvals now.
    pub(crate) wake: Notify,
    /// Rung by [`InboxLink::write`]: flush the outbox now.
    kick: Notify,
}

/// Insert the approval, or close a pending row with it; never touches a closed row (a
/// decision taken in the inbox stays). The number of rows written (0 or 1).
const UPSERT: &str = "INSERT INTO fleet_approval \
    (approval_id, sidecar_id, agent, kind, risk, state, version, expires_at, decided_by, decided_at, body) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $6 = 'pending' THEN NULL ELSE now() END, $10::text::jsonb) \
    ON CONFLICT (approval_id) DO UPDATE SET state = EXCLUDED.state, version = EXCLUDED.version, \
    decided_by = EXCLUDED.decided_by, decided_at = EXCLUDED.decided_at, body = EXCLUDED.body \
    WHERE fleet_approval.state = 'pending' AND EXCLUDED.state <> 'pending'";

/// The row's body as shown, and whether it is pending past its expiry (shown as expired).
const SHOWN: &str = "body::text, state = 'pending' AND expires_at <= now()";

async fn upsert(client: &Object, sidecar: &str, a: &Approval) -> Result<u64, FleetError> {
    // An unreadable expiry is treated as past (fail closed: nobody can approve it).
    let expires = chrono::DateTime::parse_from_rfc3339(&a.expires_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    let body = serde_json::to_string(a)?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
        &a.id,
        &sidecar,
        &a.agent,
        &a.kind.as_str(),
        &a.risk.as_str(),
        &a.status.as_str(),
        &(a.version as i64),
        &expires,
        &a.decided_by,
        &body,
    ];
    Ok(client.execute(UPSERT, &params).await?)
}

/// The approval as the inbox shows it: a pending row past its expiry is expired (its
/// sidecar expires it when it can; nobody can decide it any more).
fn shown(row: &tokio_postgres::Row) -> Result<Approval, FleetError> {
    let mut a: Approval = serde_json::from_str(row.get(0))?;
    if row.get::<_, bool>(1) {
        a.status = Status::Expired;
        a.decided_by = Some("system".into());
        a.decision_reason = Some("no decision before it expired".into());
    }
    Ok(a)
}

fn remote(row: &tokio_postgres::Row) -> Result<RemoteDecision, FleetError> {
    let approval = serde_json::from_str(row.get(0))?;
    let grant_scope = row.get::<_, Option<&str>>(1).map(serde_json::from_str).transpose()?;
    Ok(RemoteDecision { approval, grant_scope })
}

impl Inbox {
    pub(crate) fn new(
        pool: Pool,
        s: &FleetSettings,
        broker: &Arc<Broker>,
        registry: &prometheus::Registry,
    ) -> Result<Inbox, FleetError> {
        let pending = prometheus::IntGauge::new(
            "clawbutler_fleet_inbox_writes_pending",
            "Approvals this sidecar created or closed that the fleet database has not taken yet.",
        )
        .and_then(|g| registry.register(Box::new(g.clone())).map(|_| g))
        .map_err(|e| FleetError::Pool(e.to_string()))?;
        Ok(Inbox {
            pool,
            sidecar_id: s.sidecar_id.clone(),
            timeout_ms: s.timeout_ms,
            poll: Duration::from_millis(s.poll_ms),
            broker: Arc::downgrade(broker),
            outbox: Mutex::new(BTreeMap::new()),
            pending,
            wake: Notify::new(),
            kick: Notify::new(),
        })
    }

    async fn bounded<T>(&self, f: impl std::future::Future<Output = Result<T, FleetError>>) -> Result<T, FleetError> {
        let ms = self.timeout_ms;
        tokio::time::timeout(Duration::from_millis(ms), f)
            .await
            .map_err(|_| FleetError::Timeout { what: "inbox", ms })?
    }

    /// At start, before anything is held: this sidecar's approvals still pending in the inbox
    /// belong to callers of its previous run, which are gone (as the local store does).
    pub(crate) async fn cancel_orphans(&self) -> Result<u64, FleetError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE fleet_approval SET state = 'cancelled', version = version + 1, decided_by = 'system', \
                 decided_at = now(), body = body || jsonb_build_object('status', 'cancelled', 'version', version + 1, \
                 'decided_by', 'system', 'decided_at', \
                 to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), 'decision_reason', \
                 'the sidecar restarted while this was pending; its caller is gone') \
                 WHERE sidecar_id = $1 AND state = 'pending'",
                &[&self.sidecar_id],
            )
            .await?;
        Ok(n)
    }

    /// A filtered page of the fleet's approvals, newest first (the local store's contract).
    pub async fn list(&self, q: &ApprovalQuery) -> Result<ApprovalPage, FleetError> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
        let status = status_filter(q.status.as_deref())
            .map_err(|e| FleetError::Invalid(e.to_string()))?
            .map(|s| s.as_str().to_string());
        let sql = format!(
            "SELECT {SHOWN} FROM fleet_approval WHERE \
             ($1::text IS NULL OR (CASE WHEN state = 'pending' AND expires_at <= now() THEN 'expired' ELSE state END) = $1) \
             AND ($2::text IS NULL OR agent = $2) AND ($3::text IS NULL OR kind = $3) \
             AND ($4::text IS NULL OR risk = $4) AND ($5::text IS NULL OR approval_id < $5) \
             ORDER BY approval_id DESC LIMIT $6"
        );
        let rows = self
            .bounded(async {
                let client = self.pool.get().await?;
                let page = (limit + 1) as i64;
                Ok(client.query(&sql, &[&status, &q.agent, &q.kind, &q.risk, &q.cursor, &page]).await?)
            })
            .await?;
        let items = rows.iter().take(limit).map(shown).collect::<Result<Vec<_>, _>>()?;
        let next_cursor = (rows.len() > limit).then(|| items.last().map(|a| a.id.clone())).flatten();
        Ok(ApprovalPage { items, next_cursor })
    }

    /// One approval of the fleet.
    pub async fn get(&self, id: &str) -> Result<Option<Approval>, FleetError> {
        let row = self
            .bounded(async {
                let client = self.pool.get().await?;
                Ok(client
                    .query_opt(&format!("SELECT {SHOWN} FROM fleet_approval WHERE approval_id = $1"), &[&id])
                    .await?)
            })
            .await?;
        row.as_ref().map(shown).transpose()
    }

    /// Decide one approval of the fleet as `actor` through this sidecar (see the module docs).
    /// `render` makes the answer; with `idem` it is stored in the same transaction. An error
    /// means the database did not take the decision (nothing changed, nothing stored).
    pub async fn decide(
        &self,
        id: &str,
        req: &DecideRequest,
        actor: &str,
        idem: Option<Idem<'_>>,
        render: Render<'_>,
    ) -> Result<Answer, FleetError> {
        self.bounded(async {
            let mut client = self.pool.get().await?;
            let tx = client.transaction().await?;
            if let Some(k) = idem {
                // Requests sharing a key wait for each other, on every sidecar.
                tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 20))", &[&k.key]).await?;
                let q = "SELECT body_hash, status, body FROM fleet_approval_idem WHERE key = $1";
                if let Some(row) = tx.query_opt(q, &[&k.key]).await? {
                    if row.get::<_, &str>(0) != k.body_hash {
                        return Ok(Answer::KeyReused);
                    }
                    let status = u16::try_from(row.get::<_, i32>(1)).unwrap_or(500);
                    return Ok(Answer::Replayed(status, serde_json::from_str(row.get(2))?));
                }
            }
            let outcome = self.decide_row(&tx, id, req, actor).await?;
            let won = outcome.is_ok();
            let (status, body) = render(outcome);
            if let Some(k) = idem {
                tx.execute(
                    "INSERT INTO fleet_approval_idem (key, body_hash, status, body) VALUES ($1, $2, $3, $4)",
                    &[&k.key, &k.body_hash, &i32::from(status), &body.to_string()],
                )
                .await?;
            }
            if won {
                tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &id]).await?;
            }
            tx.commit().await?;
            Ok(Answer::Fresh(status, body))
        })
        .await
    }

    /// Lock the row, check the decision, write it if it wins: the decided approval, or why not.
    async fn decide_row(
        &self,
        tx: &Transaction<'_>,
        id: &str,
        req: &DecideRequest,
        actor: &str,
    ) -> Result<Result<(Approval, Option<Grant>), BrokerError>, FleetError> {
        let q = format!("SELECT {SHOWN} FROM fleet_approval WHERE approval_id = $1 FOR UPDATE");
        let Some(row) = tx.query_opt(&q, &[&id]).await? else {
            return Ok(Err(BrokerError::NotFound(id.to_string())));
        };
        let current = shown(&row)?;
        let p = match prepare(&current, req, actor) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let scope = p.grant_scope.as_ref().map(serde_json::to_string).transpose()?;
        let body = serde_json::to_string(&p.approval)?;
        let n = tx
            .execute(
                "UPDATE fleet_approval SET state = $2, version = $3, body = $4::text::jsonb, \
                 grant_scope = $5::text::jsonb, decided_by = $6, decided_via = $7, decided_at = now() \
                 WHERE approval_id = $1 AND state = 'pending' AND version = $8 AND expires_at > now()",
                &[
                    &id,
                    &p.approval.status.as_str(),
                    &(p.approval.version as i64),
                    &body,
                    &scope,
                    &actor,
                    &self.sidecar_id,
                    &(current.version as i64),
                ],
            )
            .await?;
        // The row lock makes a miss impossible; should it happen, the decision did not win.
        if n != 1 {
            return Ok(Err(BrokerError::Conflict(Box::new(current))));
        }
        // allow-always: the grant is the fleet's from this commit on, under the id the
        // decision names (so the holding sidecar applying it never makes a second one).
        let mut grant = None;
        if let (Some(scope), Some(gid)) = (p.grant_scope, p.approval.grant_id.clone()) {
            let g = Grant {
                id: gid,
                scope,
                created_at: p.approval.decided_at.clone().unwrap_or_else(governance::approvals::model::now_rfc3339),
                created_by: actor.to_string(),
                approval_id: Some(id.to_string()),
                sidecar: Some(self.sidecar_id.clone()),
            };
            crate::grants::insert(tx, &g).await?;
            grant = Some(g);
        }
        Ok(Ok((p.approval, grant)))
    }

    /// Flush the outbox, check the held approvals, prune old keys: on every wake, write and
    /// `poll_ms` until `stop`.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut pruned = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = self.wake.notified() => {}
                _ = self.kick.notified() => {}
                _ = stop.changed() => return,
            }
            self.flush().await;
            if let Err(e) = self.check_live().await {
                tracing::warn!(error = %e, "fleet inbox: checking held approvals failed");
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = Instant::now();
                let prune = async {
                    let client = self.pool.get().await?;
                    let q = "DELETE FROM fleet_approval_idem WHERE stored_at < now() - interval '1 day'";
                    Ok(client.execute(q, &[]).await?)
                };
                if let Err(e) = self.bounded(prune).await {
                    tracing::warn!(error = %e, "fleet inbox: pruning idempotency answers failed");
                }
            }
        }
    }

    /// Write what the outbox holds; what fails stays queued (unless a newer snapshot came).
    async fn flush(&self) {
        let items: Vec<Approval> =
            std::mem::take(&mut *self.outbox.lock().unwrap_or_else(|p| p.into_inner())).into_values().collect();
        if items.is_empty() {
            return;
        }
        let written = self
            .bounded(async {
                let client = self.pool.get().await?;
                // One connection, pipelined.
                let all = items.iter().map(|a| upsert(&client, &self.sidecar_id, a));
                Ok(futures_util::future::join_all(all).await)
            })
            .await;
        let failed: Vec<Approval> = match written {
            Ok(results) => items.into_iter().zip(results).filter(|(_, r)| r.is_err()).map(|(a, _)| a).collect(),
            Err(e) => {
                tracing::warn!(error = %e, n = items.len(), "fleet inbox: writing approvals failed; retrying");
                items
            }
        };
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        for a in failed {
            outbox.entry(a.id.clone()).or_insert(a);
        }
        self.pending.set(outbox.len() as i64);
    }

    /// Release the calls held here whose approval was decided in the inbox.
    async fn check_live(&self) -> Result<(), FleetError> {
        let Some(broker) = self.broker.upgrade() else { return Ok(()) };
        let ids = broker.live_ids();
        if ids.is_empty() {
            return Ok(());
        }
        let rows = self
            .bounded(async {
                let client = self.pool.get().await?;
                let q = "SELECT body::text, grant_scope::text FROM fleet_approval \
                         WHERE approval_id = ANY($1) AND state <> 'pending'";
                Ok(client.query(q, &[&ids]).await?)
            })
            .await?;
        for row in &rows {
            broker.apply_remote(remote(row)?).await;
        }
        Ok(())
    }

    /// Queue `a` to be written.
    fn queue(&self, a: &Approval) {
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        outbox.insert(a.id.clone(), a.clone());
        self.pending.set(outbox.len() as i64);
    }
}

impl InboxLink for Inbox {
    fn write(&self, a: &Approval) {
        self.queue(a);
        self.kick.notify_one();
    }

    fn expire<'a>(&'a self, expired: &'a Approval) -> ExpireFut<'a> {
        Box::pin(async move {
            let asked = self
                .bounded(async {
                    let client = self.pool.get().await?;
                    if upsert(&client, &self.sidecar_id, expired).await? == 1 {
                        return Ok(None);
                    }
                    let q = "SELECT body::text, grant_scope::text FROM fleet_approval \
                             WHERE approval_id = $1 AND state <> 'pending'";
                    client.query_opt(q, &[&expired.id]).await?.as_ref().map(remote).transpose()
                })
                .await;
            match asked {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, approval = %expired.id, "fleet inbox unreachable at expiry: expired here");
                    self.queue(expired);
                    None
                }
            }
        })
    }
}

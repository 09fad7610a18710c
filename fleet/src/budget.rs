//! Fleet budgets, the central half (docs/fleet.md "Fleet budgets"): a sidecar reserves a
//! chunk of one or more fleet budgets (a lease) in one READ COMMITTED transaction whose
//! conditional UPDATE admits it only while `spent + held + amount <= limit` on every budget
//! (all or nothing), and settles it later with what was really used. Lease ids are minted by
//! the sidecar and reused on every retry, so a retry after an unknown commit outcome neither
//! reserves twice nor loses the first grant. Lock order everywhere: the lease row first, then
//! the budget rows sorted by id, so concurrent takes and settles never deadlock.

use deadpool_postgres::Pool;

use crate::FleetError;

/// What a take ended in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Reserved now, or by an earlier attempt with the same lease id.
    Granted,
    /// Not enough headroom on at least one budget: nothing was reserved.
    Refused,
}

/// Create a fleet budget, or change its limit (spend and holds stay).
pub async fn define(pool: &Pool, budget_id: &str, limit_micro: i64) -> Result<(), FleetError> {
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO fleet_budget (budget_id, limit_micro) VALUES ($1, $2) \
             ON CONFLICT (budget_id) DO UPDATE SET limit_micro = EXCLUDED.limit_micro",
            &[&budget_id, &limit_micro],
        )
        .await?;
    Ok(())
}

/// Reserve `amount_micro` on every budget in `budget_ids` under `lease_id`, for `ttl_ms`.
pub async fn take(
    pool: &Pool,
    lease_id: &str,
    sidecar_id: &str,
    budget_ids: &[String],
    amount_micro: i64,
    ttl_ms: i64,
) -> Result<Take, FleetError> {
    let mut ids = budget_ids.to_vec();
    ids.sort();
    ids.dedup();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let fresh = tx
        .query_opt(
            "INSERT INTO fleet_lease (lease_id, sidecar_id, budget_ids, amount_micro, expires_at) \
             VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond') \
             ON CONFLICT (lease_id) DO NOTHING RETURNING lease_id",
            &[&lease_id, &sidecar_id, &ids, &amount_micro, &(ttl_ms as f64)],
        )
        .await?;
    if fresh.is_none() {
        // An earlier attempt committed (its reply may have been lost): that grant stands.
        tx.commit().await?;
        return Ok(Take::Granted);
    }
    tx.query("SELECT 1 FROM fleet_budget WHERE budget_id = ANY($1) ORDER BY budget_id FOR UPDATE", &[&ids]).await?;
    let n = tx
        .execute(
            "UPDATE fleet_budget SET held_micro = held_micro + $2 \
             WHERE budget_id = ANY($1) AND spent_micro + held_micro + $2 <= limit_micro",
            &[&ids, &amount_micro],
        )
        .await?;
    if n as usize != ids.len() {
        tx.rollback().await?;
        return Ok(Take::Refused);
    }
    tx.commit().await?;
    Ok(Take::Granted)
}

/// Settle a lease with what was used: an open lease's hold leaves every budget and
/// `used_micro` is added to their spend; an expired one (already charged in full by
/// [`sweep`]) is refunded what it did not use, once. Repeats (and settles of unknown
/// leases) change nothing; returns whether this call settled it.
pub async fn settle(pool: &Pool, lease_id: &str, used_micro: i64) -> Result<bool, FleetError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "SELECT state, budget_ids, amount_micro FROM fleet_lease WHERE lease_id = $1 FOR UPDATE",
            &[&lease_id],
        )
        .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(false);
    };
    let (state, ids, amount): (String, Vec<String>, i64) = (row.get(0), row.get(1), row.get(2));
    let (held_delta, spent_delta) = match state.as_str() {
        "open" => (amount, used_micro),
        // Charged `amount` in full at expiry: now charge what was really used instead.
        "expired" => (0, used_micro - amount),
        _ => {
            tx.commit().await?;
            return Ok(false);
        }
    };
    tx.execute(
        "UPDATE fleet_lease SET state = 'settled', used_micro = $2 WHERE lease_id = $1",
        &[&lease_id, &used_micro],
    )
    .await?;
    tx.query("SELECT 1 FROM fleet_budget WHERE budget_id = ANY($1) ORDER BY budget_id FOR UPDATE", &[&ids]).await?;
    tx.execute(
        "UPDATE fleet_budget SET held_micro = held_micro - $2, spent_micro = spent_micro + $3 WHERE budget_id = ANY($1)",
        &[&ids, &held_delta, &spent_delta],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Charge every open lease past its expiry (on the server's clock) in full: its hold becomes
/// spend, so a sidecar that vanished with a lease never frees headroom it may have used. A
/// late [`settle`] refunds the unused part once. Every sidecar runs it; the conditional
/// state change makes each lease expire once. Returns how many leases it charged.
pub async fn sweep(pool: &Pool) -> Result<u64, FleetError> {
    let due: Vec<String> = {
        let client = pool.get().await?;
        let rows = client
            .query(
                "SELECT lease_id FROM fleet_lease WHERE state = 'open' AND expires_at < now() ORDER BY lease_id LIMIT 500",
                &[],
            )
            .await?;
        rows.iter().map(|r| r.get(0)).collect()
    };
    let mut charged = 0;
    for id in due {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "UPDATE fleet_lease SET state = 'expired' WHERE lease_id = $1 AND state = 'open' AND expires_at < now() \
                 RETURNING budget_ids, amount_micro",
                &[&id],
            )
            .await?;
        if let Some(row) = row {
            let (ids, amount): (Vec<String>, i64) = (row.get(0), row.get(1));
            tx.query("SELECT 1 FROM fleet_budget WHERE budget_id = ANY($1) ORDER BY budget_id FOR UPDATE", &[&ids])
                .await?;
            tx.execute(
                "UPDATE fleet_budget SET held_micro = held_micro - $2, spent_micro = spent_micro + $2 WHERE budget_id = ANY($1)",
                &[&ids, &amount],
            )
            .await?;
            charged += 1;
        }
        tx.commit().await?;
    }
    Ok(charged)
}

/// A sized lease request (see [`take_sized`]).
#[derive(Debug, Clone)]
pub struct Ask<'a> {
    /// Minted by the sidecar; reuse it on a retry after an unknown outcome.
    pub lease_id: &'a str,
    pub sidecar_id: &'a str,
    /// `(budget id, limit)`, sorted by id, no duplicates; the limits (micro-USD) are written
    /// as given, so a raised limit in the config takes effect on the next take.
    pub budgets: &'a [(String, i64)],
    /// The call's worst case: never less is granted.
    pub min_micro: i64,
    /// The most one lease may hold.
    pub max_micro: i64,
    /// The headroom is split into `live sidecars x parts` shares.
    pub parts: i64,
    /// A sidecar counts as live while its heartbeat is younger than this.
    pub live_ms: i64,
    pub ttl_ms: i64,
}

/// What a sized take ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sized {
    /// A lease of this many micro-USD (now, or by an earlier attempt with the same id).
    Granted(i64),
    /// No room for `min_micro` on this budget (`used` = spent + held, fleet-wide).
    Refused { budget_id: String, limit: i64, used: i64 },
    /// The lease id names a lease that has already ended (a stale retry): nothing granted.
    Ended,
}

/// Reserve a lease sized to the headroom: `headroom / (live sidecars x parts)`, capped at
/// `max_micro`; when that share is under two worst cases the lease is exactly the call's
/// worst case (near the limit calls reserve one by one, so the last dollars are not
/// stranded in other sidecars' leases). One READ COMMITTED transaction, lock order: the
/// lease row, then the budget rows by id (upserted in that order), then one conditional
/// UPDATE on all of them.
pub async fn take_sized(pool: &Pool, ask: &Ask<'_>) -> Result<Sized, FleetError> {
    let ids: Vec<String> = ask.budgets.iter().map(|(id, _)| id.clone()).collect();
    let limits: Vec<i64> = ask.budgets.iter().map(|(_, l)| *l).collect();
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    // The live sidecars are counted with the lease insert, before any budget row is locked.
    let fresh = tx
        .query_opt(
            "WITH live AS (SELECT count(*) AS n FROM fleet_sidecar \
                           WHERE last_heartbeat > now() - $6 * interval '1 millisecond') \
             INSERT INTO fleet_lease (lease_id, sidecar_id, budget_ids, amount_micro, expires_at) \
             VALUES ($1, $2, $3, $4, now() + $5 * interval '1 millisecond') \
             ON CONFLICT (lease_id) DO NOTHING RETURNING (SELECT n FROM live)",
            &[&ask.lease_id, &ask.sidecar_id, &ids, &ask.min_micro, &(ask.ttl_ms as f64), &(ask.live_ms as f64)],
        )
        .await?;
    let Some(live) = fresh.map(|r| r.get::<_, i64>(0)) else {
        // An earlier attempt with this id committed (its reply may have been lost).
        let row =
            tx.query_one("SELECT state, amount_micro FROM fleet_lease WHERE lease_id = $1", &[&ask.lease_id]).await?;
        tx.commit().await?;
        let (state, amount): (String, i64) = (row.get(0), row.get(1));
        return Ok(if state == "open" { Sized::Granted(amount) } else { Sized::Ended });
    };
    // Upserting in id order locks the rows in id order; RETURNING reads them under that lock.
    let rows = tx
        .query(
            "INSERT INTO fleet_budget (budget_id, limit_micro) SELECT id, lim FROM unnest($1::text[], $2::int8[]) \
             AS t(id, lim) ORDER BY id ON CONFLICT (budget_id) DO UPDATE SET limit_micro = EXCLUDED.limit_micro \
             RETURNING budget_id, limit_micro, spent_micro + held_micro",
            &[&ids, &limits],
        )
        .await?;
    let tightest = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)))
        .min_by_key(|(_, limit, used)| limit - used);
    let Some((budget_id, limit, used)) = tightest else {
        tx.rollback().await?;
        return Ok(Sized::Refused { budget_id: String::new(), limit: 0, used: 0 });
    };
    let headroom = limit - used;
    if headroom < ask.min_micro {
        tx.rollback().await?;
        return Ok(Sized::Refused { budget_id, limit, used });
    }
    let share = headroom / (live.max(1) * ask.parts.max(1));
    let amount = if share >= 2 * ask.min_micro { share.min(ask.max_micro.max(ask.min_micro)) } else { ask.min_micro };
    let n = tx
        .execute(
            "UPDATE fleet_budget SET held_micro = held_micro + $2 \
             WHERE budget_id = ANY($1) AND spent_micro + held_micro + $2 <= limit_micro",
            &[&ids, &amount],
        )
        .await?;
    if n as usize != ids.len() {
        tx.rollback().await?;
        return Ok(Sized::Refused { budget_id, limit, used });
    }
    tx.execute("UPDATE fleet_lease SET amount_micro = $2 WHERE lease_id = $1", &[&ask.lease_id, &amount]).await?;
    tx.commit().await?;
    Ok(Sized::Granted(amount))
}

/// `(limit, spent, held)` of a budget.
pub async fn totals(pool: &Pool, budget_id: &str) -> Result<Option<(i64, i64, i64)>, FleetError> {
    let client = pool.get().await?;
    let row = client
        .query_opt("SELECT limit_micro, spent_micro, held_micro FROM fleet_budget WHERE budget_id = $1", &[&budget_id])
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

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

/// Settle a lease with what was used: its hold leaves every budget and `used_micro` is added
/// to their spend. Repeats (and settles of unknown leases) change nothing; returns whether
/// this call settled it.
pub async fn settle(pool: &Pool, lease_id: &str, used_micro: i64) -> Result<bool, FleetError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "UPDATE fleet_lease SET state = 'settled', used_micro = $2 WHERE lease_id = $1 AND state = 'open' \
             RETURNING budget_ids, amount_micro",
            &[&lease_id, &used_micro],
        )
        .await?;
    let Some(row) = row else {
        tx.commit().await?;
        return Ok(false);
    };
    let (ids, amount): (Vec<String>, i64) = (row.get(0), row.get(1));
    tx.query("SELECT 1 FROM fleet_budget WHERE budget_id = ANY($1) ORDER BY budget_id FOR UPDATE", &[&ids]).await?;
    tx.execute(
        "UPDATE fleet_budget SET held_micro = held_micro - $2, spent_micro = spent_micro + $3 WHERE budget_id = ANY($1)",
        &[&ids, &amount, &used_micro],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// `(limit, spent, held)` of a budget.
pub async fn totals(pool: &Pool, budget_id: &str) -> Result<Option<(i64, i64, i64)>, FleetError> {
    let client = pool.get().await?;
    let row = client
        .query_opt("SELECT limit_micro, spent_micro, held_micro FROM fleet_budget WHERE budget_id = $1", &[&budget_id])
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

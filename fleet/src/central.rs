//! Reads of the central audit copy: fleet-wide search (the local search's filters, answered
//! from PostgreSQL) and verification of each sidecar's copy with the log's own checks
//! (`audit::CopyVerifier`: seq contiguity, hash links, record hashes, checkpoint chain,
//! signatures, Merkle roots, truncation below a checkpoint).

use deadpool_postgres::Pool;
use futures_util::{pin_mut, TryStreamExt};
use serde::Serialize;
use tokio_postgres::types::ToSql;

use crate::FleetError;

/// Records per step of a verification (the copy is streamed, never held whole).
const VERIFY_STEP: usize = 2_000;

/// One page of a fleet search, newest first: each item is the stored record with the
/// `sidecar_id` it came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetAuditPage {
    pub items: Vec<serde_json::Value>,
    /// Pass back as `cursor` for the next (older) page; `None`: no more.
    pub next_cursor: Option<String>,
}

/// Search the central copy with the local search's filters (`keyword` matched without the
/// masked form, as each sidecar masks with its own salt), plus `sidecar`.
pub async fn search(pool: &Pool, q: &audit::AuditQuery, sidecar: Option<&str>) -> Result<FleetAuditPage, FleetError> {
    let limit = q.limit.unwrap_or(audit::DEFAULT_LIMIT).clamp(1, audit::MAX_LIMIT);
    let mut sql = String::from("SELECT sidecar_id, seq, ts, line FROM fleet_audit_record WHERE true");
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut add = |sql: &mut String, cond: &str, v: Box<dyn ToSql + Sync + Send>| {
        params.push(v);
        sql.push_str(&cond.replace('?', &format!("${}", params.len())));
    };
    if let Some(s) = sidecar {
        add(&mut sql, " AND sidecar_id = ?", Box::new(s.to_string()));
    }
    if let Some(a) = &q.agent {
        add(&mut sql, " AND agent = ?", Box::new(a.clone()));
    }
    for (col, v) in [("kind", enum_text(&q.kind)), ("risk", enum_text(&q.risk)), ("action", enum_text(&q.action))] {
        if let Some(v) = v {
            add(&mut sql, &format!(" AND {col} = ?"), Box::new(v));
        }
    }
    if let Some(t) = &q.trace_id {
        add(&mut sql, " AND trace_id = ?", Box::new(t.clone()));
    }
    if let Some(k) = &q.keyword {
        add(&mut sql, " AND strpos(lower(line), lower(?)) > 0", Box::new(k.clone()));
    }
    if let Some(f) = q.from {
        add(&mut sql, " AND ts >= ?", Box::new(f));
    }
    if let Some(t) = q.to {
        add(&mut sql, " AND ts <= ?", Box::new(t));
    }
    if let Some(c) = &q.cursor {
        let (ts, sid, seq) = parse_cursor(c)?;
        add(&mut sql, " AND (ts, sidecar_id, seq) < (?", Box::new(ts));
        add(&mut sql, ", ?", Box::new(sid));
        add(&mut sql, ", ?)", Box::new(seq));
    }
    sql.push_str(&format!(" ORDER BY ts DESC, sidecar_id DESC, seq DESC LIMIT {}", limit + 1));
    let client = pool.get().await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let rows = client.query(&sql, &refs).await?;
    let mut page = FleetAuditPage::default();
    for r in rows.iter().take(limit) {
        let sid: String = r.get(0);
        let line: String = r.get(3);
        let mut v: serde_json::Value = serde_json::from_str(&line)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("sidecar_id".into(), serde_json::Value::String(sid));
        }
        page.items.push(v);
    }
    if rows.len() > limit {
        if let Some(r) = rows.get(limit - 1) {
            let ts: chrono::DateTime<chrono::Utc> = r.get(2);
            let (sid, seq): (String, i64) = (r.get(0), r.get(1));
            page.next_cursor = Some(format!("{}.{seq}.{sid}", ts.timestamp_micros()));
        }
    }
    Ok(page)
}

/// A filter enum as the text the records carry (`model_call`, `high`, `deny`).
fn enum_text<T: Serialize>(v: &Option<T>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_value(v).ok()).and_then(|v| v.as_str().map(str::to_string))
}

/// A fleet cursor: `<ts in µs>.<seq>.<sidecar id>` (the last item of the previous page).
fn parse_cursor(c: &str) -> Result<(chrono::DateTime<chrono::Utc>, String, i64), FleetError> {
    let bad = || FleetError::Invalid(format!("cursor {c:?} is not a next_cursor value of a fleet search"));
    let mut parts = c.splitn(3, '.');
    let ts: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let seq: i64 = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let sid = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
    let ts = chrono::DateTime::from_timestamp_micros(ts).ok_or_else(bad)?;
    Ok((ts, sid.to_string(), seq))
}

/// One sidecar's central copy, verified.
#[derive(Debug, Clone, Serialize)]
pub struct SidecarVerify {
    pub sidecar_id: String,
    pub report: audit::VerifyReport,
}

/// Verify the central copy of every sidecar that shipped (or only `sidecar`). Keys:
/// `pubkeys` when given (only with `sidecar`: each sidecar signs with its own key), else the
/// keys the sidecar shipped (self-consistency only, said as a warning, as for a local log
/// verified without `--pubkey`). Each copy is read in one REPEATABLE READ snapshot.
pub async fn verify(
    pool: &Pool,
    sidecar: Option<&str>,
    pubkeys: Option<&[audit::VerifyingKey]>,
) -> Result<Vec<SidecarVerify>, FleetError> {
    if pubkeys.is_some() && sidecar.is_none() {
        return Err(FleetError::Invalid("a public key applies to one sidecar: name it with --sidecar".into()));
    }
    let mut client = pool.get().await?;
    let ids: Vec<String> = client
        .query(
            "SELECT sidecar_id FROM fleet_audit_shipper UNION SELECT sidecar_id FROM fleet_audit_checkpoint \
             ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .filter(|id: &String| sidecar.is_none_or(|s| s == id))
        .collect();
    if let Some(s) = sidecar.filter(|_| ids.is_empty()) {
        return Err(FleetError::Invalid(format!("sidecar {s:?} has shipped no audit records to the fleet database")));
    }
    let mut out = Vec::new();
    for id in ids {
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let report = verify_one(&tx, &id, pubkeys).await?;
        tx.commit().await?;
        out.push(SidecarVerify { sidecar_id: id, report });
    }
    Ok(out)
}

async fn verify_one(
    tx: &tokio_postgres::Transaction<'_>,
    id: &str,
    given: Option<&[audit::VerifyingKey]>,
) -> Result<audit::VerifyReport, FleetError> {
    let mut warnings = Vec::new();
    let shipped_keys: Option<String> = tx
        .query_opt("SELECT public_keys FROM fleet_audit_shipper WHERE sidecar_id = $1", &[&id])
        .await?
        .map(|r| r.get(0));
    let keys = match given {
        Some(k) => Some(k.to_vec()),
        None => {
            let what = format!("the keys sidecar {id} shipped");
            let keys = shipped_keys.as_deref().and_then(|t| audit::keys::parse_public_set(t, &what).ok());
            warnings.push(format!(
                "using {what} to the fleet database; pass --pubkey (with --sidecar) to check against keys you trust"
            ));
            keys
        }
    };
    let cps: Vec<String> = tx
        .query("SELECT line FROM fleet_audit_checkpoint WHERE sidecar_id = $1 ORDER BY checkpoint", &[&id])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let cp_lines: Vec<&[u8]> = cps.iter().map(|l| l.as_bytes()).collect();
    let mut v = audit::CopyVerifier::new(&cp_lines, keys.as_deref());
    let rows = tx.query_raw("SELECT line FROM fleet_audit_record WHERE sidecar_id = $1 ORDER BY seq", [id]).await?;
    pin_mut!(rows);
    let mut batch: Vec<String> = Vec::with_capacity(VERIFY_STEP);
    let mut going = true;
    while let Some(r) = rows.try_next().await? {
        batch.push(r.get(0));
        if batch.len() == VERIFY_STEP {
            going = v.lines(&batch.iter().map(|l| l.as_bytes()).collect::<Vec<_>>());
            batch.clear();
            if !going {
                break;
            }
        }
    }
    if going && !batch.is_empty() {
        v.lines(&batch.iter().map(|l| l.as_bytes()).collect::<Vec<_>>());
    }
    let mut report = v.finish();
    report.warnings.extend(warnings);
    Ok(report)
}

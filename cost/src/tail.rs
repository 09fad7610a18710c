//! The follower: keeps the aggregates level with the audit log and judges the hours.
//!
//! At start it reads the log from the cursor on (so a fresh store counts the whole history
//! the log still holds); then it takes records from the log's live stream in batches. A gap
//! (a lagging receiver, records appended while a batch was applied) is read back from the log
//! itself. The cursor makes every path idempotent: a record is counted once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::Cost;

/// Records taken from the live stream per batch.
const BATCH: usize = 1_000;

/// After a record arrives, how long more may gather before the batch is applied: each batch
/// is a blocking-pool hand-off and a sled write (which wakes sled's I/O threads), so at a
/// high call rate one per group commit costs more than the counting itself. Short enough that
/// the live stream's buffer (`[audit] broadcast_capacity`, 1,024) holds what arrives
/// meanwhile at tens of thousands of records per second; beyond that the log is read back.
const GATHER: Duration = Duration::from_millis(25);

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn catch_up(cost: &Arc<Cost>) {
    let c = cost.clone();
    if let Some(Err(e)) = blocking(move || c.catch_up()).await {
        tracing::error!(error = %e, "cost: catching up with the audit log failed; retrying on the next record");
    }
}

/// Move what the live stream holds now into `batch`, up to [`BATCH`] records. A gap (the
/// receiver lagged) ends the batch; the next one then starts past it and is read back.
fn take_ready(sub: &mut broadcast::Receiver<Arc<audit::AuditRecord>>, batch: &mut Vec<Arc<audit::AuditRecord>>) {
    while batch.len() < BATCH {
        match sub.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

/// Follow the audit log until shutdown.
pub async fn follow(cost: Arc<Cost>, mut shutdown: watch::Receiver<bool>) {
    let mut sub = cost.audit.subscribe();
    catch_up(&cost).await;
    let mut tick = tokio::time::interval(Duration::from_secs(cost.settings.evaluate_every_s.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = sub.recv() => match r {
                Ok(first) => {
                    let mut batch = vec![first];
                    take_ready(&mut sub, &mut batch);
                    if batch.len() < BATCH {
                        // Not a full batch waiting: let more gather, so one hand-off and one
                        // write carry many records. A full one is applied at once, so a
                        // follower behind a busy log catches up from the stream, not the disk.
                        tokio::time::sleep(GATHER).await;
                        take_ready(&mut sub, &mut batch);
                    }
                    let contiguous = batch.first().is_some_and(|r| r.seq <= cost.cursor() + 1);
                    if !contiguous {
                        catch_up(&cost).await;
                    }
                    let c = cost.clone();
                    // The stream's records are shared, not copied: `apply` reads them in place.
                    let applied = blocking(move || c.apply(&batch)).await;
                    if let Some(Err(e)) = applied {
                        tracing::error!(error = %e, "cost: applying audit records failed; they are read back later");
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => catch_up(&cost).await,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let c = cost.clone();
                match blocking(move || c.evaluate()).await {
                    Some(Err(e)) => tracing::error!(error = %e, "cost: judging anomalies failed"),
                    Some(Ok(raised)) => for a in raised {
                        tracing::warn!(scope = a.scope.as_str(), subject = %a.subject, metric = a.metric.as_str(), value = a.value, "cost anomaly");
                    },
                    None => {}
                }
            }
            _ = shutdown.changed() => {
                let c = cost.clone();
                let _ = blocking(move || c.flush()).await;
                return;
            }
        }
    }
}

//! A held call's wait: for a human's decision or its TTL (then expired = denied), and, when
//! the waiting future is dropped first (the caller went away), the approval cancelled. The
//! flush of the new hold, the half-TTL gauge and a fail-closed answer for a waiter whose
//! sender vanished live here too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use decision::DecisionId;
use prometheus::IntGauge;
use tokio::sync::oneshot;

use super::broker::{Inner, Taken, SYSTEM};
use super::grants::GrantScope;
use super::model::{now_rfc3339, Approval, Resolution, Status};

/// Cancels the approval when the waiting future is dropped before it resolved.
struct CancelOnDrop {
    inner: Arc<Inner>,
    id: String,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            // Drop cannot await: the record is appended (durable at the next group commit) and
            // the store written without waiting for a flush.
            if let Ok(Taken { now: a, .. }) = self.inner.transition(
                &self.id,
                None,
                Status::Cancelled,
                SYSTEM,
                None,
                Some("the caller went away"),
                None,
            ) {
                self.inner.store_and_record_now(&a);
                self.inner.mirror(&a);
            }
        }
    }
}

/// Wait for a decision or expiry; runs inside [`Held`].
pub(super) async fn wait(
    inner: Arc<Inner>,
    id: String,
    mut rx: oneshot::Receiver<Resolution>,
    ttl: Duration,
) -> Resolution {
    let mut guard = CancelOnDrop { inner: inner.clone(), id: id.clone(), armed: true };
    let late = PastHalfTtl { gauge: inner.metrics.past_half_ttl.clone(), counted: AtomicBool::new(false) };
    // The pending approval is on disk now, not at sled's next periodic flush (500 ms): a
    // crash soon after the hold still leaves it to be cancelled on restart, which closes its
    // `created` record. A decision arriving meanwhile waits in `rx`.
    if let Err(e) = inner.store.flush().await {
        tracing::warn!(error = %e, approval = %id, "flushing a new hold failed; it is written at the next flush");
    }
    let expiry = async {
        tokio::time::sleep(ttl / 2).await;
        late.mark();
        tokio::time::sleep(ttl - ttl / 2).await;
    };
    let got = tokio::select! {
        r = &mut rx => r.ok(),
        _ = expiry => {
            let reason = format!("no decision within {} s", ttl.as_secs());
            inner.expire_in_fleet(&id, &reason).await;
            loop {
                match inner.transition(&id, None, Status::Expired, SYSTEM, None, Some(&reason), None) {
                    Ok(t) => break Some(inner.finish(t, None).await),
                    // Someone decided at the same moment: their resolution is on its way,
                    // unless their decision could not be made durable and was undone (then
                    // the approval is pending again and expires on the next turn).
                    Err(_) => match tokio::time::timeout(Duration::from_millis(500), &mut rx).await {
                        Ok(r) => break r.ok(),
                        Err(_) => continue,
                    },
                }
            }
        }
    };
    guard.armed = false;
    match got {
        Some(r) => r,
        None => {
            // The sender vanished without a resolution (cannot happen by construction); fail
            // closed with whatever the store says, as a non-allow.
            let mut a = inner.store.get(&id).ok().flatten().unwrap_or_else(|| placeholder(&id));
            if a.status == Status::Allowed || a.status == Status::Pending {
                a.status = Status::Cancelled;
            }
            Resolution { approval: a, grant: None }
        }
    }
}

/// Counts one waiting approval in `clawbutler_approvals_past_half_ttl` from half its TTL
/// until its wait ends, however it ends (decided, expired, or the caller gone).
struct PastHalfTtl {
    gauge: IntGauge,
    counted: AtomicBool,
}

impl PastHalfTtl {
    fn mark(&self) {
        if !self.counted.swap(true, Ordering::Relaxed) {
            self.gauge.inc();
        }
    }
}

impl Drop for PastHalfTtl {
    fn drop(&mut self) {
        if *self.counted.get_mut() {
            self.gauge.dec();
        }
    }
}

fn placeholder(id: &str) -> Approval {
    let scope = GrantScope::new("", decision::CallKind::ModelCall, "", None, None);
    Approval {
        id: id.to_string(),
        version: 0,
        status: Status::Cancelled,
        kind: decision::CallKind::ModelCall,
        agent: String::new(),
        session: None,
        trace_id: String::new(),
        decision_id: DecisionId::default(),
        subject: serde_json::Value::Null,
        risk: decision::Risk::High,
        rule: String::new(),
        reason: String::new(),
        cost_estimate_usd: None,
        created_at: now_rfc3339(),
        expires_at: now_rfc3339(),
        decided_by: Some(SYSTEM.into()),
        decided_at: Some(now_rfc3339()),
        decision: None,
        decision_reason: Some("lost".into()),
        external_id: None,
        suggested_scope: scope,
        grant_id: None,
        cautions: Vec::new(),
    }
}

//! The one place a forwarded call ends. Exactly once per call, when its response or stream
//! ends (or the call is abandoned before the upstream answered, via Drop), [`CallEnd`]:
//! prices the usage the meter read, settles the budget reservation with what was really spent,
//! reports the outcome to the agent's health (`health.rs`), and writes the call's audit record
//! (durable in the next group commit). Refused calls never
//! get here: `refuse.rs` records those.

use std::sync::Arc;

use decision::Decision;

use crate::ctx::{CallCtx, CallRequest};
use crate::meter::{Outcome, Summary};
use crate::metrics::ErrorClass;
use crate::record;
use crate::ProxyState;

/// The end of one forwarded call; see the module docs.
pub struct CallEnd {
    state: Arc<ProxyState>,
    ctx: Arc<CallCtx>,
    ev: Option<audit::AuditEvent>,
    model: String,
    upstream: String,
    /// The upstream's HTTP status; 0 until response headers arrived.
    pub status: u16,
    reservation: Option<governance::budget::Reservation>,
}

impl CallEnd {
    /// Take over the call's reservation; the record starts from its decision.
    pub fn new(state: Arc<ProxyState>, req: &mut CallRequest, d: &Decision) -> CallEnd {
        CallEnd {
            state,
            ctx: req.ctx.clone(),
            ev: Some(record::model_call_event(req, d)),
            model: req.info.model.clone(),
            upstream: req.route.upstream.name.clone(),
            status: 0,
            reservation: req.reservation.take(),
        }
    }

    /// Finish the call (later calls do nothing).
    pub fn finish(&mut self, outcome: Outcome, summary: Summary, bytes: u64) {
        let Some(mut ev) = self.ev.take() else { return };
        crate::health::report(&self.state.health, ev.agent.as_deref(), &self.upstream, self.status, &outcome);
        let failed = !(200..300).contains(&self.status);
        let cost = match &summary.usage {
            Some(u) => self.state.prices.cost(&self.model, u),
            // Failed calls are not billed; a success without usage has an unknown cost.
            None if failed || self.status == 0 => Some(0.0),
            None => None,
        };
        if let Outcome::UpstreamError(_) | Outcome::IdleTimeout = outcome {
            self.state.metrics.upstream_error(&self.upstream, ErrorClass::Stream);
        }
        if let Some(r) = self.reservation.take() {
            // What the budget is charged (None = the whole reservation): real usage when the
            // upstream reported it; nothing for refused or unreachable calls; the reservation
            // when the upstream may have worked without telling (timeouts, cut streams).
            let charge = match (&summary.usage, &outcome) {
                (Some(_), _) => Some(cost.unwrap_or(r.amount_usd())),
                (None, Outcome::UpstreamError(e)) if self.status == 0 && e != "timeout" => Some(0.0),
                (None, _) if self.status >= 300 => Some(0.0),
                (None, _) => None,
            };
            r.settle(charge);
        }
        let label = if failed && self.status != 0 && outcome == Outcome::Completed {
            audit::Outcome::UpstreamError
        } else {
            outcome.audit()
        };
        record::finish_event(&mut ev, label, summary.usage, cost, self.ctx.started.elapsed().as_secs_f64() * 1e3);
        ev.details = serde_json::json!({
            "status": self.status,
            "finish_reason": summary.finish_reason,
            "tool_calls": summary.tool_calls,
            "response_bytes": bytes,
            "upstream_ms": self.ctx.upstream_ms(),
        });
        if let Err(e) = self.state.audit.append(ev) {
            tracing::error!(error = %e, "audit append failed");
        }
    }
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled, Default::default(), 0);
    }
}

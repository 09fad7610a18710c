//! The one place a forwarded call ends. A call still running one audit group window
//! (`[audit] group_commit_ms`) after it was sent gets its `started` record then
//! ([`CallEnd::start`], durable in the next group commit, so a crash leaves "started, outcome
//! unknown"). A call that ends sooner has its end record only, in the group its start would
//! have joined: the same durability, one record (masking, sealing, index entry) fewer on the
//! busiest path. Exactly once per call, when its response or stream ends (or the call is
//! abandoned, via Drop), [`CallEnd::finish`]: prices the usage the meter read, settles the
//! budget reservation with what the call is charged, reports the outcome to the agent's health
//! (`health.rs`), and writes the call's end record with
//! that charge (`charged_usd`) and its reason, so budget spend can be reconciled from the log.
//! Refused calls never get here: `refuse.rs` records those.
//!
//! What a call is charged (docs/budgets.md has the table):
//! - the real cost when the upstream's final usage report was read, even above the
//!   reservation: the breaker opens on what was spent;
//! - nothing when the upstream refused (4xx/5xx), could not be reached, or the client left a
//!   streamed call before the upstream answered (the connection closes, so generation stops);
//! - otherwise the cost is unknown (timeout, stream cut before the final usage, a reply the
//!   decoder could not read, a non-streamed call whose client left and whose background wait
//!   failed): the reservation, or the partial usage's cost when that is higher.

use std::sync::Arc;

use decision::Decision;
use governance::budget::Charge;

use crate::ctx::{CallCtx, CallRequest};
use crate::meter::{Outcome, Summary};
use crate::metrics::ErrorClass;
use crate::record;
use crate::ProxyState;

/// Why a call was charged what it was: the audit record's `details.charge`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeBasis {
    /// The real cost from the upstream's final usage report.
    Cost,
    /// The upstream answered with an error status: not billed.
    UpstreamRefused,
    /// The upstream could not be reached: nothing was sent.
    Unreachable,
    /// The client left a streamed call before the upstream answered.
    CancelledBeforeAnswer,
    /// The cost is unknown: the whole reservation.
    Reservation,
    /// The cost is unknown but the usage read so far already costs more than the reservation.
    PartialUsage,
}

impl ChargeBasis {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChargeBasis::Cost => "cost",
            ChargeBasis::UpstreamRefused => "none_upstream_refused",
            ChargeBasis::Unreachable => "none_upstream_unreachable",
            ChargeBasis::CancelledBeforeAnswer => "none_cancelled_before_answer",
            ChargeBasis::Reservation => "reservation_cost_unknown",
            ChargeBasis::PartialUsage => "partial_usage_cost_unknown",
        }
    }
}

/// The end of one forwarded call; see the module docs.
pub struct CallEnd {
    state: Arc<ProxyState>,
    ctx: Arc<CallCtx>,
    ev: Option<audit::AuditEvent>,
    model: String,
    upstream: String,
    /// The upstream's HTTP status; 0 until response headers arrived.
    pub status: u16,
    /// The client left before the upstream answered and the call is being finished in the
    /// background (non-streamed calls: the upstream bills them whether anyone listens).
    pub client_gone: bool,
    reservation: Option<governance::budget::Reservation>,
    stream: bool,
    /// Server tool calls billed whatever the reply says (`web_search_options`).
    server_tool_floor: u64,
    extra: serde_json::Map<String, serde_json::Value>,
    /// The `started` record was written (or tried).
    started: bool,
}

impl CallEnd {
    /// Take over the call's reservation; the record starts from its decision.
    pub fn new(state: Arc<ProxyState>, req: &mut CallRequest, d: &Decision) -> CallEnd {
        // Sized for the end record's details too (up to ten more fields, `finish`): the map's
        // table is built once, not regrown and rehashed on the way.
        let mut extra = serde_json::Map::with_capacity(12);
        if let Some(e) = req.estimate_usd {
            extra.insert("estimate_usd".into(), e.into());
        }
        let unbounded: Vec<&str> = req.info.features.unbounded.iter().map(|u| u.as_str()).collect();
        if !unbounded.is_empty() {
            extra.insert("unbounded".into(), unbounded.into());
        }
        CallEnd {
            state,
            ctx: req.ctx.clone(),
            ev: Some(record::model_call_event(req, d)),
            model: req.info.model.clone(),
            upstream: req.route.upstream.name.clone(),
            status: 0,
            client_gone: false,
            reservation: req.reservation.take(),
            stream: req.info.stream,
            server_tool_floor: req.info.features.server_tool_floor,
            extra,
            started: false,
        }
    }

    /// Write the call's `started` record, once (one append, no fsync: durable at the next
    /// group commit). The end record, whatever the end, closes it. Called when the call is
    /// still running a group window after it was sent; by then it is on its way, so a log
    /// that refuses the record is logged (and counted by the log), and the end record still
    /// follows. Whether the log could take records at all was checked before sending
    /// ([`crate::refuse::audit_open`]).
    pub fn start(&mut self) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let Some(ev) = &self.ev else { return };
        let mut start = ev.clone();
        start.outcome = Some(audit::Outcome::Started);
        let mut details = self.extra.clone();
        if let Some(r) = &self.reservation {
            details.insert("reserved_usd".into(), r.amount_usd().into());
        }
        start.details = serde_json::Value::Object(details);
        if let Err(e) = self.state.audit.append(start) {
            tracing::error!(error = %e, "audit append of a started record failed");
        }
    }

    /// Whether the `started` record was written (or tried).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// The call was never sent (the audit log could not take its records): release its
    /// reservation, charging nothing, and write no end record.
    pub fn unsent(&mut self) {
        self.ev = None;
        if let Some(r) = self.reservation.take() {
            r.settle(Charge::Usd(0.0));
        }
    }

    /// What the call costs as far as is known, and what to charge for it.
    fn price(&self, outcome: &Outcome, summary: &Summary) -> (Option<f64>, Option<audit::Usage>, ChargeBasis) {
        let mut usage = summary.usage.clone();
        if (200..300).contains(&self.status) {
            if let Some(u) = usage.as_mut() {
                u.server_tool_calls = u.server_tool_calls.max(self.server_tool_floor);
            }
        }
        let known = summary.usage_final && summary.undecoded.is_none();
        let priced = usage.as_ref().and_then(|u| self.state.prices.cost(&self.model, u));
        match (known, outcome) {
            (true, _) if priced.is_some() => (priced, usage, ChargeBasis::Cost),
            _ if self.status >= 300 => (Some(0.0), usage, ChargeBasis::UpstreamRefused),
            (_, Outcome::UpstreamError(e)) if self.status == 0 && e != "timeout" => {
                (Some(0.0), usage, ChargeBasis::Unreachable)
            }
            (_, Outcome::Cancelled) if self.status == 0 && self.stream => {
                (None, usage, ChargeBasis::CancelledBeforeAnswer)
            }
            _ => {
                let over = match (&self.reservation, priced) {
                    (Some(r), Some(p)) => p > r.amount_usd(),
                    _ => false,
                };
                (None, usage, if over { ChargeBasis::PartialUsage } else { ChargeBasis::Reservation })
            }
        }
    }

    /// Finish the call (later calls do nothing).
    pub fn finish(&mut self, outcome: Outcome, summary: Summary, bytes: u64) {
        let Some(mut ev) = self.ev.take() else { return };
        crate::health::report(&self.state.health, ev.agent.as_deref(), &self.upstream, self.status, &outcome);
        let (cost, usage, basis) = self.price(&outcome, &summary);
        if let Outcome::UpstreamError(_) | Outcome::IdleTimeout = outcome {
            if self.status != 0 {
                self.state.metrics.upstream_error(&self.upstream, ErrorClass::Stream);
            }
        }
        if let Some(reason) = summary.undecoded {
            self.state.metrics.undecoded.with_label_values(&[reason]).inc();
        }
        if summary.usage_invalid.is_some() {
            self.state.metrics.undecoded.with_label_values(&["invalid_usage"]).inc();
        }
        let charged = self.reservation.take().map(|r| {
            let reserved = r.amount_usd();
            let charge = match basis {
                ChargeBasis::Cost => Charge::Usd(cost.unwrap_or(reserved)),
                ChargeBasis::UpstreamRefused | ChargeBasis::Unreachable | ChargeBasis::CancelledBeforeAnswer => {
                    Charge::Usd(0.0)
                }
                ChargeBasis::Reservation => Charge::Reserved,
                ChargeBasis::PartialUsage => {
                    Charge::Usd(usage.as_ref().and_then(|u| self.state.prices.cost(&self.model, u)).unwrap_or(reserved))
                }
            };
            let span = self
                .ctx
                .trace
                .child("budget.settle", || vec![telemetry::Attr::new("clawbutler.budget.reserved_usd", reserved)]);
            let charged = r.settle(charge);
            span.set(|| telemetry::Attr::new("clawbutler.budget.charged_usd", charged));
            span.end();
            (charged, reserved)
        });
        let failed = self.status != 0 && !(200..300).contains(&self.status);
        let label = if self.client_gone {
            audit::Outcome::Cancelled
        } else if failed && outcome == Outcome::Completed {
            audit::Outcome::UpstreamError
        } else {
            outcome.audit()
        };
        let partial = usage.is_some() && !summary.usage_final;
        let latency_ms = self.ctx.started.elapsed().as_secs_f64() * 1e3;
        let (state, ctx, status, client_gone) = (self.state.clone(), self.ctx.clone(), self.status, self.client_gone);
        let mut details = std::mem::take(&mut self.extra);
        // The money is settled above, before the reply's last bytes go out; the record (its
        // details, masking, the hand-off to the writer) is built once they have: it is
        // durable at the next group commit either way.
        listener::after_reply(move || {
            record::finish_event(&mut ev, label, usage, cost, latency_ms);
            details.insert("status".into(), status.into());
            details.insert("finish_reason".into(), summary.finish_reason.into());
            details.insert("tool_calls".into(), summary.tool_calls.into());
            details.insert("response_bytes".into(), bytes.into());
            details.insert("upstream_ms".into(), ctx.upstream_ms().into());
            if let Some((charged, reserved)) = charged {
                ev.charged_usd = Some(charged);
                details.insert("charge".into(), basis.as_str().into());
                details.insert("reserved_usd".into(), reserved.into());
            }
            if partial {
                details.insert("usage_partial".into(), true.into());
            }
            if let Some(raw) = summary.usage_invalid {
                details.insert("usage_invalid".into(), raw);
            }
            if let Some(reason) = summary.undecoded {
                details.insert("undecoded".into(), reason.into());
            }
            if client_gone {
                details.insert("client_gone_before_answer".into(), true.into());
            }
            ev.details = serde_json::Value::Object(details);
            // Looked up at the end, not the start: the gateway's event for the run has had the
            // whole call to arrive.
            record::stamp_run(&state.runs, &mut ev);
            trace_end(&ctx, &ev);
            if let Err(e) = state.audit.append(ev) {
                tracing::error!(error = %e, "audit append failed");
            }
        });
    }
}

/// The call's root span ends with the call: token usage (GenAI semantic conventions), charge
/// and outcome.
fn trace_end(ctx: &CallCtx, ev: &audit::AuditEvent) {
    let t = &ctx.trace;
    if let Some(u) = &ev.usage {
        t.set(|| telemetry::Attr::new("gen_ai.usage.input_tokens", u.input_tokens as i64));
        t.set(|| telemetry::Attr::new("gen_ai.usage.output_tokens", u.output_tokens as i64));
    }
    if let Some(c) = ev.charged_usd {
        t.set(|| telemetry::Attr::new("clawbutler.charged_usd", c));
    }
    if let Some(o) = &ev.outcome {
        t.set(|| telemetry::Attr::new("clawbutler.outcome", o.as_str()));
    }
    t.end();
}

impl crate::meter::Hooks for CallEnd {
    fn still_running(&mut self) {
        self.start();
    }
    fn finished(mut self: Box<Self>, f: crate::meter::Finished) {
        self.finish(f.outcome, f.summary, f.bytes);
    }
}

impl Drop for CallEnd {
    fn drop(&mut self) {
        self.finish(Outcome::Cancelled, Default::default(), 0);
    }
}

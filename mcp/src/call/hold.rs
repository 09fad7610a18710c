//! A held tool call waits in the same approval broker as held model calls and exec
//! approvals (same inbox, UI, grants, expiry). The approval is bound to the agent, the
//! server and tool, the SHA-256 of the exact arguments and the bundle revision; the call
//! that goes ahead after approval carries those very arguments (kept in memory, never
//! re-read from the client). "Allow always" suggests a grant for exactly this tool
//! (`<server>/<tool>`) and these arguments.
//!
//! The answer switches to an event stream at once (keepalive comments every
//! `sse_keepalive_s`) and the hold is answered before the client's own request timeout:
//! at `client_timeout_s - hold_answer_margin_s` a hold still pending is closed (expired)
//! and the model reads "not decided in time; ask again". A client `notifications/cancelled`
//! or a client that goes away withdraws the approval (cancelled). What will certainly refuse
//! the call after approval (a kill, a budget it cannot fit) refuses it before anyone is
//! asked; what may (a budget nearly spent) is shown on the approval as a caution.

use std::sync::Arc;

use decision::{Action, Decision, Risk};
use governance::approvals::{Caution, HoldRequest, Status};
use governance::budget::{CallScope, Outlook};
use http::{HeaderName, HeaderValue};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{canonical_args, Call};
use crate::session::Session;
use crate::sse::Out;
use crate::State;

/// How a hold ended.
pub(crate) enum End {
    /// Approved (the approval id); the decision now says allow.
    Approved(String),
    /// Refused, with the decision to record (and the approval id when one was created).
    Refused(Box<Decision>, Option<String>),
    /// The client cancelled or went away; nothing is sent back.
    Cancelled(String),
}

fn refused(d: &Decision, rule: &str, reason: String, risk: Risk) -> Decision {
    Decision { action: Action::Deny, rule: rule.to_string(), reason, risk, ..d.clone() }
}

pub(crate) async fn hold(
    st: &Arc<State>,
    sess: &Arc<Session>,
    call: &Call,
    d: &mut Decision,
    out: &mpsc::Sender<Out>,
    cancel: &CancellationToken,
) -> End {
    let scope = CallScope::tool(&sess.agent, call.server.name());
    if let Some(why) = st.parts.kill.blocked(&sess.agent) {
        return End::Refused(Box::new(refused(d, "kill_switch", why, Risk::High)), None);
    }
    let cautions = match st.parts.budgets.outlook(&scope, Some(call.cost.unwrap_or(0.0))) {
        Outlook::Clear | Outlook::Unpriced => Vec::new(),
        Outlook::MayRefuse(c) => c.iter().map(Caution::budget).collect(),
        Outlook::Refused(r) => {
            return End::Refused(
                Box::new(refused(d, &format!("budget.{}", r.budget_id), r.message(), Risk::Medium)),
                None,
            );
        }
    };
    let external = format!("mcp:{}:{}", sess.id, call.key);
    let req = HoldRequest {
        kind: decision::CallKind::ToolCall,
        agent: sess.agent.clone(),
        session: Some(sess.id.clone()),
        trace_id: call.trace_id.clone(),
        decision: d.clone(),
        subject: json!({
            "server": call.server.name(),
            "tool": call.tool,
            "exposed": call.exposed,
            "args": call.args,
            "args_sha256": call.args_sha256,
            "bundle_revision": d.bundle_revision,
            "mcp_session": sess.id,
        }),
        cost_estimate_usd: call.cost,
        external_id: Some(external.clone()),
        grant_pattern: format!("{}/{}", call.server.name(), call.tool),
        grant_args: Some(canonical_args(&call.args)),
        cautions,
    };
    let mut held = match st.parts.broker.hold(req) {
        Ok(h) => h,
        Err(e) => {
            let reason = format!("no_approver: {} (the approval could not be created: {e})", d.reason);
            return End::Refused(Box::new(refused(d, &d.rule.clone(), reason, d.risk)), None);
        }
    };
    let approval = held.approval().id.clone();
    let mut headers = Vec::new();
    if let Ok(v) = HeaderValue::from_str(d.id.as_str()) {
        headers.push((HeaderName::from_static("x-clawbutler-decision-id"), v));
    }
    if let Ok(v) = HeaderValue::from_str(&approval) {
        headers.push((HeaderName::from_static("x-clawbutler-approval-id"), v));
    }
    let _ = out.send(Out::Start(headers)).await;
    let answer_after = st.settings.hold_answer_after();
    let close = |status: Status, why: String| {
        let broker = st.parts.broker.clone();
        let external = external.clone();
        async move {
            if let Err(e) = broker.close_external(&external, status, Some(&why), "system").await {
                tracing::error!(error = %e, "closing a held MCP call's approval failed");
            }
        }
    };
    tokio::select! {
        res = &mut held => {
            let killed = res.is_allowed().then(|| st.parts.kill.blocked(&sess.agent)).flatten();
            if let Some(why) = killed {
                let reason = format!("{why} (it was stopped while the call waited; {})", res.message());
                return End::Refused(Box::new(refused(d, "kill_switch", reason, Risk::High)), Some(approval));
            }
            if res.is_allowed() {
                d.action = Action::Allow;
                d.reason = format!("{}; held because: {}", res.message(), d.reason);
                End::Approved(approval)
            } else {
                let reason = format!("{}; held because: {}", res.message(), d.reason);
                End::Refused(Box::new(Decision { action: Action::Deny, reason, ..d.clone() }), Some(approval))
            }
        }
        _ = tokio::time::sleep(answer_after) => {
            let secs = st.settings.client_timeout_s;
            close(Status::Expired, format!("not decided before the MCP client's request timeout ({secs} s)")).await;
            let reason = format!(
                "approval {approval} was not decided within {} s, before the client would stop waiting; ask again later \
                 (held because: {})",
                answer_after.as_secs(),
                d.reason
            );
            End::Refused(Box::new(Decision { action: Action::Deny, reason, ..d.clone() }), Some(approval))
        }
        _ = cancel.cancelled() => {
            close(Status::Cancelled, "the client cancelled the call (notifications/cancelled)".into()).await;
            End::Cancelled(approval)
        }
        _ = out.closed() => {
            close(Status::Cancelled, "the client went away while the call was held".into()).await;
            End::Cancelled(approval)
        }
    }
}

//! Audit gate: nothing is decided that cannot be recorded. While the audit log cannot write
//! (a full disk, an I/O error; see `docs/audit.md`, "When the disk refuses writes"), a call is
//! refused here with 503 + `Retry-After` in the caller's own error format, before the kill
//! switch, the policy, a hold or a budget reservation, so nothing reaches the upstream and no
//! approval is created that could not be recorded. Calls already held stay held (approvals
//! decided during the outage are refused to the approver). With `[audit] on_failure =
//! "continue_unaudited"` the call goes on, counted and logged by the audit log.
//!
//! The check is one atomic load while the log is healthy.

use std::sync::Arc;

use super::{BoxFut, Next};
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::refuse::unrecorded;
use crate::ProxyState;

/// The gate step: refuse the call while the audit log cannot record it, else pass it on.
pub fn step(state: Arc<ProxyState>, req: CallRequest, next: Next) -> BoxFut<ProxyError> {
    match state.audit.admit(audit::Face::Model) {
        Ok(admission) => {
            let _ = req.ctx.admission.set(admission);
            next.call(req)
        }
        Err(u) => {
            let err = unrecorded(&req, &u);
            Box::pin(async move { Err(err) })
        }
    }
}

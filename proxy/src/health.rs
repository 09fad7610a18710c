//! How a forwarded call's end counts for its agent's health (`governance::health`): success,
//! or which kind of failure. Called once per call from `finish.rs`; the tracker's side is a
//! sharded-map read and one compare-and-swap. Calls the client abandoned before an error
//! showed are no outcome (the agent did not fail, its caller left); refusals never get here.

use governance::health::CallFailure;

use crate::meter::Outcome;

/// The health outcome of a call that ended with upstream `status` (0 = no response headers).
pub fn classify(status: u16, outcome: &Outcome) -> Option<Result<(), CallFailure>> {
    if status != 0 && !(200..300).contains(&status) {
        return Some(Err(CallFailure::Status(status)));
    }
    match outcome {
        Outcome::Completed if status != 0 => Some(Ok(())),
        Outcome::Completed | Outcome::Cancelled => None,
        Outcome::UpstreamError(e) if status == 0 && e == "timeout" => Some(Err(CallFailure::Timeout)),
        Outcome::UpstreamError(_) if status == 0 => Some(Err(CallFailure::Unreachable)),
        Outcome::UpstreamError(_) => Some(Err(CallFailure::StreamCut)),
        Outcome::IdleTimeout => Some(Err(CallFailure::StreamIdle)),
    }
}

/// Report a finished call of `agent` through `upstream`.
pub fn report(
    tracker: &governance::HealthTracker,
    agent: Option<&str>,
    upstream: &str,
    status: u16,
    outcome: &Outcome,
) {
    if let (Some(agent), Some(result)) = (agent, classify(status, outcome)) {
        tracker.record_call(agent, upstream, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classified() {
        assert_eq!(classify(200, &Outcome::Completed), Some(Ok(())));
        assert_eq!(classify(500, &Outcome::Completed), Some(Err(CallFailure::Status(500))));
        assert_eq!(classify(429, &Outcome::Cancelled), Some(Err(CallFailure::Status(429))));
        assert_eq!(classify(0, &Outcome::UpstreamError("timeout".into())), Some(Err(CallFailure::Timeout)));
        assert_eq!(
            classify(0, &Outcome::UpstreamError("connection refused".into())),
            Some(Err(CallFailure::Unreachable))
        );
        assert_eq!(classify(200, &Outcome::UpstreamError("cut".into())), Some(Err(CallFailure::StreamCut)));
        assert_eq!(classify(200, &Outcome::IdleTimeout), Some(Err(CallFailure::StreamIdle)));
        assert_eq!(classify(200, &Outcome::Cancelled), None, "the client left: no outcome");
        assert_eq!(classify(0, &Outcome::Cancelled), None);
    }
}

//! What the gateway's events tell the health tracker (`governance::health`): how each run
//! ended (`agent` lifecycle `end` / `error`, `chat` `error`) and how each tool call ended
//! (`agent` `item` events of kind `tool`, exec included). Aborts are not failures (a kill or
//! a user's stop), and neither is a tool call that was refused (`denied`): that is a policy or
//! a human working, not the agent failing. The link's own state (down, roster) is fed from
//! `lib.rs`.

use governance::HealthTracker;
use serde_json::Value;

use super::frame::Event;

fn text<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Feed one `agent` or `chat` event.
pub(crate) fn feed(tracker: &HealthTracker, e: &Event) {
    let p = &e.payload;
    let Some(agent) = text(p, "agentId") else { return };
    let data = p.get("data").unwrap_or(&Value::Null);
    match (e.event.as_str(), text(p, "stream")) {
        ("agent", Some("lifecycle")) => {
            let aborted = data.get("aborted").and_then(Value::as_bool).unwrap_or(false);
            match text(data, "phase") {
                _ if aborted => tracker.touch(agent),
                Some("end") if text(data, "status") == Some("error") => {
                    tracker.run_ended(agent, Some(text(data, "error").unwrap_or("the run ended with an error")))
                }
                Some("end") => tracker.run_ended(agent, None),
                Some("error") => tracker.run_ended(agent, Some(text(data, "error").unwrap_or("error"))),
                _ => tracker.touch(agent),
            }
        }
        ("agent", Some("item")) if text(data, "kind") == Some("tool") && text(data, "phase") == Some("end") => {
            let name = text(data, "name").unwrap_or("tool");
            match text(data, "status") {
                Some("failed") => {
                    let why = match data.get("error") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Null) | None => "failed".to_string(),
                        Some(other) => other.to_string(),
                    };
                    if why.to_ascii_lowercase().contains("denied") {
                        tracker.touch(agent);
                    } else {
                        let why: String = why.chars().take(200).collect();
                        tracker.record_tool(agent, Err(format!("tool {name} failed: {why}")));
                    }
                }
                _ => tracker.record_tool(agent, Ok(())),
            }
        }
        ("chat", _) if text(p, "state") == Some("error") => {
            let why = text(p, "errorMessage").or_else(|| text(p, "errorKind")).unwrap_or("chat error");
            tracker.run_ended(agent, Some(why));
        }
        _ => tracker.touch(agent),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use governance::agents::Health;
    use serde_json::json;

    use super::*;

    fn ev(event: &str, payload: Value) -> Event {
        Event { event: event.into(), payload, seq: Some(1) }
    }

    fn agent(stream: &str, data: Value) -> Event {
        ev("agent", json!({"agentId": "main", "runId": "r1", "stream": stream, "data": data}))
    }

    #[test]
    fn run_and_tool_outcomes_drive_health() {
        let dir = tempfile::tempdir().unwrap();
        let db = storage::Store::open(&dir.path().join("state")).unwrap();
        let reg = prometheus::Registry::new();
        let audit = Arc::new(audit::AuditLog::open(&dir.path().join("audit"), &Default::default(), &db, &reg).unwrap());
        let t = HealthTracker::new(audit, &reg).unwrap();
        let health = |t: &HealthTracker| t.view("main").unwrap().health;

        feed(&t, &agent("lifecycle", json!({"phase": "start"})));
        assert_eq!(health(&t), Health::Healthy);
        feed(&t, &agent("lifecycle", json!({"phase": "error", "error": "provider 500", "aborted": false})));
        assert_eq!(health(&t), Health::Degraded);
        assert!(t.view("main").unwrap().reason.unwrap().contains("provider 500"));
        feed(&t, &agent("lifecycle", json!({"phase": "end", "aborted": false, "stopReason": "stop"})));
        assert_eq!(health(&t), Health::Healthy);
        // Aborts are not failures; neither are refused tools.
        feed(
            &t,
            &agent("lifecycle", json!({"phase": "error", "error": "This operation was aborted", "aborted": true})),
        );
        for _ in 0..3 {
            let denied = json!({"kind": "tool", "phase": "end", "name": "exec", "status": "failed",
                                "error": "Exec denied (gateway id=x, user-denied): rm -rf /"});
            feed(&t, &agent("item", denied));
        }
        assert_eq!(health(&t), Health::Healthy);
        for _ in 0..3 {
            let failed =
                json!({"kind": "tool", "phase": "end", "name": "exec", "status": "failed", "error": "exit code 127"});
            feed(&t, &agent("item", failed));
        }
        assert_eq!(health(&t), Health::Degraded);
        assert!(t.view("main").unwrap().reason.unwrap().contains("tool exec failed: exit code 127"));
        for _ in 0..3 {
            feed(&t, &agent("item", json!({"kind": "tool", "phase": "end", "name": "exec", "status": "completed"})));
        }
        assert_eq!(health(&t), Health::Healthy);
        feed(&t, &ev("chat", json!({"agentId": "main", "state": "error", "errorMessage": "context overflow"})));
        assert_eq!(health(&t), Health::Degraded);
    }
}

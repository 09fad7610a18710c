//! Feeds the run index (`governance::runs`) from the link's `agent` events: each carries the
//! run's `sessionKey`, its `sessionId` (what a model call's `session_id` header names, with
//! `compat.sendSessionAffinityHeaders`) and, on the run's lifecycle start, `isHeartbeat`.
//! The data path then records a call of that session with its session key and task type.

use governance::RunIndex;
use serde_json::Value;

use super::frame::Event;

/// Note the session of one `agent` event; other events and events without both ids are
/// ignored.
pub(crate) fn feed(runs: &RunIndex, e: &Event) {
    if e.event != "agent" {
        return;
    }
    let p = &e.payload;
    let (Some(id), Some(key)) =
        (p.get("sessionId").and_then(Value::as_str), p.get("sessionKey").and_then(Value::as_str))
    else {
        return;
    };
    let start = p.get("stream").and_then(Value::as_str) == Some("lifecycle")
        && p.pointer("/data/phase").and_then(Value::as_str) == Some("start");
    let heartbeat = p.get("isHeartbeat").and_then(Value::as_bool) == Some(true);
    runs.note_session(id, key, heartbeat, start);
}

#[cfg(test)]
mod tests {
    use super::*;
    use decision::TaskType;
    use serde_json::json;

    fn ev(event: &str, payload: Value) -> Event {
        Event { event: event.into(), payload, seq: Some(1) }
    }

    fn start(id: &str, key: &str, heartbeat: Option<bool>) -> Event {
        let mut p = json!({"runId": "r", "agentId": "main", "sessionKey": key, "sessionId": id,
                           "stream": "lifecycle", "data": {"phase": "start"}, "seq": 1, "ts": 1});
        if let Some(h) = heartbeat {
            p["isHeartbeat"] = h.into();
        }
        ev("agent", p)
    }

    #[test]
    fn agent_events_map_session_ids_to_task_types() {
        let runs = RunIndex::default();
        feed(&runs, &start("s-main", "agent:main:main", None));
        feed(&runs, &start("s-sub", "agent:main:subagent:3c1e", None));
        feed(&runs, &start("s-hb", "agent:ops:main", Some(true)));
        // A delta without the flag does not undo the heartbeat.
        feed(
            &runs,
            &ev(
                "agent",
                json!({"sessionKey": "agent:ops:main", "sessionId": "s-hb",
                                          "stream": "assistant", "data": {"delta": "x"}}),
            ),
        );
        let task = |s: &str| runs.resolve("no-trace", Some(s)).map(|r| r.task);
        assert_eq!(task("s-main"), Some(TaskType::Interactive));
        assert_eq!(task("s-sub"), Some(TaskType::Subagent));
        assert_eq!(task("s-hb"), Some(TaskType::Heartbeat));
        // chat events, events without a session id, and unknown sessions: nothing.
        feed(&runs, &ev("chat", json!({"sessionKey": "agent:main:main", "sessionId": "s-chat"})));
        feed(&runs, &ev("agent", json!({"sessionKey": "agent:main:main", "stream": "lifecycle"})));
        assert_eq!(task("s-chat"), None);
        assert_eq!(runs.sizes().1, 3);
    }
}

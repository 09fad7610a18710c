//! What the link knows of each agent: identity from `agents.list` (re-read on connect and on
//! `config.changed`), activity and run outcomes from `agent` events. Health is derived when
//! asked, so it cannot go stale: offline while the link is down or after 3 failed runs in a
//! row, degraded after 1-2, healthy otherwise.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use governance::agents::{AgentSummary, Health};
use serde_json::Value;

use super::frame::Event;

/// Consecutive failed runs after which an agent counts as offline.
pub const OFFLINE_AFTER_FAILURES: u32 = 3;

#[derive(Debug, Clone, Default)]
struct AgentState {
    name: String,
    model: Option<String>,
    workspace: Option<String>,
    last_activity_ms: Option<i64>,
    /// runId -> sessionKey of runs in flight.
    active: HashMap<String, String>,
    failures: u32,
}

/// The agent registry; see the module docs.
#[derive(Default)]
pub struct Registry {
    agents: RwLock<BTreeMap<String, AgentState>>,
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl Registry {
    /// Replace the roster with an `agents.list` payload; activity of agents still present is kept.
    pub fn replace(&self, payload: &Value) {
        let rows = payload.get("agents").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut map = self.agents.write().unwrap_or_else(|p| p.into_inner());
        let mut next = BTreeMap::new();
        for row in rows {
            let Some(id) = row.get("id").and_then(Value::as_str) else { continue };
            let mut st = map.remove(id).unwrap_or_default();
            st.name = row.get("name").and_then(Value::as_str).unwrap_or(id).to_string();
            st.model = match row.get("model") {
                Some(Value::String(m)) => Some(m.clone()),
                Some(m) => m.get("primary").and_then(Value::as_str).map(str::to_string),
                None => None,
            };
            st.workspace = row.get("workspace").and_then(Value::as_str).map(str::to_string);
            next.insert(id.to_string(), st);
        }
        *map = next;
    }

    /// Track activity and run outcomes from an `agent` or `chat` event.
    pub fn on_event(&self, e: &Event) {
        if e.event != "agent" && e.event != "chat" {
            return;
        }
        let p = &e.payload;
        let Some(agent) = p.get("agentId").and_then(Value::as_str) else { return };
        let mut map = self.agents.write().unwrap_or_else(|p| p.into_inner());
        let st = map
            .entry(agent.to_string())
            .or_insert_with(|| AgentState { name: agent.to_string(), ..Default::default() });
        let ts = p.get("ts").and_then(Value::as_i64).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        st.last_activity_ms = Some(st.last_activity_ms.map_or(ts, |t| t.max(ts)));
        if e.event != "agent" || p.get("stream").and_then(Value::as_str) != Some("lifecycle") {
            return;
        }
        let run = p.get("runId").and_then(Value::as_str).unwrap_or_default().to_string();
        let data = p.get("data").cloned().unwrap_or(Value::Null);
        let aborted = data.get("aborted").and_then(Value::as_bool).unwrap_or(false);
        match data.get("phase").and_then(Value::as_str) {
            Some("start") => {
                let session = p.get("sessionKey").and_then(Value::as_str).unwrap_or_default().to_string();
                st.active.insert(run, session);
            }
            Some("end") => {
                st.active.remove(&run);
                if !aborted {
                    st.failures = 0;
                }
            }
            Some("error") => {
                st.active.remove(&run);
                // An abort (kill, user stop) is not the agent failing.
                if !aborted {
                    st.failures = st.failures.saturating_add(1);
                }
            }
            _ => {}
        }
    }

    /// Forget runs in flight (the link dropped: their end events may never arrive).
    pub fn clear_runs(&self) {
        let mut map = self.agents.write().unwrap_or_else(|p| p.into_inner());
        for st in map.values_mut() {
            st.active.clear();
        }
    }

    /// Known agent ids.
    pub fn ids(&self) -> Vec<String> {
        self.agents.read().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    /// (runId, sessionKey) of the agent's runs in flight.
    pub fn active_runs(&self, id: &str) -> Vec<(String, String)> {
        let map = self.agents.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).map(|s| s.active.iter().map(|(r, k)| (r.clone(), k.clone())).collect()).unwrap_or_default()
    }

    /// Summaries; `link_up` false makes every agent offline.
    pub fn summaries(&self, link_up: bool, pending: &dyn Fn(&str) -> usize) -> Vec<AgentSummary> {
        let map = self.agents.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, st)| summary(id, st, link_up, pending(id))).collect()
    }

    /// One summary.
    pub fn get(&self, id: &str, link_up: bool, pending: usize) -> Option<AgentSummary> {
        let map = self.agents.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).map(|st| summary(id, st, link_up, pending))
    }
}

fn summary(id: &str, st: &AgentState, link_up: bool, pending: usize) -> AgentSummary {
    let health = if !link_up || st.failures >= OFFLINE_AFTER_FAILURES {
        Health::Offline
    } else if st.failures > 0 {
        Health::Degraded
    } else {
        Health::Healthy
    };
    AgentSummary {
        id: id.to_string(),
        name: st.name.clone(),
        health,
        last_activity: st.last_activity_ms.and_then(rfc3339),
        model: st.model.clone(),
        workspace: st.workspace.clone(),
        active_runs: st.active.len(),
        pending_approvals: pending,
        spend_usd: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn life(run: &str, data: Value) -> Event {
        Event {
            event: "agent".into(),
            payload: json!({"runId": run, "agentId": "main", "sessionKey": "agent:main:main", "stream": "lifecycle", "data": data, "ts": 1795473628766i64}),
            seq: Some(1),
        }
    }

    #[test]
    fn roster_activity_and_health() {
        let r = Registry::default();
        r.replace(&json!({"agents": [
            {"id": "main", "name": "Main", "workspace": "/w", "model": {"primary": "cb-main/gpt"}},
            {"id": "ops", "model": "cb-ops/x"}
        ]}));
        let all = r.summaries(true, &|_| 0);
        assert_eq!(all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["main", "ops"]);
        assert_eq!(all[0].model.as_deref(), Some("cb-main/gpt"));
        assert_eq!(all[1].name, "ops");
        assert!(all.iter().all(|a| a.health == Health::Healthy && a.last_activity.is_none()));

        r.on_event(&life("r1", json!({"phase": "start"})));
        assert_eq!(r.active_runs("main"), vec![("r1".to_string(), "agent:main:main".to_string())]);
        r.on_event(&life("r1", json!({"phase": "error", "aborted": false})));
        assert_eq!(r.get("main", true, 0).unwrap().health, Health::Degraded);
        for run in ["r2", "r3"] {
            r.on_event(&life(run, json!({"phase": "error"})));
        }
        assert_eq!(r.get("main", true, 0).unwrap().health, Health::Offline);
        r.on_event(&life("r4", json!({"phase": "end", "aborted": false})));
        let m = r.get("main", true, 2).unwrap();
        assert_eq!((m.health, m.pending_approvals, m.active_runs), (Health::Healthy, 2, 0));
        assert_eq!(m.last_activity.as_deref(), Some("2026-11-23T22:40:28.766Z"));
        // Aborts do not count as failures.
        r.on_event(&life("r5", json!({"phase": "error", "aborted": true})));
        assert_eq!(r.get("main", true, 0).unwrap().health, Health::Healthy);
        assert_eq!(r.get("main", false, 0).unwrap().health, Health::Offline, "link down = offline");
        // A roster re-read keeps activity.
        r.replace(&json!({"agents": [{"id": "main"}]}));
        assert!(r.get("main", true, 0).unwrap().last_activity.is_some());
        assert!(r.get("ops", true, 0).is_none());
    }
}

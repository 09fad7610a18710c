//! What the link knows of each agent: identity from `agents.list` (re-read on connect and on
//! `config.changed`), activity and runs in flight from `agent` events. Health is not kept
//! here: the health tracker (`governance::health`, fed by `health.rs`, the link and the data
//! path) owns it, and summaries take it from there.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use governance::agents::{AgentSummary, Health};
use governance::health::HealthView;
use serde_json::Value;

use super::frame::Event;

#[derive(Debug, Clone, Default)]
struct AgentState {
    name: String,
    model: Option<String>,
    workspace: Option<String>,
    last_activity_ms: Option<i64>,
    /// runId -> sessionKey of runs in flight.
    active: HashMap<String, String>,
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

    /// Track activity and runs in flight from an `agent` or `chat` event.
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
        match p.pointer("/data/phase").and_then(Value::as_str) {
            Some("start") => {
                let session = p.get("sessionKey").and_then(Value::as_str).unwrap_or_default().to_string();
                st.active.insert(run, session);
            }
            Some("end") | Some("error") => {
                st.active.remove(&run);
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

    /// Summaries, with each agent's pending exec approvals and health.
    pub fn summaries(
        &self,
        pending: &dyn Fn(&str) -> usize,
        health: &dyn Fn(&str) -> Option<HealthView>,
    ) -> Vec<AgentSummary> {
        let map = self.agents.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(id, st)| summary(id, st, pending(id), health(id))).collect()
    }

    /// One summary.
    pub fn get(&self, id: &str, pending: usize, health: Option<HealthView>) -> Option<AgentSummary> {
        let map = self.agents.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).map(|st| summary(id, st, pending, health))
    }

    /// The agent's workspace, if the roster names one.
    pub fn workspace(&self, id: &str) -> Option<String> {
        let map = self.agents.read().unwrap_or_else(|p| p.into_inner());
        map.get(id).and_then(|st| st.workspace.clone())
    }
}

fn summary(id: &str, st: &AgentState, pending: usize, h: Option<HealthView>) -> AgentSummary {
    // The later of the gateway's events and the data path's calls.
    let gateway_activity = st.last_activity_ms.and_then(rfc3339);
    let last_activity = match (gateway_activity, h.as_ref().and_then(|h| h.last_activity.clone())) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    AgentSummary {
        id: id.to_string(),
        name: st.name.clone(),
        health: h.as_ref().map_or(Health::Healthy, |h| h.health),
        health_reason: h.as_ref().and_then(|h| h.reason.clone()),
        health_since: h.map(|h| h.since),
        last_activity,
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
    fn roster_activity_and_runs() {
        let r = Registry::default();
        r.replace(&json!({"agents": [
            {"id": "main", "name": "Main", "workspace": "/w", "model": {"primary": "cb-main/gpt"}},
            {"id": "ops", "model": "cb-ops/x"}
        ]}));
        let all = r.summaries(&|_| 0, &|_| None);
        assert_eq!(all.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), ["main", "ops"]);
        assert_eq!(all[0].model.as_deref(), Some("cb-main/gpt"));
        assert_eq!(all[1].name, "ops");
        assert!(all.iter().all(|a| a.health == Health::Healthy && a.last_activity.is_none()));
        assert_eq!(r.workspace("main").as_deref(), Some("/w"));

        r.on_event(&life("r1", json!({"phase": "start"})));
        assert_eq!(r.active_runs("main"), vec![("r1".to_string(), "agent:main:main".to_string())]);
        r.on_event(&life("r1", json!({"phase": "error", "aborted": false})));
        assert!(r.active_runs("main").is_empty());
        let view = HealthView {
            health: Health::Degraded,
            reason: Some("its last run failed".into()),
            since: "2026-11-23T22:40:00.000Z".into(),
            last_activity: Some("2026-11-23T22:41:00.000Z".into()),
        };
        let m = r.get("main", 2, Some(view)).unwrap();
        assert_eq!((m.health, m.pending_approvals, m.active_runs), (Health::Degraded, 2, 0));
        assert_eq!(m.health_reason.as_deref(), Some("its last run failed"));
        assert_eq!(m.last_activity.as_deref(), Some("2026-11-23T22:41:00.000Z"), "the later activity wins");
        assert_eq!(r.get("main", 0, None).unwrap().last_activity.as_deref(), Some("2026-11-23T22:40:28.766Z"));
        // A roster re-read keeps activity.
        r.replace(&json!({"agents": [{"id": "main"}]}));
        assert!(r.get("main", 0, None).unwrap().last_activity.is_some());
        assert!(r.get("ops", 0, None).is_none());
    }
}

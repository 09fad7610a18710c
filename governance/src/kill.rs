//! Kill switch flags: per agent and global. The data path checks them on every call (the kill
//! layer), so a kill takes effect at the proxy as soon as the flag is set in memory; the flags
//! are also written to the `kill_switch` sled tree so a killed agent stays killed across a
//! restart. What a kill changed in OpenClaw (config, cron jobs) is remembered by the gateway
//! link, not here: this module only answers "may this agent's calls pass?".
//!
//! In fleet mode (the `fleet` crate) a second set of flags sits beside the local ones: the
//! fleet's kills as last read from PostgreSQL, replaced as a whole on every read, plus an
//! "unreachable" verdict while this sidecar cannot read them. Every path asks [`KillSwitch::blocked`],
//! so a fleet kill refuses calls exactly the way a local one does. The two sets never mix: a
//! local recover does not lift a fleet kill, and the fleet's state is not stored in sled (the
//! database is its store; after a restart it is read again before the sidecar serves).
//! Whoever carries a fleet kill further (the gateway link into OpenClaw) watches
//! [`KillSwitch::watch_fleet`], which ticks whenever a read changed the fleet's flags.

use dashmap::DashMap;
use prometheus::{IntGauge, Opts};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::RwLock;

/// Key of the global flag in the tree; agent ids are stored under `agent/<id>`.
const GLOBAL_KEY: &[u8] = b"global";
const AGENT_PREFIX: &str = "agent/";

/// Why and by whom an agent (or everything) was stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillEntry {
    /// The reason given by the operator (required).
    pub reason: String,
    /// Token name of whoever killed it.
    pub actor: String,
    /// RFC 3339 UTC time of the kill.
    pub at: String,
}

impl KillEntry {
    /// An entry stamped now.
    pub fn now(reason: &str, actor: &str) -> KillEntry {
        KillEntry {
            reason: reason.to_string(),
            actor: actor.to_string(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// Per-agent and global kill flags; see the module docs.
pub struct KillSwitch {
    tree: sled::Tree,
    agents: DashMap<String, KillEntry>,
    global: RwLock<Option<KillEntry>>,
    killed: IntGauge,
    fleet: RwLock<FleetKills>,
    /// Bumped whenever [`KillSwitch::set_fleet`] changes the fleet's flags.
    fleet_changed: tokio::sync::watch::Sender<u64>,
}

/// The fleet's kill flags as last read from the fleet database (see the module docs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetKills {
    /// The whole fleet is stopped.
    pub global: Option<KillEntry>,
    /// Agents stopped fleet-wide.
    pub agents: BTreeMap<String, KillEntry>,
    /// Set while the fleet's flags cannot be read (beyond the heartbeat TTL) and the sidecar
    /// refuses every call: the text says why.
    pub unreachable: Option<String>,
}

/// Errors of the kill switch store.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    #[error("kill switch store: {0}")]
    Store(#[from] sled::Error),
    #[error(transparent)]
    Storage(#[from] storage::StoreError),
    #[error("kill switch store: corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl KillSwitch {
    /// Load persisted flags from the main store and register `clawbutler_agents_killed`.
    pub fn open(store: &storage::Store, registry: &prometheus::Registry) -> Result<KillSwitch, KillError> {
        let tree = store.tree(storage::Tree::KillSwitch)?;
        let agents = DashMap::new();
        let mut global = None;
        for kv in tree.iter() {
            let (k, v) = kv?;
            let entry: KillEntry = serde_json::from_slice(&v)?;
            if k.as_ref() == GLOBAL_KEY {
                global = Some(entry);
            } else if let Some(id) = std::str::from_utf8(&k).ok().and_then(|s| s.strip_prefix(AGENT_PREFIX)) {
                agents.insert(id.to_string(), entry);
            }
        }
        let killed = IntGauge::with_opts(Opts::new(
            "clawbutler_agents_killed",
            "Agents currently stopped by the kill switch (a global kill counts as one more)",
        ))?;
        registry.register(Box::new(killed.clone()))?;
        let ks = KillSwitch {
            tree,
            agents,
            global: RwLock::new(global),
            killed,
            fleet: RwLock::default(),
            fleet_changed: tokio::sync::watch::Sender::new(0),
        };
        ks.update_gauge();
        Ok(ks)
    }

    /// Whether calls of `agent` must be refused now, and why.
    pub fn blocked(&self, agent: &str) -> Option<String> {
        if let Some(g) = self.global().as_ref() {
            return Some(format!("all agents are stopped by the global kill switch: {}", g.reason));
        }
        if let Some(e) = self.agents.get(agent) {
            return Some(format!("agent {agent} is stopped by the kill switch: {}", e.reason));
        }
        let fleet = self.fleet.read().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &fleet.unreachable {
            return Some(format!("the fleet kill switch cannot be read, so every call is refused: {why}"));
        }
        if let Some(g) = &fleet.global {
            return Some(format!("all agents are stopped by the fleet kill switch: {}", g.reason));
        }
        fleet.agents.get(agent).map(|e| format!("agent {agent} is stopped by the fleet kill switch: {}", e.reason))
    }

    /// Replace the fleet's flags (everything but `unreachable`, which is cleared: a fresh read
    /// is proof of contact). Called by the fleet sync after each read of the fleet database.
    pub fn set_fleet(&self, global: Option<KillEntry>, agents: BTreeMap<String, KillEntry>) {
        let mut f = self.fleet.write().unwrap_or_else(|p| p.into_inner());
        let changed = f.global != global || f.agents != agents;
        *f = FleetKills { global, agents, unreachable: None };
        drop(f);
        self.update_gauge();
        if changed {
            self.fleet_changed.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Ticks whenever a read of the fleet database changed the fleet's flags (not when a read
    /// finds them as they were, nor on `unreachable`: a partition is no kill to carry out).
    pub fn watch_fleet(&self) -> tokio::sync::watch::Receiver<u64> {
        self.fleet_changed.subscribe()
    }

    /// The fleet kill in force for `agent` here (the whole fleet's, or this sidecar's, first),
    /// ignoring `unreachable`.
    pub fn fleet_entry(&self, agent: &str) -> Option<KillEntry> {
        let f = self.fleet.read().unwrap_or_else(|p| p.into_inner());
        f.global.clone().or_else(|| f.agents.get(agent).cloned())
    }

    /// Mark the fleet's flags unreadable (`Some(why)`: refuse every call) or readable again.
    pub fn set_fleet_unreachable(&self, why: Option<String>) {
        let mut f = self.fleet.write().unwrap_or_else(|p| p.into_inner());
        f.unreachable = why;
    }

    /// The fleet's flags as last applied.
    pub fn fleet(&self) -> FleetKills {
        self.fleet.read().map(|f| f.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The agent's own flag (not the global one), if set.
    pub fn agent_entry(&self, agent: &str) -> Option<KillEntry> {
        self.agents.get(agent).map(|e| e.clone())
    }

    /// The global flag, if set.
    pub fn global(&self) -> Option<KillEntry> {
        self.global.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Every agent with its own flag set.
    pub fn killed_agents(&self) -> Vec<(String, KillEntry)> {
        let mut v: Vec<_> = self.agents.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Stop `agent`. The in-memory flag is set first so the proxy blocks at once, even if the
    /// write to disk then fails (fail closed). Returns false when it was already killed.
    pub fn kill(&self, agent: &str, entry: KillEntry) -> Result<bool, KillError> {
        let fresh = self.agents.insert(agent.to_string(), entry.clone()).is_none();
        self.update_gauge();
        self.tree.insert(format!("{AGENT_PREFIX}{agent}").as_bytes(), serde_json::to_vec(&entry)?)?;
        self.tree.flush()?;
        Ok(fresh)
    }

    /// Let `agent` through again. Returns whether it was killed.
    pub fn recover(&self, agent: &str) -> Result<bool, KillError> {
        self.tree.remove(format!("{AGENT_PREFIX}{agent}").as_bytes())?;
        self.tree.flush()?;
        let was = self.agents.remove(agent).is_some();
        self.update_gauge();
        Ok(was)
    }

    /// Stop every agent, known or not.
    pub fn kill_all(&self, entry: KillEntry) -> Result<(), KillError> {
        match self.global.write() {
            Ok(mut g) => *g = Some(entry.clone()),
            Err(p) => *p.into_inner() = Some(entry.clone()),
        }
        self.update_gauge();
        self.tree.insert(GLOBAL_KEY, serde_json::to_vec(&entry)?)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Clear the global flag and every agent flag; returns the agents that had their own flag.
    pub fn recover_all(&self) -> Result<Vec<String>, KillError> {
        self.tree.clear()?;
        self.tree.flush()?;
        match self.global.write() {
            Ok(mut g) => *g = None,
            Err(p) => *p.into_inner() = None,
        }
        let ids: Vec<String> = self.agents.iter().map(|e| e.key().clone()).collect();
        self.agents.clear();
        self.update_gauge();
        Ok(ids)
    }

    fn update_gauge(&self) {
        let fleet = self.fleet();
        let g = i64::from(self.global().is_some() || fleet.global.is_some());
        let fleet_only = fleet.agents.keys().filter(|a| !self.agents.contains_key(*a)).count();
        self.killed.set((self.agents.len() + fleet_only) as i64 + g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_blocks_only_that_agent_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = storage::Store::open(dir.path()).unwrap();
        let ks = KillSwitch::open(&db, &prometheus::Registry::new()).unwrap();
        assert!(ks.blocked("main").is_none());
        assert!(ks.kill("main", KillEntry::now("runaway loop", "alice")).unwrap());
        assert!(ks.blocked("main").unwrap().contains("runaway loop"));
        assert!(ks.blocked("ops").is_none());
        drop(ks);
        let ks = KillSwitch::open(&db, &prometheus::Registry::new()).unwrap();
        assert!(ks.blocked("main").unwrap().contains("runaway loop"), "flag persisted");
        assert!(ks.recover("main").unwrap());
        assert!(ks.blocked("main").is_none());
        assert!(!ks.recover("main").unwrap());
    }

    #[test]
    fn global_kill_blocks_everyone_until_recover_all() {
        let dir = tempfile::tempdir().unwrap();
        let db = storage::Store::open(dir.path()).unwrap();
        let ks = KillSwitch::open(&db, &prometheus::Registry::new()).unwrap();
        ks.kill("a", KillEntry::now("x", "alice")).unwrap();
        ks.kill_all(KillEntry::now("incident 42", "bob")).unwrap();
        assert!(ks.blocked("never-seen").unwrap().contains("incident 42"));
        drop(ks);
        let ks = KillSwitch::open(&db, &prometheus::Registry::new()).unwrap();
        assert!(ks.blocked("b").is_some());
        assert_eq!(ks.recover_all().unwrap(), vec!["a".to_string()]);
        assert!(ks.blocked("a").is_none() && ks.blocked("b").is_none());
    }

    #[test]
    fn fleet_flags_block_beside_local_ones_and_a_local_recover_does_not_lift_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = storage::Store::open(dir.path()).unwrap();
        let ks = KillSwitch::open(&db, &prometheus::Registry::new()).unwrap();
        let mut agents = BTreeMap::new();
        agents.insert("main".to_string(), KillEntry::now("fleet stop", "carol"));
        let mut changes = ks.watch_fleet();
        ks.set_fleet(None, agents.clone());
        assert!(changes.has_changed().unwrap(), "a new kill ticks the watch");
        changes.mark_unchanged();
        ks.set_fleet(None, agents);
        assert!(!changes.has_changed().unwrap(), "the same flags read again do not");
        assert_eq!(ks.fleet_entry("main").map(|e| e.reason), Some("fleet stop".to_string()));
        assert!(ks.fleet_entry("ops").is_none());
        assert!(ks.blocked("main").unwrap().contains("fleet kill switch: fleet stop"));
        assert!(!ks.recover("main").unwrap(), "no local flag to lift");
        assert!(ks.blocked("main").is_some(), "the fleet flag stands");
        assert!(ks.blocked("ops").is_none());
        ks.set_fleet_unreachable(Some("no contact for 10 s".into()));
        assert!(ks.blocked("ops").unwrap().contains("no contact for 10 s"));
        ks.set_fleet(None, BTreeMap::new());
        assert!(ks.blocked("main").is_none() && ks.blocked("ops").is_none());
    }
}

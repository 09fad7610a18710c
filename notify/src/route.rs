//! Routes: which events go to which channels. A route matches event kinds (exact names or a
//! `prefix.*` pattern), agents (empty: any) and risk levels (empty: any), and names one or
//! more channels. Routes come from `[[notify.routes]]` (read-only) or from the API (stored in
//! `storage::Tree::NotifyRoutes`); ids are unique across both.

use chrono::{DateTime, Timelike, Utc};
use decision::Risk;
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind};
use crate::settings::{parse_hhmm, parse_tz};

/// Quiet hours of a route: between `start` and `end` (local time in `timezone`; `start` after
/// `end` spans midnight) only events at `break_through` risk or above are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start: String,
    pub end: String,
    #[serde(default = "utc")]
    pub timezone: String,
    /// Events at this risk or above are sent anyway (default `critical`); `null`: nothing is.
    #[serde(default = "critical")]
    pub break_through: Option<Risk>,
}

fn utc() -> String {
    "UTC".into()
}

fn critical() -> Option<Risk> {
    Some(Risk::Critical)
}

impl QuietHours {
    /// Whether `now` falls in the quiet window.
    pub fn active(&self, now: DateTime<Utc>) -> bool {
        let (Some(start), Some(end), Some(tz)) =
            (parse_hhmm(&self.start), parse_hhmm(&self.end), parse_tz(&self.timezone))
        else {
            return false;
        };
        let local = now.with_timezone(&tz);
        let m = local.hour() * 60 + local.minute();
        if start <= end {
            (start..end).contains(&m)
        } else {
            m >= start || m < end
        }
    }

    /// Whether an event of `risk` is held back at `now`.
    pub fn suppresses(&self, risk: Risk, now: DateTime<Utc>) -> bool {
        self.active(now) && self.break_through.is_none_or(|b| risk < b)
    }
}

/// One route, as written in the config or sent to the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub id: String,
    /// Event kinds: names (`approval.created`) or patterns (`approval.*`, `*`).
    pub events: Vec<String>,
    /// Agent ids (empty: any agent; events about no agent match only an empty list or `*`).
    #[serde(default)]
    pub agents: Vec<String>,
    /// Risk levels (empty: any).
    #[serde(default)]
    pub risks: Vec<Risk>,
    /// Channel names (from `[[notify.channels]]`).
    pub channels: Vec<String>,
    /// The route told when an approval this route announced is still pending after the
    /// escalation time, and again before it expires.
    #[serde(default)]
    pub escalate_to: Option<String>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    /// Overrides `[notify] burst_ms` / `cooldown_s` for this route.
    #[serde(default)]
    pub burst_ms: Option<u64>,
    #[serde(default)]
    pub cooldown_s: Option<u64>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A note for people (shown in the UI).
    #[serde(default)]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

/// Route and channel ids: 1 to 64 of `a-z 0-9 - _`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn pattern_ok(p: &str) -> bool {
    if p == "*" {
        return true;
    }
    match p.strip_suffix(".*") {
        Some(prefix) => EventKind::ALL.iter().any(|k| k.as_str().starts_with(&format!("{prefix}."))),
        None => EventKind::parse(p).is_some(),
    }
}

impl RouteSpec {
    /// Checks of the route on its own (channel names are checked against the channels by the
    /// caller).
    pub fn validate(&self) -> Result<(), String> {
        if !valid_id(&self.id) {
            return Err(format!("id '{}' must be 1 to 64 characters of a-z, 0-9, '-', '_'", self.id));
        }
        if self.events.is_empty() {
            return Err("events: give at least one event kind (e.g. \"approval.created\" or \"approval.*\")".into());
        }
        for e in &self.events {
            if !pattern_ok(e) {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                return Err(format!("events: '{e}' is not an event kind or pattern; known: {}", known.join(", ")));
            }
        }
        if self.channels.is_empty() {
            return Err("channels: give at least one channel".into());
        }
        if self.agents.iter().any(|a| a.is_empty() || a.len() > 128) {
            return Err("agents: an agent id is 1 to 128 characters".into());
        }
        if let Some(q) = &self.quiet_hours {
            for (k, v) in [("start", &q.start), ("end", &q.end)] {
                if parse_hhmm(v).is_none() {
                    return Err(format!("quiet_hours.{k}: '{v}' is not a time like 22:00"));
                }
            }
            if parse_tz(&q.timezone).is_none() {
                return Err(format!("quiet_hours.timezone: '{}' is not an IANA time zone", q.timezone));
            }
        }
        if self.burst_ms.is_some_and(|b| b > 600_000) {
            return Err("burst_ms: give 0 to 600000".into());
        }
        if self.cooldown_s.is_some_and(|c| c > 86_400) {
            return Err("cooldown_s: give 0 to 86400".into());
        }
        if self.escalate_to.as_deref() == Some(self.id.as_str()) {
            return Err("escalate_to: a route cannot escalate to itself".into());
        }
        if self.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            return Err("description: at most 500 characters".into());
        }
        Ok(())
    }

    /// Whether the route's event patterns name `kind`.
    pub fn wants_kind(&self, kind: EventKind) -> bool {
        let name = kind.as_str();
        self.events.iter().any(|p| {
            p == "*" && !matches!(kind, EventKind::Digest | EventKind::Test)
                || p == name
                || p.strip_suffix(".*").is_some_and(|pre| name.starts_with(&format!("{pre}.")))
        })
    }

    /// Whether `e` goes to this route (before quiet hours).
    pub fn matches(&self, e: &Event) -> bool {
        self.enabled
            && self.wants_kind(e.kind)
            && (self.agents.is_empty()
                || self.agents.iter().any(|a| a == "*" || e.agent.as_deref() == Some(a.as_str())))
            && (self.risks.is_empty() || self.risks.contains(&e.risk))
    }
}

/// A route as the API shows it: where it comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteView {
    #[serde(flatten)]
    pub spec: RouteSpec,
    /// `config` (read-only) or `api`.
    pub source: &'static str,
}

/// The routes defined through the API.
#[derive(Clone)]
pub struct RouteStore {
    tree: sled::Tree,
}

impl RouteStore {
    pub fn open(db: &storage::Store) -> Result<RouteStore, storage::StoreError> {
        Ok(RouteStore { tree: db.tree(storage::Tree::NotifyRoutes)? })
    }

    /// Every stored route, by id.
    pub fn list(&self) -> Vec<RouteSpec> {
        self.tree.iter().values().filter_map(|v| v.ok()).filter_map(|v| serde_json::from_slice(&v).ok()).collect()
    }

    pub fn put(&self, r: &RouteSpec) -> Result<(), String> {
        let v = serde_json::to_vec(r).map_err(|e| e.to_string())?;
        self.tree.insert(r.id.as_bytes(), v).map_err(|e| e.to_string())?;
        self.tree.flush().map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn remove(&self, id: &str) -> Result<bool, String> {
        let had = self.tree.remove(id.as_bytes()).map_err(|e| e.to_string())?.is_some();
        self.tree.flush().map_err(|e| e.to_string())?;
        Ok(had)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn spec(events: &[&str]) -> RouteSpec {
        RouteSpec {
            id: "r".into(),
            events: events.iter().map(|s| s.to_string()).collect(),
            agents: vec![],
            risks: vec![],
            channels: vec!["c".into()],
            escalate_to: None,
            quiet_hours: None,
            burst_ms: None,
            cooldown_s: None,
            enabled: true,
            description: None,
        }
    }

    #[test]
    fn patterns_match_kinds() {
        let r = spec(&["approval.*", "budget.open"]);
        assert!(r.wants_kind(EventKind::ApprovalCreated) && r.wants_kind(EventKind::ApprovalEscalated));
        assert!(r.wants_kind(EventKind::BudgetOpen) && !r.wants_kind(EventKind::BudgetWarn));
        assert!(spec(&["*"]).wants_kind(EventKind::GatewayDown) && !spec(&["*"]).wants_kind(EventKind::Digest));
        assert!(spec(&["approvl.*"]).validate().is_err());
        assert!(spec(&["approval.create"]).validate().is_err());
        assert!(spec(&["approval.*"]).validate().is_ok());
    }

    #[test]
    fn quiet_hours_are_local_and_may_span_midnight() {
        let q = QuietHours {
            start: "22:00".into(),
            end: "07:00".into(),
            timezone: "Asia/Shanghai".into(),
            break_through: Some(Risk::Critical),
        };
        // 15:00 UTC is 23:00 in Shanghai (UTC+8): quiet.
        let night = Utc.with_ymd_and_hms(2026, 3, 1, 15, 0, 0).unwrap();
        let day = Utc.with_ymd_and_hms(2026, 3, 1, 4, 0, 0).unwrap();
        assert!(q.active(night) && !q.active(day));
        assert!(q.suppresses(Risk::High, night) && !q.suppresses(Risk::Critical, night));
        assert!(!q.suppresses(Risk::Low, day));
        let none = QuietHours { break_through: None, ..q };
        assert!(none.suppresses(Risk::Critical, night));
    }
}

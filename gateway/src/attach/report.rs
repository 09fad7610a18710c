//! The governance report: for each agent, which of its paths go through ClawButler and which
//! do not, with why. It is computed from what the gateway says (its config, roster and exec
//! approvals), never from what attach meant to do, so the same function serves `attach` (on
//! the planned config), `clawbutler status`, the control API and drift detection.
//!
//! Each section (models, exec approvals, MCP, plugin) is its own module with a
//! `report(&View, agent) -> Vec<PathStatus>` function; adding a section is adding a module
//! and a line in [`compute`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{exec, mcp, models, plugin};

/// What the report is computed from.
pub struct View<'a> {
    /// The gateway config (`config.get` `parsed`), or the planned one.
    pub config: &'a Value,
    /// Agent ids of the roster (`agents.list`).
    pub agents: &'a [String],
    /// The exec approvals document (`exec.approvals.get` `file`, with `resolvedDefaults`
    /// merged into `defaults` where the file leaves them unset).
    pub exec: &'a Value,
    /// The sidecar's data address as the gateway reaches it (`host:port`).
    pub sidecar: &'a str,
    /// Whether ClawButler answers the gateway's exec approvals: Some(true) when its link is
    /// up with `exec_approvals` on, Some(false) when not, None when unknown (the CLI).
    pub approver: Option<bool>,
}

impl View<'_> {
    /// Whether `plugins.deny` names plugin `id`.
    pub fn plugin_denied(&self, id: &str) -> bool {
        self.config
            .pointer("/plugins/deny")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|x| x.as_str() == Some(id)))
    }
}

/// A report section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Models,
    ExecApprovals,
    Mcp,
    Plugin,
}

impl Section {
    /// Stable name (metric label, JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Models => "models",
            Section::ExecApprovals => "exec_approvals",
            Section::Mcp => "mcp",
            Section::Plugin => "plugin",
        }
    }

    /// Every section, in report order.
    pub const ALL: [Section; 4] = [Section::Models, Section::ExecApprovals, Section::Mcp, Section::Plugin];
}

/// Whether a path goes through ClawButler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Through the sidecar (or decided by it).
    Governed,
    /// Reaches a model, tool or command without ClawButler.
    Ungoverned,
    /// Not in use (nothing to govern).
    Off,
}

/// One path of an agent (a model slot, exec, an MCP server, the plugin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathStatus {
    /// What it is: `model`, `fallback 1`, `utilityModel`, `memory embeddings`, `exec`, ...
    pub path: String,
    /// Where it goes (a model ref, a server, a policy), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub state: State,
    /// Why, in words.
    pub why: String,
}

impl PathStatus {
    pub fn new(path: impl Into<String>, target: Option<String>, state: State, why: impl Into<String>) -> Self {
        PathStatus { path: path.into(), target, state, why: why.into() }
    }
}

/// One section of one agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SectionReport {
    pub section: Section,
    pub paths: Vec<PathStatus>,
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    pub agent: String,
    /// True when every model path of the agent (its model, fallbacks and per-agent
    /// auxiliary models) goes through the sidecar: what `attach` exits non-zero on.
    pub model_path_governed: bool,
    pub sections: Vec<SectionReport>,
}

impl AgentReport {
    /// The paths of `section`.
    pub fn section(&self, s: Section) -> &[PathStatus] {
        self.sections.iter().find(|r| r.section == s).map_or(&[], |r| r.paths.as_slice())
    }

    /// Paths not through ClawButler, all sections.
    pub fn ungoverned(&self) -> impl Iterator<Item = (Section, &PathStatus)> {
        self.sections
            .iter()
            .flat_map(|s| s.paths.iter().map(move |p| (s.section, p)))
            .filter(|(_, p)| p.state == State::Ungoverned)
    }
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub agents: Vec<AgentReport>,
    /// Gateway-wide settings that no agent's own setting covers (shared model slots, the
    /// default model, hardening), with whether they bypass the sidecar.
    pub gateway: Vec<PathStatus>,
}

impl Report {
    /// Agents whose model path is not (entirely) through the sidecar.
    pub fn ungoverned_agents(&self) -> Vec<&str> {
        self.agents.iter().filter(|a| !a.model_path_governed).map(|a| a.agent.as_str()).collect()
    }

    /// One agent's report.
    pub fn agent(&self, id: &str) -> Option<&AgentReport> {
        self.agents.iter().find(|a| a.agent == id)
    }

    /// Human-readable lines (what `attach` and `status` print).
    pub fn render(&self) -> Vec<String> {
        let mut out = vec!["governance report (what goes through ClawButler):".to_string()];
        let line = |out: &mut Vec<String>, label: &str, p: &PathStatus| {
            let state = match p.state {
                State::Governed => "governed  ",
                State::Ungoverned => "UNGOVERNED",
                State::Off => "off       ",
            };
            let target = p.target.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
            out.push(format!("  {label:<15}{state} {}{target}: {}", p.path, p.why));
        };
        for a in &self.agents {
            out.push(format!("agent {}", a.agent));
            for s in &a.sections {
                for (i, p) in s.paths.iter().enumerate() {
                    line(&mut out, if i == 0 { s.section.as_str() } else { "" }, p);
                }
            }
        }
        if !self.gateway.is_empty() {
            out.push("gateway-wide".into());
            for p in &self.gateway {
                line(&mut out, "", p);
            }
        }
        // The loud part: every path that stays outside, one line each, before the verdict.
        let target = |p: &PathStatus| p.target.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
        let outside: Vec<String> = self
            .agents
            .iter()
            .flat_map(|a| {
                a.ungoverned().map(move |(s, p)| format!("  agent {} {} {}{}", a.agent, s.as_str(), p.path, target(p)))
            })
            .chain(
                self.gateway
                    .iter()
                    .filter(|p| p.state == State::Ungoverned)
                    .map(|p| format!("  gateway-wide {}{}", p.path, target(p))),
            )
            .collect();
        if !outside.is_empty() {
            out.push(format!("STAYS OUTSIDE ClawButler ({} path(s)):", outside.len()));
            out.extend(outside);
        }
        let bad = self.ungoverned_agents();
        out.push(if bad.is_empty() {
            format!("every agent's model path goes through ClawButler ({} agent(s))", self.agents.len())
        } else {
            format!("NOT GOVERNED on the model path: {} (see above)", bad.join(", "))
        });
        out
    }
}

/// Compute the report for every agent of `view`.
pub fn compute(view: &View<'_>) -> Report {
    let agents = view
        .agents
        .iter()
        .map(|id| {
            let models = models::report(view, id);
            let model_path_governed = models.iter().all(|p| p.state != State::Ungoverned || !p.path_is_model());
            let sections = vec![
                SectionReport { section: Section::Models, paths: models },
                SectionReport { section: Section::ExecApprovals, paths: exec::report(view, id) },
                SectionReport { section: Section::Mcp, paths: mcp::report(view, id) },
                SectionReport { section: Section::Plugin, paths: plugin::report(view, id) },
            ];
            AgentReport { agent: id.clone(), model_path_governed, sections }
        })
        .collect();
    Report { agents, gateway: models::gateway_report(view) }
}

impl PathStatus {
    /// Model paths count toward the exit code; memory embeddings are reported in the models
    /// section but are not a model the agent talks with.
    fn path_is_model(&self) -> bool {
        !self.path.starts_with("memory")
    }
}

/// A path whose state changed between two reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub agent: String,
    pub section: Section,
    pub path: String,
    /// None = the path is new.
    pub from: Option<State>,
    /// None = the path is gone.
    pub to: Option<State>,
    pub target: Option<String>,
    pub why: String,
}

impl Drift {
    /// Whether the change took a path away from ClawButler (a new or changed path that is
    /// ungoverned).
    pub fn is_loss(&self) -> bool {
        self.to == Some(State::Ungoverned) && self.from != Some(State::Ungoverned)
    }

    /// One line.
    pub fn render(&self) -> String {
        let s = |x: Option<State>| x.map_or("absent".to_string(), |s| format!("{s:?}").to_lowercase());
        format!(
            "{} agent {} {} {}: {} -> {}: {}",
            if self.is_loss() { "!" } else { "=" },
            self.agent,
            self.section.as_str(),
            self.path,
            s(self.from),
            s(self.to),
            self.why
        )
    }
}

/// Paths whose state differs from `baseline` to `now` (agents, sections and path names
/// matched; a path that only changed its target or wording is not drift).
pub fn drift(baseline: &Report, now: &Report) -> Vec<Drift> {
    let key = |a: &AgentReport| -> Vec<(Section, String, State, Option<String>, String)> {
        a.sections
            .iter()
            .flat_map(|s| {
                s.paths.iter().map(move |p| (s.section, p.path.clone(), p.state, p.target.clone(), p.why.clone()))
            })
            .collect()
    };
    let mut out = Vec::new();
    let ids: std::collections::BTreeSet<&str> =
        baseline.agents.iter().chain(&now.agents).map(|a| a.agent.as_str()).collect();
    for id in ids {
        let before = baseline.agent(id).map(key).unwrap_or_default();
        let after = now.agent(id).map(key).unwrap_or_default();
        for (section, path, state, target, why) in &after {
            let was = before.iter().find(|b| b.0 == *section && b.1 == *path).map(|b| b.2);
            if was != Some(*state) {
                out.push(Drift {
                    agent: id.to_string(),
                    section: *section,
                    path: path.clone(),
                    from: was,
                    to: Some(*state),
                    target: target.clone(),
                    why: why.clone(),
                });
            }
        }
        for (section, path, state, target, _) in &before {
            if !after.iter().any(|a| a.0 == *section && a.1 == *path) {
                out.push(Drift {
                    agent: id.to_string(),
                    section: *section,
                    path: path.clone(),
                    from: Some(*state),
                    to: None,
                    target: target.clone(),
                    why: "no longer configured".into(),
                });
            }
        }
    }
    out
}

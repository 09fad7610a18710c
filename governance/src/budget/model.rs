//! The plain types of budgets: their config, scope, source and the refusal a caller sees.

use serde::{Deserialize, Serialize};

use super::Window;

/// One `[[budgets]]` entry (also the body of `PUT /api/v1/budgets/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Defaults to `<scope>@<window>`, e.g. `agent:main@daily`.
    #[serde(default)]
    pub id: Option<String>,
    /// `global`, `agent:<id>`, `model:<name>`, `upstream:<name>` or `mcp:<server>`.
    pub scope: String,
    pub window: Window,
    pub limit_usd: f64,
    /// Fraction of the limit at which a warning event is emitted once per window.
    #[serde(default)]
    pub warn_at: Option<f64>,
    /// IANA time zone of the window boundaries (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Enforced across every sidecar of the fleet with leases (needs `[fleet]`;
    /// docs/fleet.md "Fleet budgets"). Default: this sidecar only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fleet: bool,
}

/// What a budget applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Global,
    Agent(String),
    Model(String),
    Upstream(String),
    /// The tools of one MCP server (`[[mcp_servers]]` name).
    Mcp(String),
}

impl Scope {
    pub(crate) fn parse(s: &str) -> Result<Scope, String> {
        let (kind, name) = s.split_once(':').unwrap_or((s, ""));
        match (kind, name) {
            ("global", "") => Ok(Scope::Global),
            ("agent", n) if !n.is_empty() => Ok(Scope::Agent(n.into())),
            ("model", n) if !n.is_empty() => Ok(Scope::Model(n.into())),
            ("upstream", n) if !n.is_empty() => Ok(Scope::Upstream(n.into())),
            ("mcp", n) if !n.is_empty() => Ok(Scope::Mcp(n.into())),
            _ => Err(format!("scope '{s}' must be global, agent:<id>, model:<name>, upstream:<name> or mcp:<server>")),
        }
    }

    pub(crate) fn matches(&self, call: &CallScope<'_>) -> bool {
        match self {
            Scope::Global => true,
            Scope::Agent(a) => a == call.agent,
            Scope::Model(m) => m == call.model,
            Scope::Upstream(u) => u == call.upstream,
            Scope::Mcp(m) => !call.mcp_server.is_empty() && m == call.mcp_server,
        }
    }
}

/// The identity of a call, as budgets see it. A model call has a model and an upstream and
/// no MCP server; an MCP tool call has an MCP server and neither of the others (empty), so
/// `agent:` and `global` budgets cover both and the other scopes only their own kind.
#[derive(Debug, Clone, Copy)]
pub struct CallScope<'a> {
    pub agent: &'a str,
    pub model: &'a str,
    pub upstream: &'a str,
    pub mcp_server: &'a str,
}

impl<'a> CallScope<'a> {
    /// A model call.
    pub fn model(agent: &'a str, model: &'a str, upstream: &'a str) -> CallScope<'a> {
        CallScope { agent, model, upstream, mcp_server: "" }
    }

    /// A tool call to an MCP server.
    pub fn tool(agent: &'a str, mcp_server: &'a str) -> CallScope<'a> {
        CallScope { agent, model: "", upstream: "", mcp_server }
    }
}

/// Where a budget was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `clawbutler.toml`: read-only through the API (edit the file).
    Config,
    /// Created through the API; persisted in the store.
    Api,
}

/// A budget's state as shown by the API and the policy input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    pub id: String,
    pub scope: String,
    pub window: Window,
    pub limit_usd: f64,
    pub spent_usd: f64,
    pub reserved_usd: f64,
    pub remaining_usd: f64,
    pub warn_at: f64,
    pub timezone: String,
    pub open: bool,
    pub window_key: String,
    pub resets_at: String,
    pub source: Source,
}

/// Why a call is refused by a budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub budget_id: String,
    pub scope: String,
    pub window: Window,
    pub limit_usd: f64,
    pub spent_usd: f64,
    /// The call's worst-case cost, when the refusal is "would not fit".
    pub needed_usd: Option<f64>,
    pub retry_after_s: u64,
    /// Set when a fleet budget refused (the figures are then fleet-wide).
    pub fleet: Option<super::fleet::FleetCause>,
}

impl Refusal {
    /// The text the caller (and, through OpenClaw, the end user) sees. It always contains
    /// "<window> limit reached": OpenClaw treats that as an exhausted periodic window (one
    /// request, no retries, message shown verbatim).
    pub fn message(&self) -> String {
        let wait = human_duration(self.retry_after_s);
        if self.fleet == Some(super::fleet::FleetCause::NoFleet) {
            return format!(
                "{} limit reached for {}: budget {} is a fleet budget (fleet = true) and this sidecar has no [fleet] \
                 section, so calls under it are refused.",
                self.window.as_str(),
                self.scope,
                self.budget_id
            );
        }
        if self.fleet == Some(super::fleet::FleetCause::Unreachable) {
            // Still "<window> limit reached", so OpenClaw shows it once without retrying.
            return format!(
                "{} limit reached for {}: fleet budget {} cannot be reserved because the fleet database does not \
                 answer and this sidecar's lease is used up or expired, so calls under it are refused until the \
                 database answers again.",
                self.window.as_str(),
                self.scope,
                self.budget_id
            );
        }
        let fleet = if self.fleet.is_some() { " fleet-wide" } else { "" };
        match self.needed_usd {
            None => format!(
                "{} limit reached for {} (${:.2} of ${:.2} spent{fleet}; resets in {wait}). Ask an operator to raise or reset budget {}.",
                self.window.as_str(),
                self.scope,
                self.spent_usd,
                self.limit_usd,
                self.budget_id
            ),
            Some(need) => format!(
                "{} limit reached for {}: this call may cost up to ${need:.4} and ${:.4} of ${:.2} remains{fleet} (resets in {wait}). Ask an operator to raise or reset budget {}.",
                self.window.as_str(),
                self.scope,
                (self.limit_usd - self.spent_usd).max(0.0),
                self.limit_usd,
                self.budget_id
            ),
        }
    }
}

fn human_duration(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

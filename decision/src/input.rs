//! The typed, versioned policy input: one document per call, whatever its kind.
//! Documented in `docs/policy-input.md`; bump [`INPUT_VERSION`] on any breaking change.

use serde::{Deserialize, Serialize};

/// Version of the input document; policies may check `input.version`.
pub const INPUT_VERSION: u32 = 1;

/// Which kind of call is being decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    ModelCall,
    Exec,
    ToolCall,
    Plugin,
    /// Not a call: a critical-risk rollback of an agent's OpenClaw config, held in the
    /// approval inbox until a human decides (`docs/config-safety.md`). Never sent to policy.
    ConfigRollback,
    /// Not a call either: a backup import (`.cbpkg` restore) whose plan holds a critical
    /// change, held like a critical rollback. Never sent to policy.
    ConfigImport,
    /// Not a call either: a config change ClawButler proposes (a savings suggestion's model
    /// change, `docs/cost.md`) whose plan holds a critical change, held like a critical
    /// rollback. Never sent to policy.
    ConfigChange,
}

impl CallKind {
    /// Stable label value for metrics and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::ModelCall => "model_call",
            CallKind::Exec => "exec",
            CallKind::ToolCall => "tool_call",
            CallKind::Plugin => "plugin",
            CallKind::ConfigRollback => "config_rollback",
            CallKind::ConfigImport => "config_import",
            CallKind::ConfigChange => "config_change",
        }
    }

    /// A config change held for a human (a rollback, an import or a proposed change), not a
    /// call: each one is approved on its own, never by a grant.
    pub fn is_config_change(self) -> bool {
        matches!(self, CallKind::ConfigRollback | CallKind::ConfigImport | CallKind::ConfigChange)
    }
}

/// The model being called (model calls only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInput {
    /// Upstream name from config, e.g. `openai`.
    pub upstream: String,
    /// Upstream kind: `openai` or `anthropic`.
    #[serde(default)]
    pub upstream_kind: String,
    /// Endpoint, e.g. `chat_completions`, `responses`, `embeddings`, `messages`, `models`.
    #[serde(default)]
    pub endpoint: String,
    /// Model name as sent by the client.
    pub name: String,
    /// Output token cap the client asked for, if any.
    pub max_tokens: Option<u64>,
    pub stream: bool,
    /// Names of the tools offered to the model.
    #[serde(default)]
    pub tools: Vec<String>,
}

/// A shell command (exec approvals). The engine adds the derived `exec.features` (words and
/// operators of the command line, see `docs/policy-input.md`); callers cannot supply them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecInput {
    pub command: String,
    #[serde(default)]
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub resolved_path: Option<String>,
    /// The agent's workspace, when known, so rules can spot writes outside it.
    #[serde(default)]
    pub workspace: Option<String>,
}

/// A tool call (MCP or plugin gate).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolInput {
    pub server: Option<String>,
    pub name: String,
    #[serde(default)]
    pub args: serde_json::Value,
}

/// Which moment of an MCP session a `tool_call` decision is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum McpPhase {
    /// A `tools/call`: `tool.args` are the call's arguments.
    Call,
    /// Deciding whether to list the tool at all (`tools/list`): `tool.args` is null and the
    /// session context is empty. A deny here hides the tool; a hold or allow lists it.
    List,
    /// A request an upstream server sends to the client (elicitation, sampling, roots):
    /// `tool.name` is its method (e.g. `elicitation/create`), `tool.args` its params.
    ServerRequest,
}

impl McpPhase {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            McpPhase::Call => "call",
            McpPhase::List => "list",
            McpPhase::ServerRequest => "server_request",
        }
    }
}

/// One earlier tool call of the same MCP session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpCallInput {
    pub server: String,
    /// The upstream's own tool name.
    pub tool: String,
    /// What was decided for it (after any hold).
    pub action: crate::Action,
    /// Whether its result carried a secret (keys, tokens, PEM blocks).
    pub secret: bool,
}

/// The MCP session a tool call belongs to (calls through `/mcp/agent/{agent}` only), so a
/// policy can decide on what happened earlier in the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpInput {
    pub phase: McpPhase,
    /// The tools called earlier in this MCP session, oldest first (the most recent 100).
    #[serde(default)]
    pub calls: Vec<McpCallInput>,
    /// Whether any earlier result in this session carried a secret.
    #[serde(default)]
    pub secret_seen: bool,
}

/// Who asked for the turn a plugin-gate call belongs to, as OpenClaw tells the plugin
/// (`ctx.requester`): present for channel runs, mostly empty for CLI, cron and heartbeat runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequesterInput {
    /// The channel the turn came from (`webchat`, `telegram`, ...), when interactive.
    pub channel: Option<String>,
    pub account_id: Option<String>,
    pub sender_id: Option<String>,
    /// Whether the sender is the agent's owner.
    pub sender_is_owner: Option<bool>,
    #[serde(default)]
    pub role_ids: Vec<String>,
}

/// What the OpenClaw plugin knows about a tool call besides the tool and its arguments (kind
/// `plugin` only). The engine adds the fields it derives from the tool name, the arguments
/// and the workspace (`family`, `paths`, `recipients`, `hosts`, `grant_args`; see
/// docs/policy-input.md); callers cannot supply them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginInput {
    /// The tool name as OpenClaw calls it (for MCP tools `<server>__<tool>`; `tool.name` then
    /// holds the MCP tool's own name and `tool.server` the server).
    pub tool_name: String,
    /// OpenClaw's `toolKind` / `toolInputKind`, when it gives them.
    pub tool_kind: Option<String>,
    pub input_kind: Option<String>,
    /// OpenClaw's run id, tool-call id and session id.
    pub run_id: Option<String>,
    pub tool_call_id: Option<String>,
    pub session_id: Option<String>,
    /// The agent's workspace directory (what relative paths resolve against).
    pub workspace: Option<String>,
    /// What started the run: `user`, `cron`, `heartbeat`, ... (absent when unknown).
    pub trigger: Option<String>,
    /// The run's channel (`webchat`, ...), absent for CLI runs.
    pub channel: Option<String>,
    #[serde(default)]
    pub requester: RequesterInput,
    /// OpenClaw's own best-effort target paths (`apply_patch`), absolute.
    #[serde(default)]
    pub derived_paths: Vec<String>,
    /// `grant_args` as the approvals inbox shows it, when masking changes it (a phone
    /// number, an e-mail address or a secret, masked with the sidecar's salt): an approval
    /// suggests its "allow always" in that form, since grants never hold such values, so
    /// `grants.rego` matches a grant against this too. Set by the plugin gate.
    #[serde(default)]
    pub grant_args_masked: Option<String>,
}

/// Cost known before the call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CostInput {
    /// Worst-case cost of this call in USD; `None` when the model's price is unknown.
    pub estimate_usd: Option<f64>,
    /// Why the estimate is not a true bound, when it is not: request features whose cost the
    /// body does not show (`previous_response_id`, `image`, `server_tool`, ...; the list is in
    /// docs/policy-input.md). Empty: the estimate bounds the cost.
    #[serde(default)]
    pub unbounded: Vec<String>,
}

/// One budget that applies to this call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetInput {
    pub id: String,
    pub scope: String,
    pub window: String,
    pub spent_usd: f64,
    pub limit_usd: f64,
    pub remaining_usd: f64,
}

/// A standing grant (from an allow-always decision) that matches this call's agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantInput {
    pub id: String,
    pub agent: String,
    pub kind: CallKind,
    /// Tool name or command glob the grant covers, e.g. `git *`.
    pub pattern: String,
    /// Optional glob over the arguments.
    #[serde(default)]
    pub arg_pattern: Option<String>,
    /// RFC 3339 expiry, if any.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// The whole input document handed to `data.clawbutler.decision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInput {
    pub version: u32,
    pub kind: CallKind,
    pub agent: String,
    pub session: Option<String>,
    pub trace_id: String,
    #[serde(default)]
    pub model: Option<ModelInput>,
    #[serde(default)]
    pub exec: Option<ExecInput>,
    #[serde(default)]
    pub tool: Option<ToolInput>,
    /// Plugin-gate calls only: the OpenClaw side of the call.
    #[serde(default)]
    pub plugin: Option<PluginInput>,
    #[serde(default)]
    pub cost: CostInput,
    #[serde(default)]
    pub budgets: Vec<BudgetInput>,
    #[serde(default)]
    pub grants: Vec<GrantInput>,
    /// The MCP session context (tool calls through the MCP endpoint only).
    #[serde(default)]
    pub mcp: Option<McpInput>,
    /// Evaluation time, RFC 3339 UTC.
    pub now: String,
}

impl PolicyInput {
    /// An input of `kind` for `agent` with every optional part empty and `now` set to the
    /// current time.
    pub fn new(kind: CallKind, agent: &str, trace_id: &str) -> PolicyInput {
        PolicyInput {
            version: INPUT_VERSION,
            kind,
            agent: agent.to_string(),
            session: None,
            trace_id: trace_id.to_string(),
            model: None,
            exec: None,
            tool: None,
            plugin: None,
            cost: CostInput::default(),
            budgets: Vec::new(),
            grants: Vec::new(),
            mcp: None,
            now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// A fresh random W3C trace id (32 lowercase hex digits, never all zeros) for a call that
/// arrived without a `traceparent`, so every decision and record still has a trace.
pub fn new_trace_id() -> String {
    trace_id_text(crate::decision::random_u128())
}

/// 32 lowercase hex digits, as `format!("{:032x}")` writes them, without `fmt`.
pub(crate) fn trace_id_text(v: u128) -> String {
    uuid::Uuid::from_u128(v).simple().encode_lower(&mut uuid::Uuid::encode_buffer()).to_owned()
}

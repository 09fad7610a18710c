//! `clawbutler.toml`: every key has a default, `CLAWBUTLER_<SECTION>__<KEY>` environment
//! variables override single values, and unknown keys are refused with the key's name.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config{origin}: {msg}")]
    Parse { origin: String, msg: String },
    #[error("environment variable {var}: {msg}")]
    Env { var: String, msg: String },
    #[error("{key}: {msg}")]
    Invalid { key: String, msg: String },
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Data listener (model and tool traffic).
    pub listen: String,
    /// Control listener (API, UI, metrics).
    pub control_listen: String,
    pub data_dir: PathBuf,
    /// Control listener: connections served at once (beyond it new ones wait to be accepted).
    pub control_max_connections: usize,
    /// Control listener: time allowed for a request head; also the keep-alive idle timeout.
    pub control_header_read_timeout_ms: u64,
    /// Control listener: time allowed for a whole request body (408 beyond).
    pub control_body_read_timeout_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "127.0.0.1:8787".into(),
            control_listen: "127.0.0.1:8788".into(),
            data_dir: PathBuf::from("./clawbutler-data"),
            control_max_connections: 256,
            control_header_read_timeout_ms: 30_000,
            control_body_read_timeout_ms: 30_000,
        }
    }
}

impl ServerSettings {
    /// The control listener's limits.
    pub fn control_limits(&self) -> listener::Limits {
        listener::Limits {
            max_connections: self.control_max_connections,
            header_read_timeout: std::time::Duration::from_millis(self.control_header_read_timeout_ms),
            body_read_timeout: std::time::Duration::from_millis(self.control_body_read_timeout_ms),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Seeds an admin token at start (like `CLAWBUTLER_ADMIN_TOKEN`); for tests and
    /// automation. Stored hashed like every other token.
    pub admin_token: Option<String>,
    /// When a data-path call must carry its agent's per-agent key: `when_holding_key`
    /// (default: on upstreams with `api_key_env`), `required` (always) or `off`
    /// (docs/security.md).
    pub agent_keys: proxy::AgentKeyMode,
}

/// `[log]`: how the process logs to stderr (the level is `CLAWBUTLER_LOG`, an `EnvFilter`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// `[log] format`: `text` (for people, the default) or `json` (one object per line, for log
/// pipelines; a data-path call's lines carry its `trace_id`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default = "proxy::config::default_upstreams")]
    pub upstreams: Vec<proxy::UpstreamConfig>,
    #[serde(default)]
    pub proxy: proxy::ProxySettings,
    #[serde(default)]
    pub policies: policy::PolicySettings,
    #[serde(default)]
    pub prices: BTreeMap<String, proxy::Price>,
    #[serde(default)]
    pub audit: audit::AuditSettings,
    #[serde(default)]
    pub auth: AuthSettings,
    #[serde(default)]
    pub approvals: governance::ApprovalSettings,
    #[serde(default)]
    pub budgets: Vec<governance::budget::BudgetConfig>,
    #[serde(default)]
    pub gateway: gateway::GatewaySettings,
    /// The MCP endpoint `/mcp/agent/{agent}` (docs/mcp.md).
    #[serde(default)]
    pub mcp: mcp::McpSettings,
    /// The upstream MCP servers agents reach through the sidecar.
    #[serde(default)]
    pub mcp_servers: Vec<mcp::McpServerConfig>,
    #[serde(default)]
    pub plugin: plugin_gate::PluginSettings,
    #[serde(default)]
    pub notify: notifier::NotifySettings,
    /// Cost insight (`docs/cost.md`).
    #[serde(default)]
    pub cost: cost::CostSettings,
    /// Cron governance through the gateway link (`docs/cron.md`).
    #[serde(default)]
    pub cron: gateway::cron::CronSettings,
    /// Scheduled reports (`docs/cost.md`, "Reports").
    #[serde(default)]
    pub reports: Vec<reports::Schedule>,
    /// Report downloads and retention.
    #[serde(default)]
    pub report_settings: reports::ReportSettings,
    #[serde(default)]
    pub log: LogSettings,
    /// OpenTelemetry traces over OTLP/HTTP (docs/telemetry.md); off by default.
    #[serde(default)]
    pub telemetry: telemetry::TelemetrySettings,
    /// Fleet mode (docs/fleet.md): absent = this sidecar is on its own, as before.
    #[serde(default)]
    pub fleet: Option<fleet::FleetSettings>,
}

impl Default for Config {
    fn default() -> Self {
        // An empty document yields every default; this cannot fail for the shipped types.
        Config {
            server: ServerSettings::default(),
            upstreams: proxy::config::default_upstreams(),
            proxy: proxy::ProxySettings::default(),
            policies: policy::PolicySettings::default(),
            prices: BTreeMap::new(),
            audit: audit::AuditSettings::default(),
            auth: AuthSettings::default(),
            approvals: Default::default(),
            budgets: Vec::new(),
            gateway: Default::default(),
            mcp: Default::default(),
            mcp_servers: Vec::new(),
            plugin: Default::default(),
            notify: Default::default(),
            cost: Default::default(),
            cron: Default::default(),
            reports: Vec::new(),
            report_settings: Default::default(),
            log: LogSettings::default(),
            telemetry: Default::default(),
            fleet: None,
        }
    }
}

/// Environment variables with their own meaning (not `<SECTION>__<KEY>` overrides).
const SPECIAL_ENV: [&str; 5] =
    ["CLAWBUTLER_CONFIG", "CLAWBUTLER_ADMIN_TOKEN", "CLAWBUTLER_LOG", "CLAWBUTLER_E2E", "CLAWBUTLER_OPENCLAW_CACHE"];

/// Short aliases for the most common overrides.
const ALIASES: [(&str, &str); 4] = [
    ("CLAWBUTLER_LISTEN", "server.listen"),
    ("CLAWBUTLER_CONTROL_LISTEN", "server.control_listen"),
    ("CLAWBUTLER_DATA_DIR", "server.data_dir"),
    ("CLAWBUTLER_POLICIES_DIR", "policies.dir"),
];

impl Config {
    /// Parse a TOML document (no environment applied): what in-process tests use.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let v: toml::Table = toml::from_str(s).map_err(|e| parse_err("", e))?;
        Config::from_table(v, "")
    }

    fn from_table(t: toml::Table, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::Value::Table(t).try_into().map_err(|e| parse_err(origin, e))?;
        cfg.validate().map_err(|e| match e {
            ConfigError::Invalid { key, msg } if !origin.is_empty() => {
                ConfigError::Invalid { key, msg: format!("{msg} (in{origin})") }
            }
            e => e,
        })?;
        Ok(cfg)
    }

    /// Load: the file (if any), then `CLAWBUTLER_*` overrides from `env`, then validation.
    pub fn load(path: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let (mut table, origin) = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                let t: toml::Table = toml::from_str(&text).map_err(|e| parse_err(&format!(" {}", p.display()), e))?;
                (t, format!(" {}", p.display()))
            }
            None => (toml::Table::new(), String::new()),
        };
        for (var, val) in env {
            let Some(key) = env_key(&var)? else { continue };
            set_path(&mut table, &key, &val).map_err(|msg| ConfigError::Env { var: var.clone(), msg })?;
        }
        Config::from_table(table, &origin)
    }

    /// Checks serde cannot express; every message names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, v) in [("server.listen", &self.server.listen), ("server.control_listen", &self.server.control_listen)]
        {
            v.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid {
                key: key.into(),
                msg: format!("'{v}' is not a socket address like 127.0.0.1:8787"),
            })?;
        }
        self.gateway.validate().map_err(|(key, msg)| ConfigError::Invalid { key, msg })?;
        mcp::config::validate(&self.mcp, &self.mcp_servers).map_err(|(key, msg)| ConfigError::Invalid { key, msg })?;
        self.plugin.validate().map_err(|(key, msg)| ConfigError::Invalid { key, msg })?;
        self.notify.validate().map_err(|(key, msg)| ConfigError::Invalid { key, msg })?;
        self.telemetry.validate().map_err(|(key, msg)| ConfigError::Invalid { key: key.into(), msg })?;
        if let Some(f) = &self.fleet {
            f.validate().map_err(|(key, msg)| ConfigError::Invalid { key: key.into(), msg })?;
        } else if self.budgets.iter().any(|b| b.fleet) {
            return Err(ConfigError::Invalid {
                key: "budgets.fleet".into(),
                msg: "a budget with fleet = true needs a [fleet] section (docs/fleet.md)".into(),
            });
        }
        self.cost.validate().map_err(|(key, msg)| ConfigError::Invalid { key, msg })?;
        let mut names = std::collections::HashSet::new();
        for r in &self.reports {
            r.validate().map_err(|msg| {
                let key = if msg.contains("timezone") { "reports.timezone" } else { "reports.name" };
                ConfigError::Invalid { key: key.into(), msg }
            })?;
            if !names.insert(r.name.as_str()) {
                let msg = format!("two [[reports]] are named {:?}", r.name);
                return Err(ConfigError::Invalid { key: "reports.name".into(), msg });
            }
        }
        crate::config_ranges::check(self)?;
        if let Some(t) = &self.auth.admin_token {
            check_admin_token("auth.admin_token", t)?;
        }
        Ok(())
    }

    /// Parsed data listener address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("server.listen", &self.server.listen)
    }

    /// Parsed control listener address.
    pub fn control_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("server.control_listen", &self.server.control_listen)
    }
}

/// Shortest seeded admin token accepted.
pub const ADMIN_TOKEN_MIN: usize = 16;

/// A seeded admin token (`[auth] admin_token` or `CLAWBUTLER_ADMIN_TOKEN`, named by `key`):
/// never empty (that used to be ignored silently), at least [`ADMIN_TOKEN_MIN`] characters,
/// no white space or control characters (it travels in an `Authorization` header).
pub fn check_admin_token(key: &str, t: &str) -> Result<(), ConfigError> {
    let bad = |msg: String| Err(ConfigError::Invalid { key: key.into(), msg });
    if t.is_empty() {
        return bad("is empty; remove it to seed no admin token, or give a token".into());
    }
    if t.chars().count() < ADMIN_TOKEN_MIN {
        return bad(format!("is shorter than {ADMIN_TOKEN_MIN} characters; use a long random token"));
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain white space or control characters".into());
    }
    Ok(())
}

fn parse_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.parse().map_err(|_| ConfigError::Invalid { key: key.into(), msg: format!("'{v}' is not a socket address") })
}

fn parse_err(origin: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::Parse { origin: origin.to_string(), msg: e.to_string().trim().replace('\n', " ") }
}

/// Map an environment variable to a dotted config key; `None` = not a config override.
fn env_key(var: &str) -> Result<Option<String>, ConfigError> {
    let Some(rest) = var.strip_prefix("CLAWBUTLER_") else { return Ok(None) };
    if SPECIAL_ENV.contains(&var) {
        return Ok(None);
    }
    if let Some((_, key)) = ALIASES.iter().find(|(a, _)| *a == var) {
        return Ok(Some((*key).to_string()));
    }
    if !rest.contains("__") {
        // Not ours to interpret (e.g. a test harness variable); overrides always use `__`.
        return Ok(None);
    }
    let key = rest.split("__").map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>().join(".");
    Ok(Some(key))
}

/// Set a dotted key in the table, parsing the value as TOML when it looks like a number,
/// boolean or array, else as a string.
fn set_path(t: &mut toml::Table, key: &str, raw: &str) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().ok_or("empty key")?;
    let mut cur = t;
    for p in parents {
        let entry = cur.entry((*p).to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry.as_table_mut().ok_or_else(|| format!("{p} is not a table"))?;
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    cur.insert((*last).to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_gives_zero_config_defaults() {
        let c = Config::from_toml_str("").unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8787");
        assert_eq!(c.server.control_listen, "127.0.0.1:8788");
        assert_eq!(c.server.data_dir, PathBuf::from("./clawbutler-data"));
        let names: Vec<_> = c.upstreams.iter().map(|u| (u.name.as_str(), u.url.as_str())).collect();
        assert_eq!(names, vec![("openai", "https://api.openai.com/v1"), ("anthropic", "https://api.anthropic.com")]);
        assert_eq!(c.proxy.max_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.auth.agent_keys, proxy::AgentKeyMode::WhenHoldingKey);
    }

    #[test]
    fn agent_key_modes_parse_and_bad_ones_are_named() {
        let c = Config::from_toml_str("[auth]\nagent_keys = \"required\"").unwrap();
        assert_eq!(c.auth.agent_keys, proxy::AgentKeyMode::Required);
        let e = Config::from_toml_str("[auth]\nagent_keys = \"sometimes\"").unwrap_err().to_string();
        assert!(e.contains("agent_keys") || e.contains("sometimes"), "{e}");
    }

    #[test]
    fn audit_on_failure_defaults_to_refuse_and_continuing_must_be_spelled_out() {
        let c = Config::from_toml_str("").unwrap();
        assert_eq!(c.audit.on_failure, audit::OnFailure::Refuse);
        let c = Config::from_toml_str("[audit]\non_failure = \"continue_unaudited\"").unwrap();
        assert_eq!(c.audit.on_failure, audit::OnFailure::ContinueUnaudited);
        let e = Config::from_toml_str("[audit]\non_failure = \"continue\"").unwrap_err().to_string();
        assert!(e.contains("on_failure") || e.contains("continue"), "{e}");
        let env = vec![("CLAWBUTLER_AUDIT__ON_FAILURE".to_string(), "continue_unaudited".to_string())];
        let c = Config::load(None, env.into_iter()).unwrap();
        assert_eq!(c.audit.on_failure, audit::OnFailure::ContinueUnaudited);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml_str("[server]\nlisten_addr = \"x\"").unwrap_err().to_string();
        assert!(e.contains("listen_addr"), "{e}");
        let e = Config::from_toml_str("[sever]\n").unwrap_err().to_string();
        assert!(e.contains("sever"), "{e}");
    }

    #[test]
    fn report_schedules_parse_and_bad_ones_are_named() {
        let c = Config::from_toml_str("[[reports]]\nname = \"weekly-cost\"\nevery = \"weekly\"\n").unwrap();
        assert_eq!(
            c.reports,
            vec![reports::Schedule { name: "weekly-cost".into(), every: reports::Every::Weekly, timezone: None }]
        );
        let twice = "[[reports]]\nname = \"a\"\nevery = \"daily\"\n[[reports]]\nname = \"a\"\nevery = \"monthly\"\n";
        let e = Config::from_toml_str(twice).unwrap_err().to_string();
        assert!(e.contains("reports.name") && e.contains("two [[reports]]"), "{e}");
        let e = Config::from_toml_str("[[reports]]\nname = \"a b\"\nevery = \"daily\"\n").unwrap_err().to_string();
        assert!(e.contains("reports.name"), "{e}");
        let e = Config::from_toml_str("[[reports]]\nname = \"a\"\nevery = \"hourly\"\n").unwrap_err().to_string();
        assert!(e.contains("hourly"), "{e}");
        let zoned = "[[reports]]\nname = \"a\"\nevery = \"daily\"\ntimezone = \"Asia/Shanghai\"\n";
        assert_eq!(Config::from_toml_str(zoned).unwrap().reports[0].timezone.as_deref(), Some("Asia/Shanghai"));
        let e = Config::from_toml_str(&zoned.replace("Asia/Shanghai", "Shanghai")).unwrap_err().to_string();
        assert!(e.contains("reports.timezone") && e.contains("IANA"), "{e}");
        let e = Config::from_toml_str("[report_settings]\nlink_ttl_s = 0\n").unwrap_err().to_string();
        assert!(e.contains("report_settings.link_ttl_s"), "{e}");
    }

    #[test]
    fn bad_address_is_named() {
        let e = Config::from_toml_str("[server]\nlisten = \"localhost\"").unwrap_err().to_string();
        assert!(e.contains("server.listen") && e.contains("localhost"), "{e}");
    }

    #[test]
    fn env_overrides() {
        let env = vec![
            ("CLAWBUTLER_LISTEN".to_string(), "127.0.0.1:9999".to_string()),
            ("CLAWBUTLER_PROXY__MAX_BODY_BYTES".to_string(), "1024".to_string()),
            ("CLAWBUTLER_E2E".to_string(), "1".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
        ];
        let c = Config::load(None, env.into_iter()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9999");
        assert_eq!(c.proxy.max_body_bytes, 1024);
        let e = Config::load(None, vec![("CLAWBUTLER_SERVER__NOPE".to_string(), "1".to_string())].into_iter())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
    }
}

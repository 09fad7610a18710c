//! The `clawbutler` command line: `serve` runs the sidecar; every other subcommand is a tool
//! around it (policies, audit log, tokens, notifications). Each finds the config by `--config F`,
//! `CLAWBUTLER_CONFIG`, or `./clawbutler.toml` when present.

pub mod agent_key_cmd;
pub mod approvals_cmd;
pub mod attach_cmd;
pub mod attach_creds;
pub mod audit_cmd;
pub mod backup_cmd;
pub mod budgets_cmd;
pub mod client;
pub mod config_cmd;
pub mod config_held;
mod cost_check_cmd;
pub mod cost_cmd;
pub mod cost_suggest_apply;
pub mod cost_suggest_cmd;
pub mod cron_cmd;
pub mod fleet_cmd;
pub mod health_cmd;
pub mod mcp_token_cmd;
pub mod notify_cmd;
pub mod plugin_token_cmd;
pub mod policy_cmd;
pub mod report_cmd;
pub mod serve;
pub mod status_cmd;
pub mod token_cmd;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};

/// ClawButler: a policy-enforcing sidecar for OpenClaw gateways.
#[derive(Debug, Parser)]
#[command(name = "clawbutler", version, about)]
pub struct Cli {
    /// Config file (default: $CLAWBUTLER_CONFIG, else ./clawbutler.toml if it exists).
    #[arg(long, global = true, env = "CLAWBUTLER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides server.data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar (data listener, control API, UI).
    Serve(serve::ServeArgs),
    /// Test and evaluate Rego policies; publish a signed bundle to the fleet.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCmd),
    /// Verify, export and follow the audit log.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
    /// Show and reset budgets (through the running sidecar).
    #[command(subcommand)]
    Budgets(budgets_cmd::BudgetsCmd),
    /// Fleet mode: the sidecars sharing one database and the fleet kill switch.
    #[command(subcommand)]
    Fleet(fleet_cmd::FleetCmd),
    /// Spend by agent, model, task or period (through the running sidecar).
    Cost(cost_cmd::CostArgs),
    /// OpenClaw's cron jobs: list, history, pause/resume, run, create, remove (through the running sidecar).
    #[command(subcommand)]
    Cron(cron_cmd::CronCmd),
    /// Cost and governance reports, CSV and PDF: create, list, download (through the running sidecar).
    #[command(subcommand)]
    Report(report_cmd::ReportCmd),
    /// Send test notifications and show the delivery log (through the running sidecar).
    #[command(subcommand)]
    Notify(notify_cmd::NotifyCmd),
    /// Manage control-API tokens.
    #[command(subcommand)]
    Token(token_cmd::TokenCmd),
    /// Manage per-agent data-path keys (what proves a model call comes from its agent).
    #[command(subcommand)]
    AgentKey(agent_key_cmd::AgentKeyCmd),
    /// Manage per-agent MCP tokens (what `/mcp/agent/<agent>` checks).
    #[command(subcommand)]
    McpToken(mcp_token_cmd::McpTokenCmd),
    /// Manage the per-gateway tokens of the ClawButler OpenClaw plugin (`/v1/decide`).
    #[command(subcommand)]
    PluginToken(plugin_token_cmd::PluginTokenCmd),
    /// List and decide pending approvals (through the control API).
    #[command(subcommand)]
    Approvals(approvals_cmd::ApprovalsCmd),
    /// Rewire an OpenClaw gateway's agents through this sidecar (`--dry-run` prints the plan).
    Attach(attach_cmd::AttachArgs),
    /// Restore exactly what `attach` changed on that gateway.
    Detach(attach_cmd::DetachArgs),
    /// Report what of a gateway goes through this sidecar, per agent (and drift since attach).
    Status(status_cmd::StatusArgs),
    /// An agent's OpenClaw config versions: history, diff, drift, rollback (through the control API).
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Encrypted gateway backups (.cbpkg): create, list, inspect, restore (through the control API).
    #[command(subcommand)]
    Backup(backup_cmd::BackupCmd),
    /// Exit 0 if the running sidecar answers /livez (or /readyz with --ready): for healthchecks.
    Health(health_cmd::HealthArgs),
}

impl Cli {
    /// The config file in use: `--config`/`CLAWBUTLER_CONFIG`, else `./clawbutler.toml` when it
    /// exists; None = defaults only.
    pub fn config_path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let p = PathBuf::from("clawbutler.toml");
            p.exists().then_some(p)
        })
    }

    /// The config this invocation uses, with the environment and global flags applied.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        let mut cfg = Config::load(self.config_path().as_deref(), std::env::vars())?;
        if let Some(d) = &self.data_dir {
            cfg.server.data_dir = d.clone();
        }
        Ok(cfg)
    }
}

/// Run the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let result = match &cli.command {
        Command::Serve(a) => serve::run(&cli, a).await,
        Command::Policy(c) => policy_cmd::run(&cli, c).await,
        Command::Audit(c) => audit_cmd::run(&cli, c).await,
        Command::Budgets(c) => budgets_cmd::run(&cli, c).await,
        Command::Fleet(c) => fleet_cmd::run(&cli, c).await,
        Command::Cost(a) => cost_cmd::run(&cli, a).await,
        Command::Cron(c) => cron_cmd::run(&cli, c).await,
        Command::Report(c) => report_cmd::run(&cli, c).await,
        Command::Notify(c) => notify_cmd::run(&cli, c).await,
        Command::Token(c) => token_cmd::run(&cli, c).await,
        Command::AgentKey(c) => agent_key_cmd::run(&cli, c).await,
        Command::McpToken(c) => mcp_token_cmd::run(&cli, c).await,
        Command::PluginToken(c) => plugin_token_cmd::run(&cli, c).await,
        Command::Approvals(c) => approvals_cmd::run(&cli, c).await,
        Command::Attach(a) => attach_cmd::run_attach(&cli, a).await,
        Command::Detach(a) => attach_cmd::run_detach(&cli, a).await,
        Command::Status(a) => status_cmd::run(&cli, a).await,
        Command::Health(a) => health_cmd::run(&cli, a).await,
        Command::Config(c) => config_cmd::run(&cli, c).await,
        Command::Backup(c) => backup_cmd::run(&cli, c).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("clawbutler: {e}");
            2
        }
    }
}

/// Errors of CLI commands, printed as `clawbutler: <message>`.
pub type CliResult = Result<i32, Box<dyn std::error::Error + Send + Sync>>;

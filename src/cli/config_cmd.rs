//! `clawbutler config history|diff|drift|rollback`: an agent's OpenClaw config versions,
//! through the running sidecar's control API (`docs/config-safety.md`).

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{ApiArgs, ApiClient};
use super::config_held as held;
use super::{Cli, CliResult};

/// Config-safety subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// List the agent's config versions, newest first.
    History {
        agent: String,
        #[command(flatten)]
        api: ApiArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Semantic diff between two versions (grouped by meaning, with risk classes).
    Diff {
        agent: String,
        #[arg(long)]
        from: u64,
        #[arg(long)]
        to: u64,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Live config against the version ClawButler made or accepted (exit 3 when drifted).
    Drift {
        agent: String,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Roll the agent's config back to a version (admin); `--dry-run` prints the plan only.
    /// A rollback with a critical change waits for a human in the approval inbox (exit 4,
    /// or with `--wait` until it is decided: exit 0 applied, 1 not applied).
    Rollback {
        agent: String,
        #[arg(long)]
        to: u64,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        wait: held::WaitArgs,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
    /// Accept the live config as the new baseline, without a rollback (admin): the drift
    /// is gone and the outside change stays.
    Accept {
        agent: String,
        /// The live version you looked at (refused if the config changed since).
        #[arg(long)]
        version: Option<u64>,
        /// Accept even a config that removed ClawButler's wiring (the agent stays ungoverned).
        #[arg(long)]
        accept_ungoverned: bool,
        #[command(flatten)]
        api: ApiArgs,
        #[arg(long)]
        json: bool,
    },
}

/// Exit code of a rollback left waiting for approval.
pub(crate) const EXIT_WAITING: i32 = 4;

/// A JSON value as a table cell (`(absent)` for null; strings without quotes); also used by
/// `backup_cmd.rs`, whose previews list the same kind of changes.
pub(crate) fn s(v: &Value) -> String {
    match v {
        Value::Null => "(absent)".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn print_changes(changes: &Value) {
    for c in changes.as_array().into_iter().flatten() {
        println!(
            "  [{:<8}] {:<22} {}: {} -> {}",
            s(&c["risk"]),
            s(&c["group"]),
            s(&c["path"]),
            s(&c["before"]),
            s(&c["after"])
        );
    }
}

/// Print `v` as JSON when `json`; whether it did.
pub(crate) fn out(v: &Value, json: bool) -> bool {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    }
    json
}

/// Run a config subcommand.
pub async fn run(cli: &Cli, c: &ConfigCmd) -> CliResult {
    match c {
        ConfigCmd::History { agent, api, json } => {
            let v = ApiClient::from_cli(cli, api)?.get(&format!("/api/v1/agents/{agent}/config/versions")).await?;
            if !out(&v, *json) {
                println!("{:>7}  {:<24}  {:<10}  {:<28} scopes", "version", "at", "source", "actor");
                for i in v["items"].as_array().into_iter().flatten() {
                    let base = if i["version"] == v["baseline_version"] { " (baseline)" } else { "" };
                    println!(
                        "{:>7}  {:<24}  {:<10}  {:<28} {}{base}",
                        s(&i["version"]),
                        s(&i["at"]),
                        s(&i["source"]),
                        s(&i["actor"]),
                        i["changed_scopes"]
                            .as_array()
                            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                            .unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
        ConfigCmd::Diff { agent, from, to, api, json } => {
            let path = format!("/api/v1/agents/{agent}/config/versions/diff?from={from}&to={to}");
            let v = ApiClient::from_cli(cli, api)?.get(&path).await?;
            if !out(&v, *json) {
                println!("{agent}: version {from} -> {to}, worst risk {}", s(&v["risk"]));
                print_changes(&v["changes"]);
            }
            Ok(0)
        }
        ConfigCmd::Drift { agent, api, json } => {
            let v =
                ApiClient::from_cli(cli, api)?.get(&format!("/api/v1/agents/{agent}/config/versions/drift")).await?;
            let drifted = v["drifted"] == true;
            if !out(&v, *json) {
                if drifted {
                    println!(
                        "{agent}: DRIFTED from version {} (live is version {}), worst risk {}",
                        s(&v["baseline"]["version"]),
                        s(&v["live"]["version"]),
                        s(&v["risk"])
                    );
                    print_changes(&v["changes"]);
                    if v["ungoverned"] == true {
                        println!("  UNGOVERNED: ClawButler wiring removed: {}", s(&v["wiring_lost"]));
                    }
                    println!("  to return: clawbutler config rollback {agent} --to {}", s(&v["suggested_version"]));
                } else {
                    println!("{agent}: no drift (live = version {})", s(&v["baseline"]["version"]));
                }
            }
            Ok(if drifted { 3 } else { 0 })
        }
        ConfigCmd::Rollback { agent, to, dry_run, wait, api, json } => {
            let path = format!("/api/v1/agents/{agent}/config/versions/rollback");
            let client = ApiClient::from_cli(cli, api)?;
            let v = client.post(&path, &json!({"to": to, "dry_run": dry_run})).await?;
            if v["status"] == "awaiting_approval" {
                return held::follow(&client, held::Change::Rollback(agent), &v, wait.wait, *json).await;
            }
            if !out(&v, *json) {
                let plan = if *dry_run { &v } else { &v["plan"] };
                println!(
                    "{} {agent} to version {to}: {} change(s), worst risk {}, restart {}",
                    if *dry_run { "PLAN (nothing changed): roll back" } else { "rolled back" },
                    plan["changes"].as_array().map_or(0, Vec::len),
                    s(&plan["risk"]),
                    if plan["restart"]["required"] == true { "required" } else { "not needed" }
                );
                print_changes(&plan["changes"]);
                for k in plan["skipped"].as_array().into_iter().flatten() {
                    println!("  skipped {}: {}", s(&k["path"]), s(&k["why"]));
                }
                if !*dry_run {
                    println!(
                        "  the state before is version {}; restored exactly: {}",
                        s(&v["pre_rollback_version"]),
                        s(&v["restored_exactly"])
                    );
                }
            }
            Ok(0)
        }
        ConfigCmd::Accept { agent, version, accept_ungoverned, api, json } => {
            let path = format!("/api/v1/agents/{agent}/config/versions/accept");
            let body = json!({"version": version, "accept_ungoverned": accept_ungoverned});
            let v = ApiClient::from_cli(cli, api)?.post(&path, &body).await?;
            if !out(&v, *json) {
                if v["accepted"] == true {
                    println!(
                        "{agent}: version {} is the new baseline (was {}); {} change(s) kept, worst risk {}",
                        s(&v["baseline_version"]),
                        s(&v["previous_baseline"]),
                        v["changes"].as_array().map_or(0, Vec::len),
                        s(&v["risk"])
                    );
                } else {
                    println!("{agent}: nothing to accept ({})", s(&v["why"]));
                }
            }
            Ok(0)
        }
    }
}

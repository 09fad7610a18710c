//! `clawbutler cost suggest [--since 7d] [--agent A] [--preview MODEL]`: savings suggestions
//! from the running sidecar (`GET /api/v1/cost/suggestions`), each with its cheaper models,
//! evidence and verdict; `--preview` prints the dry-run config change for one agent
//! (`GET /api/v1/cost/suggestions/preview`). `--apply` picks one suggestion and applies it
//! (`cost_suggest_apply.rs`), only with `--yes`.

use clap::Args;
use serde_json::Value;

use super::client::{enc, ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// Arguments of `clawbutler cost suggest`.
#[derive(Debug, Args)]
pub struct SuggestArgs {
    #[command(flatten)]
    pub(super) window: super::cost_cmd::Window,
    /// Only this agent.
    #[arg(long)]
    pub(super) agent: Option<String>,
    /// Print the dry-run config.patch that would move --agent to this suggested model.
    #[arg(long, requires = "agent")]
    preview: Option<String>,
    /// Apply one suggestion (admin): the one --agent/--task pick, moved to --model (default
    /// its best candidate). Shows the plan only (a dry run) unless --yes is given. A change
    /// that touches ClawButler's wiring waits in the approval inbox (exit 4, or with --wait
    /// until it is decided: exit 0 applied, 1 not applied).
    #[arg(long, conflicts_with = "preview")]
    pub(super) apply: bool,
    /// With --apply: the suggestion of this task type (interactive, heartbeat, subagent, cron, unknown).
    #[arg(long, requires = "apply")]
    pub(super) task: Option<String>,
    /// With --apply: the cheaper model to move to (one of the suggestion's candidates).
    #[arg(long, requires = "apply")]
    pub(super) model: Option<String>,
    /// With --apply: really apply it (without, only the plan is shown).
    #[arg(long, requires = "apply")]
    pub(super) yes: bool,
    #[command(flatten)]
    pub(super) wait: super::config_held::WaitArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(super) json: bool,
    #[command(flatten)]
    pub(super) api: ApiArgs,
}

fn pct(v: &Value) -> String {
    v.as_f64().map(|x| format!("{:.0}%", x * 100.0)).unwrap_or_else(|| "-".into())
}

fn print(v: &Value) {
    println!("{} to {}", v["since"].as_str().unwrap_or("?"), v["until"].as_str().unwrap_or("?"));
    let items = v["items"].as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        println!("no suggestions");
    }
    for i in items {
        let s = |k: &str| i[k].as_str().unwrap_or("?");
        let e = &i["evidence"];
        println!(
            "\n{}  task {}  model {}  {} calls  ${:.6}  {}",
            s("agent"),
            s("task"),
            s("model"),
            i["calls"].as_u64().unwrap_or(0),
            i["cost_usd"].as_f64().unwrap_or(0.0),
            s("verdict").to_uppercase()
        );
        for c in i["candidates"].as_array().into_iter().flatten() {
            println!(
                "  -> {:<24} ${:.6}  saves ${:.6} ({:.1}%)",
                c["model"].as_str().unwrap_or("?"),
                c["cost_usd"].as_f64().unwrap_or(0.0),
                c["saving_usd"].as_f64().unwrap_or(0.0),
                c["saving_pct"].as_f64().unwrap_or(0.0)
            );
        }
        println!(
            "  evidence: short {}  tool-free {}  tool use {}  errors {}  retries {}  ({} calls)",
            pct(&e["short_share"]),
            pct(&e["tool_free_share"]),
            pct(&e["tool_use_share"]),
            pct(&e["error_rate"]),
            pct(&e["retry_rate"]),
            e["calls"].as_u64().unwrap_or(0)
        );
        for r in i["reasons"].as_array().into_iter().flatten() {
            println!("  {}", r.as_str().unwrap_or(""));
        }
    }
    if let Some(n) = v["items_left_off"].as_u64().filter(|n| *n > 0) {
        println!("({n} more; use --agent or --json)");
    }
    let none = v["no_suggestion"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !none.is_empty() {
        println!("\nno suggestion:");
        for n in none {
            let s = |k: &str| n[k].as_str().unwrap_or("?");
            println!("  {} (task {}, model {}): {}", s("agent"), s("task"), s("model"), s("why"));
        }
    }
}

pub(super) fn print_preview(v: &Value) {
    println!(
        "DRY RUN (nothing changed): agent {} {} -> {}, from config version {}",
        v["agent"].as_str().unwrap_or("?"),
        v["model_ref_before"].as_str().unwrap_or("?"),
        v["model_ref_after"].as_str().unwrap_or("?"),
        v["from_version"]
    );
    for c in v["changes"].as_array().into_iter().flatten() {
        println!("  {}: {} -> {}", c["path"].as_str().unwrap_or("?"), c["before"], c["after"]);
    }
    println!("config.patch (raw): {}", v["patch"]);
    for n in v["notes"].as_array().into_iter().flatten() {
        println!("  note: {}", n.as_str().unwrap_or(""));
    }
}

/// Run `clawbutler cost suggest`.
pub async fn run(cli: &Cli, a: &SuggestArgs) -> CliResult {
    let mut q = format!("since={}", enc(&a.window.since));
    for (k, v) in [("until", &a.window.until), ("agent", &a.agent), ("model", &a.preview)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    let client = ApiClient::from_cli(cli, &a.api)?;
    if a.apply {
        return super::cost_suggest_apply::run(&client, a, &q).await;
    }
    let path = if a.preview.is_some() { "/api/v1/cost/suggestions/preview" } else { "/api/v1/cost/suggestions" };
    let v = client.get(&format!("{path}?{q}")).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if a.preview.is_some() {
        print_preview(&v);
    } else {
        print(&v);
    }
    Ok(0)
}

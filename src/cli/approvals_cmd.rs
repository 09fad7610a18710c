//! `clawbutler approvals list|approve|deny`: the approval inbox from a terminal, through the
//! control API of a running sidecar. A decision is made on the version just fetched, so
//! deciding something that changed meanwhile is refused (and says who decided first).

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{ApiArgs, ApiClient};
use super::{Cli, CliResult};

/// Approval subcommands.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// List approvals (default: pending ones, newest first).
    List {
        /// pending, allowed, denied, expired, cancelled, or all.
        #[arg(long, default_value = "pending")]
        status: String,
        #[arg(long)]
        agent: Option<String>,
        /// model_call, exec, tool_call, plugin, config_rollback, config_import or config_change.
        #[arg(long)]
        kind: Option<String>,
        /// low, medium, high or critical.
        #[arg(long)]
        risk: Option<String>,
        /// Print the raw JSON page.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Allow a pending approval (once, or always with a visible scope).
    Approve {
        id: String,
        /// Also create a standing grant, so matching calls are not held again.
        #[arg(long)]
        always: bool,
        /// With --always: the grant's pattern (model name, command glob or tool name);
        /// default: exactly what was asked.
        #[arg(long, requires = "always")]
        scope: Option<String>,
        /// With --always: a glob over the arguments (default: any arguments when --scope is given).
        #[arg(long, requires = "always")]
        arg_pattern: Option<String>,
        /// With --always: the grant expires after this many seconds.
        #[arg(long, requires = "always")]
        expires_in: Option<u64>,
        /// With --always: confirm a grant that covers everything of its kind ("*").
        #[arg(long, requires = "always")]
        confirm_any: bool,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deny a pending approval.
    Deny {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("-")
}

/// One line saying what is asked.
fn what(a: &Value) -> String {
    let sub = &a["subject"];
    let main = ["command", "tool", "model", "rollback"]
        .iter()
        .find_map(|k| sub.get(*k).and_then(Value::as_str))
        .unwrap_or("?");
    let extra = ["prompt_summary", "cwd"].iter().find_map(|k| sub.get(*k).and_then(Value::as_str));
    match extra {
        Some(e) => format!("{main}: {e}"),
        None => main.to_string(),
    }
}

fn print_list(page: &Value) {
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no approvals match");
        return;
    }
    println!("{:<36}  {:<9}  {:<8}  {:<12}  {:<10}  WHAT / WHY", "ID", "STATUS", "RISK", "AGENT", "KIND");
    for a in &items {
        let when = match s(a, "status") {
            "pending" => format!("expires {}", s(a, "expires_at")),
            _ => format!("by {} at {}", s(a, "decided_by"), s(a, "decided_at")),
        };
        println!(
            "{:<36}  {:<9}  {:<8}  {:<12}  {:<10}  {} ({}) [{}]",
            s(a, "id"),
            s(a, "status"),
            s(a, "risk"),
            s(a, "agent"),
            s(a, "kind"),
            what(a),
            s(a, "reason"),
            when
        );
        // What may still refuse the call once approved (a nearly spent budget, a failing upstream).
        for c in a["cautions"].as_array().into_iter().flatten() {
            println!("{:<38}! {}", "", s(c, "message"));
        }
    }
    if let Some(c) = page["next_cursor"].as_str() {
        println!("(more: --json and the API's cursor={c})");
    }
}

async fn decide(api: &ApiClient, id: &str, mut body: Value) -> CliResult {
    let a = api.get(&format!("/api/v1/approvals/{id}")).await?;
    if s(&a, "status") != "pending" {
        return Err(format!(
            "approval {id} is already {} (by {} at {})",
            s(&a, "status"),
            s(&a, "decided_by"),
            s(&a, "decided_at")
        )
        .into());
    }
    body["expected_version"] = a["version"].clone();
    let key = uuid::Uuid::new_v4().to_string();
    let path = format!("/api/v1/approvals/{id}/decision");
    let r = api.request(http::Method::POST, &path, Some(&body), &[("idempotency-key", &key)]).await?;
    let ap = &r["approval"];
    println!("{} {} ({}): {}", s(ap, "status"), s(ap, "id"), s(ap, "decision"), what(ap));
    if let Some(g) = r.get("grant").filter(|g| !g.is_null()) {
        println!("grant {} [{}]: {}", s(g, "id"), s(g, "breadth"), s(g, "description"));
    }
    Ok(0)
}

/// Run an approvals subcommand.
pub async fn run(cli: &Cli, c: &ApprovalsCmd) -> CliResult {
    match c {
        ApprovalsCmd::List { status, agent, kind, risk, json, api } => {
            let client = ApiClient::from_cli(cli, api)?;
            let mut q = vec!["limit=500".to_string()];
            if status != "all" {
                q.push(format!("status={status}"));
            }
            for (k, v) in [("agent", agent), ("kind", kind), ("risk", risk)] {
                if let Some(v) = v {
                    q.push(format!("{k}={v}"));
                }
            }
            let page = client.get(&format!("/api/v1/approvals?{}", q.join("&"))).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                print_list(&page);
            }
            Ok(0)
        }
        ApprovalsCmd::Approve { id, always, scope, arg_pattern, expires_in, confirm_any, reason, api } => {
            let client = ApiClient::from_cli(cli, api)?;
            let mut body = json!({ "decision": if *always { "allow-always" } else { "allow-once" }, "reason": reason });
            if *always && (scope.is_some() || arg_pattern.is_some() || expires_in.is_some() || *confirm_any) {
                body["scope"] = json!({
                    "pattern": scope, "arg_pattern": arg_pattern, "expires_in_s": expires_in, "confirm_any": confirm_any,
                });
            }
            decide(&client, id, body).await
        }
        ApprovalsCmd::Deny { id, reason, api } => {
            let client = ApiClient::from_cli(cli, api)?;
            decide(&client, id, json!({ "decision": "deny", "reason": reason })).await
        }
    }
}

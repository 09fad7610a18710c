//! `clawbutler cost --crosscheck [--since 7d] [--agent A]`: the sidecar's metering beside
//! OpenClaw's own usage records per agent and UTC day (`GET /api/v1/cost/crosscheck`). Exits 1
//! when a day does not match, so a cron job or CI step can alert on calls that bypassed the
//! sidecar.

use serde_json::Value;

use super::client::{enc, ApiClient};
use super::cost_cmd::CostArgs;
use super::{Cli, CliResult};

fn line(r: &Value) -> String {
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    let (s, o) = (&r["sidecar"], &r["openclaw"]);
    format!(
        "{:<24} {:<10} {:>7} {:>12} {:>12} {:>12} {}",
        r["agent"].as_str().unwrap_or("?"),
        r["date"].as_str().unwrap_or("?"),
        n(s, "calls"),
        n(s, "input_tokens") + n(s, "output_tokens"),
        n(o, "input_tokens") + n(o, "output_tokens") + n(o, "cache_read_tokens") + n(o, "cache_write_tokens"),
        r["token_difference"].as_i64().unwrap_or(0),
        r["verdict"].as_str().unwrap_or("?"),
    )
}

/// Run `clawbutler cost --crosscheck`.
pub async fn run(cli: &Cli, a: &CostArgs) -> CliResult {
    let mut path = format!("/api/v1/cost/crosscheck?since={}", enc(&a.window.since));
    for (k, v) in [("until", &a.window.until), ("agent", &a.agent)] {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    let v = ApiClient::from_cli(cli, &a.api)?.get(&path).await?;
    let mismatches = v["mismatches"].as_u64().unwrap_or(0);
    let errors = v["errors"].as_array().map(Vec::len).unwrap_or(0);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} to {} (UTC days), sidecar vs OpenClaw tokens",
            v["since"].as_str().unwrap_or("?"),
            v["until"].as_str().unwrap_or("?")
        );
        let head = ["agent", "day", "calls", "sidecar_tok", "openclaw_tok", "difference", "verdict"];
        println!(
            "{:<24} {:<10} {:>7} {:>12} {:>12} {:>12} {}",
            head[0], head[1], head[2], head[3], head[4], head[5], head[6]
        );
        for r in v["items"].as_array().into_iter().flatten() {
            println!("{}", line(r));
        }
        for e in v["errors"].as_array().into_iter().flatten() {
            println!(
                "{}: OpenClaw's records could not be read: {}",
                e["agent"].as_str().unwrap_or("?"),
                e["error"].as_str().unwrap_or("?")
            );
        }
        println!("{mismatches} day(s) do not match");
    }
    Ok(if mismatches > 0 || errors > 0 { 1 } else { 0 })
}

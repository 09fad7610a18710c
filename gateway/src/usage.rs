//! OpenClaw's own usage records for the cost cross-check (`governance::usage`): `usage.cost`
//! per agent and UTC day. OpenClaw answers from a cache it refreshes lazily: the first call
//! after a change may say `cacheStatus.status: "refreshing"` with zeros (verified on
//! 2026.9.6, fresh 3 s later on a quiet machine, 15-30 s later on a busy one), so the read is
//! repeated until the cache is fresh; a cache still refreshing after [`FRESH_WAIT`] is an
//! error, never zeros taken for real.

use std::time::{Duration, Instant};

use governance::usage::{GatewayDay, GatewayUsage, UsageFuture};
use serde_json::{json, Value};

use super::{Gateway, GatewayError};

/// Longest wait for OpenClaw's usage cache to be fresh.
const FRESH_WAIT: Duration = Duration::from_secs(30);

/// Pause between reads while it refreshes.
const RETRY: Duration = Duration::from_millis(500);

impl GatewayUsage for Gateway {
    fn daily<'a>(&'a self, agent: &'a str, start: &'a str, end: &'a str) -> UsageFuture<'a> {
        Box::pin(async move { self.usage_daily(agent, start, end).await.map_err(|e| e.to_string()) })
    }
}

impl Gateway {
    async fn usage_daily(&self, agent: &str, start: &str, end: &str) -> Result<Vec<GatewayDay>, GatewayError> {
        let params = json!({"startDate": start, "endDate": end, "agentId": agent, "timeZone": "UTC"});
        let deadline = Instant::now() + FRESH_WAIT;
        loop {
            let v = self.link().call("usage.cost", params.clone()).await?;
            if v["cacheStatus"]["status"].as_str() != Some("refreshing") {
                return Ok(days(&v));
            }
            if Instant::now() >= deadline {
                return Err(GatewayError::Stale { method: "usage.cost".into(), after: FRESH_WAIT });
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

/// The `daily` rows of a `usage.cost` answer.
fn days(v: &Value) -> Vec<GatewayDay> {
    let n = |d: &Value, k: &str| d[k].as_u64().unwrap_or(0);
    v["daily"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some(GatewayDay {
                date: d["date"].as_str()?.to_string(),
                input_tokens: n(d, "input"),
                output_tokens: n(d, "output"),
                cache_read_tokens: n(d, "cacheRead"),
                cache_write_tokens: n(d, "cacheWrite"),
                cost_usd: d["totalCost"].as_f64().unwrap_or(0.0),
                missing_cost_entries: n(d, "missingCostEntries"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn daily_rows_are_read_by_openclaw_names() {
        let v = serde_json::json!({"daily": [
            {"date": "2026-12-02", "input": 1003, "output": 20, "cacheRead": 7, "cacheWrite": 1,
             "totalTokens": 1031, "totalCost": 0.001043, "missingCostEntries": 0},
            {"input": 5}
        ], "cacheStatus": {"status": "fresh"}});
        let d = super::days(&v);
        assert_eq!(d.len(), 1, "a row without a date is left out");
        assert_eq!((d[0].input_tokens, d[0].output_tokens, d[0].cache_read_tokens, d[0].tokens()), (1003, 20, 7, 1031));
        assert_eq!(d[0].cost_usd, 0.001043);
    }
}

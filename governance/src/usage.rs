//! The cross-check of the sidecar's own metering against OpenClaw's usage records: per agent
//! and UTC day, the tokens the sidecar metered beside the tokens OpenClaw recorded
//! (`usage.cost`). Calls that bypassed the sidecar (a provider not wired through it, a model
//! call made before `attach`) show up as tokens OpenClaw counted and the sidecar did not.
//! The gateway link implements [`GatewayUsage`]; the control API joins it with the cost
//! aggregates through [`compare`]. `docs/cost.md` ("Cross-check with OpenClaw") is the user's
//! page.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// One agent's usage on one UTC day, as OpenClaw recorded it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayDay {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_tokens: u64,
    pub cache_write_tokens: u64,
    /// OpenClaw's own pricing (its `models.providers.*.models[].cost`), not the sidecar's.
    pub cost_usd: f64,
    /// Usage entries OpenClaw could not price.
    pub missing_cost_entries: u64,
}

impl GatewayDay {
    /// Every token OpenClaw counted: an upstream's prompt count covers its cached part, which
    /// OpenClaw books apart, so the four together are what the sidecar meters as input + output.
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens
    }
}

/// One agent's usage on one UTC day, from the sidecar's cost aggregates.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SidecarDay {
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

impl SidecarDay {
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }
}

/// Boxed future of [`GatewayUsage::daily`]; `Err` is a message for the operator.
pub type UsageFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<GatewayDay>, String>> + Send + 'a>>;

/// OpenClaw's usage records, read through the gateway link.
pub trait GatewayUsage: Send + Sync {
    /// `agent`'s usage per UTC day from `start` to `end` (both `YYYY-MM-DD`, inclusive).
    fn daily<'a>(&'a self, agent: &'a str, start: &'a str, end: &'a str) -> UsageFuture<'a>;
}

/// How one agent-day compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within [`tolerance`].
    Match,
    /// OpenClaw counted more: calls that did not pass the sidecar.
    Bypassed,
    /// The sidecar metered more: calls on the agent's route that OpenClaw did not record
    /// (another client using the route, or runs OpenClaw had not written down yet).
    SidecarOnly,
}

/// One agent-day of the cross-check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub agent: String,
    pub date: String,
    pub sidecar: SidecarDay,
    pub openclaw: GatewayDay,
    /// OpenClaw's tokens minus the sidecar's.
    pub token_difference: i64,
    pub verdict: Verdict,
}

/// Largest token difference still counted as a match: 1 % of the larger side, and at least
/// 10 tokens (a call that ended a moment after midnight can be booked on either day).
pub fn tolerance(a: u64, b: u64) -> u64 {
    (a.max(b) / 100).max(10)
}

/// Join one agent's days (sidecar days keyed by `YYYY-MM-DD`). Days neither side saw any
/// tokens on are left out; the rows come in date order.
pub fn compare(agent: &str, sidecar: &BTreeMap<String, SidecarDay>, openclaw: &[GatewayDay]) -> Vec<CheckRow> {
    let mut days: BTreeMap<&str, (SidecarDay, GatewayDay)> = BTreeMap::new();
    for (date, s) in sidecar {
        days.entry(date).or_default().0 = s.clone();
    }
    for g in openclaw {
        let e = days.entry(&g.date).or_default();
        // OpenClaw answers one row per day; should two ever come, they add up.
        let o = &mut e.1;
        o.input_tokens += g.input_tokens;
        o.output_tokens += g.output_tokens;
        o.cache_read_tokens += g.cache_read_tokens;
        o.cache_write_tokens += g.cache_write_tokens;
        o.cost_usd += g.cost_usd;
        o.missing_cost_entries += g.missing_cost_entries;
    }
    let mut out = Vec::new();
    for (date, (s, mut g)) in days {
        let (mine, theirs) = (s.tokens(), g.tokens());
        if mine == 0 && theirs == 0 {
            continue;
        }
        g.date = date.to_string();
        let verdict = if mine.abs_diff(theirs) <= tolerance(mine, theirs) {
            Verdict::Match
        } else if theirs > mine {
            Verdict::Bypassed
        } else {
            Verdict::SidecarOnly
        };
        let diff = i64::try_from(theirs).unwrap_or(i64::MAX).saturating_sub(i64::try_from(mine).unwrap_or(i64::MAX));
        out.push(CheckRow {
            agent: agent.to_string(),
            date: date.to_string(),
            sidecar: s,
            openclaw: g,
            token_difference: diff,
            verdict,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(input: u64, output: u64) -> SidecarDay {
        SidecarDay { calls: 1, input_tokens: input, output_tokens: output, cost_usd: 0.01 }
    }

    fn oc(date: &str, input: u64, output: u64, cache_read: u64) -> GatewayDay {
        GatewayDay {
            date: date.into(),
            input_tokens: input,
            output_tokens: output,
            cache_read_tokens: cache_read,
            ..Default::default()
        }
    }

    #[test]
    fn days_are_joined_and_judged() {
        let mut s = BTreeMap::new();
        s.insert("2026-12-01".to_string(), side(1_000, 200));
        s.insert("2026-12-02".to_string(), side(500, 50));
        s.insert("2026-12-04".to_string(), side(800, 80));
        let o = [
            // Same total, cached part booked apart by OpenClaw.
            oc("2026-12-01", 700, 200, 300),
            // 5,000 more tokens than went through the sidecar.
            oc("2026-12-02", 5_000, 600, 0),
            // Only OpenClaw saw this day.
            oc("2026-12-03", 100, 10, 0),
            // Nothing on either side: left out.
            oc("2026-12-05", 0, 0, 0),
        ];
        let rows = compare("main", &s, &o);
        let got: Vec<(&str, Verdict, i64)> =
            rows.iter().map(|r| (r.date.as_str(), r.verdict, r.token_difference)).collect();
        assert_eq!(
            got,
            vec![
                ("2026-12-01", Verdict::Match, 0),
                ("2026-12-02", Verdict::Bypassed, 5_050),
                ("2026-12-03", Verdict::Bypassed, 110),
                ("2026-12-04", Verdict::SidecarOnly, -880),
            ]
        );
        assert_eq!(rows[1].openclaw.date, "2026-12-02");
        assert_eq!(rows[3].openclaw.tokens(), 0);
    }

    #[test]
    fn small_differences_are_a_match_large_ones_are_not() {
        assert_eq!(tolerance(5, 0), 10);
        assert_eq!(tolerance(100_000, 99_500), 1_000);
        let mut s = BTreeMap::new();
        s.insert("2026-12-01".to_string(), side(99_000, 1_000));
        let near = compare("a", &s, &[oc("2026-12-01", 99_500, 1_000, 0)]);
        assert_eq!(near[0].verdict, Verdict::Match);
        let far = compare("a", &s, &[oc("2026-12-01", 102_000, 1_000, 0)]);
        assert_eq!(far[0].verdict, Verdict::Bypassed);
    }
}

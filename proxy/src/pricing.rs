//! Model prices and the cost of a call. An unknown model's cost is `None` (unknown), never
//! zero: a silent $0 is how budgets leak.

use std::collections::{BTreeMap, HashMap};

use audit::Usage;
use serde::{Deserialize, Serialize};

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Cached prompt tokens; defaults to `input` when a model has no cache discount.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// Prompt tokens written to a cache; defaults to `input`.
    #[serde(default)]
    pub cache_write: Option<f64>,
}

const SHIPPED: &str = include_str!("../prices.toml");

/// The price table in force: shipped entries overlaid with `[prices]` from config, plus the
/// per-call price of server-side tools (`[proxy] server_tool_call_usd`).
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// Looked up on every priced call: foldhash, not SipHash (the keys are the table's own,
    /// fixed at load; a caller's model name is only ever looked up).
    map: HashMap<String, Price, foldhash::fast::RandomState>,
    /// Each entry's family: the shipped table's section (`openai`, `anthropic`), kept by an
    /// override of a shipped entry; `custom` for a model only `[prices]` names. Savings
    /// suggestions offer a model of the same family only (same API, same provider).
    family: HashMap<String, String>,
    server_tool_call_usd: f64,
}

/// The family of a model that only `[prices]` names.
pub const CUSTOM_FAMILY: &str = "custom";

/// Errors in a price table.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("shipped price table: {0}")]
    Shipped(String),
    #[error("prices.\"{model}\": {msg}")]
    Bad { model: String, msg: String },
}

impl PriceTable {
    /// Shipped table plus overrides (`[prices."<model>"]`).
    pub fn new(overrides: &BTreeMap<String, Price>) -> Result<PriceTable, PriceError> {
        let shipped: BTreeMap<String, BTreeMap<String, Price>> =
            toml::from_str(SHIPPED).map_err(|e| PriceError::Shipped(e.to_string()))?;
        let mut family: HashMap<String, String> = HashMap::new();
        let mut map: HashMap<String, Price, foldhash::fast::RandomState> = HashMap::default();
        for (section, entries) in shipped {
            for (model, p) in entries {
                family.insert(model.clone(), section.clone());
                map.insert(model, p);
            }
        }
        for (model, p) in overrides {
            let vals = [Some(p.input), Some(p.output), p.cached_input, p.cache_write];
            if vals.iter().flatten().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(PriceError::Bad { model: model.clone(), msg: "prices must be >= 0".into() });
            }
            map.insert(model.clone(), *p);
            family.entry(model.clone()).or_insert_with(|| CUSTOM_FAMILY.to_string());
        }
        Ok(PriceTable { map, family, server_tool_call_usd: 0.0 })
    }

    /// Price server-side tool calls (web search, ...) at `usd` each.
    pub fn with_server_tool_call_usd(mut self, usd: f64) -> PriceTable {
        self.server_tool_call_usd = if usd.is_finite() && usd > 0.0 { usd } else { 0.0 };
        self
    }

    /// The price of one server-side tool call.
    pub fn server_tool_call_usd(&self) -> f64 {
        self.server_tool_call_usd
    }

    /// Price of a model: exact name, else the undated entry of a dated snapshot.
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        self.resolve(model).map(|(_, p)| p)
    }

    /// The entry a model name is priced by (its name and price): see [`PriceTable::lookup`].
    pub fn resolve(&self, model: &str) -> Option<(&str, &Price)> {
        if let Some((k, p)) = self.map.get_key_value(model) {
            return Some((k.as_str(), p));
        }
        // Longest entry that is a prefix followed only by a date/version suffix.
        self.map
            .iter()
            .filter(|(k, _)| {
                model.strip_prefix(k.as_str()).is_some_and(|rest| {
                    rest == "-latest"
                        || (rest.starts_with('-')
                            && rest.len() > 1
                            && rest[1..].bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                })
            })
            .max_by_key(|(k, _)| k.len())
            .map(|(k, p)| (k.as_str(), p))
    }

    /// Every entry's name and family (see the `family` field), sorted by name.
    pub fn entries(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .map
            .keys()
            .map(|k| (k.as_str(), self.family.get(k).map(String::as_str).unwrap_or(CUSTOM_FAMILY)))
            .collect();
        out.sort_unstable();
        out
    }

    /// Cost of a call with real usage (server tool calls included); `None` when the model's
    /// price is unknown.
    pub fn cost(&self, model: &str, u: &Usage) -> Option<f64> {
        let p = self.lookup(model)?;
        let cached = u.cached_input_tokens.min(u.input_tokens);
        let written = u.cache_write_tokens.min(u.input_tokens - cached);
        let plain = u.input_tokens - cached - written;
        let micro = plain as f64 * p.input
            + cached as f64 * p.cached_input.unwrap_or(p.input)
            + written as f64 * p.cache_write.unwrap_or(p.input)
            + u.output_tokens as f64 * p.output;
        Some(micro / 1_000_000.0 + u.server_tool_calls as f64 * self.server_tool_call_usd)
    }

    /// Worst-case token cost before the call: every prompt token at the dearest input price
    /// (a cache write costs more than a plain read), every allowed output token used.
    pub fn estimate(&self, model: &str, input_tokens: u64, max_output_tokens: u64) -> Option<f64> {
        let p = self.lookup(model)?;
        let input = [Some(p.input), p.cached_input, p.cache_write].into_iter().flatten().fold(0.0, f64::max);
        Some((input_tokens as f64 * input + max_output_tokens as f64 * p.output) / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> PriceTable {
        PriceTable::new(&BTreeMap::new()).unwrap()
    }

    #[test]
    fn shipped_table_parses_and_resolves_snapshots() {
        let t = table();
        assert_eq!(t.lookup("gpt-4o-mini").unwrap().input, 0.15);
        assert_eq!(t.lookup("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(t.lookup("gpt-4o-2024-08-06").unwrap().input, 2.5);
        assert_eq!(t.lookup("claude-sonnet-4-5-20250929").unwrap().output, 15.0);
        assert!(t.lookup("gpt-4o-mini-audio").is_none());
        assert!(t.lookup("my-local-model").is_none());
        assert_eq!(t.resolve("claude-sonnet-4-5-20250929").map(|(k, _)| k), Some("claude-sonnet-4-5"));
        assert!(t.entries().contains(&("claude-haiku-4-5", "anthropic")));
        assert!(t.entries().contains(&("gpt-5-nano", "openai")));
    }

    #[test]
    fn cost_uses_cached_and_output_prices() {
        let t = table();
        let u = Usage {
            input_tokens: 1_000_000,
            output_tokens: 1_000_000,
            cached_input_tokens: 500_000,
            cache_write_tokens: 0,
            server_tool_calls: 0,
        };
        // 0.5M * 0.15 + 0.5M * 0.075 + 1M * 0.60
        let c = t.cost("gpt-4o-mini", &u).unwrap();
        assert!((c - (0.075 + 0.0375 + 0.6)).abs() < 1e-9, "{c}");
        assert_eq!(t.cost("unknown-model", &u), None);
    }

    #[test]
    fn overrides_win_and_are_validated() {
        let mut o = BTreeMap::new();
        o.insert("gpt-4o-mini".to_string(), Price { input: 1.0, output: 2.0, cached_input: None, cache_write: None });
        o.insert("local".to_string(), Price { input: 0.0, output: 0.0, cached_input: None, cache_write: None });
        let t = PriceTable::new(&o).unwrap();
        assert_eq!(t.lookup("gpt-4o-mini").unwrap().input, 1.0);
        assert_eq!(t.cost("local", &Usage::default()), Some(0.0));
        let fam = t.entries();
        assert!(fam.contains(&("local", CUSTOM_FAMILY)) && fam.contains(&("gpt-4o-mini", "openai")), "{fam:?}");
        o.insert("bad".to_string(), Price { input: -1.0, output: 0.0, cached_input: None, cache_write: None });
        assert!(PriceTable::new(&o).is_err());
    }

    #[test]
    fn estimates_take_the_dearest_input_price_and_costs_add_server_tool_calls() {
        let t = table().with_server_tool_call_usd(0.01);
        // claude-haiku-4-5: input 1.0, cache_write 1.25 per million.
        assert!((t.estimate("claude-haiku-4-5", 1_000_000, 0).unwrap() - 1.25).abs() < 1e-12);
        let u = Usage { input_tokens: 0, output_tokens: 0, server_tool_calls: 3, ..Usage::default() };
        assert!((t.cost("claude-haiku-4-5", &u).unwrap() - 0.03).abs() < 1e-12);
    }
}

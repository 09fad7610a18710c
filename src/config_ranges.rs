//! The valid range of every numeric config key, checked at load. A value outside its range is
//! refused with the key, the value and the range, never clamped or taken as given: a timeout of
//! 0 (every call would time out), a body limit of a terabyte, a retention of 0 days (every
//! closed audit segment deleted) are mistakes, not settings. Budgets and prices are checked
//! by their owners (`governance::budget`, `proxy::pricing`); prices also here for finiteness.
//! A new numeric key gets its line in [`check`] (a test walks the serialized defaults and
//! fails for a number without one).

use crate::config::{Config, ConfigError};

const SEC: u64 = 1_000;
const HOUR: u64 = 3_600 * SEC;
const DAY: u64 = 24 * HOUR;
const GIB: u64 = 1 << 30;

/// One integer key.
fn int(key: &str, v: u64, lo: u64, hi: u64, unit: &str) -> Result<(), ConfigError> {
    if (lo..=hi).contains(&v) {
        return Ok(());
    }
    Err(ConfigError::Invalid { key: key.into(), msg: format!("{v} is out of range: give {lo} to {hi}{unit}") })
}

/// One decimal key.
fn num(key: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        return Ok(());
    }
    Err(ConfigError::Invalid { key: key.into(), msg: format!("{v} is out of range: give a number from {lo} to {hi}") })
}

/// The numeric keys that [`check`] covers, by dotted name (`[[upstreams]]` and `[prices]`
/// entries by their field name).
#[cfg(test)]
pub(crate) const KEYS: &[&str] = &[
    "server.control_max_connections",
    "server.control_header_read_timeout_ms",
    "server.control_body_read_timeout_ms",
    "proxy.max_body_bytes",
    "proxy.connect_timeout_ms",
    "proxy.upstream_timeout_ms",
    "proxy.stream_idle_timeout_ms",
    "proxy.default_max_output_tokens",
    "proxy.max_connections",
    "proxy.max_in_flight",
    "proxy.io_threads",
    "proxy.spin_us",
    "proxy.header_read_timeout_ms",
    "proxy.body_read_timeout_ms",
    "proxy.unbounded_input_tokens",
    "proxy.server_tool_call_usd",
    "proxy.server_tool_calls_reserved",
    "proxy.max_sse_event_bytes",
    "proxy.max_decode_bytes",
    "upstreams.timeout_ms",
    "policies.eval_timeout_ms",
    "policies.max_call_usd",
    "policies.hold_ttl_s",
    "prices.input",
    "prices.output",
    "prices.cached_input",
    "prices.cache_write",
    "audit.group_commit_records",
    "audit.group_commit_ms",
    "audit.checkpoint_every_records",
    "audit.checkpoint_every_secs",
    "audit.segment_max_bytes",
    "audit.retention_days",
    "audit.broadcast_capacity",
    "audit.search_scan_limit",
    "audit.reserve_free_bytes",
    "audit.warn_free_bytes",
    "audit.warn_free_ratio",
    "audit.disk_check_ms",
    "audit.retry_max_ms",
    "audit.outage_queue_records",
    "approvals.ttl_s",
    "approvals.events_heartbeat_ms",
    "gateway.reconnect_initial_ms",
    "gateway.reconnect_max_ms",
    "gateway.request_timeout_ms",
    "gateway.ping_interval_ms",
    "gateway.pong_timeout_ms",
    "gateway.max_frame_bytes",
    "mcp.client_timeout_s",
    "mcp.hold_answer_margin_s",
    "mcp.sse_keepalive_s",
    "mcp.max_body_bytes",
    "mcp.max_result_bytes",
    "mcp.connect_timeout_s",
    "mcp.reconnect_after_s",
    "mcp.session_idle_ttl_s",
    "mcp.max_sessions",
    "mcp.server_request_timeout_s",
    "mcp_servers.timeout_s",
    "plugin.heartbeat_s",
    "plugin.hold_timeout_ms",
    "plugin.answer_margin_ms",
    "plugin.max_body_bytes",
    "plugin.usage_tolerance",
    "plugin.usage_tolerance_usd",
    "notify.queue_capacity",
    "notify.max_in_flight",
    "notify.burst_ms",
    "notify.cooldown_s",
    "notify.retry_max",
    "notify.retry_initial_ms",
    "notify.retry_max_ms",
    "notify.timeout_ms",
    "notify.link_ttl_s",
    "notify.log_max",
    "notify.escalation.after_s.low",
    "notify.escalation.after_s.medium",
    "notify.escalation.after_s.high",
    "notify.escalation.after_s.critical",
    "notify.escalation.before_expiry_s",
    "notify.push.max_per_token",
    "telemetry.sample_ratio",
    "telemetry.export_timeout_ms",
    "telemetry.max_queue_spans",
    "telemetry.max_batch_spans",
    "telemetry.batch_delay_ms",
    "cost.anomaly_k",
    "cost.baseline_days",
    "cost.min_history_hours",
    "cost.min_spend_usd",
    "cost.min_calls",
    "cost.evaluate_every_s",
    "cron.failure_streak",
    "cron.budget_check_ms",
    "cron.cost_runs",
    "report_settings.link_ttl_s",
    "report_settings.keep",
    "report_settings.max_pending",
];

/// Check every numeric key of `c`.
pub(crate) fn check(c: &Config) -> Result<(), ConfigError> {
    let s = &c.server;
    int("server.control_max_connections", s.control_max_connections as u64, 1, 1_000_000, "")?;
    int("server.control_header_read_timeout_ms", s.control_header_read_timeout_ms, 100, HOUR, " ms")?;
    int("server.control_body_read_timeout_ms", s.control_body_read_timeout_ms, 100, HOUR, " ms")?;

    let p = &c.proxy;
    int("proxy.max_body_bytes", p.max_body_bytes as u64, 1, GIB, " bytes")?;
    int("proxy.connect_timeout_ms", p.connect_timeout_ms, 100, 10 * 60 * SEC, " ms")?;
    int("proxy.upstream_timeout_ms", p.upstream_timeout_ms, 100, DAY, " ms")?;
    int("proxy.stream_idle_timeout_ms", p.stream_idle_timeout_ms, 100, DAY, " ms")?;
    int("proxy.default_max_output_tokens", p.default_max_output_tokens, 1, 10_000_000, " tokens")?;
    int("proxy.max_connections", p.max_connections as u64, 1, 1_000_000, "")?;
    int("proxy.max_in_flight", p.max_in_flight as u64, 1, 1_000_000, " calls")?;
    if let Some(n) = p.io_threads {
        int("proxy.io_threads", n as u64, 0, 1024, " threads")?;
    }
    int("proxy.spin_us", p.spin_us, 0, 10_000, " us")?;
    int("proxy.header_read_timeout_ms", p.header_read_timeout_ms, 100, HOUR, " ms")?;
    int("proxy.body_read_timeout_ms", p.body_read_timeout_ms, 100, HOUR, " ms")?;
    int("proxy.unbounded_input_tokens", p.unbounded_input_tokens, 0, 100_000_000, " tokens")?;
    num("proxy.server_tool_call_usd", p.server_tool_call_usd, 0.0, 1e6)?;
    int("proxy.server_tool_calls_reserved", p.server_tool_calls_reserved, 0, 10_000, " calls")?;
    int("proxy.max_sse_event_bytes", p.max_sse_event_bytes as u64, 4096, GIB, " bytes")?;
    int("proxy.max_decode_bytes", p.max_decode_bytes as u64, 4096, GIB, " bytes")?;
    for u in &c.upstreams {
        if let Some(t) = u.timeout_ms {
            int(&format!("upstreams[{}].timeout_ms", u.name), t, 100, DAY, " ms")?;
        }
    }

    let pol = &c.policies;
    int("policies.eval_timeout_ms", pol.eval_timeout_ms, 1, 60 * SEC, " ms")?;
    if let Some(m) = pol.max_call_usd {
        num("policies.max_call_usd", m, 0.0, 1e9)?;
    }
    int("policies.hold_ttl_s", pol.hold_ttl_s, 1, 30 * 86_400, " s")?;

    for (model, pr) in &c.prices {
        let fields = [
            ("input", Some(pr.input)),
            ("output", Some(pr.output)),
            ("cached_input", pr.cached_input),
            ("cache_write", pr.cache_write),
        ];
        for (field, x) in fields {
            if let Some(x) = x {
                num(&format!("prices.\"{model}\".{field}"), x, 0.0, 1e6)?;
            }
        }
    }

    let a = &c.audit;
    int("audit.group_commit_records", a.group_commit_records as u64, 1, 1_000_000, " records")?;
    int("audit.group_commit_ms", a.group_commit_ms, 0, 10 * SEC, " ms")?;
    int("audit.checkpoint_every_records", a.checkpoint_every_records, 1, 100_000_000, " records")?;
    int("audit.checkpoint_every_secs", a.checkpoint_every_secs, 1, 86_400, " s")?;
    int("audit.segment_max_bytes", a.segment_max_bytes, 64 * 1024, 16 * GIB, " bytes")?;
    if let Some(d) = a.retention_days {
        int("audit.retention_days", u64::from(d), 1, 36_500, " days")?;
    }
    int("audit.broadcast_capacity", a.broadcast_capacity as u64, 1, 1_000_000, " records")?;
    int("audit.search_scan_limit", a.search_scan_limit as u64, 1, 100_000_000, " records")?;
    int("audit.reserve_free_bytes", a.reserve_free_bytes, 0, 64 * GIB, " bytes")?;
    int("audit.warn_free_bytes", a.warn_free_bytes, 0, 1 << 50, " bytes")?;
    num("audit.warn_free_ratio", a.warn_free_ratio, 0.0, 1.0)?;
    int("audit.disk_check_ms", a.disk_check_ms, 10, HOUR, " ms")?;
    int("audit.retry_max_ms", a.retry_max_ms, 10, 60 * SEC, " ms")?;
    int("audit.outage_queue_records", a.outage_queue_records as u64, 1, 10_000_000, " records")?;

    let ap = &c.approvals;
    int("approvals.ttl_s", ap.ttl_s, 1, 30 * 86_400, " s")?;
    int("approvals.events_heartbeat_ms", ap.events_heartbeat_ms, 10, HOUR, " ms")?;

    let g = &c.gateway;
    int("gateway.reconnect_initial_ms", g.reconnect_initial_ms, 1, 10 * 60 * SEC, " ms")?;
    int("gateway.reconnect_max_ms", g.reconnect_max_ms, 1, HOUR, " ms")?;
    int("gateway.request_timeout_ms", g.request_timeout_ms, 100, 10 * 60 * SEC, " ms")?;
    int("gateway.ping_interval_ms", g.ping_interval_ms, 100, 10 * 60 * SEC, " ms")?;
    int("gateway.pong_timeout_ms", g.pong_timeout_ms, 100, 10 * 60 * SEC, " ms")?;
    int("gateway.max_frame_bytes", g.max_frame_bytes as u64, 1024, GIB, " bytes")?;

    let m = &c.mcp;
    int("mcp.client_timeout_s", m.client_timeout_s, 2, DAY / SEC, " s")?;
    int("mcp.hold_answer_margin_s", m.hold_answer_margin_s, 0, HOUR / SEC, " s")?;
    int("mcp.sse_keepalive_s", m.sse_keepalive_s, 1, 3600, " s")?;
    int("mcp.max_body_bytes", m.max_body_bytes as u64, 1024, GIB, " bytes")?;
    int("mcp.max_result_bytes", m.max_result_bytes as u64, 1024, GIB, " bytes")?;
    int("mcp.connect_timeout_s", m.connect_timeout_s, 1, 600, " s")?;
    int("mcp.reconnect_after_s", m.reconnect_after_s, 0, 3600, " s")?;
    int("mcp.session_idle_ttl_s", m.session_idle_ttl_s, 10, 30 * DAY / SEC, " s")?;
    int("mcp.max_sessions", m.max_sessions as u64, 1, 1_000_000, "")?;
    int("mcp.server_request_timeout_s", m.server_request_timeout_s, 1, DAY / SEC, " s")?;
    for s in &c.mcp_servers {
        int(&format!("mcp_servers[{}].timeout_s", s.name), s.timeout_s, 1, DAY / SEC, " s")?;
    }
    let pl = &c.plugin;
    int("plugin.heartbeat_s", pl.heartbeat_s, 0, 3_600, " s")?;
    int("plugin.hold_timeout_ms", pl.hold_timeout_ms, SEC, 600 * SEC, " ms")?;
    int("plugin.answer_margin_ms", pl.answer_margin_ms, 0, 60 * SEC, " ms")?;
    int("plugin.max_body_bytes", pl.max_body_bytes as u64, 1024, GIB / 4, " bytes")?;
    num("plugin.usage_tolerance", pl.usage_tolerance, 0.0, 1.0)?;
    num("plugin.usage_tolerance_usd", pl.usage_tolerance_usd, 0.0, 1e6)?;
    let n = &c.notify;
    int("notify.queue_capacity", n.queue_capacity as u64, 1, 1_000_000, " events")?;
    int("notify.max_in_flight", n.max_in_flight as u64, 1, 1_000_000, " deliveries")?;
    int("notify.burst_ms", n.burst_ms, 0, 10 * 60 * SEC, " ms")?;
    int("notify.cooldown_s", n.cooldown_s, 0, 86_400, " s")?;
    int("notify.retry_max", u64::from(n.retry_max), 0, 20, " retries")?;
    int("notify.retry_initial_ms", n.retry_initial_ms, 1, HOUR, " ms")?;
    int("notify.retry_max_ms", n.retry_max_ms, 1, DAY, " ms")?;
    int("notify.timeout_ms", n.timeout_ms, 100, 10 * 60 * SEC, " ms")?;
    int("notify.link_ttl_s", n.link_ttl_s, 1, 30 * 86_400, " s")?;
    int("notify.log_max", n.log_max as u64, 1, 10_000_000, " entries")?;
    let after = &n.escalation.after_s;
    for (k, v) in [("low", after.low), ("medium", after.medium), ("high", after.high), ("critical", after.critical)] {
        int(&format!("notify.escalation.after_s.{k}"), v, 0, 30 * 86_400, " s")?;
    }
    int("notify.escalation.before_expiry_s", n.escalation.before_expiry_s, 0, 30 * 86_400, " s")?;
    int("notify.push.max_per_token", n.push.max_per_token as u64, 1, 1_000, " subscriptions")?;
    for r in &n.routes {
        if let Some(b) = r.burst_ms {
            int(&format!("notify.routes[{}].burst_ms", r.id), b, 0, 10 * 60 * SEC, " ms")?;
        }
        if let Some(cd) = r.cooldown_s {
            int(&format!("notify.routes[{}].cooldown_s", r.id), cd, 0, 86_400, " s")?;
        }
    }
    let t = &c.telemetry;
    num("telemetry.sample_ratio", t.sample_ratio, 0.0, 1.0)?;
    int("telemetry.export_timeout_ms", t.export_timeout_ms, 1, 10 * 60 * SEC, " ms")?;
    int("telemetry.max_queue_spans", t.max_queue_spans as u64, 1, 1_000_000, " spans")?;
    int(
        "telemetry.max_batch_spans",
        t.max_batch_spans as u64,
        1,
        t.max_queue_spans as u64,
        " spans (at most max_queue_spans)",
    )?;
    int("telemetry.batch_delay_ms", t.batch_delay_ms, 1, 60 * SEC, " ms")?;
    let k = &c.cost;
    num("cost.anomaly_k", k.anomaly_k, 0.1, 100.0)?;
    int("cost.baseline_days", u64::from(k.baseline_days), 1, 90, " days")?;
    int(
        "cost.min_history_hours",
        u64::from(k.min_history_hours),
        1,
        u64::from(k.baseline_days.clamp(1, 90)) * 24,
        " hours (at most baseline_days * 24)",
    )?;
    num("cost.min_spend_usd", k.min_spend_usd, 0.0, 1_000_000.0)?;
    int("cost.min_calls", k.min_calls, 0, 10_000_000, " calls")?;
    int("cost.evaluate_every_s", k.evaluate_every_s, 1, 86_400, " s")?;
    let cr = &c.cron;
    int("cron.failure_streak", u64::from(cr.failure_streak), 1, 1_000, " runs")?;
    int("cron.budget_check_ms", cr.budget_check_ms, 100, HOUR, " ms")?;
    int("cron.cost_runs", u64::from(cr.cost_runs), 1, 200, " runs")?;
    let r = &c.report_settings;
    int("report_settings.link_ttl_s", r.link_ttl_s, 1, 7 * 86_400, " s")?;
    int("report_settings.keep", r.keep as u64, 1, 100_000, " reports")?;
    int("report_settings.max_pending", r.max_pending as u64, 1, 1_000, " reports")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every number in the serialized default config (and in a price entry) has a range here:
    /// a numeric key added without one fails this test.
    #[test]
    fn every_numeric_key_has_a_range() {
        let mut c = Config::default();
        c.prices.insert("m".into(), serde_json::from_str(r#"{"input":1,"output":2}"#).unwrap());
        c.upstreams[0].timeout_ms = Some(1000);
        c.policies.max_call_usd = Some(1.0);
        c.audit.retention_days = Some(30);
        c.mcp_servers.push(toml::from_str("name = \"x\"\ntransport = \"stdio\"\ncommand = \"x\"").unwrap());
        let v = serde_json::to_value(&c).unwrap();
        let mut found = Vec::new();
        walk("", &v, &mut found);
        for key in &found {
            assert!(KEYS.contains(&key.as_str()), "numeric key {key} has no range in config_ranges::check");
        }
        assert!(found.len() >= 25, "{found:?}");
    }

    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Number(_) => out.push(prefix.to_string()),
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    // `[prices."<model>"]` entries are named by their fields.
                    let key = match prefix {
                        "" => k.clone(),
                        "prices" => "prices.*".to_string(),
                        "prices.*" => format!("prices.{k}"),
                        _ => format!("{prefix}.{k}"),
                    };
                    walk(&key, x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(prefix, x, out)),
            _ => {}
        }
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        for (toml, key) in [
            ("[proxy]\nupstream_timeout_ms = 0", "proxy.upstream_timeout_ms"),
            ("[proxy]\nmax_body_bytes = 0", "proxy.max_body_bytes"),
            ("[proxy]\nmax_body_bytes = 10000000000000", "proxy.max_body_bytes"),
            ("[proxy]\nbody_read_timeout_ms = 0", "proxy.body_read_timeout_ms"),
            ("[server]\ncontrol_max_connections = 0", "server.control_max_connections"),
            ("[audit]\nretention_days = 0", "audit.retention_days"),
            ("[audit]\nbroadcast_capacity = 9223372036854775807", "audit.broadcast_capacity"),
            ("[audit]\nwarn_free_ratio = 1.5", "audit.warn_free_ratio"),
            ("[audit]\nretry_max_ms = 0", "audit.retry_max_ms"),
            ("[approvals]\nttl_s = 0", "approvals.ttl_s"),
            ("[policies]\nmax_call_usd = nan", "policies.max_call_usd"),
            ("[gateway]\nmax_frame_bytes = 1", "gateway.max_frame_bytes"),
            ("[mcp]\nsse_keepalive_s = 0", "mcp.sse_keepalive_s"),
            ("[cron]\nfailure_streak = 0", "cron.failure_streak"),
            (
                "[[mcp_servers]]\nname = \"x\"\ntransport = \"stdio\"\ncommand = \"x\"\ntimeout_s = 0",
                "mcp_servers[x].timeout_s",
            ),
            ("[plugin]\nhold_timeout_ms = 600001", "plugin.hold_timeout_ms"),
            (
                "[[upstreams]]\nname = \"u\"\nkind = \"openai\"\nurl = \"http://x/v1\"\ntimeout_ms = 0",
                "upstreams[u].timeout_ms",
            ),
            ("[prices.\"m\"]\ninput = -1.0\noutput = 1.0", "prices.\"m\".input"),
        ] {
            let e = Config::from_toml_str(toml).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{key}: ")) && e.contains("out of range: give"), "{toml}: {e}");
        }
    }
}

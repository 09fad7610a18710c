//! The endpoint's metric families (documented in `docs/metrics.md`). Label values are server
//! names from config and fixed words, never text from a request.

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

pub(crate) struct Metrics {
    /// `clawbutler_mcp_calls_total{server,action}`: tools/calls by final action.
    pub calls: IntCounterVec,
    /// `clawbutler_mcp_call_duration_seconds{server}`: a tools/call from request to answer.
    pub duration: HistogramVec,
    /// `clawbutler_mcp_overhead_seconds`: time a forwarded tools/call spent in the sidecar
    /// (the upstream's time excluded; held calls not counted).
    pub overhead: Histogram,
    /// `clawbutler_mcp_upstream_up{server}`: 1 when the last connect or call worked.
    pub up: IntGaugeVec,
    /// `clawbutler_mcp_upstream_errors_total{server,class}`.
    pub upstream_errors: IntCounterVec,
    /// `clawbutler_mcp_sessions`: MCP sessions open.
    pub sessions: IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let calls = IntCounterVec::new(
            Opts::new("clawbutler_mcp_calls_total", "MCP tools/call requests by server and final action"),
            &["server", "action"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("clawbutler_mcp_call_duration_seconds", "MCP tools/call time from request to answer")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0, 5.0, 30.0, 120.0, 600.0]),
            &["server"],
        )?;
        let overhead = Histogram::with_opts(
            HistogramOpts::new(
                "clawbutler_mcp_overhead_seconds",
                "Time a forwarded MCP tools/call spent in the sidecar, the upstream's time excluded",
            )
            .buckets(vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01]),
        )?;
        let up = IntGaugeVec::new(
            Opts::new("clawbutler_mcp_upstream_up", "1 when the MCP server's last connect or call worked, else 0"),
            &["server"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new("clawbutler_mcp_upstream_errors_total", "Failed connects and calls to MCP servers by class"),
            &["server", "class"],
        )?;
        let sessions = IntGauge::new("clawbutler_mcp_sessions", "MCP sessions open")?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(sessions.clone()))?;
        Ok(Metrics { calls, duration, overhead, up, upstream_errors, sessions })
    }
}

//! The data path's Prometheus families, registered on the one registry built in main.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Data-path metrics.
#[derive(Clone)]
pub struct ProxyMetrics {
    /// `clawbutler_requests_total{route,upstream,action}`.
    pub requests: IntCounterVec,
    /// `clawbutler_request_duration_seconds{route}`: entry to response headers.
    pub duration: HistogramVec,
    /// `clawbutler_overhead_seconds{route}`: the same, minus upstream and human wait.
    pub overhead: HistogramVec,
    /// `clawbutler_upstream_errors_total{upstream,class}`.
    pub upstream_errors: IntCounterVec,
    /// `clawbutler_meter_undecoded_total{reason}`: replies whose usage could not be read.
    pub undecoded: IntCounterVec,
    /// `clawbutler_shed_calls_total`: calls refused because `max_in_flight` were in flight.
    pub shed: IntCounter,
}

/// Why a reply's usage was not (fully) read: the `reason` label values.
pub const UNDECODED_REASONS: [&str; 3] =
    [crate::meter::body::EVENT_TOO_LARGE, crate::meter::body::REPLY_TOO_LARGE, "invalid_usage"];

/// Upstream error classes (label values).
#[derive(Debug, Clone, Copy)]
pub enum ErrorClass {
    Connect,
    Timeout,
    Status4xx,
    Status5xx,
    Stream,
}

impl ErrorClass {
    /// Every class (each configured upstream's series start at 0 with these).
    pub const ALL: [ErrorClass; 5] =
        [ErrorClass::Connect, ErrorClass::Timeout, ErrorClass::Status4xx, ErrorClass::Status5xx, ErrorClass::Stream];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Connect => "connect",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Status4xx => "status_4xx",
            ErrorClass::Status5xx => "status_5xx",
            ErrorClass::Stream => "stream",
        }
    }
}

impl ProxyMetrics {
    /// Create and register the families.
    pub fn new(registry: &Registry) -> Result<ProxyMetrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("clawbutler_requests_total", "Data-path calls by route, upstream and action taken."),
            &["route", "upstream", "action"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("clawbutler_request_duration_seconds", "Entry to response headers, upstream included.")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]),
            &["route"],
        )?;
        let overhead = HistogramVec::new(
            HistogramOpts::new(
                "clawbutler_overhead_seconds",
                "Time spent inside the sidecar per call (upstream and approval wait excluded).",
            )
            .buckets(vec![0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1]),
            &["route"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new("clawbutler_upstream_errors_total", "Upstream failures by class."),
            &["upstream", "class"],
        )?;
        let undecoded = IntCounterVec::new(
            Opts::new(
                "clawbutler_meter_undecoded_total",
                "Replies whose usage the sidecar could not read (cost unknown) or had to clamp, by reason.",
            ),
            &["reason"],
        )?;
        for r in UNDECODED_REASONS {
            undecoded.with_label_values(&[r]);
        }
        registry.register(Box::new(undecoded.clone()))?;
        let shed = IntCounter::new(
            "clawbutler_shed_calls_total",
            "Model calls refused with 503 because proxy.max_in_flight calls were in flight.",
        )?;
        registry.register(Box::new(shed.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        Ok(ProxyMetrics { requests, duration, overhead, upstream_errors, undecoded, shed })
    }

    /// Create an upstream's error series at 0, so a rate over them (the upstream error-rate
    /// alert, the dashboard) works from the first failure on.
    pub fn register_upstream(&self, upstream: &str) {
        for class in ErrorClass::ALL {
            self.upstream_errors.with_label_values(&[upstream, class.as_str()]);
        }
    }

    /// Count an upstream failure.
    pub fn upstream_error(&self, upstream: &str, class: ErrorClass) {
        self.upstream_errors.with_label_values(&[upstream, class.as_str()]).inc();
    }
}

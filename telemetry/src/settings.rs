//! `[telemetry]`: where spans go and how many may wait. Off by default (no endpoint).

use serde::{Deserialize, Serialize};

/// `[telemetry]` (docs/telemetry.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// OTLP over HTTP/protobuf: the collector's base URL (`http://127.0.0.1:4318`, spans are
    /// POSTed to `/v1/traces` under it) or a full URL with a path. Unset: traces are off.
    pub endpoint: Option<String>,
    /// `service.name` of the resource.
    pub service_name: String,
    /// Share of new traces recorded, 0.0 to 1.0; a caller's sampled flag is followed.
    pub sample_ratio: f64,
    /// One export request's time limit; its spans are dropped (and counted) past it.
    pub export_timeout_ms: u64,
    /// Finished spans waiting for export; beyond it new ones are dropped (and counted).
    pub max_queue_spans: usize,
    /// Spans per export request.
    pub max_batch_spans: usize,
    /// How long a batch may wait to fill before it is sent.
    pub batch_delay_ms: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            endpoint: None,
            service_name: "clawbutler".into(),
            sample_ratio: 1.0,
            export_timeout_ms: 5_000,
            max_queue_spans: 4_096,
            max_batch_spans: 512,
            batch_delay_ms: 1_000,
        }
    }
}

impl TelemetrySettings {
    /// Check what is not a number range (the ranges are checked with every other numeric
    /// key by the config loader); the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(Err(e)) = self.traces_url() {
            return Err(("telemetry.endpoint", e));
        }
        if self.service_name.trim().is_empty() {
            return Err(("telemetry.service_name", "must not be empty".into()));
        }
        Ok(())
    }

    /// The URL spans are POSTed to: `None` when off, an error for a URL that is not http(s).
    pub fn traces_url(&self) -> Option<Result<String, String>> {
        let raw = self.endpoint.as_deref()?.trim();
        let uri: http::Uri = match raw.parse() {
            Ok(u) => u,
            Err(e) => return Some(Err(format!("not a URL: {e}"))),
        };
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Some(Err("must be an http:// or https:// URL with a host".into()));
        }
        let path = uri.path();
        Some(Ok(if path.is_empty() || path == "/" {
            format!("{}/v1/traces", raw.trim_end_matches('/'))
        } else {
            raw.to_string()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        let mut s = TelemetrySettings::default();
        assert!(s.traces_url().is_none() && s.validate().is_ok());
        s.endpoint = Some("http://127.0.0.1:4318".into());
        assert_eq!(s.traces_url(), Some(Ok("http://127.0.0.1:4318/v1/traces".into())));
        s.endpoint = Some("https://otel.example/custom/traces".into());
        assert_eq!(s.traces_url(), Some(Ok("https://otel.example/custom/traces".into())));
        s.endpoint = Some("ftp://x".into());
        assert_eq!(s.validate().unwrap_err().0, "telemetry.endpoint");
        s.endpoint = None;
        s.service_name = " ".into();
        assert_eq!(s.validate().unwrap_err().0, "telemetry.service_name");
    }
}

//! `[gateway]`: where the OpenClaw gateway is and how the link behaves. Without `url` there
//! is no link: the control API still works and the kill switch still blocks at the proxy.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[gateway]` config section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// `ws://127.0.0.1:18789`; unset = no gateway link.
    pub url: Option<String>,
    /// Environment variable holding the gateway's shared token (or password).
    pub token_env: String,
    /// Sign the connect challenge with an Ed25519 device key: `auto` (only off loopback),
    /// `always`, `never`.
    pub device_identity: DeviceMode,
    /// Device key file; default `<data_dir>/gateway/device.key`.
    pub device_key: Option<PathBuf>,
    /// First reconnect delay.
    pub reconnect_initial_ms: u64,
    /// Cap of the exponential reconnect delay.
    pub reconnect_max_ms: u64,
    /// How long one request may wait for its answer (every RPC the link sends has this
    /// deadline unless its caller gives a longer one, e.g. a whole agent run).
    pub request_timeout_ms: u64,
    /// How often the link sends a WebSocket ping.
    pub ping_interval_ms: u64,
    /// How long a ping may go unanswered (no pong, no frame at all) before the link is
    /// declared dead. A hung gateway is noticed within `ping_interval_ms + pong_timeout_ms`.
    pub pong_timeout_ms: u64,
    /// Frames above this many bytes are logged and dropped.
    pub max_frame_bytes: usize,
    /// Act as the gateway's exec approver (decide `exec.approval.requested` by policy).
    pub exec_approvals: bool,
    /// The gateway's own config file (`~/.openclaw/openclaw.json`), when this machine can
    /// read it: a `backup` package takes the secrets `config.get` redacts from it. Unset =
    /// such a package lists those secrets as missing.
    pub config_file: Option<PathBuf>,
}

/// See [`GatewaySettings::device_identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceMode {
    Auto,
    Always,
    Never,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            url: None,
            token_env: "OPENCLAW_GATEWAY_TOKEN".into(),
            device_identity: DeviceMode::Auto,
            device_key: None,
            reconnect_initial_ms: 1000,
            reconnect_max_ms: 30_000,
            request_timeout_ms: 30_000,
            ping_interval_ms: 2_000,
            pong_timeout_ms: 5_000,
            max_frame_bytes: 25 * 1024 * 1024,
            exec_approvals: true,
            config_file: None,
        }
    }
}

impl GatewaySettings {
    /// Check the URL shape and the reconnect settings; the message names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(u) = &self.url {
            if !(u.starts_with("ws://") || u.starts_with("wss://")) {
                return Err(("gateway.url".into(), format!("'{u}' must start with ws:// or wss://")));
            }
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return Err((
                "gateway.reconnect_max_ms".into(),
                "reconnect_initial_ms must be > 0 and <= reconnect_max_ms".into(),
            ));
        }
        if self.ping_interval_ms == 0 || self.pong_timeout_ms == 0 {
            return Err(("gateway.pong_timeout_ms".into(), "ping_interval_ms and pong_timeout_ms must be > 0".into()));
        }
        if self.request_timeout_ms == 0 {
            return Err(("gateway.request_timeout_ms".into(), "must be > 0".into()));
        }
        Ok(())
    }

    /// The longest a hung gateway can go unnoticed: the next ping is sent at most one interval
    /// after the gateway stopped, and declared unanswered `pong_timeout_ms` later.
    pub fn dead_link_bound(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ping_interval_ms.saturating_add(self.pong_timeout_ms))
    }

    /// Whether the URL's host is a loopback address (device identity is optional there).
    pub fn is_loopback(url: &str) -> bool {
        let rest = url.split("://").nth(1).unwrap_or(url);
        let host = rest.split('/').next().unwrap_or("");
        let host = match host.strip_prefix('[') {
            Some(h) => h.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether to sign with a device key for `url`.
    pub fn use_device(&self, url: &str) -> bool {
        match self.device_identity {
            DeviceMode::Always => true,
            DeviceMode::Never => false,
            DeviceMode::Auto => !Self::is_loopback(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(GatewaySettings::is_loopback("ws://127.0.0.1:18789"));
        assert!(GatewaySettings::is_loopback("ws://localhost:1/"));
        assert!(GatewaySettings::is_loopback("ws://[::1]:18789"));
        assert!(!GatewaySettings::is_loopback("wss://gw.example.com:443"));
        assert!(!GatewaySettings::is_loopback("ws://10.0.0.5:18789"));
        let s = GatewaySettings::default();
        assert!(s.use_device("ws://10.0.0.5:1") && !s.use_device("ws://127.0.0.1:1"));
    }

    #[test]
    fn a_hung_gateway_is_noticed_within_ten_seconds_by_default() {
        let s = GatewaySettings::default();
        assert!(s.dead_link_bound() <= std::time::Duration::from_secs(10), "{:?}", s.dead_link_bound());
        assert!(s.validate().is_ok());
        let zero = GatewaySettings { pong_timeout_ms: 0, ..Default::default() };
        assert_eq!(zero.validate().unwrap_err().0, "gateway.pong_timeout_ms");
    }

    #[test]
    fn bad_url_is_named() {
        let s = GatewaySettings { url: Some("http://x".into()), ..Default::default() };
        assert_eq!(s.validate().unwrap_err().0, "gateway.url");
    }
}

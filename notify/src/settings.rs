//! `[notify]`: channels, routes, escalation, digest and Web Push settings. Every key has a
//! default; a config without `[[notify.channels]]` and `[[notify.routes]]` sends nothing.
//! Secrets (webhook signing keys, Slack URLs, bot tokens, SMTP passwords) are never written
//! in the file: each is read from an environment variable (`*_env`) or a file (`*_file`).

use decision::Risk;
use serde::{Deserialize, Serialize};

use crate::route::RouteSpec;

/// `[notify]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// Off: nothing is classified, queued or sent (the API still answers).
    pub enabled: bool,
    /// The UI's address as approvers reach it (links in messages). Default:
    /// `http://<server.control_listen>` as bound.
    pub public_url: Option<String>,
    /// Events waiting for routing; beyond it new events are dropped and counted.
    pub queue_capacity: usize,
    /// Deliveries queued or being retried at once; beyond it new ones are dropped and counted.
    pub max_in_flight: usize,
    /// Events of one kind for one agent on one route arriving within this window become one
    /// message with a count.
    pub burst_ms: u64,
    /// After a message, further events of the same kind and agent on the route wait this long
    /// and then leave as one message with their count (0: only bursts are merged).
    pub cooldown_s: u64,
    /// Retries after a failed attempt (so `retry_max + 1` attempts at most).
    pub retry_max: u32,
    /// First retry delay; doubles each time up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// One attempt's time limit (connect + answer).
    pub timeout_ms: u64,
    /// Longest life of an action link (it also dies when its approval expires).
    pub link_ttl_s: u64,
    /// Delivery log entries kept (oldest removed first).
    pub log_max: usize,
    #[serde(rename = "channels")]
    pub channels: Vec<ChannelConfig>,
    /// Routes from the config (read-only through the API).
    pub routes: Vec<RouteSpec>,
    pub escalation: EscalationSettings,
    pub digest: DigestSettings,
    pub push: PushSettings,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            enabled: true,
            public_url: None,
            queue_capacity: 4096,
            max_in_flight: 1024,
            burst_ms: 300,
            cooldown_s: 0,
            retry_max: 4,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
            timeout_ms: 10_000,
            link_ttl_s: 3_600,
            log_max: 10_000,
            channels: Vec::new(),
            routes: Vec::new(),
            escalation: EscalationSettings::default(),
            digest: DigestSettings::default(),
            push: PushSettings::default(),
        }
    }
}

/// `[notify.escalation]`: when a pending approval is escalated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationSettings {
    /// Seconds pending before `approval.escalated`, by risk (0: never for that risk).
    pub after_s: PerRisk,
    /// Seconds before expiry for `approval.expiring` (0: off).
    pub before_expiry_s: u64,
}

impl Default for EscalationSettings {
    fn default() -> Self {
        EscalationSettings { after_s: PerRisk { low: 0, medium: 900, high: 300, critical: 120 }, before_expiry_s: 120 }
    }
}

/// One number per risk level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerRisk {
    pub low: u64,
    pub medium: u64,
    pub high: u64,
    pub critical: u64,
}

impl PerRisk {
    /// The value for `r`.
    pub fn get(&self, r: Risk) -> u64 {
        match r {
            Risk::Low => self.low,
            Risk::Medium => self.medium,
            Risk::High => self.high,
            Risk::Critical => self.critical,
        }
    }
}

/// `[notify.digest]`: a daily summary sent to one route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestSettings {
    /// The route whose channels get the digest (none: no digest).
    pub route: Option<String>,
    /// Local time of day, `HH:MM`.
    pub at: String,
    /// IANA time zone of `at` (e.g. `Europe/Berlin`).
    pub timezone: String,
}

impl Default for DigestSettings {
    fn default() -> Self {
        DigestSettings { route: None, at: "08:00".into(), timezone: "UTC".into() }
    }
}

/// `[notify.push]`: Web Push to the UI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSettings {
    /// The VAPID `sub` claim: how a push service reaches the operator (`mailto:` or `https:`).
    pub subject: String,
    /// Accept `http://` push endpoints on loopback addresses (tests); real push services are
    /// always HTTPS.
    pub allow_loopback_http: bool,
    /// Subscriptions one token may register.
    pub max_per_token: usize,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings { subject: "mailto:clawbutler@localhost".into(), allow_loopback_http: false, max_per_token: 10 }
    }
}

/// Kinds of channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Webhook,
    Slack,
    Telegram,
    Email,
    Push,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Email => "email",
            ChannelKind::Push => "push",
        }
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connect, then STARTTLS (required: a server without it is refused).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// `[[notify.channels]]`: one destination. Which keys apply depends on `kind` (see
/// docs/notifications.md); a key that does not apply to the kind is refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// Unique name; routes name channels by it, and it is the metrics label.
    pub name: String,
    pub kind: Option<ChannelKind>,
    /// The token name whose preferences (UI) apply to this channel.
    pub user: Option<String>,
    /// webhook, slack: the URL (a Slack URL is itself a secret: prefer `url_env`/`url_file`).
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<String>,
    /// webhook: the HMAC-SHA256 signing secret.
    pub secret_env: Option<String>,
    pub secret_file: Option<String>,
    /// telegram: API base URL (default `https://api.telegram.org`), bot token, chat id.
    pub base_url: Option<String>,
    pub bot_token_env: Option<String>,
    pub bot_token_file: Option<String>,
    pub chat_id: Option<String>,
    /// email: SMTP server, port (default 587 for STARTTLS, 465 for TLS), security.
    pub host: Option<String>,
    pub port: Option<u16>,
    pub tls: Option<SmtpTls>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
    pub from: Option<String>,
    pub to: Vec<String>,
    /// email: an extra CA certificate (PEM) to trust for this server, besides the web PKI.
    pub ca_file: Option<String>,
}

/// A config problem: (key, message).
pub type Invalid = (String, String);

fn bad(key: impl Into<String>, msg: impl Into<String>) -> Invalid {
    (key.into(), msg.into())
}

/// Parse `HH:MM` into minutes after midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Parse an IANA time zone name.
pub fn parse_tz(s: &str) -> Option<chrono_tz::Tz> {
    s.parse().ok()
}

impl NotifySettings {
    /// Checks serde cannot express; every message names the key.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(u) = &self.public_url {
            let ok = (u.starts_with("http://") || u.starts_with("https://")) && u.parse::<http::Uri>().is_ok();
            if !ok {
                return Err(bad("notify.public_url", format!("'{u}' is not an http(s) URL")));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.channels {
            let key = format!("notify.channels[{}]", c.name);
            if !crate::route::valid_id(&c.name) {
                return Err(bad(
                    "notify.channels.name",
                    format!("'{}' must be 1 to 64 characters of a-z, 0-9, '-', '_'", c.name),
                ));
            }
            if !names.insert(c.name.clone()) {
                return Err(bad(key, "two channels have this name"));
            }
            c.validate(&key, self.push.allow_loopback_http)?;
        }
        let mut ids = std::collections::BTreeSet::new();
        for r in &self.routes {
            let key = format!("notify.routes[{}]", r.id);
            r.validate().map_err(|m| bad(key.clone(), m))?;
            if !ids.insert(r.id.clone()) {
                return Err(bad(key, "two routes have this id"));
            }
            for ch in &r.channels {
                if !names.contains(ch) {
                    return Err(bad(format!("{key}.channels"), format!("no channel named '{ch}'")));
                }
            }
        }
        for r in &self.routes {
            if let Some(to) = &r.escalate_to {
                if !ids.contains(to) {
                    return Err(bad(format!("notify.routes[{}].escalate_to", r.id), format!("no route '{to}'")));
                }
            }
        }
        if let Some(route) = &self.digest.route {
            if !ids.contains(route) {
                return Err(bad("notify.digest.route", format!("no route '{route}' in [[notify.routes]]")));
            }
        }
        if parse_hhmm(&self.digest.at).is_none() {
            return Err(bad("notify.digest.at", format!("'{}' is not a time like 08:00", self.digest.at)));
        }
        if parse_tz(&self.digest.timezone).is_none() {
            return Err(bad("notify.digest.timezone", format!("'{}' is not an IANA time zone", self.digest.timezone)));
        }
        let s = &self.push.subject;
        if !(s.starts_with("mailto:") || s.starts_with("https://")) {
            return Err(bad("notify.push.subject", "must start with mailto: or https:"));
        }
        Ok(())
    }
}

impl ChannelConfig {
    fn validate(&self, key: &str, _loopback_http: bool) -> Result<(), Invalid> {
        let kind =
            self.kind.ok_or_else(|| bad(format!("{key}.kind"), "give webhook, slack, telegram, email or push"))?;
        let set = |v: &Option<String>| v.is_some();
        // Which optional keys each kind reads; any other one set is a mistake worth naming.
        let used: &[&str] = match kind {
            ChannelKind::Webhook => &["url", "url_env", "url_file", "secret_env", "secret_file"],
            ChannelKind::Slack => &["url", "url_env", "url_file"],
            ChannelKind::Telegram => &["base_url", "bot_token_env", "bot_token_file", "chat_id"],
            ChannelKind::Email => {
                &["host", "port", "tls", "username", "password_env", "password_file", "from", "to", "ca_file"]
            }
            ChannelKind::Push => &[],
        };
        let present: [(&str, bool); 18] = [
            ("url", set(&self.url)),
            ("url_env", set(&self.url_env)),
            ("url_file", set(&self.url_file)),
            ("secret_env", set(&self.secret_env)),
            ("secret_file", set(&self.secret_file)),
            ("base_url", set(&self.base_url)),
            ("bot_token_env", set(&self.bot_token_env)),
            ("bot_token_file", set(&self.bot_token_file)),
            ("chat_id", set(&self.chat_id)),
            ("host", set(&self.host)),
            ("port", self.port.is_some()),
            ("tls", self.tls.is_some()),
            ("username", set(&self.username)),
            ("password_env", set(&self.password_env)),
            ("password_file", set(&self.password_file)),
            ("from", set(&self.from)),
            ("to", !self.to.is_empty()),
            ("ca_file", set(&self.ca_file)),
        ];
        for (k, on) in present {
            if on && !used.contains(&k) {
                return Err(bad(format!("{key}.{k}"), format!("does not apply to a {} channel", kind.as_str())));
            }
        }
        let one_of = |what: &str, opts: [(&str, bool); 3]| -> Result<(), Invalid> {
            match opts.iter().filter(|(_, on)| *on).count() {
                1 => Ok(()),
                0 => Err(bad(format!("{key}.{what}"), format!("give one of {}", opts.map(|(k, _)| k).join(", ")))),
                _ => Err(bad(format!("{key}.{what}"), format!("give only one of {}", opts.map(|(k, _)| k).join(", ")))),
            }
        };
        let url3 = [("url", set(&self.url)), ("url_env", set(&self.url_env)), ("url_file", set(&self.url_file))];
        match kind {
            ChannelKind::Webhook => {
                one_of("url", url3)?;
                let s = [("secret_env", set(&self.secret_env)), ("secret_file", set(&self.secret_file)), ("", false)];
                one_of("secret", s)?;
            }
            ChannelKind::Slack => one_of("url", url3)?,
            ChannelKind::Telegram => {
                let t = [
                    ("bot_token_env", set(&self.bot_token_env)),
                    ("bot_token_file", set(&self.bot_token_file)),
                    ("", false),
                ];
                one_of("bot_token", t)?;
                if self.chat_id.as_deref().is_none_or(str::is_empty) {
                    return Err(bad(format!("{key}.chat_id"), "is required for a telegram channel"));
                }
            }
            ChannelKind::Email => {
                if self.host.as_deref().is_none_or(str::is_empty) {
                    return Err(bad(format!("{key}.host"), "is required for an email channel"));
                }
                if self.from.as_deref().is_none_or(|f| f.parse::<lettre::message::Mailbox>().is_err()) {
                    return Err(bad(format!("{key}.from"), "must be an e-mail address"));
                }
                if self.to.is_empty() {
                    return Err(bad(format!("{key}.to"), "give at least one recipient"));
                }
                for t in &self.to {
                    if t.parse::<lettre::message::Mailbox>().is_err() {
                        return Err(bad(format!("{key}.to"), format!("'{t}' is not an e-mail address")));
                    }
                }
                if self.password_env.is_some() && self.password_file.is_some() {
                    return Err(bad(format!("{key}.password"), "give only one of password_env, password_file"));
                }
                if (self.password_env.is_some() || self.password_file.is_some()) != self.username.is_some() {
                    return Err(bad(format!("{key}.username"), "SMTP auth needs both username and a password"));
                }
            }
            ChannelKind::Push => {}
        }
        if let Some(u) = &self.url {
            check_http_url(&format!("{key}.url"), u)?;
        }
        if let Some(u) = &self.base_url {
            check_http_url(&format!("{key}.base_url"), u)?;
        }
        Ok(())
    }
}

fn check_http_url(key: &str, u: &str) -> Result<(), Invalid> {
    let ok = (u.starts_with("http://") || u.starts_with("https://")) && u.parse::<http::Uri>().is_ok();
    if ok {
        Ok(())
    } else {
        Err(bad(key, "is not an http(s) URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hhmm_and_time_zones() {
        assert_eq!(parse_hhmm("08:00"), Some(480));
        assert_eq!(parse_hhmm("23:59"), Some(1439));
        for bad in ["8:00", "24:00", "12:60", "noon", ""] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
        assert!(parse_tz("Europe/Berlin").is_some());
        assert!(parse_tz("Mars/Olympus").is_none());
    }
}

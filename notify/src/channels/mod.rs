//! Channels: where a message goes. Each is built once at start from `[[notify.channels]]`
//! (secrets read from their env var or file then, never logged), and sends one message per
//! call; the delivery worker (`deliver.rs`) owns retries, the log, metrics and audit.

pub mod chat;
pub mod email;
pub mod http;
pub mod push;
pub mod webhook;

use std::path::Path;
use std::time::Duration;

use crate::message::Message;
use crate::settings::{ChannelConfig, ChannelKind, Invalid};

/// Why one attempt failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Connect(String),
    #[error("no answer within the timeout")]
    Timeout,
    #[error("the receiver answered HTTP {code}: {body}")]
    Status { code: u16, body: String },
    /// The receiver answered but refused (Telegram `ok: false`, an SMTP permanent error).
    #[error("refused: {0}")]
    Refused(String),
    /// A temporary refusal (SMTP 4xx).
    #[error("temporarily refused: {0}")]
    Transient(String),
    /// Nobody to send to (no push subscription wants it).
    #[error("no recipient: {0}")]
    NoRecipient(String),
    #[error("channel setup: {0}")]
    Config(String),
}

impl SendError {
    /// Whether another attempt may succeed: network trouble, timeouts, 5xx, 408, 429 and
    /// temporary refusals are retried; other 4xx and permanent refusals are not.
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Connect(_) | SendError::Timeout | SendError::Transient(_) => true,
            SendError::Status { code, .. } => *code >= 500 || *code == 408 || *code == 429,
            SendError::Refused(_) | SendError::NoRecipient(_) | SendError::Config(_) => false,
        }
    }
}

/// What a channel needs besides the message.
pub struct SendCtx<'a> {
    pub http: &'a http::HttpClient,
    pub timeout: Duration,
    pub delivery_id: &'a str,
    pub route: &'a str,
    pub push: &'a push::PushCtx,
}

enum Imp {
    Webhook(webhook::Webhook),
    Slack { url: String },
    Telegram(chat::Telegram),
    Email(Box<email::Email>),
    Push,
}

/// A configured channel.
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// The token name whose preferences apply.
    pub user: Option<String>,
    imp: Imp,
}

/// Read a secret from `env` or `file` (one of them is set; validated before).
fn secret(key: &str, env: &Option<String>, file: &Option<String>) -> Result<String, Invalid> {
    if let Some(var) = env {
        return std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| v.trim().to_string())
            .ok_or_else(|| (key.to_string(), format!("environment variable {var} is not set")));
    }
    if let Some(path) = file {
        return std::fs::read_to_string(Path::new(path))
            .map(|v| v.trim().to_string())
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| (key.to_string(), format!("cannot read a value from {path}")));
    }
    Err((key.to_string(), "not set".into()))
}

impl Channel {
    /// Build from config (after `NotifySettings::validate`).
    pub fn build(c: &ChannelConfig, timeout: Duration) -> Result<Channel, Invalid> {
        let key = format!("notify.channels[{}]", c.name);
        let kind = c.kind.ok_or_else(|| (format!("{key}.kind"), "missing".to_string()))?;
        let url = || -> Result<String, Invalid> {
            match &c.url {
                Some(u) => Ok(u.clone()),
                None => secret(&format!("{key}.url"), &c.url_env, &c.url_file),
            }
        };
        let imp = match kind {
            ChannelKind::Webhook => Imp::Webhook(webhook::Webhook {
                url: url()?,
                secret: secret(&format!("{key}.secret"), &c.secret_env, &c.secret_file)?,
            }),
            ChannelKind::Slack => Imp::Slack { url: url()? },
            ChannelKind::Telegram => Imp::Telegram(chat::Telegram {
                base: c.base_url.clone().unwrap_or_else(|| "https://api.telegram.org".into()),
                token: secret(&format!("{key}.bot_token"), &c.bot_token_env, &c.bot_token_file)?,
                chat_id: c.chat_id.clone().unwrap_or_default(),
            }),
            ChannelKind::Email => {
                let password = match (&c.password_env, &c.password_file) {
                    (None, None) => None,
                    _ => Some(secret(&format!("{key}.password"), &c.password_env, &c.password_file)?),
                };
                Imp::Email(Box::new(email::Email::build(c, password, timeout).map_err(|m| (key.clone(), m))?))
            }
            ChannelKind::Push => Imp::Push,
        };
        Ok(Channel { name: c.name.clone(), kind, user: c.user.clone(), imp })
    }

    /// One attempt; `Ok` carries a short note for the log (e.g. "2 of 2 devices").
    pub async fn send(&self, ctx: &SendCtx<'_>, msg: &Message) -> Result<Option<String>, SendError> {
        match &self.imp {
            Imp::Webhook(w) => w.send(ctx, msg).await.map(|_| None),
            Imp::Slack { url } => {
                let body = chat::slack_payload(msg);
                let mut h = ::http::HeaderMap::new();
                h.insert(::http::header::CONTENT_TYPE, ::http::HeaderValue::from_static("application/json"));
                http::post(ctx.http, url, h, body.to_string().into_bytes(), ctx.timeout).await.map(|_| None)
            }
            Imp::Telegram(t) => t.send(ctx, msg).await.map(|_| None),
            Imp::Email(e) => e.send(msg).await.map(|_| None),
            Imp::Push => push::send(ctx, &self.name, msg).await.map(Some),
        }
    }
}

//! The generic webhook: a JSON POST, signed so a receiver can tell it came from this sidecar
//! and refuse replays (docs/notifications.md has the verification recipe):
//!
//! - `X-ClawButler-Timestamp`: unix seconds when the attempt was signed;
//! - `X-ClawButler-Delivery`: the delivery id (the same on every retry of one delivery, so a
//!   receiver that remembers ids processes each message once);
//! - `X-ClawButler-Signature`: `v1=` + hex HMAC-SHA256(secret, `<timestamp>.<delivery>.<body>`).
//!
//! A receiver checks the signature in constant time, refuses a timestamp more than five minutes
//! off its clock, and refuses a delivery id it has already accepted.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use serde_json::json;
use sha2::Sha256;

use super::{http as h, SendCtx, SendError};
use crate::message::Message;

pub const TIMESTAMP_HEADER: &str = "x-clawbutler-timestamp";
pub const DELIVERY_HEADER: &str = "x-clawbutler-delivery";
pub const SIGNATURE_HEADER: &str = "x-clawbutler-signature";

pub struct Webhook {
    pub url: String,
    pub secret: String,
}

/// `v1=<hex>` over `<timestamp>.<delivery>.<body>`.
pub fn signature(secret: &[u8], timestamp: i64, delivery: &str, body: &[u8]) -> String {
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(delivery.as_bytes());
    m.update(b".");
    m.update(body);
    format!("v1={}", hex::encode(m.finalize().into_bytes()))
}

/// The JSON body: the message and its (masked) events.
pub fn payload(ctx: &SendCtx<'_>, msg: &Message) -> serde_json::Value {
    json!({
        "delivery": ctx.delivery_id,
        "route": ctx.route,
        "event": msg.kind.as_str(),
        "risk": msg.risk,
        "agent": msg.agent,
        "count": msg.count,
        "title": msg.title,
        "text": msg.lines.join("\n"),
        "action_url": msg.action_url,
        "ui_url": msg.ui_url,
        "events": msg.events,
        "test": msg.test,
    })
}

impl Webhook {
    pub async fn send(&self, ctx: &SendCtx<'_>, msg: &Message) -> Result<(), SendError> {
        let body = payload(ctx, msg).to_string().into_bytes();
        let ts = chrono::Utc::now().timestamp();
        let sig = signature(self.secret.as_bytes(), ts, ctx.delivery_id, &body);
        let mut hm = HeaderMap::new();
        let val = |s: String| HeaderValue::from_str(&s).map_err(|e| SendError::Config(e.to_string()));
        hm.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        hm.insert(http::header::USER_AGENT, HeaderValue::from_static("ClawButler-Notify/1"));
        hm.insert(TIMESTAMP_HEADER, val(ts.to_string())?);
        hm.insert(DELIVERY_HEADER, val(ctx.delivery_id.to_string())?);
        hm.insert(SIGNATURE_HEADER, val(sig)?);
        h::post(ctx.http, &self.url, hm, body, ctx.timeout).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_timestamp_delivery_and_body() {
        let a = signature(b"k", 100, "d1", b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature(b"k", 101, "d1", b"{}"));
        assert_ne!(a, signature(b"k", 100, "d2", b"{}"));
        assert_ne!(a, signature(b"k", 100, "d1", b"{ }"));
        assert_ne!(a, signature(b"j", 100, "d1", b"{}"));
    }
}

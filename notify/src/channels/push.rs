//! Web Push to the UI's service worker: every subscription whose owner wants the event gets
//! the message, encrypted for that browser (RFC 8291 `aes128gcm`, by `web-push-native`) and
//! signed with the server's VAPID key (RFC 8292). A subscription the push service says is gone
//! (404/410) is removed. The payload is a small JSON object the service worker shows:
//! `{title, body, url, tag, risk, event}`.

use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::{http as h, SendCtx, SendError};
use crate::event::truncate;
use crate::message::Message;
use crate::store::{decode_keys, PrefStore, PushStore, Subscription};
use crate::vapid::VapidKey;

/// What the push channel reads.
pub struct PushCtx {
    pub store: PushStore,
    pub prefs: PrefStore,
    pub vapid: VapidKey,
    pub subject: String,
}

/// The JSON the service worker receives.
pub fn payload(msg: &Message) -> Vec<u8> {
    let mut body = msg.lines.iter().take(4).cloned().collect::<Vec<_>>().join("\n");
    truncate(&mut body, 700);
    let mut title = msg.title.clone();
    truncate(&mut title, 200);
    json!({
        "title": title,
        "body": body,
        "url": msg.action_url.as_deref().unwrap_or(&msg.ui_url),
        "tag": msg.events.first().and_then(|e| e.approval.as_ref().map(|a| a.id.clone())).unwrap_or_else(|| msg.kind.as_str().to_string()),
        "risk": msg.risk,
        "event": msg.kind.as_str(),
    })
    .to_string()
    .into_bytes()
}

async fn one(ctx: &SendCtx<'_>, sub: &Subscription, body: &[u8], msg: &Message) -> Result<(), SendError> {
    let (pk, auth) = decode_keys(&sub.keys).ok_or_else(|| SendError::Config("stored keys are unreadable".into()))?;
    let auth = web_push_native::Auth::clone_from_slice(&auth);
    let encrypted =
        web_push_native::encrypt(body.to_vec(), &pk, &auth).map_err(|e| SendError::Config(e.to_string()))?;
    let uri: http::Uri = sub.endpoint.parse().map_err(|_| SendError::Config("bad endpoint".into()))?;
    let vapid = ctx
        .push
        .vapid
        .authorization(&uri, &ctx.push.subject, chrono::Utc::now().timestamp())
        .ok_or_else(|| SendError::Config("cannot sign for this endpoint".into()))?;
    let mut hm = HeaderMap::new();
    let val = |s: &str| HeaderValue::from_str(s).map_err(|e| SendError::Config(e.to_string()));
    hm.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    hm.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("aes128gcm"));
    hm.insert("ttl", HeaderValue::from_static("3600"));
    let urgent = msg.risk >= decision::Risk::High || msg.kind.is_approval();
    hm.insert("urgency", HeaderValue::from_static(if urgent { "high" } else { "normal" }));
    hm.insert(http::header::AUTHORIZATION, val(&vapid)?);
    h::post(ctx.http, &sub.endpoint, hm, encrypted, ctx.timeout).await.map(|_| ())
}

/// Send to every subscription that wants it; `Ok` says how many devices got it.
pub async fn send(ctx: &SendCtx<'_>, channel: &str, msg: &Message) -> Result<String, SendError> {
    let subs: Vec<Subscription> = ctx
        .push
        .store
        .all()
        .into_iter()
        .filter(|s| ctx.push.prefs.get(&s.owner).wants(channel, msg.kind, msg.risk))
        .collect();
    if subs.is_empty() {
        return Err(SendError::NoRecipient("no push subscription wants this (subscribe in the UI)".into()));
    }
    let body = payload(msg);
    let mut ok = 0;
    let mut first_err = None;
    let mut retryable = false;
    for mut sub in subs.iter().cloned() {
        match one(ctx, &sub, &body, msg).await {
            Ok(()) => {
                ok += 1;
                sub.last_ok_at = Some(crate::store::now());
                sub.last_error = None;
                let _ = ctx.push.store.put(&sub);
            }
            Err(SendError::Status { code: 404 | 410, .. }) => {
                tracing::info!(subscription = %sub.id, "push subscription gone (404/410): removed");
                let _ = ctx.push.store.remove(&sub.id);
            }
            Err(e) => {
                retryable |= e.retryable();
                sub.last_error = Some(e.to_string());
                let _ = ctx.push.store.put(&sub);
                first_err.get_or_insert(e);
            }
        }
    }
    match (ok, first_err) {
        (0, Some(e)) if retryable => Err(e),
        (0, Some(e)) => Err(SendError::Refused(e.to_string())),
        (0, None) => Err(SendError::NoRecipient("every subscription was gone".into())),
        (n, _) => Ok(format!("{n} of {} devices", subs.len())),
    }
}

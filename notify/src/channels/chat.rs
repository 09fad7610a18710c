//! Chat formats: a Slack-compatible incoming webhook (also Mattermost, Rocket.Chat and others
//! that take Slack's shape) and the Telegram Bot API's `sendMessage`. Plain HTTPS calls; the
//! base URL of each is configurable. Text is escaped for each format, so what an agent wrote
//! cannot become markup or a mention.

use http::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

use super::{http as h, SendCtx, SendError};
use crate::event::truncate;
use crate::message::Message;

/// Slack mrkdwn escaping: `&`, `<`, `>` (which would otherwise make links and mentions).
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The incoming-webhook body.
pub fn slack_payload(msg: &Message) -> Value {
    let mut title = msg.title.clone();
    truncate(&mut title, 150);
    let mut body = slack_escape(&msg.lines.join("\n"));
    truncate(&mut body, 2900);
    let (label, url) = match &msg.action_url {
        Some(u) => ("Open approval", u.clone()),
        None => ("Open ClawButler", msg.ui_url.clone()),
    };
    json!({
        "text": slack_escape(&msg.title),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
            ]},
        ],
        "unfurl_links": false,
        "unfurl_media": false,
    })
}

/// Telegram HTML escaping.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

pub struct Telegram {
    pub base: String,
    pub token: String,
    pub chat_id: String,
}

/// The `sendMessage` body. Links are in the text; an https link also gets a button (Telegram
/// refuses buttons to other URLs). Link previews are off: a preview fetch would use up a
/// single-use link.
pub fn telegram_payload(chat_id: &str, msg: &Message) -> Value {
    let link = msg.action_url.as_deref().unwrap_or(&msg.ui_url);
    let label = if msg.action_url.is_some() { "Open approval" } else { "Open ClawButler" };
    let mut text = format!(
        "<b>{}</b>\n{}\n\n<a href=\"{}\">{label}</a>",
        html_escape(&msg.title),
        html_escape(&msg.lines.join("\n")),
        html_escape(link)
    );
    truncate(&mut text, 4000);
    let mut v = json!({
        "chat_id": chat_id,
        "text": text,
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": true},
    });
    if link.starts_with("https://") {
        v["reply_markup"] = json!({"inline_keyboard": [[{"text": label, "url": link}]]});
    }
    v
}

impl Telegram {
    pub async fn send(&self, ctx: &SendCtx<'_>, msg: &Message) -> Result<(), SendError> {
        let url = format!("{}/bot{}/sendMessage", self.base.trim_end_matches('/'), self.token);
        let body = telegram_payload(&self.chat_id, msg).to_string().into_bytes();
        let mut hm = HeaderMap::new();
        hm.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let a = h::post(ctx.http, &url, hm, body, ctx.timeout).await?;
        let v: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
        if v["ok"] != Value::Bool(true) {
            return Err(SendError::Refused(h::snippet(v["description"].as_str().unwrap_or("no ok:true").as_bytes())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_text_cannot_become_markup() {
        assert_eq!(slack_escape("<!channel> & <http://x|y>"), "&lt;!channel&gt; &amp; &lt;http://x|y&gt;");
        assert_eq!(html_escape("<b>\"x\"</b>"), "&lt;b&gt;&quot;x&quot;&lt;/b&gt;");
    }
}

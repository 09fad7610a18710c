//! Slack-compatible and Telegram channels against receivers that check the real wire format:
//! Slack's incoming-webhook JSON (text fallback, header/section/actions blocks, a button with
//! the action link, agent text escaped) and the Bot API's `sendMessage` (token in the path,
//! `chat_id`, HTML text, previews off so nothing fetches the single-use link). A Telegram
//! `ok: false` answer is a refusal: logged as failed, not retried.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use testkit::http::{get, post_json};
use testkit::rig::{bearer, ADMIN};

use super::receiver::{Got, Receiver};
use super::{link_token, rig, secret_file, wait_deliveries};

const BOT_TOKEN: &str = "7311:AAF-test-bot-token-x9";

/// Slack's incoming webhook answers `ok` to a body it accepts, 400 `invalid_payload` otherwise.
fn slack_check(g: &Got) -> (u16, String) {
    let ok = (|| {
        let v: Value = serde_json::from_slice(&g.body).ok()?;
        let blocks = v["blocks"].as_array()?;
        let types: Vec<&str> = blocks.iter().filter_map(|b| b["type"].as_str()).collect();
        (g.header("content-type") == Some("application/json")
            && v["text"].as_str().is_some_and(|t| !t.is_empty())
            && types == ["header", "section", "actions"]
            && blocks[0]["text"]["type"] == "plain_text"
            && blocks[1]["text"]["type"] == "mrkdwn"
            && blocks[2]["elements"][0]["type"] == "button"
            && blocks[2]["elements"][0]["url"].as_str().is_some_and(|u| u.starts_with("http")))
        .then_some(())
    })();
    match ok {
        Some(()) => (200, "ok".into()),
        None => (400, "invalid_payload".into()),
    }
}

/// The Bot API: `POST /bot<token>/sendMessage` with a JSON body; `{"ok":true,...}` or
/// `{"ok":false,"error_code":400,"description":...}` (HTTP 400).
fn telegram_check(g: &Got) -> (u16, String) {
    if g.path != format!("/bot{BOT_TOKEN}/sendMessage") {
        return (404, r#"{"ok":false,"error_code":404,"description":"Not Found"}"#.into());
    }
    let v: Value = serde_json::from_slice(&g.body).unwrap_or(Value::Null);
    if v["chat_id"] == "-100200300" && v["parse_mode"] == "HTML" && v["text"].as_str().is_some() {
        return (200, r#"{"ok":true,"result":{"message_id":42,"chat":{"id":-100200300}}}"#.into());
    }
    (400, r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#.into())
}

#[tokio::test]
async fn slack_and_telegram_get_their_own_wire_format_with_the_action_link() {
    let slack = Receiver::start(Arc::new(slack_check)).await;
    let tg = Receiver::start(Arc::new(telegram_check)).await;
    let tmp = tempfile::tempdir().unwrap();
    let slack_url = secret_file(tmp.path(), "slack.url", &slack.url("/services/T000/B000/XXXXSECRET"));
    let token = secret_file(tmp.path(), "bot.token", BOT_TOKEN);
    let rig = rig(&format!(
        r#"[notify]
[[notify.channels]]
name = "team-slack"
kind = "slack"
url_file = "{slack_url}"
[[notify.channels]]
name = "team-telegram"
kind = "telegram"
base_url = "{}"
bot_token_file = "{token}"
chat_id = "-100200300"
[[notify.channels]]
name = "wrong-chat"
kind = "telegram"
base_url = "{}"
bot_token_file = "{token}"
chat_id = "12345"
[[notify.routes]]
id = "chat"
events = ["approval.created"]
channels = ["team-slack", "team-telegram"]
[[notify.routes]]
id = "misconfigured"
events = ["budget.open"]
channels = ["wrong-chat"]
"#,
        tg.url(""),
        tg.url("")
    ))
    .await;

    // Agent text that would be markup or a mention in either format.
    let _held = rig.call("main", "needs-approval-chat", "ping <!here> & <b>bold</b> please");
    let a = rig.wait_pending("main", 1).await.remove(0);
    let id = a["id"].as_str().unwrap();

    let s = slack.next(Duration::from_secs(5)).await.expect("a Slack message");
    assert_eq!((s.status, s.answer.as_str()), (200, "ok"), "{}", s.text());
    assert_eq!(s.path, "/services/T000/B000/XXXXSECRET");
    let v = s.json();
    let section = v["blocks"][1]["text"]["text"].as_str().unwrap();
    assert!(section.contains("&lt;!here&gt;") && !section.contains("<!here>"), "escaped: {section}");
    let button = v["blocks"][2]["elements"][0]["url"].as_str().unwrap();
    assert!(button.contains("/n/"), "{button}");
    assert_eq!(v["unfurl_links"], false);

    let t = tg.next(Duration::from_secs(5)).await.expect("a Telegram message");
    assert_eq!(t.status, 200, "{}", t.answer);
    let v = t.json();
    let text = v["text"].as_str().unwrap();
    assert!(text.starts_with("<b>[HIGH] "), "{text}");
    assert!(text.contains("&lt;!here&gt;") && !text.contains("<!here>") && !text.contains("<b>bold"), "{text}");
    assert_eq!(v["link_preview_options"]["is_disabled"], true, "a preview fetch would use up the link");
    // A plain-http console gets the link in the text only (Telegram refuses non-https buttons).
    assert!(v.get("reply_markup").is_none(), "{v}");
    let tg_link = text.split("href=\"").nth(1).unwrap().split('"').next().unwrap();
    assert_ne!(link_token(tg_link), link_token(button), "every message has its own link");
    let (status, loc, _) = super::open_link(&rig, &link_token(tg_link)).await;
    assert_eq!((status, loc), (303, Some(format!("/#/approvals/{id}"))));

    // A test send through a route whose chat id is wrong: Telegram's refusal is shown.
    let r =
        post_json(&rig.control("/api/v1/notifications/routes/misconfigured/test"), &bearer(ADMIN), &Value::Null).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["delivered"], 0);
    let item = &r.json()["items"][0];
    assert_eq!((item["status"].as_str(), item["attempts"].as_u64()), (Some("failed"), Some(1)), "{item}");
    assert!(item["last_error"].as_str().unwrap().contains("chat not found"), "{item}");
    assert_eq!(tg.next(Duration::from_secs(5)).await.expect("the refused request").status, 400);
    let failed = wait_deliveries(&rig, "channel=wrong-chat&status=failed", 1).await;
    assert_eq!(failed[0]["test"], true);

    // The Slack URL and the bot token appear nowhere a user or auditor can read.
    let mut seen = get(&rig.control("/api/v1/notifications"), &bearer(ADMIN)).await.text();
    seen += &get(&rig.control("/api/v1/notifications/deliveries"), &bearer(ADMIN)).await.text();
    seen += &serde_json::to_string(&rig.audit("kind=notification").await).unwrap();
    assert!(!seen.contains("XXXXSECRET") && !seen.contains(BOT_TOKEN), "{seen}");

    // The CLI: `clawbutler notify test <route>` through the running sidecar.
    let (code, out) = cli(&rig, &["notify", "test", "chat"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 of 2 channels delivered") && out.contains("team-telegram"), "{out}");
    assert_eq!(slack.next(Duration::from_secs(5)).await.expect("the CLI's test message").status, 200);
    let t = tg.next(Duration::from_secs(5)).await.expect("the CLI's test message");
    assert!(t.json()["text"].as_str().unwrap().contains("Test message for route 'chat'"), "{}", t.text());
    let (code, out) = cli(&rig, &["notify", "test", "misconfigured"]).await;
    assert_eq!(code, 1, "a failed channel is a failed command: {out}");
    assert!(out.contains("failed") && out.contains("chat not found"), "{out}");
    let (code, out) = cli(&rig, &["notify", "test", "no-such-route"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no route 'no-such-route'"), "{out}");
    let (code, out) = cli(&rig, &["notify", "deliveries", "--status", "failed"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("wrong-chat")).count(), 2, "{out}");
}

/// Run the real binary against the rig's control API: exit code, stdout + stderr.
async fn cli(rig: &testkit::rig::Rig, args: &[&str]) -> (i32, String) {
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend(["--url".into(), rig.control(""), "--token".into(), ADMIN.into()]);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_clawbutler"))
            .args(args)
            .env_remove("CLAWBUTLER_TOKEN")
            .env_remove("CLAWBUTLER_CONFIG")
            .output()
            .expect("run clawbutler")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

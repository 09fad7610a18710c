//! Anthropic Messages API (`POST /v1/messages`), shaped like api.anthropic.com's answers.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::openai::char_pieces;
use super::script::{plan, text_of, Action, Conversation, Limits, Plan};
use super::sse::{event, Pacing, ScriptBody, SseStream};
use super::{Reply, UpstreamOptions, Wait};

/// An Anthropic-shaped error reply: `{"type":"error","error":{"type","message"}}`.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    Reply::json(status, &json!({"type": "error", "error": {"type": kind, "message": message}}))
}

fn conversation(v: &Value) -> Conversation {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
    let mut conv = Conversation::new("messages", model);
    conv.media(v.get("messages").unwrap_or(&Value::Null));
    if let Some(system) = v.get("system") {
        conv.other(&text_of(system));
    }
    let messages = v.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (i, m) in messages.iter().enumerate() {
        let content = m.get("content").unwrap_or(&Value::Null);
        let user = m.get("role").and_then(Value::as_str) == Some("user");
        if let Value::Array(blocks) = content {
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("tool_result") => conv.tool_result(i, &b.get("content").map(text_of).unwrap_or_default()),
                    Some("tool_use") => conv.other(&b.get("input").map(Value::to_string).unwrap_or_default()),
                    _ => {}
                }
            }
        }
        if user {
            conv.user_content(i, content);
        } else {
            conv.other(&text_of(content));
        }
    }
    conv
}

/// `max_tokens`, and a `web_search_*` server tool with its `max_uses`.
fn limits(v: &Value) -> Limits {
    let search = v.get("tools").and_then(Value::as_array).into_iter().flatten().find_map(|t| {
        t.get("type")
            .and_then(Value::as_str)
            .is_some_and(|k| k.starts_with("web_search"))
            .then(|| t.get("max_uses").and_then(Value::as_u64))
    });
    Limits { cap: v.get("max_tokens").and_then(Value::as_u64), n: 1, search }
}

/// `POST /v1/messages`.
pub(crate) fn messages(v: &Value, opts: &UpstreamOptions) -> Reply {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let p = plan(conversation(v), opts, limits(v));
    match p.action {
        Action::Fail500 => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "api_error", "Internal server error (scripted FAIL500)")
        }
        Action::Fail429 => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "Number of requests has exceeded your rate limit (scripted FAIL429).",
            )
        }
        Action::DailyLimit => {
            return Reply {
                retry_after: Some(3600),
                ..error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "This organization's daily limit reached (scripted DAILY_LIMIT).",
                )
            }
        }
        Action::Hang => {
            return Reply {
                retry_after: None,
                status: StatusCode::OK,
                body: ScriptBody::Full(None),
                usage: None,
                wait: Wait::Hang,
            }
        }
        _ => {}
    }
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        let body = ScriptBody::Stream(stream(&p, &model, opts));
        return Reply { retry_after: None, status: StatusCode::OK, body, usage: Some(p.usage), wait: Wait::None };
    }
    let (content, stop) = match &p.action {
        Action::ToolCall(tc) => (
            json!([{"type": "tool_use", "id": p.id("toolu_", "tool"), "name": tc.name,
                    "input": serde_json::from_str::<Value>(&tc.arguments).unwrap_or(Value::Null)}]),
            "tool_use",
        ),
        _ => (
            json!([{"type": "text", "text": p.text().unwrap_or_default()}]),
            if p.truncated() { "max_tokens" } else { "end_turn" },
        ),
    };
    let body = json!({
        "id": p.id("msg_", "msg"), "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": usage_json(&p, p.usage.output_tokens),
    });
    let wait = if matches!(p.action, Action::Slow { .. }) { Wait::Delay(opts.slow_duration) } else { Wait::None };
    Reply { retry_after: None, status: StatusCode::OK, body: ScriptBody::json(&body), usage: Some(p.usage), wait }
}

/// Anthropic counts cache reads apart from `input_tokens`, and server tool calls apart.
fn usage_json(p: &Plan, output_tokens: u64) -> Value {
    if p.quirks.absurd_usage {
        return json!({"input_tokens": u64::MAX, "cache_creation_input_tokens": -1,
                      "cache_read_input_tokens": 0, "output_tokens": -5});
    }
    let mut u = json!({
        "input_tokens": p.usage.input_tokens - p.usage.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": p.usage.cached_tokens,
        "output_tokens": output_tokens,
    });
    if p.searches > 0 {
        u["server_tool_use"] = json!({"web_search_requests": p.searches});
    }
    u
}

fn stream(p: &Plan, model: &str, opts: &UpstreamOptions) -> SseStream {
    let ev = |name: &str, data: Value| -> Bytes { event(Some(name), &data) };
    let mut frames = vec![ev(
        "message_start",
        json!({"type": "message_start", "message": {
            "id": p.id("msg_", "msg"), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage_json(p, 1),
        }}),
    )];
    let stop = match &p.action {
        Action::ToolCall(tc) => {
            frames.push(ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {
                    "type": "tool_use", "id": p.id("toolu_", "tool"), "name": tc.name, "input": {}
                }}),
            ));
            let mut pieces = vec![String::new()];
            pieces.extend(char_pieces(&tc.arguments, 8));
            for piece in pieces {
                frames.push(ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
            "tool_use"
        }
        _ => {
            frames.push(ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ));
            frames.push(ev("ping", json!({"type": "ping"})));
            let pieces = p.pieces();
            for piece in pieces {
                frames.push(ev(
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
                ));
            }
            if p.truncated() {
                "max_tokens"
            } else {
                "end_turn"
            }
        }
    };
    frames.push(ev("content_block_stop", json!({"type": "content_block_stop", "index": 0})));
    let mut final_usage = usage_json(p, p.usage.output_tokens);
    if !p.quirks.absurd_usage {
        // message_delta repeats only the cumulative counts that changed.
        final_usage = json!({"output_tokens": p.usage.output_tokens});
        if p.searches > 0 {
            final_usage["server_tool_use"] = json!({"web_search_requests": p.searches});
        }
    }
    frames.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": final_usage}),
    ));
    frames.push(ev("message_stop", json!({"type": "message_stop"})));
    let pacing =
        matches!(p.action, Action::Slow { .. }).then(|| Pacing { burst: 3, interval: opts.slow_interval, tail: 3 });
    SseStream::new(frames, pacing).quirks(&p.quirks)
}

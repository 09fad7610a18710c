//! OpenAI Responses API (`POST /v1/responses`), streaming and not.

use http::StatusCode;
use serde_json::{json, Value};

use super::openai::absurd_usage;
use super::openai::{char_pieces, failure};
use super::script::{plan, text_of, Action, Conversation, Limits, Plan};
use super::sse::{event, Pacing, ScriptBody, SseStream};
use super::{Memory, Reply, UpstreamOptions, Usage, Wait};

/// The conversation, with the context a `previous_response_id` or `conversation` names (the
/// upstream bills it as input although it is not in the body); `Err` names an unknown id.
fn conversation(v: &Value, mem: &Memory) -> Result<Conversation, String> {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
    let mut conv = Conversation::new("responses", model);
    if let Some(id) = v.get("previous_response_id").and_then(Value::as_str) {
        let tokens = mem.get(id).ok_or_else(|| id.to_string())?;
        conv.stored(id, tokens);
    }
    if let Some(id) = conversation_id(v) {
        conv.stored(&id, mem.get(&id).unwrap_or(0));
    }
    conv.media(v.get("input").unwrap_or(&Value::Null));
    if let Some(s) = v.get("instructions").and_then(Value::as_str) {
        conv.other(s);
    }
    match v.get("input") {
        Some(Value::String(s)) => conv.user(0, s),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match (item.get("type").and_then(Value::as_str), item.get("role").and_then(Value::as_str)) {
                    (Some("function_call_output"), _) => {
                        let out = item.get("output").map(text_of).unwrap_or_default();
                        conv.tool_result(i, &out);
                    }
                    (Some("function_call"), _) => {
                        conv.other(item.get("arguments").and_then(Value::as_str).unwrap_or_default());
                    }
                    (_, Some("user")) => conv.user_content(i, item.get("content").unwrap_or(&Value::Null)),
                    _ => conv.other(&item.get("content").map(text_of).unwrap_or_default()),
                }
            }
        }
        _ => {}
    }
    Ok(conv)
}

/// `conversation` as a string or `{"id": ...}`.
fn conversation_id(v: &Value) -> Option<String> {
    let c = v.get("conversation")?;
    c.as_str().or_else(|| c.get("id").and_then(Value::as_str)).map(|s| format!("conv:{s}"))
}

/// `max_output_tokens`, and a web search tool with `max_tool_calls`.
fn limits(v: &Value) -> Limits {
    let searches = v
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|t| t.get("type").and_then(Value::as_str).is_some_and(|k| k.starts_with("web_search")));
    let max_calls = v.get("max_tool_calls").and_then(Value::as_u64);
    Limits { cap: v.get("max_output_tokens").and_then(Value::as_u64), n: 1, search: searches.then_some(max_calls) }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.input_tokens + u.output_tokens,
    })
}

fn response_obj(p: &Plan, model: &str, status: &str, mut output: Vec<Value>, usage: Option<&Usage>) -> Value {
    let searches = (0..p.searches).map(|i| {
        json!({"id": p.id("ws_", &format!("search{i}")), "type": "web_search_call", "status": "completed",
               "action": {"type": "search", "query": "scripted"}})
    });
    if !output.is_empty() {
        output.splice(0..0, searches);
    }
    let usage = match usage {
        Some(_) if p.quirks.absurd_usage => absurd_usage(),
        Some(u) => usage_json(u),
        None => Value::Null,
    };
    json!({
        "id": p.id("resp_", "resp"), "object": "response", "created_at": p.created(), "status": status,
        "error": null, "incomplete_details": null, "model": model, "output": output, "usage": usage,
    })
}

/// The finished output item (and its parts) for a plan.
fn output_item(p: &Plan, status: &str, text: &str, args: &str) -> Value {
    match &p.action {
        Action::ToolCall(tc) => json!({
            "id": p.id("fc_", "item"), "type": "function_call", "status": status,
            "arguments": args, "call_id": p.id("call_", "tool"), "name": tc.name,
        }),
        _ => {
            let content = if status == "completed" {
                vec![json!({"type": "output_text", "annotations": [], "text": text})]
            } else {
                vec![]
            };
            json!({"id": p.id("msg_", "item"), "type": "message", "status": status, "role": "assistant", "content": content})
        }
    }
}

/// `POST /v1/responses`. Unless `store` is false, the response's whole context (input and
/// output tokens) is remembered under its id for a later `previous_response_id`; a
/// `conversation` accumulates the same way.
pub(crate) fn responses(v: &Value, opts: &UpstreamOptions, mem: &Memory) -> Reply {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let conv = match conversation(v, mem) {
        Ok(c) => c,
        Err(id) => {
            return super::openai::error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("previous_response_not_found"),
                &format!("Previous response with id '{id}' not found."),
            )
        }
    };
    let p = plan(conv, opts, limits(v));
    if let Some(r) = failure(&p.action) {
        return r;
    }
    let context = p.usage.input_tokens + p.usage.output_tokens;
    if v.get("store").and_then(Value::as_bool) != Some(false) {
        mem.put(&p.id("resp_", "resp"), context);
    }
    if let Some(id) = conversation_id(v) {
        mem.put(&id, context);
    }
    let text = p.text().unwrap_or_default();
    let args = match &p.action {
        Action::ToolCall(tc) => tc.arguments.clone(),
        _ => String::new(),
    };
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        let body = ScriptBody::Stream(stream(&p, &model, &text, &args, opts));
        return Reply { retry_after: None, status: StatusCode::OK, body, usage: Some(p.usage), wait: Wait::None };
    }
    let item = output_item(&p, "completed", &text, &args);
    let body = response_obj(&p, &model, "completed", vec![item], Some(&p.usage));
    let wait = if matches!(p.action, Action::Slow { .. }) { Wait::Delay(opts.slow_duration) } else { Wait::None };
    Reply { retry_after: None, status: StatusCode::OK, body: ScriptBody::json(&body), usage: Some(p.usage), wait }
}

fn stream(p: &Plan, model: &str, text: &str, args: &str, opts: &UpstreamOptions) -> SseStream {
    let mut events: Vec<(&str, Value)> = Vec::new();
    let pending = response_obj(p, model, "in_progress", vec![], None);
    events.push(("response.created", json!({"response": pending})));
    events.push(("response.in_progress", json!({"response": pending})));
    events.push((
        "response.output_item.added",
        json!({"output_index": 0, "item": output_item(p, "in_progress", "", "")}),
    ));
    let item_id = output_item(p, "completed", text, args)["id"].clone();
    let burst;
    let tail;
    match &p.action {
        Action::ToolCall { .. } => {
            burst = events.len();
            for piece in char_pieces(args, 8) {
                events.push((
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": 0, "delta": piece}),
                ));
            }
            events.push((
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": 0, "arguments": args}),
            ));
            tail = 3;
        }
        _ => {
            let part = |t: &str| json!({"type": "output_text", "annotations": [], "text": t});
            events.push((
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part("")}),
            ));
            burst = events.len();
            let pieces = p.pieces();
            for piece in pieces {
                events.push((
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece}),
                ));
            }
            events.push((
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
            ));
            events.push((
                "response.content_part.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part(text)}),
            ));
            tail = 4;
        }
    }
    let item = output_item(p, "completed", text, args);
    events.push(("response.output_item.done", json!({"output_index": 0, "item": item})));
    let done = response_obj(p, model, "completed", vec![item], Some(&p.usage));
    events.push(("response.completed", json!({"response": done})));

    let frames = events
        .into_iter()
        .enumerate()
        .map(|(seq, (name, data))| {
            let mut obj = serde_json::Map::new();
            obj.insert("type".into(), Value::from(name));
            obj.insert("sequence_number".into(), Value::from(seq));
            if let Value::Object(fields) = data {
                obj.extend(fields);
            }
            event(Some(name), &Value::Object(obj))
        })
        .collect();
    let pacing = matches!(p.action, Action::Slow { .. }).then(|| Pacing { burst, interval: opts.slow_interval, tail });
    SseStream::new(frames, pacing).quirks(&p.quirks)
}

//! OpenAI Responses API (`POST /v1/responses`), streaming and not.

use http::StatusCode;
use serde_json::{json, Value};

use super::openai::{char_pieces, exec_arguments, failure, word_pieces};
use super::script::{plan, text_of, Action, Conversation, Plan};
use super::sse::{event, Pacing, ScriptBody, SseStream};
use super::{Reply, UpstreamOptions, Usage, Wait};

fn conversation(v: &Value) -> Conversation {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
    let mut conv = Conversation::new("responses", model);
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
    conv
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

fn response_obj(p: &Plan, model: &str, status: &str, output: Vec<Value>, usage: Option<&Usage>) -> Value {
    json!({
        "id": p.id("resp_", "resp"), "object": "response", "created_at": p.created(), "status": status,
        "error": null, "incomplete_details": null, "model": model, "output": output,
        "usage": usage.map(usage_json),
    })
}

/// The finished output item (and its parts) for a plan.
fn output_item(p: &Plan, status: &str, text: &str, args: &str) -> Value {
    match &p.action {
        Action::ToolCall(_) => json!({
            "id": p.id("fc_", "item"), "type": "function_call", "status": status,
            "arguments": args, "call_id": p.id("call_", "tool"), "name": "exec",
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

/// `POST /v1/responses`.
pub(crate) fn responses(v: &Value, opts: &UpstreamOptions) -> Reply {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let p = plan(conversation(v), opts);
    if let Some(r) = failure(&p.action) {
        return r;
    }
    let text = p.text().unwrap_or_default();
    let args = match &p.action {
        Action::ToolCall(cmd) => exec_arguments(cmd),
        _ => String::new(),
    };
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        let body = ScriptBody::Stream(stream(&p, &model, &text, &args, opts));
        return Reply { status: StatusCode::OK, body, usage: Some(p.usage), wait: Wait::None };
    }
    let item = output_item(&p, "completed", &text, &args);
    let body = response_obj(&p, &model, "completed", vec![item], Some(&p.usage));
    let wait = if matches!(p.action, Action::Slow { .. }) { Wait::Delay(opts.slow_duration) } else { Wait::None };
    Reply { status: StatusCode::OK, body: ScriptBody::json(&body), usage: Some(p.usage), wait }
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
        Action::ToolCall(_) => {
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
            let pieces = match &p.action {
                Action::Slow { ticks } => vec![super::SLOW_TICK.to_owned(); *ticks],
                _ => word_pieces(text),
            };
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
    SseStream::new(frames, pacing)
}

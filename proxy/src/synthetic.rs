//! Synthetic replies: a deny (or any refusal meant for a human) answered as a normal assistant
//! message in the caller's own API shape, streamed when the caller streams. Through OpenClaw
//! this ends the turn with the sidecar's text shown to the user, with no retries and no key
//! cooldown (unlike 402/403, see docs/deny.md).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde_json::json;

use crate::body::{full, ResBody};
use crate::route::Endpoint;

/// Build the reply. `id` makes the message ids traceable to the decision.
pub fn reply(
    endpoint: Endpoint,
    stream: bool,
    include_usage: bool,
    model: &str,
    id: &str,
    text: &str,
) -> Response<ResBody> {
    let created = chrono::Utc::now().timestamp();
    let body = match (endpoint, stream) {
        (Endpoint::ChatCompletions, false) => chat(model, id, created, text).to_string(),
        (Endpoint::ChatCompletions, true) => chat_stream(model, id, created, text, include_usage),
        (Endpoint::Responses, false) => response_obj(model, id, created, text).to_string(),
        (Endpoint::Responses, true) => responses_stream(model, id, created, text),
        (Endpoint::Messages, false) => anthropic(model, id, text).to_string(),
        (Endpoint::Messages, true) => anthropic_stream(model, id, text),
        // No text form: callers of these get an error instead (see policy layer).
        (Endpoint::Embeddings | Endpoint::Models, _) => String::new(),
    };
    let mut res = Response::new(full(Bytes::from(body)));
    *res.status_mut() = StatusCode::OK;
    let ct = if stream { "text/event-stream" } else { "application/json" };
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    res
}

/// Whether an endpoint can carry a synthetic assistant message.
pub fn supports(endpoint: Endpoint) -> bool {
    matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Messages)
}

fn chat(model: &str, id: &str, created: i64, text: &str) -> serde_json::Value {
    json!({
        "id": format!("chatcmpl-clawbutler-{id}"), "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    })
}

fn sse_data(v: &serde_json::Value) -> String {
    format!("data: {v}\n\n")
}

fn chat_stream(model: &str, id: &str, created: i64, text: &str, include_usage: bool) -> String {
    let cid = format!("chatcmpl-clawbutler-{id}");
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let mut v = json!({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            v["usage"] = serde_json::Value::Null;
        }
        sse_data(&v)
    };
    let mut out = chunk(json!({"role": "assistant", "content": ""}), serde_json::Value::Null);
    out += &chunk(json!({"content": text}), serde_json::Value::Null);
    out += &chunk(json!({}), json!("stop"));
    if include_usage {
        out += &sse_data(&json!({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}));
    }
    out + "data: [DONE]\n\n"
}

fn response_obj(model: &str, id: &str, created: i64, text: &str) -> serde_json::Value {
    json!({
        "id": format!("resp_clawbutler_{id}"), "object": "response", "created_at": created, "status": "completed",
        "model": model,
        "output": [{"type": "message", "id": format!("msg_clawbutler_{id}"), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}]}],
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
    })
}

fn responses_stream(model: &str, id: &str, created: i64, text: &str) -> String {
    let done = response_obj(model, id, created, text);
    let mut started = done.clone();
    started["status"] = json!("in_progress");
    started["output"] = json!([]);
    let item_id = format!("msg_clawbutler_{id}");
    let item = done["output"][0].clone();
    let mut item_started = item.clone();
    item_started["status"] = json!("in_progress");
    item_started["content"] = json!([]);
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    let events = [
        ("response.created", json!({"type": "response.created", "sequence_number": 0, "response": started})),
        (
            "response.output_item.added",
            json!({"type": "response.output_item.added", "sequence_number": 1, "output_index": 0, "item": item_started}),
        ),
        (
            "response.content_part.added",
            json!({"type": "response.content_part.added", "sequence_number": 2, "item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
        ),
        (
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "sequence_number": 3, "item_id": item_id, "output_index": 0, "content_index": 0, "delta": text}),
        ),
        (
            "response.output_text.done",
            json!({"type": "response.output_text.done", "sequence_number": 4, "item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
        ),
        (
            "response.content_part.done",
            json!({"type": "response.content_part.done", "sequence_number": 5, "item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
        ),
        (
            "response.output_item.done",
            json!({"type": "response.output_item.done", "sequence_number": 6, "output_index": 0, "item": item}),
        ),
        ("response.completed", json!({"type": "response.completed", "sequence_number": 7, "response": done})),
    ];
    events.iter().map(|(name, v)| format!("event: {name}\ndata: {v}\n\n")).collect()
}

fn anthropic(model: &str, id: &str, text: &str) -> serde_json::Value {
    json!({
        "id": format!("msg_clawbutler_{id}"), "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 0, "output_tokens": 0}
    })
}

fn anthropic_stream(model: &str, id: &str, text: &str) -> String {
    let mut start = anthropic(model, id, "");
    start["content"] = json!([]);
    start["stop_reason"] = serde_json::Value::Null;
    let events = [
        ("message_start", json!({"type": "message_start", "message": start})),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
        ),
        ("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 0}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    events.iter().map(|(name, v)| format!("event: {name}\ndata: {v}\n\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::sse::{parse_event, Piece, SseSplitter};

    fn events(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        SseSplitter::default().push(s.as_bytes(), |p| {
            if let Piece::Event(e) = p {
                out.push(parse_event(e).data)
            }
        });
        out
    }

    #[test]
    fn chat_stream_is_valid_sse_with_text() {
        let s = chat_stream("m", "d1", 0, "denied: because", false);
        let evs = events(&s);
        assert_eq!(evs.last().map(String::as_str), Some("[DONE]"));
        let v: serde_json::Value = serde_json::from_str(&evs[1]).unwrap();
        assert_eq!(v["choices"][0]["delta"]["content"], "denied: because");
        assert!(v.get("usage").is_none());
        assert!(chat_stream("m", "d1", 0, "x", true).contains("\"choices\":[],\"usage\""));
    }

    #[test]
    fn anthropic_and_responses_streams_parse_and_carry_the_text() {
        let anth: Vec<serde_json::Value> = events(&anthropic_stream("m", "d", "denied: because"))
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        let types: Vec<&str> = anth.iter().filter_map(|v| v["type"].as_str()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(anth[2]["delta"]["text"], "denied: because");
        assert_eq!(anth[4]["delta"]["stop_reason"], "end_turn");

        let resp: Vec<serde_json::Value> = events(&responses_stream("m", "d", 0, "denied: because"))
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(resp.len(), 8, "{resp:?}");
        assert_eq!(resp.first().unwrap()["type"], "response.created");
        let delta = resp.iter().find(|v| v["type"] == "response.output_text.delta").unwrap();
        assert_eq!(delta["delta"], "denied: because");
        let done = resp.last().unwrap();
        assert_eq!(done["type"], "response.completed");
        let seqs: Vec<u64> = resp.iter().map(|v| v["sequence_number"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (0..8).collect::<Vec<u64>>(), "sequence numbers count up from 0");
    }
}

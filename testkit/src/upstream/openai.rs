//! OpenAI Chat Completions, Embeddings and Models, shaped like api.openai.com's answers.

use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};

use super::script::{plan, text_of, text_seed, unit_float, Action, Conversation, Limits, Plan};
use super::sse::{done, event, Pacing, ScriptBody, SseStream};
use super::{Reply, UpstreamOptions, Usage, Wait};

const FINGERPRINT: &str = "fp_scripted01";

/// An OpenAI-shaped error reply: `{"error":{"message","type","param","code"}}`.
pub(crate) fn error(status: StatusCode, kind: &str, code: Option<&str>, message: &str) -> Reply {
    Reply::json(status, &json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

/// The common failure actions, shared with the Responses route.
pub(crate) fn failure(action: &Action) -> Option<Reply> {
    match action {
        Action::Fail500 => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            "The server had an error while processing your request. Sorry about that! (scripted FAIL500)",
        )),
        Action::Fail429 => Some(error(
            StatusCode::TOO_MANY_REQUESTS,
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests (scripted FAIL429). Please try again later.",
        )),
        Action::DailyLimit => Some(Reply {
            retry_after: Some(3600),
            ..error(
                StatusCode::TOO_MANY_REQUESTS,
                "requests",
                Some("rate_limit_exceeded"),
                "You exceeded your usage quota: daily limit reached (scripted DAILY_LIMIT).",
            )
        }),
        Action::Hang => Some(Reply {
            retry_after: None,
            status: StatusCode::OK,
            body: ScriptBody::Full(None),
            usage: None,
            wait: Wait::Hang,
        }),
        _ => None,
    }
}

/// Split text into token-like pieces: each word with its leading space, like OpenAI's deltas.
pub(crate) fn word_pieces(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, w) in text.split(' ').enumerate() {
        if i == 0 {
            out.push(w.to_owned());
        } else {
            out.push(format!(" {w}"));
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

/// Split a string into pieces of at most `n` chars (tool-call argument deltas).
pub(crate) fn char_pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

fn conversation(v: &Value) -> Conversation {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
    let mut conv = Conversation::new("chat", model);
    conv.media(v.get("messages").unwrap_or(&Value::Null));
    let messages = v.get("messages").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (i, m) in messages.iter().enumerate() {
        let content = m.get("content").map(text_of).unwrap_or_default();
        match m.get("role").and_then(Value::as_str) {
            Some("user") => conv.user_content(i, m.get("content").unwrap_or(&Value::Null)),
            Some("tool" | "function") => conv.tool_result(i, &content),
            _ => {
                conv.other(&content);
                for tc in m.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
                    let args = tc.pointer("/function/arguments").and_then(Value::as_str).unwrap_or_default();
                    conv.other(args);
                }
            }
        }
    }
    conv
}

/// Chat's output cap (`max_tokens` when given, as OpenAI-compatible servers that predate
/// `max_completion_tokens` read it, else `max_completion_tokens`), `n`, and
/// `web_search_options` (a search model searches once per request).
fn limits(v: &Value) -> Limits {
    let cap = v.get("max_tokens").or_else(|| v.get("max_completion_tokens")).and_then(Value::as_u64);
    let n = v.get("n").and_then(Value::as_u64).unwrap_or(1);
    let search = v.get("web_search_options").filter(|o| !o.is_null()).map(|_| Some(1));
    Limits { cap, n, search }
}

/// `ABSURD_USAGE`: what a broken or hostile upstream might report.
pub(crate) fn absurd_usage() -> Value {
    json!({"prompt_tokens": u64::MAX, "completion_tokens": -5, "total_tokens": u64::MAX,
           "input_tokens": u64::MAX, "output_tokens": -5})
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0
        }
    })
}

/// `POST /v1/chat/completions`.
pub(crate) fn chat(v: &Value, opts: &UpstreamOptions) -> Reply {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default().to_owned();
    let p = plan(conversation(v), opts, limits(v));
    if let Some(r) = failure(&p.action) {
        return r;
    }
    let usage = if p.quirks.absurd_usage { absurd_usage() } else { usage_json(&p.usage) };
    let stream = v.get("stream").and_then(Value::as_bool) == Some(true);
    if stream {
        let include_usage = v.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        let body = ScriptBody::Stream(chat_stream(&p, &model, include_usage, &usage, opts));
        return Reply { retry_after: None, status: StatusCode::OK, body, usage: Some(p.usage), wait: Wait::None };
    }
    let (message, finish) = match &p.action {
        Action::ToolCall(tc) => (
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": p.id("call_", "tool"), "type": "function",
                "function": {"name": tc.name, "arguments": tc.arguments}
            }], "refusal": null, "annotations": []}),
            "tool_calls",
        ),
        _ => (
            json!({"role": "assistant", "content": p.text().unwrap_or_default(), "refusal": null, "annotations": []}),
            if p.truncated() { "length" } else { "stop" },
        ),
    };
    let choices: Vec<Value> =
        (0..p.n).map(|i| json!({"index": i, "message": message, "logprobs": null, "finish_reason": finish})).collect();
    let body = json!({
        "id": p.id("chatcmpl-", "msg"),
        "object": "chat.completion",
        "created": p.created(),
        "model": model,
        "choices": choices,
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    });
    let wait = if matches!(p.action, Action::Slow { .. }) { Wait::Delay(opts.slow_duration) } else { Wait::None };
    Reply { retry_after: None, status: StatusCode::OK, body: ScriptBody::json(&body), usage: Some(p.usage), wait }
}

fn chat_stream(p: &Plan, model: &str, include_usage: bool, usage: &Value, opts: &UpstreamOptions) -> SseStream {
    let mut frames = Vec::new();
    for index in 0..p.n {
        choice_frames(p, model, include_usage, index, &mut frames);
    }
    let id = p.id("chatcmpl-", "msg");
    let mut tail = 2;
    if include_usage {
        // OpenAI's extra last chunk: no choices, the usage object.
        frames.push(event(
            None,
            &json!({
                "id": id, "object": "chat.completion.chunk", "created": p.created(), "model": model,
                "service_tier": "default", "system_fingerprint": FINGERPRINT,
                "choices": [], "usage": usage,
            }),
        ));
        tail += 1;
    }
    frames.push(done());
    let pacing =
        matches!(p.action, Action::Slow { .. }).then(|| Pacing { burst: 1, interval: opts.slow_interval, tail });
    SseStream::new(frames, pacing).quirks(&p.quirks)
}

/// The chunks of one choice (`index`) of a streamed chat completion.
fn choice_frames(p: &Plan, model: &str, include_usage: bool, index: u64, frames: &mut Vec<Bytes>) {
    let id = p.id("chatcmpl-", "msg");
    let created = p.created();
    let chunk = |delta: Value, finish: Option<&str>| -> Bytes {
        let mut c = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "service_tier": "default", "system_fingerprint": FINGERPRINT,
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            c["usage"] = Value::Null;
        }
        event(None, &c)
    };
    let finish = match &p.action {
        Action::ToolCall(tc) => {
            frames.push(chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{
                    "index": 0, "id": p.id("call_", "tool"), "type": "function",
                    "function": {"name": tc.name, "arguments": ""}
                }], "refusal": null}),
                None,
            ));
            for piece in char_pieces(&tc.arguments, 8) {
                frames.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), None));
            }
            "tool_calls"
        }
        _ => {
            frames.push(chunk(json!({"role": "assistant", "content": "", "refusal": null}), None));
            let pieces = p.pieces();
            for piece in pieces {
                frames.push(chunk(json!({"content": piece}), None));
            }
            if p.truncated() {
                "length"
            } else {
                "stop"
            }
        }
    };
    frames.push(chunk(json!({}), Some(finish)));
}

/// `POST /v1/embeddings`: deterministic vectors (`dimensions` honoured, default 16).
pub(crate) fn embeddings(v: &Value) -> Reply {
    let model = v.get("model").and_then(Value::as_str).unwrap_or_default();
    let inputs: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned)).collect()
        }
        _ => {
            return error(StatusCode::BAD_REQUEST, "invalid_request_error", None, "'input' is a required property");
        }
    };
    let dims = v.get("dimensions").and_then(Value::as_u64).unwrap_or(16).clamp(1, 4096) as usize;
    let mut tokens = 0u64;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            tokens += (text.chars().count() as u64).div_ceil(4).max(1);
            let seed = text_seed(model, text);
            let emb: Vec<f32> = (0..dims).map(|d| unit_float(seed, d)).collect();
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    let usage = Usage { input_tokens: tokens, ..Usage::default() };
    let body = json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    Reply {
        retry_after: None,
        status: StatusCode::OK,
        body: ScriptBody::json(&body),
        usage: Some(usage),
        wait: Wait::None,
    }
}

/// Model ids `GET /v1/models` lists (any model name is answered, listed or not).
pub const LISTED_MODELS: &[&str] =
    &["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small", "claude-haiku-4-5", "fake-model"];

/// `GET /v1/models`.
pub(crate) fn models() -> Reply {
    let data: Vec<Value> = LISTED_MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_735_689_600u64, "owned_by": "scripted"}))
        .collect();
    Reply::json(StatusCode::OK, &json!({"object": "list", "data": data}))
}

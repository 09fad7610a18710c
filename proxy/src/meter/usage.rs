//! Side decoders: read usage, finish reason and tool calls out of upstream replies (streamed
//! or not) without changing a byte of them.

use audit::Usage;
use serde::Deserialize;

use crate::route::Endpoint;

use super::sse::SseEvent;

/// What the side decoder learned about a call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub usage: Option<Usage>,
    pub finish_reason: Option<String>,
    pub tool_calls: Vec<String>,
}

#[derive(Deserialize, Default)]
struct OaUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<OaDetails>,
    // Responses API names.
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<OaDetails>,
}

#[derive(Deserialize, Default)]
struct OaDetails {
    #[serde(default)]
    cached_tokens: u64,
}

impl OaUsage {
    fn normalize(&self) -> Usage {
        let cached = self.prompt_tokens_details.as_ref().or(self.input_tokens_details.as_ref());
        Usage {
            input_tokens: self.prompt_tokens + self.input_tokens,
            output_tokens: self.completion_tokens + self.output_tokens,
            cached_input_tokens: cached.map_or(0, |d| d.cached_tokens),
            cache_write_tokens: 0,
            server_tool_calls: 0,
        }
    }
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    function: Option<Box<Named>>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
struct ChatChoice {
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    delta: Option<ChatMsg>,
    #[serde(default)]
    message: Option<ChatMsg>,
}

#[derive(Deserialize, Default)]
struct ChatMsg {
    #[serde(default)]
    tool_calls: Option<Vec<Named>>,
}

/// A chat completion or one streamed chunk of it.
#[derive(Deserialize, Default)]
struct Chat {
    #[serde(default)]
    choices: Vec<ChatChoice>,
    #[serde(default)]
    usage: Option<OaUsage>,
}

/// A Responses API object (`response` inside stream events).
#[derive(Deserialize, Default)]
struct ResponseObj {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    usage: Option<OaUsage>,
    #[serde(default)]
    output: Vec<Named>,
}

#[derive(Deserialize)]
struct ResponseEvent {
    #[serde(default)]
    response: Option<ResponseObj>,
}

#[derive(Deserialize, Default)]
struct AnUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

/// An Anthropic message, or one streamed event.
#[derive(Deserialize, Default)]
struct AnMsg {
    #[serde(default)]
    usage: Option<AnUsage>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    content: Vec<Named>,
    // Stream events.
    #[serde(default)]
    message: Option<Box<AnMsg>>,
    #[serde(default)]
    delta: Option<Box<AnMsg>>,
    #[serde(default)]
    content_block: Option<Named>,
}

fn apply_anthropic(u: &AnUsage, acc: &mut Usage) {
    // message_start carries input + cache counts; message_delta carries cumulative output
    // (and, on newer APIs, may repeat input counts): take the latest value of each.
    if let Some(v) = u.cache_read_input_tokens {
        acc.cached_input_tokens = v;
    }
    if let Some(v) = u.cache_creation_input_tokens {
        acc.cache_write_tokens = v;
    }
    if let Some(v) = u.input_tokens {
        acc.input_tokens = v + acc.cached_input_tokens + acc.cache_write_tokens;
    }
    if let Some(v) = u.output_tokens {
        acc.output_tokens = v;
    }
}

fn tool_name(n: &Named) -> Option<String> {
    n.name.clone().or_else(|| n.function.as_ref().and_then(|f| f.name.clone()))
}

/// Decode one streamed event of `endpoint` into `sum`.
pub fn on_event(endpoint: Endpoint, ev: &SseEvent<'_>, sum: &mut Summary) {
    if ev.data.is_empty() || ev.data == "[DONE]" {
        return;
    }
    match endpoint {
        Endpoint::ChatCompletions => {
            if let Ok(c) = serde_json::from_str::<Chat>(&ev.data) {
                chat_into(&c, sum);
            }
        }
        Endpoint::Responses => {
            if let Ok(r) = serde_json::from_str::<ResponseEvent>(&ev.data) {
                if let Some(obj) = r.response {
                    response_into(&obj, sum);
                }
            }
        }
        Endpoint::Messages => {
            if let Ok(m) = serde_json::from_str::<AnMsg>(&ev.data) {
                anthropic_event_into(&m, sum);
            }
        }
        Endpoint::Embeddings | Endpoint::Models => {}
    }
}

fn chat_into(c: &Chat, sum: &mut Summary) {
    if let Some(u) = &c.usage {
        sum.usage = Some(u.normalize());
    }
    for ch in &c.choices {
        if let Some(r) = &ch.finish_reason {
            sum.finish_reason = Some(r.clone());
        }
        for m in [&ch.delta, &ch.message].into_iter().flatten() {
            for t in m.tool_calls.iter().flatten() {
                if let Some(n) = tool_name(t) {
                    sum.tool_calls.push(n);
                }
            }
        }
    }
}

fn response_into(r: &ResponseObj, sum: &mut Summary) {
    if let Some(u) = &r.usage {
        sum.usage = Some(u.normalize());
    }
    if let Some(s) = &r.status {
        sum.finish_reason = Some(s.clone());
    }
    for item in &r.output {
        if item.kind.as_deref() == Some("function_call") {
            if let Some(n) = tool_name(item) {
                sum.tool_calls.push(n);
            }
        }
    }
}

fn anthropic_event_into(m: &AnMsg, sum: &mut Summary) {
    let acc = sum.usage.get_or_insert_with(Usage::default);
    if let Some(inner) = &m.message {
        if let Some(u) = &inner.usage {
            apply_anthropic(u, acc);
        }
    }
    if let Some(u) = &m.usage {
        apply_anthropic(u, acc);
    }
    if let Some(d) = &m.delta {
        if let Some(r) = &d.stop_reason {
            sum.finish_reason = Some(r.clone());
        }
    }
    if let Some(b) = &m.content_block {
        if b.kind.as_deref() == Some("tool_use") {
            if let Some(n) = tool_name(b) {
                sum.tool_calls.push(n);
            }
        }
    }
}

/// Decode a complete non-streamed JSON reply of `endpoint`.
pub fn from_json(endpoint: Endpoint, body: &[u8]) -> Summary {
    let mut sum = Summary::default();
    match endpoint {
        Endpoint::ChatCompletions | Endpoint::Embeddings => {
            if let Ok(c) = serde_json::from_slice::<Chat>(body) {
                chat_into(&c, &mut sum);
            }
        }
        Endpoint::Responses => {
            if let Ok(r) = serde_json::from_slice::<ResponseObj>(body) {
                response_into(&r, &mut sum);
            }
        }
        Endpoint::Messages => {
            if let Ok(m) = serde_json::from_slice::<AnMsg>(body) {
                let mut u = Usage::default();
                if let Some(x) = &m.usage {
                    apply_anthropic(x, &mut u);
                    sum.usage = Some(u);
                }
                sum.finish_reason = m.stop_reason.clone();
                for b in &m.content {
                    if b.kind.as_deref() == Some("tool_use") {
                        if let Some(n) = tool_name(b) {
                            sum.tool_calls.push(n);
                        }
                    }
                }
            }
        }
        Endpoint::Models => {}
    }
    sum
}

/// Is this streamed chat event the extra usage-only chunk (`choices: []` + usage)?
pub fn is_usage_only_chunk(data: &str) -> bool {
    if !data.contains("\"usage\"") {
        return false;
    }
    match serde_json::from_str::<Chat>(data) {
        Ok(c) => c.choices.is_empty() && c.usage.is_some(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str) -> SseEvent<'static> {
        SseEvent { event: None, data: data.to_string() }
    }

    #[test]
    fn chat_stream_usage_finish_and_tools() {
        let mut s = Summary::default();
        on_event(
            Endpoint::ChatCompletions,
            &ev(
                r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"exec","arguments":""}}]}}],"usage":null}"#,
            ),
            &mut s,
        );
        on_event(
            Endpoint::ChatCompletions,
            &ev(r#"{"choices":[{"delta":{},"finish_reason":"tool_calls"}],"usage":null}"#),
            &mut s,
        );
        on_event(
            Endpoint::ChatCompletions,
            &ev(
                r#"{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#,
            ),
            &mut s,
        );
        assert_eq!(s.tool_calls, vec!["exec"]);
        assert_eq!(s.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(
            s.usage,
            Some(Usage { input_tokens: 10, output_tokens: 3, cached_input_tokens: 4, ..Default::default() })
        );
    }

    #[test]
    fn anthropic_stream_usage() {
        let mut s = Summary::default();
        on_event(
            Endpoint::Messages,
            &ev(
                r#"{"type":"message_start","message":{"usage":{"input_tokens":5,"cache_read_input_tokens":7,"cache_creation_input_tokens":2,"output_tokens":1}}}"#,
            ),
            &mut s,
        );
        on_event(
            Endpoint::Messages,
            &ev(
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"exec","input":{}}}"#,
            ),
            &mut s,
        );
        on_event(
            Endpoint::Messages,
            &ev(r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":42}}"#),
            &mut s,
        );
        let u = s.usage.unwrap();
        assert_eq!((u.input_tokens, u.cached_input_tokens, u.cache_write_tokens, u.output_tokens), (14, 7, 2, 42));
        assert_eq!(s.finish_reason.as_deref(), Some("tool_use"));
        assert_eq!(s.tool_calls, vec!["exec"]);
    }

    #[test]
    fn responses_completed_event() {
        let mut s = Summary::default();
        on_event(
            Endpoint::Responses,
            &ev(
                r#"{"type":"response.completed","response":{"status":"completed","output":[{"type":"function_call","name":"exec"}],"usage":{"input_tokens":9,"output_tokens":2,"input_tokens_details":{"cached_tokens":1}}}}"#,
            ),
            &mut s,
        );
        assert_eq!(s.usage.unwrap().input_tokens, 9);
        assert_eq!(s.tool_calls, vec!["exec"]);
    }

    #[test]
    fn non_streamed_bodies() {
        let s = from_json(Endpoint::ChatCompletions, br#"{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#);
        assert_eq!(s.usage.unwrap().output_tokens, 1);
        let s = from_json(Endpoint::Embeddings, br#"{"data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}"#);
        assert_eq!(s.usage.unwrap().input_tokens, 8);
        let s = from_json(Endpoint::Messages, br#"{"content":[{"type":"text","text":"x"}],"stop_reason":"end_turn","usage":{"input_tokens":4,"output_tokens":6}}"#);
        assert_eq!(s.usage.unwrap().output_tokens, 6);
    }

    #[test]
    fn usage_only_chunk_detection() {
        assert!(is_usage_only_chunk(r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#));
        assert!(!is_usage_only_chunk(r#"{"choices":[{"delta":{}}],"usage":null}"#));
        assert!(!is_usage_only_chunk(r#"{"choices":[{"delta":{"content":"usage"}}]}"#));
    }
}

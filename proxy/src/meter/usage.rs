//! Side decoders: read usage, finish reason and tool calls out of upstream replies (streamed
//! or not) without changing a byte of them.

use audit::Usage;
use serde::Deserialize;

use crate::route::Endpoint;

use super::sse::SseEvent;

/// What the side decoder learned about a call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    /// Usage as reported so far (possibly partial: see `usage_final`).
    pub usage: Option<Usage>,
    /// The upstream's final usage report was read (chat's usage chunk, Responses'
    /// `response.completed`, Anthropic's `message_delta`, or a whole JSON reply). Without it
    /// `usage` is at best partial and the call's cost is unknown.
    pub usage_final: bool,
    /// The raw usage numbers when any was impossible (negative, fractional, beyond
    /// [`MAX_TOKENS`], or more cached than input tokens): they were clamped, and are audited.
    pub usage_invalid: Option<serde_json::Value>,
    /// Why part of the reply was not decoded (its cost is then unknown).
    pub undecoded: Option<&'static str>,
    pub finish_reason: Option<String>,
    pub tool_calls: Vec<String>,
    /// Server-side tool calls seen in the output (Responses `web_search_call`, ...).
    pub server_tool_calls: u64,
}

/// More tokens than any model takes or gives in one call; a count above it is a broken
/// report and is clamped to it (so a bogus `u64::MAX` is charged as a large but finite call).
pub const MAX_TOKENS: u64 = 100_000_000;

/// A token count as reported: any JSON number, kept raw so an impossible one can be audited.
#[derive(Debug, Clone, Default, PartialEq)]
struct Count(Option<serde_json::Number>);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Count(Option::<serde_json::Number>::deserialize(d)?))
    }
}

impl Count {
    fn present(&self) -> bool {
        self.0.is_some()
    }

    /// The count clamped to `0..=MAX_TOKENS`, and whether it needed clamping.
    fn clamped(&self) -> (u64, bool) {
        match &self.0 {
            None => (0, false),
            Some(n) => match n.as_u64() {
                Some(v) if v <= MAX_TOKENS => (v, false),
                Some(_) => (MAX_TOKENS, true),
                None => match n.as_f64() {
                    Some(f) if f > 0.0 => ((f.min(MAX_TOKENS as f64)) as u64, true),
                    _ => (0, true),
                },
            },
        }
    }
}

/// Clamp a set of named counts; the raw numbers when any was impossible.
fn clamp_all(fields: &[(&str, &Count)]) -> (Vec<u64>, Option<serde_json::Value>) {
    let mut bad = false;
    let vals = fields
        .iter()
        .map(|(_, c)| {
            let (v, b) = c.clamped();
            bad |= b;
            v
        })
        .collect();
    let raw = bad.then(|| {
        let m: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .filter_map(|(k, c)| c.0.clone().map(|n| ((*k).to_string(), serde_json::Value::Number(n))))
            .collect();
        serde_json::Value::Object(m)
    });
    (vals, raw)
}

#[derive(Deserialize, Default)]
struct OaUsage {
    #[serde(default)]
    prompt_tokens: Count,
    #[serde(default)]
    completion_tokens: Count,
    #[serde(default)]
    prompt_tokens_details: Option<OaDetails>,
    // Responses API names.
    #[serde(default)]
    input_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
    #[serde(default)]
    input_tokens_details: Option<OaDetails>,
}

#[derive(Deserialize, Default)]
struct OaDetails {
    #[serde(default)]
    cached_tokens: Count,
}

impl OaUsage {
    fn normalize(&self) -> (Usage, Option<serde_json::Value>) {
        let none = Count::default();
        let cached = self
            .prompt_tokens_details
            .as_ref()
            .or(self.input_tokens_details.as_ref())
            .map_or(&none, |d| &d.cached_tokens);
        let (v, raw) = clamp_all(&[
            ("prompt_tokens", &self.prompt_tokens),
            ("completion_tokens", &self.completion_tokens),
            ("input_tokens", &self.input_tokens),
            ("output_tokens", &self.output_tokens),
            ("cached_tokens", cached),
        ]);
        let u = Usage {
            input_tokens: v[0].saturating_add(v[2]).min(MAX_TOKENS),
            output_tokens: v[1].saturating_add(v[3]).min(MAX_TOKENS),
            cached_input_tokens: v[4],
            ..Usage::default()
        };
        (u, raw)
    }
}

/// Record a usage report: clamped values, and the raw ones if any was impossible (an
/// impossible report is remembered even if a later one looks fine).
fn set_usage(sum: &mut Summary, (u, raw): (Usage, Option<serde_json::Value>)) {
    let mut raw = raw;
    if raw.is_none() && u.cached_input_tokens > u.input_tokens {
        raw = Some(serde_json::json!({"input_tokens": u.input_tokens, "cached_input_tokens": u.cached_input_tokens}));
    }
    if raw.is_some() {
        sum.usage_invalid = raw;
    }
    sum.usage = Some(u);
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
    input_tokens: Count,
    #[serde(default)]
    output_tokens: Count,
    #[serde(default)]
    cache_read_input_tokens: Count,
    #[serde(default)]
    cache_creation_input_tokens: Count,
    #[serde(default)]
    server_tool_use: Option<AnServerTools>,
}

#[derive(Deserialize, Default)]
struct AnServerTools {
    #[serde(default)]
    web_search_requests: Count,
    #[serde(default)]
    web_fetch_requests: Count,
}

/// An Anthropic message, or one streamed event.
#[derive(Deserialize, Default)]
struct AnMsg {
    #[serde(default, rename = "type")]
    kind: Option<String>,
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

fn apply_anthropic(u: &AnUsage, sum: &mut Summary) {
    // message_start carries input + cache counts; message_delta carries cumulative output
    // (and, on newer APIs, may repeat input counts): take the latest value of each.
    let none = Count::default();
    let tools = u.server_tool_use.as_ref();
    let fields = [
        ("input_tokens", &u.input_tokens),
        ("output_tokens", &u.output_tokens),
        ("cache_read_input_tokens", &u.cache_read_input_tokens),
        ("cache_creation_input_tokens", &u.cache_creation_input_tokens),
        ("web_search_requests", tools.map_or(&none, |t| &t.web_search_requests)),
        ("web_fetch_requests", tools.map_or(&none, |t| &t.web_fetch_requests)),
    ];
    let (v, raw) = clamp_all(&fields);
    let mut acc = sum.usage.clone().unwrap_or_default();
    let mut plain = acc.input_tokens.saturating_sub(acc.cached_input_tokens + acc.cache_write_tokens);
    if u.cache_read_input_tokens.present() {
        acc.cached_input_tokens = v[2];
    }
    if u.cache_creation_input_tokens.present() {
        acc.cache_write_tokens = v[3];
    }
    if u.input_tokens.present() {
        plain = v[0];
    }
    acc.input_tokens =
        plain.saturating_add(acc.cached_input_tokens).saturating_add(acc.cache_write_tokens).min(MAX_TOKENS);
    if u.output_tokens.present() {
        acc.output_tokens = v[1];
    }
    if tools.is_some() {
        acc.server_tool_calls = v[4].saturating_add(v[5]);
    }
    set_usage(sum, (acc, raw));
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
        // Chat reports usage once, at the end (the usage chunk, or the whole reply).
        set_usage(sum, u.normalize());
        sum.usage_final = true;
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

/// Output items of tools the upstream runs and bills per call.
const BILLED_SERVER_CALLS: [&str; 4] =
    ["web_search_call", "file_search_call", "code_interpreter_call", "image_generation_call"];

fn response_into(r: &ResponseObj, sum: &mut Summary) {
    if let Some(s) = &r.status {
        sum.finish_reason = Some(s.clone());
    }
    let mut server = 0u64;
    for item in &r.output {
        match item.kind.as_deref() {
            Some("function_call") => sum.tool_calls.extend(tool_name(item)),
            Some(k) if BILLED_SERVER_CALLS.contains(&k) => server += 1,
            _ => {}
        }
    }
    if let Some(u) = &r.usage {
        // The final response object (completed, incomplete or failed) carries the usage.
        let (mut usage, raw) = u.normalize();
        usage.server_tool_calls = server;
        set_usage(sum, (usage, raw));
        sum.usage_final = true;
        sum.server_tool_calls = server;
    }
}

fn anthropic_event_into(m: &AnMsg, sum: &mut Summary) {
    if let Some(inner) = &m.message {
        if let Some(u) = &inner.usage {
            apply_anthropic(u, sum);
        }
    }
    if let Some(u) = &m.usage {
        apply_anthropic(u, sum);
        // message_delta carries the final, cumulative counts.
        if m.kind.as_deref() == Some("message_delta") {
            sum.usage_final = true;
        }
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
                if let Some(x) = &m.usage {
                    apply_anthropic(x, &mut sum);
                    sum.usage_final = true;
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
    fn only_the_final_report_makes_usage_final() {
        let mut s = Summary::default();
        on_event(
            Endpoint::Messages,
            &ev(r#"{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}"#),
            &mut s,
        );
        assert!(s.usage.is_some() && !s.usage_final, "message_start is not the final count");
        on_event(
            Endpoint::Messages,
            &ev(
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9,"server_tool_use":{"web_search_requests":2}}}"#,
            ),
            &mut s,
        );
        assert!(s.usage_final);
        let u = s.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens, u.server_tool_calls), (5, 9, 2));
        let mut s = Summary::default();
        on_event(Endpoint::ChatCompletions, &ev(r#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#), &mut s);
        assert!(s.usage.is_none() && !s.usage_final);
    }

    #[test]
    fn responses_count_billed_server_tool_calls() {
        let mut s = Summary::default();
        on_event(
            Endpoint::Responses,
            &ev(
                r#"{"type":"response.completed","response":{"status":"completed","output":[{"type":"web_search_call"},{"type":"web_search_call"},{"type":"message"}],"usage":{"input_tokens":9,"output_tokens":2}}}"#,
            ),
            &mut s,
        );
        assert!(s.usage_final);
        assert_eq!(s.usage.unwrap().server_tool_calls, 2);
    }

    #[test]
    fn absurd_counts_are_clamped_and_kept_raw() {
        // The issue's reproduction: u64::MAX prompt tokens (audited as $13.8 trillion), and a
        // negative count, which used to make the whole report unreadable.
        let s = from_json(
            Endpoint::ChatCompletions,
            br#"{"choices":[],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":-5}}"#,
        );
        let u = s.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (MAX_TOKENS, 0));
        assert!(s.usage_final);
        let raw = s.usage_invalid.unwrap();
        assert_eq!(raw["prompt_tokens"].as_u64(), Some(u64::MAX));
        assert_eq!(raw["completion_tokens"].as_i64(), Some(-5));
        // Fractions and more cached than input are impossible too; sane counts are not flagged.
        let s = from_json(Endpoint::Responses, br#"{"usage":{"input_tokens":2.5,"output_tokens":1}}"#);
        assert_eq!(s.usage.unwrap().input_tokens, 2);
        assert!(s.usage_invalid.is_some());
        let s = from_json(
            Endpoint::ChatCompletions,
            br#"{"usage":{"prompt_tokens":3,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":9}}}"#,
        );
        assert!(s.usage_invalid.is_some());
        let s = from_json(Endpoint::Messages, br#"{"usage":{"input_tokens":-1,"output_tokens":4}}"#);
        assert_eq!(s.usage.unwrap().output_tokens, 4);
        assert_eq!(s.usage_invalid.unwrap()["input_tokens"].as_i64(), Some(-1));
        let s = from_json(Endpoint::Embeddings, br#"{"usage":{"prompt_tokens":8,"total_tokens":8}}"#);
        assert!(s.usage_invalid.is_none());
    }

    #[test]
    fn usage_only_chunk_detection() {
        assert!(is_usage_only_chunk(r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#));
        assert!(!is_usage_only_chunk(r#"{"choices":[{"delta":{}}],"usage":null}"#));
        assert!(!is_usage_only_chunk(r#"{"choices":[{"delta":{"content":"usage"}}]}"#));
    }
}

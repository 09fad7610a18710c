//! What the scripted model answers: a pure function of the conversation text and the model name.
//!
//! Every protocol module turns its request body into a [`Conversation`] and asks [`plan`] what to do, so the
//! magic words, token counts and ids behave the same on every route.

use serde_json::Value;
use std::time::Duration;

use super::{UpstreamOptions, Usage};

/// The text the scripted model answers when the prompt holds no magic word.
pub const DEFAULT_REPLY: &str = "Hello from the scripted model.";

/// OpenClaw appends a second user message (or text block) with this prefix after the real one; it is not
/// the user's prompt.
pub const INTERNAL_CONTEXT_MARKER: &str = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT";

/// Word each chunk of a `SLOW` stream carries.
pub const SLOW_TICK: &str = "tick ";

/// Input tokens one image part costs (a 1024x1024 high-detail image on gpt-4o), whatever the
/// length of its URL or data: a body's size does not bound what its images cost.
pub const IMAGE_TOKENS: u64 = 765;

/// Input tokens one file / PDF / audio part costs, whatever its size in the body.
pub const FILE_TOKENS: u64 = 1_500;

/// Input tokens the results of one server-side web search add to the prompt.
pub const SEARCH_TOKENS: u64 = 2_000;

/// How the answer is shaped beyond its content: the output cap, the number of choices, and
/// the misbehaviours the hardening tests need from an upstream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Quirks {
    /// `CUT_AFTER:<k>`: a stream sends its first `k` frames, half of the next, then the
    /// connection breaks.
    pub cut_after: Option<usize>,
    /// `HUGE_EVENT:<MiB>`: a stream sends one event of that many MiB that never ends.
    pub huge_event_mib: Option<u64>,
    /// `ABSURD_USAGE`: usage reports `u64::MAX` prompt tokens and `-5` completion tokens.
    pub absurd_usage: bool,
}

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A text answer.
    Reply(String),
    /// A tool call (`exec` for `RUN_EXEC:`, any tool for `RUN_TOOL:`).
    ToolCall(ToolCall),
    /// A text answer streamed one tick at a time.
    Slow { ticks: usize },
    /// HTTP 500 with an error body.
    Fail500,
    /// HTTP 429 with an error body.
    Fail429,
    /// HTTP 429 + `Retry-After` with a "daily limit reached" error (a periodic usage limit).
    DailyLimit,
    /// Never answer.
    Hang,
}

/// One tool call the scripted model asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolCall {
    pub name: String,
    /// The arguments, as the JSON text the model sends.
    pub arguments: String,
}

impl ToolCall {
    /// `exec` with `command`.
    pub fn exec(command: &str) -> ToolCall {
        ToolCall { name: "exec".into(), arguments: serde_json::json!({ "command": command }).to_string() }
    }
}

/// A decided answer: the action, the usage it reports and the seed for its ids.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub action: Action,
    pub usage: Usage,
    pub seed: u64,
    /// Output tokens per choice, when the request capped them and the answer was cut.
    pub cut_to: Option<u64>,
    /// Choices (`n`, chat only); usage counts the output of every one.
    pub n: u64,
    /// Server-side web searches run (each a `web_search_call` / `server_tool_use`).
    pub searches: u64,
    pub quirks: Quirks,
}

impl Plan {
    /// Deterministic id: `prefix` + 24 hex digits derived from the seed and a salt (so the message id and
    /// tool-call id of one reply differ).
    pub fn id(&self, prefix: &str, salt: &str) -> String {
        let mut h = Fnv::new();
        h.write(&self.seed.to_le_bytes());
        h.write(salt.as_bytes());
        let a = h.finish();
        h.write(b"#");
        format!("{prefix}{:016x}{:08x}", a, h.finish() as u32)
    }

    /// Deterministic unix timestamp inside 2025 so ids and `created` agree between two identical calls.
    pub fn created(&self) -> u64 {
        1_735_689_600 + self.seed % 31_536_000
    }

    /// The reply text for text actions (`None` for tool calls and failures), cut to the
    /// request's output cap.
    pub fn text(&self) -> Option<String> {
        let full = match &self.action {
            Action::Reply(t) => t.clone(),
            Action::Slow { ticks } => SLOW_TICK.repeat(*ticks),
            _ => return None,
        };
        Some(match self.cut_to {
            Some(k) => full.split_whitespace().take(k as usize).collect::<Vec<_>>().join(" "),
            None => full,
        })
    }

    /// The streamed pieces of a text answer: one tick per interval for `SLOW`, else its words.
    pub fn pieces(&self) -> Vec<String> {
        match (&self.action, self.cut_to) {
            (Action::Slow { ticks }, cut) => {
                vec![SLOW_TICK.to_owned(); cut.map_or(*ticks, |c| (c as usize).min(*ticks))]
            }
            _ => super::openai::word_pieces(&self.text().unwrap_or_default()),
        }
    }

    /// Whether the output cap cut the answer short.
    pub fn truncated(&self) -> bool {
        self.cut_to.is_some()
    }
}

/// What the request asked about the shape of the answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Output tokens per choice (`max_completion_tokens`, else `max_tokens`, ...).
    pub cap: Option<u64>,
    /// Choices (`n`).
    pub n: u64,
    /// Whether a server-side web search tool was offered, and the most calls allowed.
    pub search: Option<Option<u64>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { cap: None, n: 1, search: None }
    }
}

/// The parts of a request the script looks at, whatever the protocol.
#[derive(Debug, Default)]
pub(crate) struct Conversation {
    /// Text of the last user message, OpenClaw's internal-context message skipped.
    pub prompt: String,
    /// The latest tool result that came after that user message.
    pub tool_result: Option<String>,
    /// Characters of all conversation text (system, messages, tool calls and results).
    pub chars: usize,
    /// Input tokens that are not text in the body: images, files, and the stored context of a
    /// previous response or conversation.
    pub extra_tokens: u64,
    /// The requested model.
    pub model: String,
    hash: Fnv,
    prompt_index: Option<usize>,
    results: Vec<(usize, String)>,
}

impl Conversation {
    /// Start a conversation whose ids also depend on `model` (and the route, so chat and messages differ).
    pub fn new(route: &str, model: &str) -> Self {
        let mut c = Self { model: model.to_owned(), ..Self::default() };
        c.hash.write(route.as_bytes());
        c.hash.write(b"\0");
        c.hash.write(model.as_bytes());
        c
    }

    /// Count system or assistant text that is not a prompt.
    pub fn other(&mut self, text: &str) {
        self.absorb(text);
    }

    /// A user message with plain-string content (the candidate prompt) at position `index`.
    pub fn user(&mut self, index: usize, text: &str) {
        self.absorb(text);
        self.candidate(index, text);
    }

    /// A user message's `content` (string or parts) at position `index`; text parts carrying OpenClaw's
    /// internal context are counted but are not the prompt.
    pub fn user_content(&mut self, index: usize, content: &Value) {
        let all = text_of(content);
        self.absorb(&all);
        match content {
            Value::Array(parts) => {
                let visible: Vec<Value> = parts
                    .iter()
                    .filter(|p| !p.get("text").and_then(Value::as_str).is_some_and(is_internal_context))
                    .cloned()
                    .collect();
                self.candidate(index, &text_of(&Value::Array(visible)));
            }
            _ => self.candidate(index, &all),
        }
    }

    fn candidate(&mut self, index: usize, text: &str) {
        if !text.trim().is_empty() && !is_internal_context(text) {
            self.prompt = text.to_owned();
            self.prompt_index = Some(index);
        }
    }

    /// Count the media parts (images, files, audio) anywhere in `v`.
    pub fn media(&mut self, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| self.media(i)),
            Value::Object(o) => {
                self.extra_tokens += match o.get("type").and_then(Value::as_str) {
                    Some("image_url" | "input_image" | "image") => IMAGE_TOKENS,
                    Some("input_file" | "file" | "document" | "input_audio") => FILE_TOKENS,
                    _ => 0,
                };
                o.values().for_each(|x| self.media(x));
            }
            _ => {}
        }
    }

    /// Context the upstream holds for this call (a previous response, a conversation): its
    /// tokens are billed as input, and its id makes the answer's ids differ.
    pub fn stored(&mut self, id: &str, tokens: u64) {
        self.extra_tokens += tokens;
        self.hash.write(id.as_bytes());
        self.hash.write(b"\x1e");
    }

    /// A tool result at position `index`.
    pub fn tool_result(&mut self, index: usize, text: &str) {
        self.absorb(text);
        self.results.push((index, text.to_owned()));
    }

    fn absorb(&mut self, text: &str) {
        self.chars += text.chars().count();
        self.hash.write(text.as_bytes());
        self.hash.write(b"\x1f");
    }

    /// Finish: pick the tool result that answers the prompt, if any.
    fn finish(mut self) -> Self {
        let after = self.prompt_index.unwrap_or(0);
        self.tool_result =
            self.results.iter().rev().find(|(i, _)| self.prompt_index.is_none() || *i > after).map(|(_, t)| t.clone());
        self
    }
}

/// Decide the answer for a conversation.
pub(crate) fn plan(conv: Conversation, opts: &UpstreamOptions, limits: Limits) -> Plan {
    let conv = conv.finish();
    let seed = conv.hash.finish();
    let limited =
        conv.prompt.split_whitespace().filter_map(|w| w.strip_prefix("DAILY_LIMIT:")).any(|m| m == conv.model);
    let action = if limited { Action::DailyLimit } else { classify(&conv.prompt, conv.tool_result.as_deref(), opts) };
    let searches = match limits.search {
        None => 0,
        Some(max) => {
            let asked = number_after(&conv.prompt, "SEARCHES:").unwrap_or(1);
            max.map_or(asked, |m| asked.min(m))
        }
    };
    let input = (conv.chars as u64).div_ceil(4).max(1) + conv.extra_tokens + searches * SEARCH_TOKENS;
    let cached = if has_word(&conv.prompt, "CACHED") { input / 2 } else { 0 };
    let full = match &action {
        Action::Reply(t) => t.split_whitespace().count() as u64,
        Action::Slow { ticks } => *ticks as u64,
        Action::ToolCall(tc) => 1 + tc.arguments.split_whitespace().count() as u64,
        Action::Fail500 | Action::Fail429 | Action::DailyLimit | Action::Hang => 0,
    };
    let per_choice = limits.cap.map_or(full, |c| full.min(c));
    let cut_to = (per_choice < full && matches!(action, Action::Reply(_) | Action::Slow { .. })).then_some(per_choice);
    let n = limits.n.max(1);
    let quirks = Quirks {
        cut_after: number_after(&conv.prompt, "CUT_AFTER:").map(|k| k as usize),
        huge_event_mib: number_after(&conv.prompt, "HUGE_EVENT:"),
        absurd_usage: has_word(&conv.prompt, "ABSURD_USAGE"),
    };
    let usage = Usage {
        input_tokens: input,
        output_tokens: per_choice.saturating_mul(n),
        cached_tokens: cached,
        server_tool_calls: searches,
    };
    Plan { action, usage, seed, cut_to, n, searches, quirks }
}

/// The number right after `prefix` in `text` (`SEARCHES:3` gives 3).
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let at = text.find(prefix)? + prefix.len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn classify(prompt: &str, tool_result: Option<&str>, opts: &UpstreamOptions) -> Action {
    if has_word(prompt, "HANG") {
        return Action::Hang;
    }
    if has_word(prompt, "FAIL500") {
        return Action::Fail500;
    }
    if has_word(prompt, "FAIL429") {
        return Action::Fail429;
    }
    if let Some(pos) = prompt.find("RUN_EXEC:") {
        if let Some(result) = tool_result {
            let head: String = result.chars().take(200).collect();
            return Action::Reply(format!("exec finished: {head}"));
        }
        let rest = &prompt[pos + "RUN_EXEC:".len()..];
        let cmd = rest.lines().next().unwrap_or_default().trim();
        return Action::ToolCall(ToolCall::exec(cmd));
    }
    if let Some(pos) = prompt.find("CALL_TOOL:") {
        if let Some(result) = tool_result {
            let head: String = result.chars().take(2000).collect();
            return Action::Reply(format!("tool finished: {head}"));
        }
        let line = prompt[pos + "CALL_TOOL:".len()..].lines().next().unwrap_or_default().trim();
        let (name, args) = line.split_once(' ').unwrap_or((line, "{}"));
        let arguments =
            serde_json::from_str::<Value>(args.trim()).map(|v| v.to_string()).unwrap_or_else(|_| "{}".into());
        return Action::ToolCall(ToolCall { name: name.to_owned(), arguments });
    }
    if let Some(pos) = prompt.find("RUN_TOOL:") {
        let rest = prompt[pos + "RUN_TOOL:".len()..].lines().next().unwrap_or_default().trim();
        let (name, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
        if let Some(result) = tool_result {
            let head: String = result.chars().take(600).collect();
            return Action::Reply(format!("tool {name} finished: {head}"));
        }
        // Arguments that are not a JSON object are sent as `{"input": <text>}`.
        let arguments = match serde_json::from_str::<Value>(args.trim()) {
            Ok(v @ Value::Object(_)) => v.to_string(),
            _ => serde_json::json!({ "input": args.trim() }).to_string(),
        };
        return Action::ToolCall(ToolCall { name: name.to_owned(), arguments });
    }
    if has_word(prompt, "SLOW") {
        let interval = opts.slow_interval.max(Duration::from_millis(1));
        let ticks = (opts.slow_duration.as_millis() / interval.as_millis()).max(1) as usize;
        return Action::Slow { ticks };
    }
    Action::Reply(default_reply(prompt))
}

/// `MARK:<token>` anywhere in the prompt makes the reply end with ` [<token>]` so tests can tell replies apart.
fn default_reply(prompt: &str) -> String {
    let mark = prompt.split_whitespace().find_map(|w| w.strip_prefix("MARK:")).filter(|m| !m.is_empty());
    match mark {
        Some(m) => format!("{DEFAULT_REPLY} [{m}]"),
        None => DEFAULT_REPLY.to_owned(),
    }
}

/// The reply text the script gives for `prompt` when no tool result is involved (for test assertions).
pub fn reply_for(prompt: &str) -> String {
    default_reply(prompt)
}

fn is_internal_context(text: &str) -> bool {
    text.trim_start().starts_with(INTERNAL_CONTEXT_MARKER)
}

fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == word)
}

/// Text of an OpenAI or Anthropic `content`: a string, or the `text` of every text-like part.
pub(crate) fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| {
                    matches!(p.get("type").and_then(Value::as_str), None | Some("text" | "input_text" | "output_text"))
                })
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            texts.join("\n")
        }
        _ => String::new(),
    }
}

/// FNV-1a 64: tiny, stable across platforms and releases (unlike `DefaultHasher`).
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A deterministic pseudo-random float in [-1, 1) for embeddings.
pub(crate) fn unit_float(seed: u64, i: usize) -> f32 {
    let mut h = Fnv::new();
    h.write(&seed.to_le_bytes());
    h.write(&(i as u64).to_le_bytes());
    ((h.finish() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
}

/// Seed for embeddings of one input string.
pub(crate) fn text_seed(model: &str, text: &str) -> u64 {
    let mut h = Fnv::new();
    h.write(model.as_bytes());
    h.write(b"\0");
    h.write(text.as_bytes());
    h.finish()
}

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

/// What to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// A text answer.
    Reply(String),
    /// An `exec` tool call with this command.
    ToolCall(String),
    /// A text answer streamed one tick at a time.
    Slow { ticks: usize },
    /// HTTP 500 with an error body.
    Fail500,
    /// HTTP 429 with an error body.
    Fail429,
    /// Never answer.
    Hang,
}

/// A decided answer: the action, the usage it reports and the seed for its ids.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub action: Action,
    pub usage: Usage,
    pub seed: u64,
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

    /// The reply text for text actions (`None` for tool calls and failures).
    pub fn text(&self) -> Option<String> {
        match &self.action {
            Action::Reply(t) => Some(t.clone()),
            Action::Slow { ticks } => Some(SLOW_TICK.repeat(*ticks)),
            _ => None,
        }
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
    hash: Fnv,
    prompt_index: Option<usize>,
    results: Vec<(usize, String)>,
}

impl Conversation {
    /// Start a conversation whose ids also depend on `model` (and the route, so chat and messages differ).
    pub fn new(route: &str, model: &str) -> Self {
        let mut c = Self::default();
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
pub(crate) fn plan(conv: Conversation, opts: &UpstreamOptions) -> Plan {
    let conv = conv.finish();
    let seed = conv.hash.finish();
    let action = classify(&conv.prompt, conv.tool_result.as_deref(), opts);
    let input = (conv.chars as u64).div_ceil(4).max(1);
    let cached = if has_word(&conv.prompt, "CACHED") { input / 2 } else { 0 };
    let output = match &action {
        Action::Reply(t) => t.split_whitespace().count() as u64,
        Action::Slow { ticks } => *ticks as u64,
        Action::ToolCall(cmd) => 1 + cmd.split_whitespace().count() as u64,
        Action::Fail500 | Action::Fail429 | Action::Hang => 0,
    };
    Plan { action, usage: Usage { input_tokens: input, output_tokens: output, cached_tokens: cached }, seed }
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
        return Action::ToolCall(cmd.to_owned());
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

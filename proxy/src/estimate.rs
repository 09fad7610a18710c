//! What a request can cost before it is sent: the features of the body that multiply or add to
//! its cost (choices, output caps, predicted outputs, server-side tools), the ones whose cost
//! the body does not show at all ([`Unbounded`]), and the worst-case estimate that budgets
//! reserve.
//!
//! The estimate is a true upper bound for what the body shows: the prompt is at most one token
//! per byte of body (a token covers at least one byte of text; JSON only adds bytes), priced
//! at the dearer of the input and cache-write prices; the output is at most the largest output
//! cap the request names (`max_tokens`, `max_completion_tokens`, `max_output_tokens`) times the
//! number of choices (`n`), plus the predicted output (`prediction`, billed as output when
//! rejected). What the body does not show is not bounded by it: the stored context of a
//! `previous_response_id`, `conversation`, stored `prompt` or `item_reference`; images, files,
//! PDFs and audio (priced by pixels, pages and seconds, not bytes); uploaded `file_id`s and file
//! URLs; server-side tools (web search, file search, code execution, remote MCP), which add
//! search results to the prompt and bill per call; a missing output cap; and `background`
//! responses, whose cost is never reported on the call. For those the estimate adds a
//! configured ceiling (`[proxy] unbounded_input_tokens`, `server_tool_calls_reserved` x
//! `server_tool_call_usd`, `default_max_output_tokens`) and names the reasons, so the policy
//! sees them (`input.cost.unbounded`) and can hold or deny such calls.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::config::ProxySettings;
use crate::ctx::BodyInfo;
use crate::pricing::PriceTable;
use crate::route::Endpoint;

/// A request feature whose cost the body does not bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unbounded {
    /// No output cap: the upstream's own maximum applies.
    NoOutputCap,
    /// Responses `previous_response_id`: the stored context is billed as input.
    PreviousResponse,
    /// Responses `conversation`: the conversation's items are billed as input.
    Conversation,
    /// Responses `prompt`: a stored prompt template.
    PromptTemplate,
    /// Responses `item_reference` input items.
    ItemReference,
    /// An uploaded file named by `file_id`.
    FileId,
    /// A file fetched by the upstream from a URL.
    FileUrl,
    /// An image (URL or inline): priced by its pixels, not its bytes.
    Image,
    /// A file, PDF or document: priced by its pages and text, not its bytes.
    File,
    /// Audio input: priced by its duration.
    Audio,
    /// A server-side tool (web search, file search, code execution, remote MCP, ...).
    ServerTool,
    /// `background: true`: the cost is never reported on this call.
    Background,
}

impl Unbounded {
    /// The name the policy input and the audit record use.
    pub fn as_str(self) -> &'static str {
        match self {
            Unbounded::NoOutputCap => "no_output_cap",
            Unbounded::PreviousResponse => "previous_response_id",
            Unbounded::Conversation => "conversation",
            Unbounded::PromptTemplate => "prompt_template",
            Unbounded::ItemReference => "item_reference",
            Unbounded::FileId => "file_id",
            Unbounded::FileUrl => "file_url",
            Unbounded::Image => "image",
            Unbounded::File => "file",
            Unbounded::Audio => "audio",
            Unbounded::ServerTool => "server_tool",
            Unbounded::Background => "background",
        }
    }

    /// Whether the feature adds prompt tokens the body does not contain.
    fn adds_input(self) -> bool {
        !matches!(self, Unbounded::NoOutputCap)
    }
}

/// The request's cost features, read in the same pass as the rest of the body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// Choices the upstream generates (`n`, chat completions); 1 when absent.
    pub choices: u64,
    /// The body carries a predicted output (`prediction`), billed as output when rejected.
    pub prediction: bool,
    /// Server-side tools are offered (or `web_search_options`, `mcp_servers`, `container`).
    pub server_tools: bool,
    /// The most server tool calls the request allows (`max_tool_calls`, the sum of `max_uses`).
    pub server_tool_cap: Option<u64>,
    /// Server tool calls billed whatever the model does (`web_search_options`: one per request).
    pub server_tool_floor: u64,
    /// Why the body does not bound the cost, if it does not.
    pub unbounded: BTreeSet<Unbounded>,
}

/// Scan a JSON value for the parts the body cannot price: images, files, audio, file ids and
/// URLs, item references. Runs as a `Deserialize` impl, so it costs no allocation beyond the
/// parse itself.
#[derive(Debug, Default, PartialEq)]
pub struct MediaScan(pub BTreeSet<Unbounded>);

impl<'de> Deserialize<'de> for MediaScan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut found = BTreeSet::new();
        Scan(&mut found).deserialize(d)?;
        Ok(MediaScan(found))
    }
}

struct Scan<'s>(&'s mut BTreeSet<Unbounded>);

fn media_type(t: &str) -> Option<Unbounded> {
    match t {
        "image_url" | "input_image" | "image" => Some(Unbounded::Image),
        "input_file" | "file" | "document" | "container_upload" => Some(Unbounded::File),
        "input_audio" | "audio" => Some(Unbounded::Audio),
        "item_reference" => Some(Unbounded::ItemReference),
        _ => None,
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// The value of a `type` key: a media type when it is a string, else scanned like any value.
struct TypeValue<'s>(&'s mut BTreeSet<Unbounded>);

impl<'de> DeserializeSeed<'de> for TypeValue<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TypeValue<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.0.extend(media_type(v));
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<(), A::Error> {
        Scan(self.0).visit_map(m)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<(), A::Error> {
        Scan(self.0).visit_seq(s)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while let Some(k) = m.next_key::<Key>()? {
            match k {
                Key::Type => m.next_value_seed(TypeValue(self.0))?,
                Key::FileId | Key::FileUrl => {
                    self.0.insert(if k == Key::FileId { Unbounded::FileId } else { Unbounded::FileUrl });
                    m.next_value::<IgnoredAny>()?;
                }
                Key::Other => m.next_value_seed(Scan(self.0))?,
            }
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element_seed(Scan(self.0))?.is_some() {}
        Ok(())
    }
}

/// The object keys the scan looks at, classified without allocating.
#[derive(PartialEq)]
enum Key {
    Type,
    FileId,
    FileUrl,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E>(self, k: &str) -> Result<Key, E> {
                Ok(match k {
                    "type" => Key::Type,
                    "file_id" => Key::FileId,
                    "file_url" => Key::FileUrl,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// One offered tool, as far as cost is concerned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolKind {
    /// `type`, when the tool has one (`function`, `web_search`, `web_search_20250305`, ...).
    pub kind: Option<String>,
    /// Anthropic server tools' `max_uses`.
    pub max_uses: Option<u64>,
}

impl ToolKind {
    /// Whether the upstream runs the tool itself (and bills for it). Client-executed tool
    /// types are listed; any other typed tool counts as server-side (the conservative side).
    pub fn server_side(&self) -> bool {
        match self.kind.as_deref() {
            None | Some("function" | "custom" | "local_shell" | "shell" | "apply_patch") => false,
            Some(k) => {
                !(k.starts_with("computer")
                    || k.starts_with("bash_")
                    || k.starts_with("text_editor_")
                    || k.starts_with("memory_"))
            }
        }
    }
}

/// The worst-case cost of a request, and why it may not be a bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimate {
    /// USD; `None` when the model has no price.
    pub usd: Option<f64>,
    /// Why the body does not bound the cost (empty: the estimate is a true bound).
    pub unbounded: Vec<Unbounded>,
}

/// Worst-case prompt and output tokens and server tool calls of a request.
pub fn worst_case(endpoint: Endpoint, info: &BodyInfo, body_len: usize, s: &ProxySettings) -> (u64, u64, u64) {
    let f = &info.features;
    let body = body_len as u64;
    let mut input = body;
    if f.unbounded.iter().any(|u| u.adds_input()) {
        input = input.saturating_add(s.unbounded_input_tokens);
    }
    let output = match endpoint {
        Endpoint::Models | Endpoint::Embeddings => 0,
        _ => {
            let cap = info.max_tokens.unwrap_or(s.default_max_output_tokens);
            let predicted = if f.prediction { body } else { 0 };
            cap.saturating_mul(f.choices.max(1)).saturating_add(predicted)
        }
    };
    let tools = if f.server_tools {
        f.server_tool_cap.unwrap_or(s.server_tool_calls_reserved).max(f.server_tool_floor)
    } else {
        f.server_tool_floor
    };
    (input, output, tools)
}

/// The estimate budgets reserve before the call is sent.
pub fn estimate(
    prices: &PriceTable,
    endpoint: Endpoint,
    info: &BodyInfo,
    body_len: usize,
    s: &ProxySettings,
) -> Estimate {
    let unbounded: Vec<Unbounded> = info.features.unbounded.iter().copied().collect();
    if endpoint == Endpoint::Models {
        return Estimate { usd: Some(0.0), unbounded: Vec::new() };
    }
    let (input, output, tools) = worst_case(endpoint, info, body_len, s);
    let usd = prices.estimate(&info.model, input, output).map(|v| v + tools as f64 * prices.server_tool_call_usd());
    Estimate { usd, unbounded }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(json: &str) -> Vec<&'static str> {
        let MediaScan(found) = serde_json::from_str(json).unwrap();
        found.into_iter().map(Unbounded::as_str).collect()
    }

    #[test]
    fn media_parts_are_found_at_any_depth_in_every_dialect() {
        // OpenAI chat: image by URL (30 bytes that may cost thousands of tokens), audio, file id.
        assert_eq!(
            scan(r#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/a.png"}}]}]"#),
            ["image"]
        );
        assert_eq!(
            scan(
                r#"[{"content":[{"type":"input_audio","input_audio":{"data":"AA=="}},{"type":"file","file":{"file_id":"f1"}}]}]"#
            ),
            ["file_id", "file", "audio"]
        );
        // Responses input items.
        assert_eq!(
            scan(
                r#"[{"type":"item_reference","id":"msg_1"},{"role":"user","content":[{"type":"input_file","file_url":"https://x/a.pdf"}]}]"#
            ),
            ["item_reference", "file_url", "file"]
        );
        // Anthropic: a PDF inside a tool result inside a message.
        assert_eq!(
            scan(
                r#"[{"content":[{"type":"tool_result","content":[{"type":"document","source":{"type":"base64","data":"JVBERi0="}}]}]}]"#
            ),
            ["file"]
        );
        // Plain text, even text that talks about images, is bounded.
        assert_eq!(scan(r#"[{"role":"user","content":"type image_url please","type":"text"}]"#), Vec::<&str>::new());
        assert_eq!(scan(r#""just a string""#), Vec::<&str>::new());
    }

    #[test]
    fn worst_case_multiplies_choices_and_adds_what_the_body_cannot_show() {
        let s = ProxySettings {
            unbounded_input_tokens: 1000,
            server_tool_calls_reserved: 5,
            default_max_output_tokens: 64,
            ..ProxySettings::default()
        };
        let info = |f: Features, cap: Option<u64>| BodyInfo { max_tokens: cap, features: f, ..BodyInfo::default() };
        let plain = Features { choices: 1, ..Features::default() };
        assert_eq!(worst_case(Endpoint::ChatCompletions, &info(plain.clone(), Some(10)), 200, &s), (200, 10, 0));
        // n = 100 choices, and a predicted output billed as output when rejected.
        let f = Features { choices: 100, prediction: true, ..Features::default() };
        assert_eq!(worst_case(Endpoint::ChatCompletions, &info(f, Some(10)), 200, &s), (200, 1200, 0));
        // An image: the ceiling on top of the body; server tools: the reserved calls or the cap.
        let mut f = Features { choices: 1, server_tools: true, ..Features::default() };
        f.unbounded.extend([Unbounded::Image, Unbounded::ServerTool]);
        assert_eq!(worst_case(Endpoint::Responses, &info(f.clone(), Some(10)), 200, &s), (1200, 10, 5));
        f.server_tool_cap = Some(2);
        assert_eq!(worst_case(Endpoint::Messages, &info(f, Some(10)), 200, &s), (1200, 10, 2));
        // No output cap: the default, which adds no input.
        let mut f = plain;
        f.unbounded.insert(Unbounded::NoOutputCap);
        assert_eq!(worst_case(Endpoint::ChatCompletions, &info(f, None), 200, &s), (200, 64, 0));
        // Priced: tokens at the model's prices plus the server tool calls at their price.
        let prices = PriceTable::new(&Default::default()).unwrap().with_server_tool_call_usd(0.01);
        let mut f = Features { choices: 1, server_tool_floor: 1, ..Features::default() };
        f.unbounded.insert(Unbounded::ServerTool);
        let i = BodyInfo { model: "gpt-4o".into(), max_tokens: Some(100), features: f, ..BodyInfo::default() };
        let e = estimate(&prices, Endpoint::ChatCompletions, &i, 1000, &s);
        // (1000 + 1000) x $2.50/M + 100 x $10/M + 1 x $0.01
        assert!((e.usd.unwrap() - (0.005 + 0.001 + 0.01)).abs() < 1e-12, "{e:?}");
        assert_eq!(e.unbounded, vec![Unbounded::ServerTool]);
    }

    #[test]
    fn tool_kinds() {
        let t = |k: &str| ToolKind { kind: Some(k.into()), max_uses: None }.server_side();
        assert!(!ToolKind::default().server_side());
        assert!(!t("function") && !t("custom") && !t("bash_20250124") && !t("computer_use_preview"));
        assert!(t("web_search") && t("web_search_preview") && t("web_search_20250305") && t("file_search"));
        assert!(t("code_interpreter") && t("mcp") && t("image_generation") && t("some_future_tool"));
    }
}

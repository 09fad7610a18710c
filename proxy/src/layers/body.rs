//! Body layer: reads the request body within the size limit, refuses anything but one JSON
//! object in UTF-8 (400 in the caller's shape, streamed or not), parses the fields the policy
//! and the budgets need (model, stream, token caps, tools, and the cost features of
//! `estimate`) in one pass, and estimates the call's worst-case cost. The original bytes are
//! kept verbatim for forwarding.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use tower::{Layer, Service};

use super::BoxFut;
use crate::body::{BoxError, ResBody};
use crate::ctx::{BodyInfo, CallCtx, CallRequest};
use crate::error::ProxyError;
use crate::estimate::{self, Features, MediaScan, ToolKind, Unbounded};
use crate::route::{Endpoint, Route};
use crate::ProxyState;

/// See the module docs.
#[derive(Clone)]
pub struct BodyLayer {
    state: Arc<ProxyState>,
}

impl BodyLayer {
    /// Bodies above `settings.max_body_bytes` get 413; estimates use the state's prices.
    pub fn new(state: Arc<ProxyState>) -> Self {
        BodyLayer { state }
    }
}

impl<S> Layer<S> for BodyLayer {
    type Service = BodyReader<S>;
    fn layer(&self, inner: S) -> BodyReader<S> {
        BodyReader { inner, state: self.state.clone() }
    }
}

/// The body-reading service.
#[derive(Clone)]
pub struct BodyReader<S> {
    inner: S,
    state: Arc<ProxyState>,
}

/// A tool as offered: its name (client tools), its `type` (server tools), its `max_uses`.
#[derive(Deserialize)]
struct ToolSpec {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    function: Option<Box<ToolSpec>>,
    #[serde(default)]
    max_uses: Option<u64>,
}

fn raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The fields of a model request the sidecar reads; everything else passes through untouched
/// (and unparsed, apart from being checked as JSON). A field given twice is refused, so the
/// sidecar and the upstream can never read different values of it.
#[derive(Deserialize)]
struct ModelRequest<'a> {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    max_output_tokens: Option<u64>,
    #[serde(default, borrow, deserialize_with = "raw")]
    stream_options: Option<&'a RawValue>,
    #[serde(default)]
    tools: Option<Vec<ToolSpec>>,
    #[serde(default)]
    n: Option<u64>,
    #[serde(default)]
    prediction: Option<IgnoredAny>,
    #[serde(default)]
    previous_response_id: Option<IgnoredAny>,
    #[serde(default)]
    conversation: Option<IgnoredAny>,
    #[serde(default)]
    prompt: Option<IgnoredAny>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    max_tool_calls: Option<u64>,
    #[serde(default)]
    web_search_options: Option<IgnoredAny>,
    #[serde(default)]
    mcp_servers: Option<IgnoredAny>,
    #[serde(default)]
    container: Option<IgnoredAny>,
    #[serde(default)]
    messages: Option<MediaScan>,
    #[serde(default)]
    input: Option<MediaScan>,
    #[serde(default)]
    system: Option<MediaScan>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The body as text, refused unless it is UTF-8 holding one JSON object: the same check for
/// streamed and non-streamed calls, so nothing is forwarded that the upstream would read
/// differently from the sidecar.
fn json_object_text(body: &[u8]) -> Result<&str, ProxyError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ProxyError::BadJson(format!("the body is not valid UTF-8 (invalid byte at offset {})", e.valid_up_to()))
    })?;
    if !text.trim_start_matches([' ', '\t', '\n', '\r']).starts_with('{') {
        return Err(ProxyError::BadJson("the body must be a JSON object".into()));
    }
    Ok(text)
}

/// Parse the request body of a model call to `endpoint`.
pub fn parse_info(endpoint: Endpoint, body: &[u8]) -> Result<BodyInfo, ProxyError> {
    let text = json_object_text(body)?;
    let r: ModelRequest<'_> = serde_json::from_str(text).map_err(|e| ProxyError::BadJson(e.to_string()))?;
    let include_usage = match r.stream_options {
        Some(raw) if raw.get().starts_with('{') => serde_json::from_str::<StreamOptions>(raw.get())
            .map_err(|e| ProxyError::BadJson(format!("stream_options: {e}")))?
            .include_usage
            .unwrap_or(false),
        _ => false,
    };
    let stream_options_span = r.stream_options.map(|raw| {
        let at = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        at..at + raw.get().len()
    });
    let mut f = Features { choices: 1, ..Features::default() };
    for scan in [r.messages, r.input, r.system].into_iter().flatten() {
        f.unbounded.extend(scan.0);
    }
    if endpoint == Endpoint::ChatCompletions {
        f.choices = r.n.unwrap_or(1).max(1);
    }
    if endpoint == Endpoint::Responses {
        let flags = [
            (r.previous_response_id.is_some(), Unbounded::PreviousResponse),
            (r.conversation.is_some(), Unbounded::Conversation),
            (r.prompt.is_some(), Unbounded::PromptTemplate),
            (r.background == Some(true), Unbounded::Background),
        ];
        f.unbounded.extend(flags.into_iter().filter(|(on, _)| *on).map(|(_, u)| u));
    }
    f.prediction = r.prediction.is_some();
    let tools = r.tools.unwrap_or_default();
    let kinds: Vec<ToolKind> = tools.iter().map(|t| ToolKind { kind: t.kind.clone(), max_uses: t.max_uses }).collect();
    let server: Vec<&ToolKind> = kinds.iter().filter(|k| k.server_side()).collect();
    f.server_tools = !server.is_empty() || r.mcp_servers.is_some() || r.container.is_some();
    f.server_tool_cap = r.max_tool_calls.or_else(|| {
        // Anthropic: each server tool's `max_uses`, when every one of them has one.
        let uses: Option<Vec<u64>> = server.iter().map(|k| k.max_uses).collect();
        uses.filter(|u| !u.is_empty() && r.mcp_servers.is_none()).map(|u| u.iter().sum())
    });
    if r.web_search_options.is_some() {
        // Search models search once per request, billed per request.
        f.server_tool_floor = 1;
    }
    if f.server_tools || f.server_tool_floor > 0 {
        f.unbounded.insert(Unbounded::ServerTool);
    }
    let max_tokens = [r.max_tokens, r.max_completion_tokens, r.max_output_tokens].into_iter().flatten().max();
    if max_tokens.is_none() && matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Responses | Endpoint::Messages)
    {
        f.unbounded.insert(Unbounded::NoOutputCap);
    }
    let names = tools
        .into_iter()
        .zip(&kinds)
        .filter_map(|(t, k)| {
            t.name.or_else(|| t.function.and_then(|f| f.name)).or_else(|| t.kind.filter(|_| k.server_side()))
        })
        .collect();
    Ok(BodyInfo {
        model: r.model.unwrap_or_default(),
        stream: r.stream.unwrap_or(false),
        max_tokens,
        include_usage,
        stream_options_span,
        tools: names,
        features: f,
    })
}

/// OpenClaw's session id, from whichever header carries it (`<sessionId>:0` forms trimmed).
pub fn session_from(headers: &http::HeaderMap) -> Option<String> {
    ["x-clawrouter-session-id", "session_id", "x-session-affinity"].iter().find_map(|h| {
        let v = headers.get(*h)?.to_str().ok()?.trim();
        let v = v.strip_suffix(":0").unwrap_or(v);
        (!v.is_empty() && v.len() <= 256).then(|| v.to_string())
    })
}

impl<S, B> Service<Request<B>> for BodyReader<S>
where
    S: Service<CallRequest, Response = Response<ResBody>, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResBody>;
    type Error = ProxyError;
    type Future = BoxFut<ProxyError>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = self.inner.clone();
        let state = self.state.clone();
        let limit = state.settings.max_body_bytes;
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let ctx = parts
                .extensions
                .remove::<Arc<CallCtx>>()
                .ok_or_else(|| ProxyError::Internal("no call context".into()))?;
            let route = parts.extensions.remove::<Route>().ok_or_else(|| ProxyError::Internal("no route".into()))?;
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return Err(ProxyError::BodyTooLarge { limit });
            }
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(ProxyError::BodyTooLarge { limit }),
                // A trickling client: the listener's body deadline passed (see `listener`).
                Err(e) => match e.downcast_ref::<listener::BodyTimeout>() {
                    Some(t) => return Err(ProxyError::BodyTimeout { ms: t.after.as_millis() as u64 }),
                    None => return Err(ProxyError::BodyRead(e.to_string())),
                },
            };
            let info =
                if route.endpoint.has_body() { parse_info(route.endpoint, &bytes)? } else { BodyInfo::default() };
            let session = session_from(&parts.headers);
            // The model name, cut to a bounded length (it is the caller's text).
            ctx.trace.set(|| telemetry::Attr::new("gen_ai.request.model", bounded(&info.model, 128)));
            let estimate_usd =
                estimate::estimate(&state.prices, route.endpoint, &info, bytes.len(), &state.settings).usd;
            inner
                .call(CallRequest {
                    ctx,
                    route,
                    parts,
                    body: bytes,
                    info,
                    session,
                    decision: None,
                    estimate_usd,
                    reservation: None,
                })
                .await
        })
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn bounded(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(b: &str) -> BodyInfo {
        parse_info(Endpoint::ChatCompletions, b.as_bytes()).unwrap()
    }

    #[test]
    fn parses_openclaw_style_body() {
        let b = r#"{"model":"gpt-4o-mini","messages":[],"stream":true,"stream_options":{"include_usage":true},
                     "tools":[{"type":"function","function":{"name":"exec"}}],"max_completion_tokens":32000}"#;
        let i = chat(b);
        assert_eq!(i.model, "gpt-4o-mini");
        assert!(i.stream && i.include_usage);
        assert_eq!(i.max_tokens, Some(32000));
        assert_eq!(i.tools, vec!["exec"]);
        assert_eq!(&b[i.stream_options_span.unwrap()], r#"{"include_usage":true}"#);
        assert!(i.features.unbounded.is_empty(), "{:?}", i.features);
    }

    #[test]
    fn anthropic_tools_and_max_tokens() {
        let i = parse_info(
            Endpoint::Messages,
            br#"{"model":"claude-haiku-4-5","max_tokens":100,"tools":[{"name":"exec","input_schema":{}}]}"#,
        )
        .unwrap();
        assert_eq!(i.max_tokens, Some(100));
        assert_eq!(i.tools, vec!["exec"]);
        assert!(!i.features.server_tools);
    }

    #[test]
    fn the_largest_output_cap_counts_and_n_multiplies() {
        let i = chat(r#"{"model":"m","max_tokens":1,"max_completion_tokens":500,"n":100}"#);
        assert_eq!((i.max_tokens, i.features.choices), (Some(500), 100));
        // `n` means nothing to the other endpoints.
        let i = parse_info(Endpoint::Messages, br#"{"model":"m","max_tokens":5,"n":100}"#).unwrap();
        assert_eq!(i.features.choices, 1);
        let i = chat(r#"{"model":"m"}"#);
        assert!(i.features.unbounded.contains(&Unbounded::NoOutputCap));
    }

    #[test]
    fn responses_context_and_server_tools_are_unbounded() {
        let i = parse_info(
            Endpoint::Responses,
            br#"{"model":"m","max_output_tokens":10,"previous_response_id":"resp_1","conversation":"conv_1",
                 "tools":[{"type":"web_search"},{"type":"function","name":"exec"}],"max_tool_calls":3,
                 "input":[{"role":"user","content":[{"type":"input_image","file_id":"file-1"}]}]}"#,
        )
        .unwrap();
        let u: Vec<&str> = i.features.unbounded.iter().map(|u| u.as_str()).collect();
        assert_eq!(u, ["previous_response_id", "conversation", "file_id", "image", "server_tool"]);
        assert_eq!(i.features.server_tool_cap, Some(3));
        assert_eq!(i.tools, vec!["web_search", "exec"]);
        // Anthropic: max_uses of every server tool bounds the calls.
        let i = parse_info(
            Endpoint::Messages,
            br#"{"model":"m","max_tokens":10,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":2}]}"#,
        )
        .unwrap();
        assert!(i.features.server_tools);
        assert_eq!(i.features.server_tool_cap, Some(2));
        let i = chat(r#"{"model":"m","max_tokens":5,"web_search_options":{}}"#);
        assert_eq!(i.features.server_tool_floor, 1);
        assert!(i.features.unbounded.contains(&Unbounded::ServerTool));
    }

    #[test]
    fn anything_but_one_utf8_json_object_is_refused() {
        for bad in [&b"{not json"[..], b"[1,2]", b"[]", b" [{\"model\":\"m\"}]", b"\"text\"", b"42", b"null"] {
            assert!(matches!(parse_info(Endpoint::ChatCompletions, bad), Err(ProxyError::BadJson(_))), "{bad:?}");
        }
        let e = parse_info(Endpoint::ChatCompletions, b"{\"model\":\"m\",\"x\":\"\xff\"}").unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        // A field given twice could be read one way here and another way upstream.
        let e = parse_info(Endpoint::ChatCompletions, br#"{"model":"a","model":"b"}"#).unwrap_err();
        assert!(e.to_string().contains("duplicate"), "{e}");
        assert!(parse_info(Endpoint::ChatCompletions, br#"{"model":"m"} trailing"#).is_err());
    }

    #[test]
    fn session_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("x-session-affinity", "abc-123:0".parse().unwrap());
        assert_eq!(session_from(&h).as_deref(), Some("abc-123"));
    }
}

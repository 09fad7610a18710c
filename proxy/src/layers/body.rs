//! Body layer: reads the request body within the size limit, parses the JSON fields the
//! policy needs (model, stream, token caps, tools) and estimates the call's worst-case cost.
//! The original bytes are kept verbatim for forwarding.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use tower::{Layer, Service};

use super::BoxFut;
use crate::body::{BoxError, ResBody};
use crate::ctx::{BodyInfo, CallCtx, CallRequest};
use crate::error::ProxyError;
use crate::pricing;
use crate::route::Route;
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

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct ToolName {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    function: Option<Box<ToolName>>,
}

/// The fields of a model request the sidecar reads; everything else passes through untouched.
#[derive(Deserialize)]
struct ModelRequest {
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
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    tools: Option<Vec<ToolName>>,
}

/// Parse the request body of a model call.
pub fn parse_info(body: &[u8]) -> Result<BodyInfo, ProxyError> {
    let r: ModelRequest = serde_json::from_slice(body).map_err(|e| ProxyError::BadJson(e.to_string()))?;
    let tools = r
        .tools
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.name.or_else(|| t.function.and_then(|f| f.name)))
        .collect();
    Ok(BodyInfo {
        model: r.model.unwrap_or_default(),
        stream: r.stream.unwrap_or(false),
        max_tokens: r.max_completion_tokens.or(r.max_tokens).or(r.max_output_tokens),
        include_usage: r.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        tools,
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
            let info = if route.endpoint.has_body() { parse_info(&bytes)? } else { BodyInfo::default() };
            let session = session_from(&parts.headers);
            let estimate_usd = pricing::estimate_call(
                &state.prices,
                route.endpoint,
                &info,
                bytes.len(),
                state.settings.default_max_output_tokens,
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openclaw_style_body() {
        let b = br#"{"model":"gpt-4o-mini","messages":[],"stream":true,"stream_options":{"include_usage":true},
                     "tools":[{"type":"function","function":{"name":"exec"}}],"max_completion_tokens":32000}"#;
        let i = parse_info(b).unwrap();
        assert_eq!(i.model, "gpt-4o-mini");
        assert!(i.stream && i.include_usage);
        assert_eq!(i.max_tokens, Some(32000));
        assert_eq!(i.tools, vec!["exec"]);
    }

    #[test]
    fn anthropic_tools_and_max_tokens() {
        let i =
            parse_info(br#"{"model":"claude-haiku-4-5","max_tokens":100,"tools":[{"name":"exec","input_schema":{}}]}"#)
                .unwrap();
        assert_eq!(i.max_tokens, Some(100));
        assert_eq!(i.tools, vec!["exec"]);
    }

    #[test]
    fn malformed_json_is_rejected() {
        assert!(matches!(parse_info(b"{not json"), Err(ProxyError::BadJson(_))));
        assert!(matches!(parse_info(b"[1,2]"), Err(ProxyError::BadJson(_))));
    }

    #[test]
    fn session_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("x-session-affinity", "abc-123:0".parse().unwrap());
        assert_eq!(session_from(&h).as_deref(), Some("abc-123"));
    }
}

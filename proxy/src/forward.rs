//! The innermost service: sends an allowed call upstream over the pooled rustls client and
//! streams the reply back through the metered body. Keys are injected here (and the client's
//! dropped) when the upstream holds its own. What happens when the call ends (cost, budget
//! settlement, the audit record) is `finish.rs`'s job, handed a [`CallEnd`] here.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use decision::Decision;
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use tower::Service;

use crate::body::ResBody;
use crate::ctx::CallRequest;
use crate::error::ProxyError;
use crate::finish::CallEnd;
use crate::layers::BoxFut;
use crate::meter::{Finished, MeteredBody, Mode, Outcome};
use crate::metrics::ErrorClass;
use crate::route::Endpoint;
use crate::ProxyState;

/// See the module docs.
#[derive(Clone)]
pub struct Forward {
    state: Arc<ProxyState>,
}

impl Forward {
    /// Forward with the state's client and upstreams.
    pub fn new(state: Arc<ProxyState>) -> Self {
        Forward { state }
    }
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Drop hop-by-hop headers (and any the `Connection` header names).
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<String> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for n in named {
        h.remove(n.as_str());
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

/// Ask the upstream for stream usage on behalf of a client that did not.
pub fn with_include_usage(body: &[u8]) -> Result<Bytes, ProxyError> {
    let mut v: serde_json::Value = serde_json::from_slice(body).map_err(|e| ProxyError::BadJson(e.to_string()))?;
    let obj = v.as_object_mut().ok_or_else(|| ProxyError::BadJson("body must be a JSON object".into()))?;
    let so = obj.entry("stream_options").or_insert_with(|| serde_json::json!({}));
    match so.as_object_mut() {
        Some(o) => {
            o.insert("include_usage".into(), serde_json::Value::Bool(true));
        }
        None => *so = serde_json::json!({"include_usage": true}),
    }
    serde_json::to_vec(&v).map(Bytes::from).map_err(|e| ProxyError::Internal(e.to_string()))
}

async fn forward(state: Arc<ProxyState>, req: CallRequest) -> Result<Response<ResBody>, ProxyError> {
    let decision: Decision =
        req.decision.clone().ok_or_else(|| ProxyError::Internal("forward without decision".into()))?;
    let up = req.route.upstream.clone();
    let path = match req.parts.uri.query() {
        Some(q) => format!("{}{}?{}", up.base, req.route.upstream_path, q),
        None => format!("{}{}", up.base, req.route.upstream_path),
    };
    let uri: Uri = path.parse().map_err(|_| ProxyError::Internal(format!("bad upstream uri {path}")))?;
    let strip_usage = req.route.endpoint == Endpoint::ChatCompletions && req.info.stream && !req.info.include_usage;
    let body = if strip_usage { with_include_usage(&req.body)? } else { req.body.clone() };

    let mut headers = req.parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(http::header::HOST);
    headers.remove(http::header::CONTENT_LENGTH);
    // Identity encoding keeps the side decoder able to read usage (cost must never be lost).
    headers.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    if let Some(key) = &up.key {
        headers.remove(http::header::AUTHORIZATION);
        headers.remove("x-api-key");
        headers.insert(up.key_header(), key.clone());
    }
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = req.parts.method.clone();
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;

    let mut req = req;
    let mut fin = CallEnd::new(state.clone(), &mut req, &decision);
    let t0 = Instant::now();
    let res = match tokio::time::timeout(up.timeout, state.client.request(out)).await {
        Err(_) => {
            req.ctx.add_upstream(t0.elapsed());
            state.metrics.upstream_error(&up.name, ErrorClass::Timeout);
            fin.finish(Outcome::UpstreamError("timeout".into()), Default::default(), 0);
            return Err(ProxyError::UpstreamTimeout {
                upstream: up.name.clone(),
                timeout_ms: up.timeout.as_millis() as u64,
            });
        }
        Ok(Err(e)) => {
            req.ctx.add_upstream(t0.elapsed());
            state.metrics.upstream_error(&up.name, ErrorClass::Connect);
            let detail = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
            fin.finish(Outcome::UpstreamError(detail.clone()), Default::default(), 0);
            return Err(ProxyError::UpstreamUnreachable { upstream: up.name.clone(), detail });
        }
        Ok(Ok(r)) => r,
    };
    req.ctx.add_upstream(t0.elapsed());
    let status = res.status();
    fin.status = status.as_u16();
    if status.is_client_error() {
        state.metrics.upstream_error(&up.name, ErrorClass::Status4xx);
    } else if status.is_server_error() {
        state.metrics.upstream_error(&up.name, ErrorClass::Status5xx);
    }
    let (mut parts, incoming) = res.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let is_sse = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let mode = if !status.is_success() {
        Mode::Raw
    } else if is_sse {
        if strip_usage {
            parts.headers.remove(http::header::CONTENT_LENGTH);
        }
        Mode::Sse { splitter: Default::default(), strip_usage }
    } else {
        Mode::Json { buf: Vec::new(), cap: crate::meter::body::JSON_DECODE_CAP }
    };
    let on_finish = Box::new(move |f: Finished| fin.finish(f.outcome, f.summary, f.bytes));
    let idle = std::time::Duration::from_millis(state.settings.stream_idle_timeout_ms);
    let body = MeteredBody::new(incoming, mode, req.route.endpoint, idle, on_finish).boxed_unsync();
    Ok(Response::from_parts(parts, body))
}

impl Service<CallRequest> for Forward {
    type Response = Response<ResBody>;
    type Error = ProxyError;
    type Future = BoxFut<ProxyError>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: CallRequest) -> Self::Future {
        Box::pin(forward(self.state.clone(), req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_usage_is_added_or_forced() {
        let b = with_include_usage(br#"{"model":"m","stream":true}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let b = with_include_usage(br#"{"stream_options":{"include_usage":false,"x":1}}"#).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream_options"], serde_json::json!({"include_usage": true, "x": 1}));
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("authorization", "Bearer k".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("authorization"));
    }
}

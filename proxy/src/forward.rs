//! The innermost service: sends an allowed call upstream over the pooled rustls client and
//! streams the reply back through the metered body. Keys are injected here (and the client's
//! dropped) when the upstream holds its own. The body goes upstream as the client sent it;
//! the one change the sidecar makes (asking for stream usage) is spliced in, never
//! re-serialised. What happens when the call ends (cost, budget settlement, the audit
//! record) is `finish.rs`'s job, handed a [`CallEnd`] here, which also writes the call's
//! `started` record if it is still running one audit group window after it was sent.

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
use crate::meter::{MeteredBody, Mode, Outcome};
use crate::metrics::ErrorClass;
use crate::route::{Dialect, Endpoint};
use crate::ProxyState;

type ResponseFuture = hyper_util::client::legacy::ResponseFuture;

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

// Header names, not strings: removing by `&str` parses the name again on every call.
const HOPS: usize = 9;
const HOP_BY_HOP: [http::header::HeaderName; HOPS] = [
    http::header::CONNECTION,
    http::header::HeaderName::from_static("keep-alive"),
    http::header::HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

/// Drop hop-by-hop headers (and any the `Connection` header names).
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    // One pass over the few headers present finds the hop-by-hop ones (most maps hold one or
    // none); a removal per name would hash all nine on every call.
    let mut found = [false; HOPS];
    for k in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|n| n == k) {
            found[i] = true;
        }
    }
    if !found.contains(&true) {
        return;
    }
    if found[0] {
        // `Connection` (first in the list) names further headers that end at this hop.
        let named: Vec<String> = h
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
            .collect();
        for n in named {
            h.remove(n.as_str());
        }
    }
    for (n, _) in HOP_BY_HOP.iter().zip(found).filter(|(_, f)| *f) {
        h.remove(n);
    }
}

/// Ask the upstream for stream usage on behalf of a client that did not, without
/// re-serialising the body: the client's bytes go upstream unchanged except for the one
/// field. `span` is the byte range of the top-level `stream_options` value, if there is one:
/// an object keeps its other members byte for byte, anything else is replaced. The body was
/// checked to be one JSON object in UTF-8 by the body layer.
pub fn with_include_usage(body: &[u8], span: Option<std::ops::Range<usize>>) -> Result<Bytes, ProxyError> {
    let bad = || ProxyError::BadJson("the body must be a JSON object".into());
    let (at, end, value) = match span {
        Some(r) => {
            let raw = std::str::from_utf8(body.get(r.clone()).ok_or_else(bad)?).map_err(|_| bad())?;
            let mut v = String::from("{\"include_usage\":true");
            if raw.starts_with('{') {
                let members: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
                    serde_json::from_str(raw).map_err(|e| ProxyError::BadJson(format!("stream_options: {e}")))?;
                for (k, val) in members.iter().filter(|(k, _)| k.as_str() != "include_usage") {
                    let key = serde_json::to_string(k).map_err(|e| ProxyError::Internal(e.to_string()))?;
                    v.push(',');
                    v.push_str(&key);
                    v.push(':');
                    v.push_str(val.get());
                }
            }
            v.push('}');
            (r.start, r.end, v)
        }
        None => {
            // Before the closing brace of the top-level object.
            let close =
                body.iter().rposition(|b| !b" \t\r\n".contains(b)).filter(|&i| body[i] == b'}').ok_or_else(bad)?;
            let open = body.iter().position(|b| !b" \t\r\n".contains(b)).ok_or_else(bad)?;
            let empty = body[open + 1..close].iter().all(|b| b" \t\r\n".contains(b));
            let sep = if empty { "" } else { "," };
            (close, close, format!("{sep}\"stream_options\":{{\"include_usage\":true}}"))
        }
    };
    let mut out = Vec::with_capacity(body.len() + value.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(&body[end..]);
    Ok(Bytes::from(out))
}

/// The upstream request while its response headers are awaited. If the caller goes away
/// first, a non-streamed call is finished in the background: the upstream completes (and
/// bills) it whether anyone listens, so the sidecar waits for the reply (up to the upstream
/// timeout) and charges what it reports. A streamed call is simply dropped: closing the
/// connection stops the generation, and nothing is charged.
struct Waiting {
    fut: Option<ResponseFuture>,
    fin: Option<CallEnd>,
    deadline: tokio::time::Instant,
    meter: MeterSpec,
}

/// What metering a reply needs, kept for a background finish.
#[derive(Clone)]
struct MeterSpec {
    state: Arc<ProxyState>,
    endpoint: Endpoint,
    dialect: Dialect,
    upstream: String,
    strip_usage: bool,
    /// Finish in the background if the caller leaves before the answer (non-streamed calls).
    detach: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let (Some(fut), Some(mut fin)) = (self.fut.take(), self.fin.take()) else { return };
        if !self.meter.detach {
            return; // `fin` drops: cancelled before the answer, not charged.
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        fin.client_gone = true;
        // How long the upstream still takes is unknown: record the start now.
        fin.start();
        let (deadline, meter) = (self.deadline, self.meter.clone());
        rt.spawn(async move {
            match tokio::time::timeout_at(deadline, fut).await {
                Err(_) => fin.finish(Outcome::UpstreamError("timeout".into()), Default::default(), 0),
                Ok(Err(e)) => fin.finish(Outcome::UpstreamError(e.to_string()), Default::default(), 0),
                Ok(Ok(res)) => {
                    let res = meter.response(res, fin, None);
                    // Read the reply to its end, only to meter it.
                    let _ = res.into_body().collect().await;
                }
            }
        });
    }
}

impl MeterSpec {
    /// The response to send back: headers cleaned, body metered, the call's end handed over.
    /// `start_due`: when the call's `started` record is due if the body has not ended by then
    /// (`None`: written already, or not wanted).
    fn response(
        &self,
        res: Response<hyper::body::Incoming>,
        mut fin: CallEnd,
        start_due: Option<tokio::time::Instant>,
    ) -> Response<ResBody> {
        let status = res.status();
        fin.status = status.as_u16();
        if status.is_client_error() {
            self.state.metrics.upstream_error(&self.upstream, ErrorClass::Status4xx);
        } else if status.is_server_error() {
            self.state.metrics.upstream_error(&self.upstream, ErrorClass::Status5xx);
        }
        let (mut parts, incoming) = res.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let is_sse = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let settings = &self.state.settings;
        let mode = if !status.is_success() {
            Mode::Raw
        } else if is_sse {
            // Events pass on whole, and a cut stream gains an error event: the length changes.
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Mode::sse(self.strip_usage, settings.max_sse_event_bytes)
        } else {
            Mode::json(settings.max_decode_bytes)
        };
        let idle = std::time::Duration::from_millis(settings.stream_idle_timeout_ms);
        let body = MeteredBody::new(incoming, mode, self.endpoint, self.dialect, idle, Box::new(fin), start_due)
            .boxed_unsync();
        Response::from_parts(parts, body)
    }
}

async fn forward(state: Arc<ProxyState>, req: CallRequest) -> Result<Response<ResBody>, ProxyError> {
    let decision: Decision =
        req.decision.clone().ok_or_else(|| ProxyError::Internal("forward without decision".into()))?;
    let up = req.route.upstream.clone();
    // Joined by hand and handed over whole: `format!` and `str::parse` (which copies) were
    // ~1,000 instructions of every call.
    let query = req.parts.uri.query();
    let (base, rest) = (up.base.as_str(), req.route.upstream_path.as_str());
    let mut path = String::with_capacity(base.len() + rest.len() + query.map_or(0, |q| q.len() + 1));
    path.push_str(base);
    path.push_str(rest);
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    let uri = Uri::try_from(path).map_err(|e| ProxyError::Internal(format!("bad upstream uri {base}{rest}: {e}")))?;
    let strip_usage = req.route.endpoint == Endpoint::ChatCompletions && req.info.stream && !req.info.include_usage;
    let body = if strip_usage {
        with_include_usage(&req.body, req.info.stream_options_span.clone())?
    } else {
        req.body.clone()
    };

    let mut headers = req.parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    match &up.host {
        Some(host) => headers.insert(http::header::HOST, host.clone()),
        None => headers.remove(http::header::HOST),
    };
    headers.remove(http::header::CONTENT_LENGTH);
    // Identity encoding keeps the side decoder able to read usage (cost must never be lost).
    headers.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    if let Some(key) = &up.key {
        headers.remove(http::header::AUTHORIZATION);
        headers.remove("x-api-key");
        headers.insert(up.key_header(), key.clone());
    }
    // The upstream request's span; when traces are on, the upstream is told it is the
    // parent (W3C `traceparent`, replacing the caller's, whose span is this one's ancestor).
    let span = req.ctx.trace.child_of_kind("upstream", telemetry::Kind::Client, || {
        vec![
            telemetry::Attr::new("clawbutler.upstream", up.name.clone()),
            telemetry::Attr::new("http.request.method", req.parts.method.as_str().to_string()),
            telemetry::Attr::new("clawbutler.stream", req.info.stream),
        ]
    });
    if let Some(tp) = span.traceparent().and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert("traceparent", tp);
    }
    let mut out = Request::new(Full::new(body));
    *out.method_mut() = req.parts.method.clone();
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;

    let mut req = req;
    let mut fin = CallEnd::new(state.clone(), &mut req, &decision);
    if let Err(refusal) = crate::refuse::audit_open(&state, &req) {
        // The audit log cannot take the call's records: nothing is sent.
        fin.unsent();
        return Err(refusal);
    }
    let meter = MeterSpec {
        state: state.clone(),
        endpoint: req.route.endpoint,
        dialect: req.ctx.dialect,
        upstream: up.name.clone(),
        strip_usage,
        detach: !req.info.stream,
    };
    let t0 = Instant::now();
    // The `started` record is due one group window from now: a call that has ended by then
    // (most non-streamed ones) needs its end record only (`finish.rs`).
    let sent_at = tokio::time::Instant::now();
    let start_due = sent_at + state.audit.group_window();
    let mut wait =
        Waiting { fut: Some(state.client.get().request(out)), fin: Some(fin), deadline: sent_at + up.timeout, meter };
    // The upstream's answer may come within the thread's spin window: stay awake for it.
    listener::keep_awake(listener::Awaiting::Upstream);
    // One timer per call while it is young: it fires at whichever comes first, the `started`
    // record's due time or the upstream timeout. Most calls end before either, so the
    // timeout's own timer is armed only for the calls still waiting then (each timer is a
    // wheel insert and removal under the runtime's timer lock).
    let deadline = wait.deadline;
    let sent = match (wait.fut.as_mut(), wait.fin.as_mut()) {
        (Some(fut), Some(fin)) => {
            tokio::select! {
                biased;
                r = &mut *fut => Ok(r),
                () = tokio::time::sleep_until(start_due.min(deadline)) => {
                    if start_due <= deadline {
                        fin.start();
                    }
                    tokio::time::timeout_at(deadline, fut).await
                }
            }
        }
        _ => return Err(ProxyError::Internal("upstream request missing".into())),
    };
    listener::arrived();
    wait.fut = None;
    let mut fin = wait.fin.take().ok_or_else(|| ProxyError::Internal("call end missing".into()))?;
    req.ctx.add_upstream(t0.elapsed());
    match &sent {
        Ok(Ok(r)) => span.set(|| telemetry::Attr::new("http.response.status_code", i64::from(r.status().as_u16()))),
        Ok(Err(_)) => span.error("upstream unreachable"),
        Err(_) => span.error("upstream timeout"),
    }
    span.end();
    let res = match sent {
        Err(_) => {
            state.metrics.upstream_error(&up.name, ErrorClass::Timeout);
            fin.finish(Outcome::UpstreamError("timeout".into()), Default::default(), 0);
            return Err(ProxyError::UpstreamTimeout {
                upstream: up.name.clone(),
                timeout_ms: up.timeout.as_millis() as u64,
            });
        }
        Ok(Err(e)) => {
            state.metrics.upstream_error(&up.name, ErrorClass::Connect);
            let detail = std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string());
            fin.finish(Outcome::UpstreamError(detail.clone()), Default::default(), 0);
            return Err(ProxyError::UpstreamUnreachable { upstream: up.name.clone(), detail });
        }
        Ok(Ok(r)) => r,
    };
    let start_due = (!fin.is_started()).then_some(start_due);
    Ok(wait.meter.response(res, fin, start_due))
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

impl crate::layers::IntoNext for Forward {
    fn into_next(self) -> crate::layers::Next {
        crate::layers::Next::service(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splice(body: &str) -> String {
        let info = crate::layers::body::parse_info(Endpoint::ChatCompletions, body.as_bytes()).unwrap();
        String::from_utf8(with_include_usage(body.as_bytes(), info.stream_options_span).unwrap().to_vec()).unwrap()
    }

    #[test]
    fn include_usage_is_spliced_in_and_nothing_else_changes() {
        // Big integers, odd spacing and key order survive byte for byte.
        let body = r#"{ "model":"m", "seed": 123456789012345678901234567890, "stream":true, "x":1.50 }"#;
        assert_eq!(
            splice(body),
            r#"{ "model":"m", "seed": 123456789012345678901234567890, "stream":true, "x":1.50 ,"stream_options":{"include_usage":true}}"#
        );
        let body =
            r#"{"stream":true,"stream_options":{"include_usage":false,"x":123456789012345678901234567890},"n":1}"#;
        assert_eq!(
            splice(body),
            r#"{"stream":true,"stream_options":{"include_usage":true,"x":123456789012345678901234567890},"n":1}"#
        );
        let body = r#"{"stream_options":null,"stream":true}"#;
        assert_eq!(splice(body), r#"{"stream_options":{"include_usage":true},"stream":true}"#);
        assert_eq!(with_include_usage(b" {} ", None).unwrap(), &b" {\"stream_options\":{\"include_usage\":true}} "[..]);
        let v: serde_json::Value = serde_json::from_str(&splice(r#"{"stream":true}"#)).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-private".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("authorization", "Bearer k".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("authorization"));

        // Without a `Connection` header the others still go; a map with none is left as it is.
        let mut h = HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert("content-type", "application/json".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["content-type"]);
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-request-id", "r1".parse().unwrap());
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
    }
}

//! The face itself: routes `POST /v1/decide` and `POST /v1/decide/report`, refuses what is
//! not a plugin's request (problem+json, which the plugin quotes to the model when it fails
//! closed: `detail` first), authenticates the plugin token, reads the bounded body and hands
//! it to the decision code.
//!
//! Refusals: no or unknown token 401; a browser (`Origin` header) 403; another path 404;
//! another method 405; a body past `max_body_bytes` 413; a body that does not arrive in time
//! 408; a body that is not a well-formed request 400, naming the field.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, ORIGIN, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited};
use serde::Serialize;
use serde_json::json;

use crate::wire::{self, Decide};
use crate::Gate;

/// The body type of every response of the data listener.
pub type ResBody = UnsyncBoxBody<Bytes, listener::BoxError>;

/// The decision path.
pub const DECIDE_PATH: &str = "/v1/decide";
/// The report path.
pub const REPORT_PATH: &str = "/v1/decide/report";

/// The gate as a tower service (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct GateService {
    gate: Arc<Gate>,
}

impl GateService {
    pub(crate) fn new(gate: Arc<Gate>) -> GateService {
        GateService { gate }
    }
}

type BoxFut = Pin<Box<dyn Future<Output = Result<Response<ResBody>, Infallible>> + Send>>;

impl tower::Service<Request<listener::TimedBody>> for GateService {
    type Response = Response<ResBody>;
    type Error = Infallible;
    type Future = BoxFut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<listener::TimedBody>) -> BoxFut {
        let gate = self.gate.clone();
        Box::pin(async move { Ok(gate.handle(req).await) })
    }
}

fn body(b: impl Into<Bytes>) -> ResBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A JSON answer.
pub(crate) fn json_answer<T: Serialize>(status: StatusCode, v: &T, decision_id: Option<&str>) -> Response<ResBody> {
    let bytes = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(body(bytes));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(id) = decision_id.and_then(|d| HeaderValue::from_str(d).ok()) {
        res.headers_mut().insert("x-clawbutler-decision-id", id);
    }
    res
}

/// A problem+json refusal (RFC 9457); the plugin quotes `detail`.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response<ResBody> {
    let v = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut res = json_answer(status, &v, None);
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    res
}

fn bearer(req: &Request<listener::TimedBody>) -> Option<&str> {
    let v = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

enum Route {
    Decide,
    Report,
}

impl Gate {
    fn reject(&self, reason: &'static str, res: Response<ResBody>) -> Response<ResBody> {
        self.metrics.rejected.with_label_values(&[reason]).inc();
        res
    }

    async fn handle(self: Arc<Self>, req: Request<listener::TimedBody>) -> Response<ResBody> {
        let started = Instant::now();
        let route = match req.uri().path() {
            DECIDE_PATH => Route::Decide,
            REPORT_PATH => Route::Report,
            other => {
                let detail =
                    format!("no such path {other}: the plugin gate serves POST {DECIDE_PATH} and {REPORT_PATH}");
                return self.reject("not_found", problem(StatusCode::NOT_FOUND, &detail));
            }
        };
        if req.method() != Method::POST {
            let mut res = problem(StatusCode::METHOD_NOT_ALLOWED, "use POST");
            res.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
            return self.reject("method", res);
        }
        // The plugin never sends one; a web page always does. Its token would be needed too,
        // but a page has no business here at all.
        if req.headers().contains_key(ORIGIN) {
            let detail = "requests from web pages are refused: the decision endpoint is for the OpenClaw plugin";
            return self.reject("origin", problem(StatusCode::FORBIDDEN, detail));
        }
        let token = match bearer(&req).map(|t| self.parts.tokens.verify(t)) {
            Some(Some(t)) => t,
            found => {
                let detail = if found.is_none() {
                    "missing plugin token: send Authorization: Bearer <plugin token> (clawbutler plugin-token create)"
                } else {
                    "unknown or revoked plugin token (create one with clawbutler plugin-token create, and give it to the plugin)"
                };
                let mut res = problem(StatusCode::UNAUTHORIZED, detail);
                res.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"clawbutler-plugin\""));
                return self.reject("unauthorized", res);
            }
        };
        let timer = req.extensions().get::<listener::BodyTimer>().cloned();
        let bytes = match Limited::new(req.into_body(), self.settings.max_body_bytes).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                if timer.is_some_and(|t| t.expired()) || e.downcast_ref::<listener::BodyTimeout>().is_some() {
                    return self.reject("body_timeout", problem(StatusCode::REQUEST_TIMEOUT, &e.to_string()));
                }
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    let detail = format!(
                        "the body is larger than {} bytes ([plugin] max_body_bytes)",
                        self.settings.max_body_bytes
                    );
                    return self.reject("too_large", problem(StatusCode::PAYLOAD_TOO_LARGE, &detail));
                }
                return self
                    .reject("bad_request", problem(StatusCode::BAD_REQUEST, &format!("could not read the body: {e}")));
            }
        };
        match route {
            Route::Decide => match wire::parse_decide(&bytes) {
                Ok(Decide::ToolCall(t)) => {
                    self.parts.health.touch(&token.gateway);
                    self.clone().tool_call(&token, *t, started).await
                }
                Ok(Decide::AgentRun(r)) => {
                    self.parts.health.touch(&token.gateway);
                    self.agent_run(&token, *r, started).await
                }
                Err(e) => self.reject("bad_request", problem(StatusCode::BAD_REQUEST, &e.to_string())),
            },
            Route::Report => match wire::parse_report(&bytes) {
                Ok(r) => {
                    self.report(&token, r);
                    let mut res = Response::new(body(Bytes::new()));
                    *res.status_mut() = StatusCode::NO_CONTENT;
                    res
                }
                Err(e) => self.reject("bad_request", problem(StatusCode::BAD_REQUEST, &e.to_string())),
            },
        }
    }
}

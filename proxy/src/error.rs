//! The proxy's one error enum, and the one place it becomes an HTTP response in the caller's
//! own error shape (OpenAI or Anthropic JSON).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use crate::body::{full, ResBody};
use crate::route::Dialect;

/// Everything that can stop a call inside the sidecar.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("unknown route {0}")]
    UnknownRoute(String),
    #[error("unknown upstream '{0}'")]
    UnknownUpstream(String),
    #[error("method {0} is not allowed on this route")]
    MethodNotAllowed(String),
    #[error("{0}")]
    BadAgentId(#[from] decision::agent_id::AgentIdError),
    #[error("{}", key_message(agent, why))]
    AgentKey { agent: String, why: KeyRefusal },
    #[error("request body is larger than the {limit} byte limit")]
    BodyTooLarge { limit: usize },
    #[error("malformed JSON body: {0}")]
    BadJson(String),
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error("the request body did not arrive within {ms} ms")]
    BodyTimeout { ms: u64 },
    #[error("{0}")]
    CrossSite(String),
    #[error("{0}")]
    HostNotAllowed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("upstream {upstream} is unreachable: {detail}")]
    UpstreamUnreachable { upstream: String, detail: String },
    #[error("upstream {upstream} did not answer within {timeout_ms} ms")]
    UpstreamTimeout { upstream: String, timeout_ms: u64 },
    #[error("the sidecar is missing the API key for upstream {0}")]
    MissingKey(String),
    #[error("{message}")]
    Refused { status: StatusCode, kind: &'static str, message: String, retry_after_s: Option<u64> },
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a caller's agent key was refused (the message never contains the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No key presented where one is required; `in_header_only` when the route passes the
    /// caller's own key upstream, so the agent key must be in `x-clawbutler-agent-key`.
    Missing { in_header_only: bool },
    /// A key was presented that is not one of this agent's keys.
    Wrong,
}

fn key_message(agent: &str, why: &KeyRefusal) -> String {
    match why {
        KeyRefusal::Missing { in_header_only: false } => format!(
            "agent '{agent}' must present its per-agent key as its API key (Authorization: Bearer or x-api-key); \
             run `clawbutler attach`, or `clawbutler agent-key create {agent}` and set it as the provider's apiKey"
        ),
        KeyRefusal::Missing { in_header_only: true } => format!(
            "agent '{agent}' must present its per-agent key in the x-clawbutler-agent-key header; \
             run `clawbutler attach`, or `clawbutler agent-key create {agent}` and add the header to the provider"
        ),
        KeyRefusal::Wrong => format!("the key presented is not a valid key of agent '{agent}'"),
    }
}

impl ProxyError {
    /// HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::UnknownRoute(_) | ProxyError::UnknownUpstream(_) => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::BadAgentId(_) => StatusCode::BAD_REQUEST,
            ProxyError::AgentKey { .. } => StatusCode::UNAUTHORIZED,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadJson(_) | ProxyError::BodyRead(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ProxyError::CrossSite(_) | ProxyError::HostNotAllowed(_) => StatusCode::FORBIDDEN,
            ProxyError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProxyError::UpstreamUnreachable { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::MissingKey(_) | ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::Refused { status, .. } => *status,
        }
    }

    /// Machine-readable error type/code, the same in both dialects.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::UnknownRoute(_) => "not_found",
            ProxyError::UnknownUpstream(_) => "unknown_upstream",
            ProxyError::MethodNotAllowed(_) => "method_not_allowed",
            ProxyError::BadAgentId(_) => "invalid_agent_id",
            ProxyError::AgentKey { .. } => "authentication_error",
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::BadJson(_) | ProxyError::BodyRead(_) => "invalid_request_error",
            ProxyError::BodyTimeout { .. } => "request_timeout",
            ProxyError::CrossSite(_) => "cross_site_request",
            ProxyError::HostNotAllowed(_) => "host_not_allowed",
            ProxyError::UnsupportedMediaType(_) => "unsupported_media_type",
            ProxyError::UpstreamUnreachable { .. } => "upstream_unreachable",
            ProxyError::UpstreamTimeout { .. } => "upstream_timeout",
            ProxyError::MissingKey(_) | ProxyError::Internal(_) => "internal_error",
            ProxyError::Refused { kind, .. } => kind,
        }
    }

    /// The response the caller sees, in its own dialect.
    pub fn into_response(self, dialect: Dialect) -> Response<ResBody> {
        let status = self.status();
        let code = self.code();
        let message = format!("ClawButler: {self}");
        let retry_after = match &self {
            ProxyError::Refused { retry_after_s, .. } => *retry_after_s,
            _ => None,
        };
        let body = error_body(dialect, code, &message);
        let mut res = Response::new(full(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(secs) = retry_after {
            res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body is never read: the connection cannot carry another request.
            res.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

/// An error body in the caller's shape.
pub fn error_body(dialect: Dialect, code: &str, message: &str) -> String {
    let v = match dialect {
        Dialect::OpenAi => serde_json::json!({
            "error": { "message": message, "type": code, "code": code, "param": null }
        }),
        Dialect::Anthropic => serde_json::json!({
            "type": "error",
            "error": { "type": code, "message": message }
        }),
    };
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_and_anthropic_shapes() {
        let o: serde_json::Value = serde_json::from_str(&error_body(Dialect::OpenAi, "x", "m")).unwrap();
        assert_eq!(o["error"]["type"], "x");
        assert_eq!(o["error"]["message"], "m");
        let a: serde_json::Value = serde_json::from_str(&error_body(Dialect::Anthropic, "x", "m")).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "x");
    }

    #[test]
    fn statuses() {
        assert_eq!(ProxyError::BodyTooLarge { limit: 1 }.status(), 413);
        assert_eq!(ProxyError::UnknownUpstream("x".into()).status(), 404);
        assert_eq!(ProxyError::UpstreamTimeout { upstream: "u".into(), timeout_ms: 1 }.status(), 504);
        assert_eq!(ProxyError::UpstreamUnreachable { upstream: "u".into(), detail: "d".into() }.status(), 502);
    }
}

//! RFC 9457 problem+json: the one error shape of the control API. Handlers return
//! [`Problem`]; [`normalize`] turns the error answers axum makes itself (405 with its `Allow`,
//! body-extractor rejections, a body that ran out of time) into the same shape, and
//! [`early_answer`] gives hyper's own early answers (400, 414, 431) a problem+json body.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::json;

/// A control-API error, answered as `application/problem+json`.
#[derive(Debug, thiserror::Error)]
#[error("{title}: {detail}")]
pub struct Problem {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    /// Extra members merged into the body (e.g. who decided first on a 409).
    pub extra: Option<serde_json::Value>,
    /// `Retry-After` in seconds (503 while the audit log cannot write).
    pub retry_after_s: Option<u16>,
}

impl Problem {
    /// A problem with a status, short title and detail.
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem { status, title, detail: detail.into(), extra: None, retry_after_s: None }
    }
    /// 503: the audit log cannot write, so a change that must be recorded was not made (or,
    /// with `applied`, was made but its record could not be written: the detail says so).
    pub fn audit_unavailable(u: &audit::Unavailable, applied: Option<&str>) -> Problem {
        let detail = match applied {
            Some(what) => format!("{what}, but its audit record could not be written: {u}"),
            None => format!("nothing was changed: {u}"),
        };
        let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Audit log unavailable", detail);
        p.extra = Some(json!({"audit": {"cause": u.cause, "error": u.error, "since": u.since}}));
        p.retry_after_s = Some(u16::try_from(u.retry_after_s()).unwrap_or(u16::MAX));
        p
    }
    /// An audit error: 503 while the log cannot write, else 500.
    pub fn audit(e: &audit::AuditError, applied: Option<&str>) -> Problem {
        match e {
            audit::AuditError::Unavailable(u) => Problem::audit_unavailable(u, applied),
            e => Problem::internal(match applied {
                Some(what) => format!("{what}, but its audit record could not be written: {e}"),
                None => e.to_string(),
            }),
        }
    }
    /// 503: the state store refused a write; nothing was changed.
    pub fn store_failed(e: impl std::fmt::Display) -> Problem {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "State store unavailable",
            format!(
                "the state store could not write ({e}); nothing was changed. After a write error the store refuses \
                 writes until the sidecar restarts: free disk space, then restart it"
            ),
        )
    }
    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, "Bad request", detail)
    }
    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }
    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }
    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "Not found", detail)
    }
    /// 409.
    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::CONFLICT, "Conflict", detail)
    }
    /// 500.
    pub fn internal(detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let (Some(obj), Some(serde_json::Value::Object(extra))) = (body.as_object_mut(), self.extra) {
            obj.extend(extra);
        }
        let mut res = (self.status, body.to_string()).into_response();
        res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = self.retry_after_s {
            res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Middleware over every control route: an error answer that is not JSON (axum's own 405,
/// 413, 415, 400 rejections, all plain text or empty) becomes problem+json with the same
/// status, detail and headers (`Allow` stays); a request whose body ran out of time gets 408.
/// HTML error pages are left alone: only the action-link pages (`/n/...`) make them, for a
/// person's browser.
pub async fn normalize(req: Request, next: Next) -> Response {
    let timer = req.extensions().get::<listener::BodyTimer>().cloned();
    let res = next.run(req).await;
    if timer.is_some_and(|t| t.expired()) {
        let mut res = Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            "Request timeout",
            "the request body did not arrive in time ([server] control_body_read_timeout_ms)",
        )
        .into_response();
        res.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let status = res.status();
    let json = res.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| {
        ct.starts_with("application/problem+json") || ct.starts_with("application/json") || ct.starts_with("text/html")
    });
    if status.as_u16() < 400 || json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let detail = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        t => t.to_string(),
    };
    let mut out = Problem::new(status, status.canonical_reason().unwrap_or("Error"), detail).into_response();
    for (k, v) in &parts.headers {
        if k != http::header::CONTENT_TYPE && k != http::header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// The body of one of hyper's early answers on the control listener.
pub fn early_answer(status: StatusCode, _line: &[u8]) -> (&'static str, String) {
    let detail = match status {
        StatusCode::URI_TOO_LONG => "the request URI is too long",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "the request headers are too large",
        _ => "the request could not be parsed (malformed request line or header)",
    };
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    ("application/problem+json", body.to_string())
}

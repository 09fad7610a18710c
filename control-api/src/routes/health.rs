//! `/livez`, `/readyz` and `/metrics`: unauthenticated, for orchestrators and Prometheus.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use http::{HeaderValue, StatusCode};
use prometheus::Encoder;
use serde_json::json;

use super::Routes;
use crate::AppState;

/// The health routes.
pub fn routes() -> Routes {
    Routes::default().route("/livez", get(livez)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn livez() -> Json<serde_json::Value> {
    Json(json!({"status": "live"}))
}

async fn readyz(State(s): State<AppState>) -> Response {
    let checks = (s.ready)();
    let ok = checks.iter().all(|c| c.1);
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": checks.iter().map(|(n, ok, d)| json!({"name": n, "ok": ok, "detail": d})).collect::<Vec<_>>(),
    });
    let code = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut buf = Vec::new();
    let enc = prometheus::TextEncoder::new();
    if let Err(e) = enc.encode(&s.registry.gather(), &mut buf) {
        return crate::Problem::internal(e.to_string()).into_response();
    }
    let mut res = buf.into_response();
    if let Ok(v) = HeaderValue::from_str(enc.format_type()) {
        res.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    res
}

//! `/api/v1/openapi.json`: the OpenAPI 3.1 description of every control-API route, served as
//! written in `control-api/src/openapi.json` (no auth: it holds no data). A test checks that
//! every route the router serves is described.

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http::HeaderValue;

use crate::AppState;

/// The document, embedded at build time.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The OpenAPI route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    let mut res = OPENAPI_JSON.into_response();
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_valid_json_and_describes_the_approval_routes() {
        let v: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        for p in ["/api/v1/approvals", "/api/v1/approvals/{id}/decision", "/api/v1/events", "/api/v1/tokens/{id}"] {
            assert!(v["paths"].get(p).is_some(), "{p} missing");
        }
    }
}

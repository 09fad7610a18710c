//! `/api/v1/openapi.json`: the OpenAPI 3.1 description of every control-API route, served as
//! written in `control-api/src/openapi.json` (no auth: it holds no data). A test checks that
//! every route the router serves is described.

use axum::response::IntoResponse;
use axum::routing::get;
use http::HeaderValue;

use super::Routes;

/// The document, embedded at build time.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// The OpenAPI route.
pub fn routes() -> Routes {
    Routes::default().route("/api/v1/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    let mut res = OPENAPI_JSON.into_response();
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every API path the router serves (taken from the route table itself, not from a list
    /// kept here) has an entry in the document, and the document names no path that is not
    /// served. Which methods each path answers is checked against a live sidecar in the
    /// integration tests (`openapi_describes_every_served_method`).
    #[test]
    fn document_describes_exactly_the_served_paths() {
        let v: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        let served = crate::api_paths();
        assert!(served.len() > 20, "the route table looks empty: {served:?}");
        let documented: Vec<&String> = v["paths"].as_object().unwrap().keys().collect();
        let missing: Vec<&&str> = served.iter().filter(|p| !documented.iter().any(|d| d == *p)).collect();
        assert!(missing.is_empty(), "served but not in openapi.json: {missing:?}");
        let stale: Vec<&&String> = documented.iter().filter(|d| !served.contains(&d.as_str())).collect();
        assert!(stale.is_empty(), "in openapi.json but not served: {stale:?}");
    }
}

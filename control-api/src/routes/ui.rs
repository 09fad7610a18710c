//! The web console: static files from `control-api/ui/`, compiled into the binary so the
//! sidecar ships as one file and needs no Node or build step. `/` is the app shell; assets
//! live under `/ui/`. Every answer carries a strict Content-Security-Policy (scripts, styles and
//! connections from this origin only, nothing inline), so text an agent smuggles into a prompt
//! or command can never run in an approver's browser.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use super::Routes;
use crate::problem::Problem;

/// The console's Content-Security-Policy. `connect-src 'self'` covers the API and the event
/// stream; `frame-ancestors 'none'` stops click-jacking of the approve buttons.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; \
                       frame-ancestors 'none'";

/// One embedded file: path under `/ui/`, content type, bytes.
pub(crate) struct Asset {
    pub(crate) path: &'static str,
    content_type: &'static str,
    pub(crate) body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset { path: $path, content_type: $ct, body: include_bytes!(concat!("../../ui/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console is made of (`crate::ui_checks` reads the JS from here).
pub(crate) static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("manifest.webmanifest", "application/manifest+json"),
    asset!("sw.js", JS),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/changes.js", JS),
    asset!("js/components.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/i18n.js", JS),
    asset!("js/lang/en.js", JS),
    asset!("js/lang/zh-CN.js", JS),
    asset!("js/link.js", JS),
    asset!("js/listpage.js", JS),
    asset!("js/push.js", JS),
    asset!("js/sse.js", JS),
    asset!("js/views/agents.js", JS),
    asset!("js/views/approvals.js", JS),
    asset!("js/views/audit.js", JS),
    asset!("js/views/backups.js", JS),
    asset!("js/views/budgets.js", JS),
    asset!("js/views/confighistory.js", JS),
    asset!("js/views/cost.js", JS),
    asset!("js/views/costcheck.js", JS),
    asset!("js/views/cost_savings.js", JS),
    asset!("js/views/cron.js", JS),
    asset!("js/views/fleet.js", JS),
    asset!("js/views/grants.js", JS),
    asset!("js/views/mcp.js", JS),
    asset!("js/views/notifications.js", JS),
    asset!("js/views/policies.js", JS),
    asset!("js/views/reports.js", JS),
    asset!("js/views/restore.js", JS),
    asset!("js/views/scope.js", JS),
];

/// Strong ETags, computed once: the files only change with the binary.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(|a| format!("\"{}\"", hex::encode(&Sha256::digest(a.body)[..12]))).collect())
}

/// The UI routes: `/`, `/index.html`, `/ui/{*path}` and the service worker at `/sw.js` (a
/// worker controls the pages under its own path, so it is served at the root to control the
/// whole console). None of them overlaps `/api`, `/metrics`, `/livez` or `/readyz`.
pub fn routes() -> Routes {
    Routes::default()
        .page("/", get(index))
        .page("/index.html", get(index))
        .page("/sw.js", get(service_worker))
        .page("/ui/{*path}", get(asset))
}

async fn service_worker(headers: HeaderMap) -> Response {
    serve("sw.js", &headers)
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, req: &HeaderMap) -> Response {
    let Some((i, a)) = ASSETS.iter().enumerate().find(|(_, a)| a.path == path) else {
        return Problem::not_found(format!("no UI file /ui/{path}")).into_response();
    };
    let etag = &etags()[i];
    let fresh = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == etag);
    let mut res = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { a.body.into_response() };
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    // Revalidate every time (the ETag makes that a cheap 304): an upgraded sidecar must never
    // run a stale mix of old and new modules.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_the_ui_imports_is_embedded() {
        // A module missing from ASSETS would 404 in the browser and blank the whole app.
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js") || a.path.ends_with(".html")) {
            let text = std::str::from_utf8(a.body).unwrap();
            for part in text.split(['\'', '"']).filter(|p| p.ends_with(".js") && !p.contains(' ')) {
                let base = std::path::Path::new(a.path).parent().unwrap();
                let target = if let Some(abs) = part.strip_prefix("/ui/") {
                    std::path::PathBuf::from(abs)
                } else if let Some(root) = part.strip_prefix('/') {
                    // Served at the root (the service worker, `/sw.js`), from the asset of that name.
                    std::path::PathBuf::from(root)
                } else {
                    let mut p = base.to_path_buf();
                    for seg in part.split('/') {
                        match seg {
                            "." => {}
                            ".." => {
                                p.pop();
                            }
                            s => p.push(s),
                        }
                    }
                    p
                };
                let target = target.to_string_lossy().replace('\\', "/");
                assert!(ASSETS.iter().any(|x| x.path == target), "{} imports {part} ({target}), not embedded", a.path);
            }
        }
    }

    #[test]
    fn no_inline_script_or_style_in_the_shell() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(!html.contains("<style"), "inline <style> is blocked by the CSP");
        assert!(!html.contains("style="), "inline style attributes are blocked by the CSP");
        for tag in html.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(open.contains("src="), "inline <script> is blocked by the CSP: <script{open}>");
        }
    }
}

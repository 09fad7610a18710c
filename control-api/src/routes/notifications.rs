//! `/api/v1/notifications`: routes (config ones read-only), test-send, the delivery log, Web
//! Push subscriptions and per-token preferences, and the digest. Anyone with a token reads and
//! manages their own subscriptions and preferences; admins change routes, test-send and send
//! the digest. Also the action links' pages, `/n/{token}` (no token needed: the link itself is
//! the credential to *open* one approval; deciding still needs a signed-in approver).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Json;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use notifier::{LinkError, NotifyError, RouteSpec};
use serde::Deserialize;
use serde_json::{json, Value};

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// The notification routes and the action-link pages.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/notifications", get(overview))
        .route("/api/v1/notifications/routes", get(list_routes).post(create_route))
        .route("/api/v1/notifications/routes/{id}", get(one_route).put(put_route).delete(delete_route))
        .route("/api/v1/notifications/routes/{id}/test", post(test_route))
        .route("/api/v1/notifications/deliveries", get(deliveries))
        .route("/api/v1/notifications/push/subscriptions", get(list_subs).post(add_sub))
        .route("/api/v1/notifications/push/subscriptions/{id}", delete(del_sub))
        .route("/api/v1/notifications/preferences", get(get_prefs).put(put_prefs))
        .route("/api/v1/notifications/digest", get(digest))
        .route("/api/v1/notifications/digest/send", post(send_digest))
        .page("/n/{token}", get(link_page).post(link_open))
}

/// The control API's view of a notifier error.
pub fn problem(e: NotifyError) -> Problem {
    match e {
        NotifyError::NotFound(m) => Problem::not_found(m),
        NotifyError::Conflict(m) => Problem::conflict(m),
        NotifyError::Invalid(m) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request", m),
        e => Problem::internal(e.to_string()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

async fn overview(_c: Caller, State(s): State<AppState>) -> Json<Value> {
    Json(json!(s.notify.overview()))
}

async fn list_routes(_c: Caller, State(s): State<AppState>) -> Json<Value> {
    Json(json!({"items": s.notify.routes(), "next_cursor": null}))
}

async fn one_route(_c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    s.notify.route(&id).map(|r| Json(json!(r))).ok_or_else(|| Problem::not_found(format!("no route '{id}'")))
}

async fn create_route(c: Caller, State(s): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    c.require(Role::Admin)?;
    let spec: RouteSpec = parse(&body)?;
    let r = s.notify.create_route(spec).await.map_err(problem)?;
    Ok((StatusCode::CREATED, Json(json!(r))).into_response())
}

async fn put_route(
    c: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Problem> {
    c.require(Role::Admin)?;
    let spec: RouteSpec = parse(&body)?;
    s.notify.update_route(&id, spec).await.map(|r| Json(json!(r))).map_err(problem)
}

async fn delete_route(c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    c.require(Role::Admin)?;
    s.notify.delete_route(&id).await.map_err(problem)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn test_route(c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    c.require(Role::Admin)?;
    let items = s.notify.test_route(&id, &c.name).await.map_err(problem)?;
    let delivered = items.iter().filter(|d| d.status == notifier::log::Status::Delivered).count();
    Ok(Json(json!({"route": id, "delivered": delivered, "items": items})))
}

async fn deliveries(
    _c: Caller,
    State(s): State<AppState>,
    q: Result<Query<notifier::DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    super::page_limit(q.limit, notifier::log::MAX_LIMIT)?;
    let n = s.notify.clone();
    let page = tokio::task::spawn_blocking(move || n.deliveries(&q))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map_err(|e| match e {
            NotifyError::Invalid(m) => Problem::bad_request(m),
            e => problem(e),
        })?;
    Ok(Json(json!(page)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubsQuery {
    /// Admins may list every token's subscriptions.
    all: Option<bool>,
}

async fn list_subs(
    c: Caller,
    State(s): State<AppState>,
    q: Result<Query<SubsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let all = q.all == Some(true);
    if all {
        c.require(Role::Admin)?;
    }
    let items = s.notify.push_subscriptions(if all { None } else { Some(&c.name) });
    Ok(Json(json!({"items": items, "next_cursor": null, "public_key": s.notify.push_public_key()})))
}

async fn add_sub(c: Caller, State(s): State<AppState>, body: Bytes) -> Result<Response, Problem> {
    let input: notifier::SubscriptionInput = parse(&body)?;
    let v = s.notify.subscribe_push(&c.name, input).map_err(problem)?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn del_sub(c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    s.notify.unsubscribe_push(&id, &c.name, c.role >= Role::Admin).map_err(problem)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_prefs(c: Caller, State(s): State<AppState>) -> Json<Value> {
    Json(json!({"owner": c.name, "preferences": s.notify.preferences(&c.name), "channels": s.notify.channels()}))
}

async fn put_prefs(c: Caller, State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, Problem> {
    let p: notifier::Preferences = parse(&body)?;
    let p = s.notify.set_preferences(&c.name, p).map_err(problem)?;
    Ok(Json(json!({"owner": c.name, "preferences": p, "channels": s.notify.channels()})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestQuery {
    hours: Option<u32>,
}

async fn digest(
    _c: Caller,
    State(s): State<AppState>,
    q: Result<Query<DigestQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    let hours = q.hours.unwrap_or(24);
    if !(1..=24 * 31).contains(&hours) {
        return Err(Problem::bad_request("hours must be 1 to 744"));
    }
    s.notify.digest(hours).await.map(|d| Json(json!(d))).map_err(problem)
}

async fn send_digest(c: Caller, State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    c.require(Role::Admin)?;
    let (d, items) = s.notify.send_digest(&c.name).await.map_err(problem)?;
    Ok(Json(json!({"digest": d, "items": items})))
}

// ---------------------------------------------------------------------------------------------
// Action links

fn html(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(http::header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(super::ui::CSP));
    h.insert(http::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(http::header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    res
}

fn page(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/ui/style.css\"><script src=\"/ui/js/link.js\" defer></script></head>\
         <body><div class=\"signin-wrap\"><div class=\"signin card\" data-testid=\"link-page\">{inner}</div></div></body></html>\n"
    )
}

fn refused(e: LinkError) -> Response {
    let (status, en, zh) = match e {
        LinkError::Expired => (StatusCode::GONE, "This link has expired.", "此链接已过期。"),
        LinkError::Used => (
            StatusCode::GONE,
            "This link was already used; links open once.",
            "此链接已被使用过;每个链接只能打开一次。",
        ),
        LinkError::Invalid => (StatusCode::NOT_FOUND, "This link is not valid.", "此链接无效。"),
        LinkError::Store => {
            (StatusCode::SERVICE_UNAVAILABLE, "The link could not be checked; try again.", "无法验证此链接,请重试。")
        }
    };
    let inner = format!(
        "<h1>ClawButler</h1><p class=\"form-msg\" role=\"alert\" data-testid=\"link-refused\" data-reason=\"{}\">{en}<br>{zh}</p>\
         <p><a href=\"/#/approvals\">Open the approvals inbox / 打开审批列表</a></p>",
        match e {
            LinkError::Expired => "expired",
            LinkError::Used => "used",
            LinkError::Invalid => "invalid",
            LinkError::Store => "store",
        }
    );
    html(status, page("ClawButler", &inner))
}

/// The token as a path segment: base64url only (anything else is not one of ours).
fn token_ok(t: &str) -> bool {
    !t.is_empty() && t.len() <= 200 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /n/{token}`: checks the link without using it (link previews and mail scanners fetch
/// with GET), and answers a page whose form (submitted by `link.js`, or by a tap without
/// JavaScript) uses it.
async fn link_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    if !token_ok(&token) {
        return refused(LinkError::Invalid);
    }
    match s.notify.check_link(&token) {
        Ok(_) => {
            let inner = format!(
                "<h1>ClawButler</h1><form method=\"post\" action=\"/n/{token}\" id=\"open-link\" data-testid=\"open-link\">\
                 <p>Opening the approval… (sign-in required) / 正在打开审批…(需要登录)</p>\
                 <button type=\"submit\" class=\"primary big\">Open / 打开</button></form>"
            );
            html(StatusCode::OK, page("ClawButler", &inner))
        }
        Err(e) => refused(e),
    }
}

/// `POST /n/{token}`: uses the link (once) and sends the browser to the approval.
async fn link_open(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    if !token_ok(&token) {
        return refused(LinkError::Invalid);
    }
    match s.notify.use_link(&token) {
        Ok(id) => {
            let mut res = StatusCode::SEE_OTHER.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/#/approvals/{id}")) {
                res.headers_mut().insert(http::header::LOCATION, v);
            }
            res.headers_mut().insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => refused(e),
    }
}

//! `/api/v1/approvals`: the approval inbox. Anyone with a token reads; approvers decide.
//! A decision names the version it was made on (`expected_version`): a second or stale
//! decision gets 409 naming who decided first. Decision POSTs honour `Idempotency-Key`: a
//! retry with the same key and body gets the first answer again, never a second decision.
//!
//! In fleet mode (`[fleet]`) the inbox is the fleet's (`fleet::inbox`): every sidecar lists
//! and decides the same approvals in PostgreSQL, the Idempotency-Key's answer is stored there
//! (so it holds across sidecars), and a sidecar that cannot reach the database refuses
//! decisions with 503 instead of deciding alone.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use bytes::Bytes;
use fleet::inbox::{Answer, Idem};
use governance::approvals::{Approval, ApprovalQuery, BrokerError, DecideRequest, Grant, Resolution};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::idempotency::IdemEntry;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::Routes;
use crate::auth::{Caller, Role};
use crate::problem::Problem;
use crate::AppState;

/// Most decisions one batch may carry.
const MAX_BATCH: usize = 500;

/// The approval routes.
pub fn routes() -> Routes {
    Routes::default()
        .route("/api/v1/approvals", get(list))
        .route("/api/v1/approvals/batch", post(batch))
        .route("/api/v1/approvals/{id}", get(one))
        .route("/api/v1/approvals/{id}/decision", post(decide))
}

/// The control API's view of a broker error.
pub fn problem(e: BrokerError) -> Problem {
    match e {
        BrokerError::Invalid(m) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request", m),
        BrokerError::NotFound(id) => Problem::not_found(format!("no approval or grant '{id}'")),
        BrokerError::Conflict(a) => {
            let detail = BrokerError::Conflict(a.clone()).to_string();
            let mut p = Problem::new(StatusCode::CONFLICT, "Conflict", detail);
            p.extra = Some(json!({
                "status_now": a.status,
                "version": a.version,
                "decided_by": a.decided_by,
                "decided_at": a.decided_at,
                "approval": a,
            }));
            p
        }
        BrokerError::Audit(e) => Problem::audit(&e, None),
        BrokerError::Store(e) => Problem::store_failed(e),
        BrokerError::Unavailable(m) => {
            let detail = format!(
                "this sidecar cannot reach the fleet database ({m}); nothing was changed: retry, or use a sidecar \
                 that reaches the database"
            );
            let mut p = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Fleet database unavailable", detail);
            p.retry_after_s = Some(5);
            p
        }
        other => Problem::internal(other.to_string()),
    }
}

fn problem_json(p: &Problem) -> Value {
    let mut body = json!({"type": "about:blank", "title": p.title, "status": p.status.as_u16(), "detail": p.detail});
    if let (Some(obj), Some(Value::Object(extra))) = (body.as_object_mut(), p.extra.clone()) {
        obj.extend(extra);
    }
    body
}

fn resolution_json(r: &Resolution) -> Value {
    json!({ "approval": r.approval, "grant": r.grant })
}

async fn list(
    _c: Caller,
    State(s): State<AppState>,
    q: Result<Query<ApprovalQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<governance::approvals::ApprovalPage>, Problem> {
    let Query(mut q) = q.map_err(|e| Problem::bad_request(e.body_text()))?;
    q.cursor = super::id_cursor(q.cursor.take())?;
    super::page_limit(q.limit, governance::approvals::store::MAX_LIMIT)?;
    if let Some(f) = s.fleet.as_deref() {
        return f.inbox().list(&q).await.map(Json).map_err(fleet_problem);
    }
    let broker = s.broker.clone();
    tokio::task::spawn_blocking(move || broker.list(&q))
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map(Json)
        .map_err(|e| match e {
            // A filter it does not know (`status=bogus`) is a bad query parameter, like any other.
            BrokerError::Invalid(m) => Problem::bad_request(m),
            e => problem(e),
        })
}

async fn one(_c: Caller, State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, Problem> {
    let a = match s.fleet.as_deref() {
        Some(f) => f.inbox().get(&id).await.map_err(fleet_problem)?,
        None => s.broker.get(&id).map_err(problem)?,
    };
    Ok(Json(json!(a.ok_or_else(|| Problem::not_found(format!("no approval '{id}'")))?)))
}

/// A fleet inbox error: a bad filter is the caller's (400); anything else means the fleet
/// database did not answer, and nothing was decided (503).
fn fleet_problem(e: fleet::FleetError) -> Problem {
    match e {
        fleet::FleetError::Invalid(m) => Problem::bad_request(m),
        e => {
            let mut p = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Fleet database unavailable",
                format!(
                    "this sidecar cannot reach the fleet database, where the fleet's approvals are listed and \
                     decided ({e}); nothing was decided: retry, or use a sidecar that reaches the database. A held \
                     call is denied when its approval expires."
                ),
            );
            p.retry_after_s = Some(5);
            p
        }
    }
}

/// Decide through the fleet inbox: (status, body, replayed). With `key` the answer is stored
/// in the database in the decision's transaction, so a retry on any sidecar replays it.
async fn decide_fleet(
    f: &fleet::Fleet,
    caller: &Caller,
    id: &str,
    body: &[u8],
    key: Option<&str>,
) -> Result<(StatusCode, Value, bool), Problem> {
    let req: DecideRequest = parse(body)?;
    let scoped = key.map(|k| format!("{id} {k}"));
    let body_hash = hex::encode(Sha256::digest(body));
    let idem = scoped.as_deref().map(|key| Idem { key, body_hash: &body_hash });
    let render = |r: Result<(Approval, Option<Grant>), BrokerError>| match r {
        // An allow-always's grant is the fleet's from the decision's commit on.
        Ok((a, g)) => (200, json!({ "approval": a, "grant": g })),
        Err(e) => {
            let p = problem(e);
            (p.status.as_u16(), problem_json(&p))
        }
    };
    let code = |st: u16| StatusCode::from_u16(st).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match f.inbox().decide(id, &req, &caller.name, idem, &render).await.map_err(fleet_problem)? {
        Answer::Fresh(st, v) => Ok((code(st), v, false)),
        Answer::Replayed(st, v) => Ok((code(st), v, true)),
        Answer::KeyReused => Err(key_reused()),
    }
}

fn key_reused() -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Idempotency-Key reused",
        "this Idempotency-Key was already used with a different request body",
    )
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

/// Decide once; the answer as (status, JSON body) so it can be stored for idempotent replay.
async fn decide_once(s: &AppState, caller: &Caller, id: &str, body: &[u8]) -> (StatusCode, Value) {
    if let Some(f) = s.fleet.as_deref() {
        return match decide_fleet(f, caller, id, body, None).await {
            Ok((status, v, _)) => (status, v),
            Err(p) => (p.status, problem_json(&p)),
        };
    }
    let req: DecideRequest = match parse(body) {
        Ok(r) => r,
        Err(p) => return (p.status, problem_json(&p)),
    };
    match s.broker.decide(id, &req, &caller.name).await {
        Ok(r) => (StatusCode::OK, resolution_json(&r)),
        Err(e) => {
            let p = problem(e);
            (p.status, problem_json(&p))
        }
    }
}

fn reply(status: StatusCode, body: Value, replayed: bool) -> Response {
    let ct = if status.is_success() { "application/json" } else { "application/problem+json" };
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
    if replayed {
        res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        // The audit log cannot write (see `Problem::audit_unavailable`); never stored for replay.
        res.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(audit::RETRY_AFTER_S));
    }
    res
}

async fn decide(
    caller: Caller,
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Role::Approver)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v.to_str().map_err(|_| Problem::bad_request("Idempotency-Key must be ASCII"))?.trim();
            if k.is_empty() || k.len() > 200 {
                return Err(Problem::bad_request("Idempotency-Key must be 1 to 200 characters"));
            }
            Some(k)
        }
    };
    if let Some(f) = s.fleet.as_deref() {
        let (status, v, replayed) = decide_fleet(f, &caller, &id, &body, key).await?;
        return Ok(reply(status, v, replayed));
    }
    let key = key.map(|k| format!("decision\u{0}{id}\u{0}{k}"));
    let Some(key) = key else {
        let (status, v) = decide_once(&s, &caller, &id, &body).await;
        return Ok(reply(status, v, false));
    };
    let body_hash = hex::encode(Sha256::digest(&body));
    let _guard = s.idempotency.lock(&key).await;
    if let Some(prev) = s.idempotency.get(&key).map_err(|e| Problem::internal(e.to_string()))? {
        if prev.body_hash != body_hash {
            return Err(key_reused());
        }
        let status = StatusCode::from_u16(prev.status).unwrap_or(StatusCode::OK);
        return Ok(reply(status, prev.body, true));
    }
    let (status, v) = decide_once(&s, &caller, &id, &body).await;
    if !status.is_server_error() {
        let entry = IdemEntry { body_hash, status: status.as_u16(), body: v.clone(), stored_at_ms: 0 };
        s.idempotency.put(&key, &entry).map_err(|e| Problem::internal(e.to_string()))?;
    }
    Ok(reply(status, v, false))
}

/// One decision of a batch: `id` plus a decision body (checked strictly by `DecideRequest`;
/// serde cannot deny unknown fields across a flatten).
#[derive(Debug, Deserialize)]
struct BatchItem {
    id: String,
    #[serde(flatten)]
    req: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    items: Vec<BatchItem>,
}

async fn batch(caller: Caller, State(s): State<AppState>, body: Bytes) -> Result<Json<Value>, Problem> {
    caller.require(Role::Approver)?;
    let req: BatchRequest = parse(&body)?;
    if req.items.is_empty() || req.items.len() > MAX_BATCH {
        return Err(Problem::bad_request(format!("a batch carries 1 to {MAX_BATCH} items")));
    }
    // Concurrently, so their durable records share group commits; results keep input order.
    let futs = req.items.iter().map(|it| {
        let s = s.clone();
        let caller = caller.clone();
        async move {
            let body = it.req.to_string();
            let (status, v) = decide_once(&s, &caller, &it.id, body.as_bytes()).await;
            if status.is_success() {
                json!({"id": it.id, "status": status.as_u16(), "approval": v["approval"], "grant": v["grant"]})
            } else {
                json!({"id": it.id, "status": status.as_u16(), "error": v})
            }
        }
    });
    let items = futures_util::future::join_all(futs).await;
    Ok(Json(json!({ "items": items })))
}

//! The JSON-RPC 2.0 envelope as the endpoint reads and writes it. A POST body is exactly one
//! message (MCP 2025-06-18 removed batches: a JSON array is refused before parsing it); the
//! envelope is read first, so a request with bad params still gets an error with its own id.

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// Error codes. The first five are JSON-RPC's; -32000 to -32019 are for implementations.
pub mod code {
    pub const PARSE: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL: i64 = -32603;
    /// ClawButler: a request before `initialize` or an HTTP-level refusal.
    pub const SERVER: i64 = -32000;
    /// ClawButler: the `Mcp-Session-Id` is unknown or ended (HTTP 404; re-initialize).
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// ClawButler: no upstream can serve this (resource, prompt) or it failed.
    pub const UPSTREAM: i64 = -32002;
}

/// One incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A request (`method` + `id`).
    Request { id: Value, method: String, params: Value },
    /// A notification (`method`, no `id`).
    Notification { method: String, params: Value },
    /// The client's answer to a request the sidecar sent it (`id` + `result` or `error`).
    Response { id: Value, outcome: Result<Value, Value> },
}

/// Why a body is not a message, with the id when it was readable.
#[derive(Debug, Clone, PartialEq)]
pub enum Malformed {
    /// A JSON array: a batch (refused since 2025-06-18).
    Batch,
    /// Not JSON, or not one object.
    Parse(String),
    /// JSON, but not a JSON-RPC 2.0 message.
    Invalid { id: Value, why: String },
}

/// A JSON-RPC id: a string or an integer (never null, never fractional).
fn valid_id(v: &Value) -> bool {
    v.is_string() || v.is_i64() || v.is_u64()
}

/// Read one message from a POST body.
pub fn parse(body: &[u8]) -> Result<Message, Malformed> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => return Err(Malformed::Batch),
        Some(b'{') => {}
        _ => return Err(Malformed::Parse("the body is not a JSON object".into())),
    }
    let mut obj: Map<String, Value> = serde_json::from_slice(body).map_err(|e| Malformed::Parse(e.to_string()))?;
    let id = obj.remove("id");
    let shown_id = id.clone().filter(valid_id).unwrap_or(Value::Null);
    let invalid = |why: &str| Malformed::Invalid { id: shown_id.clone(), why: why.to_string() };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\""));
    }
    if let Some(id) = &id {
        if !valid_id(id) {
            return Err(invalid("\"id\" must be a string or an integer"));
        }
    }
    let params = match obj.remove("params") {
        None => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => return Err(invalid("\"params\" must be an object")),
    };
    match (obj.remove("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Message::Request { id, method, params }),
        (Some(Value::String(method)), None) => Ok(Message::Notification { method, params }),
        (Some(_), _) => Err(invalid("\"method\" must be a string")),
        (None, Some(id)) => match (obj.remove("result"), obj.remove("error")) {
            (Some(r), None) => Ok(Message::Response { id, outcome: Ok(r) }),
            (None, Some(e)) if e.is_object() => Ok(Message::Response { id, outcome: Err(e) }),
            _ => Err(invalid("a response needs exactly one of \"result\" and \"error\"")),
        },
        (None, None) => Err(invalid("a message needs \"method\" or an \"id\" with a result")),
    }
}

/// A successful response.
pub fn result(id: &Value, result: &Value) -> Bytes {
    Bytes::from(json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
}

/// An error response (`id` null when the request's id is unknown).
pub fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Bytes {
    let mut e = json!({"code": code, "message": message});
    if let Some(d) = data {
        e["data"] = d;
    }
    Bytes::from(json!({"jsonrpc": "2.0", "id": id, "error": e}).to_string())
}

/// A request the sidecar sends the client.
pub fn request(id: &str, method: &str, params: &Value) -> Bytes {
    Bytes::from(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string())
}

/// A notification.
pub fn notification(method: &str, params: Option<&Value>) -> Bytes {
    let v = match params {
        Some(p) => json!({"jsonrpc": "2.0", "method": method, "params": p}),
        None => json!({"jsonrpc": "2.0", "method": method}),
    };
    Bytes::from(v.to_string())
}

/// An id as a map key (its JSON text: `1` and `"1"` differ, as they must).
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_body() {
        assert_eq!(parse(b"  [{\"jsonrpc\":\"2.0\"}]"), Err(Malformed::Batch));
        assert!(matches!(parse(b"{nope"), Err(Malformed::Parse(_))));
        assert!(matches!(parse(b"\"x\""), Err(Malformed::Parse(_))));
        assert!(matches!(parse(b""), Err(Malformed::Parse(_))));
        let r = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#).unwrap();
        assert_eq!(r, Message::Request { id: json!(7), method: "tools/list".into(), params: json!({}) });
        let n = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert!(matches!(n, Message::Notification { .. }));
        let resp = parse(br#"{"jsonrpc":"2.0","id":"cb-1","result":{"action":"accept"}}"#).unwrap();
        assert_eq!(resp, Message::Response { id: json!("cb-1"), outcome: Ok(json!({"action":"accept"})) });
    }

    #[test]
    fn invalid_envelopes_keep_their_id() {
        for (body, id) in [
            (r#"{"jsonrpc":"1.0","id":3,"method":"ping"}"#, json!(3)),
            (r#"{"jsonrpc":"2.0","id":"a","method":7}"#, json!("a")),
            (r#"{"jsonrpc":"2.0","id":4,"method":"ping","params":[1]}"#, json!(4)),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, Value::Null),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, Value::Null),
            (r#"{"jsonrpc":"2.0","id":5}"#, json!(5)),
        ] {
            match parse(body.as_bytes()) {
                Err(Malformed::Invalid { id: got, .. }) => assert_eq!(got, id, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn builders() {
        let e: Value = serde_json::from_slice(&error(&json!(1), code::INVALID_PARAMS, "bad", None)).unwrap();
        assert_eq!(e, json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}}));
        assert_eq!(id_key(&json!(1)), "1");
        assert_eq!(id_key(&json!("1")), "\"1\"");
    }
}

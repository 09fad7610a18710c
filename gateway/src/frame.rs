//! Gateway protocol v4 frames: JSON text messages of three types (`req`, `res`, `event`).
//! Parsing never panics: anything malformed, oversized or of an unknown type is an error the
//! link logs and drops.

use serde::Deserialize;
use serde_json::{json, Value};

/// An error answer of the gateway (`ok:false`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RpcError {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub details: Value,
    #[serde(default)]
    pub retryable: bool,
    #[serde(default, rename = "retryAfterMs")]
    pub retry_after_ms: Option<u64>,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A response to one of our requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub id: String,
    /// `Ok(payload)` or the gateway's error.
    pub result: Result<Value, RpcError>,
}

impl Response {
    /// Whether this is the first of two answers (`agent` sends `status:"accepted"` first).
    pub fn is_ack(&self) -> bool {
        matches!(&self.result, Ok(p) if p.get("status").and_then(Value::as_str) == Some("accepted"))
    }
}

/// A server event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: String,
    pub payload: Value,
    /// Per-connection sequence (absent on `connect.challenge`).
    pub seq: Option<u64>,
}

/// A parsed incoming frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Res(Response),
    Event(Event),
}

/// Why an incoming frame was dropped.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the limit")]
    Oversized(usize),
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("unexpected frame type '{0}'")]
    Unexpected(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    error: Option<RpcError>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
}

/// Parse one text message of at most `max` bytes.
pub fn parse(text: &str, max: usize) -> Result<Frame, FrameError> {
    if text.len() > max {
        return Err(FrameError::Oversized(text.len()));
    }
    let raw: Raw = serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    match raw.kind.as_str() {
        "res" => {
            let id = raw.id.filter(|i| !i.is_empty()).ok_or_else(|| FrameError::Malformed("res without id".into()))?;
            let result = match (raw.ok, raw.error) {
                (Some(true), _) => Ok(raw.payload),
                (Some(false), Some(e)) => Err(e),
                (Some(false), None) => Err(RpcError {
                    code: "UNKNOWN".into(),
                    message: "error response without error body".into(),
                    details: Value::Null,
                    retryable: false,
                    retry_after_ms: None,
                }),
                (None, _) => return Err(FrameError::Malformed("res without ok".into())),
            };
            Ok(Frame::Res(Response { id, result }))
        }
        "event" => {
            let event = raw.event.ok_or_else(|| FrameError::Malformed("event without name".into()))?;
            Ok(Frame::Event(Event { event, payload: raw.payload, seq: raw.seq }))
        }
        other => Err(FrameError::Unexpected(other.chars().take(32).collect())),
    }
}

/// Serialise a request frame.
pub fn request(id: &str, method: &str, params: &Value) -> String {
    json!({"type": "req", "id": id, "method": method, "params": params}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_observed_shapes() {
        let ch = r#"{"type":"event","event":"connect.challenge","payload":{"nonce":"n1","ts":5}}"#;
        let Frame::Event(e) = parse(ch, 1024).unwrap() else { panic!("event") };
        assert_eq!((e.event.as_str(), e.seq, e.payload["nonce"].as_str()), ("connect.challenge", None, Some("n1")));
        let ok = r#"{"type":"res","id":"7","ok":true,"payload":{"status":"accepted","runId":"r"}}"#;
        let Frame::Res(r) = parse(ok, 1024).unwrap() else { panic!("res") };
        assert!(r.is_ack());
        let err = r#"{"type":"res","id":"8","ok":false,"error":{"code":"UNAVAILABLE","message":"gateway starting; retry shortly","retryable":true,"retryAfterMs":500,"details":{"reason":"startup-sidecars"}}}"#;
        let Frame::Res(r) = parse(err, 1024).unwrap() else { panic!("res") };
        let e = r.result.unwrap_err();
        assert_eq!((e.code.as_str(), e.retry_after_ms, e.retryable), ("UNAVAILABLE", Some(500), true));
        assert_eq!(e.details["reason"], "startup-sidecars");
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        assert_eq!(parse(&"x".repeat(20), 10), Err(FrameError::Oversized(20)));
        assert!(matches!(parse("{not json", 100), Err(FrameError::Malformed(_))));
        assert!(matches!(parse(r#"{"type":"res","ok":true}"#, 100), Err(FrameError::Malformed(_))));
        assert!(matches!(parse(r#"{"type":"res","id":"1"}"#, 100), Err(FrameError::Malformed(_))));
        assert!(matches!(parse(r#"{"type":"req","id":"1","method":"x"}"#, 100), Err(FrameError::Unexpected(_))));
        assert!(matches!(parse(r#"[1,2]"#, 100), Err(FrameError::Malformed(_))));
    }

    #[test]
    fn request_shape() {
        let v: Value = serde_json::from_str(&request("3", "agents.list", &json!({}))).unwrap();
        assert_eq!(v, json!({"type":"req","id":"3","method":"agents.list","params":{}}));
    }
}

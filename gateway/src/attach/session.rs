//! The session header on every model request of a provider attach writes, so the sidecar
//! can tell which OpenClaw session (and so which run and task type) a call belongs to when
//! the ClawButler plugin is not there to post the run's trace id (`governance::runs`).
//! OpenClaw 2026.9.6 sends `session_id`, `x-client-request-id` and `x-session-affinity` with
//! the session's prompt-cache key for `compat.sendSessionAffinityHeaders` (openai-completions;
//! anthropic-messages sends `x-session-affinity`), and `session_id` for
//! `compat.sendSessionIdHeader` (openai-responses). The flag is per model entry; a value the
//! operator set (even `false`) is kept.

use serde_json::{json, Value};

/// The compat flag that makes a provider of API kind `api` send the session.
fn flag(api: &str) -> Option<&'static str> {
    match api {
        "openai-completions" | "anthropic-messages" => Some("sendSessionAffinityHeaders"),
        "openai-responses" => Some("sendSessionIdHeader"),
        _ => None,
    }
}

/// Set the session flag on every model of `provider` (an OpenClaw `models.providers` entry;
/// without `api` it speaks openai-completions, OpenClaw's default for custom providers).
pub(crate) fn send_session(provider: &mut Value) {
    let api = provider.get("api").and_then(Value::as_str).unwrap_or("openai-completions").to_string();
    let Some(models) = provider.get_mut("models").and_then(Value::as_array_mut) else { return };
    for m in models.iter_mut().filter(|m| m.is_object()) {
        let Some(f) = flag(m.get("api").and_then(Value::as_str).unwrap_or(&api)) else { continue };
        if !m.get("compat").is_some_and(Value::is_object) {
            m["compat"] = json!({});
        }
        if m["compat"].get(f).is_none() {
            m["compat"][f] = json!(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_api_kind_gets_its_flag_and_operator_values_stay() {
        let mut p = json!({"api": "openai-completions", "models": [
            {"id": "a"}, {"id": "b", "compat": {"sendSessionAffinityHeaders": false, "supportsTools": true}},
            {"id": "c", "api": "openai-responses"}]});
        send_session(&mut p);
        assert_eq!(p["models"][0]["compat"], json!({"sendSessionAffinityHeaders": true}));
        assert_eq!(p["models"][1]["compat"], json!({"sendSessionAffinityHeaders": false, "supportsTools": true}));
        assert_eq!(p["models"][2]["compat"], json!({"sendSessionIdHeader": true}));
        let mut a = json!({"api": "anthropic-messages", "models": [{"id": "claude"}]});
        send_session(&mut a);
        assert_eq!(a["models"][0]["compat"]["sendSessionAffinityHeaders"], true);
        let mut o = json!({"api": "ollama", "models": [{"id": "q"}]});
        send_session(&mut o);
        assert!(o["models"][0].get("compat").is_none());
    }
}

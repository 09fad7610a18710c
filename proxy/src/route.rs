//! Parsing `/a/{agent}/{upstream}/...` into a typed route. The agent comes from the path:
//! that is how OpenClaw providers are wired (one provider per agent). The path only *names*
//! the agent; `auth.rs` checks that the caller holds that agent's key. An agent id must be
//! OpenClaw's canonical spelling (`decision::agent_id`): every other spelling is refused
//! with 400, so no second name of an agent escapes its kill switch or budgets.

use std::sync::Arc;

use crate::config::UpstreamKind;
use crate::upstream::Upstream;

/// Which error/response shape the caller speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// Guess from the path alone, so even a 404 comes back in the caller's shape.
    pub fn from_path(path: &str) -> Dialect {
        if path.ends_with("/v1/messages") || path.contains("/v1/messages/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

/// The model API being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    Embeddings,
    Models,
    Messages,
}

impl Endpoint {
    /// Stable label value for metrics, audit and policy input.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Models => "models",
            Endpoint::Messages => "messages",
        }
    }

    /// Whether the endpoint expects a JSON request body.
    pub fn has_body(self) -> bool {
        !matches!(self, Endpoint::Models)
    }

    /// Every endpoint, for pre-registering metric label sets.
    pub const ALL: [Endpoint; 5] =
        [Endpoint::ChatCompletions, Endpoint::Responses, Endpoint::Embeddings, Endpoint::Models, Endpoint::Messages];
}

/// A parsed data-path route.
#[derive(Debug, Clone)]
pub struct Route {
    pub agent: String,
    pub upstream: Arc<Upstream>,
    pub endpoint: Endpoint,
    /// Path to append to the upstream's URL (for OpenAI kinds without the `/v1` prefix,
    /// which the upstream URL carries; for Anthropic with it).
    pub upstream_path: String,
}

/// Why a path is not a route.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    UnknownUpstream(String),
    MethodNotAllowed,
}

/// Split `/a/{agent}/{upstream}/{rest}`; the caller checks the agent id
/// ([`decision::agent_id::check`]) and resolves the upstream name. The segments are the raw
/// path bytes: nothing is percent-decoded or case-folded, so `/a/m%61in/` names the agent
/// `m%61in` (refused by the grammar), never `main`.
pub fn split(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/a/")?;
    let (agent, rest) = rest.split_once('/')?;
    let (upstream, rest) = rest.split_once('/')?;
    if upstream.is_empty() {
        return None;
    }
    Some((agent, upstream, rest))
}

/// Which endpoint `rest` (the path after the upstream segment) names for an upstream kind.
pub fn endpoint_for(kind: UpstreamKind, method: &http::Method, rest: &str) -> Result<Endpoint, RouteError> {
    let (ep, want) = match (kind, rest) {
        (UpstreamKind::Openai, "v1/chat/completions") => (Endpoint::ChatCompletions, http::Method::POST),
        (UpstreamKind::Openai, "v1/responses") => (Endpoint::Responses, http::Method::POST),
        (UpstreamKind::Openai, "v1/embeddings") => (Endpoint::Embeddings, http::Method::POST),
        (UpstreamKind::Openai, "v1/models") => (Endpoint::Models, http::Method::GET),
        (UpstreamKind::Anthropic, "v1/messages") => (Endpoint::Messages, http::Method::POST),
        _ => return Err(RouteError::NotFound),
    };
    if *method != want {
        return Err(RouteError::MethodNotAllowed);
    }
    Ok(ep)
}

/// The path to append to the upstream URL for an endpoint.
pub fn upstream_path(kind: UpstreamKind, rest: &str) -> String {
    match kind {
        // OpenAI base URLs carry the version (`.../v1`), like the SDKs' base_url.
        UpstreamKind::Openai => rest.strip_prefix("v1").unwrap_or(rest).to_string(),
        // Anthropic base URLs are host roots; the path keeps `/v1`.
        UpstreamKind::Anthropic => format!("/{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_agent_upstream_rest() {
        assert_eq!(split("/a/main/openai/v1/chat/completions"), Some(("main", "openai", "v1/chat/completions")));
        assert_eq!(split("/a/main//v1/x"), None);
        assert_eq!(split("/b/main/openai/v1"), None);
        // Split only: the agent id is checked by the caller.
        assert_eq!(split("/a/MAIN/openai/v1/x"), Some(("MAIN", "openai", "v1/x")));
    }

    #[test]
    fn endpoints_by_kind() {
        let post = http::Method::POST;
        assert_eq!(endpoint_for(UpstreamKind::Openai, &post, "v1/chat/completions"), Ok(Endpoint::ChatCompletions));
        assert_eq!(endpoint_for(UpstreamKind::Openai, &post, "v1/messages"), Err(RouteError::NotFound));
        assert_eq!(endpoint_for(UpstreamKind::Anthropic, &post, "v1/messages"), Ok(Endpoint::Messages));
        assert_eq!(endpoint_for(UpstreamKind::Openai, &post, "v1/models"), Err(RouteError::MethodNotAllowed));
        assert_eq!(endpoint_for(UpstreamKind::Openai, &http::Method::GET, "v1/models"), Ok(Endpoint::Models));
    }

    #[test]
    fn upstream_paths() {
        assert_eq!(upstream_path(UpstreamKind::Openai, "v1/chat/completions"), "/chat/completions");
        assert_eq!(upstream_path(UpstreamKind::Anthropic, "v1/messages"), "/v1/messages");
    }

    #[test]
    fn dialect_from_path() {
        assert_eq!(Dialect::from_path("/a/x/anth/v1/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::from_path("/a/x/o/v1/chat/completions"), Dialect::OpenAi);
    }
}

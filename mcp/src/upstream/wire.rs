//! The HTTP client rmcp's Streamable HTTP transport uses for one upstream session: the
//! project's pooled reqwest client, which also remembers the session's `Mcp-Session-Id` and
//! the headers rmcp sends with it (configured headers + `MCP-Protocol-Version`), so that a
//! `tools/call` can be posted straight from the call's own task (`direct.rs`) on the same
//! upstream session, without the hand-offs through rmcp's service loop and transport worker.
//!
//! Every method delegates to rmcp's own reqwest implementation: limits, error mapping and
//! session expiry are rmcp's. What is remembered is exactly what rmcp's worker last sent on
//! this session; `delete_session` forgets it (the session is gone, calls go through rmcp).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::common::client_side_sse::BoxedSseResponse;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};

/// What a direct post needs to join the upstream session.
#[derive(Clone)]
pub(crate) struct Posting {
    pub session: Arc<str>,
    pub headers: HashMap<HeaderName, HeaderValue>,
}

/// A reqwest client that remembers the session rmcp posts on.
#[derive(Clone)]
pub(crate) struct Wire {
    pub client: reqwest::Client,
    posting: Arc<Mutex<Option<Arc<Posting>>>>,
}

impl Wire {
    pub fn new(client: reqwest::Client) -> Wire {
        Wire { client, posting: Arc::new(Mutex::new(None)) }
    }

    /// The session and headers of rmcp's last post, once it has one.
    pub fn posting(&self) -> Option<Arc<Posting>> {
        self.posting.lock().ok()?.clone()
    }

    fn remember(&self, session: &Option<Arc<str>>, headers: &HashMap<HeaderName, HeaderValue>) {
        let Some(session) = session else { return };
        let Ok(mut p) = self.posting.lock() else { return };
        // The usual case (same session, same headers) costs a comparison, no clone.
        let same = p.as_ref().is_some_and(|old| old.session == *session && old.headers == *headers);
        if !same {
            *p = Some(Arc::new(Posting { session: session.clone(), headers: headers.clone() }));
        }
    }

    fn forget(&self) {
        if let Ok(mut p) = self.posting.lock() {
            *p = None;
        }
    }
}

type PostResult = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;

impl StreamableHttpClient for Wire {
    type Error = reqwest::Error;

    fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
    }

    fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        let mut limits = StreamableHttpResponseLimits::default();
        limits.max_sse_event_size = max_sse_event_size;
        self.post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
    }

    fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        self.remember(&session_id, &custom_headers);
        self.client.post_message_with_response_limits(uri, message, session_id, auth_header, custom_headers, limits)
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), StreamableHttpError<Self::Error>>> + Send + '_ {
        self.forget();
        self.client.delete_session(uri, session_id, auth_header, custom_headers)
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<BoxedSseResponse, StreamableHttpError<Self::Error>>> + Send + '_ {
        self.client.get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = Result<BoxedSseResponse, StreamableHttpError<Self::Error>>> + Send + '_ {
        self.client.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        )
    }
}

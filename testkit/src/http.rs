//! A tiny HTTP/1.1 client for tests, on hyper's connection API.
//!
//! Every request opens its own connection: nothing is pooled, so dropping a [`StreamingResponse`] mid-body
//! closes the socket and the server sees the client go away.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A whole response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// The body as JSON; panics with the body text if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header value as a string (`None` if absent or not ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A response whose body is read chunk by chunk; drop it to hang up mid-stream.
pub struct StreamingResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
}

impl StreamingResponse {
    /// The next data chunk as it arrived on the wire; `None` at the end of the body.
    pub async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            let frame = self.body.frame().await?.unwrap_or_else(|e| panic!("reading response body: {e}"));
            if let Ok(data) = frame.into_data() {
                return Some(data);
            }
        }
    }

    /// The next data chunk, `Ok(None)` at the end, or the error that cut the body (a
    /// connection reset, an unfinished chunked body): for tests of broken streams.
    pub async fn try_next_chunk(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e.to_string()),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// Read everything that is left.
    pub async fn collect_rest(self) -> Bytes {
        self.body.collect().await.unwrap_or_else(|e| panic!("reading response body: {e}")).to_bytes()
    }
}

/// Send one request and return the response with its body still streaming.
///
/// `url` is absolute (`http://127.0.0.1:PORT/path?query`); `Host` and, when a body is given,
/// `content-length` are set for you.
pub async fn send_streaming(method: Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> StreamingResponse {
    let uri: Uri = url.parse().unwrap_or_else(|e| panic!("bad url {url}: {e}"));
    let authority = uri.authority().unwrap_or_else(|| panic!("url without host: {url}")).clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap_or_else(|e| panic!("handshake with {authority}: {e}"));
    tokio::spawn(conn);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = Request::builder().method(method).uri(path).header("host", authority.as_str());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(body)).unwrap_or_else(|e| panic!("building request to {url}: {e}"));
    let resp = sender.send_request(req).await.unwrap_or_else(|e| panic!("request to {url}: {e}"));
    let (parts, body) = resp.into_parts();
    StreamingResponse { status: parts.status, headers: parts.headers, body }
}

/// Send one request and read the whole response.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: Bytes) -> HttpResponse {
    let resp = send_streaming(method, url, headers, body).await;
    let (status, headers) = (resp.status, resp.headers.clone());
    HttpResponse { status, headers, body: resp.collect_rest().await }
}

/// `GET url`.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> HttpResponse {
    send(Method::GET, url, headers, Bytes::new()).await
}

/// `POST url` with a JSON body (`content-type: application/json` added).
pub async fn post_json(url: &str, headers: &[(&str, &str)], body: &Value) -> HttpResponse {
    send(Method::POST, url, &with_json(headers), Bytes::from(body.to_string())).await
}

/// `POST url` with a JSON body, response streamed.
pub async fn post_json_streaming(url: &str, headers: &[(&str, &str)], body: &Value) -> StreamingResponse {
    send_streaming(Method::POST, url, &with_json(headers), Bytes::from(body.to_string())).await
}

fn with_json<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = headers.to_vec();
    if !h.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        h.push(("content-type", "application/json"));
    }
    h
}

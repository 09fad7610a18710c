//! A scripted HTTP receiver on 127.0.0.1: every request is recorded with the answer it got;
//! the answer comes from a handler the test gives (a signature check, a Slack or Telegram
//! shape check, a push service) or from a script of statuses (a failing receiver).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;

/// One request as the receiver saw it, with its answer.
#[derive(Debug, Clone)]
pub struct Got {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub status: u16,
    pub answer: String,
    pub at: std::time::Instant,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }
}

/// Decides the answer to a request: (status, body).
pub type Handler = Arc<dyn Fn(&Got) -> (u16, String) + Send + Sync>;

pub struct Receiver {
    pub addr: std::net::SocketAddr,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Got>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver answering every request with `handler` (after any scripted statuses).
    pub async fn start(handler: Handler) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let script: Arc<Mutex<VecDeque<u16>>> = Arc::default();
        let sc = script.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (tx, handler, sc) = (tx.clone(), handler.clone(), sc.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let (tx, handler, sc) = (tx.clone(), handler.clone(), sc.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                            let mut got = Got {
                                method: parts.method.to_string(),
                                path: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                    .collect(),
                                body,
                                status: 0,
                                answer: String::new(),
                                at: std::time::Instant::now(),
                            };
                            let scripted = sc.lock().unwrap().pop_front();
                            let (status, answer) = match scripted {
                                Some(s) => (s, format!("{{\"scripted\":{s}}}")),
                                None => handler(&got),
                            };
                            got.status = status;
                            got.answer = answer.clone();
                            let _ = tx.send(got);
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(answer)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Receiver { addr, rx: tokio::sync::Mutex::new(rx), script, task }
    }

    /// A receiver that answers 200 `{"ok":true}` to everything.
    pub async fn ok() -> Receiver {
        Receiver::start(Arc::new(|_| (200, "{\"ok\":true}".into()))).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next requests get these statuses (then the handler answers again).
    pub fn script(&self, statuses: &[u16]) {
        self.script.lock().unwrap().extend(statuses.iter().copied());
    }

    /// The next request, waiting at most `within`.
    pub async fn next(&self, within: Duration) -> Option<Got> {
        tokio::time::timeout(within, self.rx.lock().await.recv()).await.ok().flatten()
    }

    /// Requests arriving within `within` (stops early once `n` arrived).
    pub async fn take(&self, n: usize, within: Duration) -> Vec<Got> {
        let end = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        let mut rx = self.rx.lock().await;
        while out.len() < n {
            match tokio::time::timeout_at(end, rx.recv()).await {
                Ok(Some(g)) => out.push(g),
                _ => break,
            }
        }
        out
    }

    /// Whatever arrives within `within` (all of it).
    pub async fn quiet_for(&self, within: Duration) -> Vec<Got> {
        self.take(usize::MAX, within).await
    }
}

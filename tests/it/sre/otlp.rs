//! A loopback OTLP/HTTP receiver for the trace tests: it decodes each `POST /v1/traces` body
//! as the real protobuf (`opentelemetry-proto`'s `ExportTraceServiceRequest`, via prost) and
//! keeps the spans; in `hung` mode it reads requests and never answers.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One received span with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct Got {
    pub service: String,
    pub span: Span,
}

impl Got {
    pub fn trace_id(&self) -> String {
        hex::encode(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex::encode(&self.span.span_id)
    }
    pub fn parent(&self) -> String {
        hex::encode(&self.span.parent_span_id)
    }
    /// An attribute as text (strings, ints, doubles, bools).
    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }
}

fn attr(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> Option<String> {
    let v = kvs.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()?;
    Some(match v {
        Any::StringValue(s) => s.clone(),
        Any::IntValue(i) => i.to_string(),
        Any::DoubleValue(d) => d.to_string(),
        Any::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    })
}

/// See the module docs.
pub struct Receiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
    requests: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    pub async fn start(hung: bool) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
        let requests: Arc<Mutex<usize>> = Arc::default();
        let (s, r) = (spans.clone(), requests.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((io, _)) = listener.accept().await else { return };
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (s, r) = (s.clone(), r.clone());
                        async move {
                            assert_eq!(req.uri().path(), "/v1/traces");
                            assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            *r.lock().unwrap() += 1;
                            if hung {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                            }
                            let msg = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                            let mut got = s.lock().unwrap();
                            for rs in msg.resource_spans {
                                let service = rs
                                    .resource
                                    .as_ref()
                                    .and_then(|r| attr(&r.attributes, "service.name"))
                                    .unwrap_or_default();
                                for ss in rs.scope_spans {
                                    for span in ss.spans {
                                        got.push(Got { service: service.clone(), span });
                                    }
                                }
                            }
                            let out = ExportTraceServiceResponse::default().encode_to_vec();
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/x-protobuf")
                                    .body(Full::new(Bytes::from(out)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc).await;
                });
            }
        });
        Receiver { addr, spans, requests, task }
    }

    /// Spans received so far.
    pub fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    /// Export requests received (answered or not).
    pub fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }

    /// Wait (up to 10 s) until a span named `name` with trace id `trace` has arrived; then
    /// every span of that trace.
    pub async fn trace(&self, trace: &str, name: &str) -> Vec<Got> {
        for _ in 0..200 {
            let all: Vec<Got> = self.spans().into_iter().filter(|g| g.trace_id() == trace).collect();
            if all.iter().any(|g| g.span.name == name) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no span {name} of trace {trace} arrived; got {:#?}", self.spans());
    }
}

//! OpenTelemetry traces for ClawButler: one span per data-path call with child spans for the
//! steps that take time (policy, hold, budget, upstream), exported over OTLP (HTTP/protobuf)
//! to a collector. Off unless `[telemetry] endpoint` is set; when off, a [`SpanCx`] is an empty
//! `Option` and every call on it does nothing.
//!
//! Invariants:
//! - The data path never waits for the collector: a finished span is handed to a bounded
//!   queue with `try_send` and exported in batches by one background task (`export.rs`). A
//!   full queue, a failed or a timed-out export drops spans, counted in
//!   `clawbutler_trace_spans_dropped_total{reason}`.
//! - A call's trace id is the span's: the caller's (a valid `traceparent`) or the one the SDK
//!   makes for a new root; the data path logs and audits that same id.
//! - Attributes are names from the config or the request's routing (route, upstream, agent,
//!   model), never secrets or prompt text.

mod client;
mod export;
mod settings;

use std::sync::Arc;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

pub use opentelemetry::trace::SpanKind as Kind;
pub use opentelemetry::KeyValue as Attr;
pub use settings::TelemetrySettings;

/// Errors starting the exporter (reported at start, naming the key).
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.endpoint: {0}")]
    Endpoint(String),
    #[error("telemetry: TLS setup: {0}")]
    Tls(String),
    #[error("telemetry metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The process's tracer, or nothing when traces are off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    queue: export::Queue,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("enabled", &self.inner.is_some()).finish()
    }
}

impl Telemetry {
    /// Traces off (what tests and tools that do not trace use).
    pub fn disabled() -> Telemetry {
        Telemetry::default()
    }

    /// Register the exporter's metrics on `registry` (always, so dashboards see zeros) and,
    /// when `settings.endpoint` is set, start the export task. Must run inside a Tokio runtime.
    pub fn start(settings: &TelemetrySettings, registry: &prometheus::Registry) -> Result<Telemetry, TelemetryError> {
        let metrics = export::ExportMetrics::new(registry)?;
        let Some(endpoint) = settings.traces_url() else { return Ok(Telemetry::disabled()) };
        let endpoint = endpoint.map_err(TelemetryError::Endpoint)?;
        let queue = export::start(settings, &endpoint, metrics)?;
        let resource = export::resource(settings);
        let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue.processor())
            .with_sampler(sampler)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("clawbutler");
        Ok(Telemetry { inner: Some(Arc::new(Inner { tracer, provider, queue })) })
    }

    /// Whether spans are made at all.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The root span of one call: a child of the caller's span when `traceparent` is a valid
    /// W3C header, else a new trace. Attributes are built only when traces are on.
    pub fn root(&self, name: &'static str, traceparent: Option<&str>, attrs: impl FnOnce() -> Vec<KeyValue>) -> SpanCx {
        let Some(inner) = &self.inner else { return SpanCx::default() };
        let parent = match traceparent.and_then(parse_traceparent) {
            Some(sc) => Context::new().with_remote_span_context(sc),
            None => Context::new(),
        };
        let builder = inner.tracer.span_builder(name).with_kind(SpanKind::Server).with_attributes(attrs());
        let span = inner.tracer.build_with_context(builder, &parent);
        SpanCx(Some(Node { tracer: inner.tracer.clone(), cx: parent.with_span(span) }))
    }

    /// Export what is queued (up to the export timeout) and stop: at shutdown.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else { return };
        inner.queue.flush().await;
        // The SDK side only marks itself shut down; the queue was flushed above.
        let _ = inner.provider.shutdown();
    }

    /// Wait until every span ended so far was exported or dropped (tests, shutdown).
    pub async fn flush(&self) {
        if let Some(inner) = &self.inner {
            inner.queue.flush().await;
        }
    }
}

/// One span and its context, or nothing (traces off, or a step that is not traced). Clones
/// share the span; it ends at [`SpanCx::end`] or when the last clone is dropped.
#[derive(Clone, Default)]
pub struct SpanCx(Option<Node>);

#[derive(Clone)]
struct Node {
    tracer: SdkTracer,
    cx: Context,
}

impl std::fmt::Debug for SpanCx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(n) => write!(f, "SpanCx({:?})", n.cx.span().span_context()),
            None => f.write_str("SpanCx(off)"),
        }
    }
}

impl SpanCx {
    /// A child span (kind internal), started now.
    pub fn child(&self, name: &'static str, attrs: impl FnOnce() -> Vec<KeyValue>) -> SpanCx {
        self.child_of_kind(name, SpanKind::Internal, attrs)
    }

    /// A child span of the given kind (`Client` for the upstream request).
    pub fn child_of_kind(&self, name: &'static str, kind: SpanKind, attrs: impl FnOnce() -> Vec<KeyValue>) -> SpanCx {
        let Some(n) = &self.0 else { return SpanCx::default() };
        let builder = n.tracer.span_builder(name).with_kind(kind).with_attributes(attrs());
        let span = n.tracer.build_with_context(builder, &n.cx);
        SpanCx(Some(Node { tracer: n.tracer.clone(), cx: n.cx.with_span(span) }))
    }

    /// Set one attribute (built only when traced).
    pub fn set(&self, attr: impl FnOnce() -> KeyValue) {
        if let Some(n) = &self.0 {
            n.cx.span().set_attribute(attr());
        }
    }

    /// Mark the span failed with a short, fixed description (never request content).
    pub fn error(&self, what: &'static str) {
        if let Some(n) = &self.0 {
            n.cx.span().set_status(Status::error(what));
        }
    }

    /// End the span now (later ends do nothing).
    pub fn end(&self) {
        if let Some(n) = &self.0 {
            n.cx.span().end();
        }
    }

    /// The span's trace id as 32 lowercase hex digits, when traced.
    pub fn trace_id(&self) -> Option<String> {
        let n = self.0.as_ref()?;
        let sc = n.cx.span().span_context().clone();
        sc.is_valid().then(|| format!("{:032x}", sc.trace_id()))
    }

    /// The W3C `traceparent` naming this span as the parent, for an outgoing request.
    pub fn traceparent(&self) -> Option<String> {
        let n = self.0.as_ref()?;
        let sc = n.cx.span().span_context().clone();
        sc.is_valid()
            .then(|| format!("00-{:032x}-{:016x}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
    }
}

/// The span context of a valid W3C `traceparent` (version 00 layout; version `ff` and
/// all-zero ids are invalid), marked remote.
pub fn parse_traceparent(v: &str) -> Option<SpanContext> {
    let mut parts = v.trim().split('-');
    let (ver, tid, sid, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(ver, 2) || ver.eq_ignore_ascii_case("ff") || !hex(tid, 32) || !hex(sid, 16) || !hex(flags, 2) {
        return None;
    }
    if ver == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(tid).ok()?;
    let span_id = SpanId::from_hex(sid).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, TraceState::default());
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_parses_and_rejects() {
        let sc = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(format!("{:032x}", sc.trace_id()), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(sc.is_sampled() && sc.is_remote());
        assert!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01").is_none());
        assert!(parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
        assert!(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_none());
        assert!(parse_traceparent("garbage").is_none());
    }

    #[test]
    fn off_means_nothing_happens() {
        let t = Telemetry::disabled();
        let root = t.root("call", Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), || {
            panic!("attributes are not built when traces are off")
        });
        assert!(root.trace_id().is_none() && root.traceparent().is_none());
        root.child("policy", || panic!("not built")).end();
    }
}

//! Export off the data path: the SDK hands each finished span to [`QueueProcessor::on_end`],
//! which only `try_send`s it into a bounded channel (never waits); one task batches the queue
//! and sends each batch through the OTLP/HTTP exporter under a time limit, one request at a
//! time. So a slow or dead collector costs the data path nothing: the queue fills, and spans
//! past it are dropped and counted, as are the spans of a batch that failed or timed out.

use std::time::Duration;

use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter as _, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::{mpsc, oneshot};

use crate::client::OtlpClient;
use crate::{TelemetryError, TelemetrySettings};

/// Why spans were dropped (the `reason` label).
const REASONS: [&str; 3] = ["queue_full", "export_failed", "export_timeout"];

/// `clawbutler_trace_spans_*`.
#[derive(Clone)]
pub struct ExportMetrics {
    exported: IntCounter,
    dropped: IntCounterVec,
}

impl ExportMetrics {
    /// Register both families, every reason at 0.
    pub fn new(registry: &Registry) -> Result<ExportMetrics, prometheus::Error> {
        let exported = IntCounter::new("clawbutler_trace_spans_exported_total", "Spans the OTLP collector accepted")?;
        let dropped = IntCounterVec::new(
            Opts::new("clawbutler_trace_spans_dropped_total", "Spans dropped instead of exported, by reason"),
            &["reason"],
        )?;
        registry.register(Box::new(exported.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        for r in REASONS {
            dropped.with_label_values(&[r]);
        }
        Ok(ExportMetrics { exported, dropped })
    }
}

enum Msg {
    Span(Box<SpanData>),
    /// Export everything queued before this, then answer.
    Flush(oneshot::Sender<()>),
}

/// The sending side of the export queue.
pub struct Queue {
    tx: mpsc::Sender<Msg>,
    full: IntCounter,
    flush_timeout: Duration,
}

/// The resource every span carries: `service.name`, `service.version`.
pub fn resource(s: &TelemetrySettings) -> Resource {
    Resource::builder_empty()
        .with_service_name(s.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Build the exporter and start the export task.
pub fn start(s: &TelemetrySettings, url: &str, metrics: ExportMetrics) -> Result<Queue, TelemetryError> {
    let timeout = Duration::from_millis(s.export_timeout_ms);
    let client = OtlpClient::new(timeout)?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(timeout)
        .with_http_client(client)
        .build()
        .map_err(|e| TelemetryError::Endpoint(e.to_string()))?;
    exporter.set_resource(&resource(s));
    let (tx, rx) = mpsc::channel(s.max_queue_spans);
    let full = metrics.dropped.with_label_values(&["queue_full"]);
    let task = Task {
        exporter,
        metrics,
        timeout,
        max_batch: s.max_batch_spans,
        delay: Duration::from_millis(s.batch_delay_ms),
        failing: false,
    };
    tokio::spawn(task.run(rx));
    // A flush (at shutdown) waits at most about one export: a dead collector must not hold
    // the sidecar's stop up for a whole queue's worth of timeouts.
    Ok(Queue { tx, full, flush_timeout: timeout + Duration::from_secs(1) })
}

impl Queue {
    /// The SDK's side of the queue.
    pub fn processor(&self) -> QueueProcessor {
        QueueProcessor { tx: self.tx.clone(), full: self.full.clone() }
    }

    /// Wait until what was queued before now is exported or dropped (bounded).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        let _ = tokio::time::timeout(self.flush_timeout, async {
            if self.tx.send(Msg::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        })
        .await;
    }
}

/// See the module docs.
pub struct QueueProcessor {
    tx: mpsc::Sender<Msg>,
    full: IntCounter,
}

impl std::fmt::Debug for QueueProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueProcessor").field("free", &self.tx.capacity()).finish()
    }
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.tx.try_send(Msg::Span(Box::new(span))).is_err() {
            self.full.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Flushing is async (`Queue::flush`); the SDK's synchronous hook must not block a
        // runtime thread.
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

struct Task {
    exporter: opentelemetry_otlp::SpanExporter,
    metrics: ExportMetrics,
    timeout: Duration,
    max_batch: usize,
    delay: Duration,
    /// The last export failed (a change is logged once, not every batch).
    failing: bool,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<SpanData> = Vec::with_capacity(self.max_batch);
        let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
        while let Some(first) = rx.recv().await {
            let mut flush = self.take(first, &mut batch, &mut acks);
            if !flush {
                let deadline = tokio::time::sleep(self.delay);
                tokio::pin!(deadline);
                while batch.len() < self.max_batch {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Some(m) => if self.take(m, &mut batch, &mut acks) { flush = true; break },
                            None => break,
                        },
                        _ = &mut deadline => break,
                    }
                }
            }
            if flush {
                // Everything queued so far goes before the answer.
                while let Ok(m) = rx.try_recv() {
                    self.take(m, &mut batch, &mut acks);
                }
            }
            while !batch.is_empty() {
                let rest = batch.split_off(batch.len().min(self.max_batch));
                let now = std::mem::replace(&mut batch, rest);
                self.export(now).await;
            }
            for a in acks.drain(..) {
                let _ = a.send(());
            }
        }
    }

    /// Add a message to the batch; true for a flush request.
    fn take(&self, m: Msg, batch: &mut Vec<SpanData>, acks: &mut Vec<oneshot::Sender<()>>) -> bool {
        match m {
            Msg::Span(s) => {
                batch.push(*s);
                false
            }
            Msg::Flush(a) => {
                acks.push(a);
                true
            }
        }
    }

    async fn export(&mut self, batch: Vec<SpanData>) {
        let n = batch.len() as u64;
        let failure = match tokio::time::timeout(self.timeout, self.exporter.export(batch)).await {
            Ok(Ok(())) => {
                self.metrics.exported.inc_by(n);
                None
            }
            Ok(Err(e)) => Some(("export_failed", e.to_string())),
            Err(_) => Some(("export_timeout", format!("no answer within {} ms", self.timeout.as_millis()))),
        };
        match failure {
            Some((reason, detail)) => {
                self.metrics.dropped.with_label_values(&[reason]).inc_by(n);
                if !self.failing {
                    tracing::warn!(reason, error = %detail, "trace export failing; spans are dropped until it recovers");
                }
                self.failing = true;
            }
            None if self.failing => {
                tracing::info!("trace export works again");
                self.failing = false;
            }
            None => {}
        }
    }
}

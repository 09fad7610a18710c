//! The notifier's metric families (docs/metrics.md). Labels are enums or channel names from
//! the config, so the series are bounded.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

use crate::event::EventKind;

/// How one delivery attempt (or the decision not to make one) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// An attempt failed and another is scheduled.
    Retried,
    /// The last attempt failed (or the receiver refused for good).
    Failed,
    SuppressedQuiet,
    SuppressedPreference,
    NoRecipient,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Delivered,
        Outcome::Retried,
        Outcome::Failed,
        Outcome::SuppressedQuiet,
        Outcome::SuppressedPreference,
        Outcome::NoRecipient,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::SuppressedQuiet => "suppressed_quiet",
            Outcome::SuppressedPreference => "suppressed_preference",
            Outcome::NoRecipient => "no_recipient",
        }
    }
}

/// Why an event or a delivery was dropped.
#[derive(Debug, Clone, Copy)]
pub enum Drop {
    /// The routing queue was full.
    QueueFull,
    /// Too many deliveries queued or retrying at once.
    Backlog,
    /// Records the notifier could not read back after falling behind the live stream.
    Lagged,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::QueueFull => "queue_full",
            Drop::Backlog => "backlog",
            Drop::Lagged => "lagged",
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub events: IntCounterVec,
    pub deliveries: IntCounterVec,
    pub dropped: IntCounterVec,
    pub queue: IntGauge,
    pub in_flight: IntGauge,
    pub latency: HistogramVec,
    pub escalations: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry, channels: &[String]) -> Result<Metrics, prometheus::Error> {
        let m = Metrics {
            events: IntCounterVec::new(
                Opts::new("clawbutler_notify_events_total", "Events the notifier classified, by event kind"),
                &["event"],
            )?,
            deliveries: IntCounterVec::new(
                Opts::new("clawbutler_notify_deliveries_total", "Notification delivery outcomes, by channel"),
                &["channel", "outcome"],
            )?,
            dropped: IntCounterVec::new(
                Opts::new("clawbutler_notify_dropped_total", "Events or deliveries dropped, by reason"),
                &["reason"],
            )?,
            queue: IntGauge::new("clawbutler_notify_queue_depth", "Events waiting to be routed")?,
            in_flight: IntGauge::new("clawbutler_notify_in_flight", "Deliveries queued or being retried")?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "clawbutler_notify_delivery_seconds",
                    "From an event's audit record to its delivery being accepted, by channel",
                )
                .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0]),
                &["channel"],
            )?,
            escalations: IntCounterVec::new(
                Opts::new("clawbutler_notify_escalations_total", "Pending approvals escalated, by step"),
                &["step"],
            )?,
        };
        for k in EventKind::ALL {
            m.events.with_label_values(&[k.as_str()]);
        }
        for c in channels {
            for o in Outcome::ALL {
                m.deliveries.with_label_values(&[c.as_str(), o.as_str()]);
            }
        }
        for d in [Drop::QueueFull, Drop::Backlog, Drop::Lagged] {
            m.dropped.with_label_values(&[d.as_str()]);
        }
        for s in ["escalated", "expiring"] {
            m.escalations.with_label_values(&[s]);
        }
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.deliveries.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.queue.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.escalations.clone()))?;
        Ok(m)
    }

    pub fn outcome(&self, channel: &str, o: Outcome) {
        self.deliveries.with_label_values(&[channel, o.as_str()]).inc();
    }

    pub fn drop(&self, why: Drop, n: u64) {
        self.dropped.with_label_values(&[why.as_str()]).inc_by(n);
    }
}

//! The delivery log: one entry per (message, channel), updated at every attempt, so the UI
//! and the API show what was sent, what is being retried and what failed, with the error.
//! Kept in `storage::Tree::NotifyDeliveries` by id (UUID v7, so key order is time order) and
//! pruned to `[notify] log_max` entries, oldest first.

use decision::Risk;
use serde::{Deserialize, Serialize};

use crate::error::NotifyError;
use crate::event::EventKind;
use crate::settings::ChannelKind;

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting for its first attempt.
    Queued,
    /// An attempt failed; another one is scheduled.
    Retrying,
    Delivered,
    /// Every attempt failed (or the receiver refused it for good).
    Failed,
    /// Not sent: quiet hours, the recipient's preferences, or no recipient.
    Suppressed,
    /// The sidecar stopped before it was delivered.
    Abandoned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Retrying => "retrying",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
            Status::Suppressed => "suppressed",
            Status::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Queued, Status::Retrying, Status::Delivered, Status::Failed, Status::Suppressed, Status::Abandoned]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// One delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    pub id: String,
    pub created_at: String,
    pub route: String,
    pub channel: String,
    pub channel_kind: ChannelKind,
    pub event: EventKind,
    /// Audit seq of the first event (absent for tests and digests).
    pub seq: Option<u64>,
    pub agent: Option<String>,
    pub risk: Risk,
    /// Events this message stands for (a burst).
    pub count: u32,
    pub title: String,
    pub approval_id: Option<String>,
    pub status: Status,
    /// Why it was suppressed (`quiet_hours`, `preference`, `no_recipient`).
    pub reason: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
    /// From the first event's audit record to the channel's acceptance.
    pub latency_ms: Option<f64>,
    #[serde(default)]
    pub test: bool,
}

/// Filters and paging of `GET /api/v1/notifications/deliveries`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub route: Option<String>,
    pub channel: Option<String>,
    pub status: Option<String>,
    pub event: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<usize>,
}

/// Largest page.
pub const MAX_LIMIT: usize = 500;

/// One page, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

#[derive(Clone)]
pub struct DeliveryLog {
    tree: sled::Tree,
    max: usize,
}

fn store_err(e: impl std::fmt::Display) -> NotifyError {
    NotifyError::Store(e.to_string())
}

impl DeliveryLog {
    pub fn new(tree: sled::Tree, max: usize) -> DeliveryLog {
        DeliveryLog { tree, max: max.max(1) }
    }

    /// Insert or update (not flushed: the log is a view, the audit record is the evidence).
    pub fn put(&self, d: &Delivery) -> Result<(), NotifyError> {
        self.tree.insert(d.id.as_bytes(), serde_json::to_vec(d).map_err(store_err)?).map_err(store_err)?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<Delivery> {
        self.tree.get(id.as_bytes()).ok().flatten().and_then(|v| serde_json::from_slice(&v).ok())
    }

    /// Remove the oldest entries beyond the limit.
    pub fn prune(&self) {
        let over = self.tree.len().saturating_sub(self.max);
        for k in self.tree.iter().keys().take(over).filter_map(|k| k.ok()) {
            let _ = self.tree.remove(k);
        }
    }

    /// Entries still queued or retrying from a previous run: marked abandoned.
    pub fn abandon_unfinished(&self) -> usize {
        let mut n = 0;
        for v in self.tree.iter().values().filter_map(|v| v.ok()) {
            let Ok(mut d) = serde_json::from_slice::<Delivery>(&v) else { continue };
            if matches!(d.status, Status::Queued | Status::Retrying) {
                d.status = Status::Abandoned;
                d.last_error = Some("the sidecar stopped before this was delivered".into());
                if self.put(&d).is_ok() {
                    n += 1;
                }
            }
        }
        n
    }

    /// A page, newest first.
    pub fn list(&self, q: &DeliveryQuery) -> Result<DeliveryPage, NotifyError> {
        let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
        let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(Status::parse(s).ok_or_else(|| NotifyError::Invalid(format!("status: unknown '{s}'")))?),
            None => None,
        };
        let event = match q.event.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(EventKind::parse(s).ok_or_else(|| NotifyError::Invalid(format!("event: unknown '{s}'")))?),
            None => None,
        };
        let iter = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => self.tree.range(..c.as_bytes()),
            None => self.tree.range::<&[u8], _>(..),
        };
        let mut items = Vec::new();
        let mut next = None;
        for kv in iter.rev() {
            let (k, v) = kv.map_err(store_err)?;
            let Ok(d) = serde_json::from_slice::<Delivery>(&v) else { continue };
            let keep = q.route.as_deref().filter(|r| !r.is_empty()).is_none_or(|r| d.route == r)
                && q.channel.as_deref().filter(|r| !r.is_empty()).is_none_or(|c| d.channel == c)
                && status.is_none_or(|s| d.status == s)
                && event.is_none_or(|e| d.event == e);
            if !keep {
                continue;
            }
            if items.len() == limit {
                next = items.last().map(|x: &Delivery| x.id.clone());
                break;
            }
            let _ = k;
            items.push(d);
        }
        Ok(DeliveryPage { items, next_cursor: next })
    }
}

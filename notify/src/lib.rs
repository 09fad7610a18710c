//! ClawButler's notifier: tells approvers and operators what the sidecar records, where they
//! already look. It reads the audit log's live stream (every event the sidecar records goes
//! through it, masked), turns records into notification events through one table
//! ([`event::TABLE`]), routes them (`[[notify.routes]]` and routes made through the API) to
//! channels (signed webhook, Slack-compatible webhook, Telegram, e-mail over SMTP with rustls,
//! Web Push to the UI), merges bursts, holds back what quiet hours hold back, escalates
//! approvals left pending, and sends a daily digest. Every delivery is retried with backoff,
//! logged (`Tree::NotifyDeliveries`), counted and audited.
//!
//! It never slows the data path: the audit broadcast never blocks its writer, the routing
//! queue is bounded (events beyond it are dropped and counted), and deliveries run on their
//! own tasks, at most `max_in_flight` at once.

pub mod channels;
mod deliver;
pub mod digest;
mod dispatch;
mod error;
mod escalate;
pub mod event;
pub mod link;
pub mod log;
pub mod message;
mod metrics;
pub mod route;
pub mod settings;
pub mod store;
pub mod vapid;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use audit::AuditLog;
use governance::{Broker, Budgets};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use error::NotifyError;
pub use event::{Event, EventKind};
pub use link::LinkError;
pub use log::{Delivery, DeliveryPage, DeliveryQuery};
pub use route::{RouteSpec, RouteView};
pub use settings::NotifySettings;
pub use store::{Preferences, SubscriptionInput};

use channels::Channel;

/// What the notifier reads and acts through.
pub struct Parts {
    pub audit: Arc<AuditLog>,
    pub broker: Arc<Broker>,
    pub budgets: Arc<Budgets>,
    pub db: storage::Store,
    pub data_dir: PathBuf,
    /// The link base when `[notify] public_url` is unset (the control listener as bound).
    pub default_public_url: String,
}

/// An input of the routing task.
pub(crate) enum Input {
    /// An event from the audit log.
    Event(Box<Event>),
    /// An escalation step, for these routes as well as the routes that match its kind.
    Escalation { event: Box<Event>, targets: Vec<String> },
}

/// State shared by the notifier's tasks and its API.
pub(crate) struct Core {
    pub settings: NotifySettings,
    pub channels: BTreeMap<String, Arc<Channel>>,
    pub stored: route::RouteStore,
    /// Config routes, then API routes.
    pub routes: ArcSwap<Vec<RouteView>>,
    pub log: log::DeliveryLog,
    pub links: link::LinkSigner,
    pub push: channels::push::PushCtx,
    pub http: channels::http::HttpClient,
    pub metrics: metrics::Metrics,
    pub audit: Arc<AuditLog>,
    pub broker: Arc<Broker>,
    pub budgets: Arc<Budgets>,
    pub public_url: String,
    pub tx: mpsc::Sender<Input>,
    pub in_flight: AtomicUsize,
    pub shutdown: watch::Receiver<bool>,
    /// Serializes route changes (read-modify-write of the id space).
    pub route_lock: tokio::sync::Mutex<()>,
}

/// The notifier's handle (the control API holds one).
pub struct Notifier {
    core: Arc<Core>,
}

/// A channel as the API shows it (no secret, no URL).
#[derive(Debug, Clone, Serialize)]
pub struct ChannelView {
    pub name: String,
    pub kind: settings::ChannelKind,
    pub user: Option<String>,
}

/// `GET /api/v1/notifications`.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub enabled: bool,
    pub public_url: String,
    pub channels: Vec<ChannelView>,
    pub routes: usize,
    pub queue_capacity: usize,
    pub in_flight: usize,
    pub event_kinds: Vec<&'static str>,
    pub digest: settings::DigestSettings,
    pub escalation: settings::EscalationSettings,
    pub push_public_key: String,
}

impl Notifier {
    /// Build the channels, open the stores and keys, and start the tasks (subscriber, router,
    /// digest, link pruning). Tasks end when `shutdown` turns true.
    pub fn start(
        settings: &NotifySettings,
        parts: Parts,
        registry: &prometheus::Registry,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(Arc<Notifier>, Vec<JoinHandle<()>>), NotifyError> {
        settings.validate().map_err(|(key, msg)| NotifyError::Config { key, msg })?;
        let timeout = Duration::from_millis(settings.timeout_ms.max(1));
        let mut chans = BTreeMap::new();
        for c in &settings.channels {
            let ch = Channel::build(c, timeout).map_err(|(key, msg)| NotifyError::Config { key, msg })?;
            chans.insert(c.name.clone(), Arc::new(ch));
        }
        let db = &parts.db;
        let stored = route::RouteStore::open(db)?;
        let key = link::load_or_create_key(&parts.data_dir.join("notify-link.key"))?;
        let links = link::LinkSigner::new(key, db.tree(storage::Tree::NotifyLinks)?);
        let vapid = vapid::VapidKey::load_or_create(&parts.data_dir.join("notify-vapid.key"))?;
        let push = channels::push::PushCtx {
            store: store::PushStore::new(db.tree(storage::Tree::NotifyPush)?),
            prefs: store::PrefStore::new(db.tree(storage::Tree::NotifyPrefs)?),
            vapid,
            subject: settings.push.subject.clone(),
        };
        let log = log::DeliveryLog::new(db.tree(storage::Tree::NotifyDeliveries)?, settings.log_max);
        let abandoned = log.abandon_unfinished();
        if abandoned > 0 {
            tracing::warn!(abandoned, "notifications left undelivered by the previous run are marked abandoned");
        }
        let names: Vec<String> = chans.keys().cloned().collect();
        let metrics = metrics::Metrics::register(registry, &names)?;
        let http = channels::http::client(timeout).map_err(|m| NotifyError::Config { key: "notify".into(), msg: m })?;
        let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
        let public_url =
            settings.public_url.clone().unwrap_or(parts.default_public_url).trim_end_matches('/').to_string();
        let core = Arc::new(Core {
            settings: settings.clone(),
            channels: chans,
            stored,
            routes: ArcSwap::from_pointee(Vec::new()),
            log,
            links,
            push,
            http,
            metrics,
            audit: parts.audit,
            broker: parts.broker,
            budgets: parts.budgets,
            public_url,
            tx,
            in_flight: AtomicUsize::new(0),
            shutdown: shutdown.clone(),
            route_lock: tokio::sync::Mutex::new(()),
        });
        core.reload_routes();
        let mut tasks = Vec::new();
        if settings.enabled {
            let start = dispatch::Start::now(&core.audit);
            tasks.push(tokio::spawn(dispatch::subscribe(core.clone(), start)));
            tasks.push(tokio::spawn(dispatch::Dispatcher::new(core.clone()).run(rx)));
            tasks.push(tokio::spawn(digest::schedule(core.clone())));
        }
        tasks.push(tokio::spawn(housekeeping(core.clone())));
        Ok((Arc::new(Notifier { core }), tasks))
    }

    /// Summary for the API and UI.
    pub fn overview(&self) -> Overview {
        let c = &self.core;
        Overview {
            enabled: c.settings.enabled,
            public_url: c.public_url.clone(),
            channels: self.channels(),
            routes: c.routes.load().len(),
            queue_capacity: c.settings.queue_capacity,
            in_flight: c.in_flight.load(std::sync::atomic::Ordering::Relaxed),
            event_kinds: EventKind::ALL.iter().map(|k| k.as_str()).collect(),
            digest: c.settings.digest.clone(),
            escalation: c.settings.escalation.clone(),
            push_public_key: c.push.vapid.public_b64.clone(),
        }
    }

    pub fn channels(&self) -> Vec<ChannelView> {
        self.core
            .channels
            .values()
            .map(|c| ChannelView { name: c.name.clone(), kind: c.kind, user: c.user.clone() })
            .collect()
    }

    /// Every route: config ones first.
    pub fn routes(&self) -> Vec<RouteView> {
        self.core.routes.load().as_ref().clone()
    }

    pub fn route(&self, id: &str) -> Option<RouteView> {
        self.core.routes.load().iter().find(|r| r.spec.id == id).cloned()
    }

    /// Create an API route (`Conflict` when the id is taken).
    pub async fn create_route(&self, spec: RouteSpec) -> Result<RouteView, NotifyError> {
        let _g = self.core.route_lock.lock().await;
        if self.route(&spec.id).is_some() {
            return Err(NotifyError::Conflict(format!("a route '{}' exists already", spec.id)));
        }
        self.core.check_route(&spec)?;
        self.core.stored.put(&spec).map_err(NotifyError::Store)?;
        self.core.reload_routes();
        Ok(RouteView { spec, source: "api" })
    }

    /// Replace an API route (config routes are read-only: `Conflict`).
    pub async fn update_route(&self, id: &str, spec: RouteSpec) -> Result<RouteView, NotifyError> {
        let _g = self.core.route_lock.lock().await;
        match self.route(id) {
            None => return Err(NotifyError::NotFound(format!("no route '{id}'"))),
            Some(r) if r.source == "config" => {
                return Err(NotifyError::Conflict(format!(
                    "route '{id}' is defined in the config file and is read-only here"
                )))
            }
            Some(_) => {}
        }
        if spec.id != id {
            return Err(NotifyError::Invalid(format!("id: the body names '{}', the path '{id}'", spec.id)));
        }
        self.core.check_route(&spec)?;
        self.core.stored.put(&spec).map_err(NotifyError::Store)?;
        self.core.reload_routes();
        Ok(RouteView { spec, source: "api" })
    }

    pub async fn delete_route(&self, id: &str) -> Result<(), NotifyError> {
        let _g = self.core.route_lock.lock().await;
        match self.route(id) {
            None => Err(NotifyError::NotFound(format!("no route '{id}'"))),
            Some(r) if r.source == "config" => {
                Err(NotifyError::Conflict(format!("route '{id}' is defined in the config file and is read-only here")))
            }
            Some(_) => {
                if self.core.routes.load().iter().any(|r| r.spec.escalate_to.as_deref() == Some(id)) {
                    return Err(NotifyError::Conflict(format!("another route escalates to '{id}'; change it first")));
                }
                self.core.stored.remove(id).map_err(NotifyError::Store)?;
                self.core.reload_routes();
                Ok(())
            }
        }
    }

    /// Send a test message through every channel of a route now (no quiet hours, no merging,
    /// one attempt each); returns the deliveries as they ended.
    pub async fn test_route(&self, id: &str, actor: &str) -> Result<Vec<Delivery>, NotifyError> {
        let r = self.route(id).ok_or_else(|| NotifyError::NotFound(format!("no route '{id}'")))?;
        Ok(deliver::test(&self.core, &r.spec, actor).await)
    }

    pub fn deliveries(&self, q: &DeliveryQuery) -> Result<DeliveryPage, NotifyError> {
        self.core.log.list(q)
    }

    /// The VAPID public key (the browser's `applicationServerKey`).
    pub fn push_public_key(&self) -> String {
        self.core.push.vapid.public_b64.clone()
    }

    pub fn subscribe_push(&self, owner: &str, input: SubscriptionInput) -> Result<serde_json::Value, NotifyError> {
        store::check_subscription(&input, self.core.settings.push.allow_loopback_http)?;
        let s = self.core.push.store.add(owner, input, self.core.settings.push.max_per_token)?;
        Ok(s.view())
    }

    /// Subscriptions of `owner` (all of them for `None`).
    pub fn push_subscriptions(&self, owner: Option<&str>) -> Vec<serde_json::Value> {
        let mut all = self.core.push.store.all();
        all.retain(|s| owner.is_none_or(|o| s.owner == o));
        all.iter().map(store::Subscription::view).collect()
    }

    /// Remove a subscription (its owner, or anyone when `any_owner`).
    pub fn unsubscribe_push(&self, id: &str, owner: &str, any_owner: bool) -> Result<(), NotifyError> {
        match self.core.push.store.get(id) {
            Some(s) if s.owner == owner || any_owner => {
                self.core.push.store.remove(id)?;
                Ok(())
            }
            _ => Err(NotifyError::NotFound(format!("no push subscription '{id}' of yours"))),
        }
    }

    pub fn preferences(&self, owner: &str) -> Preferences {
        self.core.push.prefs.get(owner)
    }

    pub fn set_preferences(&self, owner: &str, p: Preferences) -> Result<Preferences, NotifyError> {
        for (name, cp) in &p.channels {
            if !self.core.channels.contains_key(name) {
                return Err(NotifyError::Invalid(format!("channels: no channel named '{name}'")));
            }
            for e in &cp.events {
                let probe = route::RouteSpec {
                    id: "x".into(),
                    events: vec![e.clone()],
                    agents: vec![],
                    risks: vec![],
                    channels: vec!["x".into()],
                    escalate_to: None,
                    quiet_hours: None,
                    burst_ms: None,
                    cooldown_s: None,
                    enabled: true,
                    description: None,
                };
                probe.validate().map_err(|m| NotifyError::Invalid(format!("channels.{name}.{m}")))?;
            }
        }
        self.core.push.prefs.put(owner, &p)?;
        Ok(p)
    }

    /// Check an action link without using it: the approval id it opens.
    pub fn check_link(&self, token: &str) -> Result<String, LinkError> {
        self.core.links.check(token, chrono::Utc::now().timestamp()).map(|c| c.approval_id)
    }

    /// Use an action link (once): the approval id it opens.
    pub fn use_link(&self, token: &str) -> Result<String, LinkError> {
        self.core.links.consume(token, chrono::Utc::now().timestamp()).map(|c| c.approval_id)
    }

    /// The digest of the last `hours` hours, computed now.
    pub async fn digest(&self, hours: u32) -> Result<digest::Digest, NotifyError> {
        let to = chrono::Utc::now();
        digest::compute(&self.core, to - chrono::Duration::hours(i64::from(hours)), to).await
    }

    /// Compute the last 24 hours' digest and send it to the digest route now.
    pub async fn send_digest(&self, actor: &str) -> Result<(digest::Digest, Vec<Delivery>), NotifyError> {
        digest::send_now(&self.core, actor).await
    }
}

impl Core {
    /// Rebuild the effective route list (config + stored).
    pub fn reload_routes(&self) {
        let mut all: Vec<RouteView> =
            self.settings.routes.iter().map(|s| RouteView { spec: s.clone(), source: "config" }).collect();
        for s in self.stored.list() {
            if all.iter().any(|r| r.spec.id == s.id) {
                tracing::warn!(route = %s.id, "an API route has the id of a config route; the config route wins");
                continue;
            }
            all.push(RouteView { spec: s, source: "api" });
        }
        self.routes.store(Arc::new(all));
    }

    /// A route from the API: valid on its own, its channels and escalation target exist.
    fn check_route(&self, spec: &RouteSpec) -> Result<(), NotifyError> {
        spec.validate().map_err(NotifyError::Invalid)?;
        for c in &spec.channels {
            if !self.channels.contains_key(c) {
                return Err(NotifyError::Invalid(format!(
                    "channels: no channel named '{c}' (channels are configured in [[notify.channels]])"
                )));
            }
        }
        if let Some(to) = &spec.escalate_to {
            if !self.routes.load().iter().any(|r| &r.spec.id == to) {
                return Err(NotifyError::Invalid(format!("escalate_to: no route '{to}'")));
            }
        }
        Ok(())
    }
}

/// Hourly: forget used links that expired, trim the delivery log.
async fn housekeeping(core: Arc<Core>) {
    let mut sd = core.shutdown.clone();
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = every.tick() => {
                let c = core.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    c.links.prune(chrono::Utc::now().timestamp());
                    c.log.prune();
                }).await;
            }
            _ = sd.changed() => return,
        }
    }
}

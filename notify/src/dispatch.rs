//! From the audit log to deliveries. `subscribe` reads the log's live stream (catching up
//! from the log itself when it falls behind), classifies each record and queues the events
//! (bounded: beyond `queue_capacity` they are dropped and counted). The [`Dispatcher`]
//! matches each event to routes, holds back what quiet hours hold back, and merges bursts:
//! events of one kind for one agent on one route within `burst_ms` (and, after a message,
//! within `cooldown_s`) leave as one message with their count.

use std::collections::HashMap;
use std::sync::Arc;

use audit::AuditRecord;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::event::{classify, Event, EventKind};
use crate::message::MAX_LISTED;
use crate::metrics::Drop;
use crate::route::RouteSpec;
use crate::{deliver, escalate, Core, Input};

/// Records read back per catch-up step.
const CATCH_UP_CHUNK: usize = 500;

fn offer(core: &Core, rec: &AuditRecord) {
    let Some(ev) = classify(rec) else { return };
    core.metrics.events.with_label_values(&[ev.kind.as_str()]).inc();
    if core.tx.try_send(Input::Event(Box::new(ev))).is_err() {
        core.metrics.drop(Drop::QueueFull, 1);
    }
    core.metrics.queue.set((core.settings.queue_capacity.max(1) - core.tx.capacity()) as i64);
}

/// How long records may gather in the live stream before the subscriber takes them: far below
/// what a person notices in a notification, and at tens of thousands of records per second
/// well within the stream's buffer (`[audit] broadcast_capacity`, 1,024; beyond it the
/// records are read back from the log).
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// Where the subscriber starts: the log's head, then a subscription, both taken when the
/// notifier starts (not when its task first runs), so every record made durable after the
/// start is offered once: from the stream, or read back by [`subscribe`] when it fell between
/// the two (a record there is in the log and may or may not be in the stream).
pub(crate) struct Start {
    from: u64,
    sub: broadcast::Receiver<Arc<AuditRecord>>,
}

impl Start {
    pub(crate) fn now(audit: &audit::AuditLog) -> Start {
        let from = audit.head();
        Start { from, sub: audit.subscribe() }
    }
}

/// Read the audit log's live stream until shutdown.
pub(crate) async fn subscribe(core: Arc<Core>, start: Start) {
    let Start { from, mut sub } = start;
    let mut sd = core.shutdown.clone();
    let mut last = from;
    // Made durable between the head and the subscription: read back, then skipped in the stream.
    let head = core.audit.head();
    catch_up(&core, &mut last, head).await;
    loop {
        tokio::select! {
            r = sub.recv() => match r {
                Ok(rec) => {
                    if rec.seq <= last {
                        continue;
                    }
                    if rec.seq > last + 1 {
                        catch_up(&core, &mut last, rec.seq - 1).await;
                    }
                    last = rec.seq;
                    offer(&core, &rec);
                    if sub.is_empty() {
                        // Caught up: let the next records gather before waiting for them, so
                        // a busy log wakes this task (and a runtime thread) once per `GATHER`,
                        // not once per group commit of the audit writer (docs/performance.md,
                        // session 17).
                        tokio::select! {
                            _ = tokio::time::sleep(GATHER) => {}
                            _ = sd.changed() => return,
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let head = core.audit.head();
                    catch_up(&core, &mut last, head).await;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = sd.changed() => return,
        }
    }
}

/// Read records `last+1..=upto` back from the log (after falling behind the live stream).
async fn catch_up(core: &Arc<Core>, last: &mut u64, upto: u64) {
    while *last < upto {
        let a = core.audit.clone();
        let from = *last + 1;
        let recs = match tokio::task::spawn_blocking(move || a.read_from(from, CATCH_UP_CHUNK)).await {
            Ok(Ok(r)) => r,
            _ => Vec::new(),
        };
        let before = *last;
        for r in &recs {
            if r.seq > *last && r.seq <= upto {
                *last = r.seq;
                offer(core, r);
            }
        }
        if *last == before {
            core.metrics.drop(Drop::Lagged, upto - *last);
            *last = upto;
        }
    }
}

type Key = (String, EventKind, Option<String>);

struct Group {
    events: Vec<Event>,
    count: u32,
    deadline: Instant,
}

/// The routing task: owns the open bursts.
pub(crate) struct Dispatcher {
    core: Arc<Core>,
    groups: HashMap<Key, Group>,
    last_sent: HashMap<Key, Instant>,
}

impl Dispatcher {
    pub fn new(core: Arc<Core>) -> Dispatcher {
        Dispatcher { core, groups: HashMap::new(), last_sent: HashMap::new() }
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut sd = self.core.shutdown.clone();
        loop {
            let next = self.groups.values().map(|g| g.deadline).min();
            let sleep =
                tokio::time::sleep_until(next.unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(3600)));
            tokio::select! {
                m = rx.recv() => match m {
                    Some(i) => {
                        self.core.metrics.queue.set((self.core.settings.queue_capacity.max(1) - self.core.tx.capacity()) as i64);
                        self.input(i);
                    }
                    None => return,
                },
                _ = sleep => self.flush_due(),
                _ = sd.changed() => return,
            }
        }
    }

    fn input(&mut self, i: Input) {
        let routes = self.core.routes.load();
        match i {
            Input::Event(e) => {
                let matched: Vec<&RouteSpec> = routes.iter().map(|r| &r.spec).filter(|r| r.matches(&e)).collect();
                if e.kind == EventKind::ApprovalCreated {
                    let targets = matched.iter().filter_map(|r| r.escalate_to.clone()).collect();
                    escalate::schedule(self.core.clone(), &e, targets);
                }
                for r in matched {
                    self.route_event(r, &e);
                }
            }
            Input::Escalation { event, targets } => {
                let mut seen = Vec::new();
                for r in routes.iter().map(|r| &r.spec) {
                    let named = targets.contains(&r.id) && r.enabled;
                    if (named || r.matches(&event)) && !seen.contains(&r.id) {
                        seen.push(r.id.clone());
                        self.route_event(r, &event);
                    }
                }
            }
        }
    }

    fn route_event(&mut self, r: &RouteSpec, e: &Event) {
        let now = Instant::now();
        if let Some(q) = &r.quiet_hours {
            if q.suppresses(e.risk, chrono::Utc::now()) {
                deliver::suppress_quiet(&self.core, r, e);
                return;
            }
        }
        let key = (r.id.clone(), e.kind, e.agent.clone());
        if let Some(g) = self.groups.get_mut(&key) {
            g.count += 1;
            if g.events.len() < MAX_LISTED {
                g.events.push(e.clone());
            }
            return;
        }
        let burst = std::time::Duration::from_millis(r.burst_ms.unwrap_or(self.core.settings.burst_ms));
        let cooldown = std::time::Duration::from_secs(r.cooldown_s.unwrap_or(self.core.settings.cooldown_s));
        let mut deadline = now + burst;
        if let Some(last) = self.last_sent.get(&key) {
            deadline = deadline.max(*last + cooldown);
        }
        self.groups.insert(key, Group { events: vec![e.clone()], count: 1, deadline });
    }

    fn flush_due(&mut self) {
        let now = Instant::now();
        let due: Vec<Key> = self.groups.iter().filter(|(_, g)| g.deadline <= now).map(|(k, _)| k.clone()).collect();
        let routes = self.core.routes.load();
        for key in due {
            let Some(g) = self.groups.remove(&key) else { continue };
            self.last_sent.insert(key.clone(), now);
            // A route deleted while its burst was open sends nothing.
            if let Some(r) = routes.iter().find(|r| r.spec.id == key.0) {
                deliver::send_group(&self.core, &r.spec, &g.events, g.count);
            }
        }
        if self.last_sent.len() > 10_000 {
            let keep = std::time::Duration::from_secs(self.core.settings.cooldown_s.max(86_400));
            self.last_sent.retain(|_, t| now.duration_since(*t) < keep);
        }
    }
}

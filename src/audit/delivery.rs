//! Getting events to their sinks without slowing anyone down.
//!
//! `emit` writes the event to the `tether::audit` log target at once (always on) and queues it
//! for the Redis Stream and the webhook. One background task drains the queue in batches:
//! appends each batch to the stream in one round trip, hands matching events to the webhook
//! sender (bounded in-flight deliveries), writes coalesced grant use, and ends the usage
//! intervals that are over. A full queue, a failed append or a busy webhook drops events:
//! they are counted in `tether_audit_events_dropped_total{sink}` and logged, and the log
//! line of every event is written regardless.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::clock::{Clock, UnixTime};
use crate::metrics::Metrics;
use crate::store::{AuditStore, GrantStore};
use crate::webhook::{Sender, Webhook};

use super::usage::{Released, Usage};
use super::{Actor, ActorKind, Event, EventType, Origin, Outcome};

/// How much the queue holds before events are dropped.
const QUEUE: usize = 8192;
/// Events appended to the stream per round trip.
const BATCH: usize = 256;
/// Webhook deliveries in flight at once.
const WEBHOOKS_IN_FLIGHT: usize = 64;

/// Where events go and for how long they are kept.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// Off: nothing is recorded anywhere (for measuring what auditing costs; keep it on).
    pub enabled: bool,
    /// Events older than this leave the stream.
    pub retention: Duration,
    /// The stream keeps at most about this many events, whatever their age.
    pub max_events: u64,
    /// Credential releases and grant use are coalesced per grant and resource over this.
    pub release_interval: Duration,
    /// The signed webhook and the types it receives (empty: all).
    pub webhook: Option<(Webhook, Vec<EventType>)>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            retention: Duration::from_secs(30 * 86_400),
            max_events: 1_000_000,
            release_interval: Duration::from_secs(3600),
            webhook: None,
        }
    }
}

/// What the background task is handed.
enum Job {
    Event {
        kind: EventType,
        json: String,
        /// The person whose recent activity it is part of (account page), if any.
        user: Option<String>,
    },
    /// A grant was used by a resource `count` times (the first use of an interval has `at`).
    Use { grant_id: String, by: String, at: Option<UnixTime>, count: u64 },
}

/// The audit trail's front: cheap to call on any request.
pub struct Auditor {
    enabled: bool,
    source: String,
    queue: mpsc::Sender<Job>,
    usage: Arc<Usage>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").field("source", &self.source).finish_non_exhaustive()
    }
}

/// What the background task needs.
pub struct Sinks {
    pub events: Arc<dyn AuditStore>,
    pub grants: Arc<dyn GrantStore>,
    pub webhooks: Sender,
    pub clock: Arc<dyn Clock>,
}

impl Auditor {
    /// Starts the delivery task on the current runtime (Tether's main one: it outlives the
    /// HTTP workers). `source` is the CloudEvents `source`: the issuer.
    pub fn start(source: &str, settings: AuditSettings, sinks: Sinks, metrics: Arc<Metrics>) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let interval = i64::try_from(settings.release_interval.as_secs()).unwrap_or(60);
        let usage = Arc::new(Usage::new(interval));
        let auditor = Self {
            enabled: settings.enabled,
            source: source.to_owned(),
            queue,
            usage: usage.clone(),
            metrics: metrics.clone(),
        };
        let webhooks = Arc::new(tokio::sync::Semaphore::new(WEBHOOKS_IN_FLIGHT));
        let worker = Worker { settings, sinks, metrics, usage, source: source.to_owned(), webhooks };
        crate::home::Home::here().spawn(worker.run(jobs));
        auditor
    }

    /// Records `event`: logged now, streamed and sent soon.
    pub fn emit(&self, event: Event) {
        if !self.enabled {
            return;
        }
        let id = uuid::Uuid::new_v4().to_string();
        let json = event.envelope(&id, &self.source).to_string();
        tracing::info!(target: "tether::audit", event_type = event.kind.name(), cloudevent = %json, "audit");
        self.enqueue(Job::Event { kind: event.kind, json, user: activity_of(&event) });
    }

    /// Records that `grant_id`'s upstream credential went to `resource` at `now`: an event
    /// for the first release of the interval (`describe` names it), a count for the others.
    pub fn credential_released(
        &self,
        grant_id: &str,
        resource: &str,
        origin: &dyn Fn() -> Origin,
        now: UnixTime,
        describe: impl FnOnce() -> Released,
    ) {
        if !self.enabled {
            return;
        }
        // `origin` is asked for only for the event: the hot path allocates nothing.
        let first =
            self.usage.count(grant_id, resource, now, || release_event(&describe(), now).count(1).origin(&origin()));
        let Some(event) = first else { return };
        self.emit(event);
        self.enqueue(Job::Use { grant_id: grant_id.to_owned(), by: resource.to_owned(), at: Some(now), count: 1 });
    }

    /// Records `event` for `grant_id` on `channel` (a refresh token's use, say): the first of
    /// the interval at once, the rest as one summary when it ends.
    pub fn coalesced(&self, grant_id: &str, channel: &str, now: UnixTime, describe: impl FnOnce() -> Event) {
        if !self.enabled {
            return;
        }
        if let Some(event) = self.usage.count(grant_id, channel, now, || describe().count(1)) {
            self.emit(event);
        }
    }

    fn enqueue(&self, job: Job) {
        if self.queue.try_send(job).is_err() {
            self.metrics.audit_dropped("queue");
            tracing::warn!("audit queue full: an event goes to the log only");
        }
    }
}

/// The person an event is recent activity of, for the types the account page shows.
fn activity_of(event: &Event) -> Option<String> {
    super::ACTIVITY.contains(&event.kind).then(|| event.data.user.clone()).flatten()
}

fn release_event(released: &Released, now: UnixTime) -> Event {
    let mut event = Event::new(
        EventType::CredentialReleased,
        Actor::new(ActorKind::Resource, &released.resource),
        Outcome::Success,
        now,
    )
    .grant(&released.grant_id)
    .client(&released.client_id)
    .user(&released.user)
    .resource(&released.resource)
    .provider(&released.provider);
    event.data.upstream_token_thumbprint = Some(released.thumbprint.clone());
    event
}

struct Worker {
    settings: AuditSettings,
    sinks: Sinks,
    metrics: Arc<Metrics>,
    usage: Arc<Usage>,
    source: String,
    /// Webhook deliveries in flight.
    webhooks: Arc<tokio::sync::Semaphore>,
}

impl Worker {
    async fn run(self, mut jobs: mpsc::Receiver<Job>) {
        let tick = (self.settings.release_interval / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
        let mut ticker = tokio::time::interval(tick);
        loop {
            let first = tokio::select! {
                job = jobs.recv() => job,
                _ = ticker.tick() => {
                    self.summarise(false).await;
                    continue;
                }
            };
            let Some(first) = first else {
                self.summarise(true).await;
                return;
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.deliver(batch).await;
        }
    }

    async fn deliver(&self, batch: Vec<Job>) {
        let mut events = Vec::new();
        for job in batch {
            match job {
                Job::Event { kind, json, user } => events.push((kind, json, user)),
                Job::Use { grant_id, by, at, count } => {
                    if let Err(e) = self.sinks.grants.note_use(&grant_id, at, &by, count).await {
                        tracing::warn!(error = %e, "cannot record a grant's use");
                    }
                }
            }
        }
        if events.is_empty() {
            return;
        }
        let texts: Vec<String> = events.iter().map(|(_, json, _)| json.clone()).collect();
        let kept = crate::store::Retention { age: self.settings.retention, count: self.settings.max_events };
        match self.sinks.events.append_events(&texts, kept).await {
            Ok(ids) => self.note_activity(&events, &ids, kept).await,
            Err(e) => {
                for _ in &texts {
                    self.metrics.audit_dropped("stream");
                }
                tracing::warn!(error = %e, events = texts.len(), "cannot append audit events to the stream");
            }
        }
        let Some((hook, types)) = &self.settings.webhook else { return };
        let now = self.sinks.clock.now();
        for (kind, json, _) in events {
            if !types.is_empty() && !types.contains(&kind) {
                continue;
            }
            match self.webhooks.clone().try_acquire_owned() {
                Ok(permit) => self.sinks.webhooks.send_holding(hook, kind.name(), json, now, permit),
                Err(_) => {
                    self.metrics.audit_dropped("webhook");
                    tracing::warn!(event_type = kind.name(), "audit webhook busy: event not sent");
                }
            }
        }
    }

    /// Remembers, per person, which of the stored events are their recent activity.
    async fn note_activity(
        &self,
        events: &[(EventType, String, Option<String>)],
        ids: &[String],
        kept: crate::store::Retention,
    ) {
        let mut per_user: Vec<(&str, Vec<String>)> = Vec::new();
        for ((_, _, user), id) in events.iter().zip(ids) {
            let Some(user) = user.as_deref() else { continue };
            match per_user.iter_mut().find(|(u, _)| *u == user) {
                Some((_, list)) => list.push(id.clone()),
                None => per_user.push((user, vec![id.clone()])),
            }
        }
        for (user, ids) in per_user {
            if let Err(e) = self.sinks.events.note_user_events(user, &ids, kept).await {
                tracing::warn!(error = %e, "cannot remember a person's recent activity");
            }
        }
    }

    /// Reports the usage intervals that ended (all of them at shutdown).
    async fn summarise(&self, everything: bool) {
        let now = self.sinks.clock.now();
        for summary in self.usage.ended(now, everything) {
            let mut event = summary.event;
            event.at_ms = summary.until.saturating_mul(1000);
            event.data.request = Origin::default();
            let event = event
                .count(summary.more)
                .detail("from", super::rfc3339(summary.from.saturating_mul(1000)))
                .detail("until", super::rfc3339(summary.until.saturating_mul(1000)));
            let id = uuid::Uuid::new_v4().to_string();
            let json = event.envelope(&id, &self.source).to_string();
            tracing::info!(target: "tether::audit", event_type = event.kind.name(), cloudevent = %json, "audit");
            let mut batch = vec![Job::Event { kind: event.kind, json, user: activity_of(&event) }];
            if event.kind == EventType::CredentialReleased
                && let (Some(grant_id), Some(by)) = (event.data.grant_id.clone(), event.data.resource.clone())
            {
                batch.push(Job::Use { grant_id, by, at: None, count: summary.more });
            }
            self.deliver(batch).await;
        }
    }
}

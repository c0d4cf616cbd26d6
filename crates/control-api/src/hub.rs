//! The event hub: every event the control API raises goes through here once.
//!
//! [`EventHub::publish`] gives the event the next sequence number of its application,
//! keeps it in that application's log for the retention window, wakes the stream clients
//! ([`EventHub::subscribe`]) and queues a signed webhook POST to the callback URI, if any.
//! It only takes a short lock: it never awaits the network, so a slow or dead webhook
//! receiver never holds up a call.
//!
//! Delivery keeps one queue per callback URI, served in order by its own task with one
//! request in flight, so the events of one call reach its receiver in the order they were
//! published; each POST is retried with jittered exponential backoff ([`RetryPolicy`]).
//! Only `http://` callbacks are delivered: the crate builds reqwest without a TLS stack, so
//! an `https://` callback is refused (logged as an error and counted as a failed delivery).
//! An event that could not be delivered is still in the log for the stream clients.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{Notify, watch};

use crate::events::{ApiEvent, CloudEvent, SPEC_VERSION, rfc3339};
use crate::webhook;

/// How many events one destination may have waiting; beyond it the oldest is dropped.
pub const DESTINATION_QUEUE_LIMIT: usize = 10_000;

/// How long a destination's delivery task waits for more work before it ends.
/// Callback URIs served at once (each with its queue and task).
pub const MAX_DESTINATIONS: usize = 1024;

const DESTINATION_IDLE: Duration = Duration::from_secs(60);

/// How many events a [`Subscription`] copies out of the log under one lock.
const READ_BATCH: u64 = 512;

/// The configuration of an [`EventHub`].
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// How long events are kept for stream clients to resume (default 15 minutes).
    pub retention: Duration,
    /// At most this many events are kept per application (default 100 000).
    pub max_events: usize,
    /// The Standard Webhooks secret (the bytes after `whsec_`, base64-decoded; see
    /// [`webhook::parse_secret`]). `None`: webhooks are sent unsigned.
    pub webhook_secret: Option<Vec<u8>>,
    /// How webhook POSTs are retried.
    pub retry: RetryPolicy,
    /// The CloudEvents `source` of every event, e.g. `/tandem/<host>`.
    pub source: String,
    /// Sequence numbers of this hub start after this (`after=0` means from it).
    /// `None` (the default): the hub's start in Unix milliseconds × 1024, so every run's
    /// numbers are above the last run's (unless it published over a million events a
    /// second): a client that resumes with a number of an earlier run (the daemon
    /// restarted, the events it missed are gone) gets 410 and resyncs, rather than
    /// silently skipping the start of the new run.
    pub sequence_base: Option<u64>,
}

impl Default for HubConfig {
    fn default() -> HubConfig {
        HubConfig {
            retention: Duration::from_secs(15 * 60),
            max_events: 100_000,
            webhook_secret: None,
            retry: RetryPolicy::default(),
            source: "/tandem".to_owned(),
            sequence_base: None,
        }
    }
}

/// How a webhook POST is retried: exponential backoff from `first`, capped at `max`, with
/// full jitter (each wait is uniform in `[0, min(max, first · 2ⁿ⁻¹)]` before retry `n`).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// The backoff cap before the first retry (default 1 s).
    pub first: Duration,
    /// The largest backoff cap (default 60 s).
    pub max: Duration,
    /// How many POSTs in all, the first included, before the delivery counts as failed
    /// (default 8).
    pub attempts: u32,
    /// How long one POST may take, connection included (default 5 s).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            attempts: 8,
            timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The backoff cap before retry `retry` (1 for the second POST): `min(max, first · 2^(retry−1))`.
    pub fn cap(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `retry` with full jitter, `random` a uniformly random number.
    pub fn backoff(&self, retry: u32, random: u64) -> Duration {
        let cap = u64::try_from(self.cap(retry).as_nanos()).unwrap_or(u64::MAX);
        let nanos = random.checked_rem(cap.saturating_add(1)).unwrap_or(random);
        Duration::from_nanos(nanos)
    }
}

/// A subscription asked for events the hub no longer keeps (or for a sequence number it
/// has not reached, e.g. one from before a restart): the client must resynchronise (read
/// the state it needs through the REST API) and subscribe again from `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "events after sequence {after} are not available: the oldest kept is {oldest} and the last published is {last}"
)]
pub struct Gap {
    /// The oldest sequence number still kept (`last + 1` when none is).
    pub oldest: u64,
    /// The last sequence number published for the application.
    pub last: u64,
    /// The sequence number the client asked to resume after.
    pub after: u64,
}

/// Counters of the hub, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubStats {
    /// Events published.
    pub published: u64,
    /// Webhook deliveries answered with a 2xx.
    pub delivered: u64,
    /// Webhook deliveries given up (attempts exhausted, or a callback URI that cannot be
    /// delivered to: not `http://`, unparsable).
    pub failed: u64,
    /// Webhook POSTs that were retries.
    pub retries: u64,
    /// Stream subscriptions open now.
    pub stream_clients: u64,
    /// Events dropped from the logs by retention (age or count).
    pub dropped_by_retention: u64,
    /// Webhook deliveries dropped because their destination's queue was full.
    pub webhook_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    stream_clients: AtomicU64,
    dropped_by_retention: AtomicU64,
    webhook_dropped: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A published event: the CloudEvent and its JSON text, serialized once for every
/// stream client and webhook.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) event: CloudEvent,
    pub(crate) json: String,
    pub(crate) sequence: u64,
}

#[derive(Debug)]
struct Kept {
    at: Instant,
    stored: Arc<Stored>,
}

/// One application's log: contiguous sequence numbers `last − events.len() + 1 ..= last`.
#[derive(Debug)]
struct AppLog {
    /// The number before this run's first event (`after=0` resumes from here).
    base: u64,
    last: u64,
    events: VecDeque<Kept>,
    /// The last sequence number, to wake the subscriptions.
    notify: watch::Sender<u64>,
}

impl AppLog {
    /// An empty log whose first event will be `base + 1`.
    fn new(base: u64) -> AppLog {
        AppLog {
            base,
            last: base,
            events: VecDeque::new(),
            notify: watch::Sender::new(base),
        }
    }

    fn oldest(&self) -> u64 {
        self.events
            .front()
            .map_or(self.last.saturating_add(1), |kept| kept.stored.sequence)
    }

    /// Drops what is older than the retention or beyond the count; returns how many.
    fn prune(&mut self, now: Instant, retention: Duration, max_events: usize) -> u64 {
        let mut dropped = 0;
        while let Some(front) = self.events.front() {
            let expired = now.saturating_duration_since(front.at) >= retention;
            if !expired && self.events.len() <= max_events {
                break;
            }
            self.events.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// The kept events with sequence numbers in `from ..= to`.
    fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &Arc<Stored>> {
        let oldest = self.oldest();
        let skip = usize::try_from(from.saturating_sub(oldest)).unwrap_or(usize::MAX);
        let take = usize::try_from(to.saturating_add(1).saturating_sub(from.max(oldest)))
            .unwrap_or(usize::MAX);
        self.events
            .iter()
            .skip(skip)
            .take(take)
            .map(|kept| &kept.stored)
    }
}

struct Inner {
    config: HubConfig,
    /// The number before the first event of every application's log.
    base: u64,
    /// The applications streams may be opened for (`None`: any).
    known: std::sync::RwLock<Option<std::collections::HashSet<String>>>,
    /// Distinguishes this hub's event ids from those of an earlier run.
    boot: u64,
    ids: AtomicU64,
    apps: Mutex<HashMap<String, AppLog>>,
    counters: Arc<Counters>,
    webhooks: Option<Arc<Webhooks>>,
    /// The cursor of every open subscription, by application, for [`EventHub::stream_lag`].
    cursors: Mutex<Vec<(String, Weak<AtomicU64>)>>,
}

/// The event hub: per-application logs with sequence numbers, stream subscriptions and
/// webhook delivery. Cheap to clone; all clones are the same hub.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Inner>,
}

impl fmt::Debug for EventHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventHub")
            .field("source", &self.inner.config.source)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SplitMix64 (Steele, Lea, Flood 2014): a seed mixer and a small PRNG, enough for jitter.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl EventHub {
    /// A hub with `config`. Call it inside a tokio runtime: it spawns the retention sweeper
    /// there, and webhook delivery tasks are spawned on that runtime (outside of one, every
    /// webhook is counted as failed and logged, and the logs are pruned only on use).
    pub fn new(config: HubConfig) -> EventHub {
        let mut seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            ^ (u64::from(std::process::id()) << 32);
        let boot = splitmix64(&mut seed);
        let counters = Arc::new(Counters::default());
        let runtime = Handle::try_current().ok();
        if runtime.is_none() {
            tracing::error!(
                "EventHub created outside a tokio runtime: webhooks will not be delivered"
            );
        }
        // Redirects are not followed: a 3xx is a failed attempt, as in Standard Webhooks
        // senders. Proxies follow reqwest's defaults (HTTP_PROXY / NO_PROXY, as curl does).
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tandem/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                tracing::error!(%error, "webhook HTTP client unavailable: webhooks will not be delivered");
            })
            .ok();
        let webhooks = runtime.clone().zip(client).map(|(runtime, client)| {
            Arc::new(Webhooks {
                runtime,
                client,
                destinations: Mutex::new(HashMap::new()),
                counters: Arc::clone(&counters),
                retry: config.retry.clone(),
                secret: config.webhook_secret.clone(),
                seed: AtomicU64::new(splitmix64(&mut seed)),
            })
        });
        let base = config.sequence_base.unwrap_or_else(|| {
            let millis = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            u64::try_from(millis).unwrap_or(0).saturating_mul(1024)
        });
        let inner = Arc::new(Inner {
            config,
            base,
            known: std::sync::RwLock::new(None),
            boot,
            ids: AtomicU64::new(0),
            apps: Mutex::new(HashMap::new()),
            counters,
            webhooks,
            cursors: Mutex::new(Vec::new()),
        });
        if let Some(runtime) = runtime {
            runtime.spawn(sweep(Arc::downgrade(&inner)));
        }
        EventHub { inner }
    }

    /// The hub's configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// Stores the event in `application`'s log with the next sequence number (1, 2, ...),
    /// wakes stream clients, and queues a webhook POST to `callback` if given. Never
    /// blocks, never awaits the network. Returns the sequence number.
    pub fn publish(&self, application: &str, callback: Option<&str>, event: ApiEvent) -> u64 {
        let inner = &*self.inner;
        let now = Instant::now();
        let id = format!(
            "{:016x}-{}",
            inner.boot,
            inner.ids.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
        );
        let stored = {
            let mut apps = lock(&inner.apps);
            let log = match apps.get_mut(application) {
                Some(log) => log,
                None => apps
                    .entry(application.to_owned())
                    .or_insert_with(|| AppLog::new(inner.base)),
            };
            log.last = log.last.saturating_add(1);
            let sequence = log.last;
            let cloud = CloudEvent {
                specversion: SPEC_VERSION.to_owned(),
                id,
                source: inner.config.source.clone(),
                event_type: event.event_type,
                subject: event.subject,
                time: rfc3339(SystemTime::now()),
                datacontenttype: "application/json".to_owned(),
                data: event.data,
                sequence: sequence.to_string(),
                application: application.to_owned(),
            };
            // A struct of strings and a JSON value always serializes.
            let json = serde_json::to_string(&cloud).unwrap_or_default();
            let stored = Arc::new(Stored {
                event: cloud,
                json,
                sequence,
            });
            log.events.push_back(Kept {
                at: now,
                stored: Arc::clone(&stored),
            });
            let dropped = log.prune(now, inner.config.retention, inner.config.max_events);
            Counters::add(&inner.counters.dropped_by_retention, dropped);
            log.notify.send_replace(sequence);
            // Queued under the log's lock: two publishers at once cannot put a later
            // sequence number in a destination's queue before an earlier one.
            if let Some(callback) = callback {
                match &inner.webhooks {
                    Some(webhooks) => webhooks.enqueue(callback, Arc::clone(&stored)),
                    None => {
                        Counters::add(&inner.counters.failed, 1);
                        tracing::error!(event_id = %stored.event.id, uri = callback,
                            "webhook not delivered: the event hub has no tokio runtime or HTTP client");
                    }
                }
            }
            stored
        };
        Counters::add(&inner.counters.published, 1);
        stored.sequence
    }

    /// Events of `application` after `after` still kept, then live ones.
    /// `Err(Gap)` when `after` is older than what is kept, or beyond the last published
    /// (the client must resync).
    pub fn subscribe(&self, application: &str, after: u64) -> Result<Subscription, Gap> {
        self.open(application, Some(after))
    }

    /// Live events of `application` only: those published after this call.
    pub fn subscribe_live(&self, application: &str) -> Subscription {
        // `None` never yields a gap; the fallback is unreachable but harmless.
        self.open(application, None).unwrap_or_else(|gap| {
            self.subscription(
                application,
                gap.last,
                watch::Sender::new(gap.last).subscribe(),
            )
        })
    }

    /// Streams may be opened only for these applications from now on (the configured
    /// ones): a request for another gets 404 instead of a log of its own, so request
    /// parameters cannot grow the hub's map.
    pub fn restrict_to(&self, applications: impl IntoIterator<Item = String>) {
        let set = applications.into_iter().collect();
        if let Ok(mut known) = self.inner.known.write() {
            *known = Some(set);
        }
    }

    /// Whether a stream may be opened for `application` (see [`EventHub::restrict_to`]).
    pub fn knows(&self, application: &str) -> bool {
        self.inner
            .known
            .read()
            .map(|known| known.as_ref().is_none_or(|set| set.contains(application)))
            .unwrap_or(false)
    }

    fn open(&self, application: &str, after: Option<u64>) -> Result<Subscription, Gap> {
        let inner = &*self.inner;
        let (after, rx) = {
            let mut apps = lock(&inner.apps);
            let log = apps
                .entry(application.to_owned())
                .or_insert_with(|| AppLog::new(inner.base));
            let dropped = log.prune(
                Instant::now(),
                inner.config.retention,
                inner.config.max_events,
            );
            Counters::add(&inner.counters.dropped_by_retention, dropped);
            // 0: from this run's first event.
            let after = match after {
                Some(0) => log.base,
                Some(after) => after,
                None => log.last,
            };
            let oldest = log.oldest();
            if after > log.last || after.saturating_add(1) < oldest {
                return Err(Gap {
                    oldest,
                    last: log.last,
                    after,
                });
            }
            (after, log.notify.subscribe())
        };
        Ok(self.subscription(application, after, rx))
    }

    fn subscription(
        &self,
        application: &str,
        after: u64,
        rx: watch::Receiver<u64>,
    ) -> Subscription {
        let counters = Arc::clone(&self.inner.counters);
        Counters::add(&counters.stream_clients, 1);
        let shared_cursor = Arc::new(AtomicU64::new(after));
        lock(&self.inner.cursors).push((application.to_owned(), Arc::downgrade(&shared_cursor)));
        Subscription {
            shared_cursor,
            hub: Arc::downgrade(&self.inner),
            counters,
            application: application.to_owned(),
            cursor: after,
            buffer: VecDeque::new(),
            rx,
            ended: false,
        }
    }

    /// The last sequence number published for `application` (0 before its first event).
    pub fn last_sequence(&self, application: &str) -> u64 {
        lock(&self.inner.apps)
            .get(application)
            .map_or(0, |log| log.last)
    }

    /// The event stream's lag: how many events the slowest open subscription has yet to
    /// read (published for its application after the last one it read); 0 without
    /// subscriptions.
    pub fn stream_lag(&self) -> u64 {
        let mut cursors = lock(&self.inner.cursors);
        cursors.retain(|(_, cursor)| cursor.strong_count() > 0);
        let apps = lock(&self.inner.apps);
        cursors
            .iter()
            .filter_map(|(app, cursor)| {
                let read = cursor.upgrade()?.load(Ordering::Relaxed);
                let last = apps.get(app).map_or(0, |log| log.last);
                Some(last.saturating_sub(read))
            })
            .max()
            .unwrap_or(0)
    }

    /// The hub's counters.
    pub fn stats(&self) -> HubStats {
        let c = &*self.inner.counters;
        HubStats {
            published: c.published.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            stream_clients: c.stream_clients.load(Ordering::Relaxed),
            dropped_by_retention: c.dropped_by_retention.load(Ordering::Relaxed),
            webhook_dropped: c.webhook_dropped.load(Ordering::Relaxed),
        }
    }
}

/// Prunes every log now and then, so an application that stopped publishing does not keep
/// its events past the retention. Ends with the hub.
async fn sweep(hub: Weak<Inner>) {
    let period = {
        let Some(inner) = hub.upgrade() else { return };
        (inner.config.retention / 4).clamp(Duration::from_millis(100), Duration::from_secs(30))
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        let now = Instant::now();
        let mut dropped = 0;
        for log in lock(&inner.apps).values_mut() {
            dropped += log.prune(now, inner.config.retention, inner.config.max_events);
        }
        Counters::add(&inner.counters.dropped_by_retention, dropped);
    }
}

/// A stream client's view of one application's events: those after its starting point
/// still kept, then live ones, in order, each once, without gaps. It reads from the log
/// itself, so a client that lags behind never misses an event as long as the event is
/// kept; if retention drops an event the client has not read yet, the subscription ends
/// (`next` returns `None`) and resubscribing from the last event read gives a [`Gap`].
pub struct Subscription {
    hub: Weak<Inner>,
    counters: Arc<Counters>,
    application: String,
    /// The last sequence number handed out.
    cursor: u64,
    /// `cursor`, shared with the hub for [`EventHub::stream_lag`].
    shared_cursor: Arc<AtomicU64>,
    buffer: VecDeque<Arc<Stored>>,
    rx: watch::Receiver<u64>,
    ended: bool,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("application", &self.application)
            .field("cursor", &self.cursor)
            .field("buffered", &self.buffer.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.counters.stream_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Subscription {
    /// The next event, waiting for one to be published; `None` when the hub is gone or
    /// the client fell behind the retention.
    pub async fn next(&mut self) -> Option<CloudEvent> {
        self.next_stored().await.map(|stored| stored.event.clone())
    }

    /// The application this subscription reads.
    pub fn application(&self) -> &str {
        &self.application
    }

    /// The sequence number of the last event handed out (the starting point before any).
    pub fn last_sequence(&self) -> u64 {
        self.cursor
    }

    pub(crate) async fn next_stored(&mut self) -> Option<Arc<Stored>> {
        loop {
            if let Some(stored) = self.buffer.pop_front() {
                self.cursor = stored.sequence;
                self.shared_cursor.store(stored.sequence, Ordering::Relaxed);
                return Some(stored);
            }
            if self.ended {
                return None;
            }
            self.refill();
            if self.ended || !self.buffer.is_empty() {
                continue;
            }
            if self.rx.changed().await.is_err() {
                // The hub is gone; whatever reached the log before was read by refill.
                self.refill();
                self.ended = true;
            }
        }
    }

    /// Copies the next batch after the cursor out of the log.
    fn refill(&mut self) {
        let Some(inner) = self.hub.upgrade() else {
            self.ended = true;
            return;
        };
        // Marks the current value seen before reading, so a publish after the read wakes us.
        self.rx.borrow_and_update();
        let apps = lock(&inner.apps);
        let Some(log) = apps.get(&self.application) else {
            self.ended = true;
            return;
        };
        let from = self.cursor.saturating_add(1);
        if from > log.last {
            return;
        }
        if from < log.oldest() {
            tracing::warn!(application = %self.application, after = self.cursor,
                oldest = log.oldest(), "stream client fell behind the event retention; closing it");
            self.ended = true;
            return;
        }
        let to = log.last.min(self.cursor.saturating_add(READ_BATCH));
        self.buffer.extend(log.range(from, to).cloned());
    }
}

/// Webhook delivery: one queue and one task per callback URI.
struct Webhooks {
    runtime: Handle,
    client: reqwest::Client,
    destinations: Mutex<HashMap<String, Arc<Destination>>>,
    counters: Arc<Counters>,
    retry: RetryPolicy,
    secret: Option<Vec<u8>>,
    seed: AtomicU64,
}

struct Destination {
    uri: String,
    url: reqwest::Url,
    queue: Mutex<VecDeque<Arc<Stored>>>,
    wake: Notify,
}

impl Webhooks {
    /// Queues `stored` for `uri`: a destination of its own (a task delivering in order)
    /// the first time, at most [`MAX_DESTINATIONS`] at once (an idle one ends after a
    /// while), so request bodies naming ever new callback URIs cannot make tasks and
    /// connections without bound.
    fn enqueue(self: &Arc<Self>, uri: &str, stored: Arc<Stored>) {
        let mut destinations = lock(&self.destinations);
        let destination = match destinations.get(uri) {
            Some(destination) => Arc::clone(destination),
            None => {
                let url = match reqwest::Url::parse(uri) {
                    Ok(url) if url.scheme() == "http" && url.has_host() => url,
                    Ok(url) => {
                        drop(destinations);
                        Counters::add(&self.counters.failed, 1);
                        tracing::error!(event_id = %stored.event.id, uri, scheme = url.scheme(),
                            "webhook not delivered: only http:// callback URIs are supported (no TLS stack is built in)");
                        return;
                    }
                    Err(error) => {
                        drop(destinations);
                        Counters::add(&self.counters.failed, 1);
                        tracing::error!(event_id = %stored.event.id, uri, %error,
                            "webhook not delivered: the callback URI does not parse");
                        return;
                    }
                };
                if destinations.len() >= MAX_DESTINATIONS {
                    drop(destinations);
                    Counters::add(&self.counters.failed, 1);
                    tracing::error!(event_id = %stored.event.id, uri,
                        "webhook not delivered: {MAX_DESTINATIONS} callback URIs are already being served");
                    return;
                }
                let destination = Arc::new(Destination {
                    uri: uri.to_owned(),
                    url,
                    queue: Mutex::new(VecDeque::new()),
                    wake: Notify::new(),
                });
                destinations.insert(uri.to_owned(), Arc::clone(&destination));
                let rng = splitmix64(
                    &mut self
                        .seed
                        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed),
                );
                self.runtime
                    .spawn(serve(Arc::clone(self), Arc::clone(&destination), rng));
                destination
            }
        };
        {
            let mut queue = lock(&destination.queue);
            if queue.len() >= DESTINATION_QUEUE_LIMIT
                && let Some(oldest) = queue.pop_front()
            {
                Counters::add(&self.counters.webhook_dropped, 1);
                tracing::warn!(event_id = %oldest.event.id, uri,
                    "webhook queue full: dropping its oldest event (it stays in the event log)");
            }
            queue.push_back(stored);
        }
        drop(destinations);
        destination.wake.notify_one();
    }

    /// Ends a destination's task if nothing came while it was idle.
    fn retire(&self, destination: &Arc<Destination>) -> bool {
        let mut destinations = lock(&self.destinations);
        if !lock(&destination.queue).is_empty() {
            return false;
        }
        if destinations
            .get(&destination.uri)
            .is_some_and(|d| Arc::ptr_eq(d, destination))
        {
            destinations.remove(&destination.uri);
        }
        true
    }
}

/// The task serving one destination: one POST in flight, events in order.
async fn serve(webhooks: Arc<Webhooks>, destination: Arc<Destination>, mut rng: u64) {
    loop {
        let next = lock(&destination.queue).pop_front();
        match next {
            Some(stored) => deliver(&webhooks, &destination, &stored, &mut rng).await,
            None => {
                let woken =
                    tokio::time::timeout(DESTINATION_IDLE, destination.wake.notified()).await;
                if woken.is_err() && webhooks.retire(&destination) {
                    return;
                }
            }
        }
    }
}

async fn deliver(webhooks: &Webhooks, destination: &Destination, stored: &Stored, rng: &mut u64) {
    let retry = &webhooks.retry;
    let id = &stored.event.id;
    let body = bytes::Bytes::from(stored.json.clone());
    let mut last_error = String::new();
    for attempt in 1..=retry.attempts.max(1) {
        if attempt > 1 {
            Counters::add(&webhooks.counters.retries, 1);
            tokio::time::sleep(retry.backoff(attempt - 1, splitmix64(rng))).await;
        }
        let timestamp = unix_now();
        let mut request = webhooks
            .client
            .post(destination.url.clone())
            .timeout(retry.timeout)
            .header(
                reqwest::header::CONTENT_TYPE,
                crate::events::CLOUDEVENTS_JSON,
            )
            .header(webhook::WEBHOOK_ID, id.as_str())
            .header(webhook::WEBHOOK_TIMESTAMP, timestamp.to_string());
        if let Some(secret) = &webhooks.secret {
            let signature = webhook::sign(secret, id, timestamp, stored.json.as_bytes());
            request = request.header(webhook::WEBHOOK_SIGNATURE, signature);
        }
        match request.body(body.clone()).send().await {
            Ok(response) if response.status().is_success() => {
                Counters::add(&webhooks.counters.delivered, 1);
                tracing::debug!(event_id = %id, uri = %destination.uri, attempt, "webhook delivered");
                return;
            }
            Ok(response) => {
                last_error = format!("answered {}", response.status());
            }
            Err(error) => {
                last_error = error.to_string();
            }
        }
        tracing::debug!(event_id = %id, uri = %destination.uri, attempt, error = %last_error,
            "webhook attempt failed");
    }
    Counters::add(&webhooks.counters.failed, 1);
    tracing::warn!(event_id = %id, uri = %destination.uri, attempts = retry.attempts,
        error = %last_error, "webhook delivery failed; the event stays in the event log");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_caps_and_jitter() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.cap(1), Duration::from_secs(1));
        assert_eq!(policy.cap(2), Duration::from_secs(2));
        assert_eq!(policy.cap(6), Duration::from_secs(32));
        assert_eq!(policy.cap(7), Duration::from_secs(60));
        assert_eq!(policy.cap(40), Duration::from_secs(60));
        let mut rng = 7;
        for retry in 1..10 {
            for _ in 0..100 {
                assert!(policy.backoff(retry, splitmix64(&mut rng)) <= policy.cap(retry));
            }
        }
        // Full jitter spreads over the whole window.
        let mut rng = 1;
        let waits: Vec<_> = (0..1000)
            .map(|_| policy.backoff(3, splitmix64(&mut rng)))
            .collect();
        assert!(waits.iter().any(|w| *w < Duration::from_secs(1)));
        assert!(waits.iter().any(|w| *w > Duration::from_secs(3)));
    }

    #[test]
    fn log_range_and_prune() {
        let mut log = AppLog::new(0);
        let now = Instant::now();
        for sequence in 1..=10 {
            log.last = sequence;
            log.events.push_back(Kept {
                at: now,
                stored: Arc::new(Stored {
                    event: CloudEvent {
                        specversion: "1.0".into(),
                        id: sequence.to_string(),
                        source: "/t".into(),
                        event_type: "T".into(),
                        subject: None,
                        time: String::new(),
                        datacontenttype: "application/json".into(),
                        data: serde_json::Value::Null,
                        sequence: sequence.to_string(),
                        application: "a".into(),
                    },
                    json: String::new(),
                    sequence,
                }),
            });
        }
        assert_eq!(log.prune(now, Duration::from_secs(60), 7), 3);
        assert_eq!(log.oldest(), 4);
        let seqs: Vec<u64> = log.range(5, 8).map(|s| s.sequence).collect();
        assert_eq!(seqs, vec![5, 6, 7, 8]);
        let seqs: Vec<u64> = log.range(2, 5).map(|s| s.sequence).collect();
        assert_eq!(seqs, vec![4, 5]);
        assert_eq!(
            log.prune(now + Duration::from_secs(60), Duration::from_secs(60), 7),
            7
        );
        assert_eq!(log.oldest(), 11);
    }
}

//! Observability of the driver: a tap on every SIP message the core receives (in
//! [`feed`](crate)) and sends (in `flush`), which
//!
//! - counts requests, responses, retransmissions, call attempts and call outcomes and
//!   measures per-stage latencies as `metrics` (Prometheus names `tandem_*`, listed in
//!   crates/daemon/METRICS.md; without a recorder installed they cost a branch each);
//! - enters a tracing span with the message's `call_id` around the core's handling of
//!   it, so every log line of that work carries the Call-ID;
//! - exports every message as HEPv3 ([`hep`]) to a collector, from a task of its own
//!   through a bounded queue: the driver never waits for it, a full queue drops and
//!   counts;
//! - keeps the messages of the last calls for the call ladder page ([`ladder`]).
//!
//! Gauges the core already keeps (transactions, dialogs, calls, trunk states) are read
//! from its stats when scraped: [`export_engine`].

pub mod hep;
pub mod ladder;
pub mod scan;

use bytes::Bytes;
use ladder::{CapturedMessage, Direction, Ladder};
use scan::Kind;
use sip_message::Transport;
use sip_transaction::{Flow, Transmit};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Where HEP packets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepConfig {
    /// The collector's UDP address.
    pub collector: SocketAddr,
    /// The capture agent id (chunk 0x000c).
    pub capture_id: u32,
    /// The collector's password (chunk 0x000e).
    pub auth_key: Option<String>,
    /// Packets queued for the sender task before new ones are dropped.
    pub queue: usize,
}

/// What the tap does beside the metrics and the log spans.
#[derive(Debug, Clone, Default)]
pub struct ObserveConfig {
    pub hep: Option<HepConfig>,
    /// The ring of recent calls the ladder page reads.
    pub ladder: Option<Ladder>,
}

/// A call attempt waiting for its final response (the first INVITE of a Call-ID).
#[derive(Debug, Clone, Copy)]
struct Pending {
    cseq: u32,
    /// When the INVITE was received or sent.
    started: Instant,
    responded: bool,
    provisional: bool,
    /// Answered 401/407: the next INVITE with a higher CSeq continues the attempt.
    challenged: Option<Instant>,
    /// When its last INVITE went (the one with credentials after a challenge).
    invited: Instant,
}

/// How long an ended attempt is remembered to tell a retransmitted INVITE (64·T1 with
/// the default T1, and some).
const RETRANSMIT_WINDOW: Duration = Duration::from_secs(40);
/// Attempts with no response at all are given up after Timer B (64·T1) and some.
const NO_RESPONSE: Duration = Duration::from_secs(40);
/// Attempts that are ringing and never end are dropped from the table after this.
const STALE: Duration = Duration::from_secs(3600);
/// The most attempts followed at once; beyond it new attempts are counted but their
/// outcome is not.
const MAX_PENDING: usize = 100_000;
/// Calls whose Call-ID is longer are not followed (a real one is well under 100 bytes;
/// a peer sending 60 KB Call-IDs must not make the attempt table gigabytes).
const MAX_CALL_ID: usize = 256;

/// The driver's tap. Made by [`Observe::new`]; [`Observe::default`] counts metrics and
/// opens spans only.
#[derive(Debug, Default)]
pub struct Observe {
    ladder: Option<Ladder>,
    hep: Option<(HepConfig, mpsc::Sender<Vec<u8>>)>,
    local_addrs: Vec<(Transport, SocketAddr)>,
    /// Attempts by (direction, Call-ID).
    pending: HashMap<(bool, String), Pending>,
    /// Attempts that ended, for [`RETRANSMIT_WINDOW`]: a retransmitted INVITE (its
    /// final response was lost) is no new attempt.
    ended: HashMap<(bool, String), Instant>,
    last_sweep: Option<Instant>,
    probe: TransportProbe,
    meters: Meters,
}

/// The per-message metrics, registered once with the recorder installed when the tap
/// is made: a labelled `counter!` builds its key and looks it up in the recorder's
/// registry on every call (10-15 % of a bridged call's CPU with the Prometheus
/// exporter on). Without a recorder the handles do nothing.
struct Meters {
    /// By direction (0 in, 1 out) and [`scan::METHODS`] index (the last: `other`).
    requests: [[metrics::Counter; scan::METHODS.len() + 1]; 2],
    /// By direction and status class (1xx..6xx).
    responses: [[metrics::Counter; 6]; 2],
    /// Call attempts by direction (0 in, 1 out).
    attempts: [metrics::Counter; 2],
    pending: metrics::Gauge,
    first_response: metrics::Histogram,
    final_response: metrics::Histogram,
    leg_b_invite: metrics::Histogram,
    batch: metrics::Histogram,
}

impl Default for Meters {
    fn default() -> Meters {
        let direction = |inbound: bool| if inbound { "in" } else { "out" };
        let requests = |inbound: bool| {
            let name = if inbound {
                "tandem_requests_in_total"
            } else {
                "tandem_requests_out_total"
            };
            std::array::from_fn(|i| {
                let method = scan::METHODS.get(i).copied().unwrap_or("other");
                metrics::counter!(name, "method" => method)
            })
        };
        let responses = |inbound: bool| {
            let name = if inbound {
                "tandem_responses_in_total"
            } else {
                "tandem_responses_out_total"
            };
            std::array::from_fn(|i| {
                let class = scan::class_label((i as u16 + 1) * 100);
                metrics::counter!(name, "class" => class)
            })
        };
        Meters {
            requests: [requests(true), requests(false)],
            responses: [responses(true), responses(false)],
            attempts: [true, false]
                .map(|inbound| metrics::counter!("tandem_call_attempts_total", "direction" => direction(inbound))),
            pending: metrics::gauge!("tandem_call_attempts_pending"),
            first_response: metrics::histogram!("tandem_invite_first_response_seconds"),
            final_response: metrics::histogram!("tandem_invite_final_response_seconds"),
            leg_b_invite: metrics::histogram!("tandem_b2bua_leg_b_invite_seconds"),
            batch: metrics::histogram!("tandem_driver_batch_seconds"),
        }
    }
}

impl std::fmt::Debug for Meters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meters")
    }
}

impl Meters {
    fn message(&self, direction: usize, kind: Kind<'_>) {
        let counter = match kind {
            Kind::Request { method } => self
                .requests
                .get(direction)
                .and_then(|by| by.get(scan::method_index(method))),
            Kind::Response { status, .. } => self
                .responses
                .get(direction)
                .and_then(|by| by.get(usize::from(status / 100).saturating_sub(1))),
        };
        if let Some(counter) = counter {
            counter.increment(1);
        }
    }
}

/// The transport counters, read when the metrics are scraped (sip-transport keeps them
/// in atomics): a handle that is empty until the driver has bound its sockets.
#[derive(Clone, Default)]
pub struct TransportProbe(std::sync::Arc<std::sync::OnceLock<sip_transport::Transports>>);

impl std::fmt::Debug for TransportProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportProbe")
            .field("bound", &self.0.get().is_some())
            .finish()
    }
}

impl TransportProbe {
    /// Sets the `tandem_transport_*` metrics from the transport's counters now.
    pub fn export(&self) {
        if let Some(transports) = self.0.get() {
            export_transport(&transports.stats());
        }
    }
}

/// The outcome label of a final response to an INVITE (RFC 3261 §21).
pub fn outcome(status: u16) -> &'static str {
    match status {
        200..=299 => "answered",
        300..=399 => "redirected",
        401 | 407 => "unauthorized",
        408 | 480 => "no_answer",
        486 | 600 => "busy",
        487 => "cancelled",
        603 => "declined",
        _ => "failed",
    }
}

impl Observe {
    /// A tap with HEP export (its sender task is spawned now: call inside a tokio
    /// runtime) and the ladder ring, as configured.
    pub fn new(config: ObserveConfig) -> Observe {
        let hep = config.hep.map(|hep| {
            let (tx, rx) = mpsc::channel(hep.queue.max(1));
            tokio::spawn(send_hep(hep.collector, rx));
            (hep, tx)
        });
        Observe {
            ladder: config.ladder,
            hep,
            ..Observe::default()
        }
    }

    /// The driver bound its sockets: where a message sent without a known source went
    /// from, and the transport counters to read.
    pub(crate) fn bound(&mut self, transports: &sip_transport::Transports) {
        self.local_addrs = transports.local_addrs();
        let _ = self.probe.0.set(transports.clone());
    }

    /// Reads the transport's counters for a scrape, once the driver has bound them.
    pub fn transport_probe(&self) -> TransportProbe {
        self.probe.clone()
    }

    fn local(&self, flow: &Flow) -> SocketAddr {
        if self.local_addrs.iter().any(|(_, a)| *a == flow.local) || flow.local.port() != 0 {
            return flow.local;
        }
        self.local_addrs
            .iter()
            .find(|(t, a)| *t == flow.transport && a.is_ipv4() == flow.remote.is_ipv4())
            .map_or(flow.local, |(_, a)| *a)
    }

    /// A message arrived: counts it, captures it and returns the span its handling runs
    /// in (none when the log level filters spans out or it has no Call-ID).
    pub fn received(&mut self, flow: &Flow, data: &Bytes) -> Option<tracing::span::EnteredSpan> {
        let now = Instant::now();
        let summary = scan::scan(data);
        if let Some(s) = &summary {
            self.meters.message(0, s.kind);
        }
        let call_id = summary.and_then(|s| s.call_id);
        if let Some(s) = &summary {
            self.follow(Direction::In, s, now);
        }
        self.capture(
            Direction::In,
            flow.transport,
            flow.remote,
            flow.local,
            data,
            summary.as_ref(),
        );
        let call_id = call_id?;
        let span = tracing::info_span!("sip", call_id = %call_id);
        Some(span.entered())
    }

    /// A message was sent.
    pub fn sent(&mut self, transmit: &Transmit) {
        let now = Instant::now();
        let summary = scan::scan(&transmit.payload);
        if let Some(s) = &summary {
            self.meters.message(1, s.kind);
        }
        if let Some(s) = &summary {
            self.follow(Direction::Out, s, now);
        }
        let local = self.local(&transmit.flow);
        self.capture(
            Direction::Out,
            transmit.flow.transport,
            local,
            transmit.flow.remote,
            &transmit.payload,
            summary.as_ref(),
        );
    }

    /// Follows call attempts: a request outside a dialog starts one in its direction;
    /// responses going the other way end it.
    fn follow(&mut self, direction: Direction, s: &scan::Summary<'_>, now: Instant) {
        let Some(call_id) = s.call_id.filter(|id| id.len() <= MAX_CALL_ID) else {
            return;
        };
        let Some((cseq, cseq_method)) = s.cseq else {
            return;
        };
        match s.kind {
            Kind::Request { method } if method == "INVITE" && !s.to_tag => {
                let outbound = direction == Direction::Out;
                let key = (outbound, call_id.to_owned());
                if self.ended.contains_key(&key) {
                    // The INVITE again after its final response: a retransmission.
                    return;
                }
                match self.pending.get_mut(&key) {
                    Some(p) if p.challenged.is_some() && cseq > p.cseq => {
                        // The INVITE again, with credentials.
                        p.cseq = cseq;
                        p.challenged = None;
                        p.invited = now;
                    }
                    Some(_) => {}
                    None => {
                        if let Some(counter) = self.meters.attempts.get(usize::from(outbound)) {
                            counter.increment(1);
                        }
                        if self.pending.len() < MAX_PENDING {
                            self.pending.insert(
                                key,
                                Pending {
                                    cseq,
                                    started: now,
                                    invited: now,
                                    responded: false,
                                    provisional: false,
                                    challenged: None,
                                },
                            );
                            self.meters.pending.increment(1.0);
                        }
                    }
                }
            }
            Kind::Response { status, .. } if cseq_method == "INVITE" => {
                // A response we send answers an attempt we received, and vice versa.
                let key = (direction == Direction::In, call_id.to_owned());
                let Some(p) = self.pending.get_mut(&key) else {
                    return;
                };
                if p.cseq != cseq || p.challenged.is_some() {
                    return;
                }
                let inbound_attempt = direction == Direction::Out;
                if inbound_attempt && !p.responded {
                    self.meters
                        .first_response
                        .record(now.duration_since(p.started).as_secs_f64());
                }
                p.responded = true;
                if status < 200 {
                    p.provisional = true;
                    return;
                }
                if inbound_attempt {
                    self.meters
                        .final_response
                        .record(now.duration_since(p.started).as_secs_f64());
                }
                if status == 401 || status == 407 {
                    p.challenged = Some(now);
                    return;
                }
                self.end(key, outcome(status), now);
            }
            _ => {}
        }
    }

    fn end(&mut self, key: (bool, String), outcome: &'static str, now: Instant) {
        if self.pending.remove(&key).is_none() {
            return;
        }
        if self.ended.len() < MAX_PENDING {
            self.ended.insert(key.clone(), now);
        }
        self.meters.pending.decrement(1.0);
        let direction = if key.0 { "out" } else { "in" };
        metrics::counter!("tandem_calls_total", "direction" => direction, "outcome" => outcome)
            .increment(1);
        if let Some(ladder) = &self.ladder {
            ladder.set_outcome(&key.1, outcome);
        }
    }

    fn capture(
        &self,
        direction: Direction,
        transport: Transport,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &Bytes,
        summary: Option<&scan::Summary<'_>>,
    ) {
        let at = SystemTime::now();
        let call_id = summary.and_then(|s| s.call_id);
        if let Some((hep, tx)) = &self.hep {
            let packet = hep::encode(&hep::Capture {
                src,
                dst,
                ip_protocol: hep::ip_protocol(transport),
                time: at,
                capture_id: hep.capture_id,
                auth_key: hep.auth_key.as_deref(),
                correlation_id: call_id,
                payload,
            });
            match packet.map(|p| tx.try_send(p)) {
                Some(Ok(())) => metrics::counter!("tandem_hep_queued_total").increment(1),
                _ => metrics::counter!("tandem_hep_dropped_total").increment(1),
            }
        }
        let (Some(ladder), Some(s), Some(call_id)) = (&self.ladder, summary, call_id) else {
            return;
        };
        let label = match s.kind {
            Kind::Request { method } => method.to_owned(),
            Kind::Response { status, reason } => format!("{status} {reason}"),
        };
        let start = match s.kind {
            Kind::Request { method } if method == "INVITE" && !s.to_tag => {
                Some((s.from.unwrap_or_default(), s.to.unwrap_or_default()))
            }
            _ => None,
        };
        ladder.record(
            call_id,
            start,
            CapturedMessage {
                at,
                direction,
                transport,
                src,
                dst,
                label,
                payload: payload.clone(),
            },
        );
    }

    /// The engine bridged leg A (SIP Call-ID `a`, received) to leg B (`b`, whose INVITE
    /// just went out): the legs are linked on the ladder, and the time from A's INVITE
    /// to B's is the B2BUA's own latency.
    pub fn bridged(&mut self, a: &str, b: &str) {
        let received = self.pending.get(&(false, a.to_owned())).map(|p| p.invited);
        let sent = self.pending.get(&(true, b.to_owned())).map(|p| p.invited);
        if let (Some(received), Some(sent)) = (received, sent) {
            self.meters
                .leg_b_invite
                .record(sent.saturating_duration_since(received).as_secs_f64());
        }
        if let Some(ladder) = &self.ladder {
            ladder.link(a, b);
        }
    }

    /// The end of a turn of the driver (input handled, output flushed): `batch` is when
    /// the turn's input started to be handled. Sweeps the tables once a second.
    pub fn end_turn(&mut self, batch: Option<Instant>) {
        let now = Instant::now();
        if let Some(started) = batch {
            self.meters
                .batch
                .record(now.duration_since(started).as_secs_f64());
        }
        if self
            .last_sweep
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.ended
            .retain(|_, at| now.duration_since(*at) < RETRANSMIT_WINDOW);
        let over: Vec<((bool, String), &'static str)> = self
            .pending
            .iter()
            .filter_map(|(key, p)| {
                let age = now.duration_since(p.started);
                let gave_up = match p.challenged {
                    Some(at) => (now.duration_since(at) > NO_RESPONSE).then_some("unauthorized"),
                    None if !p.responded && age > NO_RESPONSE => Some("timeout"),
                    None => (age > STALE).then_some("timeout"),
                };
                gave_up.map(|outcome| (key.clone(), outcome))
            })
            .collect();
        for (key, outcome) in over {
            self.end(key, outcome, now);
        }
    }
}

/// The span of the driver's work on an event of a call (its media, its application's
/// handlers): the call's SIP Call-ID as `call_id`. `None` when spans are filtered out (the
/// Call-ID is then not even looked up) or the event is not a call's.
pub fn event_span(
    engine: &calls::Engine,
    event: &calls::Event,
) -> Option<tracing::span::EnteredSpan> {
    let call = match event {
        calls::Event::Call { call, .. } | calls::Event::Media { call, .. } => *call,
        _ => return None,
    };
    let span = tracing::info_span!("sip", call_id = tracing::field::Empty);
    if span.is_disabled() {
        return None;
    }
    let call_id = engine.sip_call_id(call)?;
    span.record("call_id", call_id.as_str());
    Some(span.entered())
}

/// The HEP sender: one UDP socket, packets in order, errors counted.
async fn send_hep(collector: SocketAddr, mut rx: mpsc::Receiver<Vec<u8>>) {
    let any: SocketAddr = if collector.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let socket = match tokio::net::UdpSocket::bind(any).await {
        Ok(socket) => socket,
        Err(error) => {
            tracing::warn!(%error, "HEP: no socket; capture is not exported");
            while rx.recv().await.is_some() {
                metrics::counter!("tandem_hep_dropped_total").increment(1);
            }
            return;
        }
    };
    while let Some(packet) = rx.recv().await {
        match socket.send_to(&packet, collector).await {
            Ok(_) => metrics::counter!("tandem_hep_sent_total").increment(1),
            Err(_) => metrics::counter!("tandem_hep_dropped_total").increment(1),
        }
    }
}

/// Counters the core keeps in [`sip_core::Stats`], exported as Prometheus counters:
/// one line per counter (name, help, field).
/// A counter of [`sip_core::Stats`]: its Prometheus name, its help, how to read it.
pub type CoreCounter = (&'static str, &'static str, fn(&sip_core::Stats) -> u64);

pub const CORE_COUNTERS: &[CoreCounter] = &[
    (
        "tandem_messages_dropped_total",
        "Messages dropped by the core: unparseable, invalid responses, stray responses.",
        |s| s.dropped,
    ),
    (
        "tandem_requests_rejected_invalid_total",
        "Requests refused with 400/505 because they failed validation.",
        |s| s.rejected_invalid,
    ),
    (
        "tandem_retransmissions_sent_total",
        "Messages re-sent: requests on the transaction timers, the last response for a retransmitted request, 2xx until their ACK, ACKs for retransmitted 2xx.",
        |s| s.retransmissions,
    ),
    (
        "tandem_invites_new_total",
        "INVITEs that reached the user agent (retransmissions excluded).",
        |s| s.invites_new,
    ),
    (
        "tandem_guard_rate_limited_total",
        "Requests dropped unanswered because their source was over its rate or banned.",
        |s| s.rate_limited,
    ),
    (
        "tandem_guard_bans_total",
        "Sources banned for going over the per-source rate limit.",
        |s| s.banned_sources,
    ),
    (
        "tandem_guard_scanners_dropped_total",
        "Requests from scanner User-Agents dropped unanswered.",
        |s| s.scanner_dropped,
    ),
    (
        "tandem_guard_over_capacity_total",
        "Initial INVITEs refused 503 beyond max_calls or max_calls_per_second.",
        |s| s.over_capacity,
    ),
    (
        "tandem_auth_failed_total",
        "Requests whose credentials were wrong (answered 403).",
        |s| s.auth_failed,
    ),
];

/// The state of a trunk for [`export_engine`]: its name, registration and OPTIONS
/// keepalive state.
pub type TrunkState = (String, sip_core::RegistrationState, Option<bool>);

/// Reads the engine's gauges and counters; run on the driver (through
/// `Tandem::with_engine`) when the metrics are scraped, then [`export_engine`] them.
pub fn engine_snapshot(engine: &calls::Engine) -> (calls::Stats, Vec<TrunkState>) {
    let core = engine.core_ref();
    let trunks = core
        .trunk_proxies()
        .into_iter()
        .filter_map(|(name, _)| {
            let (registration, up) = core.trunk_state(&name)?;
            Some((name, registration, up))
        })
        .collect();
    (engine.stats(), trunks)
}

/// Sets the gauges and counters read from the engine.
pub fn export_engine(stats: &calls::Stats, trunks: &[TrunkState]) {
    let s = &stats.core;
    metrics::gauge!("tandem_calls_active").set(stats.calls as f64);
    metrics::gauge!("tandem_dialogs_active").set(s.dialogs as f64);
    for (kind, n) in [
        ("client_invite", s.client_invite),
        ("client_non_invite", s.client_non_invite),
        ("server_invite", s.server_invite),
        ("server_non_invite", s.server_non_invite),
    ] {
        metrics::gauge!("tandem_transactions_active", "kind" => kind).set(n as f64);
    }
    for (name, _, field) in CORE_COUNTERS {
        metrics::counter!(*name).absolute(field(s));
    }
    metrics::counter!("tandem_calls_answered_total").absolute(stats.calls_answered);
    metrics::counter!("tandem_calls_placed_total").absolute(stats.calls_placed);
    for (trunk, registration, up) in trunks {
        let registered = match registration {
            sip_core::RegistrationState::Registered { .. } => 1.0,
            _ => 0.0,
        };
        metrics::gauge!("tandem_trunk_registered", "trunk" => trunk.clone()).set(registered);
        // Up: the OPTIONS keepalive answers; without a keepalive, registered (or
        // nothing to tell: up).
        let up = match (up, registration) {
            (Some(up), _) => *up,
            (None, sip_core::RegistrationState::Idle) => true,
            (None, r) => matches!(r, sip_core::RegistrationState::Registered { .. }),
        };
        metrics::gauge!("tandem_trunk_up", "trunk" => trunk.clone()).set(if up {
            1.0
        } else {
            0.0
        });
    }
}

fn export_transport(t: &sip_transport::TransportStats) {
    metrics::counter!("tandem_transport_datagrams_in_total").absolute(t.datagrams_in);
    metrics::counter!("tandem_transport_datagrams_out_total").absolute(t.datagrams_out);
    metrics::counter!("tandem_transport_datagrams_dropped_total").absolute(t.datagrams_dropped);
    metrics::counter!("tandem_transport_stream_messages_in_total").absolute(t.messages_in);
    metrics::counter!("tandem_transport_stream_messages_out_total").absolute(t.messages_out);
    metrics::gauge!("tandem_transport_connections_open").set(t.connections_open as f64);
    metrics::counter!("tandem_transport_framing_errors_total").absolute(t.framing_errors);
}

/// Registers the help text of every metric the runtime writes (call once, after the
/// recorder is installed).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("tandem_calls_active", "Calls alive in the engine now.");
    describe_gauge!(
        "tandem_dialogs_active",
        "Dialogs (early and confirmed) now."
    );
    describe_gauge!("tandem_transactions_active", "Live transactions, by kind.");
    describe_gauge!(
        "tandem_call_attempts_pending",
        "Call attempts waiting for a final response."
    );
    describe_counter!(
        "tandem_call_attempts_total",
        "Calls started (first INVITE of a Call-ID), by direction."
    );
    describe_counter!(
        "tandem_calls_total",
        "Call attempts ended, by direction and outcome (the final response to the first INVITE)."
    );
    describe_counter!(
        "tandem_calls_answered_total",
        "Incoming calls answered with 2xx by the engine."
    );
    describe_counter!("tandem_calls_placed_total", "Calls the engine placed.");
    describe_counter!(
        "tandem_requests_in_total",
        "SIP requests received, by method (retransmissions included)."
    );
    describe_counter!(
        "tandem_requests_out_total",
        "SIP requests sent, by method (retransmissions included)."
    );
    describe_counter!(
        "tandem_responses_in_total",
        "SIP responses received, by class."
    );
    describe_counter!(
        "tandem_responses_out_total",
        "SIP responses sent, by class."
    );
    for (name, help, _) in CORE_COUNTERS {
        describe_counter!(*name, *help);
    }
    describe_gauge!(
        "tandem_trunk_registered",
        "1 when the trunk's registration is in force."
    );
    describe_gauge!(
        "tandem_trunk_up",
        "1 when the trunk answers its OPTIONS keepalive (or is registered, without one)."
    );
    describe_counter!(
        "tandem_hep_queued_total",
        "HEP packets queued for the collector."
    );
    describe_counter!(
        "tandem_hep_sent_total",
        "HEP packets sent to the collector."
    );
    describe_counter!(
        "tandem_hep_dropped_total",
        "HEP packets dropped (queue full, too large, send failed)."
    );
    describe_histogram!(
        "tandem_invite_first_response_seconds",
        Unit::Seconds,
        "INVITE received to first response sent."
    );
    describe_histogram!(
        "tandem_invite_final_response_seconds",
        Unit::Seconds,
        "INVITE received to final response sent."
    );
    describe_histogram!(
        "tandem_driver_batch_seconds",
        Unit::Seconds,
        "A turn of the driver: input handled and output sent."
    );
    describe_histogram!(
        "tandem_b2bua_leg_b_invite_seconds",
        Unit::Seconds,
        "Leg A INVITE received to leg B INVITE sent (same driver turn)."
    );
    describe_counter!(
        "tandem_transport_datagrams_in_total",
        "UDP datagrams handed to the core."
    );
    describe_counter!(
        "tandem_transport_datagrams_out_total",
        "UDP datagrams sent."
    );
    describe_counter!(
        "tandem_transport_datagrams_dropped_total",
        "UDP datagrams dropped on receipt (empty, keep-alive, oversize)."
    );
    describe_counter!(
        "tandem_transport_stream_messages_in_total",
        "Messages framed from stream connections."
    );
    describe_counter!(
        "tandem_transport_stream_messages_out_total",
        "Messages written to stream connections."
    );
    describe_gauge!(
        "tandem_transport_connections_open",
        "Stream connections open now."
    );
    describe_counter!(
        "tandem_transport_framing_errors_total",
        "Connections closed because their bytes could not be framed."
    );
    // Series without labels exist from the start, at 0, so a dashboard sees them.
    for name in [
        "tandem_hep_queued_total",
        "tandem_hep_sent_total",
        "tandem_hep_dropped_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!("tandem_call_attempts_pending").increment(0.0);
}

#[cfg(test)]
mod tests;

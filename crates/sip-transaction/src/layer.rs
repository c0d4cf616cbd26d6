//! The transaction layer: owns every transaction, matches messages to them,
//! and hands back what to transmit, when to wake, and what happened
//! (RFC 3261 §17; RFC 6026).

use crate::error::Error;
use crate::flow::{Flow, Transmit};
use crate::key::{TransactionKey, raw, raw_top_via};
use crate::machine::{
    AckAction, ClientAction, ClientInvite, ClientNonInvite, ResponseClass, ServerAction,
    ServerInvite, ServerNonInvite, State, TimerAction,
};
use crate::timer::{Timer, TimerConfig};
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use sip_message::{HeaderName, Headers, Method, Request, Response, Version, Via, ViaTransport};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;
use tracing::{debug, trace, warn};

/// Where a received request went ([`TransactionLayer::handle_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestOutcome {
    /// A new server transaction; the request is for the TU, which answers
    /// with [`TransactionLayer::send_response`]. For an INVITE, `100 Trying`
    /// has been queued already (RFC 3261 §17.2.1).
    New {
        /// The new transaction.
        key: TransactionKey,
        /// The request.
        request: Request,
    },
    /// A retransmission absorbed by its server transaction, which re-sent
    /// its last response if it had one (RFC 3261 §17.2.1, §17.2.2).
    Retransmission {
        /// The transaction.
        key: TransactionKey,
    },
    /// The ACK for a non-2xx final response, absorbed by its INVITE server
    /// transaction (RFC 3261 §17.2.1).
    AckForTransaction {
        /// The INVITE server transaction.
        key: TransactionKey,
    },
    /// An ACK matching no transaction in a state that absorbs it: the ACK
    /// for a 2xx (RFC 3261 §13.3.1.4; RFC 6026 §8.7), for the TU / dialog.
    Ack(Request),
    /// A new CANCEL: it has its own server non-INVITE transaction `key`
    /// that the TU answers (200, or 481 when `invite` is `None`), and
    /// `invite` is the INVITE server transaction it targets (RFC 3261 §9.2).
    Cancel {
        /// The CANCEL's own transaction.
        key: TransactionKey,
        /// The request.
        request: Request,
        /// The INVITE server transaction to cancel, if one matches.
        invite: Option<TransactionKey>,
    },
    /// The request cannot be matched (its Via, CSeq, From, To or Call-ID is
    /// unusable). No transaction was created; the TU may answer statelessly
    /// or drop it.
    Invalid {
        /// The request.
        request: Request,
        /// Why.
        error: Error,
    },
}

/// Where a received response went ([`TransactionLayer::handle_response`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseOutcome {
    /// Matched a client transaction that passed it to the TU: a
    /// [`TransactionEvent::Response`] is queued.
    Matched {
        /// The client transaction.
        key: TransactionKey,
    },
    /// Matched and absorbed: a retransmission (a non-2xx final in Completed
    /// makes the INVITE transaction re-send its ACK, RFC 3261 §17.1.1.2).
    Absorbed {
        /// The client transaction.
        key: TransactionKey,
    },
    /// No client transaction matches (RFC 3261 §17.1.3): for the TU, e.g. a
    /// 2xx retransmission after Timer M for the dialog layer (§13.2.2.4).
    Stray(Response),
    /// The response cannot be matched (no usable Via or CSeq, bad status).
    Invalid {
        /// The response.
        response: Response,
        /// Why.
        error: Error,
    },
}

/// What happened to a transaction, for the TU ([`TransactionLayer::poll_event`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionEvent {
    /// A client transaction passes a response to the TU.
    Response {
        /// The client transaction.
        key: TransactionKey,
        /// The response.
        response: Response,
    },
    /// Timer B, F or H fired (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1); a
    /// client TU treats B and F as a 408 (§8.1.3.1).
    Timeout {
        /// The transaction.
        key: TransactionKey,
        /// Which timer.
        timer: Timer,
    },
    /// The transport failed to send for this transaction (RFC 3261 §17.1.4, §17.2.4).
    TransportError {
        /// The transaction.
        key: TransactionKey,
    },
    /// The transaction reached Terminated and was removed.
    Terminated {
        /// The transaction.
        key: TransactionKey,
    },
}

/// How many transactions of each kind are alive, and what they re-sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TransactionStats {
    /// Messages re-sent since start: requests on Timers A, E and G (RFC 3261 §17.1.1.2,
    /// §17.1.2.2, §17.2.1), and the last response again for a retransmitted request
    /// (§17.2.1, §17.2.2).
    pub retransmissions: u64,
    /// Client INVITE transactions.
    pub client_invite: usize,
    /// Client non-INVITE transactions.
    pub client_non_invite: usize,
    /// Server INVITE transactions.
    pub server_invite: usize,
    /// Server non-INVITE transactions.
    pub server_non_invite: usize,
}

impl TransactionStats {
    /// All transactions.
    pub fn total(&self) -> usize {
        self.client_invite + self.client_non_invite + self.server_invite + self.server_non_invite
    }
}

/// What the client INVITE transaction needs to build its ACK (RFC 3261
/// §17.1.1.3) and the TU its CANCEL (§9.1).
#[derive(Clone, Debug)]
struct Original {
    version: Version,
    uri: Bytes,
    via: Bytes,
    from: Bytes,
    to: Bytes,
    call_id: Bytes,
    cseq: u32,
    routes: Vec<Bytes>,
}

impl Original {
    fn of(request: &Request) -> Result<Original, Error> {
        let h = &request.headers;
        Ok(Original {
            version: request.version.clone(),
            uri: request.uri.clone(),
            via: raw_top_via(h)?,
            from: raw(h, HeaderName::From)?,
            to: raw(h, HeaderName::To)?,
            call_id: raw(h, HeaderName::CallId)?,
            cseq: h.cseq()?.seq,
            routes: h.get_all(&HeaderName::Route).cloned().collect(),
        })
    }

    /// RFC 3261 §17.1.1.3 (ACK, To from the response) and §9.1 (CANCEL, To
    /// from the request).
    fn build(&self, method: Method, to: Bytes) -> Request {
        let mut h = Headers::with_capacity(8 + self.routes.len());
        h.push(HeaderName::Via, self.via.clone());
        for route in &self.routes {
            h.push(HeaderName::Route, route.clone());
        }
        h.push(HeaderName::MaxForwards, Bytes::from_static(b"70"));
        h.push(HeaderName::From, self.from.clone());
        h.push(HeaderName::To, to);
        h.push(HeaderName::CallId, self.call_id.clone());
        h.push(
            HeaderName::CSeq,
            Bytes::from(format!("{} {}", self.cseq, method.as_str())),
        );
        Request {
            method,
            uri: self.uri.clone(),
            version: self.version.clone(),
            headers: h,
            body: Bytes::new(),
        }
    }
}

/// One transaction's machine plus what it needs beyond the state.
// The variants carry the RFC 3261 names of the four machines.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum Machine {
    ClientInvite {
        fsm: ClientInvite,
        original: Box<Original>,
        /// The encoded ACK, once a non-2xx final arrived.
        ack: Option<Bytes>,
    },
    ClientNonInvite {
        fsm: ClientNonInvite,
    },
    ServerInvite {
        fsm: ServerInvite,
        /// The To tag of our last final response, for an RFC 2543 key only (ACK
        /// matching, §17.2.3).
        to_tag: Option<Bytes>,
    },
    ServerNonInvite {
        fsm: ServerNonInvite,
    },
}

impl Machine {
    fn state(&self) -> State {
        match self {
            Machine::ClientInvite { fsm, .. } => fsm.state(),
            Machine::ClientNonInvite { fsm } => fsm.state(),
            Machine::ServerInvite { fsm, .. } => fsm.state(),
            Machine::ServerNonInvite { fsm } => fsm.state(),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Machine::ClientInvite { fsm, .. } => fsm.poll_timeout(),
            Machine::ClientNonInvite { fsm } => fsm.poll_timeout(),
            Machine::ServerInvite { fsm, .. } => fsm.poll_timeout(),
            Machine::ServerNonInvite { fsm } => fsm.poll_timeout(),
        }
    }

    fn timer(&self, timer: Timer) -> Option<Instant> {
        match self {
            Machine::ClientInvite { fsm, .. } => fsm.timers().get(timer),
            Machine::ClientNonInvite { fsm } => fsm.timers().get(timer),
            Machine::ServerInvite { fsm, .. } => fsm.timers().get(timer),
            Machine::ServerNonInvite { fsm } => fsm.timers().get(timer),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Option<TimerAction> {
        match self {
            Machine::ClientInvite { fsm, .. } => fsm.handle_timeout(now),
            Machine::ClientNonInvite { fsm } => fsm.handle_timeout(now),
            Machine::ServerInvite { fsm, .. } => fsm.handle_timeout(now),
            Machine::ServerNonInvite { fsm } => fsm.handle_timeout(now),
        }
    }

    fn on_transport_error(&mut self) {
        match self {
            Machine::ClientInvite { fsm, .. } => fsm.on_transport_error(),
            Machine::ClientNonInvite { fsm } => fsm.on_transport_error(),
            Machine::ServerInvite { fsm, .. } => fsm.on_transport_error(),
            Machine::ServerNonInvite { fsm } => fsm.on_transport_error(),
        }
    }
}

#[derive(Debug)]
struct Transaction {
    /// Names this transaction in the timer heap.
    id: u64,
    /// The deadline last pushed to the heap.
    scheduled: Option<Instant>,
    machine: Machine,
    /// Client: where the request goes. Server: where responses go
    /// (RFC 3261 §18.2.2, RFC 3581 §4).
    flow: Flow,
    /// Client: the encoded request. Server: the last response sent.
    message: Option<Bytes>,
    call_id: Bytes,
}

/// The RFC 3261 §17 transaction layer, sans-IO: every transaction of one
/// endpoint, matched by [`TransactionKey`].
///
/// Feed it received messages ([`handle_request`](Self::handle_request),
/// [`handle_response`](Self::handle_response)), commands from the TU
/// ([`send_request`](Self::send_request), [`send_response`](Self::send_response)),
/// and the time ([`handle_timeout`](Self::handle_timeout)); then drain
/// [`poll_transmit`](Self::poll_transmit), [`poll_event`](Self::poll_event)
/// and [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    /// Boxed: a transaction is ~470 bytes, and the table moves its values when it
    /// grows or cleans out removed slots (a fifth of the engine's CPU at load, unboxed).
    transactions: HashMap<TransactionKey, Box<Transaction>>,
    /// Deadlines by transaction id; entries whose transaction moved on are
    /// stale and skipped.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    ids: HashMap<u64, TransactionKey>,
    next_id: u64,
    stats: TransactionStats,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransactionEvent>,
}

impl Default for TransactionLayer {
    fn default() -> Self {
        TransactionLayer::new(TimerConfig::default())
    }
}

fn lossy(b: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn span(method: &Method, branch: Option<&[u8]>, call_id: Option<&Bytes>) -> tracing::Span {
    tracing::debug_span!(
        "sip_transaction",
        method = %method,
        branch = %lossy(branch.unwrap_or_default()),
        call_id = %lossy(call_id.map(|c| &c[..]).unwrap_or_default()),
    )
}

/// RFC 3261 §18.2.2 and RFC 3581 §4: where responses to a request received
/// on `flow` with top Via `via` go.
///
/// The address is always the packet's source, never one the sender wrote: a
/// `received` it put in its own Via, or a `maddr`, would otherwise let anyone
/// point our responses and their retransmissions at a third party (the
/// hardening §18.2.2 allows; PJSIP and Kamailio do the same). Multicast
/// responses are not supported. The port is the source port when the Via asks
/// for `rport`, else the sent-by port.
fn response_flow(via: &Via, flow: &Flow) -> Flow {
    if flow.transport.is_reliable() {
        // Back over the connection the request came on.
        return *flow;
    }
    let default_port = match &via.transport {
        ViaTransport::Known(t) => t.default_port(),
        ViaTransport::Other(_) => flow.transport.default_port(),
    };
    let port = match via.rport() {
        Some(_) => flow.remote.port(),
        None => via.port.unwrap_or(default_port),
    };
    Flow {
        remote: SocketAddr::new(flow.remote.ip(), port),
        connection: None,
        ..*flow
    }
}

fn to_tag(headers: &Headers) -> Option<Bytes> {
    let to = headers.to_ref().ok()?;
    to.tag().map(Bytes::copy_from_slice)
}

impl TransactionLayer {
    /// An empty layer with these timer values.
    pub fn new(config: TimerConfig) -> TransactionLayer {
        TransactionLayer {
            config,
            transactions: HashMap::new(),
            heap: BinaryHeap::new(),
            ids: HashMap::new(),
            next_id: 0,
            stats: TransactionStats::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The timer values in use.
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// Live transactions per kind.
    pub fn stats(&self) -> TransactionStats {
        self.stats
    }

    /// Client non-INVITE transactions still waiting for a final response (Trying or
    /// Proceeding): requests such as a BYE whose answer has not come. Counts every live
    /// transaction (for a shutdown, not for each message).
    pub fn requests_awaiting_answer(&self) -> usize {
        self.transactions
            .values()
            .filter(|t| {
                matches!(t.machine, Machine::ClientNonInvite { .. })
                    && matches!(t.machine.state(), State::Trying | State::Proceeding)
            })
            .count()
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    /// True when no transaction is alive.
    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// The state of a transaction, if it is alive.
    pub fn state(&self, key: &TransactionKey) -> Option<State> {
        self.transactions.get(key).map(|t| t.machine.state())
    }

    /// When `timer` of a transaction is due, if armed.
    pub fn timer(&self, key: &TransactionKey, timer: Timer) -> Option<Instant> {
        self.transactions.get(key)?.machine.timer(timer)
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event for the TU.
    pub fn poll_event(&mut self) -> Option<TransactionEvent> {
        self.events.pop_front()
    }

    /// The earliest instant [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if self.is_current(at, id) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    fn is_current(&self, at: Instant, id: u64) -> bool {
        self.ids
            .get(&id)
            .and_then(|key| self.transactions.get(key))
            .is_some_and(|t| t.scheduled == Some(at))
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            if !self.is_current(at, id) {
                continue;
            }
            if let Some(key) = self.ids.get(&id).cloned() {
                let call_id = self.transactions.get(&key).map(|t| t.call_id.clone());
                let span = span(key.method(), key.branch(), call_id.as_ref());
                let _guard = span.enter();
                self.drive(now, &key);
            }
        }
    }

    /// Runs a transaction's due timers, reschedules it, and removes it if it
    /// terminated. Called after every input so that zero-length timers
    /// (D, I, J, K on reliable transports) take effect at once.
    fn drive(&mut self, now: Instant, key: &TransactionKey) {
        let Some(tx) = self.transactions.get_mut(key) else {
            return;
        };
        while let Some(action) = tx.machine.handle_timeout(now) {
            match action {
                TimerAction::Retransmit(timer) => {
                    if let Some(payload) = tx.message.clone() {
                        trace!(%key, ?timer, "retransmit");
                        self.stats.retransmissions += 1;
                        self.transmits.push_back(Transmit {
                            flow: tx.flow,
                            payload,
                        });
                    }
                }
                TimerAction::Timeout(timer) => {
                    debug!(%key, ?timer, "transaction timeout");
                    self.events.push_back(TransactionEvent::Timeout {
                        key: key.clone(),
                        timer,
                    });
                }
                TimerAction::Terminate(timer) => trace!(%key, ?timer, "wait over"),
            }
        }
        if tx.machine.state() == State::Terminated {
            self.remove(key);
            return;
        }
        let next = tx.machine.poll_timeout();
        if next != tx.scheduled {
            tx.scheduled = next;
            if let Some(at) = next {
                self.heap.push(Reverse((at, tx.id)));
            }
        }
    }

    fn insert(
        &mut self,
        now: Instant,
        key: TransactionKey,
        machine: Machine,
        flow: Flow,
        message: Option<Bytes>,
        call_id: Bytes,
    ) {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        match &machine {
            Machine::ClientInvite { .. } => self.stats.client_invite += 1,
            Machine::ClientNonInvite { .. } => self.stats.client_non_invite += 1,
            Machine::ServerInvite { .. } => self.stats.server_invite += 1,
            Machine::ServerNonInvite { .. } => self.stats.server_non_invite += 1,
        }
        self.ids.insert(id, key.clone());
        self.transactions.insert(
            key.clone(),
            Box::new(Transaction {
                id,
                scheduled: None,
                machine,
                flow,
                message,
                call_id,
            }),
        );
        self.drive(now, &key);
    }

    fn remove(&mut self, key: &TransactionKey) {
        let Some(tx) = self.transactions.remove(key) else {
            return;
        };
        self.ids.remove(&tx.id);
        crate::tables::shrink_map(&mut self.transactions);
        crate::tables::shrink_map(&mut self.ids);
        crate::tables::shrink_heap(&mut self.heap);
        let count = match tx.machine {
            Machine::ClientInvite { .. } => &mut self.stats.client_invite,
            Machine::ClientNonInvite { .. } => &mut self.stats.client_non_invite,
            Machine::ServerInvite { .. } => &mut self.stats.server_invite,
            Machine::ServerNonInvite { .. } => &mut self.stats.server_non_invite,
        };
        *count = count.saturating_sub(1);
        debug!(%key, "transaction terminated");
        self.events
            .push_back(TransactionEvent::Terminated { key: key.clone() });
    }

    /// A request arrived on `flow` (RFC 3261 §17.2.3 matching). The returned
    /// outcome says where it went.
    pub fn handle_request(&mut self, now: Instant, request: Request, flow: Flow) -> RequestOutcome {
        let call_id = request.headers.get(&HeaderName::CallId).cloned();
        let via = match request.headers.top_via_ref() {
            Ok(via) => via,
            Err(e) => {
                return RequestOutcome::Invalid {
                    request,
                    error: e.into(),
                };
            }
        };
        let span = span(&request.method, via.branch(), call_id.as_ref());
        let _guard = span.enter();
        let key = match TransactionKey::server_for_request(&request) {
            Ok(key) => key,
            Err(e) => {
                debug!(error = %e, "unmatchable request");
                return RequestOutcome::Invalid {
                    request,
                    error: e.into(),
                };
            }
        };

        if request.method == Method::Ack {
            return self.handle_ack(now, key, request);
        }

        if let Some(tx) = self.transactions.get_mut(&key) {
            let action = match &mut tx.machine {
                Machine::ServerInvite { fsm, .. } => fsm.on_request(now),
                Machine::ServerNonInvite { fsm } => fsm.on_request(now),
                _ => ServerAction::Absorb,
            };
            if action == ServerAction::ResendResponse
                && let Some(payload) = tx.message.clone()
            {
                self.stats.retransmissions += 1;
                self.transmits.push_back(Transmit {
                    flow: tx.flow,
                    payload,
                });
            }
            trace!(?action, "request retransmission");
            self.drive(now, &key);
            return RequestOutcome::Retransmission { key };
        }

        let reliable = flow.transport.is_reliable();
        let out_flow = response_flow(&via, &flow);
        let call_id = call_id.unwrap_or_default();
        match request.method.clone() {
            Method::Invite => {
                // RFC 3261 §17.2.1: a 100 Trying at once, so that
                // retransmissions of the INVITE get a provisional.
                let mut fsm = ServerInvite::new(now, self.config, reliable);
                let mut trying = Response::from_request(&request, 100, None);
                // §8.2.6.1: a 100 Trying echoes the request's Timestamp.
                if let Some(timestamp) = request.headers.get(&HeaderName::Timestamp) {
                    trying
                        .headers
                        .push(HeaderName::Timestamp, timestamp.clone());
                }
                let trying = trying.to_bytes();
                let _ = fsm.send_response(now, ResponseClass::Provisional);
                self.transmits.push_back(Transmit {
                    flow: out_flow,
                    payload: trying.clone(),
                });
                debug!("new server INVITE transaction");
                self.insert(
                    now,
                    key.clone(),
                    Machine::ServerInvite { fsm, to_tag: None },
                    out_flow,
                    Some(trying),
                    call_id,
                );
                RequestOutcome::New { key, request }
            }
            method => {
                // RFC 3261 §9.2: a CANCEL targets the transaction it would match
                // were its method not CANCEL.
                let invite = (method == Method::Cancel)
                    .then(|| TransactionKey::server_for_request_as(&request, Method::Invite).ok())
                    .flatten()
                    .filter(|k| self.transactions.contains_key(k));
                debug!(%method, target = ?invite.as_ref().map(ToString::to_string), "new server non-INVITE transaction");
                let fsm = ServerNonInvite::new(now, self.config, reliable);
                self.insert(
                    now,
                    key.clone(),
                    Machine::ServerNonInvite { fsm },
                    out_flow,
                    None,
                    call_id,
                );
                if method == Method::Cancel {
                    RequestOutcome::Cancel {
                        key,
                        request,
                        invite,
                    }
                } else {
                    RequestOutcome::New { key, request }
                }
            }
        }
    }

    fn handle_ack(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Request,
    ) -> RequestOutcome {
        // RFC 2543 peers: the ACK carries the To tag of our response, which
        // the INVITE (and so the key) lacked.
        let key = if self.transactions.contains_key(&key) {
            Some(key)
        } else {
            key.without_to_tag().and_then(|(bare, tag)| {
                self.transactions
                    .get(&bare)
                    .and_then(|tx| match &tx.machine {
                        Machine::ServerInvite {
                            to_tag: Some(ours), ..
                        } if *ours == tag => Some(bare.clone()),
                        _ => None,
                    })
            })
        };
        let Some(key) = key else {
            trace!("ACK outside any transaction");
            return RequestOutcome::Ack(request);
        };
        let action = match self.transactions.get_mut(&key).map(|t| &mut t.machine) {
            Some(Machine::ServerInvite { fsm, .. }) => fsm.on_ack(now),
            _ => AckAction::PassToTu,
        };
        self.drive(now, &key);
        match action {
            AckAction::PassToTu => RequestOutcome::Ack(request),
            AckAction::Confirmed | AckAction::Absorb => {
                trace!(?action, "ACK absorbed");
                RequestOutcome::AckForTransaction { key }
            }
        }
    }

    /// A response arrived on `flow` (RFC 3261 §17.1.3 matching).
    pub fn handle_response(
        &mut self,
        now: Instant,
        response: Response,
        _flow: Flow,
    ) -> ResponseOutcome {
        let key = match TransactionKey::client_for_response(&response) {
            Ok(key) => key,
            Err(e) => {
                return ResponseOutcome::Invalid {
                    response,
                    error: e.into(),
                };
            }
        };
        let Some(class) = ResponseClass::of(response.status) else {
            let status = response.status;
            return ResponseOutcome::Invalid {
                response,
                error: Error::InvalidStatus { status },
            };
        };
        let Some(tx) = self.transactions.get_mut(&key) else {
            trace!(%key, status = response.status, "stray response");
            return ResponseOutcome::Stray(response);
        };
        let span = span(key.method(), key.branch(), Some(&tx.call_id));
        let _guard = span.enter();
        let action = match &mut tx.machine {
            Machine::ClientInvite { fsm, .. } => fsm.on_response(now, class),
            Machine::ClientNonInvite { fsm } => fsm.on_response(now, class),
            _ => ClientAction::Discard,
        };
        debug!(status = response.status, ?action, "response");
        let outcome = match action {
            ClientAction::Discard => ResponseOutcome::Absorbed { key: key.clone() },
            ClientAction::ResendAck => {
                if let Machine::ClientInvite { ack: Some(ack), .. } = &tx.machine {
                    self.transmits.push_back(Transmit {
                        flow: tx.flow,
                        payload: ack.clone(),
                    });
                }
                ResponseOutcome::Absorbed { key: key.clone() }
            }
            ClientAction::PassToTu | ClientAction::PassToTuAndAck => {
                if action == ClientAction::PassToTuAndAck
                    && let Machine::ClientInvite { original, ack, .. } = &mut tx.machine
                {
                    // RFC 3261 §17.1.1.3: To from the response.
                    let to = response
                        .headers
                        .get(&HeaderName::To)
                        .cloned()
                        .unwrap_or_else(|| original.to.clone());
                    let payload = original.build(Method::Ack, to).to_bytes();
                    *ack = Some(payload.clone());
                    self.transmits.push_back(Transmit {
                        flow: tx.flow,
                        payload,
                    });
                }
                self.events.push_back(TransactionEvent::Response {
                    key: key.clone(),
                    response,
                });
                ResponseOutcome::Matched { key: key.clone() }
            }
        };
        self.drive(now, &key);
        outcome
    }

    /// Creates a client transaction for `request` and sends it to
    /// `destination` (RFC 3261 §17.1). The caller has put a top Via with a
    /// `z9hG4bK` branch on it. The request is encoded once; retransmissions
    /// re-send those bytes.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        destination: Flow,
    ) -> Result<TransactionKey, Error> {
        if request.method == Method::Ack {
            return Err(Error::AckNotTransaction);
        }
        let key = TransactionKey::client_for_request(&request)?;
        let call_id = raw(&request.headers, HeaderName::CallId)?;
        let span = span(&request.method, key.branch(), Some(&call_id));
        let _guard = span.enter();
        if self.transactions.contains_key(&key) {
            return Err(Error::TransactionExists { key });
        }
        let reliable = destination.transport.is_reliable();
        let machine = if request.method == Method::Invite {
            Machine::ClientInvite {
                fsm: ClientInvite::new(now, self.config, reliable),
                original: Box::new(Original::of(&request)?),
                ack: None,
            }
        } else {
            Machine::ClientNonInvite {
                fsm: ClientNonInvite::new(now, self.config, reliable),
            }
        };
        let payload = request.to_bytes();
        debug!(remote = %destination.remote, "new client transaction");
        self.transmits.push_back(Transmit {
            flow: destination,
            payload: payload.clone(),
        });
        self.insert(
            now,
            key.clone(),
            machine,
            destination,
            Some(payload),
            call_id,
        );
        Ok(key)
    }

    /// The CANCEL for a client INVITE transaction (RFC 3261 §9.1): same
    /// Request-URI, Call-ID, From, To, CSeq number and top Via, method
    /// CANCEL, Route copied. Send it with [`send_request`](Self::send_request)
    /// to [`destination`](Self::destination), after a provisional arrived.
    pub fn cancel_request(&self, key: &TransactionKey) -> Result<Request, Error> {
        match self.transactions.get(key).map(|t| &t.machine) {
            Some(Machine::ClientInvite { original, .. }) => {
                Ok(original.build(Method::Cancel, original.to.clone()))
            }
            Some(_) => Err(Error::WrongTransactionKind { key: key.clone() }),
            None => Err(Error::NoSuchTransaction { key: key.clone() }),
        }
    }

    /// Where a client transaction sends its request, or a server
    /// transaction its responses.
    pub fn destination(&self, key: &TransactionKey) -> Option<Flow> {
        self.transactions.get(key).map(|t| t.flow)
    }

    /// Sends an ACK outside any transaction: the ACK for a 2xx, which the
    /// TU (dialog layer) owns (RFC 3261 §13.2.2.4, §17.1.1.3).
    pub fn send_ack(
        &mut self,
        _now: Instant,
        ack: Request,
        destination: Flow,
    ) -> Result<(), Error> {
        if ack.method != Method::Ack {
            return Err(Error::NotAck { method: ack.method });
        }
        self.transmits.push_back(Transmit {
            flow: destination,
            payload: ack.to_bytes(),
        });
        Ok(())
    }

    /// The TU answers a server transaction (RFC 3261 §17.2). Responses go
    /// where RFC 3261 §18.2.2 and RFC 3581 §4 say: over the same connection
    /// on reliable transports; otherwise to the source address (never a
    /// `maddr` or `received` the sender wrote), at the source port with `rport`
    /// else the sent-by port. Returns the encoded response, for a TU that
    /// retransmits it (a 2xx to INVITE, RFC 3261 §13.3.1.4).
    pub fn send_response(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        response: Response,
    ) -> Result<Bytes, Error> {
        let status = response.status;
        let class = ResponseClass::of(status).ok_or(Error::InvalidStatus { status })?;
        let tx = self
            .transactions
            .get_mut(key)
            .ok_or_else(|| Error::NoSuchTransaction { key: key.clone() })?;
        let span = span(key.method(), key.branch(), Some(&tx.call_id));
        let _guard = span.enter();
        let result = match &mut tx.machine {
            Machine::ServerInvite { fsm, to_tag } => {
                let r = fsm.send_response(now, class);
                // Only an RFC 2543 ACK is matched by it (see `handle_ack`): a branch
                // key's response is not parsed for it.
                if r.is_ok() && class.is_final() && key.is_rfc2543() {
                    *to_tag = self::to_tag(&response.headers);
                }
                r
            }
            Machine::ServerNonInvite { fsm } => fsm.send_response(now, class),
            _ => return Err(Error::WrongTransactionKind { key: key.clone() }),
        };
        if let Err(e) = result {
            warn!(status, state = %e.state, "response refused");
            return Err(Error::InvalidState {
                key: key.clone(),
                state: e.state,
                status,
            });
        }
        let payload = response.to_bytes();
        debug!(status, remote = %tx.flow.remote, "send response");
        tx.message = Some(payload.clone());
        let payload_out = payload.clone();
        self.transmits.push_back(Transmit {
            flow: tx.flow,
            payload,
        });
        self.drive(now, key);
        Ok(payload_out)
    }

    /// The TU abandons a transaction; it is removed at once and a
    /// [`TransactionEvent::Terminated`] is queued. RFC 3261 §9.1: a UAC that
    /// got no final response 64·T1 after its CANCEL destroys the INVITE
    /// client transaction (an INVITE client transaction in Proceeding has no
    /// timer of its own).
    pub fn terminate(&mut self, _now: Instant, key: &TransactionKey) -> Result<(), Error> {
        if !self.transactions.contains_key(key) {
            return Err(Error::NoSuchTransaction { key: key.clone() });
        }
        debug!(%key, "terminated by the TU");
        self.remove(key);
        Ok(())
    }

    /// The transport could not deliver a message of this transaction: the
    /// TU is told ([`TransactionEvent::TransportError`]) and the transaction
    /// terminates (RFC 3261 §17.1.4, §17.2.4).
    pub fn handle_transport_error(
        &mut self,
        now: Instant,
        key: &TransactionKey,
    ) -> Result<(), Error> {
        let tx = self
            .transactions
            .get_mut(key)
            .ok_or_else(|| Error::NoSuchTransaction { key: key.clone() })?;
        warn!(%key, "transport error");
        tx.machine.on_transport_error();
        self.events
            .push_back(TransactionEvent::TransportError { key: key.clone() });
        self.drive(now, key);
        Ok(())
    }
}

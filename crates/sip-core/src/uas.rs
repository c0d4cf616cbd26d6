//! The endpoint and its first user agent server.

use crate::ids::IdGenerator;
use crate::inspect::{self, ACCEPT, ALLOW, Behaviour, Rejection, SUPPORTED, Target};
use crate::sdp::{self, LocalMedia};
use bytes::Bytes;
use sip_message::{
    HeaderName, Host, Message, Method, ParseError, Request, Response, Transport, multipart,
};
use sip_transaction::{
    Flow, RequestOutcome, ResponseOutcome, TimerConfig, TransactionEvent, TransactionKey,
    TransactionLayer, Transmit,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tracing::{debug, debug_span};

/// What the endpoint needs; the daemon builds it from its config file.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// T1, T2, T4 (RFC 3261 §17.1.1.1).
    pub timers: TimerConfig,
    /// Users this UAS answers for, by Request-URI user part.
    pub users: Vec<(String, Behaviour)>,
    /// Sent in `Server` and `User-Agent`.
    pub user_agent: String,
    /// How long a `ring` user rings before 480 (RFC 3261 §21.4.18).
    pub ring_timeout: Duration,
    /// Seeds tags and branches (the core has no entropy source of its own).
    pub seed: u64,
    /// The address written in Contact, Via and SDP instead of the socket's own: needed
    /// when listening on a wildcard address (0.0.0.0 or ::), which is no address a peer
    /// can reach. `None`: the address of the socket the request arrived on.
    pub advertised_address: Option<std::net::IpAddr>,
    /// A call still up this long after its answer is ended with BYE, so a peer that
    /// never hangs up cannot hold state forever (session timers arrive with [dialog]).
    pub max_call_duration: Duration,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            timers: TimerConfig::default(),
            users: vec![
                ("echo".into(), Behaviour::Echo),
                ("ring".into(), Behaviour::Ring),
                ("busy".into(), Behaviour::Busy),
            ],
            user_agent: concat!("Tandem/", env!("CARGO_PKG_VERSION")).into(),
            ring_timeout: Duration::from_secs(60),
            seed: 0,
            max_call_duration: Duration::from_secs(3600),
            advertised_address: None,
        }
    }
}

/// What happened, for the driver to log (and later layers to act on).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// Input that was not processed: unparseable, or a response nothing wanted.
    Dropped { remote: SocketAddr, reason: String },
    /// A new INVITE for a user.
    CallReceived { call_id: String, user: String },
    /// The 2xx was acknowledged: the dialog is confirmed.
    CallEstablished { call_id: String },
    /// The call is over.
    CallEnded { call_id: String, reason: EndReason },
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The peer sent BYE.
    RemoteBye,
    /// The peer cancelled before the answer (487).
    Cancelled,
    /// Nobody answered within the ring timeout (480).
    RingTimeout,
    /// The 2xx was never acknowledged (RFC 3261 §13.3.1.4): we sent BYE.
    AckTimeout,
    /// The transport could not reach the peer.
    TransportError,
    /// A transaction of the call timed out (Timer H: no ACK for a final response).
    Timeout,
    /// The call reached `max_call_duration`: we sent BYE.
    MaxDuration,
}

/// Counters and gauges, for the `stats` line and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Live transactions, all kinds.
    pub transactions: usize,
    pub client_invite: usize,
    pub client_non_invite: usize,
    pub server_invite: usize,
    pub server_non_invite: usize,
    /// Live dialogs (early and confirmed).
    pub dialogs: usize,
    pub requests_in: u64,
    pub responses_in: u64,
    /// INVITEs that reached the user agent (retransmissions excluded).
    pub invites_new: u64,
    /// Calls answered with 2xx.
    pub calls_answered: u64,
    /// Requests refused with 400/505 because they failed validation.
    pub rejected_invalid: u64,
    /// Messages dropped: unparseable, invalid responses, stray responses.
    pub dropped: u64,
}

/// A dialog is found by Call-ID and our tag (RFC 3261 §12.2.2: the remote tag is
/// checked on arrival).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct DialogKey {
    call_id: Bytes,
    local_tag: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MergeKey {
    call_id: Bytes,
    from_tag: Bytes,
    cseq: u32,
    method: Method,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DialogState {
    /// 180 sent, no final response yet (an early dialog).
    Ringing,
    /// 2xx sent, retransmitted until the ACK (§13.3.1.4).
    Answered,
    /// ACK received.
    Confirmed,
}

#[derive(Debug)]
struct Dialog {
    state: DialogState,
    /// The INVITE server transaction of the initial or latest (re-)INVITE.
    invite: TransactionKey,
    /// The flow the INVITE came on: our in-dialog requests go back along it.
    flow: Flow,
    /// The From tag of the peer.
    remote_tag: Bytes,
    /// Raw header values for requests we send (BYE): our From is their To (with our
    /// tag), our To is their From.
    local_uri: Bytes,
    remote_uri: Bytes,
    remote_target: Bytes,
    remote_cseq: u32,
    local_cseq: u32,
    /// The INVITE's CSeq, which the ACK must carry.
    invite_cseq: u32,
    /// The 2xx and where it goes, while it is being retransmitted.
    ok: Option<Transmit>,
    retransmit_interval: Duration,
    retransmit_at: Option<Instant>,
    ack_deadline: Option<Instant>,
    ring_until: Option<Instant>,
    /// Our SDP, for a re-INVITE without an offer.
    local_sdp: Bytes,
    /// The INVITE while it awaits a final response: 487 and 480 are built from it.
    pending_invite: Option<Request>,
    /// Record-Route values of the INVITE, in order: the route set (RFC 3261 §12.1.1).
    route_set: Vec<Bytes>,
    /// When the call is ended for running too long.
    hangup_at: Option<Instant>,
    /// The o= version of our SDP (RFC 3264 §8).
    sdp_version: u64,
    session_id: u64,
    user: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Retransmit the 2xx (§13.3.1.4).
    Retransmit,
    /// 64·T1 without ACK: end the dialog with BYE.
    AckTimeout,
    /// The ring timeout of a `ring` user.
    RingTimeout,
    /// `max_call_duration` after the answer.
    MaxDuration,
}

/// The sans-IO endpoint: transaction layer plus the first user agent server.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    user_agent: Bytes,
    users: HashMap<String, Behaviour>,
    transactions: TransactionLayer,
    dialogs: HashMap<DialogKey, Dialog>,
    /// INVITE server transaction → its dialog, for CANCEL.
    invites: HashMap<TransactionKey, DialogKey>,
    /// Live server transactions of requests outside a dialog, by From tag, Call-ID and
    /// CSeq: a second one with another branch is a merged request (§8.2.2.2).
    merge: HashMap<MergeKey, TransactionKey>,
    merge_by_key: HashMap<TransactionKey, MergeKey>,
    /// Deadlines; an entry is live only if the dialog still holds that deadline.
    timers: BinaryHeap<Reverse<(Instant, TimerKind, DialogKey)>>,
    ids: IdGenerator,
    transmits: VecDeque<Transmit>,
    events: VecDeque<EndpointEvent>,
    stats: Stats,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        Endpoint {
            user_agent: Bytes::from(config.user_agent.clone()),
            users: config.users.iter().cloned().collect(),
            transactions: TransactionLayer::new(config.timers),
            dialogs: HashMap::new(),
            invites: HashMap::new(),
            merge: HashMap::new(),
            merge_by_key: HashMap::new(),
            timers: BinaryHeap::new(),
            ids: IdGenerator::new(config.seed),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        }
    }

    /// A datagram, or one message framed from a stream, arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, data: Bytes, flow: Flow) {
        match Message::parse(data) {
            Ok(Message::Request(request)) => self.on_request(now, request, flow),
            Ok(Message::Response(response)) => self.on_response(now, response, flow),
            Err(error) => self.drop_input(flow.remote, &error),
        }
        self.pump(now);
    }

    /// The time asked for by [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.transactions.handle_timeout(now);
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, kind, key))) = self.timers.pop() else {
                break;
            };
            self.on_timer(now, at, kind, key);
        }
        self.pump(now);
    }

    /// The transport could not deliver to `flow` (connection refused, reset, send
    /// failure): over a connection, the dialogs on that flow end and their transactions
    /// are failed. A datagram send error (ENOBUFS, a full queue) is transient: the
    /// transactions' retransmissions and timeouts deal with it (RFC 3261 §17.1.4).
    pub fn handle_transport_error(&mut self, now: Instant, flow: Flow) {
        if !flow.transport.is_reliable() {
            return;
        }
        let failed: Vec<DialogKey> = self
            .dialogs
            .iter()
            .filter(|(_, d)| d.flow.remote == flow.remote && d.flow.transport == flow.transport)
            .map(|(k, _)| k.clone())
            .collect();
        for key in failed {
            if let Some(dialog) = self.dialogs.get(&key) {
                let invite = dialog.invite.clone();
                let _ = self.transactions.handle_transport_error(now, &invite);
            }
            self.end_dialog(now, &key, EndReason::TransportError);
        }
        self.pump(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// The earliest time the endpoint must be woken at, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let ours = self.timers.peek().map(|Reverse((at, _, _))| *at);
        match (self.transactions.poll_timeout(), ours) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn stats(&self) -> Stats {
        let t = self.transactions.stats();
        Stats {
            transactions: t.total(),
            client_invite: t.client_invite,
            client_non_invite: t.client_non_invite,
            server_invite: t.server_invite,
            server_non_invite: t.server_non_invite,
            dialogs: self.dialogs.len(),
            ..self.stats
        }
    }

    // ---- input

    fn drop_input(&mut self, remote: SocketAddr, error: &ParseError) {
        self.stats.dropped += 1;
        self.events.push_back(EndpointEvent::Dropped {
            remote,
            reason: error.reason_phrase().into_owned(),
        });
    }

    fn on_request(&mut self, now: Instant, mut request: Request, flow: Flow) {
        self.stats.requests_in += 1;
        if let Err(error) = request.validate() {
            if request.method == Method::Ack {
                // An ACK is never answered (RFC 3261 §17.2.3); a bad one is dropped.
                self.drop_input(flow.remote, &error);
                return;
            }
            self.stats.rejected_invalid += 1;
            debug!(remote = %flow.remote, reason = %error.reason_phrase(), "invalid request");
            // §8.2.6.2: a final response gets a To tag (ours if the To had none).
            let tag = self.ids.tag();
            let mut response = self.response(&request, error.status_code(), Some(&tag));
            response.reason = Bytes::from(error.reason_phrase().into_owned());
            // No transaction can be trusted to exist for it: answer statelessly to the
            // source (RFC 3581 symmetric response), on the same connection for streams.
            self.transmits.push_back(Transmit {
                flow,
                payload: response.to_bytes(),
            });
            return;
        }
        stamp_via(&mut request, &flow);
        // Field values are evaluated only when the span is enabled.
        let span = debug_span!(
            "request",
            method = %request.method,
            call_id = request.headers.call_id().unwrap_or_default(),
            branch = %top_branch(&request),
        );
        let _guard = span.enter();
        match self.transactions.handle_request(now, request, flow) {
            RequestOutcome::New { key, request } => self.on_new_request(now, key, request, flow),
            RequestOutcome::Ack(ack) => self.on_ack(now, &ack),
            RequestOutcome::Cancel {
                key,
                request,
                invite,
            } => self.on_cancel(now, key, &request, invite),
            RequestOutcome::Invalid { request, error } if request.method != Method::Ack => {
                self.stats.rejected_invalid += 1;
                let tag = self.ids.tag();
                let mut response = self.response(&request, 400, Some(&tag));
                response.reason = Bytes::from(error.to_string().replace(['\r', '\n'], " "));
                self.transmits.push_back(Transmit {
                    flow,
                    payload: response.to_bytes(),
                });
            }
            // Retransmissions and the ACK of a non-2xx are the transaction's business.
            _ => {}
        }
    }

    fn on_response(&mut self, now: Instant, response: Response, flow: Flow) {
        self.stats.responses_in += 1;
        match self.transactions.handle_response(now, response, flow) {
            ResponseOutcome::Stray(_) => {
                // Includes RFC 4475 bcast: never answered, never forwarded.
                self.stats.dropped += 1;
                self.events.push_back(EndpointEvent::Dropped {
                    remote: flow.remote,
                    reason: "response matches no transaction".into(),
                });
            }
            ResponseOutcome::Invalid { error, .. } => {
                self.stats.dropped += 1;
                self.events.push_back(EndpointEvent::Dropped {
                    remote: flow.remote,
                    reason: error.to_string(),
                });
            }
            _ => {}
        }
    }

    fn on_new_request(&mut self, now: Instant, key: TransactionKey, request: Request, flow: Flow) {
        let to_tag = request
            .headers
            .to()
            .ok()
            .and_then(|to| to.tag().map(Bytes::copy_from_slice));
        if let Some(tag) = to_tag {
            self.in_dialog(now, key, request, tag);
            return;
        }
        if self.is_merged(&key, &request) {
            let mut response = self.response(&request, 482, None);
            response.reason = Bytes::from_static(b"Loop Detected (merged request)");
            return self.respond(now, &key, response);
        }
        let target = match inspect::inspect(&request, |user| self.users.get(user).copied()) {
            Ok(target) => target,
            Err(rejection) => return self.reject(now, &key, &request, rejection),
        };
        match request.method {
            Method::Options => {
                let response = self.options_ok(&request);
                self.respond(now, &key, response);
            }
            Method::Invite => self.on_invite(now, key, request, flow, target),
            // RFC 3428: a page-mode MESSAGE to a user is accepted (echoed by [calls]).
            Method::Message => {
                let tag = self.ids.tag();
                let response = self.response(&request, 200, Some(&tag));
                self.respond(now, &key, response);
            }
            // A BYE (or anything else) without a To tag is outside any dialog.
            _ => {
                let response = self.response(&request, 481, None);
                self.respond(now, &key, response);
            }
        }
    }

    fn on_invite(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: Request,
        flow: Flow,
        target: Target,
    ) {
        self.stats.invites_new += 1;
        let Target::User { name, behaviour } = target else {
            let response = self.response(&request, 404, None);
            return self.respond(now, &key, response);
        };
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        self.events.push_back(EndpointEvent::CallReceived {
            call_id: call_id.clone(),
            user: name.clone(),
        });
        let tag = self.ids.tag();
        if behaviour == Behaviour::Busy {
            let response = self.response(&request, 486, Some(&tag));
            return self.respond(now, &key, response);
        }
        let session_id = self.ids.next_u64() >> 1;
        let local = LocalMedia {
            address: self.local_ip(&flow),
            // No media yet: the discard port, until [media] gives echo a real stream.
            port: 9,
            session_id,
            version: 1,
        };
        let local_sdp = match offer_in(&request) {
            Ok(Some(offer)) => match sdp::answer(&offer, local) {
                Ok(answer) => answer,
                Err(error) => {
                    let mut response = self.response(&request, 488, Some(&tag));
                    response
                        .headers
                        .push(HeaderName::Warning, format!("304 tandem \"{error}\""));
                    return self.respond(now, &key, response);
                }
            },
            // No offer: ours goes in the 2xx and the answer comes in the ACK (§13.2.1).
            Ok(None) => sdp::offer(local),
            Err(rejection) => return self.reject(now, &key, &request, rejection),
        };
        let (Ok(from), Ok(cseq)) = (request.headers.from(), request.headers.cseq()) else {
            // validate() checked both; a 500 rather than a panic if that ever changes.
            let response = self.response(&request, 500, Some(&tag));
            return self.respond(now, &key, response);
        };
        let remote_target = match request.headers.contacts() {
            Ok(sip_message::Contacts::List(list)) => list
                .first()
                .map(|c| c.addr.uri.to_bytes())
                .unwrap_or_else(|| from.uri.to_bytes()),
            _ => from.uri.to_bytes(),
        };
        let mut local_uri = request
            .headers
            .get(&HeaderName::To)
            .cloned()
            .unwrap_or_default()
            .to_vec();
        local_uri.extend_from_slice(b";tag=");
        local_uri.extend_from_slice(tag.as_bytes());
        let dialog_key = DialogKey {
            call_id: Bytes::from(call_id),
            local_tag: Bytes::from(tag.clone()),
        };
        let route_set: Vec<Bytes> = request.headers.values(&HeaderName::RecordRoute).collect();
        let mut ringing = self.response(&request, 180, Some(&tag));
        // §12.1.1: a response that makes a dialog carries the request's Record-Route.
        for route in &route_set {
            ringing.headers.push(HeaderName::RecordRoute, route.clone());
        }
        let ringing_contact = contact(&name, &self.local_addr(&flow), flow.transport);
        ringing.headers.push(HeaderName::Contact, ringing_contact);
        self.respond(now, &key, ringing);
        let mut dialog = Dialog {
            state: DialogState::Ringing,
            invite: key.clone(),
            flow,
            remote_tag: from.tag().map(Bytes::copy_from_slice).unwrap_or_default(),
            local_uri: Bytes::from(local_uri),
            remote_uri: request
                .headers
                .get(&HeaderName::From)
                .cloned()
                .unwrap_or_default(),
            remote_target,
            remote_cseq: cseq.seq,
            local_cseq: 0,
            invite_cseq: cseq.seq,
            ok: None,
            retransmit_interval: self.config.timers.t1,
            retransmit_at: None,
            ack_deadline: None,
            ring_until: None,
            local_sdp: Bytes::from(local_sdp),
            pending_invite: (behaviour == Behaviour::Ring).then(|| request.clone()),
            route_set,
            hangup_at: None,
            sdp_version: 1,
            session_id,
            user: name.clone(),
        };
        if behaviour == Behaviour::Ring {
            let at = now + self.config.ring_timeout;
            dialog.ring_until = Some(at);
            self.timers
                .push(Reverse((at, TimerKind::RingTimeout, dialog_key.clone())));
        }
        self.invites.insert(key.clone(), dialog_key.clone());
        self.dialogs.insert(dialog_key.clone(), dialog);
        if behaviour == Behaviour::Echo {
            self.answer(now, &dialog_key, &request);
        }
    }

    /// Sends the 2xx with our SDP and starts its retransmission (§13.3.1.4).
    fn answer(&mut self, now: Instant, dialog_key: &DialogKey, request: &Request) {
        let Some(dialog) = self.dialogs.get(dialog_key) else {
            return;
        };
        let tag = String::from_utf8_lossy(&dialog_key.local_tag).into_owned();
        let mut ok = self.response(request, 200, Some(&tag));
        for route in &dialog.route_set {
            ok.headers.push(HeaderName::RecordRoute, route.clone());
        }
        let ok_contact = contact(
            &dialog.user,
            &self.local_addr(&dialog.flow),
            dialog.flow.transport,
        );
        ok.headers.push(HeaderName::Contact, ok_contact);
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = dialog.local_sdp.clone();
        let invite = dialog.invite.clone();
        let first_answer = dialog.hangup_at.is_none();
        let payload = match self.transactions.send_response(now, &invite, ok) {
            Ok(payload) => payload,
            Err(error) => {
                debug!(%error, "2xx not sent");
                return;
            }
        };
        if first_answer {
            self.stats.calls_answered += 1;
        }
        let destination = self.transactions.destination(&invite);
        let t1 = self.config.timers.t1;
        let max_call_duration = self.config.max_call_duration;
        let Some(dialog) = self.dialogs.get_mut(dialog_key) else {
            return;
        };
        dialog.state = DialogState::Answered;
        dialog.ring_until = None;
        dialog.pending_invite = None;
        dialog.retransmit_interval = t1;
        let retransmit_at = now + t1;
        let ack_deadline = now + t1.saturating_mul(64);
        dialog.retransmit_at = Some(retransmit_at);
        dialog.ack_deadline = Some(ack_deadline);
        dialog.ok = Some(Transmit {
            flow: destination.unwrap_or(dialog.flow),
            payload,
        });
        self.timers.push(Reverse((
            retransmit_at,
            TimerKind::Retransmit,
            dialog_key.clone(),
        )));
        self.timers.push(Reverse((
            ack_deadline,
            TimerKind::AckTimeout,
            dialog_key.clone(),
        )));
        if first_answer {
            let hangup_at = now + max_call_duration;
            dialog.hangup_at = Some(hangup_at);
            self.timers.push(Reverse((
                hangup_at,
                TimerKind::MaxDuration,
                dialog_key.clone(),
            )));
        }
    }

    fn on_ack(&mut self, _now: Instant, ack: &Request) {
        let Some(key) = dialog_key_of(ack) else {
            return;
        };
        let Some(dialog) = self.dialogs.get_mut(&key) else {
            return;
        };
        let cseq = ack.headers.cseq().map(|c| c.seq).unwrap_or_default();
        if dialog.state == DialogState::Answered && cseq == dialog.invite_cseq {
            dialog.state = DialogState::Confirmed;
            dialog.ok = None;
            dialog.retransmit_at = None;
            dialog.ack_deadline = None;
            self.events.push_back(EndpointEvent::CallEstablished {
                call_id: String::from_utf8_lossy(&key.call_id).into_owned(),
            });
        }
    }

    fn on_cancel(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: &Request,
        invite: Option<TransactionKey>,
    ) {
        let Some(invite) = invite else {
            let response = self.response(request, 481, None);
            return self.respond(now, &key, response);
        };
        // §9.2: the To tag of the 200 for the CANCEL matches the INVITE's responses.
        let dialog_key = self.invites.get(&invite).cloned();
        let tag = dialog_key
            .as_ref()
            .map(|k| String::from_utf8_lossy(&k.local_tag).into_owned());
        let ok = self.response(request, 200, tag.as_deref());
        self.respond(now, &key, ok);
        let Some(dialog_key) = dialog_key else {
            return;
        };
        let ringing = self
            .dialogs
            .get(&dialog_key)
            .is_some_and(|d| d.state == DialogState::Ringing);
        if ringing {
            // §9.2: the INVITE gets 487 Request Terminated (sent by end_dialog).
            self.end_dialog(now, &dialog_key, EndReason::Cancelled);
        }
    }

    fn in_dialog(&mut self, now: Instant, key: TransactionKey, request: Request, tag: Bytes) {
        // §8.2: the same method, Require and content checks as outside a dialog.
        if let Err(rejection) = inspect::check_method(&request.method)
            .and_then(|()| inspect::check_require(&request))
            .and_then(|()| inspect::check_content(&request))
        {
            return self.reject(now, &key, &request, rejection);
        }
        let dialog_key = DialogKey {
            call_id: Bytes::copy_from_slice(
                request.headers.call_id().unwrap_or_default().as_bytes(),
            ),
            local_tag: tag,
        };
        let remote_tag = request
            .headers
            .from()
            .ok()
            .and_then(|f| f.tag().map(Bytes::copy_from_slice))
            .unwrap_or_default();
        let cseq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
        let Some(dialog) = self
            .dialogs
            .get_mut(&dialog_key)
            .filter(|d| d.remote_tag == remote_tag)
        else {
            let response = self.response(&request, 481, None);
            return self.respond(now, &key, response);
        };
        // §12.2.2: a lower CSeq than the last one is out of order.
        if cseq <= dialog.remote_cseq && request.method != Method::Ack {
            let mut response = self.response(&request, 500, None);
            response.reason = Bytes::from_static(b"CSeq Out of Order");
            return self.respond(now, &key, response);
        }
        dialog.remote_cseq = cseq;
        match request.method {
            Method::Bye => {
                let response = self.response(&request, 200, None);
                self.respond(now, &key, response);
                // §15.1.2: a BYE in an early dialog also ends the INVITE, with 487.
                self.end_dialog(now, &dialog_key, EndReason::RemoteBye);
            }
            Method::Invite => self.reinvite(now, key, &request, &dialog_key),
            Method::Options => {
                let response = self.options_ok(&request);
                self.respond(now, &key, response);
            }
            Method::Message => {
                let response = self.response(&request, 200, None);
                self.respond(now, &key, response);
            }
            _ => {
                let response = self.response(&request, 481, None);
                self.respond(now, &key, response);
            }
        }
    }

    /// A re-INVITE (§14.2): while the dialog is confirmed, the new offer is answered
    /// (a hold offer gets recvonly, RFC 3264 §8.4) with a new o= version; without an
    /// offer our last description is offered again. 500 with Retry-After while our
    /// previous 2xx awaits its ACK.
    fn reinvite(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: &Request,
        dialog_key: &DialogKey,
    ) {
        let Some(dialog) = self.dialogs.get(dialog_key) else {
            return;
        };
        if dialog.state != DialogState::Confirmed {
            let mut response = self.response(request, 500, None);
            response.headers.push(HeaderName::RetryAfter, "1");
            return self.respond(now, &key, response);
        }
        let local = LocalMedia {
            address: self.local_ip(&dialog.flow),
            port: 9,
            session_id: dialog.session_id,
            version: dialog.sdp_version + 1,
        };
        let local_sdp = match offer_in(request) {
            Ok(Some(offer)) => match sdp::answer(&offer, local) {
                Ok(answer) => Some(answer),
                Err(error) => {
                    // §14.2: a refused re-INVITE leaves the session as it was.
                    let mut response = self.response(request, 488, None);
                    response
                        .headers
                        .push(HeaderName::Warning, format!("304 tandem \"{error}\""));
                    return self.respond(now, &key, response);
                }
            },
            Ok(None) => None,
            Err(rejection) => return self.reject(now, &key, request, rejection),
        };
        let old_invite = dialog.invite.clone();
        self.invites.remove(&old_invite);
        self.invites.insert(key.clone(), dialog_key.clone());
        if let Some(dialog) = self.dialogs.get_mut(dialog_key) {
            dialog.invite = key;
            dialog.invite_cseq = request.headers.cseq().map(|c| c.seq).unwrap_or_default();
            if let Some(sdp) = local_sdp {
                dialog.local_sdp = Bytes::from(sdp);
                dialog.sdp_version += 1;
            }
        }
        self.answer(now, dialog_key, request);
    }

    fn on_timer(&mut self, now: Instant, at: Instant, kind: TimerKind, key: DialogKey) {
        let Some(dialog) = self.dialogs.get_mut(&key) else {
            return;
        };
        match kind {
            TimerKind::Retransmit if dialog.retransmit_at == Some(at) => {
                if let Some(ok) = &dialog.ok {
                    self.transmits.push_back(ok.clone());
                }
                // §13.3.1.4: the interval doubles up to T2.
                dialog.retransmit_interval =
                    (dialog.retransmit_interval * 2).min(self.config.timers.t2);
                let next = now + dialog.retransmit_interval;
                dialog.retransmit_at = Some(next);
                self.timers
                    .push(Reverse((next, TimerKind::Retransmit, key)));
            }
            TimerKind::AckTimeout if dialog.ack_deadline == Some(at) => {
                self.send_bye(now, &key, "SIP;cause=408;text=\"ACK Timeout\"");
                self.end_dialog(now, &key, EndReason::AckTimeout);
            }
            TimerKind::MaxDuration if dialog.hangup_at == Some(at) => {
                self.send_bye(now, &key, "SIP;cause=200;text=\"Maximum call duration\"");
                self.end_dialog(now, &key, EndReason::MaxDuration);
            }
            TimerKind::RingTimeout if dialog.ring_until == Some(at) => {
                let invite = dialog.invite.clone();
                if let Some(pending) = dialog.pending_invite.take() {
                    let tag = String::from_utf8_lossy(&key.local_tag).into_owned();
                    let response = self.response(&pending, 480, Some(&tag));
                    self.respond(now, &invite, response);
                }
                self.end_dialog(now, &key, EndReason::RingTimeout);
            }
            _ => {}
        }
    }

    /// BYE for a dialog whose 2xx was never acknowledged (§13.3.1.4).
    fn send_bye(&mut self, now: Instant, key: &DialogKey, reason: &'static str) {
        let advertised = self.config.advertised_address;
        let Some(dialog) = self.dialogs.get_mut(key) else {
            return;
        };
        dialog.local_cseq += 1;
        let uri = match sip_message::Uri::parse(&dialog.remote_target) {
            Ok(uri) => uri,
            Err(_) => return,
        };
        let mut bye = Request::new(Method::Bye, &uri);
        let transport = dialog.flow.transport;
        let branch = self.ids.branch();
        bye.headers.push(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch};rport",
                transport.as_str(),
                SocketAddr::new(
                    advertised.unwrap_or(dialog.flow.local.ip()),
                    dialog.flow.local.port()
                )
            ),
        );
        // §12.2.1.1: the route set, in order. The BYE goes back along the flow the
        // INVITE came on, which is the first hop of that route.
        for route in &dialog.route_set {
            bye.headers.push(HeaderName::Route, route.clone());
        }
        bye.headers.push(HeaderName::MaxForwards, "70");
        bye.headers.push(HeaderName::From, dialog.local_uri.clone());
        bye.headers.push(HeaderName::To, dialog.remote_uri.clone());
        bye.headers.push(HeaderName::CallId, key.call_id.clone());
        bye.headers
            .push(HeaderName::CSeq, format!("{} BYE", dialog.local_cseq));
        bye.headers
            .push(HeaderName::UserAgent, self.user_agent.clone());
        bye.headers.push(HeaderName::Reason, reason);
        let flow = dialog.flow;
        if let Err(error) = self.transactions.send_request(now, bye, flow) {
            debug!(%error, "BYE not sent");
        }
    }

    /// Ends a dialog. An INVITE still waiting for its final response gets 487, so its
    /// transaction completes whatever ended the call (CANCEL, BYE in the early dialog,
    /// a transport error).
    fn end_dialog(&mut self, now: Instant, key: &DialogKey, reason: EndReason) {
        let Some(mut dialog) = self.dialogs.remove(key) else {
            return;
        };
        self.invites.remove(&dialog.invite);
        if let Some(pending) = dialog.pending_invite.take() {
            let tag = String::from_utf8_lossy(&key.local_tag).into_owned();
            let response = self.response(&pending, 487, Some(&tag));
            self.respond(now, &dialog.invite, response);
        }
        self.events.push_back(EndpointEvent::CallEnded {
            call_id: String::from_utf8_lossy(&key.call_id).into_owned(),
            reason,
        });
    }

    /// §8.2.2.2: a request without a To tag whose From tag, Call-ID and CSeq match a
    /// live server transaction with another key arrived twice by different paths.
    fn is_merged(&mut self, key: &TransactionKey, request: &Request) -> bool {
        let (Ok(call_id), Ok(from), Ok(cseq)) = (
            request.headers.call_id(),
            request.headers.from(),
            request.headers.cseq(),
        ) else {
            return false;
        };
        let Some(from_tag) = from.tag() else {
            return false;
        };
        let merge_key = MergeKey {
            call_id: Bytes::copy_from_slice(call_id.as_bytes()),
            from_tag: Bytes::copy_from_slice(from_tag),
            cseq: cseq.seq,
            method: cseq.method,
        };
        match self.merge.get(&merge_key) {
            Some(existing) if existing != key => true,
            Some(_) => false,
            None => {
                self.merge_by_key.insert(key.clone(), merge_key.clone());
                self.merge.insert(merge_key, key.clone());
                false
            }
        }
    }

    // ---- output

    /// Our address as peers must see it on `flow` (Contact, Via sent-by, SDP).
    fn local_ip(&self, flow: &Flow) -> IpAddr {
        self.config.advertised_address.unwrap_or(flow.local.ip())
    }

    fn local_addr(&self, flow: &Flow) -> SocketAddr {
        SocketAddr::new(self.local_ip(flow), flow.local.port())
    }

    /// A response to `request` carrying our Server header.
    fn response(&self, request: &Request, status: u16, to_tag: Option<&str>) -> Response {
        let mut response = Response::from_request(request, status, to_tag);
        response
            .headers
            .push(HeaderName::Server, self.user_agent.clone());
        response
    }

    fn options_ok(&mut self, request: &Request) -> Response {
        let tag = self.ids.tag();
        let mut response = self.response(request, 200, Some(&tag));
        response.headers.push(HeaderName::Allow, ALLOW);
        response.headers.push(HeaderName::Accept, ACCEPT);
        response
            .headers
            .push(HeaderName::AcceptEncoding, "identity");
        response.headers.push(HeaderName::AcceptLanguage, "en");
        response.headers.push(HeaderName::Supported, SUPPORTED);
        response
    }

    fn reject(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        request: &Request,
        rejection: Rejection,
    ) {
        let tag = (rejection.status >= 200).then(|| self.ids.tag());
        let mut response = self.response(request, rejection.status, tag.as_deref());
        if let Some(reason) = rejection.reason {
            response.reason = Bytes::from(reason.replace(['\r', '\n'], " "));
        }
        for (name, value) in rejection.headers {
            response.headers.push(name, value);
        }
        self.respond(now, key, response);
    }

    fn respond(&mut self, now: Instant, key: &TransactionKey, response: Response) {
        if let Err(error) = self
            .transactions
            .send_response(now, key, response)
            .map(drop)
        {
            debug!(%error, "response not sent");
        }
    }

    /// Moves what the transaction layer produced into our queues, in order.
    fn pump(&mut self, now: Instant) {
        while let Some(transmit) = self.transactions.poll_transmit() {
            self.transmits.push_back(transmit);
        }
        while let Some(event) = self.transactions.poll_event() {
            match event {
                TransactionEvent::TransportError { key } => {
                    if let Some(dialog_key) = self.invites.get(&key).cloned() {
                        self.end_dialog(now, &dialog_key, EndReason::TransportError);
                    }
                }
                TransactionEvent::Timeout { key, .. } => {
                    if let Some(dialog_key) = self.invites.get(&key).cloned() {
                        self.end_dialog(now, &dialog_key, EndReason::Timeout);
                    }
                }
                TransactionEvent::Terminated { key } => {
                    if let Some(merge_key) = self.merge_by_key.remove(&key) {
                        self.merge.remove(&merge_key);
                    }
                }
                _ => {}
            }
        }
        // end_dialog may have queued responses.
        while let Some(transmit) = self.transactions.poll_transmit() {
            self.transmits.push_back(transmit);
        }
    }
}

/// RFC 3261 §18.2.1, RFC 3581 §4: record where the request really came from.
fn stamp_via(request: &mut Request, flow: &Flow) {
    let Ok(mut via) = request.headers.top_via() else {
        return;
    };
    let source = flow.remote.ip();
    let asked_rport = via.rport().is_some();
    let same_host = match (&via.host, source) {
        (Host::Ipv4(a), IpAddr::V4(b)) => *a == b,
        (Host::Ipv6(a), IpAddr::V6(b)) => *a == b,
        _ => false,
    };
    // A `received` the sender wrote itself is overwritten with the real source.
    if same_host && !asked_rport && via.received().is_none() {
        return;
    }
    via.set_param("received", Some(&source.to_string()));
    if asked_rport {
        via.set_param("rport", Some(&flow.remote.port().to_string()));
    }
    request
        .headers
        .replace_first_value(&HeaderName::Via, via.to_bytes());
}

fn top_branch(request: &Request) -> String {
    request
        .headers
        .top_via()
        .ok()
        .and_then(|v| v.branch().map(|b| String::from_utf8_lossy(b).into_owned()))
        .unwrap_or_default()
}

/// The dialog an in-dialog request (or an ACK) names: Call-ID and its To tag.
fn dialog_key_of(request: &Request) -> Option<DialogKey> {
    let to = request.headers.to().ok()?;
    let tag = to.tag()?;
    Some(DialogKey {
        call_id: Bytes::copy_from_slice(request.headers.call_id().ok()?.as_bytes()),
        local_tag: Bytes::copy_from_slice(tag),
    })
}

/// The SDP offer in a request body: the body itself, or the application/sdp part of a
/// multipart body (RFC 5621). `Ok(None)` when there is no offer.
fn offer_in(request: &Request) -> Result<Option<Bytes>, Rejection> {
    if request.body.is_empty() {
        return Ok(None);
    }
    let content_type = match request.headers.content_type() {
        Ok(Some(ct)) => ct,
        _ => return Ok(None),
    };
    if content_type.is("application", "sdp") {
        return Ok(Some(request.body.clone()));
    }
    if content_type.kind.eq_ignore_ascii_case(b"multipart") {
        let parts = multipart::parse(&content_type, &request.body).map_err(|e| Rejection {
            status: 400,
            reason: Some(e.reason_phrase().into_owned()),
            headers: Vec::new(),
        })?;
        return Ok(parts
            .into_iter()
            .find_map(|part| match part.content_type() {
                Ok(Some(ct)) if ct.is("application", "sdp") => Some(part.body),
                _ => None,
            }));
    }
    Ok(None)
}

/// Our Contact for a dialog: the user at the address the request arrived on.
/// RFC 7118 §5.2.2 defines one URI `transport` value, `ws`, for WS and WSS alike
/// (there is no `transport=wss`).
fn contact(user: &str, local: &SocketAddr, transport: Transport) -> String {
    match transport {
        Transport::Udp => format!("<sip:{user}@{local}>"),
        Transport::Wss => format!("<sip:{user}@{local};transport=ws>"),
        other => format!(
            "<sip:{user}@{local};transport={}>",
            other.as_str().to_ascii_lowercase()
        ),
    }
}

//! The endpoint: the user agent core (`sip-dialog`) plus the demo users of DESIGN.md.
//! The user agent does the protocol (transactions, dialogs, 2xx retransmission, CANCEL,
//! PRACK, session timers); this layer decides: whom a request is for (§8.2 checks),
//! what the demo users answer, and when a call has run too long.

use crate::inspect::{self, ACCEPT, Behaviour, Rejection, Target};
use crate::sdp::{self, LocalMedia};
use crate::trunk::{self, RegistrationState, Trunk, TrunkConfig, TrunkEvent, TrunkTarget};
use bytes::Bytes;
use sip_auth::{Credentials, DigestServer, ServerConfig, Verdict};
use sip_dialog::{
    ALLOW, Body, EndCause, Event, Reply, SUPPORTED, SessionId, Side, UserAgent, UserAgentConfig,
};
use sip_dialog::{Invite, Termination};
use sip_message::{HeaderName, Method, Request, Transport, multipart};
use sip_transaction::{Flow, TimerConfig, TransactionKey, Transmit};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use sip_dialog::session_timer::SessionTimerConfig;

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
    pub advertised_address: Option<IpAddr>,
    /// A call still up this long after its answer is ended with BYE, so a peer that
    /// never hangs up cannot hold state forever.
    pub max_call_duration: Duration,
    /// RFC 4028 session timers.
    pub session_timer: SessionTimerConfig,
    /// SIP trunks: registration, keepalive, inbound networks, outbound calls.
    pub trunks: Vec<TrunkConfig>,
    /// Who may send us requests outside a dialog.
    pub inbound: InboundConfig,
}

/// Who may send requests outside a dialog.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// `true`: anyone (the demo default). `false`: only a trunk's networks and peers
    /// that authenticate as one of `users` (others get 401, or 403 without users).
    pub accept_any: bool,
    /// The realm of our challenges (RFC 3261 §22.1).
    pub realm: String,
    /// Digest accounts: (user name, password).
    pub users: Vec<(String, String)>,
    /// How long a nonce we issue stays valid.
    pub nonce_ttl: Duration,
    /// Algorithms offered in challenges, in order (RFC 8760 §2.4).
    pub algorithms: Vec<sip_auth::Algorithm>,
}

impl Default for InboundConfig {
    fn default() -> Self {
        InboundConfig {
            accept_any: true,
            realm: "tandem".into(),
            users: Vec::new(),
            nonce_ttl: Duration::from_secs(300),
            algorithms: vec![sip_auth::Algorithm::Sha256, sip_auth::Algorithm::Md5],
        }
    }
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
            session_timer: SessionTimerConfig::default(),
            trunks: Vec::new(),
            inbound: InboundConfig::default(),
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
    /// A trunk registered, failed, went up or down.
    Trunk(TrunkEvent),
    /// An outbound call failed over to the trunk's next target: a new session.
    CallRedirected { from: SessionId, to: SessionId },
    /// An outbound call ended (`status`: the final response, 408 for a timeout, 503
    /// when unreachable, 200 after an answered call).
    OutboundEnded {
        session: SessionId,
        status: u16,
        cause: EndCause,
    },
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
    /// The user declined (486 for `busy`) or the call was refused (488, 422...).
    Rejected { status: u16 },
    /// The session timer expired without a refresh (RFC 4028 §10): we sent BYE.
    SessionExpired,
    /// A request in the dialog got 481/408 (RFC 3261 §12.2.1.2): we sent BYE.
    DialogFailed,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    RingTimeout,
    MaxDuration,
}

/// A call of a demo user.
#[derive(Debug)]
struct Call {
    call_id: String,
    /// The INVITE's transaction while it is unanswered.
    invite_tx: Option<TransactionKey>,
    ring_until: Option<Instant>,
    hangup_at: Option<Instant>,
    /// Why we are ending it, when we are.
    ending: Option<EndReason>,
    /// Our SDP and its o= version (RFC 3264 §8).
    local_sdp: Bytes,
    sdp_version: u64,
    session_id: u64,
    address: IpAddr,
}

/// The sans-IO endpoint: the user agent plus the demo users.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    users: HashMap<String, Behaviour>,
    ua: UserAgent,
    calls: HashMap<SessionId, Call>,
    timers: BinaryHeap<Reverse<(Instant, TimerKind, SessionId)>>,
    events: VecDeque<EndpointEvent>,
    invites_new: u64,
    calls_answered: u64,
    trunks: Vec<Trunk>,
    /// Our sockets, by transport: where requests we originate are sent from.
    local_addrs: Vec<(Transport, SocketAddr)>,
    /// Checks the credentials of inbound requests (created on first use: it needs `now`).
    digest: Option<DigestServer>,
    /// Calls we placed through a trunk, for failover and events.
    outbound: HashMap<SessionId, Outbound>,
}

/// A call placed through a trunk.
#[derive(Debug, Clone)]
struct Outbound {
    trunk: usize,
    to: String,
    body: Option<Body>,
    /// Targets tried so far (RFC 3263 §4.3 failover).
    attempts: usize,
    /// A provisional or final response came: no more failover.
    answered: bool,
}

/// Why a call could not be placed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    #[error("no trunk named `{0}`")]
    NoSuchTrunk(String),
    #[error("trunk `{0}` has no target yet (DNS has not answered, or gave nothing)")]
    NoTarget(String),
    #[error(transparent)]
    UserAgent(#[from] sip_dialog::Error),
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        let ua = UserAgent::new(UserAgentConfig {
            timers: config.timers,
            user_agent: config.user_agent.clone(),
            seed: config.seed,
            advertised_address: config.advertised_address,
            session_timer: config.session_timer,
            credentials: Vec::new(),
        });
        let mut ua = ua;
        let mut trunks = Vec::new();
        for trunk in &config.trunks {
            if let (Some(user), Some(password)) = (&trunk.username, &trunk.password) {
                let mut credentials = Credentials::new(user.clone(), password.clone());
                credentials.realm = trunk.realm.clone();
                ua.add_credentials(credentials);
            }
            trunks.push(Trunk::new(trunk.clone(), &mut ua));
        }
        Endpoint {
            trunks,
            local_addrs: Vec::new(),
            digest: None,
            outbound: HashMap::new(),
            users: config.users.iter().cloned().collect(),
            ua,
            calls: HashMap::new(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            invites_new: 0,
            calls_answered: 0,
            config,
        }
    }

    /// Our bound sockets (the runtime tells us after binding): requests we originate
    /// (REGISTER, OPTIONS, calls out) leave from these.
    pub fn set_local_addrs(&mut self, addrs: Vec<(Transport, SocketAddr)>) {
        self.local_addrs = addrs;
    }

    /// Starts what runs by itself: trunk registration and keepalive.
    pub fn start(&mut self, now: Instant) {
        for trunk in &mut self.trunks {
            trunk.start(now);
        }
    }

    /// The trunks and their proxy URIs, for the runtime to resolve (RFC 3263).
    pub fn trunk_proxies(&self) -> Vec<(String, String)> {
        self.trunks
            .iter()
            .map(|t| (t.config.name.clone(), t.config.proxy.clone()))
            .collect()
    }

    /// DNS resolved a trunk's proxy to these targets, in failover order.
    pub fn set_trunk_targets(&mut self, now: Instant, trunk: &str, targets: Vec<TrunkTarget>) {
        if let Some(t) = self.trunks.iter_mut().find(|t| t.config.name == trunk) {
            t.set_targets(now, targets);
        }
    }

    /// The state of a trunk's registration and keepalive.
    pub fn trunk_state(&self, trunk: &str) -> Option<(RegistrationState, Option<bool>)> {
        self.trunks
            .iter()
            .find(|t| t.config.name == trunk)
            .map(|t| (t.registration, t.up))
    }

    /// Shutdown: un-REGISTER every registered trunk (Expires: 0) and stop keepalives.
    /// The driver keeps running the endpoint for a short grace period so the
    /// un-REGISTERs can complete.
    pub fn shutdown(&mut self, now: Instant) {
        let local = self.local_addrs.clone();
        let local = move |t: Transport| local.iter().find(|(tr, _)| *tr == t).map(|(_, a)| *a);
        for trunk in &mut self.trunks {
            trunk.shutdown(now, &mut self.ua, &local);
        }
        self.drain(now);
    }

    /// Places a call to `to` (a user or number at the trunk's domain) through a trunk:
    /// the INVITE goes to the trunk's current target with the proxy as a pre-loaded
    /// Route (RFC 3261 §8.1.2), From set to the trunk's caller ID and P-Asserted-Identity
    /// (RFC 3325) when configured. On a timeout, a transport error or a 503 before any
    /// response, it is placed again to the next target (RFC 3263 §4.3); the new session
    /// is reported with [`EndpointEvent::CallRedirected`].
    pub fn call(
        &mut self,
        now: Instant,
        trunk: &str,
        to: &str,
        body: Option<Body>,
    ) -> Result<SessionId, CallError> {
        let index = self
            .trunks
            .iter()
            .position(|t| t.config.name == trunk)
            .ok_or_else(|| CallError::NoSuchTrunk(trunk.to_owned()))?;
        // Without a body of the caller's, our own offer (RFC 3264): the user agent
        // always offers in the INVITE.
        let body = body.or_else(|| {
            let local = self.local_addrs.first().map(|(_, a)| a.ip());
            let address = self
                .config
                .advertised_address
                .or(local)
                .unwrap_or(IpAddr::from([127, 0, 0, 1]));
            let media = LocalMedia {
                address,
                port: 9,
                session_id: self.ua.ids().next_u64() >> 1,
                version: 1,
            };
            Some(Body::sdp(sdp::offer(media)))
        });
        let outbound = Outbound {
            trunk: index,
            to: to.to_owned(),
            body,
            attempts: 0,
            answered: false,
        };
        let id = self.place(now, outbound)?;
        self.drain(now);
        Ok(id)
    }

    fn place(&mut self, now: Instant, mut outbound: Outbound) -> Result<SessionId, CallError> {
        let local = self.local_addrs.clone();
        let local = move |t: Transport| local.iter().find(|(tr, _)| *tr == t).map(|(_, a)| *a);
        let trunk = self
            .trunks
            .get(outbound.trunk)
            .ok_or_else(|| CallError::NoSuchTrunk(String::new()))?;
        let config = &trunk.config;
        let flow = trunk
            .flow(&local)
            .ok_or_else(|| CallError::NoTarget(config.name.clone()))?;
        let uri = format!("sip:{}@{}", outbound.to, config.domain);
        let from = config.caller_id.clone().unwrap_or_else(|| config.aor());
        let from = if from.contains('<') {
            from
        } else {
            format!("<{from}>")
        };
        let mut invite = Invite::new(uri.clone(), from, format!("<{uri}>"), flow);
        invite.routes = vec![Bytes::from(loose_route(&config.proxy))];
        if let Some(pai) = &config.asserted_identity {
            let pai = if pai.contains('<') {
                pai.clone()
            } else {
                format!("<{pai}>")
            };
            invite.headers.push((
                HeaderName::Other(Bytes::from_static(b"P-Asserted-Identity")),
                Bytes::from(pai),
            ));
        }
        invite.contact_user = config.user().to_owned();
        invite.body = outbound.body.clone();
        let id = self.ua.invite(now, invite)?;
        outbound.attempts += 1;
        self.outbound.insert(id, outbound);
        Ok(id)
    }

    /// Whether an un-REGISTER is still waiting for its answer.
    pub fn unregistering(&self) -> bool {
        self.trunks
            .iter()
            .any(|t| t.registration == RegistrationState::Unregistering)
    }

    /// A datagram, or one message framed from a stream, arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, data: Bytes, flow: Flow) {
        self.ua.handle_message(now, data, flow);
        self.drain(now);
    }

    /// The time asked for by [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.ua.handle_timeout(now);
        self.drain(now);
        let local = self.local_addrs.clone();
        let local = move |t: Transport| local.iter().find(|(tr, _)| *tr == t).map(|(_, a)| *a);
        for trunk in &mut self.trunks {
            if trunk.poll_timeout().is_some_and(|t| t <= now) {
                trunk.handle_timeout(now, &mut self.ua, &local);
            }
        }
        self.drain(now);
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, kind, id))) = self.timers.pop() else {
                break;
            };
            self.on_timer(now, at, kind, id);
            self.drain(now);
        }
    }

    /// The transport could not deliver to `flow` over a connection: its calls end.
    pub fn handle_transport_error(&mut self, now: Instant, flow: Flow) {
        self.ua.handle_transport_error(now, flow);
        self.drain(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.ua.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// The earliest time the endpoint must be woken at, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let trunks = self.trunks.iter().filter_map(Trunk::poll_timeout).min();
        let ours = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let ours = match (ours, trunks) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (self.ua.poll_timeout(), ours) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn stats(&self) -> Stats {
        let s = self.ua.stats();
        Stats {
            transactions: s.transactions,
            client_invite: s.client_invite,
            client_non_invite: s.client_non_invite,
            server_invite: s.server_invite,
            server_non_invite: s.server_non_invite,
            dialogs: s.sessions,
            requests_in: s.requests_in,
            responses_in: s.responses_in,
            invites_new: self.invites_new,
            calls_answered: self.calls_answered,
            rejected_invalid: s.rejected_invalid,
            dropped: s.dropped,
        }
    }

    /// The user agent underneath, for layers that place calls of their own.
    pub fn user_agent(&mut self) -> &mut UserAgent {
        &mut self.ua
    }

    // ---- the user agent's events

    fn drain(&mut self, now: Instant) {
        while let Some(event) = self.ua.poll_event() {
            self.on_event(now, event);
        }
    }

    fn on_event(&mut self, now: Instant, event: Event) {
        if let Some((tx, status, response)) = trunk::response_of(&event)
            && let Some(trunk) = self.trunks.iter_mut().find(|t| t.owns(tx))
        {
            if let Some(e) = trunk.on_response(now, tx, status, response) {
                self.events.push_back(EndpointEvent::Trunk(e));
            }
            return;
        }
        match event {
            Event::Dropped { remote, reason } => self
                .events
                .push_back(EndpointEvent::Dropped { remote, reason }),
            Event::IncomingCall {
                session,
                tx,
                request,
            } => self.on_invite(now, session, tx, &request),
            Event::Request {
                session,
                tx,
                request,
            } => self.on_request(now, session, tx, &request),
            Event::Modify {
                session,
                tx,
                request,
            } => self.on_modify(now, session, tx, &request),
            Event::Provisional { session, .. } => {
                if let Some(out) = self.outbound.get_mut(&session) {
                    out.answered = true;
                }
            }
            Event::Established { session, .. } if self.outbound.contains_key(&session) => {
                if let Some(out) = self.outbound.get_mut(&session) {
                    out.answered = true;
                }
                let call_id = self
                    .ua
                    .call_id(session)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .unwrap_or_default();
                self.events
                    .push_back(EndpointEvent::CallEstablished { call_id });
            }
            Event::Established { session, .. } => {
                if let Some(call) = self.calls.get_mut(&session) {
                    self.events.push_back(EndpointEvent::CallEstablished {
                        call_id: call.call_id.clone(),
                    });
                    if call.hangup_at.is_none() {
                        let at = now + self.config.max_call_duration;
                        call.hangup_at = Some(at);
                        self.timers
                            .push(Reverse((at, TimerKind::MaxDuration, session)));
                    }
                }
            }
            Event::Terminated {
                session,
                termination,
            } if self.outbound.contains_key(&session) => {
                self.outbound_ended(now, session, &termination);
            }
            Event::Terminated {
                session,
                termination,
            } => {
                let Some(call) = self.calls.remove(&session) else {
                    return;
                };
                let reason = call
                    .ending
                    .unwrap_or(match (termination.by, termination.cause) {
                        (_, EndCause::Bye) => EndReason::RemoteBye,
                        (_, EndCause::Cancelled) => EndReason::Cancelled,
                        (_, EndCause::AckTimeout) => EndReason::AckTimeout,
                        (_, EndCause::TransportError) => EndReason::TransportError,
                        (_, EndCause::Timeout) => EndReason::Timeout,
                        (_, EndCause::SessionExpired) => EndReason::SessionExpired,
                        (_, EndCause::DialogFailed { .. }) => EndReason::DialogFailed,
                        (Side::Local | Side::Remote, EndCause::Rejected { status }) => {
                            EndReason::Rejected { status }
                        }
                        _ => EndReason::Timeout,
                    });
                self.events.push_back(EndpointEvent::CallEnded {
                    call_id: call.call_id,
                    reason,
                });
            }
            _ => {}
        }
    }

    fn on_invite(
        &mut self,
        now: Instant,
        session: SessionId,
        tx: TransactionKey,
        request: &Request,
    ) {
        self.invites_new += 1;
        if let Err(reply) = self.admit(now, &tx, request) {
            return self.respond(now, &tx, reply);
        }
        let target = match inspect::inspect(request, |user| self.users.get(user).copied()) {
            Ok(target) => target,
            Err(rejection) => return self.reject(now, &tx, rejection),
        };
        let Target::User { name, behaviour } = target else {
            return self.respond(now, &tx, Reply::new(404));
        };
        let call_id = request.headers.call_id().unwrap_or_default().to_owned();
        self.events.push_back(EndpointEvent::CallReceived {
            call_id: call_id.clone(),
            user: name,
        });
        let address = self.local_ip(session);
        let mut call = Call {
            call_id,
            invite_tx: Some(tx.clone()),
            ring_until: None,
            hangup_at: None,
            ending: None,
            local_sdp: Bytes::new(),
            sdp_version: 1,
            session_id: self.ua.ids().next_u64() >> 1,
            address,
        };
        if behaviour == Behaviour::Busy {
            self.calls.insert(session, call);
            return self.respond(now, &tx, Reply::new(486));
        }
        let local = call.media(call.sdp_version);
        let local_sdp = match offer_in(request) {
            Ok(Some(offer)) => match sdp::answer(&offer, local) {
                Ok(answer) => answer,
                Err(error) => {
                    self.calls.insert(session, call);
                    let reply = Reply::new(488)
                        .with_header(HeaderName::Warning, format!("304 tandem \"{error}\""));
                    return self.respond(now, &tx, reply);
                }
            },
            // No offer: ours goes in the 2xx and the answer comes in the ACK (§13.2.1).
            Ok(None) => sdp::offer(local),
            Err(rejection) => return self.reject(now, &tx, rejection),
        };
        call.local_sdp = Bytes::from(local_sdp);
        if behaviour == Behaviour::Ring {
            let at = now + self.config.ring_timeout;
            call.ring_until = Some(at);
            self.timers
                .push(Reverse((at, TimerKind::RingTimeout, session)));
        }
        let answer = (behaviour == Behaviour::Echo).then(|| Body::sdp(call.local_sdp.clone()));
        self.calls.insert(session, call);
        self.respond(now, &tx, Reply::new(180));
        if let Some(body) = answer {
            self.calls_answered += 1;
            if let Some(call) = self.calls.get_mut(&session) {
                call.invite_tx = None;
            }
            self.respond(now, &tx, Reply::new(200).with_body(body));
        }
    }

    fn on_request(
        &mut self,
        now: Instant,
        session: Option<SessionId>,
        tx: TransactionKey,
        request: &Request,
    ) {
        if session.is_some() {
            if let Err(rejection) = inspect::check_content(request) {
                return self.reject(now, &tx, rejection);
            }
            let reply = match request.method {
                Method::Options => self.options_ok(),
                Method::Message | Method::Info => Reply::new(200),
                _ => Reply::new(501).with_header(HeaderName::Allow, ALLOW),
            };
            return self.respond(now, &tx, reply);
        }
        if let Err(reply) = self.admit(now, &tx, request) {
            return self.respond(now, &tx, reply);
        }
        if let Err(rejection) = inspect::inspect(request, |user| self.users.get(user).copied()) {
            return self.reject(now, &tx, rejection);
        }
        let reply = match request.method {
            Method::Options => self.options_ok(),
            // RFC 3428: a page-mode MESSAGE to a user is accepted (echoed by [calls]).
            Method::Message => Reply::new(200),
            // Anything else without a To tag is outside any dialog.
            _ => Reply::new(481),
        };
        self.respond(now, &tx, reply);
    }

    /// A re-INVITE or UPDATE: the new offer is answered (a hold offer gets recvonly,
    /// RFC 3264 §8.4) with a new o= version; a re-INVITE without an offer gets our last
    /// description; an UPDATE without a body (a session refresh) gets 200.
    fn on_modify(
        &mut self,
        now: Instant,
        session: SessionId,
        tx: TransactionKey,
        request: &Request,
    ) {
        if let Err(rejection) = inspect::check_content(request) {
            return self.reject(now, &tx, rejection);
        }
        let Some(call) = self.calls.get_mut(&session) else {
            return self.respond(now, &tx, Reply::new(481));
        };
        let reply = match offer_in(request) {
            Ok(Some(offer)) => match sdp::answer(&offer, call.media(call.sdp_version + 1)) {
                Ok(answer) => {
                    call.sdp_version += 1;
                    call.local_sdp = Bytes::from(answer);
                    Reply::new(200).with_body(Body::sdp(call.local_sdp.clone()))
                }
                // §14.2: a refused offer leaves the session as it was.
                Err(error) => Reply::new(488)
                    .with_header(HeaderName::Warning, format!("304 tandem \"{error}\"")),
            },
            Ok(None) if request.method == Method::Invite => {
                Reply::new(200).with_body(Body::sdp(call.local_sdp.clone()))
            }
            Ok(None) => Reply::new(200),
            Err(rejection) => return self.reject(now, &tx, rejection),
        };
        self.respond(now, &tx, reply);
    }

    fn on_timer(&mut self, now: Instant, at: Instant, kind: TimerKind, id: SessionId) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        match kind {
            TimerKind::RingTimeout if call.ring_until == Some(at) => {
                call.ending = Some(EndReason::RingTimeout);
                if let Some(tx) = call.invite_tx.take() {
                    self.respond(now, &tx, Reply::new(480));
                }
            }
            TimerKind::MaxDuration if call.hangup_at == Some(at) => {
                call.ending = Some(EndReason::MaxDuration);
                if let Err(error) = self.ua.hangup(
                    now,
                    id,
                    Some("SIP;cause=200;text=\"Maximum call duration\""),
                ) {
                    tracing::debug!(%error, "hangup failed");
                }
            }
            _ => {}
        }
    }

    /// An outbound call ended: fail over to the next target when the trunk's target
    /// timed out, could not be reached or answered 503 before anything else.
    fn outbound_ended(&mut self, now: Instant, session: SessionId, termination: &Termination) {
        let Some(out) = self.outbound.remove(&session) else {
            return;
        };
        let retriable = !out.answered
            && matches!(
                termination.cause,
                EndCause::Timeout | EndCause::TransportError | EndCause::Rejected { status: 503 }
            );
        let targets = self.trunks.get(out.trunk).map_or(0, |t| t.target_count());
        if retriable && out.attempts < targets {
            if let Some(trunk) = self.trunks.get_mut(out.trunk) {
                trunk.fail_over();
            }
            match self.place(now, out) {
                Ok(new) => {
                    self.events.push_back(EndpointEvent::CallRedirected {
                        from: session,
                        to: new,
                    });
                    return;
                }
                Err(error) => tracing::debug!(%error, "failover not possible"),
            }
        }
        let status = match termination.cause {
            EndCause::Rejected { status } => status,
            EndCause::Timeout => 408,
            EndCause::TransportError => 503,
            _ => 200,
        };
        self.events.push_back(EndpointEvent::OutboundEnded {
            session,
            status,
            cause: termination.cause,
        });
    }

    /// Whether a request from outside any dialog may go on: anyone when `accept_any`;
    /// otherwise a trunk's networks, or a peer with valid digest credentials
    /// (RFC 3261 §22.4). Others get a 401 challenge, or 403 when we have no accounts.
    fn admit(&mut self, now: Instant, tx: &TransactionKey, request: &Request) -> Result<(), Reply> {
        if self.config.inbound.accept_any {
            return Ok(());
        }
        let source = self.ua.transaction_flow(tx).map(|f| f.remote.ip());
        if source.is_some_and(|ip| self.trunks.iter().any(|t| t.accepts_from(ip))) {
            return Ok(());
        }
        if self.config.inbound.users.is_empty() {
            return Err(Reply::new(403));
        }
        let inbound = &self.config.inbound;
        let ua = &mut self.ua;
        let digest = self.digest.get_or_insert_with(|| {
            let mut secret = [0u8; 32];
            for chunk in secret.chunks_mut(8) {
                chunk.copy_from_slice(&ua.ids().next_u64().to_le_bytes());
            }
            let mut config = ServerConfig::new(inbound.realm.clone(), secret);
            config.nonce_ttl = inbound.nonce_ttl;
            if !inbound.algorithms.is_empty() {
                config.algorithms = inbound.algorithms.clone();
            }
            DigestServer::new(config, now)
        });
        let users = &inbound.users;
        let password = |user: &str| {
            users
                .iter()
                .find(|(name, _)| name == user)
                .map(|(_, p)| p.clone())
        };
        let verdict = request
            .headers
            .get(&HeaderName::Authorization)
            .map(|value| {
                digest.verify(
                    now,
                    request.method.as_str(),
                    value,
                    &request.body,
                    &password,
                )
            });
        match verdict {
            Some(Verdict::Authorized { .. }) => Ok(()),
            other => {
                let stale = other == Some(Verdict::Stale);
                let mut reply = Reply::new(401);
                for value in digest.challenge(now, stale) {
                    reply = reply.with_header(HeaderName::WwwAuthenticate, value);
                }
                Err(reply)
            }
        }
    }

    // ---- output

    fn respond(&mut self, now: Instant, tx: &TransactionKey, reply: Reply) {
        if let Err(error) = self.ua.respond(now, tx, reply) {
            tracing::debug!(%error, "response not sent");
        }
    }

    fn reject(&mut self, now: Instant, tx: &TransactionKey, rejection: Rejection) {
        let mut reply = Reply::new(rejection.status);
        reply.reason = rejection.reason;
        reply.headers = rejection.headers;
        self.respond(now, tx, reply);
    }

    fn options_ok(&self) -> Reply {
        Reply::new(200)
            .with_header(HeaderName::Allow, ALLOW)
            .with_header(HeaderName::Accept, ACCEPT)
            .with_header(HeaderName::AcceptEncoding, "identity")
            .with_header(HeaderName::AcceptLanguage, "en")
            .with_header(HeaderName::Supported, SUPPORTED)
    }

    /// Our address as the peer must see it in SDP: the advertised address, else the
    /// address of the socket the INVITE arrived on.
    fn local_ip(&self, session: SessionId) -> IpAddr {
        self.config.advertised_address.unwrap_or_else(|| {
            self.ua
                .flow(session)
                .map_or(IpAddr::from([127, 0, 0, 1]), |f| f.local.ip())
        })
    }
}

impl Call {
    fn media(&self, version: u64) -> LocalMedia {
        LocalMedia {
            address: self.address,
            // No media yet: the discard port, until [media] gives echo a real stream.
            port: 9,
            session_id: self.session_id,
            version,
        }
    }
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

/// The proxy URI as a loose-routing Route value (RFC 3261 §16.12.1.1, `lr`).
fn loose_route(proxy: &str) -> String {
    let proxy = proxy.trim().trim_start_matches('<').trim_end_matches('>');
    if proxy
        .split(';')
        .skip(1)
        .any(|p| p.eq_ignore_ascii_case("lr"))
    {
        format!("<{proxy}>")
    } else {
        format!("<{proxy};lr>")
    }
}

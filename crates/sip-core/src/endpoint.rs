//! The endpoint: the user agent core (`sip-dialog`) plus what sits between it and the
//! call layer. The user agent does the protocol (transactions, dialogs, 2xx
//! retransmission, CANCEL, PRACK, session timers); this layer decides whom a request
//! outside a dialog is for (admission, the §8.2 checks, the known users), answers OPTIONS
//! itself, runs the trunks, and hands every session event up to the call layer
//! ([`EndpointEvent::Session`]).

use crate::guard::{self, Guard, GuardConfig, GuardStats, Screen};
use crate::inspect::{self, ACCEPT, Rejection, Target};
use crate::sdp::{self, LocalMedia};
use crate::trunk::{self, RegistrationState, Trunk, TrunkConfig, TrunkEvent, TrunkTarget};
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use sip_auth::{Credentials, DigestServer, ServerConfig, Verdict};
use sip_dialog::{ALLOW, Body, EndCause, Event, Invite, Reply, SUPPORTED, SessionId, Termination};
use sip_dialog::{UserAgent, UserAgentConfig};
use sip_message::{HeaderName, Method, Request, Transport};
use sip_transaction::{Flow, TimerConfig, TransactionKey, Transmit};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

pub use sip_dialog::session_timer::SessionTimerConfig;

/// What the endpoint needs; the daemon builds it from its config file.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// T1, T2, T4 (RFC 3261 §17.1.1.1).
    pub timers: TimerConfig,
    /// Sent in `Server` and `User-Agent`.
    pub user_agent: String,
    /// Seeds tags and branches (the core has no entropy source of its own).
    pub seed: u64,
    /// The address written in Contact, Via and SDP instead of the socket's own: needed
    /// when listening on a wildcard address (0.0.0.0 or ::), which is no address a peer
    /// can reach. `None`: the address of the socket the request arrived on.
    pub advertised_address: Option<IpAddr>,
    /// RFC 4028 session timers.
    pub session_timer: SessionTimerConfig,
    /// SIP trunks: registration, keepalive, inbound networks, outbound calls.
    pub trunks: Vec<TrunkConfig>,
    /// Who may send us requests outside a dialog.
    pub inbound: InboundConfig,
    /// Overload and abuse protection ([`crate::guard`]).
    pub guard: GuardConfig,
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
            user_agent: concat!("Tandem/", env!("CARGO_PKG_VERSION")).into(),
            seed: 0,
            advertised_address: None,
            session_timer: SessionTimerConfig::default(),
            trunks: Vec::new(),
            inbound: InboundConfig::default(),
            guard: GuardConfig::default(),
        }
    }
}

/// What happened, for the call layer above (and the driver's log).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// Input that was not processed: unparseable, or a response nothing wanted.
    Dropped { remote: SocketAddr, reason: String },
    /// A user agent event for the call layer: an INVITE or request for a known user
    /// (through admission and the §8.2 checks already), or anything that happened to a
    /// session. Indications wait for an answer through
    /// [`UserAgent::respond`](sip_dialog::UserAgent::respond).
    Session(Box<Event>),
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
    /// Requests refused with 400/505 because they failed validation.
    pub rejected_invalid: u64,
    /// Messages dropped: unparseable, invalid responses, stray responses.
    pub dropped: u64,
    /// Requests dropped by the per-source rate limit (over it, or banned).
    pub rate_limited: u64,
    /// Sources banned since start.
    pub banned_sources: u64,
    /// Requests dropped for a scanner User-Agent.
    pub scanner_dropped: u64,
    /// Initial INVITEs answered 503 by the call limits.
    pub over_capacity: u64,
    /// Requests refused for wrong credentials (403), known user or not.
    pub auth_failed: u64,
    /// Messages re-sent (requests on the transaction timers, the last response for a
    /// retransmitted request, 2xx until their ACK, ACKs for retransmitted 2xx).
    pub retransmissions: u64,
}

/// The sans-IO endpoint: the user agent, the trunks and the door to the call layer.
#[derive(Debug)]
pub struct Endpoint {
    config: EndpointConfig,
    /// Request-URI user parts a request outside a dialog may be for; others get 404.
    users: HashSet<String>,
    /// Routing rules decide who exists: every user is handed up.
    accept_any_user: bool,
    ua: UserAgent,
    events: VecDeque<EndpointEvent>,
    invites_new: u64,
    trunks: Vec<Trunk>,
    /// Our sockets, by transport: where requests we originate are sent from.
    local_addrs: Vec<(Transport, SocketAddr)>,
    /// Checks the credentials of inbound requests (created on first use: it needs `now`).
    digest: Option<DigestServer>,
    /// Calls we placed through a trunk, for failover and events.
    outbound: HashMap<SessionId, Outbound>,
    /// Overload and abuse protection, before any transaction is made.
    guard: Guard,
    /// The guard's stateless answers (503), sent before the user agent's.
    guard_transmits: VecDeque<Transmit>,
    auth_failed: u64,
    /// The password an unknown user is checked against: random, never configured.
    unknown_password: String,
    /// Draining (graceful shutdown): new requests outside a dialog get 503 with this
    /// Retry-After (seconds); see [`Endpoint::set_draining`].
    draining: Option<u32>,
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
    #[error("a trunk named `{0}` exists already")]
    TrunkExists(String),
    #[error(transparent)]
    UserAgent(#[from] sip_dialog::Error),
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Endpoint {
        let mut ua = UserAgent::new(UserAgentConfig {
            timers: config.timers,
            user_agent: config.user_agent.clone(),
            seed: config.seed,
            advertised_address: config.advertised_address,
            session_timer: config.session_timer,
            credentials: Vec::new(),
        });
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
            guard: Guard::new(config.guard.clone(), &config.user_agent, config.seed),
            guard_transmits: VecDeque::new(),
            auth_failed: 0,
            unknown_password: format!("{:016x}{:016x}", ua.ids().next_u64(), ua.ids().next_u64()),
            trunks,
            local_addrs: Vec::new(),
            digest: None,
            outbound: HashMap::new(),
            draining: None,
            users: HashSet::new(),
            accept_any_user: false,
            ua,
            events: VecDeque::new(),
            invites_new: 0,
            config,
        }
    }

    /// Adds a trunk at run time (a user endpoint's registration) and starts it. Its
    /// proxy, if named by a domain, needs [`set_trunk_targets`](Self::set_trunk_targets).
    pub fn add_trunk(&mut self, now: Instant, config: TrunkConfig) -> Result<(), CallError> {
        if self.trunks.iter().any(|t| t.config.name == config.name) {
            return Err(CallError::TrunkExists(config.name));
        }
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            let mut credentials = Credentials::new(user.clone(), password.clone());
            credentials.realm = config.realm.clone();
            self.ua.add_credentials(credentials);
        }
        let mut trunk = Trunk::new(config, &mut self.ua);
        trunk.start(now);
        self.trunks.push(trunk);
        Ok(())
    }

    /// Requests outside a dialog for `user` (a Request-URI user part) are handed up
    /// from now on; before, they get 404.
    pub fn add_user(&mut self, user: &str) {
        self.users.insert(user.to_owned());
    }

    /// Requests for `user` get 404 from now on.
    pub fn remove_user(&mut self, user: &str) {
        self.users.remove(user);
    }

    /// Whether requests for `user` are handed up.
    pub fn has_user(&self, user: &str) -> bool {
        self.accept_any_user || self.users.contains(user)
    }

    /// The name of the trunk a request from `source` comes from, if any.
    pub fn trunk_of_source(&self, source: std::net::IpAddr) -> Option<String> {
        self.trunks
            .iter()
            .find(|t| t.accepts_from(source))
            .map(|t| t.config.name.clone())
    }

    /// Hands up requests for any user (routing rules decide), not only the added ones.
    pub fn set_accept_any_user(&mut self, accept: bool) {
        self.accept_any_user = accept;
    }

    /// The configuration the endpoint runs with.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Our bound sockets, by transport.
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.local_addrs
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

    /// How an INVITE to `to` (a user part) goes out through trunk `name`: its
    /// Request-URI at the trunk's domain, the flow to the trunk's current target, the
    /// proxy as a loose route, the caller ID and P-Asserted-Identity it is configured
    /// with, and the Contact user. Its credentials answer the trunk's challenges.
    pub fn trunk_route(&self, name: &str, to: &str) -> Result<TrunkRoute, CallError> {
        let trunk = self
            .trunks
            .iter()
            .find(|t| t.config.name == name)
            .ok_or_else(|| CallError::NoSuchTrunk(name.to_owned()))?;
        let local = self.local_addrs.clone();
        let local = move |t: Transport| local.iter().find(|(tr, _)| *tr == t).map(|(_, a)| *a);
        let config = &trunk.config;
        let flow = trunk
            .flow(&local)
            .ok_or_else(|| CallError::NoTarget(config.name.clone()))?;
        let angle = |v: &String| {
            if v.contains('<') {
                v.clone()
            } else {
                format!("<{v}>")
            }
        };
        Ok(TrunkRoute {
            uri: format!("sip:{to}@{}", config.domain),
            flow,
            routes: vec![Bytes::from(loose_route(&config.proxy))],
            caller_id: config.caller_id.as_ref().map(angle),
            from: angle(&config.aor()),
            asserted_identity: config.asserted_identity.as_ref().map(angle),
            contact_user: config.user().to_owned(),
        })
    }

    fn place(&mut self, now: Instant, mut outbound: Outbound) -> Result<SessionId, CallError> {
        let name = self
            .trunks
            .get(outbound.trunk)
            .map(|t| t.config.name.clone())
            .ok_or_else(|| CallError::NoSuchTrunk(String::new()))?;
        let route = self.trunk_route(&name, &outbound.to)?;
        let from = route.caller_id.clone().unwrap_or(route.from);
        let mut invite = Invite::new(
            route.uri.clone(),
            from,
            format!("<{}>", route.uri),
            route.flow,
        );
        invite.routes = route.routes;
        if let Some(pai) = route.asserted_identity {
            invite.headers.push((
                HeaderName::Other(Bytes::from_static(b"P-Asserted-Identity")),
                Bytes::from(pai),
            ));
        }
        invite.contact_user = route.contact_user;
        invite.body = outbound.body.clone();
        let id = self.ua.invite(now, invite)?;
        outbound.attempts += 1;
        self.outbound.insert(id, outbound);
        Ok(id)
    }

    /// How many of our non-INVITE requests (the BYEs of calls ended at a shutdown,
    /// un-REGISTERs) still wait for their final response.
    pub fn requests_awaiting_answer(&self) -> usize {
        self.ua.requests_awaiting_answer()
    }

    /// Whether an un-REGISTER is still waiting for its answer.
    pub fn unregistering(&self) -> bool {
        self.trunks
            .iter()
            .any(|t| t.registration == RegistrationState::Unregistering)
    }

    /// A datagram, or one message framed from a stream, arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, data: Bytes, flow: Flow) {
        // What the call layer's last commands left queued (a call it ended) is taken
        // first, so the guard's count of calls is up to date (`pump` does it too).
        self.drain(now);
        let trusted = self.trunks.iter().any(|t| t.accepts_from(flow.remote.ip()));
        match self.guard.screen(now, &data, flow, trusted, &self.ua) {
            Screen::Pass => self.ua.handle_message(now, data, flow),
            Screen::Drop => {}
            Screen::Answer(transmit) => self.guard_transmits.push_back(transmit),
        }
        self.drain(now);
    }

    /// Replaces the overload and abuse settings (`[limits]`, `[security]`) at run time;
    /// live calls, bans and counters are kept.
    pub fn set_guard_config(&mut self, config: GuardConfig) {
        self.guard.set_config(config.clone());
        self.config.guard = config;
    }

    /// The guard's counters and gauges.
    pub fn guard_stats(&self) -> GuardStats {
        self.guard.stats()
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
    }

    /// The transport could not deliver to `flow` over a connection: its calls end.
    pub fn handle_transport_error(&mut self, now: Instant, flow: Flow) {
        self.ua.handle_transport_error(now, flow);
        self.drain(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.guard_transmits
            .pop_front()
            .or_else(|| self.ua.poll_transmit())
    }

    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        self.events.pop_front()
    }

    /// The earliest time the endpoint must be woken at, if any.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let trunks = self.trunks.iter().filter_map(Trunk::poll_timeout).min();
        match (self.ua.poll_timeout(), trunks) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn stats(&self) -> Stats {
        let s = self.ua.stats();
        let g = self.guard.stats();
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
            rejected_invalid: s.rejected_invalid,
            dropped: s.dropped,
            rate_limited: g.rate_limited,
            banned_sources: g.banned_sources,
            scanner_dropped: g.scanner_dropped,
            over_capacity: g.over_capacity,
            auth_failed: self.auth_failed,
            retransmissions: s.retransmissions,
        }
    }

    /// Takes in what the user agent did since the last input: the call layer calls this
    /// after acting through [`user_agent`](Self::user_agent), so the events of its
    /// commands are queued in order.
    pub fn pump(&mut self, now: Instant) {
        self.drain(now);
    }

    /// The user agent underneath: the call layer answers and acts through it.
    pub fn user_agent(&mut self) -> &mut UserAgent {
        &mut self.ua
    }

    /// The user agent underneath, to read.
    pub fn user_agent_ref(&self) -> &UserAgent {
        &self.ua
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
        match &event {
            Event::Dropped { remote, reason } => {
                let (remote, reason) = (*remote, reason.clone());
                return self
                    .events
                    .push_back(EndpointEvent::Dropped { remote, reason });
            }
            Event::IncomingCall {
                tx,
                request,
                session,
            } => {
                self.invites_new += 1;
                self.guard.call_started(*session);
                if self.refuse_while_draining(now, tx) {
                    return;
                }
                if !self.admit_and_inspect(now, tx, request) {
                    return;
                }
            }
            Event::Request {
                session: None,
                tx,
                request,
            } => {
                if self.refuse_while_draining(now, tx) {
                    return;
                }
                if !self.admit_and_inspect(now, tx, request) {
                    return;
                }
                // OPTIONS outside a dialog is answered here, for any user or none.
                if request.method == Method::Options {
                    let reply = self.options_ok();
                    return self.respond(now, tx, reply);
                }
            }
            Event::Provisional { session, .. } | Event::Established { session, .. } => {
                if let Some(out) = self.outbound.get_mut(session) {
                    out.answered = true;
                }
            }
            Event::Terminated { session, .. } if !self.outbound.contains_key(session) => {
                self.guard.call_ended(*session);
            }
            Event::Terminated {
                session,
                termination,
            } if self.outbound.contains_key(session)
                && self.outbound_ended(now, *session, termination) =>
            {
                return;
            }
            _ => {}
        }
        self.events
            .push_back(EndpointEvent::Session(Box::new(event)));
    }

    /// Admission, then the §8.2 checks and the user lookup. Answers the request and
    /// returns `false` when it may not go on.
    fn admit_and_inspect(&mut self, now: Instant, tx: &TransactionKey, request: &Request) -> bool {
        // A method we do not know is refused (501, RFC 3261 §8.2.1) before any
        // credentials are looked at: checking them first would answer 403 to a wrong
        // password and 501 to a right one, a guessing oracle for a method the security
        // log can only call `other`.
        if let Method::Extension(_) = request.method
            && let Err(rejection) = inspect::check_method(&request.method)
        {
            self.reject(now, tx, rejection);
            return false;
        }
        if let Err(reply) = self.admit(now, tx, request) {
            self.respond(now, tx, reply);
            return false;
        }
        // OPTIONS is answered by the endpoint for every user alike (uniform answers: a
        // scanner's OPTIONS cannot tell which users exist).
        let any = self.accept_any_user || request.method == Method::Options;
        match inspect::inspect(request, |user| any || self.users.contains(user)) {
            Ok(Target::User { .. }) => true,
            Ok(Target::Server) if request.method == Method::Options => true,
            Ok(Target::Server) => {
                self.respond(now, tx, Reply::new(404));
                false
            }
            Err(rejection) => {
                self.reject(now, tx, rejection);
                false
            }
        }
    }

    /// An outbound call ended: fail over to the next target when the trunk's target
    /// timed out, could not be reached or answered 503 before anything else.
    /// Returns `true` when the call was placed again (the old session is not reported).
    fn outbound_ended(
        &mut self,
        now: Instant,
        session: SessionId,
        termination: &Termination,
    ) -> bool {
        let Some(out) = self.outbound.remove(&session) else {
            return false;
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
                    return true;
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
        false
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
        // An unknown user is checked against a password nobody knows, so the answer
        // (403) and the work done are those of a wrong password (uniform answers).
        let unknown = &self.unknown_password;
        let password = |user: &str| {
            Some(
                users
                    .iter()
                    .find(|(name, _)| name == user)
                    .map_or_else(|| unknown.clone(), |(_, p)| p.clone()),
            )
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
            // Wrong credentials, whether the user exists or not: 403 (RFC 3261 §22.4
            // lets a server refuse instead of challenging again), logged for fail2ban.
            Some(Verdict::BadResponse | Verdict::UnknownUser) => {
                self.auth_failed += 1;
                let user = request
                    .headers
                    .get(&HeaderName::Authorization)
                    .and_then(|v| sip_auth::Authorization::parse(v).ok())
                    .map(|a| a.username)
                    .unwrap_or_default();
                tracing::warn!(
                    target: guard::SECURITY_TARGET,
                    "security: auth-failed src={} user={} method={}",
                    source.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
                    guard::sanitize(&user),
                    guard::log_method(request.method.as_str().as_bytes())
                );
                Err(Reply::new(403))
            }
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

    /// The 200 to OPTIONS (RFC 3261 §11.2): what we allow, accept and support.
    pub fn options_ok(&self) -> Reply {
        Reply::new(200)
            .with_header(HeaderName::Allow, ALLOW)
            .with_header(HeaderName::Accept, ACCEPT)
            .with_header(HeaderName::AcceptEncoding, "identity")
            .with_header(HeaderName::AcceptLanguage, "en")
            .with_header(HeaderName::Supported, SUPPORTED)
    }
}

/// The proxy URI as a loose-routing Route value (RFC 3261 §16.12.1.1, `lr`).
/// An INVITE's way out through a trunk ([`Endpoint::trunk_route`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRoute {
    /// `sip:<to>@<trunk domain>`.
    pub uri: String,
    pub flow: Flow,
    /// The proxy as a loose route (RFC 3261 §16.12.1.1).
    pub routes: Vec<Bytes>,
    /// The configured caller ID (name-addr), if any.
    pub caller_id: Option<String>,
    /// The trunk's own address of record (name-addr).
    pub from: String,
    pub asserted_identity: Option<String>,
    pub contact_user: String,
}

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

mod reload;
pub use reload::TrunkChanges;

//! The sans-IO call engine: the endpoint underneath plus every call, conversation and
//! endpoint of the applications above.
//!
//! Verbs as every core machine has them (`handle_message`, `handle_timeout`,
//! `handle_transport_error`, `poll_transmit`, `poll_timeout`, `poll_event`), and the
//! application's commands (`establish`, `accept`, `decline`, ...), each taking `now`.

mod b2bua;
mod media_join;
mod park;
mod reload;
mod rooms;
mod routes;
mod transfer;

pub(crate) use b2bua::unpassable;
pub use b2bua::{
    B2bEvent, B2bHandle, B2bLeg, B2bState, BridgeMode, BridgeOptions, BridgeTarget, RingStrategy,
    TRANSFEROR_HANGUP_TIME,
};
pub use park::{CallOrbit, ParkSettings};
pub use rooms::{RoomEvent, RoomLeaveReason};
pub use transfer::{
    CallTransferOptions, CallTransferType, REFER_ANSWER_TIME, TRANSFER_SUBSCRIPTION_TIME,
    TransferOutcome, TransferRequest, TransferState,
};

use crate::body;
use crate::im;
use crate::options::{
    CallAcceptOptions, CallDeclineOptions, CallEstablishOptions, CallForwardOptions,
    CallProvisionalResponseOptions, CallTerminateOptions, CustomMimePart, Destination, HoldType,
    InstantMessage, MessageOptions, to_wire,
};
use crate::state::{
    CallState, CallStateTransitionReason as Reason, Operation, may_transition, permits,
};
use crate::types::*;
use bytes::Bytes;
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use sdp_offer_answer::{
    Codec, Direction, LocalCapabilities, MessageCapabilities, Negotiated, OfferAnswer,
    SessionDescription, SignalingState,
};
use sip_core::{Endpoint, EndpointConfig};
use sip_dialog::{Body, EndCause, Event as UaEvent, Invite, Reply, SessionId, Side, Termination};
use sip_message::{HeaderName, Host, Method, Request, Response, Transport, Uri};
use sip_transaction::{Flow, TransactionKey, Transmit};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// What a demo user does with a call (DESIGN.md, Operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DemoBehaviour {
    /// Answers AV and IM calls; echoes every message back (and audio, with [media]).
    Echo,
    /// Rings (180) and never answers; 480 when the ring timeout expires.
    Ring,
    /// Declines with 486 Busy Here.
    Busy,
    /// Answers audio/video calls at once (200, no 180) with no media: no RTP port is
    /// taken and no stream started; the SDP answer names the discard port, 9 (RFC 863).
    /// The signalling of a call and nothing else, for load tests (`bench/run`).
    Answer,
}

/// What the engine needs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub endpoint: EndpointConfig,
    /// Demo users served by the engine itself.
    pub demo_users: Vec<(String, DemoBehaviour)>,
    /// How long a `ring` user rings before 480.
    pub ring_timeout: Duration,
    /// A call still up this long after its answer is ended with BYE, so a peer that
    /// never hangs up cannot hold state forever.
    pub max_call_duration: Duration,
    /// Default of [`CallEstablishOptions::max_establish_time`].
    pub establish_timeout: Duration,
    /// An incoming call left unanswered this long gets 480 (state `Terminated`,
    /// `Timeout`).
    pub unanswered_timeout: Duration,
    /// RTP ports, media timeout.
    pub media: MediaSettings,
    /// Audio codecs offered and accepted, in preference order.
    pub codecs: Vec<Codec>,
    /// Routing rules for incoming INVITEs (empty: none).
    pub routes: crate::routing::RouteTable,
    /// Call park: orbits, timeout, music on hold, the park number for REFER.
    pub park: ParkSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            endpoint: EndpointConfig::default(),
            demo_users: vec![
                ("echo".into(), DemoBehaviour::Echo),
                ("ring".into(), DemoBehaviour::Ring),
                ("busy".into(), DemoBehaviour::Busy),
            ],
            ring_timeout: Duration::from_secs(60),
            max_call_duration: Duration::from_secs(3600),
            establish_timeout: Duration::from_secs(120),
            unanswered_timeout: Duration::from_secs(120),
            media: MediaSettings::default(),
            codecs: vec![Codec::pcmu(), Codec::pcma(), Codec::telephone_event(101)],
            routes: crate::routing::RouteTable::default(),
            park: ParkSettings::default(),
        }
    }
}

/// Where RTP goes and how long silence may last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    /// The first and last RTP port (inclusive). An AV call takes an even port for RTP
    /// and the next for RTCP (RFC 3550 §11), round-robin, so a port just freed is not
    /// reused at once (late packets of the last call would land in the next).
    pub first_port: u16,
    pub last_port: u16,
    /// No RTP for this long while the peer should send raises
    /// [`CallEvent::MediaTimedOut`]; `None`: never.
    pub timeout: Option<Duration>,
    /// Whether a media timeout also ends the call (BYE, reason `MediaTimeout`).
    pub hangup_on_timeout: bool,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            first_port: 16384,
            last_port: 32767,
            timeout: Some(Duration::from_secs(60)),
            hangup_on_timeout: false,
        }
    }
}

/// Where an AV call's RTP port comes from. The engine's own [`PortPool`] only keeps
/// books; a driver that owns sockets gives the engine a source that binds the pair as it
/// reserves it, so a port written into SDP is always one we hold (another process may
/// hold ports of the range). A parameter of the engine, like time and config.
pub trait PortSource: fmt::Debug + Send {
    /// An even RTP port whose odd neighbour is free too; `None` when none is left.
    fn reserve(&mut self) -> Option<u16>;
    /// The call is over.
    fn release(&mut self, port: u16);
    /// The range, for errors.
    fn range(&self) -> (u16, u16);
}

/// The RTP ports in use, handed out round-robin (pure bookkeeping: no socket).
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    last: u16,
    next: u16,
    in_use: HashSet<u16>,
}

impl PortPool {
    pub fn new(settings: &MediaSettings) -> PortPool {
        let first = settings.first_port.saturating_add(settings.first_port % 2);
        PortPool {
            first,
            last: settings.last_port,
            next: first,
            in_use: HashSet::new(),
        }
    }

    /// The next free even port with its odd neighbour inside the range.
    fn allocate(&mut self) -> Option<u16> {
        if self.first >= self.last {
            return None;
        }
        let pairs = (self.last - self.first).div_ceil(2);
        for _ in 0..pairs {
            let port = self.next;
            self.next = match port.checked_add(2) {
                Some(n) if n < self.last => n,
                _ => self.first,
            };
            if self.in_use.insert(port) {
                return Some(port);
            }
        }
        None
    }

    fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }
}

impl PortSource for PortPool {
    fn reserve(&mut self) -> Option<u16> {
        self.allocate()
    }

    fn release(&mut self, port: u16) {
        PortPool::release(self, port);
    }

    fn range(&self) -> (u16, u16) {
        (self.first, self.last)
    }
}

/// Counters for the `stats` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub core: sip_core::Stats,
    /// Calls alive now.
    pub calls: usize,
    /// Incoming calls answered with 2xx.
    pub calls_answered: u64,
    /// Calls we placed.
    pub calls_placed: u64,
    pub messages_in: u64,
    pub messages_out: u64,
}

/// The smallest deadline heap worth sweeping for stale entries.
const COMPACT_MIN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Establish,
    Unanswered,
    MaxDuration,
    ComposingRefresh,
    RemoteComposing,
    DemoRing,
    /// Our transfer's final NOTIFY is due ([`transfer`]).
    TransferGuard(TransferId),
    /// The application must answer the peer's REFER.
    ReferAnswer(TransferId),
    /// The subscription of the peer's REFER expires.
    ReferExpiry(TransferId),
    /// A transferor whose attended transfer across two bridges is done has not hung
    /// up its leg ([`b2bua`]).
    TransferorHangup,
}

#[derive(Debug)]
struct EndpointEntry {
    owner: Identity,
    user: String,
    demo: Option<DemoBehaviour>,
    /// A user endpoint's registration (its trunk's name).
    trunk: Option<String>,
}

#[derive(Debug)]
struct ConversationEntry {
    endpoint: EndpointHandle,
    settings: ConversationSettings,
    calls: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction2 {
    Incoming,
    Outgoing,
}

#[derive(Debug)]
struct Call {
    /// The dialog's Call-ID, for logs (kept after the dialog is gone).
    sip_call_id: String,
    kind: CallKind,
    endpoint: EndpointHandle,
    conversation: ConversationHandle,
    state: CallState,
    direction: Direction2,
    session: Option<SessionId>,
    /// The peer's INVITE while it is unanswered. Boxed, as `caps_before` and
    /// `configuration`: each is there for a while or for some calls, and inline they
    /// made every call 320 bytes larger.
    invite_tx: Option<Box<TransactionKey>>,
    sdp: OfferAnswer,
    flow: Option<MediaFlowState>,
    /// Deadlines, to tell a live timer from a stale one.
    deadlines: Vec<(Timer, Instant)>,
    /// Why we are ending the call, when we are.
    ending: Option<Reason>,
    /// A hold, retrieve or re-offer waiting for its answer.
    pending: Option<(Operation, Direction)>,
    /// Our local direction as last negotiated (recvonly while the peer holds us).
    local_direction: Direction,
    /// What we ask for ourselves: `sendrecv`, or `sendonly`/`inactive` while we hold.
    /// Our offers state it and our answers are intersected with it (RFC 3264 §8.4);
    /// being held does not change it.
    wish: Direction,
    /// Our capabilities before `apply_changes` changed the codecs, until its answer.
    caps_before: Option<Box<LocalCapabilities>>,
    /// The flow configuration in effect: negotiated at the answer, then as last
    /// reported by `FlowConfigurationChanged`.
    configuration: Option<Box<FlowConfiguration>>,
    remote_direction: Direction,
    /// In-dialog MESSAGEs waiting for their response.
    messages: HashMap<TransactionKey, MessageId>,
    local_composing: bool,
    remote_composing: bool,
    accept_types: Vec<String>,
    /// Our IM first message, sent with the INVITE.
    established_once: bool,
    /// Our RTP port, while the driver holds the sockets.
    media_port: Option<u16>,
    /// RTP arrives (as last reported by the media layer).
    rtp_receiving: bool,
    /// A signalling-only B2BUA leg: SDP is relayed byte for byte, never negotiated
    /// here, and no RTP port is taken.
    passthrough: bool,
    /// Answered with no media (the demo `Answer`): no RTP port is taken.
    no_media: bool,
    /// The last SDP received from the peer (its INVITE's offer, then answers and
    /// re-offers), as received: a signalling-only bridge relays it and tells a session
    /// refresh (the same SDP again) from a change.
    remote_offer: Option<Bytes>,
    /// A signalling-only leg: the last SDP sent to the peer (the other leg's).
    relay_local: Option<Bytes>,
    /// The bridge this call is a leg of.
    bridge: Option<(B2bHandle, B2bLeg)>,
}

impl Call {
    /// A call in state `Idle`, before its dialog exists.
    fn new(
        kind: CallKind,
        endpoint: EndpointHandle,
        conversation: ConversationHandle,
        direction: Direction2,
        sdp: OfferAnswer,
    ) -> Call {
        Call {
            sip_call_id: String::new(),
            kind,
            endpoint,
            conversation,
            state: CallState::Idle,
            direction,
            session: None,
            invite_tx: None,
            sdp,
            flow: None,
            deadlines: Vec::new(),
            ending: None,
            pending: None,
            local_direction: Direction::SendRecv,
            wish: Direction::SendRecv,
            caps_before: None,
            configuration: None,
            remote_direction: Direction::SendRecv,
            messages: HashMap::new(),
            local_composing: false,
            remote_composing: false,
            accept_types: Vec::new(),
            established_once: false,
            media_port: None,
            rtp_receiving: false,
            passthrough: false,
            no_media: false,
            remote_offer: None,
            relay_local: None,
            bridge: None,
        }
    }

    fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.deadlines
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|(_, at)| *at)
    }

    fn clear(&mut self, timer: Timer) {
        self.deadlines.retain(|(t, _)| *t != timer);
    }

    /// A re-offer failed: what we offer and answer goes back to what it was (RFC 3264
    /// §8: a refused offer leaves the session unchanged), our hold state and codecs.
    fn undo_reoffer(&mut self) {
        self.sdp.set_direction(self.wish);
        if let Some(caps) = self.caps_before.take() {
            self.sdp.set_local(*caps);
        }
    }
}

/// The sans-IO call engine.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    core: Endpoint,
    endpoints: HashMap<EndpointHandle, EndpointEntry>,
    by_user: HashMap<String, EndpointHandle>,
    conversations: HashMap<ConversationHandle, ConversationEntry>,
    /// Boxed: a `Call` is over 1.5 KB, and a table growing by doubling would keep up to
    /// twice the live calls' worth of them inline.
    calls: HashMap<CallHandle, Box<Call>>,
    by_session: HashMap<SessionId, CallHandle>,
    /// Page-mode MESSAGEs waiting for their response.
    pages: HashMap<TransactionKey, (EndpointHandle, MessageId)>,
    timers: BinaryHeap<Reverse<(Instant, Timer, CallHandle)>>,
    /// The heap size above which stale deadlines are swept out.
    compact_at: usize,
    events: VecDeque<Event>,
    next_id: u64,
    stats: Stats,
    /// Calls of the demo users, until their last event is handled.
    demo_calls: HashMap<CallHandle, DemoBehaviour>,
    ports: Box<dyn PortSource>,
    /// Back-to-back calls.
    /// Boxed, like calls: the table's slots stay small when it grows.
    bridges: HashMap<B2bHandle, Box<b2bua::Bridge>>,
    /// Legs that ended, for their bridge to act on (with `now`, in `drain`).
    bridge_work: VecDeque<b2bua::LegEnded>,
    /// Re-INVITEs and UPDATEs relayed across a bridge, by the leg they went out on.
    modify_relays: HashMap<CallHandle, b2bua::ModifyRelay>,
    /// Attended transfers joining two bridges, while their re-INVITEs are out.
    joins: b2bua::Joins,
    /// The endpoint that owns the calls routing rules take (none without rules).
    route_endpoint: Option<EndpointHandle>,
    /// Applications `webhook` routes hand calls to, by name.
    applications: HashMap<String, EndpointHandle>,
    /// REFERs, their subscriptions, and calls that replace others.
    transfers: transfer::Transfers,
    /// Park orbits, their retrievals and their watchers (RFC 4235 subscriptions).
    parking: park::Parking,
    /// Conference rooms and their members.
    rooms: rooms::Rooms,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let core = Endpoint::new(config.endpoint.clone());
        let ports: Box<dyn PortSource> = Box::new(PortPool::new(&config.media));
        let mut engine = Engine {
            ports,
            core,
            endpoints: HashMap::new(),
            by_user: HashMap::new(),
            conversations: HashMap::new(),
            calls: HashMap::new(),
            by_session: HashMap::new(),
            pages: HashMap::new(),
            timers: BinaryHeap::new(),
            compact_at: COMPACT_MIN,
            events: VecDeque::new(),
            next_id: 1,
            stats: Stats::default(),
            demo_calls: HashMap::new(),
            bridges: HashMap::new(),
            bridge_work: VecDeque::new(),
            modify_relays: HashMap::new(),
            joins: b2bua::Joins::default(),
            route_endpoint: None,
            applications: HashMap::new(),
            transfers: transfer::Transfers::default(),
            parking: park::Parking::default(),
            rooms: rooms::Rooms::default(),
            config,
        };
        engine.init_park();
        for (user, behaviour) in engine.config.demo_users.clone() {
            let owner = Identity::new(format!("sip:{user}@localhost"));
            if let Err(error) = engine.add_endpoint_for(user.clone(), owner, Some(behaviour), None)
            {
                tracing::warn!(%error, %user, "demo user not added");
            }
        }
        if !engine.config.routes.is_empty() {
            // Routing rules decide who exists; their calls belong to an endpoint no
            // Request-URI user names.
            engine.core.set_accept_any_user(true);
            let handle = EndpointHandle(engine.next());
            engine.endpoints.insert(
                handle,
                EndpointEntry {
                    owner: Identity::new("sip:tandem@localhost"),
                    // Its Contact user; not in `by_user`, so no Request-URI reaches it.
                    user: "tandem".into(),
                    demo: None,
                    trunk: None,
                },
            );
            engine.route_endpoint = Some(handle);
        }
        engine
    }

    // ---- the sans-IO verbs

    /// A datagram, or one message framed from a stream, arrived on `flow`.
    pub fn handle_message(&mut self, now: Instant, data: Bytes, flow: Flow) {
        self.core.handle_message(now, data, flow);
        self.drain(now);
    }

    /// The time asked for by [`poll_timeout`](Self::poll_timeout) has come.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.core.handle_timeout(now);
        self.drain(now);
        while let Some(Reverse((at, _, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, timer, call))) = self.timers.pop() else {
                break;
            };
            // A call's timer work logs in a span with its SIP Call-ID, as the runtime's
            // handling of its messages does.
            let _call = self.call_span(call);
            self.on_timer(now, at, timer, call);
            self.drain(now);
        }
        self.on_park_timeout(now);
        self.drain(now);
    }

    /// The transport could not deliver to `flow` over a connection.
    pub fn handle_transport_error(&mut self, now: Instant, flow: Flow) {
        self.core.handle_transport_error(now, flow);
        self.drain(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.poll_transmit()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest time the engine must be woken at, if any. Deadlines of calls that
    /// are gone, or that were re-armed, are dropped here, so an idle engine asks for no
    /// wake-up.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, timer, call))) = self.timers.peek() {
            if self.is_live(*at, *timer, *call) {
                break;
            }
            self.timers.pop();
        }
        let ours = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let ours = match (ours, self.park_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (self.core.poll_timeout(), ours) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The endpoint underneath: trunks, local addresses, shutdown.
    pub fn core(&mut self) -> &mut Endpoint {
        &mut self.core
    }

    /// The endpoint underneath, to read.
    pub fn core_ref(&self) -> &Endpoint {
        &self.core
    }

    pub fn stats(&self) -> Stats {
        Stats {
            core: self.core.stats(),
            calls: self.calls.len(),
            ..self.stats
        }
    }

    // ---- endpoints and conversations

    /// Adds an application endpoint: calls and messages to its URI's user part come
    /// to it, and it is From on the calls it makes.
    pub fn add_application_endpoint(
        &mut self,
        settings: ApplicationEndpointSettings,
    ) -> Result<EndpointHandle, CallError> {
        self.add_endpoint(settings.owner, None, None)
    }

    /// Adds a user endpoint: an application endpoint whose URI is registered with a
    /// registrar (through a trunk of the endpoint underneath: digest, refresh,
    /// un-REGISTER at shutdown). The registrar named by an IP address is used at
    /// once; a name is resolved by the runtime.
    pub fn add_user_endpoint(
        &mut self,
        now: Instant,
        settings: UserEndpointSettings,
    ) -> Result<EndpointHandle, CallError> {
        let uri = parse_sip(&settings.owner.uri, "owner URI")?;
        let domain = host_text(&uri.host);
        let name = format!("user:{}", settings.owner.uri);
        let mut trunk = sip_core::TrunkConfig::new(&name, &settings.registrar, &domain);
        trunk.username = settings
            .username
            .clone()
            .or_else(|| uri.user_unescaped().map(|u| crate::body::text(&u)));
        trunk.password = settings.password.clone();
        trunk.realm = settings.realm.clone();
        trunk.register = true;
        trunk.register_expires = Duration::from_secs(u64::from(settings.register_expires));
        let handle = self.add_endpoint(settings.owner, None, Some(name))?;
        if let Err(error) = self.core.add_trunk(now, trunk) {
            self.remove_endpoint(handle);
            return Err(error.into());
        }
        self.drain(now);
        Ok(handle)
    }

    fn add_endpoint(
        &mut self,
        owner: Identity,
        demo: Option<DemoBehaviour>,
        trunk: Option<String>,
    ) -> Result<EndpointHandle, CallError> {
        let uri = parse_sip(&owner.uri, "owner URI")?;
        let user = uri
            .user_unescaped()
            .map(|u| crate::body::text(&u))
            .ok_or_else(|| CallError::InvalidArgument {
                what: "owner URI",
                problem: "it has no user part".into(),
            })?;
        self.add_endpoint_for(user, owner, demo, trunk)
    }

    /// Adds an endpoint for Request-URI user part `user` (any text: a demo user may be
    /// named like a torture test's).
    fn add_endpoint_for(
        &mut self,
        user: String,
        owner: Identity,
        demo: Option<DemoBehaviour>,
        trunk: Option<String>,
    ) -> Result<EndpointHandle, CallError> {
        if self.by_user.contains_key(&user) {
            return Err(CallError::EndpointExists { user });
        }
        let handle = EndpointHandle(self.next());
        self.core.add_user(&user);
        self.by_user.insert(user.clone(), handle);
        self.endpoints.insert(
            handle,
            EndpointEntry {
                owner,
                user,
                demo,
                trunk,
            },
        );
        Ok(handle)
    }

    /// Removes an endpoint: requests for its user get 404 from now on. Its calls go on.
    pub fn remove_endpoint(&mut self, endpoint: EndpointHandle) {
        if let Some(entry) = self.endpoints.remove(&endpoint) {
            self.by_user.remove(&entry.user);
            self.core.remove_user(&entry.user);
        }
    }

    /// A new conversation of `endpoint`.
    pub fn new_conversation(
        &mut self,
        endpoint: EndpointHandle,
        settings: ConversationSettings,
    ) -> Result<ConversationHandle, CallError> {
        if !self.endpoints.contains_key(&endpoint) {
            return Err(CallError::NoSuchEndpoint(endpoint));
        }
        let handle = ConversationHandle(self.next());
        self.conversations.insert(
            handle,
            ConversationEntry {
                endpoint,
                settings,
                calls: 0,
            },
        );
        Ok(handle)
    }

    /// A new call in `conversation`, in state `Idle`. Its events are queued from now
    /// on: nothing that happens to it can be missed.
    pub fn new_call(
        &mut self,
        conversation: ConversationHandle,
        kind: CallKind,
    ) -> Result<CallHandle, CallError> {
        let entry = self
            .conversations
            .get_mut(&conversation)
            .ok_or(CallError::NoSuchConversation(conversation))?;
        entry.calls += 1;
        let endpoint = entry.endpoint;
        let handle = CallHandle(self.next());
        let seed = self.core.user_agent().ids().next_u64() >> 1;
        let caps = self.capabilities(kind, IpAddr::from([127, 0, 0, 1]), 5060);
        self.calls.insert(
            handle,
            Box::new(Call::new(
                kind,
                endpoint,
                conversation,
                Direction2::Outgoing,
                OfferAnswer::new(caps, seed),
            )),
        );
        Ok(handle)
    }

    /// The state of a call; `None` once it is gone (after `Terminated`).
    pub fn call_state(&self, call: CallHandle) -> Option<CallState> {
        self.calls.get(&call).map(|c| c.state)
    }

    /// The type of a call (audio/video or instant messaging); `None` once it is gone.
    pub fn call_kind(&self, call: CallHandle) -> Option<CallKind> {
        self.calls.get(&call).map(|c| c.kind)
    }

    /// The state of a call's media flow, once it has one.
    pub fn flow_state(&self, call: CallHandle) -> Option<MediaFlowState> {
        self.calls.get(&call).and_then(|c| c.flow)
    }

    /// The negotiated media of a call.
    pub fn negotiated(&self, call: CallHandle) -> Option<&Negotiated> {
        self.calls.get(&call).and_then(|c| c.sdp.negotiated())
    }

    /// A `sip` span with the call's SIP Call-ID as `call_id`, entered; `None` when the
    /// log level filters it out (the Call-ID is then not even looked up).
    fn call_span(&self, call: CallHandle) -> Option<tracing::span::EnteredSpan> {
        let span = tracing::info_span!("sip", call_id = tracing::field::Empty);
        if span.is_disabled() {
            return None;
        }
        let call = self
            .calls
            .get(&call)
            .filter(|c| !c.sip_call_id.is_empty())?;
        span.record("call_id", call.sip_call_id.as_str());
        Some(span.entered())
    }

    /// The SIP Call-ID of a call's dialog.
    pub fn sip_call_id(&self, call: CallHandle) -> Option<String> {
        self.calls
            .get(&call)
            .map(|c| c.sip_call_id.clone())
            .filter(|id| !id.is_empty())
    }

    /// The live call (not `Terminating` or `Terminated`) whose dialog has the SIP
    /// Call-ID `sip_call_id` (RFC 3261 §8.1.1.4); the oldest when several share it. What
    /// the control API's `connect` finds an existing call by.
    pub fn call_by_sip_call_id(&self, sip_call_id: &str) -> Option<CallHandle> {
        self.calls
            .iter()
            .filter(|(_, c)| {
                c.sip_call_id == sip_call_id
                    && !matches!(c.state, CallState::Terminating | CallState::Terminated)
            })
            .map(|(handle, _)| *handle)
            .min()
    }

    /// The peer of a call as its INVITE names it: the From of an incoming call, the To
    /// of one placed here (a name-addr, RFC 3261 §20.20, §20.39).
    pub fn remote_party(&self, call: CallHandle) -> Option<String> {
        let c = self.calls.get(&call)?;
        let invite = self.core.user_agent_ref().invite_request(c.session?)?;
        let name = match c.direction {
            Direction2::Incoming => HeaderName::From,
            Direction2::Outgoing => HeaderName::To,
        };
        let value = invite.headers.get(&name)?;
        Some(crate::body::text(value))
    }

    /// The settings of a call's conversation.
    pub fn conversation_of(&self, call: CallHandle) -> Option<ConversationHandle> {
        self.calls.get(&call).map(|c| c.conversation)
    }

    // ---- call operations

    /// Places the call: sends the INVITE to `target` (a SIP URI) with our offer, the
    /// options' headers and, when given, a `multipart/mixed` body of the SDP and the
    /// custom parts. The call goes `Establishing`; [`CallEvent::EstablishCompleted`]
    /// tells how it ended.
    pub fn establish(
        &mut self,
        now: Instant,
        call: CallHandle,
        target: &str,
        options: CallEstablishOptions,
    ) -> Result<(), CallError> {
        self.establish_with(now, call, target, options, None)
    }

    /// `establish`, or with `relayed`: the INVITE carries that SDP as it is (a
    /// signalling-only bridge leg), with no negotiation and no RTP port.
    fn establish_with(
        &mut self,
        now: Instant,
        call: CallHandle,
        target: &str,
        options: CallEstablishOptions,
        relayed: Option<Bytes>,
    ) -> Result<(), CallError> {
        let c = self.check(call, Operation::Establish)?;
        let (kind, endpoint, conversation) = (c.kind, c.endpoint, c.conversation);
        let mut headers = to_wire(&options.headers)?;
        let trunk = match &options.trunk {
            Some(name) => Some(self.core.trunk_route(name, &trunk_user(target))?),
            None => None,
        };
        let target = trunk.as_ref().map_or(target, |t| t.uri.as_str());
        let flow = match &trunk {
            Some(route) => route.flow,
            None => self.route(target, options.destination)?,
        };
        let owner = self
            .endpoints
            .get(&endpoint)
            .ok_or(CallError::NoSuchEndpoint(endpoint))?;
        let contact_user = owner.user.clone();
        let settings = self
            .conversations
            .get(&conversation)
            .map(|c| c.settings.clone())
            .unwrap_or_default();
        let from = settings
            .impersonation
            .clone()
            .unwrap_or_else(|| owner.owner.clone());
        // A trunk wants its own caller ID (carriers check it) and identity.
        let from_text = match trunk.as_ref().and_then(|t| t.caller_id.clone()) {
            Some(caller_id) => caller_id,
            None => from.name_addr(),
        };
        match trunk.as_ref().and_then(|t| t.asserted_identity.clone()) {
            Some(pai) => {
                headers.push((HeaderName::parse(b"P-Asserted-Identity"), Bytes::from(pai)))
            }
            None => {
                if let Some(identity) = &settings.impersonation {
                    headers.push((
                        HeaderName::parse(b"P-Asserted-Identity"),
                        Bytes::from(identity.name_addr()),
                    ));
                }
            }
        }
        add_conversation_headers(&mut headers, &settings);
        let address = self.advertised(flow.local.ip());
        let mut caps = self.capabilities(kind, address, flow.local.port());
        if relayed.is_none()
            && let Some(port) = self.open_media(call)?
        {
            caps.audio_port = port;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(CallError::NoSuchCall(call));
        };
        let offer = match relayed {
            Some(offer) => offer,
            None => {
                c.sdp.set_local(caps);
                match c.sdp.create_offer() {
                    Ok(offer) => offer,
                    Err(error) => {
                        self.close_media(call);
                        return Err(error.into());
                    }
                }
            }
        };
        let mut parts = options.custom_mime_parts.clone();
        if let Some(first) = &options.first_message {
            if kind != CallKind::InstantMessaging {
                c.sdp.rollback();
                return Err(CallError::WrongCallType {
                    operation: Operation::SendMessage,
                    kind,
                });
            }
            parts.insert(
                0,
                CustomMimePart::new(first.content_type.clone(), first.body.clone())
                    .with_disposition("render;handling=optional"),
            );
        }
        let mut to_text = String::with_capacity(target.len() + 2);
        to_text.push('<');
        to_text.push_str(target);
        to_text.push('>');
        let mut invite = Invite::new(target.to_owned(), from_text, to_text, flow);
        invite.headers = headers;
        invite.body = body::build(Some(offer), &parts);
        invite.contact_user = contact_user;
        if let Some(route) = trunk {
            invite.routes = route.routes;
            invite.contact_user = route.contact_user;
        }
        let session = match self.core.user_agent().invite(now, invite) {
            Ok(session) => session,
            Err(error) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.sdp.rollback();
                }
                self.close_media(call);
                return Err(error.into());
            }
        };
        self.stats.calls_placed += 1;
        self.by_session.insert(session, call);
        let sip_call_id = self
            .core
            .user_agent_ref()
            .call_id(session)
            .map(|c| crate::body::text(c))
            .unwrap_or_default();
        if let Some(c) = self.calls.get_mut(&call) {
            c.session = Some(session);
            c.sip_call_id = sip_call_id;
        }
        let limit = options
            .max_establish_time
            .unwrap_or(self.config.establish_timeout);
        self.arm(call, Timer::Establish, now + limit);
        self.transition(call, CallState::Establishing, Reason::Establishing);
        self.core.pump(now);
        self.drain(now);
        Ok(())
    }

    /// Accepts an incoming call: 200 with our answer (or our offer, when the INVITE had
    /// none) and the options' headers. The call goes `Establishing` until the ACK.
    pub fn accept(
        &mut self,
        now: Instant,
        call: CallHandle,
        options: CallAcceptOptions,
    ) -> Result<(), CallError> {
        let c = self.check(call, Operation::Accept)?;
        let tx = c.invite_tx.as_deref().cloned();
        let headers = to_wire(&options.headers)?;
        let Some(tx) = tx else {
            return Err(CallError::InvalidState {
                operation: Operation::Accept,
                state: CallState::Incoming,
            });
        };
        let port = self.open_media(call)?;
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(CallError::NoSuchCall(call));
        };
        if let Some(port) = port {
            let mut caps = c.sdp.local().clone();
            caps.audio_port = port;
            c.sdp.set_local(caps);
        }
        let answered = c.sdp.state() == SignalingState::HaveRemoteOffer;
        let sdp = if answered {
            c.sdp.create_answer()
        } else {
            c.sdp.create_offer()
        };
        let sdp = match sdp {
            Ok(sdp) => sdp,
            Err(error) => {
                self.close_media(call);
                return Err(error.into());
            }
        };
        let mut reply = Reply::new(200).with_body(Body::sdp(sdp));
        reply.headers = headers;
        if let Err(error) = self.core.user_agent().respond(now, &tx, reply) {
            if let Some(c) = self.calls.get_mut(&call) {
                c.sdp.rollback();
            }
            self.close_media(call);
            return Err(error.into());
        }
        self.stats.calls_answered += 1;
        if let Some(c) = self.calls.get_mut(&call) {
            c.invite_tx = None;
            c.clear(Timer::Unanswered);
        }
        if answered {
            self.flow_requested(call);
        }
        self.transition(call, CallState::Establishing, Reason::Accepted);
        self.core.pump(now);
        self.drain(now);
        Ok(())
    }

    /// Declines an incoming call with a final 4xx–6xx.
    pub fn decline(
        &mut self,
        now: Instant,
        call: CallHandle,
        options: CallDeclineOptions,
    ) -> Result<(), CallError> {
        if !(400..=699).contains(&options.status) {
            return Err(CallError::InvalidArgument {
                what: "status",
                problem: format!("{} is not a 4xx-6xx final response", options.status),
            });
        }
        let mut reply = Reply::new(options.status);
        reply.reason = options.reason_phrase.clone();
        reply.headers = to_wire(&options.headers)?;
        if let Some(reason) = &options.reason {
            reply
                .headers
                .push((HeaderName::Reason, Bytes::from(reason.clone())));
        }
        self.final_response(
            now,
            call,
            Operation::Decline,
            reply,
            Reason::LocalDeclined {
                status: options.status,
            },
        )
    }

    /// Redirects an incoming call (3xx) to `target`, written as the Contact.
    pub fn forward(
        &mut self,
        now: Instant,
        call: CallHandle,
        target: &str,
        options: CallForwardOptions,
    ) -> Result<(), CallError> {
        if !(300..=399).contains(&options.status) {
            return Err(CallError::InvalidArgument {
                what: "status",
                problem: format!("{} is not a 3xx redirection", options.status),
            });
        }
        parse_uri(target, "forward target")?;
        let mut reply = Reply::new(options.status);
        reply.headers = to_wire(&options.headers)?;
        reply
            .headers
            .push((HeaderName::Contact, Bytes::from(format!("<{target}>"))));
        self.final_response(
            now,
            call,
            Operation::Forward,
            reply,
            Reason::LocalForwarded {
                status: options.status,
            },
        )
    }

    fn final_response(
        &mut self,
        now: Instant,
        call: CallHandle,
        operation: Operation,
        reply: Reply,
        reason: Reason,
    ) -> Result<(), CallError> {
        let c = self.check(call, operation)?;
        let Some(tx) = c.invite_tx.as_deref().cloned() else {
            return Err(CallError::InvalidState {
                operation,
                state: CallState::Incoming,
            });
        };
        self.core.user_agent().respond(now, &tx, reply)?;
        if let Some(c) = self.calls.get_mut(&call) {
            c.invite_tx = None;
            c.ending = Some(reason);
            c.sdp.rollback();
        }
        self.core.pump(now);
        self.drain(now);
        Ok(())
    }

    /// Sends a provisional response (101–199, 180 by default) to an incoming call.
    pub fn send_provisional(
        &mut self,
        now: Instant,
        call: CallHandle,
        options: CallProvisionalResponseOptions,
    ) -> Result<(), CallError> {
        if !(101..=199).contains(&options.status) {
            return Err(CallError::InvalidArgument {
                what: "status",
                problem: format!("{} is not a 101-199 provisional response", options.status),
            });
        }
        let c = self.check(call, Operation::SendProvisional)?;
        let Some(tx) = c.invite_tx.as_deref().cloned() else {
            return Err(CallError::InvalidState {
                operation: Operation::SendProvisional,
                state: CallState::Incoming,
            });
        };
        let mut reply = Reply::new(options.status);
        reply.reason = options.reason_phrase.clone();
        reply.headers = to_wire(&options.headers)?;
        self.core.user_agent().respond(now, &tx, reply)?;
        self.core.pump(now);
        self.drain(now);
        Ok(())
    }

    /// Ends the call the right way for its state: nothing to send when `Idle`, 480 while
    /// incoming, CANCEL while our INVITE is pending, BYE once answered. Ending a call
    /// that is already ending or over does nothing.
    pub fn terminate(
        &mut self,
        now: Instant,
        call: CallHandle,
        options: CallTerminateOptions,
    ) -> Result<(), CallError> {
        let c = self.calls.get(&call).ok_or(CallError::NoSuchCall(call))?;
        if !permits(c.state, Operation::Terminate) {
            return Ok(());
        }
        let headers = to_wire(&options.headers)?;
        let (state, session) = (c.state, c.session);
        match (state, session) {
            (CallState::Idle, _) | (_, None) => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.ending = Some(Reason::LocalTerminated);
                }
                self.finish(call, Reason::LocalTerminated, None);
            }
            (_, Some(session)) => {
                // The reason already set (the call's cap) stays the reason throughout.
                let reason = match self.calls.get_mut(&call) {
                    Some(c) => {
                        c.invite_tx = None;
                        c.ending.get_or_insert(Reason::LocalTerminated).clone()
                    }
                    None => Reason::LocalTerminated,
                };
                if state != CallState::Incoming {
                    self.transition(call, CallState::Terminating, reason);
                }
                self.core.user_agent().hangup_with_headers(
                    now,
                    session,
                    options.reason.as_deref(),
                    headers,
                )?;
            }
        }
        self.core.pump(now);
        self.drain(now);
        Ok(())
    }

    /// Puts the call on hold: a re-INVITE with `a=sendonly` (or `inactive`).
    /// [`CallEvent::OperationCompleted`] tells how it ended.
    pub fn hold(
        &mut self,
        now: Instant,
        call: CallHandle,
        hold: HoldType,
    ) -> Result<(), CallError> {
        let direction = match hold {
            HoldType::SendOnly => Direction::SendOnly,
            HoldType::Inactive => Direction::Inactive,
        };
        self.reoffer(now, call, Operation::Hold, direction, None)
    }

    /// Takes the call off hold: a re-INVITE with `a=sendrecv`.
    pub fn retrieve(&mut self, now: Instant, call: CallHandle) -> Result<(), CallError> {
        self.reoffer(now, call, Operation::Retrieve, Direction::SendRecv, None)
    }

    /// Sends a new offer (re-INVITE), with new codecs when given.
    pub fn apply_changes(
        &mut self,
        now: Instant,
        call: CallHandle,
        codecs: Option<Vec<Codec>>,
    ) -> Result<(), CallError> {
        let direction = self
            .calls
            .get(&call)
            .map_or(Direction::SendRecv, |c| c.wish);
        self.reoffer(now, call, Operation::ApplyChanges, direction, codecs)
    }

    fn reoffer(
        &mut self,
        now: Instant,
        call: CallHandle,
        operation: Operation,
        direction: Direction,
        codecs: Option<Vec<Codec>>,
    ) -> Result<(), CallError> {
        let c = self.check(call, operation)?;
        if c.kind != CallKind::AudioVideo {
            return Err(CallError::WrongCallType {
                operation,
                kind: c.kind,
            });
        }
        if let Some((pending, _)) = c.pending {
            return Err(CallError::OperationPending { operation: pending });
        }
        let Some(session) = c.session else {
            return Err(CallError::NoSuchCall(call));
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return Err(CallError::NoSuchCall(call));
        };
        if let Some(codecs) = codecs {
            let mut caps = c.sdp.local().clone();
            c.caps_before = Some(Box::new(caps.clone()));
            caps.codecs = codecs;
            c.sdp.set_local(caps);
        }
        c.sdp.set_direction(direction);
        let offer = match c.sdp.create_offer() {
            Ok(offer) => offer,
            Err(error) => {
                c.undo_reoffer();
                return Err(error.into());
            }
        };
        c.pending = Some((operation, direction));
        if let Err(error) = self
            .core
            .user_agent()
            .reinvite(now, session, Some(Body::sdp(offer)))
        {
            if let Some(c) = self.calls.get_mut(&call) {
                c.pending = None;
                c.sdp.rollback();
                c.undo_reoffer();
            }
            return Err(error.into());
        }
        self.core.pump(now);
        self.drain(now);
        Ok(())
    }

    /// Sends an instant message in an established IM call (RFC 3428 MESSAGE in the
    /// dialog). [`CallEvent::MessageDelivered`] carries its result.
    pub fn send_instant_message(
        &mut self,
        now: Instant,
        call: CallHandle,
        message: InstantMessage,
        options: MessageOptions,
    ) -> Result<MessageId, CallError> {
        let c = self.check(call, Operation::SendMessage)?;
        if c.kind != CallKind::InstantMessaging {
            return Err(CallError::WrongCallType {
                operation: Operation::SendMessage,
                kind: c.kind,
            });
        }
        if body::media_type(&message.content_type).is_none() {
            return Err(CallError::InvalidArgument {
                what: "content type",
                problem: format!("`{}` is not a media type", message.content_type),
            });
        }
        if !body::accepted(&message.content_type, &c.accept_types) {
            return Err(CallError::ContentTypeNotAccepted {
                content_type: message.content_type,
            });
        }
        let headers = to_wire(&options.headers)?;
        let session = c.session.ok_or(CallError::NoSuchCall(call))?;
        let tx = self.core.user_agent().request(
            now,
            session,
            Method::Message,
            headers,
            Some(Body::new(message.content_type.clone(), message.body)),
        )?;
        let id = MessageId(self.next());
        self.stats.messages_out += 1;
        if let Some(c) = self.calls.get_mut(&call) {
            c.messages.insert(tx, id);
            // RFC 3994 §3.2: sending the message ends composing, without an idle
            // indication.
            c.local_composing = false;
            c.clear(Timer::ComposingRefresh);
        }
        self.core.pump(now);
        self.drain(now);
        Ok(id)
    }

    /// Our composing state (RFC 3994): `true` sends `active` (refreshed every
    /// 120 s while it lasts), `false` sends `idle`. No change, no message.
    pub fn set_composing(
        &mut self,
        now: Instant,
        call: CallHandle,
        composing: bool,
    ) -> Result<(), CallError> {
        let c = self.check(call, Operation::SetComposing)?;
        if c.kind != CallKind::InstantMessaging {
            return Err(CallError::WrongCallType {
                operation: Operation::SetComposing,
                kind: c.kind,
            });
        }
        if c.local_composing == composing {
            return Ok(());
        }
        self.send_composing(now, call, composing)?;
        if let Some(c) = self.calls.get_mut(&call) {
            c.local_composing = composing;
            c.clear(Timer::ComposingRefresh);
        }
        if composing {
            // Refreshed a little before the peer's timeout.
            self.arm(
                call,
                Timer::ComposingRefresh,
                now + im::ACTIVE_REFRESH - Duration::from_secs(20),
            );
        }
        self.drain(now);
        Ok(())
    }

    fn send_composing(
        &mut self,
        now: Instant,
        call: CallHandle,
        active: bool,
    ) -> Result<(), CallError> {
        let session = self
            .calls
            .get(&call)
            .and_then(|c| c.session)
            .ok_or(CallError::NoSuchCall(call))?;
        let xml = im::build(active, Some(im::ACTIVE_REFRESH));
        self.core.user_agent().request(
            now,
            session,
            Method::Message,
            Vec::new(),
            Some(Body::new(im::ISCOMPOSING, xml)),
        )?;
        self.core.pump(now);
        Ok(())
    }

    /// Sends a page-mode MESSAGE (RFC 3428) outside any dialog from `endpoint` to
    /// `target`. [`EndpointEvent::MessageDelivered`] carries its result.
    pub fn send_page_message(
        &mut self,
        now: Instant,
        endpoint: EndpointHandle,
        target: &str,
        message: InstantMessage,
        options: MessageOptions,
    ) -> Result<MessageId, CallError> {
        let owner = self
            .endpoints
            .get(&endpoint)
            .ok_or(CallError::NoSuchEndpoint(endpoint))?
            .owner
            .clone();
        if body::media_type(&message.content_type).is_none() {
            return Err(CallError::InvalidArgument {
                what: "content type",
                problem: format!("`{}` is not a media type", message.content_type),
            });
        }
        let headers = to_wire(&options.headers)?;
        let flow = self.route(target, options.destination)?;
        let ua = self.core.user_agent();
        let mut request = ua.new_request(
            Method::Message,
            target.as_bytes(),
            owner.name_addr().as_bytes(),
            format!("<{target}>").as_bytes(),
            &flow,
        );
        for (name, value) in headers {
            request.headers.push(name, value);
        }
        request.headers.push(
            HeaderName::ContentType,
            Bytes::from(message.content_type.clone()),
        );
        request.headers.push(
            HeaderName::ContentLength,
            Bytes::from(message.body.len().to_string()),
        );
        request.body = message.body;
        let tx = ua.send_request(now, request, flow)?;
        let id = MessageId(self.next());
        self.stats.messages_out += 1;
        self.pages.insert(tx, (endpoint, id));
        self.core.pump(now);
        self.drain(now);
        Ok(id)
    }

    // ---- input from the endpoint

    fn drain(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.core.poll_event() {
                progressed = true;
                self.on_core(now, event);
            }
            if self.run_demo(now) {
                progressed = true;
            }
            if self.run_bridges(now) {
                progressed = true;
            }
            if self.run_transfers(now) {
                progressed = true;
            }
            if self.run_park(now) {
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_core(&mut self, now: Instant, event: sip_core::EndpointEvent) {
        use sip_core::EndpointEvent as E;
        match event {
            E::Session(event) => self.on_session(now, *event),
            E::CallRedirected { from, to } => {
                if let Some(call) = self.by_session.remove(&from) {
                    self.by_session.insert(to, call);
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.session = Some(to);
                    }
                }
                self.events
                    .push_back(Event::Core(E::CallRedirected { from, to }));
            }
            E::Trunk(event) => {
                let owner = self.endpoints.iter().find_map(|(h, e)| {
                    (e.trunk.as_deref() == Some(trunk_name(&event))).then_some(*h)
                });
                match owner {
                    Some(endpoint) => self.events.push_back(Event::Endpoint {
                        endpoint,
                        event: EndpointEvent::Registration(event),
                    }),
                    None => self.events.push_back(Event::Core(E::Trunk(event))),
                }
            }
            other => self.events.push_back(Event::Core(other)),
        }
    }

    fn on_session(&mut self, now: Instant, event: UaEvent) {
        match event {
            UaEvent::IncomingCall {
                session,
                tx,
                request,
            } => self.on_incoming(now, session, tx, &request),
            UaEvent::Request {
                session: None,
                tx,
                request,
            } => self.on_request_outside(now, tx, &request),
            UaEvent::Request {
                session: Some(session),
                tx,
                request,
            } => self.on_request_inside(now, session, tx, &request),
            UaEvent::Modify {
                session,
                tx,
                request,
            } => self.on_modify(now, session, tx, &request),
            UaEvent::Provisional { session, response } => {
                self.on_provisional(now, session, &response);
            }
            UaEvent::Established {
                session,
                body,
                response,
            } => self.on_established(now, session, body, response.as_deref()),
            UaEvent::ModifyCompleted {
                session, response, ..
            } => self.on_modify_completed(now, session, &response),
            UaEvent::Response {
                session,
                tx,
                status,
                response,
            } => self.on_response(now, session, &tx, status, response.as_ref()),
            UaEvent::Terminated {
                session,
                termination,
            } => self.on_terminated(session, &termination),
            UaEvent::Dropped { remote, reason } => {
                self.events
                    .push_back(Event::Core(sip_core::EndpointEvent::Dropped {
                        remote,
                        reason,
                    }))
            }
            _ => {}
        }
    }

    fn on_incoming(
        &mut self,
        now: Instant,
        session: SessionId,
        tx: TransactionKey,
        request: &Request,
    ) {
        let user = request_user(request);
        // A call to a park orbit retrieves the call parked there (before any rule).
        let orbit = match self.orbit_wanted(user.as_deref()) {
            Ok(orbit) => orbit,
            Err(reply) => return self.respond(now, &tx, reply),
        };
        let (endpoint, routed) = match user.as_ref().and_then(|u| self.by_user.get(u)) {
            _ if orbit.is_some() => (self.park_endpoint(), None),
            Some(&endpoint) => (endpoint, None),
            None => match self.route_incoming(&tx, request, user.as_deref()) {
                Some(routed) => routed,
                None => return self.respond(now, &tx, Reply::new(404)),
            },
        };
        // A signalling-only bridge passes any SDP on as it is: ours need not understand it.
        let lenient = matches!(
            &routed,
            Some(crate::routing::Routed {
                action: crate::routing::RoutedAction::Bridge {
                    mode: BridgeMode::SignalingOnly,
                    ..
                },
                ..
            })
        );
        let replaces = match self.replaced_call(request) {
            Ok(replaces) => replaces,
            Err(reply) => return self.respond(now, &tx, reply),
        };
        let split = match body::split(&request.headers, &request.body) {
            Ok(split) => split,
            Err(problem) => {
                return self.respond(now, &tx, Reply::new(400).with_reason(problem));
            }
        };
        // Nor does it read it: RFC 7092 §3.1.1, the SDP goes on as bytes (parsing it was a
        // sixth of a bridged call's CPU). The leg's offer/answer state stays empty; a
        // leg that is later anchored (park) starts a fresh negotiation.
        let sdp_read = if lenient { None } else { split.sdp.as_deref() };
        let description = match sdp_read.map(SessionDescription::parse) {
            Some(Ok(d)) => Some(d),
            Some(Err(_)) if lenient => None,
            Some(Err(error)) => {
                return self.respond(now, &tx, not_acceptable(&error.to_string()));
            }
            None => None,
        };
        let kind = match &description {
            Some(d) if is_im(d) => CallKind::InstantMessaging,
            _ => CallKind::AudioVideo,
        };
        let flow = self.core.user_agent_ref().transaction_flow(&tx);
        let local = flow.map_or(SocketAddr::from(([127, 0, 0, 1], 5060)), |f| f.local);
        let source = flow.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |f| f.remote);
        let address = self.advertised(local.ip());
        let caps = self.capabilities(kind, address, local.port());
        let seed = self.core.user_agent().ids().next_u64() >> 1;
        let mut sdp = OfferAnswer::new(caps, seed);
        if let Some(offer) = sdp_read
            && let Err(error) = sdp.receive_offer(offer)
            && !lenient
        {
            return self.respond(now, &tx, not_acceptable(&error.to_string()));
        }
        let subject = header_text(request, "Subject").or_else(|| header_text(request, "s"));
        let priority = header_text(request, "Priority")
            .map(|p| Priority::parse(&p))
            .unwrap_or_default();
        let conversation = ConversationHandle(self.next());
        self.conversations.insert(
            conversation,
            ConversationEntry {
                endpoint,
                settings: ConversationSettings {
                    subject: subject.clone(),
                    priority,
                    impersonation: None,
                },
                calls: 1,
            },
        );
        let mut parts = split.parts;
        let first_message = if kind == CallKind::InstantMessaging {
            parts
                .iter()
                .position(|p| {
                    let e = body::essence(&p.content_type);
                    e == "text/plain" || e == "text/html"
                })
                .map(|i| parts.remove(i))
                .map(|p| InstantMessage {
                    content_type: p.content_type,
                    body: p.body,
                })
        } else {
            None
        };
        let call = CallHandle(self.next());
        let accept_types = accept_types_of(&sdp);
        self.calls.insert(
            call,
            Box::new(Call {
                // Copied: a slice would keep the caller's whole INVITE datagram for the
                // call's life (a signalling-only bridge relays this offer to leg B).
                remote_offer: split.sdp.as_deref().map(Bytes::copy_from_slice),
                sip_call_id: request.headers.call_id().unwrap_or_default().to_owned(),
                session: Some(session),
                invite_tx: Some(Box::new(tx)),
                accept_types,
                ..Call::new(kind, endpoint, conversation, Direction2::Incoming, sdp)
            }),
        );
        self.by_session.insert(session, call);
        self.note_replacement(call, replaces);
        if let Some(behaviour) = self.demo_of(endpoint) {
            self.demo_calls.insert(call, behaviour);
        }
        self.arm(
            call,
            Timer::Unanswered,
            now + self.config.unanswered_timeout,
        );
        let text = |name: HeaderName| {
            request
                .headers
                .get(&name)
                .map(|v| crate::body::text(v))
                .unwrap_or_default()
        };
        let received = CallReceived {
            call,
            conversation,
            kind,
            from: text(HeaderName::From),
            to: text(HeaderName::To),
            request_uri: crate::body::text(&request.uri),
            // A routed call's headers are the application's only if a `webhook` route
            // hands it over (`apply_route` writes them then); a bridge never reads them.
            headers: if routed.is_none() && orbit.is_none() {
                body::headers_of(&request.headers)
            } else {
                Vec::new()
            },
            offer: split.sdp,
            custom_mime_parts: parts,
            subject,
            priority,
            first_message,
            source,
            replaces,
        };
        if let Some(orbit) = orbit {
            self.transition(call, CallState::Incoming, Reason::Incoming);
            return self.retrieve_by_invite(now, call, orbit);
        }
        if let Some(routed) = routed {
            self.transition(call, CallState::Incoming, Reason::Incoming);
            return self.apply_route(now, call, routed, received, request);
        }
        self.events.push_back(Event::Endpoint {
            endpoint,
            event: EndpointEvent::CallReceived(Box::new(received)),
        });
        self.transition(call, CallState::Incoming, Reason::Incoming);
    }

    fn on_request_outside(&mut self, now: Instant, tx: TransactionKey, request: &Request) {
        if self.on_park_request(now, &tx, request) {
            return;
        }
        if request.method != Method::Message {
            // Anything else without a To tag is outside any dialog we know.
            return self.respond(now, &tx, Reply::new(481));
        }
        let user = request_user(request);
        let Some(&endpoint) = user.as_ref().and_then(|u| self.by_user.get(u)) else {
            return self.respond(now, &tx, Reply::new(404));
        };
        let source = self
            .core
            .user_agent_ref()
            .transaction_flow(&tx)
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |f| f.remote);
        let text = |name: HeaderName| {
            request
                .headers
                .get(&name)
                .map(|v| crate::body::text(v))
                .unwrap_or_default()
        };
        let message = PageMessage {
            from: text(HeaderName::From),
            to: text(HeaderName::To),
            content_type: text(HeaderName::ContentType),
            body: request.body.clone(),
            headers: body::headers_of(&request.headers),
            source,
        };
        self.stats.messages_in += 1;
        self.respond(now, &tx, Reply::new(200));
        self.events.push_back(Event::Endpoint {
            endpoint,
            event: EndpointEvent::MessageReceived(Box::new(message)),
        });
    }

    fn on_request_inside(
        &mut self,
        now: Instant,
        session: SessionId,
        tx: TransactionKey,
        request: &Request,
    ) {
        let call = self.by_session.get(&session).copied();
        if matches!(request.method, Method::Refer | Method::Notify) {
            return self.on_transfer_request(now, call, &tx, request);
        }
        if let Err(rejection) = sip_core::inspect::check_content(request) {
            let mut reply = Reply::new(rejection.status);
            reply.reason = rejection.reason;
            reply.headers = rejection.headers;
            return self.respond(now, &tx, reply);
        }
        match request.method {
            Method::Options => {
                let reply = self.core.options_ok();
                self.respond(now, &tx, reply);
            }
            Method::Message | Method::Info => {
                let reply = match call {
                    Some(call) => self.on_message(now, call, request),
                    None => Reply::new(200),
                };
                self.respond(now, &tx, reply);
            }
            _ => self.respond(
                now,
                &tx,
                Reply::new(501).with_header(HeaderName::Allow, sip_dialog::ALLOW),
            ),
        }
    }

    /// MESSAGE or INFO in a call's dialog: a composing indication (RFC 3994, by
    /// MESSAGE or INFO) or, in an IM call, an instant message.
    fn on_message(&mut self, now: Instant, call: CallHandle, request: &Request) -> Reply {
        let content_type = request
            .headers
            .get(&HeaderName::ContentType)
            .map(|v| crate::body::text(v))
            .unwrap_or_default();
        let Some(c) = self.calls.get_mut(&call) else {
            return Reply::new(481);
        };
        if body::essence(&content_type) == im::ISCOMPOSING {
            let Some(composing) = im::parse(&request.body) else {
                return Reply::new(400).with_reason("Bad isComposing document");
            };
            c.clear(Timer::RemoteComposing);
            let changed = c.remote_composing != composing.active;
            c.remote_composing = composing.active;
            if composing.active {
                let refresh = composing.refresh.unwrap_or(im::ACTIVE_REFRESH);
                self.arm(call, Timer::RemoteComposing, now + refresh);
            }
            if changed {
                self.emit(
                    call,
                    CallEvent::RemoteComposingChanged {
                        composing: composing.active,
                    },
                );
            }
            return Reply::new(200);
        }
        if request.method == Method::Info || c.kind != CallKind::InstantMessaging {
            return Reply::new(200);
        }
        if !c.accept_types.is_empty() && !body::accepted(&content_type, &c.accept_types) {
            return Reply::new(415).with_header(HeaderName::Accept, c.accept_types.join(", "));
        }
        // RFC 3994 §4: a message ends the sender's composing.
        let was_composing = std::mem::take(&mut c.remote_composing);
        c.clear(Timer::RemoteComposing);
        self.stats.messages_in += 1;
        if was_composing {
            self.emit(call, CallEvent::RemoteComposingChanged { composing: false });
        }
        self.emit(
            call,
            CallEvent::MessageReceived {
                content_type,
                body: request.body.clone(),
                headers: body::headers_of(&request.headers),
            },
        );
        Reply::new(200)
    }

    /// A re-INVITE, UPDATE or PRACK with a body: a new offer is answered; a hold seen
    /// raises [`CallEvent::FlowConfigurationChanged`].
    fn on_modify(
        &mut self,
        now: Instant,
        session: SessionId,
        tx: TransactionKey,
        request: &Request,
    ) {
        if let Err(rejection) = sip_core::inspect::check_content(request) {
            let mut reply = Reply::new(rejection.status);
            reply.reason = rejection.reason;
            reply.headers = rejection.headers;
            return self.respond(now, &tx, reply);
        }
        let Some(&call) = self.by_session.get(&session) else {
            return self.respond(now, &tx, Reply::new(481));
        };
        let split = match body::split(&request.headers, &request.body) {
            Ok(split) => split,
            Err(problem) => return self.respond(now, &tx, Reply::new(400).with_reason(problem)),
        };
        if self.calls.get(&call).is_some_and(|c| c.passthrough) {
            return self.relay_modify(now, call, tx, request, split.sdp);
        }
        let retry_waiting = self.core.user_agent_ref().glare_pending(session);
        let Some(c) = self.calls.get_mut(&call) else {
            return self.respond(now, &tx, Reply::new(481));
        };
        // Our re-offer got 491 and waits for its retry (RFC 3261 §14.1): it is no longer
        // pending, so the peer's offer is not glare (§14.2 asks 491 only while our
        // request has no final response). Answering 491 here would have both sides
        // refuse each other's retries for ever. Ours is withdrawn, theirs answered, and
        // the retry will carry a fresh offer made from the new state.
        let reoffer = retry_waiting
            && request.method != Method::Prack
            && c.sdp.state() == SignalingState::HaveLocalOffer
            && c.pending.is_some()
            && split.sdp.is_some();
        if reoffer {
            c.sdp.rollback();
        }
        let reply = match split.sdp {
            Some(sdp)
                if c.sdp.state() == SignalingState::HaveLocalOffer
                    && request.method == Method::Prack =>
            {
                match c.sdp.receive_answer(&sdp) {
                    Ok(_) => Reply::new(200),
                    Err(error) => not_acceptable(&error.to_string()),
                }
            }
            // Our own offer is out (glare the dialog layer did not catch): 491.
            Some(_) if c.sdp.state() != SignalingState::Stable => Reply::new(491),
            Some(sdp) => match c.sdp.receive_offer(&sdp) {
                Ok(()) => match c.sdp.create_answer() {
                    Ok(answer) => Reply::new(200).with_body(Body::sdp(answer)),
                    Err(error) => {
                        c.sdp.rollback();
                        not_acceptable(&error.to_string())
                    }
                },
                Err(error) => {
                    // §14.2: a refused offer leaves the session as it was.
                    c.sdp.rollback();
                    not_acceptable(&error.to_string())
                }
            },
            // A re-INVITE without an offer gets our last description (§14.2).
            None if request.method == Method::Invite => match c.sdp.current_local() {
                Some(sdp) => Reply::new(200).with_body(Body::sdp(sdp)),
                None => Reply::new(200),
            },
            None => Reply::new(200),
        };
        let ok = reply.status == 200;
        self.respond(now, &tx, reply);
        if ok {
            self.configuration_changed(call);
        }
        if reoffer {
            self.renew_retry_offer(session, call);
        }
    }

    /// Makes the offer of a pending hold, retrieve or re-offer again, from the session
    /// as it is now, for the dialog layer's glare retry to carry.
    fn renew_retry_offer(&mut self, session: SessionId, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some((_, direction)) = c.pending else {
            return;
        };
        c.sdp.set_direction(direction);
        match c.sdp.create_offer() {
            Ok(offer) => {
                if !self
                    .core
                    .user_agent()
                    .set_retry_offer(session, Body::sdp(offer))
                    && let Some(c) = self.calls.get_mut(&call)
                {
                    c.sdp.rollback();
                }
            }
            Err(error) => tracing::debug!(%error, %call, "re-offer after glare not made"),
        }
    }

    fn on_provisional(&mut self, now: Instant, session: SessionId, response: &Response) {
        let Some(&call) = self.by_session.get(&session) else {
            return;
        };
        self.relay_provisional(now, call, response);
        if response.status > 100 {
            self.emit(
                call,
                CallEvent::ProvisionalResponseReceived {
                    status: response.status,
                    reason_phrase: crate::body::text(&response.reason),
                    headers: body::headers_of(&response.headers),
                },
            );
        }
        // An answer in a (reliable) 18x: early media (RFC 3261 §13.2.1, RFC 3262).
        let Ok(split) = body::split(&response.headers, &response.body) else {
            return;
        };
        if let (Some(sdp), Some(c)) = (split.sdp, self.calls.get_mut(&call))
            && c.sdp.state() == SignalingState::HaveLocalOffer
            && c.sdp.receive_answer(&sdp).is_ok()
        {
            self.flow_requested(call);
        }
    }

    /// The session is confirmed: as UAC by the 2xx (`response`), as UAS by the ACK.
    fn on_established(
        &mut self,
        now: Instant,
        session: SessionId,
        body: Option<Body>,
        response: Option<&Response>,
    ) {
        let Some(&call) = self.by_session.get(&session) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let sdp = body.and_then(|b| {
            let mut headers = sip_message::Headers::new();
            headers.push(HeaderName::ContentType, b.content_type.clone());
            body::split(&headers, &b.data).ok().and_then(|s| s.sdp)
        });
        if c.passthrough {
            return self.leg_established(now, call, sdp, response);
        }
        let failure = match (c.sdp.state(), sdp) {
            (SignalingState::HaveLocalOffer, Some(sdp)) => {
                c.sdp.receive_answer(&sdp).err().map(|e| e.to_string())
            }
            (SignalingState::HaveLocalOffer, None) => Some("no SDP answer".to_owned()),
            _ => None,
        };
        let outgoing = c.direction == Direction2::Outgoing;
        c.clear(Timer::Establish);
        c.established_once = true;
        let accept_types = accept_types_of(&c.sdp);
        c.accept_types = accept_types;
        c.configuration = configuration_of(c.sdp.negotiated()).map(Box::new);
        if let Some(reason) = failure {
            // RFC 3264: the call cannot go on without an answer we can use.
            c.ending = Some(Reason::MediaFailure {
                reason: reason.clone(),
            });
            let session_id = session;
            let text = format!("SIP;cause=488;text=\"{}\"", reason.replace('"', "'"));
            if let Err(error) = self.core.user_agent().hangup(now, session_id, Some(&text)) {
                tracing::debug!(%error, "hangup failed");
            }
            self.core.pump(now);
            return;
        }
        // UCMA's CallEstablishResult carries the 2xx's headers (the callee's
        // `CallAcceptOptions` headers among them).
        let headers = response
            .map(|r| body::headers_of(&r.headers))
            .unwrap_or_default();
        self.flow_requested(call);
        let reason = if outgoing {
            Reason::LocalEstablished
        } else {
            Reason::RemoteEstablished
        };
        self.transition(call, CallState::Established, reason);
        if outgoing {
            self.emit(
                call,
                CallEvent::EstablishCompleted {
                    result: Ok(EstablishSucceeded { headers }),
                },
            );
        }
        if self.calls.get(&call).and_then(|c| c.media_port).is_some() {
            // AV: `Active` once RTP arrives and we send (`handle_media`).
            self.start_media(call);
        } else {
            self.set_flow(call, MediaFlowState::Active);
        }
        self.arm(
            call,
            Timer::MaxDuration,
            now + self.config.max_call_duration,
        );
        if self.calls.get(&call).is_some_and(|c| c.bridge.is_some()) {
            self.anchored_established(now, call, response);
        }
        self.park_established(now, call);
    }

    fn on_modify_completed(&mut self, now: Instant, session: SessionId, response: &Response) {
        let Some(&call) = self.by_session.get(&session) else {
            return;
        };
        if self.join_reoffer_completed(now, call, response) {
            return;
        }
        if self.relaying_modify(call) {
            return self.relay_modify_completed(now, call, response);
        }
        if self.park_reoffer_completed(now, call, response) {
            return;
        }
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some((operation, direction)) = c.pending.take() else {
            return;
        };
        let result = if (200..300).contains(&response.status) {
            let sdp = body::split(&response.headers, &response.body)
                .ok()
                .and_then(|s| s.sdp);
            match sdp.map(|sdp| c.sdp.receive_answer(&sdp).map(|_| ())) {
                Some(Ok(())) => {
                    c.local_direction = direction;
                    c.wish = direction;
                    Ok(())
                }
                Some(Err(error)) => {
                    c.sdp.rollback();
                    Err(OperationFailure::Media {
                        reason: error.to_string(),
                    })
                }
                None => {
                    c.sdp.rollback();
                    Err(OperationFailure::Media {
                        reason: "no SDP answer".into(),
                    })
                }
            }
        } else {
            c.sdp.rollback();
            Err(OperationFailure::Refused {
                status: response.status,
            })
        };
        if result.is_err() {
            c.undo_reoffer();
        } else {
            c.caps_before = None;
        }
        let ok = result.is_ok();
        self.emit(call, CallEvent::OperationCompleted { operation, result });
        if ok {
            self.configuration_changed(call);
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        session: Option<SessionId>,
        tx: &TransactionKey,
        status: u16,
        response: Option<&Response>,
    ) {
        if self.on_transfer_response(now, tx, status, response)
            || self.on_park_response(now, tx, status)
        {
            return;
        }
        let result = if (200..300).contains(&status) {
            DeliveryResult::Delivered
        } else {
            DeliveryResult::Failed { status }
        };
        if let Some((endpoint, id)) = self.pages.remove(tx) {
            self.events.push_back(Event::Endpoint {
                endpoint,
                event: EndpointEvent::MessageDelivered { id, result },
            });
            return;
        }
        let Some(call) = session.and_then(|s| self.by_session.get(&s).copied()) else {
            return;
        };
        if let Some(id) = self
            .calls
            .get_mut(&call)
            .and_then(|c| c.messages.remove(tx))
        {
            self.emit(call, CallEvent::MessageDelivered { id, result });
        }
    }

    fn on_terminated(&mut self, session: SessionId, termination: &Termination) {
        let Some(call) = self.by_session.remove(&session) else {
            return;
        };
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let reason = c.ending.clone().unwrap_or_else(|| reason_of(termination));
        self.finish(call, reason, Some(termination));
    }

    /// The call is over: flow and state to `Terminated`, the establish result if it was
    /// still pending, pending messages failed, and the call forgotten.
    fn finish(&mut self, call: CallHandle, reason: Reason, termination: Option<&Termination>) {
        let call_id = self
            .calls
            .get(&call)
            .map(|c| c.sip_call_id.clone())
            .unwrap_or_default();
        tracing::info!(%call, call_id = %call_id, ?reason, "call ended");
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let outgoing_pending = c.direction == Direction2::Outgoing && !c.established_once;
        let state = c.state;
        if let Some((bridge, leg)) = c.bridge {
            let failure = (outgoing_pending && state != CallState::Idle)
                .then(|| failure_of(&reason, termination));
            self.bridge_work.push_back(b2bua::LegEnded {
                bridge,
                call,
                leg,
                reason: reason.clone(),
                failure,
                termination_reason: termination
                    .and_then(|t| t.reason.as_ref())
                    .map(|r| crate::body::text(r)),
            });
        }
        let pending = c.pending.take();
        let messages: Vec<MessageId> = c.messages.drain().map(|(_, id)| id).collect();
        if let Some(session) = c.session.take() {
            self.by_session.remove(&session);
        }
        if let Some((operation, _)) = pending {
            self.emit(
                call,
                CallEvent::OperationCompleted {
                    operation,
                    result: Err(OperationFailure::CallEnded),
                },
            );
        }
        for id in messages {
            self.emit(
                call,
                CallEvent::MessageDelivered {
                    id,
                    result: DeliveryResult::Failed { status: 481 },
                },
            );
        }
        self.close_media(call);
        if self.calls.get(&call).and_then(|c| c.flow).is_some() {
            self.set_flow(call, MediaFlowState::Terminated);
        }
        if outgoing_pending && state != CallState::Idle {
            let failure = failure_of(&reason, termination);
            self.emit(
                call,
                CallEvent::EstablishCompleted {
                    result: Err(failure),
                },
            );
        }
        self.transfers_call_ended(call);
        self.parking.call_ended(call);
        self.room_call_ended(call);
        // `Terminated` is always the call's last event.
        if state != CallState::Terminated {
            self.transition(call, CallState::Terminated, reason.clone());
        }
        if let Some(c) = self.calls.remove(&call)
            && let Some(conversation) = self.conversations.get_mut(&c.conversation)
        {
            conversation.calls = conversation.calls.saturating_sub(1);
            if conversation.calls == 0 {
                self.conversations.remove(&c.conversation);
            }
        }
    }

    // ---- timers

    fn arm(&mut self, call: CallHandle, timer: Timer, at: Instant) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.clear(timer);
            c.deadlines.push((timer, at));
            self.timers.push(Reverse((at, timer, call)));
        }
        self.compact_timers();
    }

    /// Whether a deadline in the heap is still wanted: its call exists and holds it.
    fn is_live(&self, at: Instant, timer: Timer, call: CallHandle) -> bool {
        self.calls
            .get(&call)
            .is_some_and(|c| c.deadline(timer) == Some(at))
    }

    /// Rebuilds the deadline heap from the live deadlines when stale ones (of ended
    /// calls: a call's one-hour cap outlives most calls) outnumber them, so the heap
    /// stays bounded by the live calls, not by the calls of the last hour.
    /// Amortized O(1): a rebuild happens when the heap has doubled since the last one.
    fn compact_timers(&mut self) {
        if self.timers.len() <= self.compact_at {
            return;
        }
        self.timers = self
            .calls
            .iter()
            .flat_map(|(&call, c)| {
                c.deadlines
                    .iter()
                    .map(move |&(timer, at)| Reverse((at, timer, call)))
            })
            .collect();
        self.compact_at = (2 * self.timers.len()).max(COMPACT_MIN);
    }

    fn on_timer(&mut self, now: Instant, at: Instant, timer: Timer, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.deadline(timer) != Some(at) {
            return;
        }
        c.clear(timer);
        let session = c.session;
        match timer {
            Timer::Establish if c.state == CallState::Establishing => {
                c.ending = Some(Reason::Timeout);
                if let Some(session) = session {
                    self.transition(call, CallState::Terminating, Reason::Timeout);
                    if let Err(error) = self.core.user_agent().hangup(
                        now,
                        session,
                        Some("SIP;cause=408;text=\"Establish timeout\""),
                    ) {
                        tracing::debug!(%error, "hangup failed");
                    }
                    self.core.pump(now);
                }
            }
            Timer::Unanswered if c.state == CallState::Incoming => {
                c.ending = Some(Reason::Timeout);
                if let Some(tx) = c.invite_tx.take() {
                    self.respond(now, &tx, Reply::new(480));
                }
            }
            Timer::MaxDuration
                if matches!(
                    c.state,
                    CallState::Established | CallState::Transferring | CallState::Parking
                ) =>
            {
                // Set before the BYE: the dialog ends the session within `terminate`.
                c.ending = Some(Reason::MaxDurationReached);
                let _ = self.terminate(
                    now,
                    call,
                    CallTerminateOptions {
                        reason: Some("SIP;cause=200;text=\"Maximum call duration\"".into()),
                        headers: Vec::new(),
                    },
                );
            }
            Timer::ComposingRefresh if c.local_composing => self.refresh_composing(now, call),
            Timer::RemoteComposing if c.remote_composing => {
                c.remote_composing = false;
                self.emit(call, CallEvent::RemoteComposingChanged { composing: false });
            }
            Timer::DemoRing if c.state == CallState::Incoming => {
                let _ = self.decline(now, call, CallDeclineOptions::new(480));
            }
            Timer::TransferGuard(_) | Timer::ReferAnswer(_) | Timer::ReferExpiry(_) => {
                self.on_transfer_timer(now, timer);
            }
            Timer::TransferorHangup => self.transferor_hangup(now, call),
            _ => {}
        }
    }

    /// RFC 3994 §3.2: an `active` state is refreshed before the peer's timeout.
    fn refresh_composing(&mut self, now: Instant, call: CallHandle) {
        match self.send_composing(now, call, true) {
            Ok(()) => self.arm(
                call,
                Timer::ComposingRefresh,
                now + im::ACTIVE_REFRESH - Duration::from_secs(20),
            ),
            Err(error) => tracing::debug!(%error, "composing refresh not sent"),
        }
    }

    // ---- the demo users

    /// Acts on the events of demo endpoints' calls (they never reach the application).
    /// Returns whether any was handled.
    fn run_demo(&mut self, now: Instant) -> bool {
        let mut handled = false;
        let mut i = 0;
        while i < self.events.len() {
            let demo = match self.events.get(i) {
                Some(Event::Endpoint { endpoint, .. }) => self.demo_of(*endpoint),
                Some(Event::Call { call, .. }) => self.demo_calls.get(call).copied(),
                _ => None,
            };
            let Some(behaviour) = demo else {
                i += 1;
                continue;
            };
            handled = true;
            if let Some(event) = self.events.remove(i) {
                self.demo(now, behaviour, event);
            }
        }
        handled
    }

    fn demo_of(&self, endpoint: EndpointHandle) -> Option<DemoBehaviour> {
        self.endpoints.get(&endpoint).and_then(|e| e.demo)
    }

    fn demo(&mut self, now: Instant, behaviour: DemoBehaviour, event: Event) {
        let result = match event {
            Event::Endpoint {
                event: EndpointEvent::CallReceived(received),
                ..
            } => {
                let call = received.call;
                match behaviour {
                    DemoBehaviour::Busy => self.decline(now, call, CallDeclineOptions::new(486)),
                    DemoBehaviour::Ring => {
                        let r = self.send_provisional(
                            now,
                            call,
                            CallProvisionalResponseOptions::new(180),
                        );
                        self.arm(call, Timer::DemoRing, now + self.config.ring_timeout);
                        r
                    }
                    DemoBehaviour::Echo => self
                        .send_provisional(now, call, CallProvisionalResponseOptions::new(180))
                        .and_then(|()| self.accept(now, call, CallAcceptOptions::new())),
                    DemoBehaviour::Answer => {
                        if let Some(c) = self.calls.get_mut(&call) {
                            c.no_media = true;
                        }
                        self.accept(now, call, CallAcceptOptions::new())
                    }
                }
            }
            Event::Endpoint {
                endpoint,
                event: EndpointEvent::MessageReceived(message),
            } if behaviour == DemoBehaviour::Echo => {
                // Page mode: back to the sender, from where it came.
                let target = name_addr_uri(&message.from);
                let transport = self
                    .core_ref()
                    .local_addrs()
                    .first()
                    .map_or(Transport::Udp, |(t, _)| *t);
                let options = MessageOptions {
                    destination: Some(Destination {
                        transport,
                        addr: message.source,
                    }),
                    ..MessageOptions::default()
                };
                self.send_page_message(
                    now,
                    endpoint,
                    &target,
                    InstantMessage {
                        content_type: message.content_type.clone(),
                        body: message.body.clone(),
                    },
                    options,
                )
                .map(|_| ())
            }
            Event::Call {
                call,
                event:
                    CallEvent::MessageReceived {
                        content_type, body, ..
                    },
            } if behaviour == DemoBehaviour::Echo => self
                .send_instant_message(
                    now,
                    call,
                    InstantMessage { content_type, body },
                    MessageOptions::default(),
                )
                .map(|_| ()),
            Event::Call {
                call,
                event:
                    CallEvent::StateChanged {
                        state: CallState::Terminated,
                        ..
                    },
            } => {
                self.demo_calls.remove(&call);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(error) = result {
            tracing::debug!(%error, ?behaviour, "demo user could not act");
        }
    }

    // ---- media

    /// Replaces where RTP ports come from (the runtime's source binds them). Ports the
    /// old source handed out stay with it.
    pub fn set_port_source(&mut self, source: Box<dyn PortSource>) {
        self.ports = source;
    }

    /// What the media layer saw on a call's stream.
    pub fn handle_media(&mut self, now: Instant, call: CallHandle, indication: MediaIndication) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        match indication {
            MediaIndication::Receiving => {
                c.rtp_receiving = true;
                self.maybe_active(call);
            }
            MediaIndication::Timeout { after } => {
                c.rtp_receiving = false;
                let established = matches!(c.state, CallState::Established | CallState::Parking);
                self.emit(call, CallEvent::MediaTimedOut { after });
                if established && self.config.media.hangup_on_timeout {
                    if let Some(c) = self.calls.get_mut(&call) {
                        c.ending = Some(Reason::MediaTimeout);
                    }
                    let text = format!("SIP;cause=200;text=\"No RTP for {} s\"", after.as_secs());
                    let _ = self.terminate(
                        now,
                        call,
                        CallTerminateOptions {
                            reason: Some(text),
                            headers: Vec::new(),
                        },
                    );
                }
            }
            MediaIndication::Tone { tone, duration } => {
                self.emit(call, CallEvent::ToneReceived { tone, duration });
            }
            MediaIndication::PlayCompleted => self.emit(call, CallEvent::PlayCompleted),
            MediaIndication::DtmfSent => self.emit(call, CallEvent::DtmfSent),
            MediaIndication::RecordingFailed { reason } => {
                self.emit(call, CallEvent::RecordingFailed { reason });
            }
            MediaIndication::Failed { reason } => {
                tracing::warn!(%call, call_id = %c.sip_call_id, %reason, "media failed");
                if c.ending.is_none() {
                    c.ending = Some(Reason::MediaFailure {
                        reason: reason.clone(),
                    });
                }
                if c.state == CallState::Incoming
                    && let Some(tx) = c.invite_tx.take()
                {
                    self.respond(now, &tx, Reply::new(500).with_reason("Media unavailable"));
                    return;
                }
                let text = format!("SIP;cause=500;text=\"{}\"", reason.replace('"', "'"));
                let _ = self.terminate(
                    now,
                    call,
                    CallTerminateOptions {
                        reason: Some(text),
                        headers: Vec::new(),
                    },
                );
            }
        }
        self.drain(now);
    }

    /// An AV call takes its RTP port: the driver is told to bind it before the SDP with
    /// it goes out. `None` for an IM call.
    fn open_media(&mut self, call: CallHandle) -> Result<Option<u16>, CallError> {
        let c = self.calls.get(&call).ok_or(CallError::NoSuchCall(call))?;
        if c.kind != CallKind::AudioVideo || c.no_media {
            return Ok(None);
        }
        if let Some(port) = c.media_port {
            return Ok(Some(port));
        }
        let (first, last) = self.ports.range();
        let port = self
            .ports
            .reserve()
            .ok_or(CallError::NoMediaPort { first, last })?;
        if let Some(c) = self.calls.get_mut(&call) {
            c.media_port = Some(port);
        }
        self.events.push_back(Event::Media {
            call,
            instruction: MediaInstruction::Open { port },
        });
        Ok(Some(port))
    }

    fn close_media(&mut self, call: CallHandle) {
        let Some(port) = self.calls.get_mut(&call).and_then(|c| c.media_port.take()) else {
            return;
        };
        self.ports.release(port);
        self.events.push_back(Event::Media {
            call,
            instruction: MediaInstruction::Close { port },
        });
    }

    /// The negotiated stream, to the driver.
    fn start_media(&mut self, call: CallHandle) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let (Some(port), Some(audio)) = (
            c.media_port,
            c.sdp.negotiated().and_then(|n| n.audio.as_ref()),
        ) else {
            return;
        };
        let sends = |d: Direction| matches!(d, Direction::SendRecv | Direction::SendOnly);
        let settings = StreamSettings {
            local_port: port,
            remote: audio.remote,
            codec: audio.codec.name.clone(),
            payload_type: audio.codec.payload_type,
            clock_rate: audio.codec.clock_rate,
            ptime: Duration::from_millis(u64::from(audio.ptime.unwrap_or(20).clamp(10, 200))),
            telephone_event: audio.telephone_event.as_ref().map(|t| t.payload_type),
            send: sends(audio.local_direction) && audio.remote.is_some(),
            receive: sends(audio.remote_direction),
            echo: self.demo_calls.get(&call) == Some(&DemoBehaviour::Echo),
            media_timeout: self.config.media.timeout,
        };
        self.events.push_back(Event::Media {
            call,
            instruction: MediaInstruction::Start(settings),
        });
        self.maybe_active(call);
    }

    /// UCMA's flow is `Active` when media really flows: RTP has arrived and we send.
    fn maybe_active(&mut self, call: CallHandle) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let sends = matches!(c.local_direction, Direction::SendRecv | Direction::SendOnly);
        if c.flow == Some(MediaFlowState::Idle) && c.rtp_receiving && sends {
            self.set_flow(call, MediaFlowState::Active);
        }
    }

    // ---- helpers

    fn next(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn check(&self, call: CallHandle, operation: Operation) -> Result<&Call, CallError> {
        let c = self.calls.get(&call).ok_or(CallError::NoSuchCall(call))?;
        if !permits(c.state, operation) {
            return Err(CallError::InvalidState {
                operation,
                state: c.state,
            });
        }
        Ok(c)
    }

    fn emit(&mut self, call: CallHandle, event: CallEvent) {
        self.observe_transfer_target(call, &event);
        self.events.push_back(Event::Call { call, event });
    }

    fn transition(&mut self, call: CallHandle, state: CallState, reason: Reason) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let previous = c.state;
        if previous == state {
            return;
        }
        if !may_transition(previous, state) {
            tracing::warn!(%call, %previous, %state, ?reason, "illegal call state transition refused");
            return;
        }
        c.state = state;
        if previous == CallState::Incoming && state == CallState::Establishing {
            self.transfers.on_answered(call);
        }
        self.emit(
            call,
            CallEvent::StateChanged {
                previous,
                state,
                reason,
            },
        );
    }

    /// The flow exists: raise `FlowConfigurationRequested` once, before it starts.
    fn flow_requested(&mut self, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.flow.is_some() {
            return;
        }
        c.flow = Some(MediaFlowState::Idle);
        let kind = c.kind;
        self.emit(call, CallEvent::FlowConfigurationRequested { kind });
    }

    fn set_flow(&mut self, call: CallHandle, state: MediaFlowState) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let previous = c.flow.unwrap_or(MediaFlowState::Idle);
        if c.flow == Some(state) {
            return;
        }
        c.flow = Some(state);
        self.emit(call, CallEvent::FlowStateChanged { previous, state });
    }

    /// After a completed offer/answer in the dialog: report the new configuration when
    /// anything in it changed (a hold or retrieve, the codec, the peer's media address),
    /// not for a refresh that changed nothing.
    fn configuration_changed(&mut self, call: CallHandle) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(configuration) = configuration_of(c.sdp.negotiated()) else {
            return;
        };
        let changed = c.configuration.as_deref() != Some(&configuration);
        c.remote_direction = configuration.remote_direction;
        c.local_direction = configuration.local_direction;
        c.configuration = Some(Box::new(configuration.clone()));
        if changed {
            self.emit(call, CallEvent::FlowConfigurationChanged { configuration });
            self.start_media(call);
        }
    }

    fn respond(&mut self, now: Instant, tx: &TransactionKey, reply: Reply) {
        if let Err(error) = self.core.user_agent().respond(now, tx, reply) {
            tracing::debug!(%error, "response not sent");
        }
        self.core.pump(now);
    }

    fn advertised(&self, local: IpAddr) -> IpAddr {
        self.config.endpoint.advertised_address.unwrap_or(local)
    }

    fn capabilities(&self, kind: CallKind, address: IpAddr, sip_port: u16) -> LocalCapabilities {
        // Port 9 until the call offers or answers: the real port is taken then
        // (`open_media`).
        let mut caps = LocalCapabilities::with_codecs(address, self.config.codecs.clone());
        if kind == CallKind::InstantMessaging {
            caps.audio = false;
            caps.message = Some(MessageCapabilities {
                port: sip_port,
                ..MessageCapabilities::default()
            });
        }
        caps
    }

    /// Where a request to `target` goes: the given destination, else the URI's host (an
    /// IP address) and port, over its `transport` parameter (UDP by default), from our
    /// socket of that transport.
    fn route(&self, target: &str, destination: Option<Destination>) -> Result<Flow, CallError> {
        let uri = parse_sip(target, "target")?;
        let unroutable = |problem: String| CallError::Unroutable {
            target: target.to_owned(),
            problem,
        };
        let (transport, remote) = match destination {
            Some(d) => (d.transport, d.addr),
            None => {
                let transport = match uri.transport_param() {
                    Some(t) => Transport::from_token(t)
                        .ok_or_else(|| unroutable("unknown transport parameter".into()))?,
                    None if uri.secure => Transport::Tls,
                    None => Transport::Udp,
                };
                let ip = match &uri.host {
                    Host::Ipv4(ip) => IpAddr::V4(*ip),
                    Host::Ipv6(ip) => IpAddr::V6(*ip),
                    Host::Domain(_) => {
                        return Err(unroutable(
                            "the host is a name: give a destination (the runtime resolves names)"
                                .into(),
                        ));
                    }
                };
                let port = uri.port.unwrap_or(transport.default_port());
                (transport, SocketAddr::new(ip, port))
            }
        };
        let local = self
            .core
            .local_addrs()
            .iter()
            .find(|(t, a)| *t == transport && a.is_ipv4() == remote.is_ipv4())
            .or_else(|| {
                self.core
                    .local_addrs()
                    .iter()
                    .find(|(t, _)| *t == transport)
            })
            .map(|(_, a)| *a)
            .ok_or_else(|| unroutable(format!("no {transport} socket")))?;
        Ok(Flow {
            transport,
            local,
            remote,
            connection: None,
        })
    }
}

// ---- free helpers

fn parse_uri(text: &str, what: &'static str) -> Result<Uri, CallError> {
    Uri::parse(text.trim().as_bytes()).map_err(|e| CallError::InvalidArgument {
        what,
        problem: format!("`{text}`: {}", e.reason_phrase()),
    })
}

fn parse_sip(text: &str, what: &'static str) -> Result<sip_message::SipUri, CallError> {
    let uri = parse_uri(text, what)?;
    uri.as_sip()
        .cloned()
        .ok_or_else(|| CallError::InvalidArgument {
            what,
            problem: format!("`{text}` is not a sip: or sips: URI"),
        })
}

fn host_text(host: &Host) -> String {
    match host {
        Host::Domain(d) => crate::body::text(d),
        Host::Ipv4(ip) => ip.to_string(),
        Host::Ipv6(ip) => format!("[{ip}]"),
    }
}

fn trunk_name(event: &sip_core::TrunkEvent) -> &str {
    event.trunk()
}

/// The Request-URI's user part, unescaped.
/// The user part a call through a trunk dials: the target's user (a SIP URI) or the
/// target itself (a bare number such as `+15551234567`).
fn trunk_user(target: &str) -> String {
    match sip_message::Uri::parse(target.as_bytes()) {
        Ok(uri) => uri
            .as_sip()
            .and_then(|s| s.user_unescaped())
            .map(|u| crate::body::text(&u))
            .unwrap_or_default(),
        Err(_) => target.to_owned(),
    }
}

fn request_user(request: &Request) -> Option<String> {
    let uri = request.uri_ref().ok()?;
    let sip = uri.as_sip()?;
    sip.user_unescaped().map(|u| crate::body::text(&u))
}

fn header_text(request: &Request, name: &str) -> Option<String> {
    request
        .headers
        .get(&HeaderName::parse(name.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).trim().to_owned())
}

/// The URI inside a From/To value.
fn name_addr_uri(value: &str) -> String {
    sip_message::NameAddr::parse(&Bytes::copy_from_slice(value.as_bytes()))
        .map(|n| String::from_utf8_lossy(&n.uri.to_bytes()).into_owned())
        .unwrap_or_else(|| value.to_owned())
}

fn add_conversation_headers(
    headers: &mut Vec<(HeaderName, Bytes)>,
    settings: &ConversationSettings,
) {
    if let Some(subject) = &settings.subject {
        let subject = subject.replace(['\r', '\n'], " ");
        headers.push((HeaderName::parse(b"Subject"), Bytes::from(subject)));
    }
    if settings.priority != Priority::Normal {
        headers.push((
            HeaderName::parse(b"Priority"),
            Bytes::from_static(settings.priority.as_str().as_bytes()),
        ));
    }
}

/// An offer is an IM call when it has a live `m=message` stream and no live audio.
fn is_im(description: &SessionDescription) -> bool {
    use sdp_offer_answer::MediaKind;
    let live = |kind: &MediaKind| {
        description
            .media()
            .iter()
            .any(|m| m.kind() == kind && m.port() != 0)
    };
    live(&MediaKind::Message) && !live(&MediaKind::Audio)
}

fn accept_types_of(sdp: &OfferAnswer) -> Vec<String> {
    sdp.negotiated()
        .and_then(|n| n.message.as_ref())
        .map(|m| m.accept_types.clone())
        .unwrap_or_default()
}

fn configuration_of(negotiated: Option<&Negotiated>) -> Option<FlowConfiguration> {
    let n = negotiated?;
    if let Some(audio) = &n.audio {
        return Some(FlowConfiguration {
            local_direction: audio.local_direction,
            remote_direction: audio.remote_direction,
            codec: Some(format!("{}/{}", audio.codec.name, audio.codec.clock_rate)),
            telephone_event: audio.telephone_event.as_ref().map(|c| c.payload_type),
            remote_media: audio.remote,
            accept_types: Vec::new(),
        });
    }
    n.message.as_ref().map(|m| FlowConfiguration {
        local_direction: Direction::SendRecv,
        remote_direction: Direction::SendRecv,
        codec: None,
        telephone_event: None,
        remote_media: None,
        accept_types: m.accept_types.clone(),
    })
}

/// 488 with a Warning naming the problem (RFC 3261 §21.4.26, §20.43: 304/305).
fn not_acceptable(problem: &str) -> Reply {
    let problem = problem.replace(['"', '\r', '\n'], "'");
    Reply::new(488).with_header(HeaderName::Warning, format!("304 tandem \"{problem}\""))
}

/// Why the dialog layer ended a session, as a call transition reason.
fn reason_of(termination: &Termination) -> Reason {
    match (termination.by, termination.cause) {
        (Side::Remote, EndCause::Bye) => Reason::RemoteTerminated,
        (Side::Local, EndCause::Bye) => Reason::LocalTerminated,
        (_, EndCause::Cancelled) => match termination.by {
            Side::Remote => Reason::RemoteCancelled,
            Side::Local => Reason::LocalTerminated,
        },
        (Side::Remote, EndCause::Rejected { status }) if (300..400).contains(&status) => {
            Reason::RemoteForwarded {
                status,
                targets: termination
                    .response
                    .as_deref()
                    .map(contacts_of)
                    .unwrap_or_default(),
            }
        }
        (Side::Remote, EndCause::Rejected { status: 408 }) => Reason::Timeout,
        (Side::Remote, EndCause::Rejected { status }) => Reason::RemoteDeclined {
            status,
            reason_phrase: termination
                .response
                .as_deref()
                .map(|r| crate::body::text(&r.reason))
                .unwrap_or_default(),
        },
        (Side::Local, EndCause::Rejected { status }) => Reason::LocalDeclined { status },
        (_, EndCause::AckTimeout | EndCause::Timeout) => Reason::Timeout,
        (_, EndCause::TransportError) => Reason::TransportError,
        (_, EndCause::SessionExpired) => Reason::SessionExpired,
        (_, EndCause::DialogFailed { status }) => Reason::DialogFailed { status },
        _ => Reason::RemoteTerminated,
    }
}

fn contacts_of(response: &Response) -> Vec<String> {
    match response.headers.contacts() {
        Ok(sip_message::Contacts::List(list)) => list
            .iter()
            .map(|c| String::from_utf8_lossy(&c.addr.uri.to_bytes()).into_owned())
            .collect(),
        _ => Vec::new(),
    }
}

fn failure_of(reason: &Reason, termination: Option<&Termination>) -> EstablishFailure {
    match reason {
        Reason::RemoteDeclined {
            status,
            reason_phrase,
        } => {
            let response = termination.and_then(|t| t.response.as_deref());
            EstablishFailure::Refused {
                status: *status,
                reason_phrase: reason_phrase.clone(),
                reason: termination
                    .and_then(|t| t.reason.as_ref())
                    .map(|r| crate::body::text(r)),
                headers: response
                    .map(|r| body::headers_of(&r.headers))
                    .unwrap_or_default(),
            }
        }
        Reason::RemoteForwarded { status, targets } => EstablishFailure::Redirected {
            status: *status,
            targets: targets.clone(),
        },
        Reason::Timeout => EstablishFailure::Timeout,
        Reason::TransportError => EstablishFailure::TransportError,
        Reason::MediaFailure { reason } => EstablishFailure::Media {
            reason: reason.clone(),
        },
        Reason::LocalTerminated => EstablishFailure::Cancelled,
        other => EstablishFailure::Ended {
            reason: other.clone(),
        },
    }
}

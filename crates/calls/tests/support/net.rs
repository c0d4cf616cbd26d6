//! Two (or more) call engines on a virtual network and a virtual clock.
//!
//! Every `poll_transmit()` of an engine is put on the wire and delivered, after a
//! latency, to the engine whose address is the transmit's `flow.remote` (or lost: to an
//! address no engine owns, by a seeded loss rate, or by a test's filter). Every engine
//! is woken exactly at its `poll_timeout()`. The applications are test code: a closure
//! per engine sees each event as it is raised and may command the engine at once (B
//! accepts every `CallReceived`...). A whole call with its 32 s of Timer J runs in
//! milliseconds.
//!
//! Adapted from the user-agent simulator of `sip-dialog`'s tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use calls::sip_core::{Flow, Transmit};
use calls::{
    ApplicationEndpointSettings, CallAcceptOptions, CallEvent, CallHandle, CallReceived,
    EndpointEvent, EndpointHandle, Engine, EngineConfig, Event, MediaIndication, MediaInstruction,
    RoomId, StreamSettings,
};
use sip_message::{Message, Method, Request, Response, Transport};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const A_ADDR: &str = "127.0.0.1:5060";
pub const B_ADDR: &str = "127.0.0.2:5060";
pub const ALICE: &str = "sip:alice@127.0.0.1";
pub const BOB: &str = "sip:bob@127.0.0.2";
/// A third party, for transfers.
pub const C_ADDR: &str = "127.0.0.3:5060";
pub const CAROL: &str = "sip:carol@127.0.0.3";
pub const T1: Duration = Duration::from_millis(500);

/// What an application does with each event of its engine, as it is raised.
pub type App = Box<dyn FnMut(&mut Engine, Instant, &Event)>;

/// Returns false to lose a message: (message, from, to).
pub type Filter = Box<dyn FnMut(&Message, SocketAddr, SocketAddr) -> bool>;

pub struct Node {
    pub addr: SocketAddr,
    pub engine: Engine,
    /// Every event the engine raised, in order, with the virtual time.
    pub log: Vec<(Duration, Event)>,
    /// Every message the engine sent (retransmissions included), decoded, with the time.
    pub sent: Vec<(Duration, Message)>,
    pub app: Option<App>,
}

pub struct Net {
    pub start: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    /// (deliver at, sequence) → (transport, to, from, bytes)
    in_flight: BTreeMap<(Instant, u64), (Transport, SocketAddr, SocketAddr, Bytes)>,
    seq: u64,
    pub latency: Duration,
    pub loss_percent: u64,
    rng: u64,
    pub filter: Option<Filter>,
    pub delivered: u64,
    pub lost: u64,
    /// Messages sent to an address no engine owns.
    pub unreachable: u64,
    /// A media plane: each engine's started RTP streams; a stream that sends to
    /// another's address makes that one `Receiving` (its flow goes `Active`). Off: no
    /// RTP ever arrives.
    ///
    /// Joined streams (`MediaInstruction::Join`, a media-anchored bridge on one node)
    /// relay: once both have started, a joined stream sends nothing of its own and
    /// forwards what arrives at its peer (RTP from A's phone at A's port reaches B's
    /// phone, and the reverse). See [`Net::hears`].
    pub media: bool,
    streams: BTreeMap<(usize, CallHandle), StreamSettings>,
    receiving: std::collections::BTreeSet<(usize, CallHandle)>,
    /// Joined calls, both ways: (node, call) → its peer on the same node.
    joins: BTreeMap<(usize, CallHandle), CallHandle>,
    /// Every media instruction, per node, in order.
    pub media_log: Vec<(usize, CallHandle, MediaInstruction)>,
    /// Streams told to play (`MediaInstruction::Play`: the file, `None` for the tone),
    /// until a `Join`, `JoinRoom` or `Close` of the call stops it.
    playing: BTreeMap<(usize, CallHandle), Option<String>>,
    /// Calls in a conference room (`MediaInstruction::JoinRoom`): (node, call) → room.
    /// A member's stream sends the mix of what reaches the room's other members (once
    /// their streams started), nothing of its own. See [`Net::hears_all`].
    rooms: BTreeMap<(usize, CallHandle), RoomId>,
    /// Room-wide announcements (`MediaInstruction::PlayRoom`): the file, `None` for the
    /// tone.
    room_playing: BTreeMap<(usize, RoomId), Option<String>>,
    /// Calls muted in rooms (`MediaInstruction::Mute`): the room does not mix them.
    muted: std::collections::BTreeSet<(usize, CallHandle)>,
    /// SIP peers the test writes by hand (see [`RawPeer`]).
    pub raw: Vec<RawPeer>,
}

/// A SIP peer the test drives by hand (a BLF phone): what reaches its address is kept in
/// `inbox`; each request is answered by `answer` (a 200 by default). It sends with
/// [`Net::send_raw`].
pub struct RawPeer {
    pub addr: SocketAddr,
    pub inbox: Vec<(Duration, Message)>,
    /// Every message it sent, with the time.
    pub sent: Vec<(Duration, Message)>,
    pub answer: Answer,
}

/// How a raw peer answers a request (`None`: it does not).
pub type Answer = Box<dyn FnMut(&Request) -> Option<Response>>;

impl RawPeer {
    /// The requests of `method` it received, in order.
    pub fn requests(&self, method: Method) -> Vec<Request> {
        self.inbox
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Request(r) if r.method == method => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// The responses it received, in order.
    pub fn responses(&self) -> Vec<Response> {
        self.inbox
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Response(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }
}

/// An engine config with no demo users (plain application endpoints) and a seed.
pub fn plain_config(seed: u64) -> EngineConfig {
    let mut config = EngineConfig {
        demo_users: vec![],
        ..EngineConfig::default()
    };
    config.endpoint.seed = seed;
    config
}

impl Net {
    pub fn new() -> Net {
        let start = Instant::now();
        Net {
            start,
            now: start,
            nodes: Vec::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            latency: Duration::from_millis(10),
            loss_percent: 0,
            rng: 42,
            filter: None,
            delivered: 0,
            lost: 0,
            unreachable: 0,
            media: true,
            streams: BTreeMap::new(),
            receiving: std::collections::BTreeSet::new(),
            joins: BTreeMap::new(),
            media_log: Vec::new(),
            playing: BTreeMap::new(),
            rooms: BTreeMap::new(),
            room_playing: BTreeMap::new(),
            muted: std::collections::BTreeSet::new(),
            raw: Vec::new(),
        }
    }

    /// Adds a hand-driven SIP peer at `addr` answering every request 200; returns its
    /// index in `raw`.
    pub fn add_raw(&mut self, addr: &str) -> usize {
        self.raw.push(RawPeer {
            addr: addr.parse().unwrap(),
            inbox: Vec::new(),
            sent: Vec::new(),
            answer: Box::new(|request| Some(Response::from_request(request, 200, None))),
        });
        self.raw.len() - 1
    }

    /// Puts a message of raw peer `peer` on the wire to `to` over UDP (lost like any
    /// other by the loss rate and the filter).
    pub fn send_raw(&mut self, peer: usize, to: SocketAddr, message: Message) {
        let at = self.elapsed();
        let from = self.raw[peer].addr;
        self.raw[peer].sent.push((at, message.clone()));
        let bytes = match &message {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        };
        self.put_on_wire(&message, Transport::Udp, from, to, bytes);
    }

    /// Whether the stream of `call` on `node` was told to play, and what (`None`: the
    /// tone), since its last `Join` or `Close`.
    pub fn playing(&self, node: usize, call: CallHandle) -> Option<Option<String>> {
        self.playing.get(&(node, call)).cloned()
    }

    /// A (alice, 127.0.0.1) and B (bob, 127.0.0.2), plain application endpoints.
    /// Returns the net and the two endpoint handles.
    pub fn pair() -> (Net, EndpointHandle, EndpointHandle) {
        Net::pair_with(plain_config(1), plain_config(2))
    }

    pub fn pair_with(a: EngineConfig, b: EngineConfig) -> (Net, EndpointHandle, EndpointHandle) {
        let mut net = Net::new();
        let ia = net.add(A_ADDR, a);
        let ib = net.add(B_ADDR, b);
        let alice = net.nodes[ia]
            .engine
            .add_application_endpoint(ApplicationEndpointSettings::new(ALICE))
            .unwrap();
        let bob = net.nodes[ib]
            .engine
            .add_application_endpoint(ApplicationEndpointSettings::new(BOB))
            .unwrap();
        (net, alice, bob)
    }

    /// A (alice), B (bob) and C (carol, 127.0.0.3), plain application endpoints.
    pub fn trio() -> (Net, [EndpointHandle; 3]) {
        let (mut net, alice, bob) = Net::pair();
        let ic = net.add(C_ADDR, plain_config(3));
        let carol = net.nodes[ic]
            .engine
            .add_application_endpoint(ApplicationEndpointSettings::new(CAROL))
            .unwrap();
        (net, [alice, bob, carol])
    }

    /// Adds an engine listening on `addr` over UDP and TCP.
    pub fn add(&mut self, addr: &str, config: EngineConfig) -> usize {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut engine = Engine::new(config);
        engine
            .core()
            .set_local_addrs(vec![(Transport::Udp, addr), (Transport::Tcp, addr)]);
        self.nodes.push(Node {
            addr,
            engine,
            log: Vec::new(),
            sent: Vec::new(),
            app: None,
        });
        self.nodes.len() - 1
    }

    pub fn reseed(&mut self, seed: u64) {
        self.rng = seed;
    }

    pub fn set_app(
        &mut self,
        node: usize,
        app: impl FnMut(&mut Engine, Instant, &Event) + 'static,
    ) {
        self.nodes[node].app = Some(Box::new(app));
    }

    pub fn engine(&mut self, node: usize) -> &mut Engine {
        &mut self.nodes[node].engine
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Moves every engine's output onto the wire and its events into its log, letting
    /// its application react, until nothing more comes out.
    pub fn collect(&mut self) {
        loop {
            let mut progressed = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].engine.poll_transmit() {
                    progressed = true;
                    self.wire(i, t);
                }
                while let Some(event) = self.nodes[i].engine.poll_event() {
                    progressed = true;
                    let at = self.elapsed();
                    let now = self.now;
                    if let Event::Media { call, instruction } = &event {
                        self.media_instruction(i, *call, instruction);
                    }
                    let node = &mut self.nodes[i];
                    if let Some(app) = node.app.as_mut() {
                        app(&mut node.engine, now, &event);
                    }
                    node.log.push((at, event));
                }
            }
            if self.media {
                progressed |= self.flow_rtp();
            }
            if !progressed {
                break;
            }
        }
    }

    /// What the media plane does with an engine's media instruction (logged in
    /// `media_log`). Called for every `Event::Media` an engine raises; a test may call it
    /// to play an instruction the engine did not give.
    pub fn media_instruction(
        &mut self,
        node: usize,
        call: CallHandle,
        instruction: &MediaInstruction,
    ) {
        self.media_log.push((node, call, instruction.clone()));
        match instruction {
            MediaInstruction::Start(settings) => {
                self.streams.insert((node, call), settings.clone());
            }
            MediaInstruction::Play { file, .. } => {
                self.playing.insert((node, call), file.clone());
            }
            MediaInstruction::Close { .. } => {
                self.playing.remove(&(node, call));
                self.streams.remove(&(node, call));
                self.receiving.remove(&(node, call));
                self.rooms.remove(&(node, call));
                self.muted.remove(&(node, call));
                if let Some(peer) = self.joins.remove(&(node, call)) {
                    self.joins.remove(&(node, peer));
                }
            }
            MediaInstruction::Mute { muted } => {
                if *muted {
                    self.muted.insert((node, call));
                } else {
                    self.muted.remove(&(node, call));
                }
            }
            MediaInstruction::JoinRoom { room } => {
                // The room replaces what was playing and any relay.
                self.playing.remove(&(node, call));
                if let Some(peer) = self.joins.remove(&(node, call)) {
                    self.joins.remove(&(node, peer));
                }
                self.rooms.insert((node, call), *room);
            }
            MediaInstruction::LeaveRoom { room } if self.rooms.get(&(node, call)) == Some(room) => {
                self.rooms.remove(&(node, call));
            }
            MediaInstruction::PlayRoom { room, file, .. } => {
                self.room_playing.insert((node, *room), file.clone());
            }
            MediaInstruction::Join { peer } => {
                // The relay replaces what was playing, and takes the calls out of rooms.
                self.playing.remove(&(node, call));
                self.playing.remove(&(node, *peer));
                self.rooms.remove(&(node, call));
                self.rooms.remove(&(node, *peer));
                for c in [call, *peer] {
                    if let Some(old) = self.joins.remove(&(node, c)) {
                        self.joins.remove(&(node, old));
                    }
                }
                self.joins.insert((node, call), *peer);
                self.joins.insert((node, *peer), call);
            }
            MediaInstruction::Unjoin { peer } if self.joins.get(&(node, call)) == Some(peer) => {
                self.joins.remove(&(node, call));
                self.joins.remove(&(node, *peer));
            }
            _ => {}
        }
    }

    /// The call `call` on `node` is joined to (both streams started), if any.
    pub fn joined(&self, node: usize, call: CallHandle) -> Option<CallHandle> {
        self.joins
            .get(&(node, call))
            .copied()
            .filter(|_| self.streams.contains_key(&(node, call)))
            .filter(|peer| self.streams.contains_key(&(node, *peer)))
    }

    /// The room `call` on `node` is in (its stream started), if any.
    pub fn in_room(&self, node: usize, call: CallHandle) -> Option<RoomId> {
        self.rooms
            .get(&(node, call))
            .copied()
            .filter(|_| self.streams.contains_key(&(node, call)))
    }

    /// The members of `room` on `node` whose streams started, in handle order.
    pub fn room_streams(&self, node: usize, room: RoomId) -> Vec<CallHandle> {
        self.rooms
            .iter()
            .filter(|((n, c), r)| *n == node && **r == room && self.streams.contains_key(&(*n, *c)))
            .map(|((_, c), _)| *c)
            .collect()
    }

    /// What room `room` on `node` was told to announce to everyone (`PlayRoom`: the
    /// file, `None` for the tone).
    pub fn room_playing(&self, node: usize, room: RoomId) -> Option<Option<String>> {
        self.room_playing.get(&(node, room)).cloned()
    }

    /// Whose RTP reaches the stream of `call` on `node` now: the stream it comes from,
    /// followed back through joined pairs to where it originates (a joined stream sends
    /// what arrives at its peer, nothing of its own). None: nothing arrives. Through a
    /// conference room several streams reach it: the first of [`Net::hears_all`].
    pub fn hears(&self, node: usize, call: CallHandle) -> Option<(usize, CallHandle)> {
        self.hears_all(node, call).into_iter().next()
    }

    /// Every stream whose RTP reaches the stream of `call` on `node` now, where it
    /// originates: followed back through joined pairs, and through conference rooms (a
    /// member's stream sends the mix of what reaches every other member, not what
    /// reaches itself). Empty: nothing arrives.
    pub fn hears_all(&self, node: usize, call: CallHandle) -> Vec<(usize, CallHandle)> {
        let mut origins = Vec::new();
        self.hears_within(node, call, 8, &mut origins);
        origins
    }

    fn hears_within(
        &self,
        node: usize,
        call: CallHandle,
        hops: u32,
        origins: &mut Vec<(usize, CallHandle)>,
    ) {
        let Some(t) = self.streams.get(&(node, call)) else {
            return;
        };
        let ip = self.nodes[node].addr.ip();
        for (&(i, c), s) in &self.streams {
            let Some(to) = s.remote.filter(|_| s.send) else {
                continue;
            };
            if to.ip() != ip || to.port() != t.local_port {
                continue;
            }
            if let Some(peer) = self.joined(i, c) {
                if hops > 0 {
                    self.hears_within(i, peer, hops - 1, origins);
                }
            } else if let Some(room) = self.in_room(i, c) {
                if hops > 0 {
                    for member in self.room_streams(i, room) {
                        if member != c && !self.muted.contains(&(i, member)) {
                            self.hears_within(i, member, hops - 1, origins);
                        }
                    }
                }
            } else if !origins.contains(&(i, c)) {
                origins.push((i, c));
            }
        }
    }

    /// RTP "flows" to every stream something reaches ([`Net::hears`]): the receiver is
    /// told `Receiving` once.
    fn flow_rtp(&mut self) -> bool {
        let arrivals: Vec<(usize, CallHandle)> = self
            .streams
            .keys()
            .copied()
            .filter(|&(j, call)| {
                !self.receiving.contains(&(j, call)) && self.hears(j, call).is_some()
            })
            .collect();
        let now = self.now;
        for &(j, call) in &arrivals {
            self.receiving.insert((j, call));
            self.nodes[j]
                .engine
                .handle_media(now, call, MediaIndication::Receiving);
        }
        !arrivals.is_empty()
    }

    fn wire(&mut self, from: usize, t: Transmit) {
        let message = Message::parse(t.payload.clone()).expect("the engine sends valid SIP");
        let at = self.elapsed();
        self.nodes[from].sent.push((at, message.clone()));
        self.put_on_wire(
            &message,
            t.flow.transport,
            t.flow.local,
            t.flow.remote,
            t.payload,
        );
    }

    fn put_on_wire(
        &mut self,
        message: &Message,
        transport: Transport,
        source: SocketAddr,
        to: SocketAddr,
        payload: Bytes,
    ) {
        let mut keep = true;
        if self.loss_percent > 0 && self.random() % 100 < self.loss_percent {
            keep = false;
        }
        if let Some(filter) = self.filter.as_mut() {
            keep = filter(message, source, to) && keep;
        }
        if !keep {
            self.lost += 1;
            return;
        }
        self.seq += 1;
        self.in_flight.insert(
            (self.now + self.latency, self.seq),
            (transport, to, source, payload),
        );
    }

    /// A message reached raw peer `peer`: kept, and a request answered.
    fn deliver_raw(&mut self, peer: usize, from: SocketAddr, bytes: Bytes) {
        let Ok(message) = Message::parse(bytes) else {
            return;
        };
        let at = self.elapsed();
        self.raw[peer].inbox.push((at, message.clone()));
        if let Message::Request(request) = &message
            && request.method != Method::Ack
            && let Some(response) = (self.raw[peer].answer)(request)
        {
            self.send_raw(peer, from, Message::Response(response));
        }
    }

    /// Runs the network and the clocks until `until`: messages delivered and timers
    /// fired in time order.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.collect();
            let next_msg = self.in_flight.keys().next().map(|(at, _)| *at);
            let next_timer = self
                .nodes
                .iter_mut()
                .filter_map(|n| n.engine.poll_timeout())
                .min();
            let next = match (next_msg, next_timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            let now = self.now;
            if next_msg == Some(next) {
                let key = *self.in_flight.keys().next().unwrap();
                let (transport, to, from, bytes) = self.in_flight.remove(&key).unwrap();
                match self.nodes.iter_mut().find(|n| n.addr == to) {
                    Some(node) => {
                        self.delivered += 1;
                        let flow = Flow {
                            transport,
                            local: to,
                            remote: from,
                            connection: None,
                        };
                        node.engine.handle_message(now, bytes, flow);
                    }
                    None => match self.raw.iter().position(|p| p.addr == to) {
                        Some(peer) => {
                            self.delivered += 1;
                            self.deliver_raw(peer, from, bytes);
                        }
                        None => self.unreachable += 1,
                    },
                }
            } else {
                for node in &mut self.nodes {
                    if node.engine.poll_timeout().is_some_and(|t| t <= now) {
                        node.engine.handle_timeout(now);
                    }
                }
            }
        }
        self.now = self.now.max(until);
        self.collect();
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Runs until `done` holds (checked after every step) or `limit` has passed;
    /// returns whether it held.
    pub fn run_while_not(&mut self, limit: Duration, mut done: impl FnMut(&Net) -> bool) -> bool {
        let until = self.now + limit;
        let step = Duration::from_millis(5);
        while self.now < until {
            if done(self) {
                return true;
            }
            let next = (self.now + step).min(until);
            self.run_until(next);
        }
        done(self)
    }

    // ---- reading what happened

    /// The events of `call` on `node`, in order.
    pub fn call_events(&self, node: usize, call: CallHandle) -> Vec<CallEvent> {
        self.nodes[node]
            .log
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Call { call: c, event } if *c == call => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    /// The events of `call` on `node` with their times.
    pub fn timed_call_events(&self, node: usize, call: CallHandle) -> Vec<(Duration, CallEvent)> {
        self.nodes[node]
            .log
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Call { call: c, event } if *c == call => Some((*at, event.clone())),
                _ => None,
            })
            .collect()
    }

    /// The endpoint events on `node`, in order.
    pub fn endpoint_events(&self, node: usize) -> Vec<EndpointEvent> {
        self.nodes[node]
            .log
            .iter()
            .filter_map(|(_, e)| match e {
                Event::Endpoint { event, .. } => Some(event.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every `CallReceived` on `node`.
    pub fn received(&self, node: usize) -> Vec<CallReceived> {
        self.endpoint_events(node)
            .into_iter()
            .filter_map(|e| match e {
                EndpointEvent::CallReceived(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// The only `CallReceived` on `node`.
    pub fn only_received(&self, node: usize) -> CallReceived {
        let all = self.received(node);
        assert_eq!(all.len(), 1, "{all:?}");
        all.into_iter().next().unwrap()
    }

    /// The requests `node` sent (retransmissions included).
    pub fn requests(&self, node: usize, method: Method) -> Vec<(Duration, Request)> {
        self.nodes[node]
            .sent
            .iter()
            .filter_map(|(at, m)| match m {
                Message::Request(r) if r.method == method => Some((*at, r.clone())),
                _ => None,
            })
            .collect()
    }

    /// The responses `node` sent (retransmissions included).
    pub fn responses(&self, node: usize) -> Vec<(Duration, Response)> {
        self.nodes[node]
            .sent
            .iter()
            .filter_map(|(at, m)| match m {
                Message::Response(r) => Some((*at, r.clone())),
                _ => None,
            })
            .collect()
    }

    /// The statuses of the responses `node` sent to requests of `method`, in order.
    pub fn statuses(&self, node: usize, method: Method) -> Vec<u16> {
        self.nodes[node]
            .sent
            .iter()
            .filter_map(|(_, m)| match m {
                Message::Response(r) if r.headers.cseq().is_ok_and(|c| c.method == method) => {
                    Some(r.status)
                }
                _ => None,
            })
            .collect()
    }

    /// (dialogs, transactions, calls) of `node`.
    pub fn load(&self, node: usize) -> (usize, usize, usize) {
        let s = self.nodes[node].engine.stats();
        (s.core.dialogs, s.core.transactions, s.calls)
    }

    /// Lets every timer run out (Timer J, K, L: 64·T1 at most, plus margin), then
    /// asserts that nothing is left on any engine: no dialog, transaction, call, and
    /// no wake-up asked for.
    pub fn assert_quiet(&mut self) {
        self.run_for(64 * T1 + Duration::from_secs(1));
        for i in 0..self.nodes.len() {
            assert_eq!(
                self.load(i),
                (0, 0, 0),
                "node {i}: {:?}",
                self.nodes[i].engine.stats()
            );
        }
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

/// An application that accepts every incoming call with these options.
pub fn accept_all(options: CallAcceptOptions) -> impl FnMut(&mut Engine, Instant, &Event) {
    move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            engine
                .accept(now, received.call, options.clone())
                .expect("accept");
        }
    }
}

/// The state changes in `events`: (previous, state, reason).
pub fn states(
    events: &[CallEvent],
) -> Vec<(
    calls::CallState,
    calls::CallState,
    calls::CallStateTransitionReason,
)> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged {
                previous,
                state,
                reason,
            } => Some((*previous, *state, reason.clone())),
            _ => None,
        })
        .collect()
}

/// The headers of a request or response, by name (case-insensitive), as text.
pub fn header_values(headers: &sip_message::Headers, name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
        .collect()
}

/// A one-line summary of every message on the wire, by time, for failure messages.
pub fn trace(net: &Net) -> String {
    let mut all: Vec<(Duration, usize, String)> = Vec::new();
    for (i, node) in net.nodes.iter().enumerate() {
        for (at, m) in &node.sent {
            let line = match m {
                Message::Request(r) => format!(
                    "{} {}",
                    r.method,
                    r.headers.cseq().map(|c| c.seq).unwrap_or_default()
                ),
                Message::Response(r) => format!(
                    "{} ({})",
                    r.status,
                    r.headers
                        .cseq()
                        .map(|c| format!("{} {}", c.seq, c.method))
                        .unwrap_or_default()
                ),
            };
            all.push((*at, i, line));
        }
    }
    all.sort_by_key(|(at, i, _)| (*at, *i));
    all.iter()
        .map(|(at, i, l)| format!("{:>10.3}s node {i}: {l}\n", at.as_secs_f64()))
        .collect()
}

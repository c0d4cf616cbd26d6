//! A virtual network of user agents on a virtual clock: messages are delivered after a
//! delay, optionally lost or reordered by a seeded generator, and every agent is woken
//! exactly when it asked. A whole call runs in milliseconds.
#![allow(dead_code)]

use bytes::Bytes;
use sip_dialog::{Body, Event, Invite, SessionId, UserAgent, UserAgentConfig};
use sip_message::{Message, Method, Transport};
use sip_transaction::{Flow, TransactionKey};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const SDP_A: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n";
pub const SDP_B: &str = "v=0\r\no=bob 2 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\na=sendrecv\r\n";

pub struct Peer {
    pub addr: SocketAddr,
    pub ua: UserAgent,
    pub events: Vec<Event>,
    /// Every message this peer sent, decoded, in order.
    pub sent: Vec<Message>,
}

/// What the network does to one message: deliver after `delay`, or drop it.
pub type Fault = Box<dyn FnMut(&Message, SocketAddr, SocketAddr) -> bool>;

pub struct Sim {
    pub now: Instant,
    pub start: Instant,
    pub peers: Vec<Peer>,
    /// (deliver at, sequence) → (to, from, bytes)
    in_flight: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Bytes)>,
    seq: u64,
    pub latency: Duration,
    /// Loss probability in percent, and jitter up to this much (reordering).
    pub loss_percent: u64,
    pub jitter: Duration,
    rng: u64,
    /// Returns false to drop a message (after loss).
    pub filter: Option<Fault>,
    pub delivered: u64,
    pub lost: u64,
    /// The transport every flow uses (UDP unless a test says otherwise).
    pub transport: Transport,
}

impl Sim {
    pub fn new(peers: usize) -> Sim {
        Sim::with_config(peers, |_| UserAgentConfig::default())
    }

    pub fn with_config(peers: usize, config: impl Fn(usize) -> UserAgentConfig) -> Sim {
        let start = Instant::now();
        let peers = (0..peers)
            .map(|i| {
                let mut c = config(i);
                c.seed = 1000 + i as u64;
                Peer {
                    addr: SocketAddr::from(([192, 0, 2, 1 + i as u8], 5060)),
                    ua: UserAgent::new(c),
                    events: Vec::new(),
                    sent: Vec::new(),
                }
            })
            .collect();
        Sim {
            now: start,
            start,
            peers,
            in_flight: BTreeMap::new(),
            seq: 0,
            latency: Duration::from_millis(10),
            loss_percent: 0,
            jitter: Duration::ZERO,
            rng: 42,
            filter: None,
            delivered: 0,
            lost: 0,
            transport: Transport::Udp,
        }
    }

    /// Seeds the loss and jitter generator.
    pub fn reseed(&mut self, seed: u64) {
        self.rng = seed;
    }

    pub fn flow(&self, from: usize, to: usize) -> Flow {
        Flow {
            transport: self.transport,
            local: self.peers[from].addr,
            remote: self.peers[to].addr,
            connection: None,
        }
    }

    pub fn ua(&mut self, i: usize) -> &mut UserAgent {
        &mut self.peers[i].ua
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Moves every peer's output onto the wire and its events into its list.
    pub fn collect(&mut self) {
        for i in 0..self.peers.len() {
            while let Some(t) = self.peers[i].ua.poll_transmit() {
                let msg = Message::parse(t.payload.clone()).expect("we send valid SIP");
                self.peers[i].sent.push(msg.clone());
                let from = self.peers[i].addr;
                let mut keep = true;
                if self.loss_percent > 0 && self.random() % 100 < self.loss_percent {
                    keep = false;
                }
                if let Some(filter) = self.filter.as_mut() {
                    keep = keep && filter(&msg, from, t.flow.remote);
                }
                if !keep {
                    self.lost += 1;
                    continue;
                }
                let jitter = if self.jitter.is_zero() {
                    Duration::ZERO
                } else {
                    Duration::from_micros(self.random() % self.jitter.as_micros() as u64)
                };
                let at = self.now + self.latency + jitter;
                self.seq += 1;
                self.in_flight
                    .insert((at, self.seq), (t.flow.remote, from, t.payload));
            }
            while let Some(e) = self.peers[i].ua.poll_event() {
                self.peers[i].events.push(e);
            }
        }
    }

    /// Runs until `until`, delivering messages and firing timers in time order.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            self.collect();
            let next_msg = self.in_flight.keys().next().map(|(at, _)| *at);
            let next_timer = self
                .peers
                .iter_mut()
                .filter_map(|p| p.ua.poll_timeout())
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
                let (to, from, bytes) = self.in_flight.remove(&key).unwrap();
                if let Some(peer) = self.peers.iter_mut().find(|p| p.addr == to) {
                    self.delivered += 1;
                    let flow = Flow {
                        transport: self.transport,
                        local: to,
                        remote: from,
                        connection: None,
                    };
                    peer.ua.handle_message(now, bytes, flow);
                }
            } else {
                for peer in &mut self.peers {
                    if peer.ua.poll_timeout().is_some_and(|t| t <= now) {
                        peer.ua.handle_timeout(now);
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

    /// Places a call from `from` to `to` with SDP_A as the offer.
    pub fn call(&mut self, from: usize, to: usize) -> SessionId {
        let flow = self.flow(from, to);
        let uri = format!("sip:bob@{}", self.peers[to].addr);
        let invite = Invite::new(
            uri.clone(),
            format!("<sip:alice@{}>", self.peers[from].addr),
            format!("<{uri}>"),
            flow,
        )
        .with_body(Body::sdp(SDP_A));
        let now = self.now;
        let id = self.peers[from].ua.invite(now, invite).expect("invite");
        self.collect();
        id
    }

    /// Takes the events of peer `i`.
    pub fn events(&mut self, i: usize) -> Vec<Event> {
        std::mem::take(&mut self.peers[i].events)
    }

    /// The first IncomingCall of peer `i`, taken out of its events.
    pub fn incoming(&mut self, i: usize) -> (SessionId, TransactionKey) {
        let events = &mut self.peers[i].events;
        let pos = events
            .iter()
            .position(|e| matches!(e, Event::IncomingCall { .. }))
            .expect("an IncomingCall");
        match events.remove(pos) {
            Event::IncomingCall { session, tx, .. } => (session, tx),
            _ => unreachable!(),
        }
    }

    /// The first Modify of peer `i`, taken out of its events.
    pub fn modify(
        &mut self,
        i: usize,
    ) -> Option<(SessionId, TransactionKey, sip_message::Request)> {
        let events = &mut self.peers[i].events;
        let pos = events
            .iter()
            .position(|e| matches!(e, Event::Modify { .. }))?;
        match events.remove(pos) {
            Event::Modify {
                session,
                tx,
                request,
            } => Some((session, tx, request)),
            _ => unreachable!(),
        }
    }

    /// How many requests of `method` peer `i` sent (retransmissions included).
    pub fn sent_requests(&self, i: usize, method: Method) -> usize {
        self.peers[i]
            .sent
            .iter()
            .filter(|m| matches!(m, Message::Request(r) if r.method == method))
            .count()
    }

    /// Statuses of the responses peer `i` sent, in order.
    pub fn sent_statuses(&self, i: usize) -> Vec<u16> {
        self.peers[i]
            .sent
            .iter()
            .filter_map(|m| match m {
                Message::Response(r) => Some(r.status),
                _ => None,
            })
            .collect()
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

pub fn terminated(events: &[Event]) -> Vec<sip_dialog::Termination> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Terminated { termination, .. } => Some(termination.clone()),
            _ => None,
        })
        .collect()
}

pub fn established(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Established { .. }))
        .count()
}

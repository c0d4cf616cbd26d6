//! A UAC-side harness for the endpoint: feeds raw messages on a virtual clock and reads
//! back what the endpoint sends.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use calls::sip_core::{Flow, Transmit};
use calls::{DemoBehaviour, Engine, EngineConfig, Event};
use sip_message::{HeaderName, Message, Response, Transport};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const LOCAL: &str = "127.0.0.1:5060";
pub const PEER: &str = "127.0.0.1:5099";

pub struct Harness {
    pub endpoint: Engine,
    pub start: Instant,
    pub now: Instant,
    /// Everything sent so far, with the virtual time it was sent at.
    pub sent: Vec<(Duration, Transmit)>,
    /// Every event so far.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub calls_answered: u64,
    pub dialogs: usize,
    pub dropped: u64,
    pub invites_new: u64,
    pub rejected_invalid: u64,
    pub transactions: usize,
}

pub fn flow(transport: Transport) -> Flow {
    Flow {
        transport,
        local: LOCAL.parse().unwrap(),
        remote: PEER.parse().unwrap(),
        connection: None,
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_users(&[])
    }

    /// The demo users plus `extra`, all answering like `echo`.
    pub fn with_users(extra: &[&str]) -> Harness {
        let mut config = EngineConfig::default();
        for user in extra {
            config
                .demo_users
                .push(((*user).to_owned(), DemoBehaviour::Echo));
        }
        Harness::with_config(config)
    }

    pub fn with_config(mut config: EngineConfig) -> Harness {
        config.endpoint.seed = 1;
        let start = Instant::now();
        let mut endpoint = Engine::new(config);
        endpoint.core().set_local_addrs(vec![
            (Transport::Udp, LOCAL.parse().unwrap()),
            (Transport::Tcp, LOCAL.parse().unwrap()),
        ]);
        Harness {
            endpoint,
            start,
            now: start,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The counters the tests read, from the engine and the endpoint beneath it.
    pub fn stats(&self) -> Counters {
        let s = self.endpoint.stats();
        Counters {
            calls_answered: s.calls_answered,
            dialogs: s.core.dialogs,
            dropped: s.core.dropped,
            invites_new: s.core.invites_new,
            rejected_invalid: s.core.rejected_invalid,
            transactions: s.core.transactions,
        }
    }

    /// The trunk and other core events seen so far.
    pub fn core_events(&self) -> Vec<calls::sip_core::EndpointEvent> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Core(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn drain(&mut self) -> Vec<Transmit> {
        let mut out = Vec::new();
        while let Some(t) = self.endpoint.poll_transmit() {
            self.sent.push((self.elapsed(), t.clone()));
            out.push(t);
        }
        while let Some(e) = self.endpoint.poll_event() {
            self.events.push(e);
        }
        out
    }

    /// Delivers `text` (LF or CRLF line ends; LF is turned into CRLF) over `transport`.
    pub fn send_on(&mut self, transport: Transport, text: &str) -> Vec<Transmit> {
        let wire = if text.contains("\r\n") {
            text.to_owned()
        } else {
            text.replace('\n', "\r\n")
        };
        self.send_bytes(transport, Bytes::from(wire))
    }

    pub fn send(&mut self, text: &str) -> Vec<Transmit> {
        self.send_on(Transport::Udp, text)
    }

    pub fn send_bytes(&mut self, transport: Transport, bytes: Bytes) -> Vec<Transmit> {
        self.endpoint
            .handle_message(self.now, bytes, flow(transport));
        self.drain()
    }

    /// Runs the virtual clock forward by `by`, firing every timer on the way.
    pub fn advance(&mut self, by: Duration) -> Vec<Transmit> {
        let target = self.now + by;
        let mut out = Vec::new();
        while let Some(at) = self.endpoint.poll_timeout() {
            if at > target {
                break;
            }
            self.now = self.now.max(at);
            self.endpoint.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = target;
        out
    }
}

pub fn response(t: &Transmit) -> Response {
    match Message::parse(t.payload.clone()).unwrap() {
        Message::Response(r) => r,
        Message::Request(r) => panic!("expected a response, got {}", r.method),
    }
}

pub fn statuses(ts: &[Transmit]) -> Vec<u16> {
    ts.iter().map(|t| response(t).status).collect()
}

pub fn header(r: &Response, name: HeaderName) -> String {
    r.headers
        .get(&name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

pub fn to_tag(r: &Response) -> String {
    String::from_utf8_lossy(r.headers.to().unwrap().tag().unwrap_or_default()).into_owned()
}

pub const SDP: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";

/// An INVITE from alice to `user`, with an SDP offer when `sdp` is set.
pub fn invite(user: &str, branch: &str, call_id: &str, sdp: bool) -> String {
    invite_with_sdp(user, branch, call_id, if sdp { SDP } else { "" })
}

/// An INVITE from alice to `user` with `body` as its SDP (none if empty).
pub fn invite_with_sdp(user: &str, branch: &str, call_id: &str, body: &str) -> String {
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE sip:{user}@{LOCAL} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PEER};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@{PEER}>;tag=alice1\r\n\
         To: <sip:{user}@{LOCAL}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{PEER}>\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// An in-dialog request from alice (ACK, BYE, re-INVITE) carrying our To tag.
pub fn in_dialog(
    method: &str,
    user: &str,
    branch: &str,
    call_id: &str,
    to_tag: &str,
    cseq: u32,
) -> String {
    format!(
        "{method} sip:{user}@{LOCAL} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PEER};branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: Alice <sip:alice@{PEER}>;tag=alice1\r\n\
         To: <sip:{user}@{LOCAL}>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

pub fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

//! Helpers shared by the integration tests: message text, flows, draining.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use sip_message::{Message, Request, Response, Transport};
use sip_transaction::{ConnectionId, Flow, TransactionEvent, TransactionLayer, Transmit};
use std::net::SocketAddr;

pub const UAC: &str = "192.0.2.1:5060";
pub const UAS: &str = "192.0.2.2:5060";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The flow from `local` to `remote` over `transport`.
pub fn flow(transport: Transport, local: &str, remote: &str) -> Flow {
    Flow {
        transport,
        local: addr(local),
        remote: addr(remote),
        connection: transport.is_reliable().then_some(ConnectionId(7)),
    }
}

/// The UAC's flow towards the UAS.
pub fn to_uas(transport: Transport) -> Flow {
    flow(transport, UAC, UAS)
}

/// The UAS's view of a message from the UAC.
pub fn from_uac(transport: Transport) -> Flow {
    flow(transport, UAS, UAC)
}

pub fn parse(bytes: &Bytes) -> Message {
    Message::parse(bytes.clone()).unwrap()
}

pub fn parse_request(text: &str) -> Request {
    match Message::parse(Bytes::from(text.replace('\n', "\r\n"))).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

pub fn parse_response(text: &str) -> Response {
    match Message::parse(Bytes::from(text.replace('\n', "\r\n"))).unwrap() {
        Message::Response(r) => r,
        Message::Request(_) => panic!("not a response"),
    }
}

pub fn as_request(t: &Transmit) -> Request {
    match parse(&t.payload) {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

pub fn as_response(t: &Transmit) -> Response {
    match parse(&t.payload) {
        Message::Response(r) => r,
        Message::Request(_) => panic!("not a response"),
    }
}

/// A request from the UAC: `method` with top Via `branch`, CSeq `cseq`.
pub fn request(
    transport: Transport,
    method: &str,
    branch: &str,
    call_id: &str,
    cseq: u32,
) -> Request {
    parse_request(&format!(
        "{method} sip:bob@example.com SIP/2.0\n\
         Via: SIP/2.0/{transport} 192.0.2.1:5060;branch={branch};rport\n\
         Max-Forwards: 70\n\
         Route: <sip:proxy.example.com;lr>\n\
         From: Alice <sip:alice@example.com>;tag=a1\n\
         To: Bob <sip:bob@example.com>\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} {method}\n\
         Contact: <sip:alice@192.0.2.1>\n\
         Content-Length: 0\n\n"
    ))
}

/// A response to `req` with `status` and an optional To tag.
pub fn response(req: &Request, status: u16, tag: Option<&str>) -> Response {
    Response::from_request(req, status, tag)
}

pub fn drain_transmits(layer: &mut TransactionLayer) -> Vec<Transmit> {
    std::iter::from_fn(|| layer.poll_transmit()).collect()
}

pub fn drain_events(layer: &mut TransactionLayer) -> Vec<TransactionEvent> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

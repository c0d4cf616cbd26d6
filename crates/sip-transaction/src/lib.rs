//! `sip-transaction`: the RFC 3261 §17 transaction layer, sans-IO.
//!
//! - [`machine`]: the four state machines (`ClientInvite`, `ClientNonInvite`,
//!   `ServerInvite`, `ServerNonInvite`, with RFC 6026's `Accepted`), which
//!   see response classes, not messages.
//! - [`timer`]: Timers A–M as an enum and a per-transaction deadline table.
//! - [`TransactionKey`]: matching per RFC 3261 §17.1.3 and §17.2.3, with the
//!   RFC 2543 fallback, and CANCEL targeting per §9.2.
//! - [`TransactionLayer`]: owns every transaction; `handle_*` inputs,
//!   `poll_transmit` / `poll_timeout` / `poll_event` outputs. It never reads
//!   the clock: every entry point takes `now`.
//!
//! A driver owns one layer, feeds it, and drains it until each `poll_*`
//! returns `None`:
//!
//! ```
//! use sip_message::{Bytes, Message, Response, Transport};
//! use sip_transaction::{Flow, RequestOutcome, TransactionEvent, TransactionLayer};
//! use std::time::{Duration, Instant};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let start = Instant::now();
//! let (uac_addr, uas_addr) = ("192.0.2.1:5060".parse()?, "192.0.2.2:5060".parse()?);
//! let to_uas = Flow { transport: Transport::Udp, local: uac_addr, remote: uas_addr, connection: None };
//! let from_uac = Flow { transport: Transport::Udp, local: uas_addr, remote: uac_addr, connection: None };
//! let (mut uac, mut uas) = (TransactionLayer::default(), TransactionLayer::default());
//!
//! let text = "OPTIONS sip:bob@192.0.2.2 SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport\r\n\
//!     Max-Forwards: 70\r\nFrom: <sip:alice@192.0.2.1>;tag=a\r\n\
//!     To: <sip:bob@192.0.2.2>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\r\n";
//! let Message::Request(options) = Message::parse(Bytes::from(text))? else { unreachable!() };
//!
//! // UAC: a client transaction; its request is ready to send.
//! let key = uac.send_request(start, options, to_uas)?;
//! let datagram = uac.poll_transmit().ok_or("nothing to send")?;
//! assert_eq!(uac.poll_timeout(), Some(start + Duration::from_millis(500))); // Timer E
//!
//! // UAS: the datagram arrives; the TU answers the new transaction.
//! let t = start + Duration::from_millis(20);
//! let Message::Request(request) = Message::parse(datagram.payload)? else { unreachable!() };
//! let RequestOutcome::New { key: server, request } = uas.handle_request(t, request, from_uac) else {
//!     unreachable!()
//! };
//! uas.send_response(t, &server, Response::from_request(&request, 200, Some("b")))?;
//! let reply = uas.poll_transmit().ok_or("no response")?;
//! assert_eq!(reply.flow.remote, uac_addr); // RFC 3581: rport, source address
//!
//! // UAC: the response completes the transaction and goes to the TU.
//! let t = start + Duration::from_millis(40);
//! let Message::Response(response) = Message::parse(reply.payload)? else { unreachable!() };
//! uac.handle_response(t, response, to_uas);
//! assert!(matches!(uac.poll_event(), Some(TransactionEvent::Response { key: k, .. }) if k == key));
//!
//! // Timer K (T4 over UDP) ends it.
//! uac.handle_timeout(t + Duration::from_secs(5));
//! assert!(matches!(uac.poll_event(), Some(TransactionEvent::Terminated { .. })));
//! assert!(uac.is_empty());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod error;
pub mod flow;
pub mod key;
pub mod layer;
pub mod machine;
pub mod tables;
pub mod timer;

pub use error::Error;
pub use flow::{ConnectionId, Flow, Transmit};
pub use key::{MAGIC_COOKIE, Role, TransactionKey};
pub use layer::{
    RequestOutcome, ResponseOutcome, TransactionEvent, TransactionLayer, TransactionStats,
};
pub use machine::{
    AckAction, ClientAction, ClientInvite, ClientNonInvite, InvalidState, ResponseClass,
    ServerAction, ServerInvite, ServerNonInvite, State, TimerAction,
};
pub use timer::{Timer, TimerConfig, TimerTable};

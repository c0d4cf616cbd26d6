//! `sip-message`: Tandem's SIP message parser and printer (RFC 3261 §7, §19, §20, §25).
//!
//! [`Message::parse`] splits a datagram or a stream frame into the start line and header
//! lines without copying: every header value is a [`Bytes`] slice of the input, kept
//! byte-exact so it can be relayed unchanged. Typed values ([`Via`], [`NameAddr`],
//! [`CSeq`], [`Uri`], ...) are parsed on demand through [`Headers`]. [`Request::validate`]
//! is the strict check a UAS runs before processing (RFC 3261 §8.2, RFC 4475), and its
//! [`ParseError`] names the 400/505 response to send. [`StreamFramer`] frames TCP/TLS
//! streams (RFC 3261 §18.3, RFC 5626 §3.5.1) and [`multipart`] handles MIME bodies
//! (RFC 2046 §5.1).
//!
//! ```
//! use sip_message::{Bytes, HeaderName, Message, Response};
//!
//! let datagram = Bytes::from_static(
//!     b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
//!       v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;rport\r\n\
//!       To: <sip:bob@example.com>\r\n\
//!       From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
//!       Call-ID: 3848276298220188511@192.0.2.1\r\n\
//!       CSeq: 1 OPTIONS\r\n\
//!       Content-Length: 0\r\n\r\n",
//! );
//! let Message::Request(req) = Message::parse(datagram)? else { unreachable!() };
//! req.validate()?; // on error: answer e.status_code() with e.reason_phrase()
//! let via = req.headers.top_via()?;
//! assert_eq!(via.rport(), Some(None));
//! assert_eq!(req.headers.from()?.display_name.as_deref(), Some("Alice"));
//!
//! let mut ok = Response::from_request(&req, 200, Some("a6c85cf"));
//! ok.headers.push(HeaderName::Allow, "INVITE, ACK, CANCEL, OPTIONS, BYE");
//! let wire = ok.to_bytes();
//! assert!(wire.starts_with(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060"));
//! # Ok::<(), sip_message::ParseError>(())
//! ```
#![forbid(unsafe_code)]

pub mod ascii;
mod error;
mod framing;
mod headers;
mod message;
mod method;
pub mod multipart;
mod name;
mod scan;
pub mod transport;
mod typed;
mod uri;

pub use bytes::{Bytes, BytesMut};
pub use error::ParseError;
pub use framing::{Frame, FramingError, Limits, StreamFramer};
pub use headers::{Header, Headers, ListValues};
pub use message::{Message, Request, Response, Version, default_reason_phrase};
pub use method::{KNOWN_METHODS, Method, Token};
pub use name::HeaderName;
pub use transport::Transport;
pub use typed::{CSeq, Contact, Contacts, MediaType, NameAddr, SipDate, Via, ViaTransport};
pub use uri::{Host, Param, SipUri, TelUri, Uri};

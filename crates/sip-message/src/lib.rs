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
#![forbid(unsafe_code)]

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
pub use method::{Method, Token};
pub use name::HeaderName;
pub use transport::Transport;
pub use typed::{CSeq, Contact, Contacts, MediaType, NameAddr, SipDate, Via, ViaTransport};
pub use uri::{Host, Param, SipUri, TelUri, Uri};

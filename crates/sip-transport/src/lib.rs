//! `sip-transport`: Tandem's SIP socket layer over tokio (RFC 3261 §18).
//!
//! It moves bytes only: a received UDP datagram, or one message framed out of a
//! TCP byte stream by [`sip_message::StreamFramer`] (RFC 3261 §18.3), is handed
//! up as an [`Inbound::Message`] with the [`Flow`](sip_transaction::Flow) it
//! travelled on; a [`Transmit`](sip_transaction::Transmit) from the core is sent
//! with [`Transports::send`]. Nothing here parses SIP beyond framing.
//!
//! - UDP: one socket per configured address, a receive loop per socket that
//!   never stops on a bad datagram or a transient socket error.
//! - TCP: an accept loop per listener, a reader task per connection (framing,
//!   CRLF keep-alive per RFC 5626 §3.5.1, idle timeout) and a writer task fed by
//!   a bounded queue, so that sending never blocks the caller. Connections are
//!   reused per RFC 3261 §18.1.1 and §18.2.2: a response goes back on the
//!   connection its request came on, and a request to a peer reuses an open
//!   connection to it.
//! - TLS (RFC 3261 §26.2.1): rustls (ring). Accepted connections make their
//!   handshake within a timeout, then are framed like TCP; a send over TLS with
//!   no open connection opens one, verifying the peer against the configured
//!   roots ([`TlsConfig`]).
//! - WebSocket (RFC 7118), plain and secure: the HTTP Upgrade must offer the
//!   `sip` subprotocol; each WebSocket message carries one SIP message, within
//!   the same size limits; pings are answered and closes completed.
//! - Stream seam: the connection tasks are generic over a reading and a
//!   writing half, so any byte stream plugs in by handing it to
//!   [`Transports::adopt_stream`].
//!
//! ```no_run
//! # async fn run() -> Result<(), sip_transport::TransportError> {
//! use sip_transport::{Inbound, TransportConfig, Transports};
//! let (transports, mut inbound) = Transports::bind(TransportConfig::default()).await?;
//! while let Some(item) = inbound.recv().await {
//!     match item {
//!         Inbound::Message { flow, data } => { /* parse, hand to the core */ }
//!         Inbound::TransportError { flow, error } => { /* fail the transaction */ }
//!         _ => {}
//!     }
//! }
//! transports.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod config;
mod error;
mod layer;
mod secure;
mod stats;
mod stream;
mod tls;
mod udp;
mod ws;

/// The stream framer used for TCP (and later TLS): sip-message's.
pub(crate) mod framing {
    pub use sip_message::{Frame, FramingError, Limits, StreamFramer};
}

pub use config::TransportConfig;
pub use error::TransportError;
pub use framing::{FramingError, Limits};
pub use layer::{CloseReason, Inbound, SentBy, Transports};
/// The rustls this crate builds on, for callers that build their own
/// [`TlsConfig`] (e.g. with a custom certificate verifier).
pub use rustls;
pub use stats::TransportStats;
pub use tls::{TlsConfig, client_config, crypto_provider};
pub use ws::SUBPROTOCOL as WS_SUBPROTOCOL;

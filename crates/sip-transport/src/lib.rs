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
//! - Stream seam: the connection tasks are generic over
//!   `AsyncRead + AsyncWrite`, so TLS (and any other byte-stream transport) plugs
//!   in by handing an established stream to [`Transports::adopt_stream`].
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
mod stats;
mod stream;
mod udp;

/// The stream framer used for TCP (and later TLS): sip-message's.
pub(crate) mod framing {
    pub use sip_message::{Frame, FramingError, Limits, StreamFramer};
}

pub use config::TransportConfig;
pub use error::TransportError;
pub use framing::{FramingError, Limits};
pub use layer::{CloseReason, Inbound, SentBy, Transports};
pub use stats::TransportStats;

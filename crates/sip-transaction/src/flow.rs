//! Where a message came from and where one must go: the seam between the
//! sans-IO core and the socket layer above it.

use bytes::Bytes;
use sip_message::Transport;
use std::net::SocketAddr;

/// Identifies one stream connection (TCP, TLS, WS) owned by the transport layer.
/// Datagram transports have none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// The path a message travelled or will travel: transport, our local socket
/// address, the peer's address, and for stream transports the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    /// Our socket address (the listener the message arrived on, or sends from).
    pub local: SocketAddr,
    /// The peer's socket address (the datagram's source, or the connection's peer).
    pub remote: SocketAddr,
    /// For stream transports, the connection to reuse if it is still open.
    pub connection: Option<ConnectionId>,
}

/// An encoded message the core asks the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it. For a stream transport, `flow.connection` names the
    /// connection to use; when it is `None` or closed, the transport opens (or
    /// reuses) a connection to `flow.remote`.
    pub flow: Flow,
    /// The whole encoded message.
    pub payload: Bytes,
}

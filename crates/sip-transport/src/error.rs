//! The one error enum of the transport layer.

use sip_message::Transport;
use sip_transaction::ConnectionId;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Why the transport layer could not bind, or could not deliver a message.
///
/// Returned by [`Transports::bind`](crate::Transports::bind) and
/// [`Transports::send`](crate::Transports::send), and carried by
/// [`Inbound::TransportError`](crate::Inbound::TransportError) when a send fails
/// after `send` returned (connect refused, write failed), so that the core can
/// fail the transaction (RFC 3261 §17.1.4, §17.2.4).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A listening socket could not be created or bound.
    #[error("cannot bind {transport} {addr}: {source}")]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        #[source]
        source: Arc<io::Error>,
    },
    /// No socket of this transport is bound (nothing to send from).
    #[error("no {0} socket is bound")]
    NoSocket(Transport),
    /// This transport is not (yet) implemented by this layer.
    #[error("transport {0} is not supported")]
    Unsupported(Transport),
    /// Opening a connection failed (refused, unreachable, ...).
    #[error("cannot connect to {remote}: {source}")]
    Connect {
        remote: SocketAddr,
        #[source]
        source: Arc<io::Error>,
    },
    /// Opening a connection took longer than the configured connect timeout.
    #[error("connect to {remote} timed out")]
    ConnectTimeout { remote: SocketAddr },
    /// Sending a datagram or writing to a connection failed.
    #[error("cannot send to {remote}: {source}")]
    Send {
        remote: SocketAddr,
        #[source]
        source: Arc<io::Error>,
    },
    /// The connection closed before the message could be written.
    #[error("connection {connection:?} to {remote} closed before the message was written")]
    ConnectionClosed {
        remote: SocketAddr,
        connection: ConnectionId,
    },
    /// The connection's write queue is full: the peer is not reading.
    #[error("write queue of connection {connection:?} to {remote} is full")]
    QueueFull {
        remote: SocketAddr,
        connection: ConnectionId,
    },
    /// The connection table is full ([`TransportConfig::max_connections`](crate::TransportConfig::max_connections)).
    #[error("too many connections (limit {limit})")]
    TooManyConnections { limit: usize },
    /// The payload is larger than the largest datagram this layer sends.
    #[error("datagram of {len} bytes exceeds the limit of {limit}")]
    DatagramTooLarge { len: usize, limit: usize },
    /// The layer has been shut down.
    #[error("the transport layer is shut down")]
    Shutdown,
    /// A TLS or WSS listener, or outbound TLS, without a
    /// [`TlsConfig`](crate::TlsConfig) in [`TransportConfig::tls`](crate::TransportConfig::tls).
    #[error("{transport} needs a TLS configuration (certificate and private key)")]
    TlsNotConfigured { transport: Transport },
    /// Outbound TLS without trusted roots: the peer's certificate could not be
    /// verified, so no connection is opened (RFC 5922 §7).
    #[error("outbound TLS to {remote} refused: no trusted CA certificates are configured")]
    NoTlsRoots { remote: SocketAddr },
    /// The server name given for outbound TLS is no DNS name or IP address.
    #[error("`{name}` is not a valid TLS server name")]
    InvalidServerName { name: String },
    /// A certificate, key or CA file could not be loaded.
    #[error("{}: {reason}", path.display())]
    TlsFile { path: PathBuf, reason: String },
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {source}")]
    TlsSetup {
        #[source]
        source: rustls::Error,
    },
    /// The TLS handshake of a connection we opened failed (e.g. the
    /// certificate did not verify).
    #[error("TLS handshake with {remote} failed: {source}")]
    TlsHandshake {
        remote: SocketAddr,
        #[source]
        source: Arc<io::Error>,
    },
}

impl TransportError {
    /// The kind of the underlying I/O error, if there is one (e.g.
    /// `ConnectionRefused` for a closed TCP port).
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            TransportError::Bind { source, .. }
            | TransportError::Connect { source, .. }
            | TransportError::Send { source, .. }
            | TransportError::TlsHandshake { source, .. } => Some(source.kind()),
            TransportError::ConnectTimeout { .. } => Some(io::ErrorKind::TimedOut),
            _ => None,
        }
    }
}

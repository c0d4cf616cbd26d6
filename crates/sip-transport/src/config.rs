//! Configuration of the transport layer.

use crate::framing::Limits;
use crate::tls::TlsConfig;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// What to bind and how the sockets behave.
///
/// `Default` listens on UDP and TCP `127.0.0.1:5060`, the daemon's embedded
/// default. Port 0 binds an ephemeral port; [`Transports::local_addrs`]
/// (crate::Transports::local_addrs) tells which one.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TransportConfig {
    /// UDP sockets to bind (RFC 3261 §18: a UA must implement UDP).
    pub udp: Vec<SocketAddr>,
    /// TCP listeners to bind (RFC 3261 §18: a UA must implement TCP).
    pub tcp: Vec<SocketAddr>,
    /// TLS listeners to bind (RFC 3261 §26.2.1); need [`tls`](Self::tls).
    pub tls_listen: Vec<SocketAddr>,
    /// WebSocket listeners to bind (RFC 7118): plain HTTP Upgrade.
    pub ws: Vec<SocketAddr>,
    /// Secure WebSocket listeners to bind (RFC 7118): TLS, then the HTTP
    /// Upgrade; need [`tls`](Self::tls).
    pub wss: Vec<SocketAddr>,
    /// Certificate and trust for the TLS and WSS listeners and for outbound TLS.
    pub tls: Option<TlsConfig>,
    /// Host written in Via sent-by instead of the bound IP, e.g. the public name
    /// or address, or the address to use when bound to `0.0.0.0`/`::`.
    pub advertised_host: Option<String>,
    /// SO_RCVBUF requested for each UDP socket (the kernel may cap it).
    pub udp_recv_buffer: usize,
    /// SO_SNDBUF requested for each UDP socket (the kernel may cap it).
    pub udp_send_buffer: usize,
    /// Largest datagram received or sent; a larger received datagram is dropped.
    pub max_datagram: usize,
    /// A stream connection with no traffic either way for this long is closed.
    /// `None` keeps connections until the peer closes them.
    pub tcp_idle_timeout: Option<Duration>,
    /// How long to wait for an outgoing connection to open, TLS handshake included.
    pub tcp_connect_timeout: Duration,
    /// How long an accepted connection may take to finish its TLS handshake
    /// and/or WebSocket upgrade; a slower or silent client is dropped.
    pub handshake_timeout: Duration,
    /// Most stream connections open at once (accepted + opened + accepted ones
    /// still in their TLS/WebSocket handshake); more are refused.
    pub max_connections: usize,
    /// Messages that may wait in one connection's write queue; more fail with
    /// [`TransportError::QueueFull`](crate::TransportError::QueueFull).
    pub connection_queue: usize,
    /// Capacity of the channel that carries [`Inbound`](crate::Inbound) items to the core.
    pub inbound_queue: usize,
    /// Framing limits for stream transports (RFC 3261 §18.3); on WebSockets,
    /// the same header and body limits apply to each message.
    pub limits: Limits,
    /// On [`Transports::shutdown`](crate::Transports::shutdown), how long queued
    /// writes may take to flush before the remaining tasks are aborted.
    pub shutdown_grace: Duration,
}

impl TransportConfig {
    /// The default UDP socket receive/send buffer requested: 4 MiB.
    pub const DEFAULT_UDP_BUFFER: usize = 4 << 20;
    /// The default largest datagram: 65535 bytes.
    pub const DEFAULT_MAX_DATAGRAM: usize = 65535;

    /// A configuration listening on the given addresses, other settings default.
    pub fn new(udp: Vec<SocketAddr>, tcp: Vec<SocketAddr>) -> Self {
        TransportConfig {
            udp,
            tcp,
            ..TransportConfig::default()
        }
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, 5060));
        TransportConfig {
            udp: vec![loopback],
            tcp: vec![loopback],
            tls_listen: Vec::new(),
            ws: Vec::new(),
            wss: Vec::new(),
            tls: None,
            advertised_host: None,
            udp_recv_buffer: Self::DEFAULT_UDP_BUFFER,
            udp_send_buffer: Self::DEFAULT_UDP_BUFFER,
            max_datagram: Self::DEFAULT_MAX_DATAGRAM,
            tcp_idle_timeout: Some(Duration::from_secs(300)),
            tcp_connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 4096,
            connection_queue: 256,
            inbound_queue: 4096,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

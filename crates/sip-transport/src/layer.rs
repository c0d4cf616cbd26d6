//! The [`Transports`] handle: binds the sockets, sends, reports, shuts down.

use crate::config::TransportConfig;
use crate::error::TransportError;
use crate::framing::FramingError;
use crate::stats::{Stats, TransportStats, inc};
use crate::stream::{self, ConnTable, Enqueue};
use crate::tls;
use crate::udp;
use bytes::Bytes;
use rustls_pki_types::ServerName;
use sip_message::Transport;
use sip_transaction::{ConnectionId, Flow, Transmit};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, trace, warn};

/// What the transport layer hands up to the core.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Inbound {
    /// One received UDP datagram, or one message framed out of a stream
    /// (RFC 3261 §18.3). Not parsed: it may be anything.
    Message { flow: Flow, data: Bytes },
    /// A message that [`Transports::send`] accepted could not be delivered
    /// (connect refused or timed out, write failed, connection lost before the
    /// write). `flow` is the message's flow, with the connection it was queued
    /// on. The core fails the transaction (RFC 3261 §17.1.4, §17.2.4).
    TransportError { flow: Flow, error: TransportError },
    /// A stream connection closed: its [`ConnectionId`] is no longer valid
    /// (RFC 5626 §4.4 flow failure). Not sent for closes caused by shutdown.
    ConnectionClosed { flow: Flow, reason: CloseReason },
}

/// Why a stream connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side.
    PeerClosed,
    /// No traffic for [`TransportConfig::tcp_idle_timeout`].
    Idle,
    /// The byte stream could not be framed (RFC 3261 §18.3).
    Framing(FramingError),
    /// Reading or writing failed.
    Io(std::io::ErrorKind),
    /// The transport layer is shutting down.
    Shutdown,
}

/// The `sent-by` of a Via header (RFC 3261 §18.1.1, §20.42): host and port.
/// Displays as `host:port`, with IPv6 literals in brackets.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SentBy {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for SentBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') && !self.host.starts_with('[') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The transport layer: a cheap, cloneable handle to the bound sockets and the
/// connection table. Received messages come out of the receiver returned by
/// [`Transports::bind`]; it ends after [`Transports::shutdown`], or once every
/// clone of the handle is dropped (then without waiting for queued writes).
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
    /// Shared by the handles only (never by the tasks): when the last handle
    /// goes, the tasks are told to stop, so nothing outlives its owner.
    _last_handle: Arc<LastHandle>,
}

struct LastHandle(Arc<Inner>);

impl Drop for LastHandle {
    fn drop(&mut self) {
        self.0.begin_shutdown();
    }
}

impl fmt::Debug for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transports")
            .field("local_addrs", &self.inner.local_addrs)
            .finish_non_exhaustive()
    }
}

pub(crate) struct UdpEndpoint {
    pub local: SocketAddr,
    pub socket: Arc<UdpSocket>,
}

pub(crate) struct Inner {
    pub config: TransportConfig,
    /// Every bound socket, in configuration order.
    pub local_addrs: Vec<(Transport, SocketAddr)>,
    /// UDP sockets to send from; emptied on shutdown.
    pub udp: RwLock<Vec<UdpEndpoint>>,
    pub conns: Mutex<ConnTable>,
    pub next_connection: AtomicU64,
    pub stats: Stats,
    pub shutdown: watch::Sender<bool>,
    /// The core's channel; taken on shutdown so that it ends once the tasks do.
    pub inbound: Mutex<Option<mpsc::Sender<Inbound>>>,
    pub tasks: Mutex<JoinSet<()>>,
    /// Origin of the millisecond clocks kept in atomics (connection activity).
    pub epoch: Instant,
    /// Handshakes of accepted TLS and WSS connections; replaced by
    /// [`Transports::set_tls_server`] (a certificate reload).
    pub tls_acceptor: RwLock<Option<TlsAcceptor>>,
    /// Handshakes of TLS connections we open (verified against the roots).
    pub tls_connector: Option<TlsConnector>,
}

/// Locks a mutex, ignoring poisoning: the data behind our mutexes stays
/// consistent across every early return, and a panic elsewhere must not take
/// the transport layer down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Tells every task to stop and releases what the handle holds: the
    /// core's channel and the UDP sockets.
    fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        lock(&self.inbound).take();
        self.udp.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub(crate) fn inbound_sender(&self) -> Option<mpsc::Sender<Inbound>> {
        lock(&self.inbound).clone()
    }

    /// Spawns a task tracked for shutdown, reaping finished ones.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = lock(&self.tasks);
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    pub(crate) fn next_connection_id(&self) -> ConnectionId {
        ConnectionId(self.next_connection.fetch_add(1, Ordering::Relaxed))
    }

    /// Milliseconds since `epoch`, for activity stamps.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Hands an item to the core, unless the layer shuts down first (so a core
/// that stopped reading never blocks shutdown).
pub(crate) async fn deliver(
    tx: &mpsc::Sender<Inbound>,
    shutdown: &mut watch::Receiver<bool>,
    item: Inbound,
) -> bool {
    tokio::select! {
        sent = tx.send(item) => sent.is_ok(),
        _ = shutdown.wait_for(|s| *s) => false,
    }
}

impl Transports {
    /// Binds every configured socket and starts the receive tasks.
    ///
    /// Returns the handle and the receiver of everything received. Fails if any
    /// socket cannot be bound (nothing stays bound then).
    pub async fn bind(
        config: TransportConfig,
    ) -> Result<(Transports, mpsc::Receiver<Inbound>), TransportError> {
        let mut local_addrs = Vec::new();
        let mut udp_sockets = Vec::new();
        for &addr in &config.udp {
            let socket = udp::bind(addr, &config)?;
            let local = socket.local_addr().map_err(|e| TransportError::Bind {
                transport: Transport::Udp,
                addr,
                source: Arc::new(e),
            })?;
            local_addrs.push((Transport::Udp, local));
            udp_sockets.push(UdpEndpoint {
                local,
                socket: Arc::new(socket),
            });
        }
        let tls = config.tls.as_ref();
        for (transport, addrs) in [
            (Transport::Tls, &config.tls_listen),
            (Transport::Wss, &config.wss),
        ] {
            if !addrs.is_empty() && tls.is_none() {
                return Err(TransportError::TlsNotConfigured { transport });
            }
        }
        let tls_acceptor = tls.map(|t| TlsAcceptor::from(Arc::clone(&t.server)));
        let tls_connector = tls
            .and_then(|t| t.client.as_ref())
            .map(|c| TlsConnector::from(Arc::clone(c)));
        let mut listeners = Vec::new();
        for (transport, addrs) in [
            (Transport::Tcp, &config.tcp),
            (Transport::Tls, &config.tls_listen),
            (Transport::Ws, &config.ws),
            (Transport::Wss, &config.wss),
        ] {
            for &addr in addrs {
                let listener = stream::bind_tcp(addr, transport)?;
                let local = listener.local_addr().map_err(|e| TransportError::Bind {
                    transport,
                    addr,
                    source: Arc::new(e),
                })?;
                local_addrs.push((transport, local));
                listeners.push((transport, local, listener));
            }
        }

        let (tx, rx) = mpsc::channel(config.inbound_queue.max(1));
        let (shutdown, _) = watch::channel(false);
        let recv_sockets: Vec<(SocketAddr, Arc<UdpSocket>)> = udp_sockets
            .iter()
            .map(|e| (e.local, Arc::clone(&e.socket)))
            .collect();
        let inner = Arc::new(Inner {
            config,
            local_addrs,
            udp: RwLock::new(udp_sockets),
            conns: Mutex::new(ConnTable::default()),
            next_connection: AtomicU64::new(1),
            stats: Stats::default(),
            shutdown,
            inbound: Mutex::new(Some(tx.clone())),
            tasks: Mutex::new(JoinSet::new()),
            epoch: Instant::now(),
            tls_acceptor: RwLock::new(tls_acceptor),
            tls_connector,
        });
        for (local, socket) in recv_sockets {
            info!(transport = "UDP", %local, "listening");
            let task = udp::recv_loop(Arc::clone(&inner), socket, local, tx.clone());
            inner.spawn(task);
        }
        for (transport, local, listener) in listeners {
            info!(transport = transport.as_str(), %local, "listening");
            let task =
                stream::accept_loop(Arc::clone(&inner), listener, local, transport, tx.clone());
            inner.spawn(task);
        }
        let transports = Transports {
            _last_handle: Arc::new(LastHandle(Arc::clone(&inner))),
            inner,
        };
        Ok((transports, rx))
    }

    /// Sends an encoded message where `transmit.flow` says.
    ///
    /// - UDP: from the socket bound to `flow.local`, else the first UDP socket
    ///   of the remote's address family, else the first UDP socket.
    /// - TCP, TLS: on `flow.connection` if it is still open; else on an open
    ///   connection to `flow.remote` (RFC 3261 §18.1.1, §18.2.2); else a new
    ///   connection is opened in the background. A new TLS connection verifies
    ///   the peer's certificate against its IP address (see
    ///   [`send_with_server_name`](Self::send_with_server_name) to name the server).
    /// - WS, WSS: on `flow.connection`, else an open connection to
    ///   `flow.remote`. This layer is a WebSocket server only: with no
    ///   connection the send fails with [`TransportError::Unsupported`].
    ///
    /// Stream sends only queue the message (they never wait for the peer);
    /// failures found later arrive as [`Inbound::TransportError`]. Errors
    /// known now (no socket, datagram send failed, queue full, too many
    /// connections, shut down) are returned.
    pub async fn send(&self, transmit: Transmit) -> Result<(), TransportError> {
        if self.inner.is_shut_down() {
            return Err(TransportError::Shutdown);
        }
        match transmit.flow.transport {
            Transport::Udp => self.send_udp(transmit).await,
            _ => self.send_stream(transmit, None),
        }
    }

    /// Like [`send`](Self::send), but a new TLS connection verifies the
    /// peer's certificate against `server_name` and sends it as SNI (RFC 6066
    /// §3, RFC 5922 §7): the domain the request was routed to, where the
    /// address came from DNS. An open connection to `flow.remote` is reused
    /// whatever name it was opened for.
    pub async fn send_with_server_name(
        &self,
        transmit: Transmit,
        server_name: &str,
    ) -> Result<(), TransportError> {
        if self.inner.is_shut_down() {
            return Err(TransportError::Shutdown);
        }
        match transmit.flow.transport {
            Transport::Udp => self.send_udp(transmit).await,
            _ => self.send_stream(transmit, Some(server_name)),
        }
    }

    async fn send_udp(&self, transmit: Transmit) -> Result<(), TransportError> {
        let Transmit { flow, payload } = transmit;
        let limit = self.inner.config.max_datagram;
        if payload.len() > limit {
            return Err(TransportError::DatagramTooLarge {
                len: payload.len(),
                limit,
            });
        }
        let socket = {
            let sockets = self.inner.udp.read().unwrap_or_else(|e| e.into_inner());
            let same_family = |e: &&UdpEndpoint| e.local.is_ipv4() == flow.remote.is_ipv4();
            sockets
                .iter()
                .find(|e| e.local == flow.local)
                .or_else(|| sockets.iter().find(same_family))
                .or_else(|| sockets.first())
                .map(|e| (e.local, Arc::clone(&e.socket)))
        };
        let Some((local, socket)) = socket else {
            return Err(if self.inner.is_shut_down() {
                TransportError::Shutdown
            } else {
                TransportError::NoSocket(Transport::Udp)
            });
        };
        let stats = &self.inner.stats;
        match socket.send_to(&payload, flow.remote).await {
            Ok(n) => {
                inc(&stats.datagrams_out);
                crate::stats::add(&stats.bytes_out, n);
                trace!(transport = "UDP", %local, remote = %flow.remote, bytes = n, "sent");
                Ok(())
            }
            Err(e) => {
                inc(&stats.send_errors);
                debug!(transport = "UDP", %local, remote = %flow.remote, error = %e, "send failed");
                Err(TransportError::Send {
                    remote: flow.remote,
                    source: Arc::new(e),
                })
            }
        }
    }

    fn send_stream(
        &self,
        mut transmit: Transmit,
        server_name: Option<&str>,
    ) -> Result<(), TransportError> {
        let transport = transmit.flow.transport;
        let remote = transmit.flow.remote;
        let mut table = lock(&self.inner.conns);
        // The named connection if still open (RFC 3261 §18.2.2), then any open
        // connection to the same peer (§18.1.1 reuse), established ones first.
        let candidates: Vec<_> = transmit
            .flow
            .connection
            .into_iter()
            .chain(table.to_remote(transport, remote))
            .collect();
        for id in candidates {
            match table.enqueue(id, transport, transmit) {
                Enqueue::Queued => return Ok(()),
                Enqueue::Full => {
                    return Err(TransportError::QueueFull {
                        remote,
                        connection: id,
                    });
                }
                Enqueue::Gone(t) => transmit = t,
            }
        }
        let tls = match transport {
            Transport::Tcp => None,
            Transport::Tls => Some(self.tls_connector(remote, server_name)?),
            other => return Err(TransportError::Unsupported(other)),
        };
        let limit = self.inner.config.max_connections;
        if table.len() >= limit {
            inc(&self.inner.stats.connections_rejected);
            return Err(TransportError::TooManyConnections { limit });
        }
        let local = self.listener_or_unspecified(transport, remote);
        let task = stream::open(&self.inner, &mut table, local, transmit, tls)?;
        drop(table);
        self.inner.spawn(task);
        Ok(())
    }

    /// The connector and the name to verify for a new TLS connection.
    fn tls_connector(
        &self,
        remote: SocketAddr,
        server_name: Option<&str>,
    ) -> Result<(TlsConnector, ServerName<'static>), TransportError> {
        if self.inner.config.tls.is_none() {
            return Err(TransportError::TlsNotConfigured {
                transport: Transport::Tls,
            });
        }
        let Some(connector) = self.inner.tls_connector.clone() else {
            return Err(TransportError::NoTlsRoots { remote });
        };
        Ok((connector, tls::server_name(server_name, remote.ip())?))
    }

    fn listener_or_unspecified(&self, transport: Transport, remote: SocketAddr) -> SocketAddr {
        self.inner
            .local_addrs
            .iter()
            .find(|(t, a)| *t == transport && a.is_ipv4() == remote.is_ipv4())
            .map(|(_, a)| *a)
            .unwrap_or_else(|| {
                let ip = if remote.is_ipv4() {
                    IpAddr::from([0u8; 4])
                } else {
                    IpAddr::from([0u16; 8])
                };
                SocketAddr::new(ip, 0)
            })
    }

    /// Hands an established byte stream (e.g. a test duplex, or a TLS session
    /// made elsewhere) to the layer: it is framed, kept alive, timed out and
    /// reused exactly like a TCP connection, and its messages arrive with
    /// `Flow { transport, local, remote, connection: Some(id) }`.
    pub fn adopt_stream<S>(
        &self,
        transport: Transport,
        stream: S,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Result<ConnectionId, TransportError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        if self.inner.is_shut_down() {
            return Err(TransportError::Shutdown);
        }
        let Some(tx) = self.inner.inbound_sender() else {
            return Err(TransportError::Shutdown);
        };
        stream::adopt(
            &self.inner,
            transport,
            stream::byte_halves(stream, &self.inner),
            local,
            remote,
            tx,
            false,
        )
    }

    /// Every bound socket: transport and local address (ephemeral ports resolved).
    /// Replaces what the TLS and WSS listeners present (a certificate reload): new
    /// handshakes use `server`; connections already open keep theirs. Returns `false`
    /// (and changes nothing) when no listener does TLS.
    pub fn set_tls_server(&self, server: Arc<rustls::ServerConfig>) -> bool {
        let mut acceptor = self
            .inner
            .tls_acceptor
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if acceptor.is_none() {
            return false;
        }
        *acceptor = Some(TlsAcceptor::from(server));
        true
    }

    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.inner.local_addrs.clone()
    }

    /// The first local address bound for `transport`.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        self.inner
            .local_addrs
            .iter()
            .find(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
    }

    /// The Via `sent-by` for messages sent over `transport` (RFC 3261 §18.1.1):
    /// the advertised host if configured, else the bound IP; and the port of
    /// the first socket of that transport.
    pub fn sent_by(&self, transport: Transport) -> Option<SentBy> {
        self.local_addr(transport).map(|a| self.sent_by_addr(a))
    }

    /// The Via `sent-by` for a message going out on `flow`: the listener the
    /// flow uses if it is one of ours, else the first of its transport. For a
    /// connection we opened, that is our listener, where the peer may connect
    /// back (RFC 3261 §18.2.2).
    pub fn sent_by_for(&self, flow: &Flow) -> Option<SentBy> {
        let addr = self
            .inner
            .local_addrs
            .iter()
            .find(|(t, a)| *t == flow.transport && *a == flow.local)
            .map(|(_, a)| *a)
            .or_else(|| self.local_addr(flow.transport))?;
        Some(self.sent_by_addr(addr))
    }

    fn sent_by_addr(&self, addr: SocketAddr) -> SentBy {
        let host = match &self.inner.config.advertised_host {
            Some(h) => h.clone(),
            None => addr.ip().to_string(),
        };
        SentBy {
            host,
            port: addr.port(),
        }
    }

    /// The open stream connections (and those still connecting).
    pub fn connections(&self) -> Vec<Flow> {
        lock(&self.inner.conns).flows()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TransportStats {
        let mut stats = self.inner.stats.snapshot();
        let table = lock(&self.inner.conns);
        stats.tcp_open = table.count(Transport::Tcp);
        stats.tls_open = table.count(Transport::Tls);
        stats.ws_open = table.count(Transport::Ws);
        stats.wss_open = table.count(Transport::Wss);
        stats
    }

    /// Stops receiving and accepting, lets connections flush what is queued
    /// (up to [`TransportConfig::shutdown_grace`]), closes every socket, and
    /// ends the inbound channel. Later sends fail with
    /// [`TransportError::Shutdown`]. Idempotent.
    pub async fn shutdown(&self) {
        self.inner.begin_shutdown();
        let deadline = tokio::time::Instant::now() + self.inner.config.shutdown_grace;
        loop {
            let mut tasks = std::mem::take(&mut *lock(&self.inner.tasks));
            if tasks.is_empty() {
                break;
            }
            let drained = tokio::time::timeout_at(deadline, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                warn!(
                    remaining = tasks.len(),
                    "shutdown grace elapsed, aborting tasks"
                );
                tasks.shutdown().await;
            }
        }
        info!("transport layer shut down");
    }
}

#[cfg(test)]
mod tests {
    use super::SentBy;

    #[test]
    fn sent_by_brackets_ipv6_literals() {
        let v6 = SentBy {
            host: "::1".into(),
            port: 5060,
        };
        assert_eq!(v6.to_string(), "[::1]:5060");
        let bracketed = SentBy {
            host: "[::1]".into(),
            port: 5060,
        };
        assert_eq!(bracketed.to_string(), "[::1]:5060");
        let name = SentBy {
            host: "sip.example.com".into(),
            port: 5061,
        };
        assert_eq!(name.to_string(), "sip.example.com:5061");
    }
}

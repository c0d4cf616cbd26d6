//! UDP sockets and their receive loops (RFC 3261 §18.1.2, §18.2.1).

use crate::config::TransportConfig;
use crate::error::TransportError;
use crate::layer::{Inbound, Inner, deliver};
use crate::stats::{Stats, add, inc};
use bytes::Bytes;
use sip_message::Transport;
use sip_transaction::Flow;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

/// After this many receive errors in a row, the loop pauses briefly so that a
/// persistent error cannot spin a core.
const ERROR_BURST: u32 = 16;
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Binds a non-blocking UDP socket with the configured buffer sizes.
pub(crate) fn bind(
    addr: SocketAddr,
    config: &TransportConfig,
) -> Result<UdpSocket, TransportError> {
    let fail = |e: io::Error| TransportError::Bind {
        transport: Transport::Udp,
        addr,
        source: Arc::new(e),
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    if addr.is_ipv6() {
        // One socket per configured address; no v4-mapped surprises.
        socket.set_only_v6(true).map_err(fail)?;
    }
    // Buffer sizes are requests: the kernel caps them (net.core.rmem_max), so
    // a refusal is logged, never fatal.
    if let Err(e) = socket.set_recv_buffer_size(config.udp_recv_buffer) {
        warn!(%addr, error = %e, "cannot set UDP receive buffer size");
    }
    if let Err(e) = socket.set_send_buffer_size(config.udp_send_buffer) {
        warn!(%addr, error = %e, "cannot set UDP send buffer size");
    }
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    debug!(
        %addr,
        recv_buffer = socket.recv_buffer_size().unwrap_or(0),
        send_buffer = socket.send_buffer_size().unwrap_or(0),
        "UDP socket bound"
    );
    UdpSocket::from_std(socket.into()).map_err(fail)
}

/// True for a datagram that carries nothing but CR/LF (a keep-alive some
/// peers send over UDP; RFC 5626 §4.4.1 uses STUN there, never a SIP message).
fn is_keepalive(data: &[u8]) -> bool {
    data.iter().all(|b| matches!(b, b'\r' | b'\n'))
}

/// What becomes of one received datagram: counted, then handed up as it came (a
/// malformed one included), or dropped and counted if it is empty, keep-alive only
/// or oversize (`n > max`: the buffer holds one spare byte to tell).
fn take(
    stats: &Stats,
    max: usize,
    local: SocketAddr,
    remote: SocketAddr,
    data: &[u8],
) -> Option<Inbound> {
    let n = data.len();
    add(&stats.bytes_in, n);
    if n == 0 || n > max || is_keepalive(data) {
        inc(&stats.datagrams_dropped);
        trace!(transport = "UDP", %local, %remote, bytes = n, "datagram dropped");
        return None;
    }
    inc(&stats.datagrams_in);
    trace!(transport = "UDP", %local, %remote, bytes = n, "received");
    let flow = Flow {
        transport: Transport::Udp,
        local,
        remote,
        connection: None,
    };
    Some(Inbound::Message {
        flow,
        data: Bytes::copy_from_slice(data),
    })
}

/// Receives datagrams until shutdown and queues them for the core (see [`take`]);
/// socket errors (e.g. an ICMP port unreachable surfacing as `ConnectionRefused`)
/// are counted and never stop the loop.
pub(crate) async fn recv_loop(
    inner: Arc<Inner>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    tx: mpsc::Sender<Inbound>,
) {
    let max = inner.config.max_datagram;
    let mut buf = vec![0u8; max.saturating_add(1)];
    let mut shutdown = inner.shutdown.subscribe();
    let mut errors_in_a_row = 0u32;
    let stats = &inner.stats;
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.wait_for(|s| *s) => break,
        };
        let (n, remote) = match received {
            Ok(r) => {
                errors_in_a_row = 0;
                r
            }
            Err(e) => {
                inc(&stats.recv_errors);
                debug!(transport = "UDP", %local, error = %e, "receive error");
                errors_in_a_row = errors_in_a_row.saturating_add(1);
                if errors_in_a_row >= ERROR_BURST {
                    errors_in_a_row = 0;
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
                continue;
            }
        };
        let Some(item) = take(stats, max, local, remote, buf.get(..n).unwrap_or_default()) else {
            continue;
        };
        if !deliver(&tx, &mut shutdown, item).await {
            break;
        }
    }
    debug!(transport = "UDP", %local, "receive loop stopped");
}

/// The UDP sockets, read by their owner's task itself rather than by receive tasks
/// (see [`Transports::bind_with_inbox`](crate::Transports::bind_with_inbox)): a
/// datagram goes from the socket to the core with no queue and no task switch
/// between them, the way a Kamailio worker reads its socket.
pub struct UdpInbox {
    inner: Arc<Inner>,
    sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    buf: Vec<u8>,
    /// The socket the next [`try_recv`](Self::try_recv) starts at, so that one busy
    /// socket cannot starve the others.
    next: usize,
}

impl std::fmt::Debug for UdpInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let locals: Vec<SocketAddr> = self.sockets.iter().map(|(l, _)| *l).collect();
        f.debug_struct("UdpInbox")
            .field("sockets", &locals)
            .finish_non_exhaustive()
    }
}

impl UdpInbox {
    pub(crate) fn new(inner: Arc<Inner>, sockets: Vec<(SocketAddr, Arc<UdpSocket>)>) -> UdpInbox {
        let buf = vec![0u8; inner.config.max_datagram.saturating_add(1)];
        UdpInbox {
            inner,
            sockets,
            buf,
            next: 0,
        }
    }

    /// Waits until a socket has something to read (forever if there is no UDP
    /// socket, or once the layer shut down). Cancel-safe.
    pub async fn readable(&self) {
        if self.sockets.is_empty() {
            return std::future::pending().await;
        }
        std::future::poll_fn(|cx| {
            if self.inner.is_shut_down() {
                return std::task::Poll::Pending;
            }
            for (_, socket) in &self.sockets {
                if socket.poll_recv_ready(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// The next datagram waiting on any socket, without waiting: `None` when every
    /// socket is empty (or the layer shut down). Dropped datagrams and socket errors
    /// are counted, as by the receive tasks, and skipped.
    pub fn try_recv(&mut self) -> Option<Inbound> {
        if self.inner.is_shut_down() {
            return None;
        }
        let max = self.inner.config.max_datagram;
        let stats = &self.inner.stats;
        let count = self.sockets.len();
        // Errors and drops are skipped, but a bounded number of times, so a socket
        // that only ever errors cannot hold the caller.
        let mut budget = count.saturating_mul(ERROR_BURST as usize);
        let mut empty = 0;
        while empty < count && budget > 0 {
            let i = self.next % count.max(1);
            let (local, socket) = self.sockets.get(i)?;
            match socket.try_recv_from(&mut self.buf) {
                Ok((n, remote)) => {
                    empty = 0;
                    self.next = i.wrapping_add(1);
                    if let Some(item) = take(
                        stats,
                        max,
                        *local,
                        remote,
                        self.buf.get(..n).unwrap_or_default(),
                    ) {
                        return Some(item);
                    }
                    budget -= 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    empty += 1;
                    self.next = i.wrapping_add(1);
                }
                Err(e) => {
                    inc(&stats.recv_errors);
                    debug!(transport = "UDP", %local, error = %e, "receive error");
                    budget -= 1;
                }
            }
        }
        None
    }
}

//! UDP sockets and their receive loops (RFC 3261 §18.1.2, §18.2.1).

use crate::config::TransportConfig;
use crate::error::TransportError;
use crate::layer::{Inbound, Inner, deliver};
use crate::stats::{add, inc};
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

/// Receives datagrams until shutdown. A datagram is handed up as it came (a
/// malformed one included); empty, keep-alive-only and oversize datagrams are
/// dropped and counted; socket errors (e.g. an ICMP port unreachable surfacing
/// as `ConnectionRefused`) are counted and never stop the loop.
pub(crate) async fn recv_loop(
    inner: Arc<Inner>,
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    tx: mpsc::Sender<Inbound>,
) {
    let max = inner.config.max_datagram;
    // One spare byte tells an oversize datagram (the kernel truncates it to the
    // buffer) from one of exactly `max` bytes.
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
        add(&stats.bytes_in, n);
        let data = buf.get(..n).unwrap_or_default();
        if n == 0 || n > max || is_keepalive(data) {
            inc(&stats.datagrams_dropped);
            trace!(transport = "UDP", %local, %remote, bytes = n, "datagram dropped");
            continue;
        }
        inc(&stats.datagrams_in);
        trace!(transport = "UDP", %local, %remote, bytes = n, "received");
        let flow = Flow {
            transport: Transport::Udp,
            local,
            remote,
            connection: None,
        };
        let item = Inbound::Message {
            flow,
            data: Bytes::copy_from_slice(data),
        };
        if !deliver(&tx, &mut shutdown, item).await {
            break;
        }
    }
    debug!(transport = "UDP", %local, "receive loop stopped");
}

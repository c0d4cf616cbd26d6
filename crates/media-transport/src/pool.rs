//! RTP/RTCP port pairs from a configured range (RFC 3550 §11: RTP on an even port, RTCP
//! on the odd port above it), handed out round-robin so a port just released is not given
//! to the next call while the previous peer may still be sending to it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use crate::TransportError;

/// The kernel buffers asked for each media socket: a burst of a few hundred packets.
const SOCKET_BUFFER: usize = 256 * 1024;

/// A range of UDP ports, inclusive; pairs are (even, even + 1), both inside the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// The RTP socket and the RTCP socket of one media stream.
#[derive(Debug)]
pub struct SocketPair {
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

impl SocketPair {
    /// The RTP port (the one written into SDP's `m=` line); 0 if the socket cannot say.
    pub fn rtp_port(&self) -> u16 {
        self.rtp.local_addr().map_or(0, |addr| addr.port())
    }
}

/// Hands out RTP/RTCP pairs from a range on one address. Shared by the tasks that set up
/// calls: `Send + Sync`, the round-robin cursor behind a mutex.
#[derive(Debug)]
pub struct PortPool {
    ip: IpAddr,
    range: PortRange,
    /// The lowest even port of the range.
    first_even: u16,
    /// How many pairs fit in the range.
    pairs: u32,
    /// The index of the pair to try next.
    cursor: Mutex<u32>,
}

impl PortPool {
    /// A pool over `range` on `ip`. Refuses an empty range, one without an even port whose
    /// RTCP port is inside the range too, and one starting at port 0.
    pub fn new(ip: IpAddr, range: PortRange) -> Result<Self, TransportError> {
        let invalid = |reason| TransportError::InvalidRange { range, reason };
        if range.first > range.last {
            return Err(invalid("empty range"));
        }
        if range.first == 0 {
            return Err(invalid("port 0 is not a port"));
        }
        let first_even = range
            .first
            .checked_add(range.first % 2)
            .ok_or(invalid("no even port"))?;
        let pairs = if first_even >= range.last {
            0
        } else {
            (u32::from(range.last) - u32::from(first_even)).div_ceil(2)
        };
        if pairs == 0 {
            return Err(invalid("no even port with its odd neighbour in the range"));
        }
        Ok(Self {
            ip,
            range,
            first_even,
            pairs,
            cursor: Mutex::new(0),
        })
    }

    /// Binds RTP on the next free even port and RTCP on the port above it (non-blocking,
    /// ~256 KiB kernel buffers, no `SO_REUSEADDR`), round-robin through the range (a port
    /// just released is not reused at once), skipping ports another socket holds. Must be
    /// called inside a tokio runtime. Fails when the whole range is taken, or at once when
    /// binding fails for another reason than the port being in use (an address that is
    /// not local, say).
    pub fn bind_pair(&self) -> Result<SocketPair, TransportError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TransportError::NoRuntime);
        }
        let mut cursor = self
            .cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for step in 0..self.pairs {
            let index = (*cursor + step) % self.pairs;
            let Some(port) = u16::try_from(index * 2)
                .ok()
                .and_then(|offset| self.first_even.checked_add(offset))
            else {
                continue;
            };
            match self.bind_at(port) {
                Ok(pair) => {
                    *cursor = (index + 1) % self.pairs;
                    return Ok(pair);
                }
                Err(TransportError::Bind { source, .. })
                    if source.kind() == io::ErrorKind::AddrInUse => {}
                Err(error) => return Err(error),
            }
        }
        Err(TransportError::RangeExhausted { range: self.range })
    }

    /// Binds exactly `rtp_port` and `rtp_port + 1` (a port already written into SDP),
    /// inside the range or not. Must be called inside a tokio runtime.
    pub fn bind_exact(&self, rtp_port: u16) -> Result<SocketPair, TransportError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(TransportError::NoRuntime);
        }
        self.bind_at(rtp_port)
    }

    /// The address the pool binds on.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The pool's range.
    pub fn range(&self) -> PortRange {
        self.range
    }

    fn bind_at(&self, rtp_port: u16) -> Result<SocketPair, TransportError> {
        let rtcp_port = rtp_port.checked_add(1).ok_or(TransportError::Bind {
            port: rtp_port,
            source: io::Error::new(io::ErrorKind::InvalidInput, "no port above 65535 for RTCP"),
        })?;
        let rtp = bind_socket(SocketAddr::new(self.ip, rtp_port))?;
        let rtcp = bind_socket(SocketAddr::new(self.ip, rtcp_port))?;
        Ok(SocketPair { rtp, rtcp })
    }
}

/// One non-blocking UDP socket with large buffers, registered with the current runtime.
fn bind_socket(addr: SocketAddr) -> Result<UdpSocket, TransportError> {
    let port = addr.port();
    let bind = |source| TransportError::Bind { port, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(bind)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(bind)?;
    }
    socket.set_nonblocking(true).map_err(bind)?;
    // Best effort: the kernel caps them at net.core.rmem_max / wmem_max.
    if let Err(error) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(%addr, %error, "SO_RCVBUF not set");
    }
    if let Err(error) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        tracing::debug!(%addr, %error, "SO_SNDBUF not set");
    }
    socket.bind(&addr.into()).map_err(bind)?;
    UdpSocket::from_std(socket.into()).map_err(bind)
}

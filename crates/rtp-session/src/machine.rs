//! The sans-IO contract every media machine (a flow, a relay, a conference) offers its
//! driver, the same verbs as the SIP core's machines: the driver feeds datagrams and
//! timeouts with `now`, then drains `poll_transmit`, `poll_event` and `poll_timeout`
//! until each returns `None`.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

/// One of the sockets a driver holds for a machine (an RTP or RTCP socket of a leg).
/// The driver assigns the numbers when it binds the sockets; the machine only hands them
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u32);

/// A datagram to send from one of the machine's sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub socket: SocketId,
    pub to: SocketAddr,
    pub data: Bytes,
}

/// A sans-IO media machine.
pub trait MediaMachine {
    /// What the machine reports to its owner (first packet, a tone, a timeout...).
    type Event;

    /// A datagram arrived on `socket` from `from`. Never panics, whatever `data` holds.
    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddr, data: &[u8]);

    /// The deadline from [`MediaMachine::poll_timeout`] has come (or passed).
    fn handle_timeout(&mut self, now: Instant);

    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Datagram>;

    /// When the machine next needs [`MediaMachine::handle_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;

    /// The next event for the owner.
    fn poll_event(&mut self) -> Option<Self::Event>;
}

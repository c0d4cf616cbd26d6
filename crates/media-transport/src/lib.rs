//! Tandem's media sockets on tokio: RTP/RTCP port pairs bound from a configured range, and
//! the task that drives a sans-IO [`rtp_session::MediaMachine`] (a flow, a relay, a
//! conference) over them.
#![forbid(unsafe_code)]

mod driver;
mod error;
mod pool;

pub use driver::{DriverStats, MediaController, MediaHandle, spawn};
pub use error::TransportError;
pub use pool::{PortPool, PortRange, SocketPair};

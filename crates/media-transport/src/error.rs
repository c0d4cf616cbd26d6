//! Why a media socket could not be bound or a media task could not be reached.

use crate::pool::PortRange;

/// Why a media socket could not be bound or a media task could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The configured range holds no RTP/RTCP pair (an even port and the odd one above it,
    /// RFC 3550 §11).
    #[error("port range {}-{} holds no RTP/RTCP pair: {reason}", range.first, range.last)]
    InvalidRange {
        range: PortRange,
        reason: &'static str,
    },
    /// A socket could not be bound on `port`.
    #[error("cannot bind UDP port {port}: {source}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// Every pair of the range is held, by us or by another process.
    #[error("every RTP/RTCP pair in {}-{} is taken", range.first, range.last)]
    RangeExhausted { range: PortRange },
    /// Sockets were bound (or a task spawned) outside a tokio runtime.
    #[error("no tokio runtime: media sockets and tasks need one")]
    NoRuntime,
    /// The media task has stopped.
    #[error("the media task has stopped")]
    Closed,
}

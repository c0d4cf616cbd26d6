//! Why a packet or a request was refused.

/// Why a packet or a request was refused. Network input yields these, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Shorter than the part of the packet that says how long it is.
    #[error("RTP packet too short: {len} bytes, {needed} needed ({what})")]
    TooShort {
        len: usize,
        needed: usize,
        what: &'static str,
    },
    /// RFC 3550 §5.1: the version field must be 2.
    #[error("RTP version {0}, not 2")]
    Version(u8),
    /// RFC 3550 §5.1: the padding count is zero or runs into the header.
    #[error("RTP padding of {padding} bytes does not fit a {len}-byte packet")]
    Padding { padding: usize, len: usize },
    /// An RTCP packet (RFC 3550 §6) that could not be read.
    #[error("malformed RTCP: {0}")]
    Rtcp(String),
    /// An RFC 4733 event payload that could not be read.
    #[error("malformed telephone-event payload: {0}")]
    TelephoneEvent(&'static str),
    /// A DTMF digit outside `0-9 * # A-D`.
    #[error("{0:?} is not a DTMF digit (0-9, *, #, A-D)")]
    NotADigit(char),
    /// A packet could not be built.
    #[error("RTP packet not built: {0}")]
    Build(String),
}

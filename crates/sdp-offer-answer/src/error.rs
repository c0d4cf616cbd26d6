//! Errors: why a description could not be read, why a negotiation failed.

use crate::negotiation::SignalingState;

/// Why bytes are not an SDP session description we can work with (RFC 8866 §5, §9).
/// Line numbers count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP is empty")]
    Empty,
    #[error("SDP line {line} is not UTF-8")]
    NotUtf8 { line: usize },
    #[error("SDP line {line} is not <type>=<value>")]
    BadLine { line: usize },
    #[error("SDP does not start with v=0")]
    MissingVersion,
    #[error("SDP version {value:?} is not 0")]
    UnsupportedVersion { value: String },
    #[error("SDP has no o= line")]
    MissingOrigin,
    #[error("SDP o= line {line} is malformed: {reason}")]
    BadOrigin { line: usize, reason: &'static str },
    #[error("SDP c= line {line} is malformed: {reason}")]
    BadConnection { line: usize, reason: &'static str },
    #[error("SDP m= line {line} is malformed: {reason}")]
    BadMedia { line: usize, reason: &'static str },
}

/// Why an offer/answer step failed (RFC 3264). The `Display` is a short reason fit for a
/// `Warning` header (RFC 3261 §20.43); [`NegotiationError::warning_code`] gives the code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NegotiationError {
    #[error("malformed SDP: {0}")]
    Parse(#[from] SdpError),
    #[error("{op} is not allowed in signaling state {state:?}")]
    WrongState {
        op: &'static str,
        state: SignalingState,
    },
    /// No offered audio stream had a codec in common with ours (telephone-event alone does
    /// not count) and nothing else was acceptable: 488 with Warning 305.
    #[error("Incompatible media format: no common codec")]
    NoCommonCodec,
    /// Every offered stream was rejected: 488 with Warning 304.
    #[error("Media type not available: no acceptable media stream")]
    NothingAcceptable,
    /// Our capabilities leave nothing to offer (no audio and no messaging).
    #[error("nothing to offer: neither audio nor messaging is enabled")]
    NothingToOffer,
    /// The answer does not fit our offer (RFC 3264 §6: one m= line per offered one, in
    /// order, with formats taken from the offer).
    #[error("SDP answer does not match the offer: {reason}")]
    AnswerMismatch { reason: String },
}

impl NegotiationError {
    /// The `Warning` code (RFC 3261 §20.43) a 488 for this error carries: 304 "Media type
    /// not available", 305 "Incompatible media format", 399 "Miscellaneous warning".
    pub fn warning_code(&self) -> u16 {
        match self {
            NegotiationError::NothingAcceptable => 304,
            NegotiationError::NoCommonCodec => 305,
            _ => 399,
        }
    }
}

//! SDP offer/answer (RFC 3264) for Tandem, sans-IO: no sockets, no clock, no runtime.
//!
//! - [`SessionDescription`]: an SDP (RFC 8866) kept line by line, byte for byte, so a relay
//!   or B2BUA forwards and rewrites it without losing what it does not understand
//!   (`m=message`, `a=crypto`, `a=rtcp-xr`, `a=path`...). Its RTP sections are also read by
//!   webrtc-sdp (see [`RtpParse`] for when it refuses one).
//! - [`OfferAnswer`]: one call's negotiation, in two steps for an incoming offer
//!   (`receive_offer` -> `create_answer`) and for our own (`create_offer` ->
//!   `receive_answer`), with hold and retrieve (RFC 3264 §8.4), version rules (§8), PCMU /
//!   PCMA / telephone-event (RFC 4733) audio and Lync-style `m=message` IM.
//!
//! ```
//! use sdp_offer_answer::{LocalCapabilities, OfferAnswer, SignalingState};
//!
//! let offer = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
//!               m=audio 4000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\n";
//! let mut call = OfferAnswer::new(LocalCapabilities::default(), 42);
//! call.receive_offer(offer)?;
//! let answer = call.create_answer()?;
//! assert!(answer.starts_with(b"v=0\r\no=tandem 42 1 IN IP4 127.0.0.1\r\n"));
//! let audio = call.negotiated().and_then(|n| n.audio.as_ref()).map(|a| a.codec.name.clone());
//! assert_eq!(audio.as_deref(), Some("PCMA"));
//! assert_eq!(call.state(), SignalingState::Stable);
//! # Ok::<(), sdp_offer_answer::NegotiationError>(())
//! ```

#![forbid(unsafe_code)]

mod error;
mod negotiation;
mod sdp;
mod types;
mod webrtc;

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;

pub use error::{NegotiationError, SdpError};
pub use negotiation::{
    IgnoredAttribute, LocalCapabilities, MessageCapabilities, Negotiated, NegotiatedAudio,
    NegotiatedMessage, OfferAnswer, RejectedStream, SignalingState,
};
pub use sdp::{MediaSection, RtpParse, SessionDescription};
pub use types::{Codec, Direction, MediaKind, Origin};

//! Sans-IO RTP and RTCP (RFC 3550) for Tandem's media: per-stream sequence numbers,
//! timestamps and SSRC, receiver statistics, RTCP sender/receiver reports at the RFC 3550
//! §6.3 interval, DTMF events (RFC 4733), symmetric-RTP latching and the SSRC/sequence/
//! timestamp rewriting a relay needs.
//!
//! Nothing here touches a socket or the clock: every input carries `now`, and the machines
//! follow the same verbs as the SIP core (see [`machine::MediaMachine`]).
#![forbid(unsafe_code)]

pub mod dtmf;
mod error;
pub mod latch;
pub mod machine;
pub mod packet;
pub mod relay;
pub mod rtcp;
pub mod sender;
pub mod stats;
pub mod wire;

pub use crate::dtmf::{
    DtmfPacket, DtmfReceiver, DtmfSender, TelephoneEvent, ToneEvent, digit_of_event, event_of_digit,
};
pub use crate::rtcp::{NtpClock, RemoteView, RtcpConfig, RtcpSession, RtcpSummary, SenderInfo};
pub use crate::sender::{RtpSender, StreamPosition};
pub use crate::stats::{ReceiverStats, StreamStats};
pub use error::RtpError;
pub use latch::Latch;
pub use machine::{Datagram, MediaMachine, SocketId};
pub use packet::{
    RtpHeader, build_rtp, looks_like_rtcp, parse_rtp, rewrite_header, set_payload_type,
};
pub use relay::{Leg, LegStats, PayloadMap, Relay, RelayConfig, RelayEvent, RelayLeg, Rewriter};
pub use wire::{
    Goodbye, ReceiverReport, ReportBlock, RtcpPacket, SdesChunk, SdesItem, SenderReport,
    SourceDescription, build_compound, parse_compound,
};

//! Symmetric RTP (RFC 4961): send to a peer from where its packets come, not to the
//! address its SDP names. A phone behind a NAT signals its private address; its packets
//! arrive from the NAT's public binding, and only packets sent back to that binding reach
//! it. This is what rtpproxy and rtpengine call latching.
//!
//! The latch is the destination learnt from the packets: the first accepted packet sets
//! it; a packet from another source replaces it only when the latched source has been
//! silent for a while (the peer moved: a re-INVITE to a new address, a NAT rebinding), so
//! a stray or spoofed packet cannot steal a live stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long the latched source must be silent before another source may take its place.
pub const DEFAULT_RELATCH_AFTER: Duration = Duration::from_millis(500);

/// The destination of one leg's packets: the signalled address (SDP `c=`/`m=`, RFC 4566
/// §5.7, §5.14) until a packet from the peer latches it onto the packet's source
/// (symmetric RTP, RFC 4961 §3).
#[derive(Debug, Clone)]
pub struct Latch {
    signalled: Option<SocketAddr>,
    symmetric: bool,
    latched: Option<SocketAddr>,
    /// When the latched source was last heard.
    last_heard: Option<Instant>,
    relatch_after: Duration,
    dropped: u64,
}

impl Latch {
    /// `signalled`: the address from SDP (None when unknown, e.g. 0.0.0.0 or before the
    /// answer). `symmetric`: latch onto the source of the peer's packets (RFC 4961).
    pub fn new(signalled: Option<SocketAddr>, symmetric: bool) -> Self {
        Self {
            signalled,
            symmetric,
            latched: None,
            last_heard: None,
            relatch_after: DEFAULT_RELATCH_AFTER,
            dropped: 0,
        }
    }

    /// A packet from `from`: whether it is accepted. With `symmetric`, the first accepted
    /// packet latches the destination onto its source; a different source later replaces
    /// the latch only when the latched one has been silent for `relatch_after` (the peer
    /// moved: re-INVITE, NAT rebinding); packets from the other source meanwhile are
    /// dropped (counted). Without `symmetric`, every packet is accepted and the
    /// destination stays the signalled one.
    pub fn on_packet(&mut self, now: Instant, from: SocketAddr) -> bool {
        if !self.symmetric {
            return true;
        }
        match (self.latched, self.last_heard) {
            (Some(latched), _) if latched == from => {
                self.last_heard = Some(now);
                true
            }
            (Some(_), Some(heard)) if now.saturating_duration_since(heard) < self.relatch_after => {
                self.dropped += 1;
                false
            }
            _ => {
                self.latched = Some(from);
                self.last_heard = Some(now);
                true
            }
        }
    }

    /// New SDP for this leg (a re-INVITE, a transfer): forget the latch and keep learning.
    pub fn set_signalled(&mut self, signalled: Option<SocketAddr>) {
        self.signalled = signalled;
        self.latched = None;
        self.last_heard = None;
    }

    /// How long the latched source must be silent before another one may replace it.
    pub fn set_relatch_after(&mut self, d: Duration) {
        self.relatch_after = d;
    }

    /// Where to send: the latched source, else the signalled address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.signalled)
    }

    /// The source latched onto, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// The signalled address.
    pub fn signalled(&self) -> Option<SocketAddr> {
        self.signalled
    }

    /// Packets refused because another source holds the latch.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

//! The sending side of an RTP stream (RFC 3550 §5.1): one SSRC, a sequence number that
//! goes up by one per packet, a media timestamp that follows the sampling clock, and the
//! packet and octet counts a sender report carries (§6.4.1).

use std::time::Instant;

use bytes::Bytes;

use crate::RtpError;
use crate::packet::{RtpHeader, build_rtp};

/// Where an outgoing RTP stream stands, so another machine can carry it on (a call's
/// flow handing its stream to a relay and back): the stream keeps its SSRC, its sequence
/// numbers go on by one and its timestamps keep following the sampling clock (RFC 3550
/// §5.1), so the peer sees one source throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPosition {
    pub ssrc: u32,
    /// The sequence number of the next packet.
    pub next_sequence: u16,
    /// The media timestamp at `at`: the next packet sent at `at` carries it; one sent
    /// later carries it plus the samples in between.
    pub timestamp: u32,
    pub at: Instant,
}

/// The numbering of one outgoing RTP stream.
///
/// Sequence numbers and timestamps wrap modulo 2¹⁶ and 2³² (RFC 3550 §5.1); the packet
/// and octet counts wrap modulo 2³² as the SR fields do (§6.4.1).
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    clock_rate: u32,
    packets_sent: u32,
    octets_sent: u32,
    has_sent: bool,
}

impl RtpSender {
    /// A stream that starts at `first_sequence` and `first_timestamp` (RFC 3550 §5.1 asks
    /// for random initial values; the caller draws them). `clock_rate` is the RTP clock in
    /// Hz (8000 for PCMU/PCMA).
    pub fn new(ssrc: u32, first_sequence: u16, first_timestamp: u32, clock_rate: u32) -> Self {
        Self {
            ssrc,
            sequence: first_sequence,
            timestamp: first_timestamp,
            clock_rate,
            packets_sent: 0,
            octets_sent: 0,
            has_sent: false,
        }
    }

    /// Next media packet: carries the current timestamp and the next sequence number; then
    /// the timestamp advances by `samples`.
    pub fn next(
        &mut self,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
        samples: u32,
    ) -> Result<Bytes, RtpError> {
        let packet = self.next_with_timestamp(payload_type, marker, self.timestamp, payload)?;
        self.skip(samples);
        Ok(packet)
    }

    /// A packet with an explicit timestamp (an RFC 4733 event keeps its start timestamp);
    /// next sequence number; the media timestamp does not move.
    pub fn next_with_timestamp(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Bytes, RtpError> {
        let header = RtpHeader {
            marker,
            payload_type,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
        };
        let packet = build_rtp(&header, payload)?;
        self.sequence = self.sequence.wrapping_add(1);
        self.packets_sent = self.packets_sent.wrapping_add(1);
        // Payload octets only (RFC 3550 §6.4.1); a payload never exceeds a datagram.
        let octets = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.octets_sent = self.octets_sent.wrapping_add(octets);
        self.has_sent = true;
        Ok(packet)
    }

    /// Media time passes with no packet (hold, an event being sent instead): the timestamp
    /// advances (RFC 3550 §5.1: the timestamp follows the sampling clock, not the packets).
    pub fn skip(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }

    /// A packet of this stream that someone else built and sent (a relay forwarding a
    /// rewritten packet, see [`crate::relay::Relay`]): counts it for the sender report
    /// (RFC 3550 §6.4.1: packet count, payload octet count) and notes the next sequence
    /// number. The media timestamp is left to [`RtpSender::set_timestamp`]. Allocates
    /// nothing.
    pub fn record_forwarded(&mut self, sequence: u16, payload_octets: usize) {
        // A late (reordered) packet does not move the next sequence number back.
        if !self.has_sent || (sequence.wrapping_sub(self.sequence) as i16) >= 0 {
            self.sequence = sequence.wrapping_add(1);
        }
        self.packets_sent = self.packets_sent.wrapping_add(1);
        let octets = u32::try_from(payload_octets).unwrap_or(u32::MAX);
        self.octets_sent = self.octets_sent.wrapping_add(octets);
        self.has_sent = true;
    }

    /// Sets the media clock: the timestamp that corresponds to "now" in the next sender
    /// report (RFC 3550 §6.4.1: the SR's RTP timestamp and NTP timestamp are the same
    /// instant), for a stream whose packets are not built here (a relay).
    pub fn set_timestamp(&mut self, timestamp: u32) {
        self.timestamp = timestamp;
    }

    /// The stream is carried on from `sequence` (the next packet's) and `timestamp` (the
    /// next packet's media timestamp): another machine sent the packets in between
    /// ([`StreamPosition`]). SSRC and counts stay.
    pub fn continue_at(&mut self, sequence: u16, timestamp: u32) {
        self.sequence = sequence;
        self.timestamp = timestamp;
    }

    /// The stream's SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The media timestamp the next [`RtpSender::next`] packet carries.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The sequence number of the next packet.
    pub fn next_sequence(&self) -> u16 {
        self.sequence
    }

    /// The RTP clock rate in Hz.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The sender's packet count (RFC 3550 §6.4.1), modulo 2³².
    pub fn packets_sent(&self) -> u32 {
        self.packets_sent
    }

    /// The sender's octet count: payload octets, headers and padding excluded (RFC 3550
    /// §6.4.1), modulo 2³².
    pub fn octets_sent(&self) -> u32 {
        self.octets_sent
    }

    /// Whether any packet was sent since the stream was created.
    pub fn has_sent(&self) -> bool {
        self.has_sent
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]
    use super::*;
    use crate::packet::parse_rtp;

    #[test]
    fn numbering_advances_per_packet_and_per_sample() {
        let mut s = RtpSender::new(0xabcd, 100, 1000, 8000);
        assert!(!s.has_sent());
        let p = s.next(0, true, &[0xff; 160], 160).unwrap();
        let (h, range) = parse_rtp(&p).unwrap();
        assert_eq!(
            (h.sequence, h.timestamp, h.ssrc, h.marker),
            (100, 1000, 0xabcd, true)
        );
        assert_eq!(range.len(), 160);
        let p = s.next(0, false, &[0xff; 160], 160).unwrap();
        let (h, _) = parse_rtp(&p).unwrap();
        assert_eq!((h.sequence, h.timestamp, h.marker), (101, 1160, false));
        assert_eq!(s.timestamp(), 1320);
        assert_eq!(s.next_sequence(), 102);
        assert_eq!((s.packets_sent(), s.octets_sent()), (2, 320));
        assert!(s.has_sent());
        assert_eq!(s.clock_rate(), 8000);
        assert_eq!(s.ssrc(), 0xabcd);
    }

    #[test]
    fn explicit_timestamp_and_skip() {
        let mut s = RtpSender::new(1, 0, 500, 8000);
        let p = s.next_with_timestamp(101, true, 42, &[1, 2, 3, 4]).unwrap();
        let (h, _) = parse_rtp(&p).unwrap();
        assert_eq!((h.timestamp, h.sequence, h.payload_type), (42, 0, 101));
        assert_eq!(
            s.timestamp(),
            500,
            "an explicit timestamp leaves media time alone"
        );
        s.skip(160);
        assert_eq!(s.timestamp(), 660);
        assert_eq!(s.next_sequence(), 1);
        assert_eq!(s.octets_sent(), 4);
    }

    #[test]
    fn forwarded_packets_are_counted() {
        let mut s = RtpSender::new(9, 10, 0, 8000);
        s.record_forwarded(10, 160);
        s.record_forwarded(12, 160);
        // A late packet is counted but leaves the next sequence number alone.
        s.record_forwarded(11, 80);
        assert_eq!((s.packets_sent(), s.octets_sent()), (3, 400));
        assert_eq!(s.next_sequence(), 13);
        assert!(s.has_sent());
        s.set_timestamp(4242);
        assert_eq!(s.timestamp(), 4242);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let mut s = RtpSender::new(7, 65534, u32::MAX - 100, 8000);
        let seqs: Vec<(u16, u32)> = (0..4)
            .map(|_| {
                let p = s.next(0, false, &[0; 160], 160).unwrap();
                let (h, _) = parse_rtp(&p).unwrap();
                (h.sequence, h.timestamp)
            })
            .collect();
        assert_eq!(
            seqs,
            vec![(65534, u32::MAX - 100), (65535, 59), (0, 219), (1, 379)]
        );
        s.skip(u32::MAX);
        assert_eq!(s.timestamp(), 538);
    }
}

//! The media relay of an anchored B2BUA call: two legs, each with an RTP and an RTCP
//! socket; packets from one leg go out of the other leg's RTP socket to that leg's peer.
//!
//! What leaves toward a leg is one continuous RTP stream (RFC 3550 §5.1) whatever happens
//! on the other leg, so a phone never sees a transfer or a re-INVITE on the far side as a
//! new source it may refuse or mis-play: the [`Rewriter`] owns the outgoing SSRC, sequence
//! numbers and timestamps. Destinations are learnt by symmetric RTP (RFC 4961, see
//! [`Latch`]).
//!
//! RTCP is terminated per leg, never forwarded: a relay that rewrites SSRC, sequence numbers
//! and timestamps must not pass on its sources' reports (RFC 3550 §7.3: they would describe
//! streams the far side never sees), so toward each leg it reports itself, as an RTP end
//! system (RFC 3550 §6): a sender report about the stream it sends toward the leg, with a
//! reception report block about what the leg sends it, and an SDES CNAME, at the §6.3
//! interval; the leg's own reports go to that leg's [`RtcpSession`] (LSR/DLSR, the round
//! trip, how the leg's peer sees our stream). [`Relay::close`] ends both with a BYE (§6.6).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::RtpError;
use crate::latch::Latch;
use crate::machine::{Datagram, MediaMachine, SocketId};
use crate::packet::{RtpHeader, looks_like_rtcp, parse_rtp, rewrite_header, set_payload_type};
use crate::rtcp::{NtpClock, RemoteView, RtcpConfig, RtcpSession};
use crate::sender::{RtpSender, StreamPosition};
use crate::stats::{ReceiverStats, StreamStats};

/// RFC 3550 Appendix A.1: a sequence number this far ahead of the highest seen is a
/// restart, not loss.
const MAX_DROPOUT: i64 = 3000;
/// RFC 3550 Appendix A.1: a sequence number this far behind the highest seen is a
/// restart, not a late packet.
const MAX_MISORDER: i64 = 100;

/// The samples `elapsed` spans at `clock_rate` (RFC 3550 §5.1: the timestamp follows the
/// sampling clock), saturating.
fn samples(elapsed: Duration, clock_rate: u32) -> u64 {
    let samples = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    u64::try_from(samples).unwrap_or(u64::MAX)
}

/// 20 ms at `clock_rate`, the usual audio packetisation, at least one sample.
fn default_frame(clock_rate: u32) -> u32 {
    (clock_rate / 50).max(1)
}

/// The input stream being mapped onto the output.
#[derive(Debug, Clone, Copy)]
struct Segment {
    input_ssrc: u32,
    sequence_offset: u16,
    timestamp_offset: u32,
    highest_sequence: u16,
    highest_timestamp: u32,
}

/// The packet sent with the highest outgoing sequence number.
#[derive(Debug, Clone, Copy)]
struct Sent {
    sequence: u16,
    timestamp: u32,
    at: Instant,
}

/// Per direction: makes the packets leaving toward one leg one continuous stream (RFC 3550
/// §5.1: one SSRC, sequence +1, timestamps that follow wall-clock time) whatever happens on
/// the other leg: a new input SSRC (re-INVITE, transfer, a new party) or a sequence or
/// timestamp jump (RFC 3550 Appendix A.1) starts a new input segment: the outgoing
/// sequence continues at last + 1, the timestamp at last + elapsed time × clock rate (at
/// least one frame), and the marker bit is set on the segment's first packet. Within a
/// segment the input's spacing is kept, reordering and gaps included.
#[derive(Debug, Clone)]
pub struct Rewriter {
    ssrc: u32,
    first_sequence: u16,
    first_timestamp: u32,
    clock_rate: u32,
    /// The input's timestamp step between consecutive packets, learnt (RFC 3550 §5.1).
    frame: u32,
    segment: Option<Segment>,
    last: Option<Sent>,
    /// Before the first packet: when the media clock read `first_timestamp` (a stream
    /// carried on from another machine, [`Rewriter::continuing`]); None: the first packet
    /// carries `first_timestamp` whenever it comes.
    origin: Option<Instant>,
    packets: u64,
}

impl Rewriter {
    /// The outgoing stream: its SSRC, first sequence number and first timestamp (RFC 3550
    /// §5.1: random), and the RTP clock rate of its payload.
    pub fn new(ssrc: u32, first_sequence: u16, first_timestamp: u32, clock_rate: u32) -> Self {
        let clock_rate = clock_rate.max(1);
        Self {
            ssrc,
            first_sequence,
            first_timestamp,
            clock_rate,
            frame: default_frame(clock_rate),
            segment: None,
            last: None,
            origin: None,
            packets: 0,
        }
    }

    /// Carries on a stream another machine sent until now (a call's own flow, before the
    /// call was joined to a relay): same SSRC, the next sequence number, and timestamps
    /// that follow the sampling clock from `position.timestamp` at `position.at` (RFC
    /// 3550 §5.1), so the peer sees no new source. The first packet is marked as the start
    /// of a talkspurt (RFC 3551 §4.1), as every new segment is.
    pub fn continuing(position: StreamPosition, clock_rate: u32) -> Self {
        let mut rewriter = Self::new(
            position.ssrc,
            position.next_sequence,
            position.timestamp,
            clock_rate,
        );
        rewriter.origin = Some(position.at);
        rewriter
    }

    /// Where the outgoing stream stands at `now`, for another machine to carry it on
    /// ([`StreamPosition`]): the sequence number after the newest packet, and the
    /// timestamp a new segment starting now would get (the newest packet's plus the time
    /// since, at least one frame, so nothing overlaps it).
    pub fn next_position(&self, now: Instant) -> StreamPosition {
        let (next_sequence, timestamp) = self.next_base(now);
        StreamPosition {
            ssrc: self.ssrc,
            next_sequence,
            timestamp,
            at: now,
        }
    }

    /// The sequence number and timestamp of a packet starting a new segment at `now`.
    fn next_base(&self, now: Instant) -> (u16, u32) {
        match self.last {
            None => {
                let elapsed = self.origin.map_or(0, |origin| {
                    samples(now.saturating_duration_since(origin), self.clock_rate)
                });
                // Timestamps are modulo 2^32 (RFC 3550 §5.1): keep the low bits.
                let step = (elapsed % (1 << 32)) as u32;
                (self.first_sequence, self.first_timestamp.wrapping_add(step))
            }
            Some(last) => {
                let elapsed = samples(now.saturating_duration_since(last.at), self.clock_rate);
                // Timestamps are modulo 2^32 (RFC 3550 §5.1): keep the low bits.
                let step = (elapsed % (1 << 32)) as u32;
                (
                    last.sequence.wrapping_add(1),
                    last.timestamp.wrapping_add(step.max(self.frame)),
                )
            }
        }
    }

    /// Validates the packet ([`parse_rtp`]) and rewrites its SSRC, sequence number,
    /// timestamp and marker in place ([`rewrite_header`]). Returns the rewritten header.
    /// Allocates nothing.
    pub fn rewrite(&mut self, now: Instant, packet: &mut [u8]) -> Result<RtpHeader, RtpError> {
        let (input, _) = parse_rtp(packet)?;
        let (sequence, timestamp, marker) = match self.segment {
            Some(segment) if !self.starts_segment(now, &segment, &input) => {
                self.follow(&input);
                (
                    input.sequence.wrapping_add(segment.sequence_offset),
                    input.timestamp.wrapping_add(segment.timestamp_offset),
                    input.marker,
                )
            }
            _ => {
                let (sequence, timestamp) = self.next_base(now);
                self.segment = Some(Segment {
                    input_ssrc: input.ssrc,
                    sequence_offset: sequence.wrapping_sub(input.sequence),
                    timestamp_offset: timestamp.wrapping_sub(input.timestamp),
                    highest_sequence: input.sequence,
                    highest_timestamp: input.timestamp,
                });
                (sequence, timestamp, true)
            }
        };
        if !rewrite_header(packet, sequence, timestamp, self.ssrc, marker) {
            // parse_rtp accepted it, so it holds a fixed header; never reached.
            return Err(RtpError::TooShort {
                len: packet.len(),
                needed: crate::packet::RTP_HEADER_LEN,
                what: "fixed header",
            });
        }
        let newest = self
            .last
            .is_none_or(|last| (sequence.wrapping_sub(last.sequence) as i16) > 0);
        if newest {
            self.last = Some(Sent {
                sequence,
                timestamp,
                at: now,
            });
        }
        self.packets += 1;
        Ok(RtpHeader {
            marker,
            payload_type: input.payload_type,
            sequence,
            timestamp,
            ssrc: self.ssrc,
        })
    }

    /// Whether `input` cannot continue `segment`: another SSRC, a sequence number outside
    /// the RFC 3550 Appendix A.1 window, or a timestamp that is neither near the expected
    /// one nor explained by the wall-clock time since the last packet (more than one
    /// second off either way: silence suppression keeps within it, a new base does not).
    fn starts_segment(&self, now: Instant, segment: &Segment, input: &RtpHeader) -> bool {
        if input.ssrc != segment.input_ssrc {
            return true;
        }
        let sequence_delta =
            i64::from(input.sequence.wrapping_sub(segment.highest_sequence) as i16);
        if !(-MAX_MISORDER..=MAX_DROPOUT).contains(&sequence_delta) {
            return true;
        }
        let timestamp_delta =
            i64::from(input.timestamp.wrapping_sub(segment.highest_timestamp) as i32);
        let tolerance = i64::from(self.clock_rate);
        let elapsed = self.last.map_or(0, |last| {
            let samples = samples(now.saturating_duration_since(last.at), self.clock_rate);
            i64::try_from(samples)
                .unwrap_or(i64::MAX / 4)
                .min(i64::MAX / 4)
        });
        let expected = elapsed.max(sequence_delta.max(0) * i64::from(self.frame));
        timestamp_delta < -tolerance || timestamp_delta > expected.saturating_add(tolerance)
    }

    /// A packet of the current segment: track its highest sequence number and learn the
    /// frame size from consecutive packets.
    fn follow(&mut self, input: &RtpHeader) {
        let Some(segment) = self.segment.as_mut() else {
            return;
        };
        let sequence_delta = input.sequence.wrapping_sub(segment.highest_sequence) as i16;
        if sequence_delta > 0 {
            let timestamp_delta = input.timestamp.wrapping_sub(segment.highest_timestamp);
            if sequence_delta == 1 && (1..=self.clock_rate).contains(&timestamp_delta) {
                self.frame = timestamp_delta;
            }
            segment.highest_sequence = input.sequence;
            segment.highest_timestamp = input.timestamp;
        }
    }

    /// Packets rewritten so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The payload's RTP clock rate changed (a new codec after a re-INVITE).
    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        self.clock_rate = clock_rate.max(1);
        self.frame = default_frame(self.clock_rate);
    }

    /// The outgoing SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The outgoing stream's media clock at `now`: the newest packet's timestamp plus the
    /// samples since it left (RFC 3550 §6.4.1: the SR's RTP timestamp is the NTP
    /// timestamp's instant on the media clock). None before the first packet, unless the
    /// stream was carried on from another machine ([`Rewriter::continuing`]).
    pub fn timestamp_at(&self, now: Instant) -> Option<u32> {
        let Some(last) = self.last else {
            return self.origin.map(|_| self.next_base(now).1);
        };
        let elapsed = samples(now.saturating_duration_since(last.at), self.clock_rate);
        // Timestamps are modulo 2^32 (RFC 3550 §5.1): keep the low bits.
        Some(last.timestamp.wrapping_add((elapsed % (1 << 32)) as u32))
    }
}

/// The payload types of what the relay sends toward one leg, by the payload type each
/// packet arrives with from the other leg. Each leg negotiates its own SDP (RFC 3264), so
/// the same codec may carry another payload type on each side (a dynamic
/// `telephone-event` on 101 here and 96 there, RFC 3551 §3, RFC 4733 §2.3), or the legs may
/// have settled on two codecs that convert sample by sample (G.711 µ-law and A-law, ITU-T
/// G.711 Tables 3 and 4): a translation table maps each payload octet.
///
/// A payload type the map does not list is dropped (the leg did not negotiate it, so it
/// could not decode it), and counted ([`LegStats::dropped_payload_type`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadMap {
    entries: Vec<PayloadEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PayloadEntry {
    from: u8,
    to: u8,
    /// One output octet per input octet (stateless codecs: G.711).
    translate: Option<Arc<[u8; 256]>>,
}

impl PayloadMap {
    /// An empty map: every payload type is dropped until one is listed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Packets arriving with payload type `from` leave with `to` (payload types are 7
    /// bits: taken modulo 128). Replaces an earlier entry for `from`.
    pub fn map(mut self, from: u8, to: u8) -> Self {
        self.insert(from, to, None);
        self
    }

    /// Packets arriving with payload type `from` leave with `to`, each payload octet `x`
    /// replaced by `table[x]` (a G.711 µ-law payload becoming A-law). Padding is left
    /// alone. Replaces an earlier entry for `from`.
    pub fn translate(mut self, from: u8, to: u8, table: Arc<[u8; 256]>) -> Self {
        self.insert(from, to, Some(table));
        self
    }

    fn insert(&mut self, from: u8, to: u8, translate: Option<Arc<[u8; 256]>>) {
        let (from, to) = (from & 0x7f, to & 0x7f);
        self.entries.retain(|e| e.from != from);
        self.entries.push(PayloadEntry {
            from,
            to,
            translate,
        });
    }

    /// The payload type that packets arriving with `from` leave with, if listed.
    pub fn target(&self, from: u8) -> Option<u8> {
        self.entry(from).map(|e| e.to)
    }

    fn entry(&self, from: u8) -> Option<&PayloadEntry> {
        self.entries.iter().find(|e| e.from == from)
    }
}

/// One side of a relayed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    A,
    B,
}

impl Leg {
    /// The other leg.
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }
}

/// A leg's sockets and what its SDP said.
#[derive(Debug, Clone)]
pub struct RelayLeg {
    /// The relay's RTP socket toward this leg.
    pub rtp: SocketId,
    /// The relay's RTCP socket toward this leg (the RTP one with rtcp-mux, RFC 5761).
    pub rtcp: SocketId,
    /// The signalled RTP address of the leg's peer.
    pub remote: Option<SocketAddr>,
    /// The signalled RTCP address (`a=rtcp`, RFC 3605), else the RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// Latch onto the source of the peer's packets (RFC 4961).
    pub symmetric: bool,
    /// The RTP clock rate of the leg's payload (8000 for G.711).
    pub clock_rate: u32,
}

/// A relay's settings. `RelayConfig { seed, since_unix_epoch, ..RelayConfig::default() }`
/// is the usual construction.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// No RTP from a leg for this long raises [`RelayEvent::MediaTimeout`]; None disables.
    pub media_timeout: Option<Duration>,
    /// Seeds the outgoing SSRCs and the initial sequence numbers and timestamps (RFC 3550
    /// §5.1 wants them random; the caller brings the randomness, the machine stays pure),
    /// and the RTCP interval randomization of each leg (§6.3.1).
    pub seed: u64,
    /// The CNAME of the relay's reports toward both legs (RFC 3550 §6.5.1), at most 255
    /// bytes (a longer one sends no reports).
    pub cname: String,
    /// The wall-clock time of the `now` given to [`Relay::new`], since 1970-01-01 UTC: the
    /// NTP timestamps of the sender reports follow from it (RFC 3550 §4, [`NtpClock`]).
    pub since_unix_epoch: Duration,
}

impl Default for RelayConfig {
    /// No media timeout, seed 0 (bring a random one), CNAME `tandem`, the Unix epoch.
    fn default() -> Self {
        Self {
            media_timeout: None,
            seed: 0,
            cname: String::from("tandem"),
            since_unix_epoch: Duration::ZERO,
        }
    }
}

/// What the relay reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// The first valid RTP packet on a leg.
    FirstPacket { leg: Leg, from: SocketAddr },
    /// The leg's destination latched onto `addr` (first packet, or the peer moved).
    Latched { leg: Leg, addr: SocketAddr },
    /// No RTP from the leg for the media timeout.
    MediaTimeout { leg: Leg },
    /// RTP from the leg again after a [`RelayEvent::MediaTimeout`].
    MediaResumed { leg: Leg },
}

/// Counters of one leg: what arrived from its peer and what became of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    /// Datagrams that arrived on the leg's RTP socket (RTCP multiplexed on it excepted).
    pub received: u64,
    /// Packets sent on to the other leg.
    pub forwarded: u64,
    /// Not RTP (RFC 3550 §5.1 validation failed).
    pub dropped_invalid: u64,
    /// From a source other than the latched one (RFC 4961).
    pub dropped_unlatched: u64,
    /// The other leg has no address to send to yet.
    pub dropped_no_destination: u64,
    /// Forwarding from this leg is off (hold).
    pub dropped_on_hold: u64,
    /// A payload type the other leg did not negotiate ([`PayloadMap`]).
    pub dropped_payload_type: u64,
    /// RTCP packets received (on the RTCP socket, or multiplexed on the RTP one).
    pub rtcp_received: u64,
    /// RTCP compound packets the relay sent toward the leg (reports and BYE).
    pub rtcp_sent: u64,
}

#[derive(Debug)]
struct LegState {
    rtp: SocketId,
    rtcp: SocketId,
    latch: Latch,
    rtcp_latch: Latch,
    /// Rewrites what is sent toward this leg.
    toward: Rewriter,
    /// The sender side of the stream toward this leg, for our SRs (RFC 3550 §6.4.1).
    sent: RtpSender,
    /// Reception statistics of what this leg sends us (RFC 3550 A.1, A.3, A.8).
    reception: ReceiverStats,
    /// The RTCP session with this leg's peer.
    rtcp_session: RtcpSession,
    /// `sent`'s packet count at the last report and the one before (A.7 `we_sent`).
    sent_at_reports: [Option<u32>; 2],
    forwarding: bool,
    /// What payload types leave toward this leg; None: every one, unchanged.
    payloads: Option<PayloadMap>,
    media_timeout: Option<Duration>,
    stats: LegStats,
    first_seen: bool,
    last_rtp: Instant,
    timed_out: bool,
}

impl LegState {
    fn new(
        now: Instant,
        leg: RelayLeg,
        toward: Rewriter,
        sent: RtpSender,
        rtcp_session: RtcpSession,
        media_timeout: Option<Duration>,
    ) -> Self {
        Self {
            rtp: leg.rtp,
            rtcp: leg.rtcp,
            latch: Latch::new(leg.remote, leg.symmetric),
            rtcp_latch: Latch::new(rtcp_address(leg.remote, leg.remote_rtcp), leg.symmetric),
            toward,
            sent,
            reception: ReceiverStats::new(leg.clock_rate),
            rtcp_session,
            sent_at_reports: [None, None],
            forwarding: true,
            payloads: None,
            media_timeout,
            stats: LegStats::default(),
            first_seen: false,
            last_rtp: now,
            timed_out: false,
        }
    }

    /// RFC 3550 A.7 `we_sent`: RTP went toward the leg since the report before last.
    fn we_sent(&self) -> bool {
        let count = self.sent.packets_sent();
        self.sent.has_sent() && self.sent_at_reports[1] != Some(count)
    }

    /// When this leg's next report is due, if it has somewhere to go.
    fn next_report(&self) -> Option<Instant> {
        self.rtcp_latch
            .destination()
            .map(|_| self.rtcp_session.next_report())
    }
}

/// RFC 3605 `a=rtcp`, else RFC 3550 §11: the RTP port + 1.
fn rtcp_address(remote: Option<SocketAddr>, remote_rtcp: Option<SocketAddr>) -> Option<SocketAddr> {
    remote_rtcp.or_else(|| {
        let mut addr = remote?;
        addr.set_port(addr.port().checked_add(1)?);
        Some(addr)
    })
}

/// SplitMix64, to spread the seed over the SSRCs and bases.
fn split_mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Splits a u64 into (low 32 bits, next 16 bits).
fn low_bits(x: u64) -> (u32, u16) {
    ((x & 0xffff_ffff) as u32, ((x >> 32) & 0xffff) as u16)
}

/// The relay of one call between leg A and leg B (see the module documentation).
#[derive(Debug)]
pub struct Relay {
    a: LegState,
    b: LegState,
    ntp: NtpClock,
    /// [`Relay::close`] was called: no more forwarding or reports.
    closed: bool,
    transmits: std::collections::VecDeque<Datagram>,
    events: std::collections::VecDeque<RelayEvent>,
}

impl Relay {
    /// A relay whose media timeout counts from `now`.
    pub fn new(now: Instant, a: RelayLeg, b: RelayLeg, config: RelayConfig) -> Self {
        let mut state = config.seed;
        let (ssrc_a, sequence_a) = low_bits(split_mix(&mut state));
        let (timestamp_a, _) = low_bits(split_mix(&mut state));
        let (mut ssrc_b, sequence_b) = low_bits(split_mix(&mut state));
        let (timestamp_b, _) = low_bits(split_mix(&mut state));
        if ssrc_b == ssrc_a {
            ssrc_b ^= 1;
        }
        // Drawn after the stream bases, so a seed gives the same streams as before.
        let rtcp_seed_a = split_mix(&mut state);
        let rtcp_seed_b = split_mix(&mut state);
        let rtcp = RtcpConfig {
            cname: config.cname,
            ..RtcpConfig::default()
        };
        let toward_a = Rewriter::new(ssrc_a, sequence_a, timestamp_a, a.clock_rate);
        let toward_b = Rewriter::new(ssrc_b, sequence_b, timestamp_b, b.clock_rate);
        let sent_a = RtpSender::new(ssrc_a, sequence_a, timestamp_a, a.clock_rate);
        let sent_b = RtpSender::new(ssrc_b, sequence_b, timestamp_b, b.clock_rate);
        let session_a = RtcpSession::new(now, rtcp.clone(), rtcp_seed_a);
        let session_b = RtcpSession::new(now, rtcp, rtcp_seed_b);
        let timeout = config.media_timeout;
        Self {
            a: LegState::new(now, a, toward_a, sent_a, session_a, timeout),
            b: LegState::new(now, b, toward_b, sent_b, session_b, timeout),
            ntp: NtpClock::new(now, config.since_unix_epoch),
            closed: false,
            transmits: std::collections::VecDeque::new(),
            events: std::collections::VecDeque::new(),
        }
    }

    fn leg(&self, leg: Leg) -> &LegState {
        match leg {
            Leg::A => &self.a,
            Leg::B => &self.b,
        }
    }

    fn leg_mut(&mut self, leg: Leg) -> &mut LegState {
        match leg {
            Leg::A => &mut self.a,
            Leg::B => &mut self.b,
        }
    }

    /// New SDP for a leg (a re-INVITE, a transfer): the signalled addresses change and the
    /// latches learn afresh. The stream toward the leg continues unbroken.
    pub fn set_remote(
        &mut self,
        leg: Leg,
        remote: Option<SocketAddr>,
        remote_rtcp: Option<SocketAddr>,
    ) {
        let state = self.leg_mut(leg);
        state.latch.set_signalled(remote);
        state
            .rtcp_latch
            .set_signalled(rtcp_address(remote, remote_rtcp));
    }

    /// The leg's payload clock rate changed (a new codec): applies to what is sent toward it.
    pub fn set_clock_rate(&mut self, leg: Leg, clock_rate: u32) {
        self.leg_mut(leg).toward.set_clock_rate(clock_rate);
    }

    /// Carries on the stream toward the leg from where another machine left it (the
    /// call's own flow, before it was joined to this relay): what is sent toward the leg
    /// keeps `position`'s SSRC, and its sequence numbers and timestamps go on from there
    /// (RFC 3550 §5.1), so the leg's peer sees one source throughout. Meant before the
    /// first packet toward the leg; later, the stream toward the leg starts again from
    /// `position`. The sender report's counts start again from zero.
    pub fn continue_stream(&mut self, toward: Leg, position: StreamPosition) {
        let state = self.leg_mut(toward);
        let clock_rate = state.sent.clock_rate();
        state.toward = Rewriter::continuing(position, clock_rate);
        state.sent = RtpSender::new(
            position.ssrc,
            position.next_sequence,
            position.timestamp,
            clock_rate,
        );
        state.sent_at_reports = [None, None];
    }

    /// Where the stream toward the leg stands at `now`, for another machine to carry it
    /// on (the call's own flow, when the relay ends): see [`Rewriter::next_position`].
    pub fn position(&self, toward: Leg, now: Instant) -> StreamPosition {
        self.leg(toward).toward.next_position(now)
    }

    /// Which payload types leave toward the leg, and as what ([`PayloadMap`]); None (the
    /// default): every packet leaves with the payload type it arrived with.
    pub fn set_payload_map(&mut self, toward: Leg, map: Option<PayloadMap>) {
        self.leg_mut(toward).payloads = map;
    }

    /// The leg's own media timeout (its SDP may differ from the other's; None: the leg's
    /// peer does not send, as on hold). The silence counts from `now`.
    pub fn set_media_timeout(&mut self, leg: Leg, timeout: Option<Duration>, now: Instant) {
        let state = self.leg_mut(leg);
        state.media_timeout = timeout;
        state.last_rtp = now;
        state.timed_out = false;
    }

    /// The leg's media timeout ([`RelayConfig::media_timeout`] unless
    /// [`Relay::set_media_timeout`] changed it).
    pub fn media_timeout(&self, leg: Leg) -> Option<Duration> {
        self.leg(leg).media_timeout
    }

    /// The leg's counters.
    pub fn stats(&self, leg: Leg) -> LegStats {
        self.leg(leg).stats
    }

    /// Where RTP toward the leg goes: the latched source, else the signalled address.
    pub fn destination(&self, leg: Leg) -> Option<SocketAddr> {
        self.leg(leg).latch.destination()
    }

    /// Where the relay's RTCP toward the leg goes: the latched source of the leg's RTCP, else
    /// the signalled address (RFC 3605), else the RTP port + 1.
    pub fn rtcp_destination(&self, leg: Leg) -> Option<SocketAddr> {
        self.leg(leg).rtcp_latch.destination()
    }

    /// The SSRC of the stream sent toward the leg.
    pub fn ssrc_toward(&self, leg: Leg) -> u32 {
        self.leg(leg).toward.ssrc()
    }

    /// Forwarding on/off per direction (hold: `from` leg's packets are dropped, counted).
    pub fn set_forwarding(&mut self, from: Leg, on: bool) {
        self.leg_mut(from).forwarding = on;
    }

    /// Reception statistics of what the leg sends us: loss and jitter (RFC 3550 A.3,
    /// A.8). The fraction lost is the one of the last report toward the leg.
    pub fn reception(&self, leg: Leg) -> StreamStats {
        self.leg(leg).reception.snapshot()
    }

    /// How the leg's peer sees the stream we send it: its latest report block about our
    /// SSRC and the round-trip time (RFC 3550 §6.4.1). None before such a block.
    pub fn remote_view(&self, leg: Leg) -> Option<RemoteView> {
        self.leg(leg).rtcp_session.remote_view()
    }

    /// Ends the relay: an RTCP BYE (RFC 3550 §6.6, after an SR/RR and SDES) toward each leg
    /// that has an RTCP destination; from then on nothing is forwarded or reported and
    /// every datagram is ignored. Calling it again does nothing.
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        for leg in [Leg::A, Leg::B] {
            self.send_rtcp(now, leg, true);
        }
        self.closed = true;
    }

    /// Builds and queues a report (or, with `bye`, a report and a BYE) toward the leg, if
    /// it has an RTCP destination.
    fn send_rtcp(&mut self, now: Instant, leg: Leg, bye: bool) {
        let ntp = self.ntp;
        let state = self.leg_mut(leg);
        let Some(to) = state.rtcp_latch.destination() else {
            return;
        };
        if let Some(timestamp) = state.toward.timestamp_at(now) {
            state.sent.set_timestamp(timestamp);
        }
        let built = if bye {
            state
                .rtcp_session
                .build_bye(now, &ntp, &state.sent, &mut state.reception)
        } else {
            state
                .rtcp_session
                .build_report(now, &ntp, &state.sent, &mut state.reception)
        };
        // Only a CNAME over 255 bytes fails: no report then.
        let Ok(data) = built else {
            return;
        };
        let count = state.sent.packets_sent();
        state.sent_at_reports = [Some(count), state.sent_at_reports[0]];
        state.stats.rtcp_sent += 1;
        let socket = state.rtcp;
        self.transmits.push_back(Datagram { socket, to, data });
    }

    fn on_rtp(&mut self, now: Instant, from_leg: Leg, from: SocketAddr, data: &[u8]) {
        let state = self.leg_mut(from_leg);
        let media_timeout = state.media_timeout;
        state.stats.received += 1;
        let Ok((header, payload)) = parse_rtp(data) else {
            state.stats.dropped_invalid += 1;
            return;
        };
        let before = state.latch.latched();
        let accepted = state.latch.on_packet(now, from);
        let first = !state.first_seen;
        state.first_seen = true;
        let after = state.latch.latched();
        if first {
            self.events.push_back(RelayEvent::FirstPacket {
                leg: from_leg,
                from,
            });
        }
        if after != before
            && let Some(addr) = after
        {
            self.events.push_back(RelayEvent::Latched {
                leg: from_leg,
                addr,
            });
        }
        let state = self.leg_mut(from_leg);
        if !accepted {
            state.stats.dropped_unlatched += 1;
            return;
        }
        state.last_rtp = now;
        state.reception.record(now, &header);
        if state.timed_out {
            state.timed_out = false;
            if media_timeout.is_some() {
                self.events
                    .push_back(RelayEvent::MediaResumed { leg: from_leg });
            }
        }
        let state = self.leg_mut(from_leg);
        if !state.forwarding {
            state.stats.dropped_on_hold += 1;
            return;
        }
        let to_leg = from_leg.other();
        let Some(to) = self.leg(to_leg).latch.destination() else {
            self.leg_mut(from_leg).stats.dropped_no_destination += 1;
            return;
        };
        let mapping = match &self.leg(to_leg).payloads {
            None => None,
            Some(map) => match map.entry(header.payload_type) {
                Some(entry) => Some((entry.to, entry.translate.clone())),
                None => {
                    self.leg_mut(from_leg).stats.dropped_payload_type += 1;
                    return;
                }
            },
        };
        let mut packet = BytesMut::from(data);
        if let Some((payload_type, translate)) = mapping {
            set_payload_type(&mut packet, payload_type);
            if let Some(table) = translate
                && let Some(octets) = packet.get_mut(payload.clone())
            {
                for octet in octets {
                    *octet = table.get(usize::from(*octet)).copied().unwrap_or(*octet);
                }
            }
        }
        let toward = self.leg_mut(to_leg);
        let socket = toward.rtp;
        let Ok(sent) = toward.toward.rewrite(now, &mut packet) else {
            self.leg_mut(from_leg).stats.dropped_invalid += 1;
            return;
        };
        toward.sent.record_forwarded(sent.sequence, payload.len());
        self.transmits.push_back(Datagram {
            socket,
            to,
            data: packet.freeze(),
        });
        self.leg_mut(from_leg).stats.forwarded += 1;
    }

    /// RTCP from the leg's peer: to the leg's session (never forwarded, RFC 3550 §7.3),
    /// when it comes from the latched source. A malformed packet changes nothing.
    fn on_rtcp(&mut self, now: Instant, leg: Leg, from: SocketAddr, data: &[u8]) {
        let state = self.leg_mut(leg);
        state.stats.rtcp_received += 1;
        if state.rtcp_latch.on_packet(now, from) {
            let our_ssrc = state.toward.ssrc();
            // RFC 3550 A.2: an invalid compound packet is discarded whole.
            let _ = state.rtcp_session.handle_rtcp(now, data, our_ssrc);
        }
    }
}

impl MediaMachine for Relay {
    type Event = RelayEvent;

    fn handle_datagram(&mut self, now: Instant, socket: SocketId, from: SocketAddr, data: &[u8]) {
        if self.closed {
            return;
        }
        for leg in [Leg::A, Leg::B] {
            let state = self.leg(leg);
            if socket == state.rtp {
                // RFC 5761 §4: RTCP multiplexed on the RTP port.
                if looks_like_rtcp(data) {
                    self.on_rtcp(now, leg, from, data);
                } else {
                    self.on_rtp(now, leg, from, data);
                }
                return;
            }
            if socket == state.rtcp {
                self.on_rtcp(now, leg, from, data);
                return;
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        // RFC 3550 §6.3.3, A.7: a report per leg at its interval, after reconsideration.
        for leg in [Leg::A, Leg::B] {
            let state = self.leg_mut(leg);
            if state.next_report().is_some_and(|at| at <= now) {
                let we_sent = state.we_sent();
                if state.rtcp_session.due(now, we_sent) {
                    self.send_rtcp(now, leg, false);
                }
            }
        }
        for leg in [Leg::A, Leg::B] {
            let state = self.leg_mut(leg);
            let Some(timeout) = state.media_timeout else {
                continue;
            };
            if !state.timed_out && now.saturating_duration_since(state.last_rtp) >= timeout {
                state.timed_out = true;
                self.events.push_back(RelayEvent::MediaTimeout { leg });
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let media = [&self.a, &self.b]
            .into_iter()
            .filter(|state| !state.timed_out)
            .filter_map(|state| state.last_rtp.checked_add(state.media_timeout?))
            .min();
        [media, self.a.next_report(), self.b.next_report()]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }
}

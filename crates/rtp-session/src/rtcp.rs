//! RTCP for one RTP session (RFC 3550 §6): the report interval with timer reconsideration
//! (§6.3, Appendix A.7), compound SR/RR + SDES CNAME (+ BYE) packets built with our codec
//! in [`crate::wire`] (§6.1, §6.4, §6.5, §6.6), and reading the peer's reports: its sender report for
//! LSR/DLSR, its report block about our stream and the round-trip time (§6.4.1).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::RtpError;
use crate::sender::RtpSender;
use crate::stats::ReceiverStats;
use crate::wire::{
    Detail, Goodbye, ReceiverReport, ReportBlock, RtcpPacket, SenderReport, SourceDescription,
    build_compound, read_compound,
};

/// RFC 3550 §6.2: the minimum report interval, seconds.
const RTCP_MIN_TIME: f64 = 5.0;
/// RFC 3550 §6.2: the share of the session bandwidth RTCP may use.
const RTCP_BANDWIDTH_FRACTION: f64 = 0.05;
/// RFC 3550 §6.2: the senders' share of the RTCP bandwidth.
const RTCP_SENDER_BW_FRACTION: f64 = 0.25;
/// RFC 3550 §6.3.1 / A.7: e − 3/2, compensating for timer reconsideration converging to a
/// bandwidth below the intended average.
const COMPENSATION: f64 = std::f64::consts::E - 1.5;
/// RFC 3550 §6.2: packet sizes include the lower layers (UDP over IPv4).
const UDP_IP_OVERHEAD: usize = 28;
/// RFC 3550 §6.3.5: a member not heard for this many report intervals times out.
const MEMBER_TIMEOUT_INTERVALS: f64 = 5.0;
/// How many of our own sender reports are remembered to match LSR against (§6.4.1).
const SENT_SR_HISTORY: usize = 16;
/// RFC 3550 §4: seconds from 1900-01-01 (the NTP era) to 1970-01-01 (the Unix epoch).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Maps the driver's `Instant`s to NTP time (RFC 3550 §4) without reading the clock: the
/// driver says once what wall-clock time one `Instant` stands for.
#[derive(Debug, Clone, Copy)]
pub struct NtpClock {
    base: Instant,
    since_unix_epoch: Duration,
}

impl NtpClock {
    /// `now` is `since_unix_epoch` after 1970-01-01 00:00 UTC.
    pub fn new(now: Instant, since_unix_epoch: Duration) -> Self {
        Self {
            base: now,
            since_unix_epoch,
        }
    }

    /// The 64-bit NTP timestamp (32.32 fixed point seconds since 1900, RFC 3550 §4) of
    /// `at`; the seconds wrap at the end of NTP era 0 as the field does.
    pub fn ntp(&self, at: Instant) -> u64 {
        let unix = match at.checked_duration_since(self.base) {
            Some(after) => self.since_unix_epoch.saturating_add(after),
            None => self
                .since_unix_epoch
                .saturating_sub(self.base.saturating_duration_since(at)),
        };
        let seconds = unix.as_secs().wrapping_add(NTP_UNIX_OFFSET) & 0xffff_ffff;
        let fraction = (u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000;
        (seconds << 32) | fraction
    }
}

/// The middle 32 bits of an NTP timestamp (RFC 3550 §6.4.1 LSR).
fn ntp_middle(ntp: u64) -> u32 {
    ((ntp >> 16) & 0xffff_ffff) as u32
}

/// How an RTCP session behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpConfig {
    /// The session bandwidth (RFC 3550 §6.2) in bits per second; RTCP takes 5 % of it.
    pub session_bandwidth_bps: u32,
    /// The CNAME sent in every compound packet (RFC 3550 §6.5.1), at most 255 bytes.
    pub cname: String,
    /// RFC 3550 §6.2: use the reduced minimum interval of 360 s / (session kbit/s)
    /// instead of the fixed 5 s.
    pub reduced_minimum: bool,
}

impl Default for RtcpConfig {
    fn default() -> Self {
        Self {
            session_bandwidth_bps: 64_000,
            cname: String::from("tandem"),
            reduced_minimum: false,
        }
    }
}

/// What one compound RTCP packet from the peer carried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RtcpSummary {
    /// It held a sender report.
    pub sender_report: bool,
    /// Its report block about our SSRC, if it had one.
    pub remote_view: Option<RemoteView>,
    /// It held a BYE (RFC 3550 §6.6).
    pub bye: bool,
}

/// How the peer sees our stream: its reception report block about our SSRC (RFC 3550
/// §6.4.1) and the round-trip time derived from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteView {
    /// Fraction of our packets lost in its last interval, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets of ours lost (signed 24-bit on the wire).
    pub packets_lost: i64,
    /// Interarrival jitter of our stream, in timestamp units.
    pub jitter: u32,
    /// RFC 3550 §6.4.1: arrival − LSR − DLSR, when the block refers to one of our SRs.
    pub round_trip: Option<Duration>,
}

/// The sender information of the peer's latest sender report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    pub ssrc: u32,
    pub ntp_time: u64,
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    /// When the report arrived.
    pub received_at: Instant,
}

/// A participant heard on RTCP (RFC 3550 §6.3.3: the member and sender tables).
#[derive(Debug, Clone, Copy)]
struct Member {
    last_heard: Instant,
    /// When its last sender report came, if it counts as a sender.
    sender_since: Option<Instant>,
}

/// splitmix64: the interval's randomization (RFC 3550 §6.3.1 asks for a uniform factor in
/// [0.5, 1.5]; nothing cryptographic).
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The RTCP side of one RTP session with one local source: when to report, what to send,
/// and what the peer's reports say.
#[derive(Debug, Clone)]
pub struct RtcpSession {
    config: RtcpConfig,
    rng: SplitMix64,
    /// RFC 3550 A.7 `tp`: when the last report was sent.
    tp: Instant,
    /// RFC 3550 A.7 `tn`: when the next report is due.
    tn: Instant,
    /// RFC 3550 A.7 `pmembers`.
    pmembers: usize,
    /// RFC 3550 A.7 `initial`: no report sent yet.
    initial: bool,
    /// RFC 3550 A.7 `we_sent`, as last told.
    we_sent: bool,
    /// RFC 3550 A.7 `avg_rtcp_size`, octets including UDP/IP.
    avg_rtcp_size: f64,
    /// The random factor drawn when `due` said to send, used again once the report's size
    /// is known (A.7 computes the next interval after updating `avg_rtcp_size`).
    pending_factor: Option<f64>,
    /// Other participants, by SSRC.
    members: HashMap<u32, Member>,
    /// The peer's latest SR: its SSRC, LSR, and when it came.
    last_sr: Option<(u32, u32, Instant)>,
    remote_sender: Option<SenderInfo>,
    /// Our recent SRs: their LSR value and when they left.
    sent_srs: VecDeque<(u32, Instant)>,
    remote_view: Option<RemoteView>,
    reports_sent: u32,
    /// The sender's packet count at the last report and at the one before (§6.4: an SR if
    /// data went out since the report before last).
    packets_at_reports: [Option<u32>; 2],
}

impl RtcpSession {
    /// `seed` drives the interval randomization (splitmix64; deterministic in tests).
    /// The first report is scheduled after the initial interval, computed with half the
    /// minimum (RFC 3550 §6.2, §6.3.2).
    pub fn new(now: Instant, config: RtcpConfig, seed: u64) -> Self {
        // A.7: avg_rtcp_size starts at the probable size of the first compound packet:
        // an RR with one report block and an SDES CNAME.
        let first = 8 + 24 + sdes_size(config.cname.len()) + UDP_IP_OVERHEAD;
        let mut session = Self {
            config,
            rng: SplitMix64(seed),
            tp: now,
            tn: now,
            pmembers: 1,
            initial: true,
            we_sent: false,
            avg_rtcp_size: first as f64,
            pending_factor: None,
            members: HashMap::new(),
            last_sr: None,
            remote_sender: None,
            sent_srs: VecDeque::with_capacity(SENT_SR_HISTORY),
            remote_view: None,
            reports_sent: 0,
            packets_at_reports: [None, None],
        };
        let factor = session.draw();
        session.tn = now + session.randomized(false, true, factor);
        session
    }

    /// When the next report is due (§6.3.1: initial report at half the minimum;
    /// T = max(Td, Tmin) × U[0.5,1.5] / (e − 3/2); senders' share 25 % rule;
    /// avg_rtcp_size smoothing 1/16).
    pub fn next_report(&self) -> Instant {
        self.tn
    }

    /// At or after `next_report()`: timer reconsideration (§6.3.3 / A.7). Returns true when
    /// a report must be sent now (and schedules the next one), false when reconsideration
    /// moved the deadline later (or the deadline has not come).
    ///
    /// Every call draws a fresh random factor, as A.7's `OnExpire` does; that is what the
    /// e − 3/2 compensation assumes, so with a stable membership the intervals average
    /// the deterministic interval (5 s for a small session), each within
    /// [0.5, 1.5] × Td / (e − 3/2).
    pub fn due(&mut self, now: Instant, we_sent: bool) -> bool {
        self.we_sent = we_sent;
        self.expire_members(now);
        if now < self.tn {
            return false;
        }
        let factor = self.draw();
        let t = self.randomized(we_sent, self.initial, factor);
        let tn = self.tp + t;
        if tn <= now {
            // Send now; the next interval is computed once the report's size is known
            // (see `note_sent`), with the factor drawn here.
            let factor = self.draw();
            self.pending_factor = Some(factor);
            self.tp = now;
            self.tn = now + self.randomized(we_sent, false, factor);
            self.initial = false;
            self.pmembers = self.members();
            true
        } else {
            self.tn = tn;
            self.pmembers = self.members();
            false
        }
    }

    /// Builds a compound packet (§6.1): SR when `sender` has sent since the report before
    /// last (§6.4), else RR; with the reception report block from `receiver` (if it has a
    /// source) and SDES CNAME; updates avg_rtcp_size.
    pub fn build_report(
        &mut self,
        now: Instant,
        ntp: &NtpClock,
        sender: &RtpSender,
        receiver: &mut ReceiverStats,
    ) -> Result<Bytes, RtpError> {
        let packets = self.report_packets(now, ntp, sender, receiver)?;
        self.finish(now, &packets)
    }

    /// SR/RR + SDES CNAME + BYE (§6.6) to end the stream.
    pub fn build_bye(
        &mut self,
        now: Instant,
        ntp: &NtpClock,
        sender: &RtpSender,
        receiver: &mut ReceiverStats,
    ) -> Result<Bytes, RtpError> {
        let mut packets = self.report_packets(now, ntp, sender, receiver)?;
        packets.push(RtcpPacket::Goodbye(Goodbye {
            sources: vec![sender.ssrc()],
            reason: Bytes::new(),
        }));
        self.finish(now, &packets)
    }

    /// An RTCP compound packet from the peer: remembers its SR (LSR/DLSR), reads the report
    /// block about our SSRC, computes the round-trip time (§6.4.1), counts members, updates
    /// avg_rtcp_size. A malformed packet (RFC 3550 A.2) is refused whole, changing nothing.
    /// Never panics.
    pub fn handle_rtcp(
        &mut self,
        now: Instant,
        data: &[u8],
        our_ssrc: u32,
    ) -> Result<RtcpSummary, RtpError> {
        let parts = read_compound(data, Detail::Session)?;
        let mut summary = RtcpSummary {
            sender_report: false,
            remote_view: None,
            bye: false,
        };
        let mut blocks: Vec<ReportBlock> = Vec::new();
        for part in parts {
            match part {
                // Our own packets looped back are not another member (§8.2 collision
                // handling is out of scope here).
                RtcpPacket::SenderReport(sr) if sr.ssrc == our_ssrc => {}
                RtcpPacket::ReceiverReport(rr) if rr.ssrc == our_ssrc => {}
                RtcpPacket::SenderReport(sr) => {
                    summary.sender_report = true;
                    self.members.insert(
                        sr.ssrc,
                        Member {
                            last_heard: now,
                            sender_since: Some(now),
                        },
                    );
                    self.last_sr = Some((sr.ssrc, ntp_middle(sr.ntp_time), now));
                    self.remote_sender = Some(SenderInfo {
                        ssrc: sr.ssrc,
                        ntp_time: sr.ntp_time,
                        rtp_time: sr.rtp_time,
                        packet_count: sr.packet_count,
                        octet_count: sr.octet_count,
                        received_at: now,
                    });
                    blocks.extend(sr.reports);
                }
                RtcpPacket::ReceiverReport(rr) => {
                    self.members
                        .entry(rr.ssrc)
                        .and_modify(|m| m.last_heard = now)
                        .or_insert(Member {
                            last_heard: now,
                            sender_since: None,
                        });
                    blocks.extend(rr.reports);
                }
                RtcpPacket::Goodbye(bye) => {
                    summary.bye = true;
                    for ssrc in bye.sources {
                        self.members.remove(&ssrc);
                    }
                }
                // SDES, APP, feedback and extended reports carry nothing this session uses.
                _ => {}
            }
        }
        if let Some(block) = blocks.iter().rev().find(|b| b.ssrc == our_ssrc) {
            let view = self.remote_view_of(now, block);
            self.remote_view = Some(view);
            summary.remote_view = Some(view);
        }
        // A.7 OnReceive: avg_rtcp_size = 1/16 × packet size + 15/16 × avg_rtcp_size.
        self.smooth_size(data.len());
        if summary.bye {
            self.reverse_reconsider(now);
        }
        Ok(summary)
    }

    /// The peer's latest SR: the middle 32 bits of its NTP time and when it came (for
    /// [`ReceiverStats::report_block`]).
    pub fn last_sr(&self) -> Option<(u32, Instant)> {
        self.last_sr.map(|(_, lsr, at)| (lsr, at))
    }

    /// Latest: how the peer sees our stream.
    pub fn remote_view(&self) -> Option<RemoteView> {
        self.remote_view
    }

    /// The sender information of the peer's latest SR.
    pub fn remote_sender(&self) -> Option<SenderInfo> {
        self.remote_sender
    }

    /// Compound packets sent (reports and BYE).
    pub fn reports_sent(&self) -> u32 {
        self.reports_sent
    }

    /// RFC 3550 §6.3.3 `members`: the participants heard, ourselves included.
    pub fn members(&self) -> usize {
        self.members.len() + 1
    }

    /// RFC 3550 §6.3.3 `senders`: the participants that sent data lately, ourselves
    /// included when we did.
    pub fn senders(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.sender_since.is_some())
            .count()
            + usize::from(self.we_sent)
    }

    /// RFC 3550 A.7 `avg_rtcp_size`, in octets including UDP/IP headers.
    pub fn avg_rtcp_size(&self) -> f64 {
        self.avg_rtcp_size
    }

    /// RFC 3550 §6.3.1: the deterministic interval Td = max(Tmin, n × C) before the
    /// randomization and the compensation, for the current members, senders and average
    /// packet size (not the halved initial minimum).
    pub fn deterministic_interval(&self, we_sent: bool) -> Duration {
        seconds(self.deterministic(we_sent, false, self.minimum()))
    }

    /// RFC 3550 §6.2: the minimum interval, seconds.
    fn minimum(&self) -> f64 {
        let kbps = f64::from(self.config.session_bandwidth_bps) / 1000.0;
        if self.config.reduced_minimum && kbps > 0.0 {
            360.0 / kbps
        } else {
            RTCP_MIN_TIME
        }
    }

    /// RFC 3550 A.7 `rtcp_interval` before the random factor: max(Tmin, n × C), seconds.
    fn deterministic(&self, we_sent: bool, initial: bool, minimum: f64) -> f64 {
        let mut min_time = minimum;
        if initial {
            min_time /= 2.0;
        }
        // RTCP bandwidth in octets per second.
        let mut rtcp_bw =
            f64::from(self.config.session_bandwidth_bps) / 8.0 * RTCP_BANDWIDTH_FRACTION;
        let members = self.members();
        let senders = self.senders_with(we_sent);
        let mut n = members;
        if (senders as f64) <= members as f64 * RTCP_SENDER_BW_FRACTION {
            if we_sent {
                rtcp_bw *= RTCP_SENDER_BW_FRACTION;
                n = senders;
            } else {
                rtcp_bw *= 1.0 - RTCP_SENDER_BW_FRACTION;
                n = members - senders;
            }
        }
        let t = if rtcp_bw > 0.0 {
            self.avg_rtcp_size * n as f64 / rtcp_bw
        } else {
            0.0
        };
        t.max(min_time)
    }

    fn senders_with(&self, we_sent: bool) -> usize {
        self.members
            .values()
            .filter(|m| m.sender_since.is_some())
            .count()
            + usize::from(we_sent)
    }

    /// A.7 `rtcp_interval` with a factor in [0, 1): T × (factor + 0.5) / (e − 3/2).
    fn randomized(&self, we_sent: bool, initial: bool, factor: f64) -> Duration {
        let t = self.deterministic(we_sent, initial, self.minimum());
        seconds(t * (factor + 0.5) / COMPENSATION)
    }

    fn draw(&mut self) -> f64 {
        self.rng.next_f64()
    }

    fn smooth_size(&mut self, len: usize) {
        let size = (len + UDP_IP_OVERHEAD) as f64;
        self.avg_rtcp_size = size / 16.0 + self.avg_rtcp_size * 15.0 / 16.0;
    }

    /// The SR or RR and the SDES CNAME of a compound packet (§6.1).
    fn report_packets(
        &mut self,
        now: Instant,
        ntp: &NtpClock,
        sender: &RtpSender,
        receiver: &mut ReceiverStats,
    ) -> Result<Vec<RtcpPacket>, RtpError> {
        if self.config.cname.len() > 255 {
            return Err(RtpError::Build(format!(
                "CNAME of {} bytes, at most 255 fit an SDES item",
                self.config.cname.len()
            )));
        }
        let count = sender.packets_sent();
        let [last, before] = self.packets_at_reports;
        // §6.4: an SR when data went out during the interval since the last report or the
        // one before.
        let sent_lately = sender.has_sent()
            && (last != Some(count) || before != Some(count) || self.reports_sent == 0);
        self.packets_at_reports = [Some(count), last];
        let last_sr = self
            .last_sr
            .filter(|(ssrc, _, _)| Some(*ssrc) == receiver.ssrc())
            .map(|(_, lsr, at)| (lsr, at));
        let reports: Vec<ReportBlock> = receiver.report_block(now, last_sr).into_iter().collect();
        let mut packets: Vec<RtcpPacket> = Vec::with_capacity(3);
        if sent_lately {
            let ntp_time = ntp.ntp(now);
            if self.sent_srs.len() == SENT_SR_HISTORY {
                self.sent_srs.pop_front();
            }
            self.sent_srs.push_back((ntp_middle(ntp_time), now));
            packets.push(RtcpPacket::SenderReport(SenderReport {
                ssrc: sender.ssrc(),
                ntp_time,
                // The media clock now; the sender's timestamp is the next sample's.
                rtp_time: sender.timestamp(),
                packet_count: count,
                octet_count: sender.octets_sent(),
                reports,
            }));
        } else {
            packets.push(RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: sender.ssrc(),
                reports,
            }));
        }
        packets.push(RtcpPacket::SourceDescription(SourceDescription::cname(
            sender.ssrc(),
            self.config.cname.as_bytes(),
        )));
        Ok(packets)
    }

    /// Marshals a compound packet, and accounts for it having been sent (A.7 OnExpire:
    /// avg_rtcp_size, then the next interval).
    fn finish(&mut self, now: Instant, packets: &[RtcpPacket]) -> Result<Bytes, RtpError> {
        let data = build_compound(packets)?;
        self.reports_sent = self.reports_sent.wrapping_add(1);
        self.smooth_size(data.len());
        if let Some(factor) = self.pending_factor.take() {
            self.tn = self.tp + self.randomized(self.we_sent, false, factor);
        } else if self.initial {
            // Sent without `due` (e.g. a BYE straight away): the schedule starts from here.
            self.initial = false;
            self.tp = now;
        }
        Ok(data)
    }

    fn remote_view_of(&self, now: Instant, block: &ReportBlock) -> RemoteView {
        // §6.4.1: the cumulative loss is a signed 24-bit number.
        let packets_lost = block.packets_lost();
        // §6.4.1: RTT = A − LSR − DLSR. A and LSR are matched through the Instant our SR
        // left at, so no wall clock is needed.
        let round_trip = (block.last_sender_report != 0)
            .then(|| {
                self.sent_srs
                    .iter()
                    .rev()
                    .find(|(lsr, _)| *lsr == block.last_sender_report)
            })
            .flatten()
            .map(|(_, sent_at)| {
                let elapsed = now.saturating_duration_since(*sent_at);
                let delay = Duration::from_nanos(u64::from(block.delay) * 1_000_000_000 / 65_536);
                elapsed.saturating_sub(delay)
            });
        RemoteView {
            fraction_lost: block.fraction_lost,
            packets_lost,
            jitter: block.jitter,
            round_trip,
        }
    }

    /// RFC 3550 §6.3.5: members not heard for five intervals leave, senders that have not
    /// sent an SR for two intervals are receivers again; §6.3.4 reverse reconsideration.
    fn expire_members(&mut self, now: Instant) {
        // The timeout uses the fixed 5 s minimum even with a reduced minimum (§6.3.5).
        let interval = self.deterministic(false, false, RTCP_MIN_TIME);
        let member_timeout = seconds(interval * MEMBER_TIMEOUT_INTERVALS);
        let sender_timeout = seconds(interval * 2.0);
        let before = self.members();
        self.members
            .retain(|_, m| now.saturating_duration_since(m.last_heard) <= member_timeout);
        for member in self.members.values_mut() {
            if member
                .sender_since
                .is_some_and(|at| now.saturating_duration_since(at) > sender_timeout)
            {
                member.sender_since = None;
            }
        }
        if self.members() < before {
            self.reverse_reconsider(now);
        }
    }

    /// RFC 3550 §6.3.4: when members leave, pull `tn` and `tp` toward now in proportion.
    fn reverse_reconsider(&mut self, now: Instant) {
        let members = self.members();
        if members >= self.pmembers || self.pmembers == 0 {
            return;
        }
        let ratio = members as f64 / self.pmembers as f64;
        if let Some(ahead) = self.tn.checked_duration_since(now) {
            self.tn = now + ahead.mul_f64(ratio);
        }
        if let Some(behind) = now.checked_duration_since(self.tp) {
            self.tp = now.checked_sub(behind.mul_f64(ratio)).unwrap_or(self.tp);
        }
        self.pmembers = members;
    }
}

/// Seconds as a Duration, 0 for NaN or negative, at most a day.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.clamp(0.0, 86_400.0)).unwrap_or(Duration::ZERO)
}

/// The size of an SDES packet with one chunk holding one CNAME of `len` bytes (RFC 3550
/// §6.5): header, SSRC, type, length, text, at least one null octet, padded to 32 bits.
fn sdes_size(len: usize) -> usize {
    let chunk = 4 + 2 + len + 1;
    4 + chunk.div_ceil(4) * 4
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

    #[test]
    fn splitmix_is_uniform_enough_and_deterministic() {
        let mut a = SplitMix64(7);
        let mut b = SplitMix64(7);
        let xs: Vec<f64> = (0..10_000).map(|_| a.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert_eq!(xs[0], b.next_f64());
    }

    #[test]
    fn sdes_size_matches_the_codec_and_the_crate() {
        use rtcp::source_description::{SdesType, SourceDescriptionChunk, SourceDescriptionItem};
        use webrtc_util::marshal::Marshal;
        for cname in ["", "a", "ab", "abc", "user@host.example", &"x".repeat(255)] {
            let ours = build_compound(&[RtcpPacket::SourceDescription(SourceDescription::cname(
                1,
                cname.as_bytes(),
            ))])
            .unwrap();
            assert_eq!(ours.len(), sdes_size(cname.len()), "{cname:?}");
            let theirs = rtcp::source_description::SourceDescription {
                chunks: vec![SourceDescriptionChunk {
                    source: 1,
                    items: vec![SourceDescriptionItem {
                        sdes_type: SdesType::SdesCname,
                        text: Bytes::copy_from_slice(cname.as_bytes()),
                    }],
                }],
            };
            assert_eq!(
                theirs.marshal().unwrap().len(),
                sdes_size(cname.len()),
                "{cname:?}"
            );
        }
    }

    #[test]
    fn compound_parse_refuses_bad_lengths() {
        let parse_compound = |data: &[u8]| read_compound(data, Detail::Session);
        assert!(parse_compound(&[]).is_err());
        assert!(parse_compound(&[0x80, 200, 0]).is_err());
        // version 1
        assert!(parse_compound(&[0x40, 201, 0, 1, 0, 0, 0, 1]).is_err());
        // RR says two words, datagram has one
        assert!(parse_compound(&[0x80, 201, 0, 2, 0, 0, 0, 1]).is_err());
        // RR claims a block it does not hold
        assert!(parse_compound(&[0x81, 201, 0, 1, 0, 0, 0, 1]).is_err());
        // SR too short for its sender info
        assert!(parse_compound(&[0x80, 200, 0, 1, 0, 0, 0, 1]).is_err());
        // BYE with a source count beyond its length
        assert!(parse_compound(&[0x82, 203, 0, 1, 0, 0, 0, 1]).is_err());
        // A bare RR and a BYE are fine.
        let parts =
            parse_compound(&[0x80, 201, 0, 1, 0, 0, 0, 1, 0x81, 203, 0, 1, 0, 0, 0, 9]).unwrap();
        assert!(matches!(parts[0], RtcpPacket::ReceiverReport(ref rr) if rr.ssrc == 1));
        assert!(matches!(parts[1], RtcpPacket::Goodbye(ref bye) if bye.sources == [9]));
    }

    #[test]
    fn ntp_middle_bits() {
        assert_eq!(ntp_middle(0x1122_3344_5566_7788), 0x3344_5566);
    }
}

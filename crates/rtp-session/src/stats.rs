//! Receiver statistics of one RTP source: RFC 3550 Appendix A.1 (sequence number
//! validity, probation, cycles), A.3 (expected and lost packets, fraction lost per report
//! interval) and A.8 (interarrival jitter), and the reception report block they make
//! (§6.4.1).

use std::time::{Duration, Instant};

use crate::packet::RtpHeader;
use crate::wire::ReportBlock;

/// RFC 3550 A.1: sequential packets needed before a source is valid.
const MIN_SEQUENTIAL: u8 = 2;
/// RFC 3550 A.1: the largest forward jump still taken as the same stream.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: the largest backward jump taken as a late (reordered) packet.
const MAX_MISORDER: u16 = 100;
/// RFC 3550 A.1: the sequence number space.
const RTP_SEQ_MOD: u32 = 1 << 16;

/// What the statistics say about one source at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StreamStats {
    /// Packets counted valid (RFC 3550 A.1 `received`), duplicates included.
    pub packets_received: u64,
    /// RFC 3550 A.3: extended highest sequence number − base sequence number + 1.
    pub packets_expected: u64,
    /// Cumulative, RFC 3550 A.3: expected − received (negative with duplicates).
    pub packets_lost: i64,
    /// Of the last report interval, in 1/256 (RFC 3550 A.3).
    pub fraction_lost: u8,
    /// Interarrival jitter in timestamp units (RFC 3550 A.8).
    pub jitter: u32,
    /// The same jitter in milliseconds.
    pub jitter_ms: f64,
    /// The extended highest sequence number received (RFC 3550 §6.4.1).
    pub highest_sequence: u32,
    /// Packets at or behind the highest sequence number (a duplicate or a late packet).
    pub duplicates_or_late: u64,
}

/// RFC 3550 A.1 `source`: the per-source sequence state.
#[derive(Debug, Clone)]
struct Source {
    ssrc: u32,
    max_seq: u16,
    /// Shifted count of sequence number cycles (multiples of 2¹⁶).
    cycles: u32,
    base_seq: u32,
    /// Last "bad" sequence number + 1.
    bad_seq: u32,
    probation: u8,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// RFC 3550 A.8: the relative transit time of the previous packet, in timestamp units.
    transit: Option<u32>,
    /// RFC 3550 A.8: the jitter estimate, in timestamp units.
    jitter: f64,
    duplicates_or_late: u64,
    fraction_lost: u8,
}

impl Source {
    /// A source heard for the first time: RFC 3550 A.1, `init_seq` then `max_seq = seq - 1`
    /// and `probation = MIN_SEQUENTIAL`.
    fn new(ssrc: u32, seq: u16) -> Self {
        let mut source = Self {
            ssrc,
            max_seq: seq,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: MIN_SEQUENTIAL,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
            duplicates_or_late: 0,
            fraction_lost: 0,
        };
        source.init_seq(seq);
        source.max_seq = seq.wrapping_sub(1);
        source
    }

    /// RFC 3550 A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.duplicates_or_late = 0;
    }

    /// RFC 3550 A.1 `update_seq`: whether the packet counts.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            // Packets must be in sequence while the source is on probation.
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        } else if udelta < MAX_DROPOUT {
            // In order, with a permissible gap.
            if seq < self.max_seq {
                // Sequence number wrapped: count another 64K cycle.
                self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
            }
            self.max_seq = seq;
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            // The sequence number made a very large jump.
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets: assume the other side restarted without telling
                // us, so re-sync (i.e., pretend this was the first packet).
                self.init_seq(seq);
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                return false;
            }
        } else {
            // Duplicate or reordered packet.
            self.duplicates_or_late += 1;
        }
        self.received += 1;
        true
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// RFC 3550 A.3: extended_max − base_seq + 1, 0 before the source is valid.
    fn expected(&self) -> u64 {
        if self.probation > 0 {
            return 0;
        }
        (u64::from(self.extended_max()) + 1).saturating_sub(u64::from(self.base_seq))
    }

    fn lost(&self) -> i64 {
        let expected = i64::try_from(self.expected()).unwrap_or(i64::MAX);
        let received = i64::try_from(self.received).unwrap_or(i64::MAX);
        expected - received
    }
}

/// Receiver statistics about the one source a stream hears (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    clock_rate: u32,
    /// The instant arrival times are measured from (the first packet's), for A.8.
    epoch: Option<Instant>,
    source: Option<Source>,
}

impl ReceiverStats {
    /// Statistics for a stream whose RTP clock runs at `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            epoch: None,
            source: None,
        }
    }

    /// Records a packet that arrived at `now`. Returns whether A.1 counts it valid (false
    /// during probation or for a bad sequence jump). A new SSRC restarts the statistics for
    /// that source (A.1 init_seq).
    pub fn record(&mut self, now: Instant, header: &RtpHeader) -> bool {
        let source = match &mut self.source {
            Some(source) if source.ssrc == header.ssrc => source,
            slot => slot.insert(Source::new(header.ssrc, header.sequence)),
        };
        if !source.update_seq(header.sequence) {
            return false;
        }
        // RFC 3550 A.8: arrival time in timestamp units, relative transit time, and
        // J += (|D| − J) / 16.
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = timestamp_units(now.saturating_duration_since(epoch), self.clock_rate);
        let transit = arrival.wrapping_sub(header.timestamp);
        if let Some(previous) = source.transit {
            // A signed difference of two wrapping u32 values.
            let d = f64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            source.jitter += (d - source.jitter) / 16.0;
        }
        source.transit = Some(transit);
        true
    }

    /// The SSRC of the source heard, if any.
    pub fn ssrc(&self) -> Option<u32> {
        self.source.as_ref().map(|s| s.ssrc)
    }

    /// The statistics now.
    pub fn snapshot(&self) -> StreamStats {
        let Some(source) = &self.source else {
            return StreamStats::default();
        };
        let jitter = source.jitter;
        StreamStats {
            packets_received: source.received,
            packets_expected: source.expected(),
            packets_lost: source.lost(),
            fraction_lost: source.fraction_lost,
            jitter: jitter as u32,
            jitter_ms: if self.clock_rate == 0 {
                0.0
            } else {
                jitter * 1000.0 / f64::from(self.clock_rate)
            },
            highest_sequence: if source.probation > 0 {
                0
            } else {
                source.extended_max()
            },
            duplicates_or_late: source.duplicates_or_late,
        }
    }

    /// The reception report block about the current source, and A.3's interval counters
    /// moved on (call once per RTCP report). `last_sr`: the middle 32 bits of the NTP time
    /// of the last SR from that source and when it arrived (for LSR/DLSR, §6.4.1). None
    /// before any valid packet.
    pub fn report_block(
        &mut self,
        now: Instant,
        last_sr: Option<(u32, Instant)>,
    ) -> Option<ReportBlock> {
        let source = self.source.as_mut()?;
        if source.probation > 0 {
            return None;
        }
        // RFC 3550 A.3.
        let expected = source.expected();
        let expected_interval = expected.saturating_sub(source.expected_prior);
        source.expected_prior = expected;
        let received_interval = source.received.saturating_sub(source.received_prior);
        source.received_prior = source.received;
        let lost_interval = i128::from(expected_interval) - i128::from(received_interval);
        source.fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            u8::try_from((lost_interval << 8) / i128::from(expected_interval)).unwrap_or(u8::MAX)
        };
        // §6.4.1: the cumulative loss is a signed 24-bit number, clamped.
        let lost = source.lost().clamp(-0x80_0000, 0x7f_ffff);
        let total_lost = (lost as i32 as u32) & 0x00ff_ffff;
        let (last_sender_report, delay) = match last_sr {
            // §6.4.1: DLSR in units of 1/65536 s.
            Some((lsr, at)) => (lsr, dlsr_units(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: source.ssrc,
            fraction_lost: source.fraction_lost,
            total_lost,
            last_sequence_number: source.extended_max(),
            jitter: source.jitter as u32,
            last_sender_report,
            delay,
        })
    }
}

/// A duration in RTP timestamp units, modulo 2³² (RFC 3550 A.8 needs only differences).
fn timestamp_units(elapsed: Duration, clock_rate: u32) -> u32 {
    let units = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    (units & u128::from(u32::MAX)) as u32
}

/// A duration in units of 1/65536 s (RFC 3550 §6.4.1 DLSR), saturating.
fn dlsr_units(elapsed: Duration) -> u32 {
    let units = elapsed.as_nanos() * 65_536 / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

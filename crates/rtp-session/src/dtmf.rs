//! DTMF as RTP telephone events (RFC 4733): the event payload (§2.3), a sender that turns
//! digits into event packets at the packet interval (§2.5.1), and a receiver that turns
//! event packets back into one report per tone (§2.5.2).
//!
//! The payload type is whatever the SDP negotiated for `telephone-event` (RFC 4733 §7.1);
//! nothing here assumes 101.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::RtpError;
use crate::packet::RtpHeader;

/// RFC 4733 §2.5.1.3: the largest duration one event report carries.
const MAX_DURATION: u64 = 0xffff;
/// RFC 4733 §2.5.1.4: the final packet of an event or segment goes out three times.
const FINAL_PACKET_COPIES: u8 = 3;
/// RFC 4733 §2.3.5: volumes are 0 to 63 (−dBm0).
const MAX_VOLUME: u8 = 63;
/// The shortest wait for an event's end packets (RFC 4733 §2.5.2.2 leaves it to the
/// receiver; three packet intervals, at least this).
const MIN_END_TIMEOUT: Duration = Duration::from_millis(200);

/// The event code of a DTMF digit (RFC 4733 §3.2, Table 3): '0'..='9' → 0..9, '*' 10,
/// '#' 11, 'A'..='D' (and a..d) 12..15.
pub fn event_of_digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => u8::try_from(u32::from(c) - u32::from('0')).ok(),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => u8::try_from(u32::from(c) - u32::from('A') + 12).ok(),
        'a'..='d' => u8::try_from(u32::from(c) - u32::from('a') + 12).ok(),
        _ => None,
    }
}

/// The DTMF digit of an event code (RFC 4733 §3.2), upper-case for A–D; None for the
/// other events.
pub fn digit_of_event(event: u8) -> Option<char> {
    match event {
        0..=9 => char::from_digit(u32::from(event), 10),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => char::from_u32(u32::from('A') + u32::from(event) - 12),
        _ => None,
    }
}

/// The payload of a telephone-event packet (RFC 4733 §2.3):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     event     |E|R| volume    |          duration             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    /// The E bit: the event has ended (§2.3.2).
    pub end: bool,
    /// 0..=63, −dBm0 (§2.3.4).
    pub volume: u8,
    /// In timestamp units since the event (or segment) began (§2.3.5).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event of a payload; the R bit is ignored (§2.3.3). Bytes after the
    /// first four are not looked at.
    pub fn parse(payload: &[u8]) -> Result<Self, RtpError> {
        let Some(&[event, flags, d0, d1]) =
            payload.get(..4).and_then(|b| <&[u8; 4]>::try_from(b).ok())
        else {
            return Err(RtpError::TelephoneEvent("shorter than 4 bytes"));
        };
        Ok(Self {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The four payload bytes; R is sent as 0, a volume above 63 as 63.
    pub fn to_bytes(&self) -> [u8; 4] {
        let [d0, d1] = self.duration.to_be_bytes();
        let end = if self.end { 0x80 } else { 0 };
        [self.event, end | self.volume.min(MAX_VOLUME), d0, d1]
    }
}

/// One telephone-event packet for the stream to send: the RTP marker and timestamp it
/// needs, and its payload. The flow sends it with the telephone-event payload type and the
/// stream's next sequence number ([`crate::RtpSender::next_with_timestamp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    pub marker: bool,
    pub timestamp: u32,
    pub payload: [u8; 4],
}

/// A digit waiting its turn.
#[derive(Debug, Clone, Copy)]
struct Queued {
    event: u8,
    /// The whole event, in timestamp units, a multiple of the packet interval.
    units: u64,
    /// Packet intervals of no event after it.
    gap_ticks: u64,
    volume: u8,
}

/// What the sender is doing.
#[derive(Debug, Clone, Copy)]
enum SendState {
    Idle,
    /// Sending updates of an event.
    Playing {
        digit: Queued,
        /// The media timestamp when the event began (§2.5.1.2).
        start: u32,
        /// Timestamp units of the event so far.
        elapsed: u64,
        /// Where the current segment began, in units from `start` (§2.5.1.3).
        segment: u64,
    },
    /// The event has ended; its final packet is being repeated (§2.5.1.4).
    Ending {
        packet: DtmfPacket,
        copies_left: u8,
        gap_ticks: u64,
    },
    /// No event for this many more packet intervals.
    Gap {
        ticks_left: u64,
    },
}

/// Sends DTMF digits as RFC 4733 events, one call to [`DtmfSender::tick`] per packet
/// interval.
///
/// Choices this sender makes where RFC 4733 leaves them open:
/// - every packet of an event carries the duration up to the end of its packet interval
///   (the first one: one ptime), so the durations are the asked ones rounded up to a
///   whole number of packet intervals;
/// - the final packet (E bit) goes out three times spread over three consecutive packet
///   intervals, at the update interval as §2.5.1.4 says; the event stays active (no audio)
///   until the third;
/// - those two repeat intervals count toward the gap before the next digit, so the gap is
///   at least two packet intervals;
/// - an event longer than 0xFFFF units is split into segments (§2.5.1.3): the segment's
///   final packet (duration 0xFFFF, no E bit) goes out three times, the two repeats in
///   front of the next two packets, and the next segment starts at timestamp
///   start + 0xFFFF without the marker bit.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    payload_type: u8,
    clock_rate: u32,
    /// Timestamp units per packet interval.
    units_per_packet: u64,
    queue: VecDeque<Queued>,
    state: SendState,
    /// A segment's final packet still to repeat, and how many more times.
    segment_repeat: Option<(DtmfPacket, u8)>,
}

impl DtmfSender {
    /// A sender for the negotiated telephone-event `payload_type` at `clock_rate` Hz (the
    /// rate of its `a=rtpmap`), sending every `ptime`.
    pub fn new(payload_type: u8, clock_rate: u32, ptime: Duration) -> Self {
        Self {
            payload_type,
            clock_rate,
            units_per_packet: units_up(ptime, clock_rate).max(1),
            queue: VecDeque::new(),
            state: SendState::Idle,
            segment_repeat: None,
        }
    }

    /// The telephone-event payload type.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Queues digits (each `duration` long, `gap` of silence/audio between them, `volume`
    /// in −dBm0, above 63 taken as 63). Refuses the whole string, naming the first bad
    /// character, if any is not a DTMF digit.
    pub fn queue(
        &mut self,
        digits: &str,
        duration: Duration,
        gap: Duration,
        volume: u8,
    ) -> Result<(), RtpError> {
        let events = digits
            .chars()
            .map(|c| event_of_digit(c).ok_or(RtpError::NotADigit(c)))
            .collect::<Result<Vec<u8>, RtpError>>()?;
        let per = self.units_per_packet;
        let units = units_up(duration, self.clock_rate)
            .div_ceil(per)
            .max(1)
            .saturating_mul(per);
        let gap_ticks = units_up(gap, self.clock_rate).div_ceil(per);
        self.queue.extend(events.into_iter().map(|event| Queued {
            event,
            units,
            gap_ticks,
            volume: volume.min(MAX_VOLUME),
        }));
        Ok(())
    }

    /// Whether an event is being sent (the flow sends no audio packets while this is true).
    pub fn is_active(&self) -> bool {
        matches!(
            self.state,
            SendState::Playing { .. } | SendState::Ending { .. }
        )
    }

    /// Digits not yet finished (the one being sent included, until its last repeat).
    pub fn pending(&self) -> usize {
        self.queue.len() + usize::from(self.is_active())
    }

    /// Called once per packet interval (every ptime) with the media timestamp at this
    /// instant. Returns this interval's packets: an event's first packet has the marker bit
    /// and the event's start timestamp (= the media timestamp when it started), every
    /// packet of the event keeps that timestamp (of its segment), durations grow by ptime;
    /// the final duration is sent with the E bit three times, once in each of three
    /// consecutive intervals (§2.5.1.4). Durations above 0xFFFF units are split per
    /// §2.5.1.3.
    pub fn tick(&mut self, media_timestamp: u32) -> Vec<DtmfPacket> {
        let mut out = Vec::new();
        if let Some((packet, left)) = self.segment_repeat.take() {
            out.push(packet);
            if left > 1 {
                self.segment_repeat = Some((packet, left - 1));
            }
        }
        if let SendState::Gap { ticks_left } = self.state {
            if ticks_left > 0 {
                self.state = SendState::Gap {
                    ticks_left: ticks_left - 1,
                };
                return out;
            }
            self.state = SendState::Idle;
        }
        if let SendState::Idle = self.state {
            let Some(digit) = self.queue.pop_front() else {
                return out;
            };
            self.state = SendState::Playing {
                digit,
                start: media_timestamp,
                elapsed: 0,
                segment: 0,
            };
        }
        match self.state {
            SendState::Idle | SendState::Gap { .. } => {}
            SendState::Ending {
                packet,
                copies_left,
                gap_ticks,
            } => {
                out.push(packet);
                self.state = if copies_left > 1 {
                    SendState::Ending {
                        packet,
                        copies_left: copies_left - 1,
                        gap_ticks,
                    }
                } else {
                    // The repeat intervals were part of the gap.
                    SendState::Gap {
                        ticks_left: gap_ticks.saturating_sub(u64::from(FINAL_PACKET_COPIES - 1)),
                    }
                };
            }
            SendState::Playing {
                digit,
                start,
                elapsed,
                mut segment,
            } => {
                let first = elapsed == 0;
                let elapsed = elapsed
                    .saturating_add(self.units_per_packet)
                    .min(digit.units);
                let mut marker = first;
                // §2.5.1.3: the segment is full; close it and start the next one.
                while elapsed - segment > MAX_DURATION {
                    let closing = DtmfPacket {
                        marker,
                        timestamp: timestamp_at(start, segment),
                        payload: event_payload(digit, false, MAX_DURATION),
                    };
                    out.push(closing);
                    self.segment_repeat = Some((closing, FINAL_PACKET_COPIES - 1));
                    segment += MAX_DURATION;
                    marker = false;
                }
                let end = elapsed >= digit.units;
                let packet = DtmfPacket {
                    marker,
                    timestamp: timestamp_at(start, segment),
                    payload: event_payload(digit, end, elapsed - segment),
                };
                out.push(packet);
                self.state = if end {
                    SendState::Ending {
                        packet,
                        copies_left: FINAL_PACKET_COPIES - 1,
                        gap_ticks: digit.gap_ticks,
                    }
                } else {
                    SendState::Playing {
                        digit,
                        start,
                        elapsed,
                        segment,
                    }
                };
            }
        }
        out
    }

    /// Drops the queued digits. An event being sent ends at the next tick with the
    /// duration it reached (E bit, three times), so the receiver still sees it end.
    pub fn clear(&mut self) {
        self.queue.clear();
        if let SendState::Playing {
            ref mut digit,
            elapsed,
            ..
        } = self.state
        {
            digit.units = elapsed
                .saturating_add(self.units_per_packet)
                .min(digit.units);
            digit.gap_ticks = 0;
        }
        if let SendState::Ending {
            ref mut gap_ticks, ..
        } = self.state
        {
            *gap_ticks = 0;
        }
        if let SendState::Gap { .. } = self.state {
            self.state = SendState::Idle;
        }
    }
}

/// The payload of one event update; a segment's duration fits 16 bits by construction.
fn event_payload(digit: Queued, end: bool, duration: u64) -> [u8; 4] {
    TelephoneEvent {
        event: digit.event,
        end,
        volume: digit.volume,
        duration: u16::try_from(duration).unwrap_or(u16::MAX),
    }
    .to_bytes()
}

/// The RTP timestamp `offset` units after `start`, modulo 2³².
fn timestamp_at(start: u32, offset: u64) -> u32 {
    start.wrapping_add((offset & u64::from(u32::MAX)) as u32)
}

/// A duration in timestamp units, rounded up.
fn units_up(duration: Duration, clock_rate: u32) -> u64 {
    let units = (duration.as_nanos() * u128::from(clock_rate)).div_ceil(1_000_000_000);
    u64::try_from(units).unwrap_or(u64::MAX)
}

/// A tone the peer sent, reported once (RFC 4733 §2.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneEvent {
    pub event: u8,
    /// The DTMF digit, for events 0–15.
    pub digit: Option<char>,
    /// How long the tone lasted, all segments together.
    pub duration: Duration,
    pub volume: u8,
}

/// The event being received.
#[derive(Debug, Clone, Copy)]
struct Receiving {
    ssrc: u32,
    event: u8,
    /// The timestamp of its first segment.
    start: u32,
    /// The timestamp of its current segment (§2.5.1.3).
    segment: u32,
    /// The longest duration seen in the current segment.
    duration: u16,
    volume: u8,
    last_packet: Instant,
    /// The latest interval between two of its packets.
    packet_gap: Duration,
}

/// Turns received telephone-event packets into one [`ToneEvent`] per tone.
#[derive(Debug, Clone)]
pub struct DtmfReceiver {
    payload_type: u8,
    clock_rate: u32,
    current: Option<Receiving>,
    /// The last event reported: its SSRC and the timestamp of its last segment. Packets at
    /// or before it (repeated end packets, late updates) are ignored.
    finished: Option<(u32, u32)>,
    /// A report waiting for [`DtmfReceiver::handle_timeout`] (when one packet ended one
    /// event and began and ended another).
    pending: Option<(ToneEvent, Instant)>,
}

impl DtmfReceiver {
    /// A receiver for the negotiated telephone-event `payload_type` at `clock_rate` Hz.
    pub fn new(payload_type: u8, clock_rate: u32) -> Self {
        Self {
            payload_type,
            clock_rate,
            current: None,
            finished: None,
            pending: None,
        }
    }

    /// The telephone-event payload type.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// A packet of the telephone-event payload type. Reports each event once, at its first
    /// end packet (retransmitted end packets, same timestamp, are ignored); an event whose
    /// end packets were all lost is reported by handle_timeout once no packet of it came
    /// for `max(3 × packet gap, 200 ms)` with the last duration seen. Packets of another
    /// payload type and malformed payloads are ignored.
    pub fn handle(
        &mut self,
        now: Instant,
        header: &RtpHeader,
        payload: &[u8],
    ) -> Option<ToneEvent> {
        if header.payload_type != self.payload_type {
            return None;
        }
        let event = TelephoneEvent::parse(payload).ok()?;
        let ts = header.timestamp;
        if let Some((ssrc, last)) = self.finished
            && ssrc == header.ssrc
            && !is_after(ts, last)
        {
            return None;
        }
        if let Some(current) = &mut self.current
            && current.ssrc == header.ssrc
        {
            if ts == current.segment {
                current.duration = current.duration.max(event.duration);
                current.volume = event.volume;
                current.touch(now);
                return if event.end { self.finish() } else { None };
            }
            if !is_after(ts, current.segment) {
                // A repeat of an earlier segment's final packet.
                if is_after(ts, current.start) || ts == current.start {
                    current.touch(now);
                }
                return None;
            }
            // §2.5.1.3: the next segment of a long event starts where the last one ended.
            if event.event == current.event
                && !header.marker
                && u64::from(ts.wrapping_sub(current.segment)) <= MAX_DURATION
            {
                current.segment = ts;
                current.duration = event.duration;
                current.volume = event.volume;
                current.touch(now);
                return if event.end { self.finish() } else { None };
            }
        }
        // A new event: the one before it lost its end packets.
        let earlier = self.finish();
        self.current = Some(Receiving {
            ssrc: header.ssrc,
            event: event.event,
            start: ts,
            segment: ts,
            duration: event.duration,
            volume: event.volume,
            last_packet: now,
            packet_gap: Duration::ZERO,
        });
        if !event.end {
            return earlier;
        }
        let this = self.finish();
        match earlier {
            Some(earlier) => {
                self.pending = this.map(|tone| (tone, now));
                Some(earlier)
            }
            None => this,
        }
    }

    /// When [`DtmfReceiver::handle_timeout`] has something to report: an event's end
    /// packets are overdue, or a report is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some((_, at)) = self.pending {
            return Some(at);
        }
        self.current.map(|c| c.last_packet + c.end_timeout())
    }

    /// Reports an event whose end packets did not come in time, or a waiting report.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<ToneEvent> {
        if let Some((tone, _)) = self.pending.take() {
            return Some(tone);
        }
        let current = self.current?;
        if now < current.last_packet + current.end_timeout() {
            return None;
        }
        self.finish()
    }

    /// Ends the current event and reports it.
    fn finish(&mut self) -> Option<ToneEvent> {
        let current = self.current.take()?;
        self.finished = Some((current.ssrc, current.segment));
        let units =
            u64::from(current.segment.wrapping_sub(current.start)) + u64::from(current.duration);
        let nanos = if self.clock_rate == 0 {
            0
        } else {
            u128::from(units) * 1_000_000_000 / u128::from(self.clock_rate)
        };
        Some(ToneEvent {
            event: current.event,
            digit: digit_of_event(current.event),
            duration: Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
            volume: current.volume,
        })
    }
}

impl Receiving {
    fn touch(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_packet);
        if !gap.is_zero() {
            self.packet_gap = gap;
        }
        self.last_packet = now;
    }

    /// `max(3 × packet gap, 200 ms)`.
    fn end_timeout(&self) -> Duration {
        (self.packet_gap * 3).max(MIN_END_TIMEOUT)
    }
}

/// Whether RTP timestamp `a` comes after `b` (modulo 2³², RFC 3550 §5.1).
fn is_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
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
    fn payload_layout_bit_by_bit() {
        let e = TelephoneEvent {
            event: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(e.to_bytes(), [0x05, 0x8a, 0x03, 0x20]);
        assert_eq!(TelephoneEvent::parse(&[0x05, 0x8a, 0x03, 0x20]).unwrap(), e);
        let start = TelephoneEvent {
            event: 11,
            end: false,
            volume: 63,
            duration: 0xffff,
        };
        assert_eq!(start.to_bytes(), [0x0b, 0x3f, 0xff, 0xff]);
        // The R bit is read past; extra bytes are not looked at.
        assert_eq!(
            TelephoneEvent::parse(&[0x0b, 0x7f, 0xff, 0xff, 0xde, 0xad]).unwrap(),
            start
        );
        // A volume above 63 does not spill into R or E.
        let loud = TelephoneEvent {
            volume: 0xff,
            ..start
        };
        assert_eq!(loud.to_bytes()[1], 0x3f);
    }

    #[test]
    fn short_payloads_are_refused() {
        for len in 0..4 {
            assert_eq!(
                TelephoneEvent::parse(&[0u8; 4][..len]),
                Err(RtpError::TelephoneEvent("shorter than 4 bytes"))
            );
        }
    }

    #[test]
    fn digits_and_events() {
        let digits = "0123456789*#ABCD";
        for (code, c) in digits.chars().enumerate() {
            assert_eq!(event_of_digit(c), Some(code as u8));
            assert_eq!(digit_of_event(code as u8), Some(c));
        }
        assert_eq!(event_of_digit('c'), Some(14));
        assert_eq!(event_of_digit('E'), None);
        assert_eq!(event_of_digit(' '), None);
        assert_eq!(digit_of_event(16), None);
        assert_eq!(digit_of_event(255), None);
    }

    #[test]
    fn queue_refuses_the_whole_string() {
        let mut s = DtmfSender::new(96, 8000, Duration::from_millis(20));
        assert_eq!(
            s.queue("12x4y", Duration::from_millis(100), Duration::ZERO, 10),
            Err(RtpError::NotADigit('x'))
        );
        assert_eq!(s.pending(), 0);
        assert!(s.tick(0).is_empty());
        s.queue("1", Duration::from_millis(100), Duration::ZERO, 10)
            .unwrap();
        assert_eq!(s.pending(), 1);
        assert_eq!(s.payload_type(), 96);
    }

    #[test]
    fn one_event_packet_by_packet() {
        let mut s = DtmfSender::new(126, 8000, Duration::from_millis(20));
        // 50 ms rounds up to 60 ms: three intervals of 160 units.
        s.queue(
            "#",
            Duration::from_millis(50),
            Duration::from_millis(100),
            7,
        )
        .unwrap();
        let mut ts = 1000u32;
        let mut all = Vec::new();
        for _ in 0..6 {
            let packets = s.tick(ts);
            all.push((packets, s.is_active()));
            ts = ts.wrapping_add(160);
        }
        let p = |marker, end: bool, duration: u16| DtmfPacket {
            marker,
            timestamp: 1000,
            payload: TelephoneEvent {
                event: 11,
                end,
                volume: 7,
                duration,
            }
            .to_bytes(),
        };
        assert_eq!(all[0], (vec![p(true, false, 160)], true));
        assert_eq!(all[1], (vec![p(false, false, 320)], true));
        assert_eq!(all[2], (vec![p(false, true, 480)], true));
        assert_eq!(all[3], (vec![p(false, true, 480)], true));
        assert_eq!(all[4], (vec![p(false, true, 480)], false));
        assert_eq!(all[5], (vec![], false));
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn gap_separates_digits() {
        let mut s = DtmfSender::new(101, 8000, Duration::from_millis(20));
        s.queue(
            "12",
            Duration::from_millis(40),
            Duration::from_millis(100),
            10,
        )
        .unwrap();
        let mut starts = Vec::new();
        for tick in 0..20u32 {
            for p in s.tick(tick * 160) {
                if p.marker {
                    starts.push(tick);
                }
            }
        }
        // Digit 1: ticks 0-1, end repeats 2-3; gap of 5 intervals counted from the end
        // (the two repeats included): 4, 5, 6; digit 2 at 7.
        assert_eq!(starts, vec![0, 7]);
    }

    #[test]
    fn clear_ends_the_current_event() {
        let mut s = DtmfSender::new(101, 8000, Duration::from_millis(20));
        s.queue("123", Duration::from_millis(200), Duration::ZERO, 10)
            .unwrap();
        s.tick(0);
        s.tick(160);
        s.clear();
        assert_eq!(s.pending(), 1);
        let p = s.tick(320);
        let e = TelephoneEvent::parse(&p[0].payload).unwrap();
        assert!(e.end);
        assert_eq!(e.duration, 480);
        s.tick(480);
        s.tick(640);
        assert!(!s.is_active());
        assert!(s.tick(800).is_empty());
        assert_eq!(s.pending(), 0);
    }

    #[test]
    fn absurd_durations_do_not_overflow() {
        let mut s = DtmfSender::new(101, 8000, Duration::from_millis(20));
        s.queue("9", Duration::MAX, Duration::MAX, 200).unwrap();
        for k in 0..1000u32 {
            let packets = s.tick(k.wrapping_mul(160));
            assert!(!packets.is_empty());
            assert!(
                packets
                    .iter()
                    .all(|p| TelephoneEvent::parse(&p.payload).unwrap().volume == 63)
            );
        }
        assert!(s.is_active());
        let mut zero = DtmfSender::new(101, 8000, Duration::ZERO);
        zero.queue("1", Duration::ZERO, Duration::ZERO, 0).unwrap();
        let first = zero.tick(0);
        assert_eq!(
            TelephoneEvent::parse(&first[0].payload).unwrap().duration,
            1
        );
        assert!(TelephoneEvent::parse(&first[0].payload).unwrap().end);
    }

    #[test]
    fn timestamp_order_wraps() {
        assert!(is_after(5, u32::MAX - 5));
        assert!(!is_after(u32::MAX - 5, 5));
        assert!(!is_after(7, 7));
    }
}

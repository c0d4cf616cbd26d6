//! RFC 4733 telephone events end to end: DtmfSender → RtpSender → parse_rtp →
//! DtmfReceiver on a virtual clock, with loss, duplicates and long events, on payload types
//! other than 101.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rtp_session::{
    DtmfReceiver, DtmfSender, RtpHeader, RtpSender, TelephoneEvent, ToneEvent, parse_rtp,
};

const PTIME: Duration = Duration::from_millis(20);
const AUDIO_PT: u8 = 0;

/// A packet on the wire and when it left.
#[derive(Debug, Clone)]
struct Sent {
    at: Instant,
    header: RtpHeader,
    payload: Vec<u8>,
}

impl Sent {
    fn event(&self) -> TelephoneEvent {
        TelephoneEvent::parse(&self.payload).unwrap()
    }
}

/// Runs a flow for `ticks` packet intervals from `t0`: DTMF packets while an event is
/// active, audio otherwise, as the flow is meant to drive these.
fn run(dtmf: &mut DtmfSender, rtp: &mut RtpSender, t0: Instant, ticks: u32) -> Vec<Sent> {
    let mut out = Vec::new();
    for k in 0..ticks {
        let at = t0 + PTIME * k;
        let packets = dtmf.tick(rtp.timestamp());
        let datagrams: Vec<Bytes> = if packets.is_empty() && !dtmf.is_active() {
            vec![rtp.next(AUDIO_PT, false, &[0xff; 160], 160).unwrap()]
        } else {
            let d = packets
                .iter()
                .map(|p| {
                    rtp.next_with_timestamp(dtmf.payload_type(), p.marker, p.timestamp, &p.payload)
                        .unwrap()
                })
                .collect();
            rtp.skip(160);
            d
        };
        for d in datagrams {
            let (header, range) = parse_rtp(&d).unwrap();
            out.push(Sent {
                at,
                header,
                payload: d[range].to_vec(),
            });
        }
    }
    out
}

/// Feeds packets to a receiver in order, polling its timeout between them and after.
fn receive(rx: &mut DtmfReceiver, packets: &[Sent], until: Instant) -> Vec<ToneEvent> {
    let mut tones = Vec::new();
    for p in packets {
        while let Some(deadline) = rx.poll_timeout() {
            if deadline > p.at {
                break;
            }
            match rx.handle_timeout(deadline) {
                Some(tone) => tones.push(tone),
                None => break,
            }
        }
        tones.extend(rx.handle(p.at, &p.header, &p.payload));
    }
    while let Some(deadline) = rx.poll_timeout() {
        if deadline > until {
            break;
        }
        match rx.handle_timeout(deadline) {
            Some(tone) => tones.push(tone),
            None => break,
        }
    }
    tones
}

#[test]
fn every_digit_comes_back_with_its_duration() {
    let t0 = Instant::now();
    let pt = 96;
    let mut dtmf = DtmfSender::new(pt, 8000, PTIME);
    let mut rtp = RtpSender::new(0x00d7_3f00, 65_000, u32::MAX - 3000, 8000);
    // 90 ms asked: sent as 100 ms, the next whole packet interval.
    dtmf.queue(
        "0123456789*#ABCD",
        Duration::from_millis(90),
        Duration::from_millis(60),
        12,
    )
    .unwrap();
    assert_eq!(dtmf.pending(), 16);
    let sent = run(&mut dtmf, &mut rtp, t0, 16 * 20 + 10);
    assert_eq!(dtmf.pending(), 0);
    assert!(!dtmf.is_active());

    let mut rx = DtmfReceiver::new(pt, 8000);
    assert_eq!(rx.payload_type(), 96);
    let tones = receive(&mut rx, &sent, t0 + Duration::from_secs(20));
    let digits: String = tones.iter().map(|t| t.digit.unwrap()).collect();
    assert_eq!(digits, "0123456789*#ABCD");
    for (code, tone) in tones.iter().enumerate() {
        assert_eq!(tone.event, code as u8);
        assert_eq!(tone.duration, Duration::from_millis(100));
        assert_eq!(tone.volume, 12);
    }

    // Per event: the marker on its first packet only, one timestamp throughout (the media
    // timestamp when it began), durations growing by 160, and the E packet three times
    // with identical timestamp and duration and distinct sequence numbers.
    let events: Vec<&Sent> = sent
        .iter()
        .filter(|p| p.header.payload_type == pt)
        .collect();
    assert_eq!(events.len(), 16 * (5 + 2));
    for chunk in events.chunks(7) {
        let start = chunk[0].header.timestamp;
        assert!(chunk[0].header.marker);
        assert!(chunk[1..].iter().all(|p| !p.header.marker));
        assert!(chunk.iter().all(|p| p.header.timestamp == start));
        let durations: Vec<u16> = chunk.iter().map(|p| p.event().duration).collect();
        assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800]);
        let ends: Vec<&&Sent> = chunk.iter().filter(|p| p.event().end).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|p| p.payload == ends[0].payload));
        let mut seqs: Vec<u16> = ends.iter().map(|p| p.header.sequence).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), 3);
        // Spread over three consecutive intervals.
        assert_eq!(ends[1].at - ends[0].at, PTIME);
        assert_eq!(ends[2].at - ends[1].at, PTIME);
    }
    // Each event starts at the media timestamp of its first interval: audio before it
    // ended at that timestamp − 160.
    for (i, p) in sent.iter().enumerate() {
        if p.header.payload_type == pt && p.header.marker && i > 0 {
            let before = &sent[i - 1];
            assert_eq!(before.header.payload_type, AUDIO_PT);
            assert_eq!(
                p.header.timestamp,
                before.header.timestamp.wrapping_add(160)
            );
        }
    }
    // One sequence number after the other, across the 65535 wrap.
    for w in sent.windows(2) {
        assert_eq!(w[1].header.sequence, w[0].header.sequence.wrapping_add(1));
    }
}

#[test]
fn duplicated_packets_report_once() {
    let t0 = Instant::now();
    let mut dtmf = DtmfSender::new(126, 8000, PTIME);
    let mut rtp = RtpSender::new(1, 0, 0, 8000);
    dtmf.queue(
        "159",
        Duration::from_millis(120),
        Duration::from_millis(40),
        5,
    )
    .unwrap();
    let sent = run(&mut dtmf, &mut rtp, t0, 40);
    // The network delivers every packet twice, and the E packets a third time late.
    let mut doubled = Vec::new();
    for p in &sent {
        doubled.push(p.clone());
        doubled.push(Sent {
            at: p.at + Duration::from_millis(3),
            ..p.clone()
        });
        if p.header.payload_type == 126 && p.event().end {
            doubled.push(Sent {
                at: p.at + Duration::from_millis(15),
                ..p.clone()
            });
        }
    }
    let mut rx = DtmfReceiver::new(126, 8000);
    let tones = receive(&mut rx, &doubled, t0 + Duration::from_secs(5));
    let digits: Vec<(Option<char>, Duration)> =
        tones.iter().map(|t| (t.digit, t.duration)).collect();
    let d = Duration::from_millis(120);
    assert_eq!(digits, vec![(Some('1'), d), (Some('5'), d), (Some('9'), d)]);
}

#[test]
fn lost_end_packets_are_reported_on_timeout() {
    let t0 = Instant::now();
    let mut dtmf = DtmfSender::new(96, 8000, PTIME);
    let mut rtp = RtpSender::new(2, 10, 10_000, 8000);
    dtmf.queue("7", Duration::from_millis(100), Duration::ZERO, 20)
        .unwrap();
    let sent = run(&mut dtmf, &mut rtp, t0, 12);
    let kept: Vec<Sent> = sent
        .into_iter()
        .filter(|p| p.header.payload_type != 96 || !p.event().end)
        .collect();
    let last = kept
        .iter()
        .rfind(|p| p.header.payload_type == 96)
        .unwrap()
        .clone();
    assert_eq!(last.event().duration, 640);

    let mut rx = DtmfReceiver::new(96, 8000);
    for p in &kept {
        assert_eq!(rx.handle(p.at, &p.header, &p.payload), None);
    }
    // max(3 × 20 ms, 200 ms) after the last packet of the event.
    let deadline = rx.poll_timeout().unwrap();
    assert_eq!(deadline, last.at + Duration::from_millis(200));
    assert_eq!(rx.handle_timeout(deadline - Duration::from_millis(1)), None);
    let tone = rx.handle_timeout(deadline).unwrap();
    assert_eq!(tone.digit, Some('7'));
    assert_eq!(
        tone.duration,
        Duration::from_millis(80),
        "the last duration seen"
    );
    assert_eq!(rx.poll_timeout(), None);
    assert_eq!(rx.handle_timeout(deadline + Duration::from_secs(1)), None);
    // Its end packets arriving later still report nothing.
    let mut late = last.clone();
    late.payload = TelephoneEvent {
        end: true,
        duration: 800,
        ..late.event()
    }
    .to_bytes()
    .to_vec();
    assert_eq!(rx.handle(deadline, &late.header, &late.payload), None);
}

#[test]
fn slow_updates_stretch_the_timeout() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::new(101, 8000);
    let h = RtpHeader {
        marker: true,
        payload_type: 101,
        sequence: 1,
        timestamp: 500,
        ssrc: 9,
    };
    let update = |d: u16| {
        TelephoneEvent {
            event: 3,
            end: false,
            volume: 10,
            duration: d,
        }
        .to_bytes()
    };
    rx.handle(t0, &h, &update(800));
    let t1 = t0 + Duration::from_millis(100);
    rx.handle(
        t1,
        &RtpHeader {
            marker: false,
            sequence: 2,
            ..h
        },
        &update(1600),
    );
    // Updates every 100 ms: wait 3 × 100 ms.
    assert_eq!(rx.poll_timeout(), Some(t1 + Duration::from_millis(300)));
}

#[test]
fn a_new_event_reports_the_one_whose_end_was_lost() {
    let t0 = Instant::now();
    let mut dtmf = DtmfSender::new(96, 8000, PTIME);
    let mut rtp = RtpSender::new(3, 0, 0, 8000);
    dtmf.queue("4*", Duration::from_millis(60), Duration::ZERO, 9)
        .unwrap();
    let sent = run(&mut dtmf, &mut rtp, t0, 12);
    // Drop the first digit's end packets only.
    let mut seen_end = false;
    let kept: Vec<Sent> = sent
        .into_iter()
        .filter(|p| {
            if p.header.payload_type != 96 {
                return true;
            }
            let e = p.event();
            if e.event == 4 && e.end {
                seen_end = true;
                return false;
            }
            true
        })
        .collect();
    assert!(seen_end);
    let mut rx = DtmfReceiver::new(96, 8000);
    let mut tones = Vec::new();
    for p in &kept {
        tones.extend(rx.handle(p.at, &p.header, &p.payload));
    }
    assert_eq!(tones.len(), 2);
    assert_eq!(tones[0].digit, Some('4'));
    assert_eq!(tones[0].duration, Duration::from_millis(40));
    assert_eq!(tones[1].digit, Some('*'));
    assert_eq!(tones[1].duration, Duration::from_millis(60));
}

#[test]
fn a_single_packet_event_after_a_lost_end_is_not_lost() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::new(100, 8000);
    let h = |ts: u32, seq: u16| RtpHeader {
        marker: true,
        payload_type: 100,
        sequence: seq,
        timestamp: ts,
        ssrc: 4,
    };
    let e = |event: u8, end: bool, duration: u16| {
        TelephoneEvent {
            event,
            end,
            volume: 0,
            duration,
        }
        .to_bytes()
    };
    assert_eq!(rx.handle(t0, &h(0, 1), &e(1, false, 160)), None);
    // One packet starts and ends event 2: event 1 is reported now, event 2 right after.
    let now = t0 + Duration::from_millis(20);
    let first = rx.handle(now, &h(1000, 2), &e(2, true, 400)).unwrap();
    assert_eq!(first.digit, Some('1'));
    assert_eq!(rx.poll_timeout(), Some(now));
    let second = rx.handle_timeout(now).unwrap();
    assert_eq!(
        (second.digit, second.duration),
        (Some('2'), Duration::from_millis(50))
    );
    assert_eq!(rx.poll_timeout(), None);
}

#[test]
fn other_payload_types_and_bad_payloads_are_ignored() {
    let t0 = Instant::now();
    let mut rx = DtmfReceiver::new(96, 8000);
    let end = TelephoneEvent {
        event: 1,
        end: true,
        volume: 0,
        duration: 800,
    }
    .to_bytes();
    let h = RtpHeader {
        marker: true,
        payload_type: 101,
        sequence: 1,
        timestamp: 0,
        ssrc: 1,
    };
    assert_eq!(
        rx.handle(t0, &h, &end),
        None,
        "101 is not this stream's telephone-event"
    );
    let h96 = RtpHeader {
        payload_type: 96,
        ..h
    };
    assert_eq!(rx.handle(t0, &h96, &end[..3]), None);
    assert_eq!(rx.poll_timeout(), None);
    assert!(rx.handle(t0, &h96, &end).is_some());
}

#[test]
fn a_ten_second_event_is_split_into_segments() {
    let t0 = Instant::now();
    let pt = 126;
    let mut dtmf = DtmfSender::new(pt, 8000, PTIME);
    // Start near the top of the timestamp space: the second segment wraps.
    let start = u32::MAX - 20_000;
    let mut rtp = RtpSender::new(5, 0, start, 8000);
    dtmf.queue("#", Duration::from_secs(10), Duration::ZERO, 3)
        .unwrap();
    let sent = run(&mut dtmf, &mut rtp, t0, 505);
    let events: Vec<&Sent> = sent
        .iter()
        .filter(|p| p.header.payload_type == pt)
        .collect();
    // 80000 units = 500 intervals of updates; the first segment's closing update (0xFFFF)
    // beside the second segment's first one, and its two repeats; the two end repeats.
    assert_eq!(events.len(), 505);
    let second_ts = start.wrapping_add(0xffff);
    let first_segment: Vec<&&Sent> = events
        .iter()
        .filter(|p| p.header.timestamp == start)
        .collect();
    let second_segment: Vec<&&Sent> = events
        .iter()
        .filter(|p| p.header.timestamp == second_ts)
        .collect();
    assert_eq!(first_segment.len(), 409 + 3);
    assert_eq!(second_segment.len(), 91 + 2);
    // §2.5.1.3: the first segment runs to 0xFFFF, without E, the final update three times.
    let full: Vec<&&&Sent> = first_segment
        .iter()
        .filter(|p| p.event().duration == 0xffff)
        .collect();
    assert_eq!(full.len(), 3);
    assert!(full.iter().all(|p| !p.event().end));
    assert!(first_segment.iter().all(|p| !p.event().end));
    assert_eq!(first_segment.iter().filter(|p| p.header.marker).count(), 1);
    assert!(first_segment[0].header.marker);
    // 409 updates of 160..65440, then 0xFFFF at interval 410.
    assert_eq!(first_segment[408].event().duration, 65_440);
    // The second segment: no marker, durations from the boundary on, E at 80000 − 65535.
    assert!(second_segment.iter().all(|p| !p.header.marker));
    // 410 × 160 − 0xFFFF = 65.
    assert_eq!(second_segment[0].event().duration, 65);
    let ends: Vec<&&&Sent> = second_segment.iter().filter(|p| p.event().end).collect();
    assert_eq!(ends.len(), 3);
    // 80000 − 0xFFFF = 14465.
    assert!(ends.iter().all(|p| p.event().duration == 14_465));
    for w in second_segment.windows(2) {
        assert!(w[1].event().duration >= w[0].event().duration);
    }

    let mut rx = DtmfReceiver::new(pt, 8000);
    let tones = receive(&mut rx, &sent, t0 + Duration::from_secs(20));
    assert_eq!(tones.len(), 1);
    assert_eq!(tones[0].digit, Some('#'));
    assert_eq!(tones[0].duration, Duration::from_secs(10));

    // Without the segment-end packets and the event's end packets the receiver still
    // joins the segments, and reports the last duration seen on timeout.
    let lossy: Vec<Sent> = sent
        .iter()
        .filter(|p| {
            p.header.payload_type != pt || {
                let e = p.event();
                !e.end && e.duration != 0xffff
            }
        })
        .cloned()
        .collect();
    let mut rx = DtmfReceiver::new(pt, 8000);
    let tones = receive(&mut rx, &lossy, t0 + Duration::from_secs(20));
    assert_eq!(tones.len(), 1);
    assert_eq!(tones[0].duration, Duration::from_millis(10_000 - 20));
}

proptest! {
    /// Any sequence of telephone-event packets (timestamps jumping about, markers, short
    /// payloads, another SSRC) never panics the receiver, and it never reports more tones
    /// than it got packets.
    #[test]
    fn the_receiver_takes_anything(
        packets in proptest::collection::vec(
            (any::<u32>(), any::<bool>(), 0u32..3, proptest::collection::vec(any::<u8>(), 0..6), 0u64..400),
            0..60),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut rx = DtmfReceiver::new(110, 8000);
        let mut reports = 0usize;
        for (i, (ts, marker, ssrc, payload, wait)) in packets.iter().enumerate() {
            now += Duration::from_millis(*wait);
            if let Some(deadline) = rx.poll_timeout()
                && deadline <= now
            {
                reports += usize::from(rx.handle_timeout(now).is_some());
            }
            let header = RtpHeader {
                marker: *marker,
                payload_type: 110,
                sequence: i as u16,
                timestamp: ts & 0x0003_ffff,
                ssrc: *ssrc,
            };
            reports += usize::from(rx.handle(now, &header, payload).is_some());
        }
        now += Duration::from_secs(3600);
        while rx.poll_timeout().is_some_and(|d| d <= now) {
            match rx.handle_timeout(now) {
                Some(_) => reports += 1,
                None => break,
            }
        }
        prop_assert!(reports <= packets.len());
    }
}

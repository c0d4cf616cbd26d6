//! RtcpSession on a virtual clock: the RFC 3550 §6.3 interval and A.7 reconsideration,
//! compound packets between two sessions, LSR/DLSR round-trip time, hostile input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;
use rtcp::goodbye::Goodbye;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{SdesType, SourceDescription};
use rtp_session::{NtpClock, ReceiverStats, RtcpConfig, RtcpSession, RtpSender, parse_rtp};
use webrtc_util::marshal::Marshal;

const COMPENSATION: f64 = std::f64::consts::E - 1.5;
/// Slack for Duration/f64 rounding.
const EPS: f64 = 1e-6;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// An RR with one report block and an SDES CNAME from `ssrc`, as a third party sends.
fn third_party_report(ssrc: u32, cname: &str) -> Bytes {
    let rr = ReceiverReport {
        ssrc,
        reports: vec![ReceptionReport {
            ssrc: 1,
            ..Default::default()
        }],
        profile_extensions: Bytes::new(),
    };
    let sdes = SourceDescription {
        chunks: vec![rtcp::source_description::SourceDescriptionChunk {
            source: ssrc,
            items: vec![rtcp::source_description::SourceDescriptionItem {
                sdes_type: SdesType::SdesCname,
                text: Bytes::copy_from_slice(cname.as_bytes()),
            }],
        }],
    };
    rtcp::packet::marshal(&[Box::new(rr), Box::new(sdes)]).unwrap()
}

#[test]
fn the_first_report_comes_within_the_initial_bounds() {
    let t0 = Instant::now();
    // §6.3.1/§6.2: initial Tmin = 2.5 s, × U[0.5, 1.5] / (e − 3/2).
    let (lo, hi) = (2.5 * 0.5 / COMPENSATION, 2.5 * 1.5 / COMPENSATION);
    // The contract's looser bound: [1.25 × 0.5 / 1.218, 2.5 × 1.5 / 1.218].
    assert!(lo >= 1.25 * 0.5 / 1.218 && hi <= 2.5 * 1.5 / 1.218 + 1e-3);
    let mut sum = 0.0;
    for seed in 0..1000 {
        let s = RtcpSession::new(t0, RtcpConfig::default(), seed);
        let first = secs(s.next_report() - t0);
        assert!(
            first >= lo - EPS && first <= hi + EPS,
            "seed {seed}: {first}"
        );
        sum += first;
    }
    let mean = sum / 1000.0;
    assert!((mean - 2.5 / COMPENSATION).abs() < 0.05, "mean {mean}");
    // Same seed, same schedule; another seed, another one.
    let a = RtcpSession::new(t0, RtcpConfig::default(), 42).next_report();
    let b = RtcpSession::new(t0, RtcpConfig::default(), 42).next_report();
    let c = RtcpSession::new(t0, RtcpConfig::default(), 43).next_report();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn nothing_is_due_before_the_deadline() {
    let t0 = Instant::now();
    let mut s = RtcpSession::new(t0, RtcpConfig::default(), 9);
    let deadline = s.next_report();
    assert!(!s.due(deadline - Duration::from_millis(1), false));
    assert_eq!(s.next_report(), deadline);
}

/// One end of a call: an RTP stream out, one in, and RTCP.
struct End {
    rtp: RtpSender,
    stats: ReceiverStats,
    rtcp: RtcpSession,
    ntp: NtpClock,
    sends: Vec<Instant>,
}

impl End {
    fn new(t0: Instant, ssrc: u32, seed: u64) -> Self {
        Self {
            rtp: RtpSender::new(ssrc, (ssrc & 0xffff) as u16, ssrc, 8000),
            stats: ReceiverStats::new(8000),
            rtcp: RtcpSession::new(
                t0,
                RtcpConfig {
                    cname: format!("end-{ssrc:x}@tandem.invalid"),
                    ..RtcpConfig::default()
                },
                seed,
            ),
            ntp: NtpClock::new(t0, Duration::from_secs(1_700_000_000)),
            sends: Vec::new(),
        }
    }
}

#[test]
fn a_two_party_call_reports_every_five_seconds_on_average() {
    let t0 = Instant::now();
    let mut a = End::new(t0, 0xaaaa_0001, 1);
    let mut b = End::new(t0, 0xbbbb_0002, 2);
    let end = t0 + Duration::from_secs(30 * 60);
    let ptime = Duration::from_millis(20);
    let mut next_rtp = t0;
    let mut in_flight: Vec<(Instant, bool, Bytes)> = Vec::new(); // (arrival, to_a, data)
    let one_way = Duration::from_millis(40);
    loop {
        let now = [next_rtp, a.rtcp.next_report(), b.rtcp.next_report()]
            .into_iter()
            .chain(in_flight.iter().map(|(at, _, _)| *at))
            .min()
            .unwrap();
        if now > end {
            break;
        }
        // Deliveries.
        let (arrived, rest): (Vec<_>, Vec<_>) =
            in_flight.into_iter().partition(|(at, _, _)| *at <= now);
        in_flight = rest;
        for (_, to_a, data) in arrived {
            let to = if to_a { &mut a } else { &mut b };
            let ssrc = to.rtp.ssrc();
            if rtp_session::looks_like_rtcp(&data) {
                to.rtcp.handle_rtcp(now, &data, ssrc).unwrap();
            } else {
                let (h, _) = parse_rtp(&data).unwrap();
                to.stats.record(now, &h);
            }
        }
        if now == next_rtp {
            for (from, to_a) in [(&mut a, false), (&mut b, true)] {
                let p = from.rtp.next(0, false, &[0xd5; 160], 160).unwrap();
                in_flight.push((now + one_way, to_a, p));
            }
            next_rtp += ptime;
        }
        for (from, to_a) in [(&mut a, false), (&mut b, true)] {
            if now >= from.rtcp.next_report() && from.rtcp.due(now, true) {
                let report = from
                    .rtcp
                    .build_report(now, &from.ntp, &from.rtp, &mut from.stats)
                    .unwrap();
                from.sends.push(now);
                in_flight.push((now + one_way, to_a, report));
            }
        }
    }
    for end in [&a, &b] {
        assert_eq!(end.rtcp.members(), 2);
        assert_eq!(end.rtcp.senders(), 2);
        assert_eq!(
            end.rtcp.deterministic_interval(true),
            Duration::from_secs(5)
        );
        let intervals: Vec<f64> = end.sends.windows(2).map(|w| secs(w[1] - w[0])).collect();
        assert!(intervals.len() > 300, "{} reports", intervals.len());
        assert_eq!(end.rtcp.reports_sent() as usize, end.sends.len());
        // §6.3.1: each interval is Td × U[0.5, 1.5] / (e − 3/2) with Td = 5 s.
        let (lo, hi) = (5.0 * 0.5 / COMPENSATION, 5.0 * 1.5 / COMPENSATION);
        for (i, t) in intervals.iter().enumerate() {
            assert!(*t >= lo - EPS && *t <= hi + EPS, "interval {i}: {t}");
        }
        // A.7 redraws the random factor at every expiry (timer reconsideration); the
        // e − 3/2 compensation exists because that process settles on a mean interval
        // of e − 3/2 times the mean factor: the mean is Td = 5 s, not 5 / 1.218.
        let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
        assert!((mean - 5.0).abs() < 0.25, "mean interval {mean}");
    }
    // Both heard each other the whole call: no loss, an RTT of two one-way delays.
    let view = a.rtcp.remote_view().unwrap();
    assert_eq!(view.packets_lost, 0);
    let rtt = view.round_trip.unwrap();
    assert!(
        rtt.abs_diff(one_way * 2) < Duration::from_micros(20),
        "rtt {rtt:?}"
    );
}

#[test]
fn many_members_give_the_interval_section_6_3_1_computes() {
    let t0 = Instant::now();
    let config = RtcpConfig {
        cname: String::from("tandem"),
        ..RtcpConfig::default()
    };
    let mut s = RtcpSession::new(t0, config, 5);
    // A.7: avg_rtcp_size starts at an RR with one block (32) + SDES "tandem" (20) + UDP/IP (28).
    assert_eq!(s.avg_rtcp_size(), 80.0);
    let first_deadline = s.next_report();
    assert!(secs(first_deadline - t0) <= 2.5 * 1.5 / COMPENSATION + EPS);

    // 49 others report (RR with a block, SDES "m@x"): 32 + 16 + 28 = 76 octets each.
    let arrive = t0 + Duration::from_millis(100);
    for i in 0..49u32 {
        let packet = third_party_report(0x1000 + i, "m@x");
        assert_eq!(packet.len() + 28, 76);
        let summary = s.handle_rtcp(arrive, &packet, 0xdead).unwrap();
        assert!(!summary.sender_report && !summary.bye && summary.remote_view.is_none());
    }
    assert_eq!(s.members(), 50);
    assert_eq!(s.senders(), 0);
    let avg = 76.0 + 4.0 * (15.0f64 / 16.0).powi(49);
    assert!(
        (s.avg_rtcp_size() - avg).abs() < 1e-9,
        "{}",
        s.avg_rtcp_size()
    );
    // §6.3.1: no senders (0 ≤ 50/4), so receivers share 75 % of the RTCP bandwidth:
    // 64 kbit/s × 5 % = 400 octets/s, × 0.75 = 300; n = 50: Td = 76.17 × 50 / 300 = 12.69 s.
    let td = secs(s.deterministic_interval(false));
    assert!((td - avg * 50.0 / 300.0).abs() < 1e-6, "Td {td}");
    assert!((12.68..12.70).contains(&td), "Td {td}");
    // As the one sender among 50: 25 % of 400 octets/s shared by 1: 0.76 s → Tmin 5 s.
    assert_eq!(s.deterministic_interval(true), Duration::from_secs(5));

    // §6.3.3 reconsideration: at the old deadline the new interval (≥ 12.69 × 0.5 /
    // 1.218 = 5.2 s after tp = t0) lies in the future, so no report and a later deadline.
    assert!(!s.due(first_deadline, false));
    let moved = s.next_report();
    assert!(moved > first_deadline);
    let from_start = secs(moved - t0);
    assert!(
        from_start >= td * 0.5 / COMPENSATION - EPS && from_start <= td * 1.5 / COMPENSATION + EPS,
        "{from_start}"
    );
    // Eventually a report goes out, later than the lone-member schedule would have.
    let mut now = moved;
    while !s.due(now, false) {
        now = s.next_report();
    }
    assert!(secs(now - t0) >= td * 0.5 / COMPENSATION - EPS);

    // §6.3.4 reverse reconsideration: 48 members say BYE; the deadline comes closer.
    let now = now + Duration::from_secs(1);
    let before = s.next_report() - now;
    let members_before = s.members();
    for i in 0..48u32 {
        let bye = Goodbye {
            sources: vec![0x1000 + i],
            reason: Bytes::new(),
        };
        let rr = ReceiverReport {
            ssrc: 0x1000 + i,
            ..Default::default()
        };
        let packet = rtcp::packet::marshal(&[Box::new(rr), Box::new(bye)]).unwrap();
        assert!(s.handle_rtcp(now, &packet, 0xdead).unwrap().bye);
    }
    assert_eq!(s.members(), 2);
    let after = s.next_report() - now;
    let expected = before.mul_f64(2.0 / members_before as f64);
    assert!(
        after.abs_diff(expected) < Duration::from_millis(1),
        "{after:?} vs {expected:?}"
    );
}

#[test]
fn silent_members_time_out() {
    let t0 = Instant::now();
    let mut s = RtcpSession::new(t0, RtcpConfig::default(), 11);
    s.handle_rtcp(t0, &third_party_report(77, "x"), 1).unwrap();
    assert_eq!(s.members(), 2);
    // §6.3.5: five deterministic intervals (5 s here) without a word.
    s.due(t0 + Duration::from_secs(24), false);
    assert_eq!(s.members(), 2);
    s.due(t0 + Duration::from_secs(26), false);
    assert_eq!(s.members(), 1);
}

#[test]
fn reduced_minimum_shortens_the_interval() {
    let t0 = Instant::now();
    let config = RtcpConfig {
        session_bandwidth_bps: 1_000_000,
        reduced_minimum: true,
        ..RtcpConfig::default()
    };
    let s = RtcpSession::new(t0, config, 3);
    // §6.2: 360 / 1000 kbit/s = 0.36 s.
    assert_eq!(s.deterministic_interval(false), Duration::from_millis(360));
    let first = secs(s.next_report() - t0);
    assert!(first <= 0.18 * 1.5 / COMPENSATION + EPS, "{first}");
}

#[test]
fn sender_and_receiver_reports_round_trip() {
    let t0 = Instant::now();
    let mut a = End::new(t0, 0xa11c_e000, 21);
    let mut b = End::new(t0, 0x0000_b0b0, 22);
    // A sends 300 packets over 6 s; B gets them 30 ms later, without every 7th.
    for i in 0..300u32 {
        let p = a.rtp.next(8, i == 0, &[0x55; 160], 160).unwrap();
        if i % 7 == 3 {
            continue;
        }
        let at = t0 + Duration::from_millis(20) * i + Duration::from_millis(30);
        let (h, _) = parse_rtp(&p).unwrap();
        b.stats.record(at, &h);
    }
    let t1 = t0 + Duration::from_secs(6);
    let sr = a
        .rtcp
        .build_report(t1, &a.ntp, &a.rtp, &mut a.stats)
        .unwrap();
    assert_eq!(a.rtcp.reports_sent(), 1);
    // SR first, then SDES with the CNAME (§6.1).
    let parsed = rtcp::packet::unmarshal(&mut sr.clone()).unwrap();
    assert_eq!(parsed.len(), 2);
    let sender_report = parsed[0]
        .as_any()
        .downcast_ref::<SenderReport>()
        .expect("an SR");
    assert!(sender_report.reports.is_empty(), "A heard nothing yet");
    let sdes = parsed[1]
        .as_any()
        .downcast_ref::<SourceDescription>()
        .unwrap();
    assert_eq!(sdes.chunks[0].source, 0xa11c_e000);
    assert_eq!(
        &sdes.chunks[0].items[0].text[..],
        b"end-a11ce000@tandem.invalid"
    );

    let d1 = Duration::from_millis(30);
    let summary = b.rtcp.handle_rtcp(t1 + d1, &sr, b.rtp.ssrc()).unwrap();
    assert!(summary.sender_report && !summary.bye);
    assert_eq!(
        summary.remote_view, None,
        "an SR without blocks says nothing about B"
    );
    let info = b.rtcp.remote_sender().unwrap();
    assert_eq!(info.ssrc, 0xa11c_e000);
    assert_eq!(info.ntp_time, a.ntp.ntp(t1));
    assert_eq!(info.rtp_time, a.rtp.timestamp());
    assert_eq!(info.packet_count, 300);
    assert_eq!(info.octet_count, 300 * 160);
    assert_eq!(info.received_at, t1 + d1);
    // §6.4.1 LSR: the middle 32 bits of the SR's NTP time.
    let (lsr, at) = b.rtcp.last_sr().unwrap();
    assert_eq!(lsr, (a.ntp.ntp(t1) >> 16) as u32);
    assert_eq!(at, t1 + d1);
    assert_eq!(b.rtcp.members(), 2);

    // B holds it 1.3 s, then reports (an RR: B sent nothing) about A's stream.
    let hold = Duration::from_millis(1300);
    let t2 = t1 + d1 + hold;
    let rr = b
        .rtcp
        .build_report(t2, &b.ntp, &b.rtp, &mut b.stats)
        .unwrap();
    let parsed = rtcp::packet::unmarshal(&mut rr.clone()).unwrap();
    let receiver_report = parsed[0]
        .as_any()
        .downcast_ref::<ReceiverReport>()
        .expect("an RR");
    let block = &receiver_report.reports[0];
    assert_eq!(block.ssrc, 0xa11c_e000);
    assert_eq!(block.last_sender_report, lsr);
    assert_eq!(block.delay, (1.3 * 65536.0) as u32);
    let b_view = b.stats.snapshot();
    // 43 of 300 missing (i % 7 == 3).
    assert_eq!(b_view.packets_lost, 43);

    let d2 = Duration::from_millis(45);
    let summary = a.rtcp.handle_rtcp(t2 + d2, &rr, a.rtp.ssrc()).unwrap();
    assert!(!summary.sender_report);
    let view = summary.remote_view.unwrap();
    assert_eq!(a.rtcp.remote_view(), Some(view));
    assert_eq!(view.packets_lost, b_view.packets_lost);
    assert_eq!(view.fraction_lost, b_view.fraction_lost);
    assert_eq!(view.jitter, b_view.jitter);
    // §6.4.1: RTT = A − LSR − DLSR = d1 + d2 (DLSR truncated to 1/65536 s).
    let rtt = view.round_trip.unwrap();
    assert!(
        rtt.abs_diff(d1 + d2) < Duration::from_micros(16),
        "rtt {rtt:?}"
    );
}

#[test]
fn negative_loss_crosses_the_wire() {
    let t0 = Instant::now();
    let mut a = End::new(t0, 10, 1);
    let mut b = End::new(t0, 20, 2);
    for i in 0..20u32 {
        let p = a.rtp.next(0, false, &[0; 160], 160).unwrap();
        let (h, _) = parse_rtp(&p).unwrap();
        let at = t0 + Duration::from_millis(20) * i;
        b.stats.record(at, &h);
        if i == 10 {
            b.stats.record(at, &h); // a duplicate
        }
    }
    assert_eq!(b.stats.snapshot().packets_lost, -1);
    let rr = b
        .rtcp
        .build_report(t0 + Duration::from_secs(1), &b.ntp, &b.rtp, &mut b.stats)
        .unwrap();
    let view = a
        .rtcp
        .handle_rtcp(t0 + Duration::from_secs(1), &rr, 10)
        .unwrap()
        .remote_view
        .unwrap();
    assert_eq!(view.packets_lost, -1);
    assert_eq!(view.round_trip, None, "no SR of A's to refer to");
}

#[test]
fn a_sender_that_stops_reports_sr_twice_more_then_rr() {
    let t0 = Instant::now();
    let mut a = End::new(t0, 1, 1);
    let mut kinds = Vec::new();
    let report = |a: &mut End, k: u64| {
        let data = a
            .rtcp
            .build_report(
                t0 + Duration::from_secs(5 * k),
                &a.ntp,
                &a.rtp,
                &mut a.stats,
            )
            .unwrap();
        data[1]
    };
    kinds.push(report(&mut a, 0)); // nothing sent yet: RR
    a.rtp.next(0, false, &[0; 160], 160).unwrap();
    kinds.push(report(&mut a, 1)); // sent since the last: SR
    kinds.push(report(&mut a, 2)); // sent since the one before: SR (§6.4)
    kinds.push(report(&mut a, 3)); // silent for two intervals: RR
    a.rtp.next(0, false, &[0; 160], 160).unwrap();
    kinds.push(report(&mut a, 4));
    assert_eq!(kinds, vec![201, 200, 200, 201, 200]);
}

#[test]
fn bye_ends_the_stream() {
    let t0 = Instant::now();
    let mut a = End::new(t0, 0xa, 1);
    let mut b = End::new(t0, 0xb, 2);
    a.rtp.next(0, false, &[0; 160], 160).unwrap();
    let report = a
        .rtcp
        .build_report(t0, &a.ntp, &a.rtp, &mut a.stats)
        .unwrap();
    b.rtcp.handle_rtcp(t0, &report, 0xb).unwrap();
    assert_eq!(b.rtcp.members(), 2);
    let later = t0 + Duration::from_secs(3);
    let bye = a
        .rtcp
        .build_bye(later, &a.ntp, &a.rtp, &mut a.stats)
        .unwrap();
    let parsed = rtcp::packet::unmarshal(&mut bye.clone()).unwrap();
    assert_eq!(parsed.len(), 3);
    assert!(parsed[0].as_any().downcast_ref::<SenderReport>().is_some());
    assert!(
        parsed[1]
            .as_any()
            .downcast_ref::<SourceDescription>()
            .is_some()
    );
    let goodbye = parsed[2].as_any().downcast_ref::<Goodbye>().unwrap();
    assert_eq!(goodbye.sources, vec![0xa]);
    let summary = b.rtcp.handle_rtcp(later, &bye, 0xb).unwrap();
    assert!(summary.bye && summary.sender_report);
    assert_eq!(b.rtcp.members(), 1);
    assert_eq!(a.rtcp.reports_sent(), 2);
}

#[test]
fn ntp_clock_follows_the_instants() {
    let t0 = Instant::now();
    let clock = NtpClock::new(t0, Duration::new(1_700_000_000, 500_000_000));
    let ntp = clock.ntp(t0);
    assert_eq!(ntp >> 32, 1_700_000_000 + 2_208_988_800);
    assert_eq!(ntp & 0xffff_ffff, 1 << 31, "half a second");
    let later = clock.ntp(t0 + Duration::from_millis(1750));
    assert_eq!(later >> 32, 1_700_000_000 + 2_208_988_800 + 2);
    assert_eq!(later & 0xffff_ffff, 1 << 30, "a quarter second");
    // Before the reference instant too.
    let ref_later = NtpClock::new(t0 + Duration::from_secs(10), Duration::from_secs(100));
    assert_eq!(ref_later.ntp(t0) >> 32, 90 + 2_208_988_800);
}

#[test]
fn malformed_rtcp_is_refused_and_changes_nothing() {
    let t0 = Instant::now();
    let mut s = RtcpSession::new(t0, RtcpConfig::default(), 1);
    let avg = s.avg_rtcp_size();
    // A valid RR followed by a truncated SR.
    let mut data = third_party_report(5, "x").to_vec();
    data.extend_from_slice(&[0x80, 200, 0, 6, 0, 0, 0, 1]);
    assert!(s.handle_rtcp(t0, &data, 1).is_err());
    assert_eq!(s.members(), 1);
    assert_eq!(s.avg_rtcp_size(), avg);
    // An SR claiming more report blocks than it holds.
    let sr = SenderReport {
        ssrc: 9,
        ..Default::default()
    };
    let mut bytes = sr.marshal().unwrap().to_vec();
    bytes[0] |= 3;
    assert!(s.handle_rtcp(t0, &bytes, 1).is_err());
    assert!(s.handle_rtcp(t0, &[], 1).is_err());
    assert!(s.last_sr().is_none());
}

proptest! {
    /// Arbitrary bytes never panic the session.
    #[test]
    fn handle_rtcp_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let t0 = Instant::now();
        let mut s = RtcpSession::new(t0, RtcpConfig::default(), 1);
        let _ = s.handle_rtcp(t0, &data, 1);
        prop_assert!(s.members() >= 1);
    }

    /// Well-framed packets of every type with arbitrary bodies (so the `rtcp` crate's
    /// readers run) never panic it either.
    #[test]
    fn framed_hostile_packets_never_panic(
        parts in proptest::collection::vec(
            (0u8..32, prop::sample::select(vec![200u8, 201, 202, 203, 204, 205, 206, 207, 199]),
             proptest::collection::vec(any::<u8>(), 0..80)),
            1..4),
        padded in any::<bool>(),
    ) {
        let mut data = Vec::new();
        for (count, packet_type, mut body) in parts {
            while body.len() % 4 != 0 { body.push(0); }
            let words = (body.len() / 4) as u16;
            let b0 = 0x80 | if padded { 0x20 } else { 0 } | count;
            data.extend_from_slice(&[b0, packet_type]);
            data.extend_from_slice(&words.to_be_bytes());
            data.extend_from_slice(&body);
        }
        let t0 = Instant::now();
        let mut s = RtcpSession::new(t0, RtcpConfig::default(), 1);
        let _ = s.handle_rtcp(t0, &data, 1);
        prop_assert!(s.members() >= 1);
    }
}

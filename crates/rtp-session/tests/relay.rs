//! The symmetric-RTP latch, the relay's rewriter and the relay machine, on a virtual clock
//! (`t0 + Duration`). These live outside `src/` because the crate's own code may not read
//! the clock, tests included (CI greps `src/`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use rtp_session::{
    Datagram, Latch, Leg, LegStats, MediaMachine, ReceiverReport, Relay, RelayConfig, RelayEvent,
    RelayLeg, ReportBlock, Rewriter, RtcpPacket, RtpHeader, SenderReport, SocketId,
    SourceDescription, build_compound, build_rtp, parse_compound, parse_rtp,
};

const A_RTP: SocketId = SocketId(1);
const A_RTCP: SocketId = SocketId(2);
const B_RTP: SocketId = SocketId(3);
const B_RTCP: SocketId = SocketId(4);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn packet(ssrc: u32, sequence: u16, timestamp: u32, marker: bool) -> Vec<u8> {
    let header = RtpHeader {
        marker,
        payload_type: 0,
        sequence,
        timestamp,
        ssrc,
    };
    build_rtp(&header, &[0xd5; 160]).unwrap().to_vec()
}

fn header(data: &[u8]) -> RtpHeader {
    parse_rtp(data).unwrap().0
}

fn legs(a: Option<&str>, b: Option<&str>) -> (RelayLeg, RelayLeg) {
    (
        RelayLeg {
            rtp: A_RTP,
            rtcp: A_RTCP,
            remote: a.map(addr),
            remote_rtcp: None,
            symmetric: true,
            clock_rate: 8000,
        },
        RelayLeg {
            rtp: B_RTP,
            rtcp: B_RTCP,
            remote: b.map(addr),
            remote_rtcp: None,
            symmetric: true,
            clock_rate: 8000,
        },
    )
}

fn relay(t0: Instant, a: Option<&str>, b: Option<&str>, media_timeout: Option<Duration>) -> Relay {
    let (a, b) = legs(a, b);
    Relay::new(
        t0,
        a,
        b,
        RelayConfig {
            media_timeout,
            seed: 42,
            ..RelayConfig::default()
        },
    )
}

fn transmits(relay: &mut Relay) -> Vec<Datagram> {
    std::iter::from_fn(|| relay.poll_transmit()).collect()
}

fn events(relay: &mut Relay) -> Vec<RelayEvent> {
    std::iter::from_fn(|| relay.poll_event()).collect()
}

/// The SSRC of the SR or RR that opens a compound packet.
fn report_ssrc(parts: &[RtcpPacket]) -> Option<u32> {
    match parts.first()? {
        RtcpPacket::SenderReport(sr) => Some(sr.ssrc),
        RtcpPacket::ReceiverReport(rr) => Some(rr.ssrc),
        _ => None,
    }
}

fn total_dropped(s: &LegStats) -> u64 {
    s.dropped_invalid + s.dropped_unlatched + s.dropped_no_destination + s.dropped_on_hold
}

// ---- Latch ----

#[test]
fn latch_without_symmetric_accepts_all_and_keeps_the_signalled_address() {
    let t0 = Instant::now();
    let signalled = addr("192.0.2.1:4000");
    let mut latch = Latch::new(Some(signalled), false);
    assert!(latch.on_packet(t0, addr("198.51.100.7:5000")));
    assert!(latch.on_packet(t0, addr("198.51.100.8:5002")));
    assert_eq!(latch.destination(), Some(signalled));
    assert_eq!(latch.latched(), None);
    assert_eq!(latch.dropped(), 0);
}

#[test]
fn latch_learns_the_first_source_and_guards_it_until_silence() {
    let t0 = Instant::now();
    let signalled = addr("10.0.0.5:4000");
    let nat = addr("203.0.113.9:31000");
    let other = addr("203.0.113.66:40000");
    let mut latch = Latch::new(Some(signalled), true);
    assert_eq!(latch.destination(), Some(signalled));
    assert!(latch.on_packet(t0, nat));
    assert_eq!(latch.latched(), Some(nat));
    assert_eq!(latch.destination(), Some(nat));
    // Another source while the latched one is live: refused, counted.
    assert!(!latch.on_packet(t0 + ms(100), other));
    assert!(latch.on_packet(t0 + ms(200), nat));
    assert!(!latch.on_packet(t0 + ms(699), other));
    assert_eq!(latch.dropped(), 2);
    assert_eq!(latch.destination(), Some(nat));
    // The latched source silent for 500 ms: the new one takes over.
    assert!(latch.on_packet(t0 + ms(700), other));
    assert_eq!(latch.latched(), Some(other));
    assert!(!latch.on_packet(t0 + ms(720), nat));
    // A shorter relatch delay applies at once.
    latch.set_relatch_after(ms(10));
    assert!(latch.on_packet(t0 + ms(731), nat));
    assert_eq!(latch.latched(), Some(nat));
}

#[test]
fn new_sdp_forgets_the_latch() {
    let t0 = Instant::now();
    let mut latch = Latch::new(None, true);
    assert_eq!(latch.destination(), None);
    latch.on_packet(t0, addr("203.0.113.9:31000"));
    let moved = addr("198.51.100.1:6000");
    latch.set_signalled(Some(moved));
    assert_eq!(latch.latched(), None);
    assert_eq!(latch.destination(), Some(moved));
    // Keeps learning: the next packet latches, even right away.
    let from = addr("198.51.100.1:6100");
    assert!(latch.on_packet(t0 + ms(1), from));
    assert_eq!(latch.destination(), Some(from));
}

// ---- Rewriter ----

#[test]
fn rewriter_keeps_one_stream_across_a_new_source() {
    let t0 = Instant::now();
    let mut rw = Rewriter::new(0xabcd, 1000, 50_000, 8000);
    let mut last = None;
    for i in 0..5u16 {
        let mut p = packet(0x1111, 700 + i, 9000 + 160 * u32::from(i), false);
        let h = rw.rewrite(t0 + ms(20 * u64::from(i)), &mut p).unwrap();
        assert_eq!(
            h,
            header(&p),
            "the returned header is what the packet holds"
        );
        assert_eq!(h.ssrc, 0xabcd);
        assert_eq!(h.sequence, 1000 + i);
        assert_eq!(h.timestamp, 50_000 + 160 * u32::from(i));
        assert_eq!(h.marker, i == 0, "marker on the first packet only");
        last = Some(h);
    }
    let last = last.unwrap();
    // A transfer: a new SSRC with its own bases, 60 ms after the last packet.
    let mut p = packet(0x2222, 40_000, 3_000_000_000, false);
    let h = rw.rewrite(t0 + ms(80 + 60), &mut p).unwrap();
    assert_eq!(h.ssrc, 0xabcd);
    assert_eq!(h.sequence, last.sequence + 1);
    assert_eq!(h.timestamp, last.timestamp + 60 * 8);
    assert!(h.marker);
    // The new segment continues with the input's own spacing.
    let mut p = packet(0x2222, 40_001, 3_000_000_160, false);
    let h2 = rw.rewrite(t0 + ms(160), &mut p).unwrap();
    assert_eq!(
        (h2.sequence, h2.timestamp, h2.marker),
        (h.sequence + 1, h.timestamp + 160, false)
    );
    assert_eq!(rw.packets(), 7);
}

#[test]
fn rewriter_advances_at_least_one_frame_and_wraps() {
    let t0 = Instant::now();
    let mut rw = Rewriter::new(7, 65535, u32::MAX - 100, 8000);
    let mut p = packet(1, 10, 10, false);
    let h = rw.rewrite(t0, &mut p).unwrap();
    assert_eq!((h.sequence, h.timestamp), (65535, u32::MAX - 100));
    // A new SSRC at the same instant still moves on by one 20 ms frame, across the wrap.
    let mut p = packet(2, 500, 77, false);
    let h = rw.rewrite(t0, &mut p).unwrap();
    assert_eq!(h.sequence, 0);
    assert_eq!(h.timestamp, (u32::MAX - 100).wrapping_add(160));
    assert!(h.marker);
}

#[test]
fn rewriter_starts_a_segment_on_sequence_or_timestamp_jumps() {
    let t0 = Instant::now();
    let mut rw = Rewriter::new(7, 100, 1000, 8000);
    rw.rewrite(t0, &mut packet(5, 10, 800, false)).unwrap();
    rw.rewrite(t0 + ms(20), &mut packet(5, 11, 960, false))
        .unwrap();
    // Same SSRC, sequence jumps by 20 000: a restart, not loss.
    let h = rw
        .rewrite(t0 + ms(40), &mut packet(5, 20_011, 1120, false))
        .unwrap();
    assert_eq!((h.sequence, h.timestamp, h.marker), (102, 1320, true));
    // Same SSRC, sequence +1 but the timestamp leaps an hour ahead in 20 ms.
    let h = rw
        .rewrite(
            t0 + ms(60),
            &mut packet(5, 20_012, 1120 + 8000 * 3600, false),
        )
        .unwrap();
    assert_eq!((h.sequence, h.timestamp, h.marker), (103, 1480, true));
    // And backwards by ten seconds.
    let h = rw
        .rewrite(
            t0 + ms(80),
            &mut packet(5, 20_013, (1120 + 8000 * 3600) - 80_000, false),
        )
        .unwrap();
    assert_eq!((h.sequence, h.timestamp, h.marker), (104, 1640, true));
}

#[test]
fn rewriter_keeps_gaps_reordering_and_silence_within_a_segment() {
    let t0 = Instant::now();
    let mut rw = Rewriter::new(7, 100, 1000, 8000);
    rw.rewrite(t0, &mut packet(5, 10, 800, false)).unwrap();
    // Packet 11 lost, 13 before 12.
    let h13 = rw
        .rewrite(t0 + ms(60), &mut packet(5, 13, 800 + 480, false))
        .unwrap();
    let h12 = rw
        .rewrite(t0 + ms(61), &mut packet(5, 12, 800 + 320, false))
        .unwrap();
    assert_eq!(
        (h13.sequence, h13.timestamp, h13.marker),
        (103, 1480, false)
    );
    assert_eq!(
        (h12.sequence, h12.timestamp, h12.marker),
        (102, 1320, false)
    );
    // Silence suppression: 3 s without packets, the timestamp follows the clock.
    let h = rw
        .rewrite(t0 + ms(3060), &mut packet(5, 14, 800 + 480 + 24_000, true))
        .unwrap();
    assert_eq!(
        (h.sequence, h.timestamp, h.marker),
        (104, 1480 + 24_000, true)
    );
    let h = rw
        .rewrite(t0 + ms(3080), &mut packet(5, 15, 800 + 640 + 24_000, false))
        .unwrap();
    assert_eq!(
        (h.sequence, h.timestamp, h.marker),
        (105, 1640 + 24_000, false)
    );
}

#[test]
fn rewriter_refuses_what_is_not_rtp() {
    let t0 = Instant::now();
    let mut rw = Rewriter::new(7, 100, 1000, 8000);
    let mut junk = [0x40u8; 20];
    assert!(rw.rewrite(t0, &mut junk).is_err());
    assert_eq!(junk, [0x40u8; 20], "untouched");
    assert!(rw.rewrite(t0, &mut [0x80, 0]).is_err());
    assert_eq!(rw.packets(), 0);
}

#[test]
fn rewriter_uses_the_new_clock_rate() {
    let t0 = Instant::now();
    let mut rw = Rewriter::new(7, 100, 1000, 8000);
    rw.rewrite(t0, &mut packet(5, 10, 800, false)).unwrap();
    rw.set_clock_rate(48_000);
    let h = rw
        .rewrite(t0 + ms(100), &mut packet(6, 10, 800, false))
        .unwrap();
    assert_eq!(h.timestamp, 1000 + 4800);
}

// ---- Relay ----

#[test]
fn relay_forwards_both_ways_with_its_own_ssrcs() {
    let t0 = Instant::now();
    let phone_a = addr("192.0.2.10:4000");
    let phone_b = addr("192.0.2.20:5000");
    let mut r = relay(t0, Some("192.0.2.10:4000"), Some("192.0.2.20:5000"), None);
    assert_ne!(r.ssrc_toward(Leg::A), r.ssrc_toward(Leg::B));

    r.handle_datagram(t0, A_RTP, phone_a, &packet(0xa, 1, 160, false));
    let out = transmits(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].socket, out[0].to), (B_RTP, phone_b));
    let h = header(&out[0].data);
    assert_eq!(h.ssrc, r.ssrc_toward(Leg::B));
    assert!(h.marker);
    assert_eq!(&out[0].data[12..], &[0xd5; 160][..], "payload untouched");

    r.handle_datagram(t0 + ms(20), A_RTP, phone_a, &packet(0xa, 2, 320, false));
    let h2 = header(&transmits(&mut r)[0].data);
    assert_eq!(h2.sequence, h.sequence.wrapping_add(1));
    assert_eq!(h2.timestamp, h.timestamp.wrapping_add(160));

    r.handle_datagram(t0 + ms(5), B_RTP, phone_b, &packet(0xb, 9, 90, false));
    let out = transmits(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].socket, out[0].to), (A_RTP, phone_a));
    assert_eq!(header(&out[0].data).ssrc, r.ssrc_toward(Leg::A));

    assert_eq!(r.stats(Leg::A).received, 2);
    assert_eq!(r.stats(Leg::A).forwarded, 2);
    assert_eq!(r.stats(Leg::B).forwarded, 1);
    assert_eq!(
        events(&mut r),
        vec![
            RelayEvent::FirstPacket {
                leg: Leg::A,
                from: phone_a
            },
            RelayEvent::Latched {
                leg: Leg::A,
                addr: phone_a
            },
            RelayEvent::FirstPacket {
                leg: Leg::B,
                from: phone_b
            },
            RelayEvent::Latched {
                leg: Leg::B,
                addr: phone_b
            },
        ]
    );
}

#[test]
fn relay_stream_survives_a_transfer_on_the_other_leg() {
    let t0 = Instant::now();
    let phone_a = addr("192.0.2.10:4000");
    let mut r = relay(t0, Some("192.0.2.10:4000"), Some("192.0.2.20:5000"), None);
    let mut sent = Vec::new();
    for i in 0..10u16 {
        let at = t0 + ms(20 * u64::from(i));
        r.handle_datagram(
            at,
            A_RTP,
            phone_a,
            &packet(0x1, 300 + i, 4000 + 160 * u32::from(i), false),
        );
        sent.extend(transmits(&mut r));
    }
    let last = header(&sent.last().unwrap().data);
    // Leg A is transferred: a new party, a new address, a new SSRC and bases.
    let new_party = addr("198.51.100.30:7000");
    r.set_remote(Leg::A, Some(new_party), None);
    let at = t0 + ms(180 + 250);
    r.handle_datagram(
        at,
        A_RTP,
        new_party,
        &packet(0x2, 60_000, 123_456_789, false),
    );
    let out = transmits(&mut r);
    assert_eq!(out.len(), 1);
    let h = header(&out[0].data);
    assert_eq!(h.ssrc, last.ssrc);
    assert_eq!(h.sequence, last.sequence.wrapping_add(1));
    assert_eq!(h.timestamp, last.timestamp.wrapping_add(250 * 8));
    assert!(h.marker);
    // B's packets now reach the new party.
    r.handle_datagram(
        at,
        B_RTP,
        addr("192.0.2.20:5000"),
        &packet(0xb, 1, 1, false),
    );
    assert_eq!(transmits(&mut r)[0].to, new_party);
}

#[test]
fn relay_latches_onto_a_natted_source() {
    let t0 = Instant::now();
    // A's SDP names its private address; its packets come from the NAT.
    let nat = addr("203.0.113.5:30000");
    let phone_b = addr("192.0.2.20:5000");
    let mut r = relay(t0, Some("10.0.0.1:4000"), Some("192.0.2.20:5000"), None);
    // Before A says anything, B's packets go to the signalled address.
    r.handle_datagram(t0, B_RTP, phone_b, &packet(0xb, 1, 160, false));
    assert_eq!(transmits(&mut r)[0].to, addr("10.0.0.1:4000"));
    r.handle_datagram(t0 + ms(10), A_RTP, nat, &packet(0xa, 1, 160, false));
    assert_eq!(transmits(&mut r)[0].to, phone_b);
    assert!(events(&mut r).contains(&RelayEvent::Latched {
        leg: Leg::A,
        addr: nat
    }));
    assert_eq!(r.destination(Leg::A), Some(nat));
    r.handle_datagram(t0 + ms(20), B_RTP, phone_b, &packet(0xb, 2, 320, false));
    let out = transmits(&mut r);
    assert_eq!((out[0].socket, out[0].to), (A_RTP, nat));
}

#[test]
fn relay_relatches_after_silence_and_counts_the_refused() {
    let t0 = Instant::now();
    let first = addr("203.0.113.5:30000");
    let rebound = addr("203.0.113.5:30444");
    let phone_b = addr("192.0.2.20:5000");
    let mut r = relay(t0, None, Some("192.0.2.20:5000"), None);
    r.handle_datagram(t0, A_RTP, first, &packet(0xa, 1, 160, false));
    // A NAT rebinding while the old binding still talks: refused.
    r.handle_datagram(t0 + ms(100), A_RTP, rebound, &packet(0xa, 2, 320, false));
    r.handle_datagram(t0 + ms(120), A_RTP, first, &packet(0xa, 3, 480, false));
    assert_eq!(transmits(&mut r).len(), 2);
    assert_eq!(r.stats(Leg::A).dropped_unlatched, 1);
    // The old binding silent for 500 ms: the new one takes over.
    r.handle_datagram(t0 + ms(620), A_RTP, rebound, &packet(0xa, 4, 640, false));
    assert_eq!(transmits(&mut r).len(), 1);
    assert_eq!(r.destination(Leg::A), Some(rebound));
    let ev = events(&mut r);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, RelayEvent::Latched { leg: Leg::A, .. }))
            .count(),
        2
    );
    r.handle_datagram(t0 + ms(640), B_RTP, phone_b, &packet(0xb, 1, 160, false));
    assert_eq!(transmits(&mut r)[0].to, rebound);
    let s = r.stats(Leg::A);
    assert_eq!((s.received, s.forwarded), (4, 3));
}

#[test]
fn relay_counts_what_it_drops_and_never_forwards_rtcp() {
    let t0 = Instant::now();
    let phone_a = addr("192.0.2.10:4000");
    let phone_b = addr("192.0.2.20:5000");
    // B unknown yet (no answer): nowhere to send A's packets.
    let mut r = relay(t0, Some("192.0.2.10:4000"), None, None);
    r.handle_datagram(t0, A_RTP, phone_a, &packet(0xa, 1, 160, false));
    assert_eq!(r.stats(Leg::A).dropped_no_destination, 1);
    // Not RTP.
    r.handle_datagram(t0, A_RTP, phone_a, &[0x40; 30]);
    r.handle_datagram(t0, A_RTP, phone_a, &[]);
    assert_eq!(r.stats(Leg::A).dropped_invalid, 2);
    // RTCP on its socket and multiplexed on the RTP one (RFC 5761): counted, consumed.
    let sr = [
        0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    r.handle_datagram(t0, A_RTCP, addr("192.0.2.10:4001"), &sr);
    r.handle_datagram(t0, A_RTP, phone_a, &sr);
    assert_eq!(r.stats(Leg::A).rtcp_received, 2);
    assert_eq!(r.rtcp_destination(Leg::A), Some(addr("192.0.2.10:4001")));
    // The answer arrives.
    r.set_remote(Leg::B, Some(phone_b), Some(addr("192.0.2.20:6000")));
    assert_eq!(r.rtcp_destination(Leg::B), Some(addr("192.0.2.20:6000")));
    r.handle_datagram(t0 + ms(20), A_RTP, phone_a, &packet(0xa, 2, 320, false));
    assert_eq!(
        transmits(&mut r).len(),
        1,
        "only the last RTP packet went out"
    );
    // Hold: A's packets dropped and counted, B's still forwarded.
    r.set_forwarding(Leg::A, false);
    r.handle_datagram(t0 + ms(40), A_RTP, phone_a, &packet(0xa, 3, 480, false));
    r.handle_datagram(t0 + ms(40), B_RTP, phone_b, &packet(0xb, 3, 480, false));
    let out = transmits(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, phone_a);
    assert_eq!(r.stats(Leg::A).dropped_on_hold, 1);
    r.set_forwarding(Leg::A, true);
    r.handle_datagram(t0 + ms(60), A_RTP, phone_a, &packet(0xa, 4, 640, false));
    assert_eq!(transmits(&mut r).len(), 1);
    // Unknown sockets are ignored.
    r.handle_datagram(t0, SocketId(99), phone_a, &packet(0xa, 5, 800, false));
    assert!(transmits(&mut r).is_empty());
    let s = r.stats(Leg::A);
    assert_eq!(
        s,
        LegStats {
            received: 6,
            forwarded: 2,
            dropped_invalid: 2,
            dropped_unlatched: 0,
            dropped_no_destination: 1,
            dropped_on_hold: 1,
            dropped_payload_type: 0,
            rtcp_received: 2,
            rtcp_sent: 0,
        }
    );
}

#[test]
fn relay_reports_media_timeout_once_and_resume() {
    let t0 = Instant::now();
    let phone_a = addr("192.0.2.10:4000");
    let mut r = relay(
        t0,
        Some("192.0.2.10:4000"),
        Some("192.0.2.20:5000"),
        Some(ms(2000)),
    );
    // RTCP reports (both legs have an RTCP destination) may come first.
    assert!(r.poll_timeout() <= Some(t0 + ms(2000)));
    r.handle_datagram(t0 + ms(500), A_RTP, phone_a, &packet(0xa, 1, 160, false));
    events(&mut r);
    // B silent since the start; A since 500 ms.
    assert!(r.poll_timeout() <= Some(t0 + ms(2000)));
    r.handle_timeout(t0 + ms(1999));
    assert!(events(&mut r).is_empty());
    r.handle_timeout(t0 + ms(2000));
    assert_eq!(
        events(&mut r),
        vec![RelayEvent::MediaTimeout { leg: Leg::B }]
    );
    assert!(r.poll_timeout() <= Some(t0 + ms(2500)));
    r.handle_timeout(t0 + ms(2600));
    assert_eq!(
        events(&mut r),
        vec![RelayEvent::MediaTimeout { leg: Leg::A }]
    );
    // Both timed out: only the RTCP reports are left to time, and they raise no event.
    for second in 3..9 {
        r.handle_timeout(t0 + Duration::from_secs(second));
    }
    r.handle_timeout(t0 + ms(9000));
    assert!(events(&mut r).is_empty(), "once");
    r.handle_datagram(t0 + ms(9000), A_RTP, phone_a, &packet(0xa, 2, 320, false));
    assert_eq!(
        events(&mut r),
        vec![RelayEvent::MediaResumed { leg: Leg::A }]
    );
    assert!(r.poll_timeout() <= Some(t0 + ms(11_000)));
    // Reports are drained; the media timeout of A comes again 2 s after it resumed.
    let mut at = t0 + ms(9000);
    while at < t0 + ms(11_000) {
        at = r.poll_timeout().unwrap().min(t0 + ms(11_000));
        r.handle_timeout(at);
        if at < t0 + ms(11_000) {
            assert!(events(&mut r).is_empty());
        }
    }
    assert_eq!(
        events(&mut r),
        vec![RelayEvent::MediaTimeout { leg: Leg::A }]
    );
}

#[test]
fn relay_without_rtcp_destinations_times_only_the_media() {
    let t0 = Instant::now();
    let mut r = relay(t0, None, None, Some(ms(2000)));
    assert_eq!(r.poll_timeout(), Some(t0 + ms(2000)));
    r.handle_timeout(t0 + ms(2000));
    assert_eq!(r.poll_timeout(), None);
    assert!(transmits(&mut r).is_empty());
}

#[test]
fn relay_without_media_timeout_never_wakes() {
    let t0 = Instant::now();
    let mut r = relay(t0, None, None, None);
    assert_eq!(r.poll_timeout(), None);
    r.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(events(&mut r).is_empty());
}

#[test]
fn seeds_give_different_streams() {
    let t0 = Instant::now();
    let (a, b) = legs(None, None);
    let one = Relay::new(
        t0,
        a.clone(),
        b.clone(),
        RelayConfig {
            media_timeout: None,
            seed: 1,
            ..RelayConfig::default()
        },
    );
    let two = Relay::new(
        t0,
        a,
        b,
        RelayConfig {
            media_timeout: None,
            seed: 2,
            ..RelayConfig::default()
        },
    );
    assert_ne!(one.ssrc_toward(Leg::A), two.ssrc_toward(Leg::A));
    assert_ne!(one.ssrc_toward(Leg::B), two.ssrc_toward(Leg::B));
}

fn socket_strategy() -> impl Strategy<Value = SocketId> {
    (0u32..6).prop_map(SocketId)
}

fn datagram_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        // Mostly-valid RTP, so the rewriter paths run too.
        (
            any::<u32>(),
            any::<u16>(),
            any::<u32>(),
            any::<bool>(),
            0usize..40
        )
            .prop_map(|(ssrc, seq, ts, m, n)| {
                let h = RtpHeader {
                    marker: m,
                    payload_type: 8,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: ssrc % 3,
                };
                build_rtp(&h, &vec![0u8; n]).unwrap().to_vec()
            }),
        // Mostly-valid RTCP (SR or RR with a block, possibly about one of our SSRCs).
        (
            any::<bool>(),
            any::<[u8; 24]>(),
            any::<[u8; 24]>(),
            0usize..16
        )
            .prop_map(|(sr, info, block, cut)| {
                let mut d = vec![0x81, if sr { 200 } else { 201 }, 0, 0, 0, 0, 0, 0xa];
                if sr {
                    d.extend_from_slice(&info[..20]);
                }
                d.extend_from_slice(&block);
                let words = (d.len() / 4 - 1) as u16;
                d[2..4].copy_from_slice(&words.to_be_bytes());
                // Half the time whole, else a few bytes short.
                d.truncate(d.len() - if cut < 8 { cut } else { 0 });
                d
            }),
    ]
}

proptest! {
    /// Any datagram on any socket from any of a few sources, at any time: no panic, every
    /// RTP datagram accounted for exactly once, and every packet sent is valid RTP in the
    /// relay's own stream.
    #[test]
    fn relay_never_panics_and_accounts_for_everything(
        input in proptest::collection::vec(
            (socket_strategy(), 0u16..4, datagram_strategy(), 0u64..3000, any::<bool>()),
            0..60,
        )
    ) {
        let t0 = Instant::now();
        let mut r = relay(t0, Some("192.0.2.10:4000"), None, Some(ms(1000)));
        let mut at = t0;
        for (socket, port, data, step, hold) in input {
            at += ms(step);
            r.set_forwarding(Leg::B, !hold);
            if let Some(deadline) = r.poll_timeout()
                && deadline <= at
            {
                r.handle_timeout(at);
            }
            r.handle_datagram(at, socket, SocketAddr::from(([192, 0, 2, 50], 7000 + port)), &data);
            while let Some(d) = r.poll_transmit() {
                let toward = if d.socket == A_RTP || d.socket == A_RTCP { Leg::A } else { Leg::B };
                if d.socket == A_RTCP || d.socket == B_RTCP {
                    // The relay's own report, never a forwarded one.
                    let parts = parse_compound(&d.data).unwrap();
                    prop_assert_eq!(report_ssrc(&parts), Some(r.ssrc_toward(toward)));
                    continue;
                }
                let (h, _) = parse_rtp(&d.data).unwrap();
                prop_assert!(d.socket == A_RTP || d.socket == B_RTP);
                prop_assert_eq!(h.ssrc, r.ssrc_toward(toward));
            }
            while r.poll_event().is_some() {}
        }
        for leg in [Leg::A, Leg::B] {
            let s = r.stats(leg);
            prop_assert_eq!(s.received, s.forwarded + total_dropped(&s));
        }
        r.close(at);
        while let Some(d) = r.poll_transmit() {
            let parts = parse_compound(&d.data).unwrap();
            prop_assert!(parts.iter().any(|p| matches!(p, RtcpPacket::Goodbye(_))));
        }
        prop_assert_eq!(r.poll_timeout(), None);
    }
}

// ---- The relay's own RTCP (RFC 3550 §6, §7.3) ----

const PHONE_A: &str = "192.0.2.10:4000";
const PHONE_A_RTCP: &str = "192.0.2.10:4001";
const PHONE_B: &str = "192.0.2.20:5000";
const PHONE_B_RTCP: &str = "192.0.2.20:5001";
/// 2024-01-01T00:00:00Z.
const SINCE_EPOCH: Duration = Duration::from_secs(1_704_067_200);

fn reporting_relay(t0: Instant) -> Relay {
    let (a, b) = legs(Some(PHONE_A), Some(PHONE_B));
    Relay::new(
        t0,
        a,
        b,
        RelayConfig {
            seed: 42,
            cname: String::from("relay@tandem.example"),
            since_unix_epoch: SINCE_EPOCH,
            ..RelayConfig::default()
        },
    )
}

/// An RTCP compound packet the relay sent toward a leg, and what had been forwarded to
/// that leg before it.
#[derive(Debug)]
struct Sent {
    at: Instant,
    to: SocketAddr,
    parts: Vec<RtcpPacket>,
    rtp_before: u32,
}

/// Two phones talking through the relay on a virtual clock: every 20 ms each sends a
/// 160-byte G.711 frame (A's every `drop_every_from_a`-th lost on the way), the relay's
/// timers are run at their deadlines, and everything it sends is sorted.
struct TwoWay {
    r: Relay,
    t0: Instant,
    now: Instant,
    frames: u32,
    drop_every_from_a: Option<u32>,
    rtp_to: [u32; 2],
    rtcp_to: [Vec<Sent>; 2],
}

fn index(leg: Leg) -> usize {
    match leg {
        Leg::A => 0,
        Leg::B => 1,
    }
}

impl TwoWay {
    fn new(drop_every_from_a: Option<u32>) -> Self {
        let t0 = Instant::now();
        Self {
            r: reporting_relay(t0),
            t0,
            now: t0,
            frames: 0,
            drop_every_from_a,
            rtp_to: [0, 0],
            rtcp_to: [Vec::new(), Vec::new()],
        }
    }

    fn drain(&mut self) {
        while let Some(d) = self.r.poll_transmit() {
            match d.socket {
                A_RTP => self.rtp_to[0] += 1,
                B_RTP => self.rtp_to[1] += 1,
                A_RTCP | B_RTCP => {
                    let leg = if d.socket == A_RTCP { Leg::A } else { Leg::B };
                    let parts = parse_compound(&d.data).unwrap();
                    self.rtcp_to[index(leg)].push(Sent {
                        at: self.now,
                        to: d.to,
                        parts,
                        rtp_before: self.rtp_to[index(leg)],
                    });
                }
                other => panic!("sent from {other:?}"),
            }
        }
    }

    /// Runs the relay's timers up to `until`, each at its own deadline.
    fn run_timers(&mut self, until: Instant) {
        while let Some(deadline) = self.r.poll_timeout() {
            if deadline > until {
                break;
            }
            self.now = deadline.max(self.now);
            self.r.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
    }

    /// Talks for `duration` (both ways, one frame each per 20 ms).
    fn talk(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now + ms(20) <= end {
            let at = self.now + ms(20);
            self.run_timers(at);
            self.frames += 1;
            let n = self.frames;
            let (seq, ts) = (n as u16, n * 160);
            let lost = self.drop_every_from_a.is_some_and(|k| n.is_multiple_of(k));
            if !lost {
                self.r
                    .handle_datagram(at, A_RTP, addr(PHONE_A), &packet(0xa, seq, ts, false));
            }
            self.r.handle_datagram(
                at,
                B_RTP,
                addr(PHONE_B),
                &packet(0xb, seq.wrapping_add(5000), ts.wrapping_add(90_000), false),
            );
            self.drain();
        }
        self.run_timers(end);
    }

    /// Delivers an RTCP packet from a leg's phone to the relay's RTCP socket.
    fn rtcp_from(&mut self, leg: Leg, parts: &[RtcpPacket]) {
        let (socket, from) = match leg {
            Leg::A => (A_RTCP, PHONE_A_RTCP),
            Leg::B => (B_RTCP, PHONE_B_RTCP),
        };
        let data = build_compound(parts).unwrap();
        self.r.handle_datagram(self.now, socket, addr(from), &data);
        self.drain();
    }

    fn reports(&self, leg: Leg) -> &[Sent] {
        &self.rtcp_to[index(leg)]
    }

    /// Runs until the next report toward `leg` and returns it.
    fn next_report(&mut self, leg: Leg) -> &Sent {
        let before = self.reports(leg).len();
        for _ in 0..500 {
            self.talk(ms(20));
            if self.reports(leg).len() > before {
                return &self.rtcp_to[index(leg)][before];
            }
        }
        panic!("no report toward {leg:?} within 10 s");
    }
}

fn sender_report(parts: &[RtcpPacket]) -> &SenderReport {
    match parts.first() {
        Some(RtcpPacket::SenderReport(sr)) => sr,
        other => panic!("not an SR first: {other:?}"),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// RFC 3550 §4, §6.4.1: the middle 32 bits of an NTP timestamp.
fn middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

#[test]
fn each_leg_gets_sender_reports_about_its_own_stream_and_its_loss() {
    let mut call = TwoWay::new(Some(10));
    call.talk(Duration::from_secs(30));
    let t0 = call.t0;
    for (leg, phone_rtcp, phone_ssrc) in [
        (Leg::A, PHONE_A_RTCP, 0xa_u32),
        (Leg::B, PHONE_B_RTCP, 0xb_u32),
    ] {
        let ours = call.r.ssrc_toward(leg);
        let reports = call.reports(leg);
        // 30 s at about one report per 5 s (RFC 3550 §6.2 minimum for a small session).
        assert!(
            (5..=12).contains(&reports.len()),
            "{leg:?}: {} reports",
            reports.len()
        );
        assert_eq!(call.r.stats(leg).rtcp_sent, reports.len() as u64);
        // §6.3.1 / §6.2: the first report after the halved minimum, 2.5 s × [0.5, 1.5] /
        // (e − 3/2); then 5 s × [0.5, 1.5] / (e − 3/2) apart.
        let compensation = std::f64::consts::E - 1.5;
        let first = secs(reports[0].at - t0);
        assert!(
            (1.25 / compensation - 1e-3..=3.75 / compensation + 1e-3).contains(&first),
            "{leg:?}: first report at {first} s"
        );
        for pair in reports.windows(2) {
            let gap = secs(pair[1].at - pair[0].at);
            assert!(
                (2.5 / compensation - 1e-3..=7.5 / compensation + 1e-3).contains(&gap),
                "{leg:?}: reports {gap} s apart"
            );
        }
        let mut previous: Option<&SenderReport> = None;
        for report in reports {
            assert_eq!(report.to, addr(phone_rtcp));
            // §6.1: SR then SDES CNAME, from the relay's SSRC toward this leg.
            assert_eq!(report.parts.len(), 2, "{:?}", report.parts);
            let sr = sender_report(&report.parts);
            assert_eq!(sr.ssrc, ours);
            match &report.parts[1] {
                RtcpPacket::SourceDescription(sdes) => {
                    assert_eq!(sdes.chunks.len(), 1);
                    assert_eq!(sdes.chunks[0].source, ours);
                    assert_eq!(sdes.chunks[0].items[0].item_type, 1);
                    assert_eq!(&sdes.chunks[0].items[0].text[..], b"relay@tandem.example");
                }
                other => panic!("not SDES: {other:?}"),
            }
            // §6.4.1: what was forwarded toward this leg, payload octets only.
            assert_eq!(sr.packet_count, report.rtp_before);
            assert_eq!(sr.octet_count, report.rtp_before * 160);
            // The NTP time is the wall clock the config gave.
            let unix = (sr.ntp_time >> 32) - 2_208_988_800;
            let elapsed = (report.at - t0).as_secs();
            assert_eq!(unix, SINCE_EPOCH.as_secs() + elapsed);
            // The RTP timestamp follows the NTP time at 8 kHz.
            if let Some(previous) = previous {
                let ntp_seconds = (sr.ntp_time - previous.ntp_time) as f64 / 4_294_967_296.0;
                let rtp = sr.rtp_time.wrapping_sub(previous.rtp_time);
                assert!(
                    (f64::from(rtp) - ntp_seconds * 8000.0).abs() <= 160.0,
                    "{leg:?}: {rtp} samples in {ntp_seconds} s"
                );
            }
            previous = Some(sr);
            // The report block is about the leg's own stream.
            assert_eq!(sr.reports.len(), 1);
            assert_eq!(sr.reports[0].ssrc, phone_ssrc);
        }
        let last = &sender_report(&reports.last().unwrap().parts).reports[0];
        let reception = call.r.reception(leg);
        match leg {
            // Every 10th packet from A lost: ~10 % is 25.6/256.
            Leg::A => {
                assert!((20..=31).contains(&last.fraction_lost), "{last:?}");
                let expected = u64::from(last.last_sequence_number - 1);
                let lost = last.packets_lost();
                assert!(
                    (lost - (expected / 10) as i64).abs() <= 1,
                    "{lost} of {expected}"
                );
                assert!((0.09..=0.11).contains(
                    &(reception.packets_lost as f64 / reception.packets_expected as f64)
                ));
            }
            Leg::B => {
                assert_eq!((last.fraction_lost, last.packets_lost()), (0, 0));
                assert_eq!(reception.packets_lost, 0);
                assert_eq!(reception.packets_received, 1500 - 1);
            }
        }
    }
    // What was forwarded: B got A's 1350 packets, A got B's 1500.
    assert_eq!(call.rtp_to, [1500, 1350]);
}

#[test]
fn a_phone_sr_is_answered_with_lsr_dlsr_and_its_rr_gives_the_round_trip() {
    let mut call = TwoWay::new(None);
    call.talk(Duration::from_secs(1));
    let ours_a = call.r.ssrc_toward(Leg::A);
    // Phone A's SR: terminated here, never forwarded to B (RFC 3550 §7.3).
    let phone_ntp: u64 = (3_913_056_000_u64 << 32) | 0x8000_0000;
    let sr_at = call.now;
    let rtp_to_b = call.rtp_to[1];
    let rtcp_to_b = call.reports(Leg::B).len();
    call.rtcp_from(
        Leg::A,
        &[
            RtcpPacket::SenderReport(SenderReport {
                ssrc: 0xa,
                ntp_time: phone_ntp,
                rtp_time: 8000,
                packet_count: 50,
                octet_count: 8000,
                reports: vec![],
            }),
            RtcpPacket::SourceDescription(SourceDescription::cname(0xa, b"phone-a")),
        ],
    );
    assert!(call.r.poll_transmit().is_none());
    assert_eq!(call.rtp_to[1], rtp_to_b);
    assert_eq!(call.reports(Leg::B).len(), rtcp_to_b, "nothing went to B");
    assert_eq!(call.r.stats(Leg::A).rtcp_received, 1);
    // The relay's next report toward A carries LSR/DLSR for it (§6.4.1).
    let report = call.next_report(Leg::A);
    let (report_at, sr) = (report.at, sender_report(&report.parts).clone());
    let block = sr.reports[0];
    assert_eq!(block.ssrc, 0xa);
    assert_eq!(block.last_sender_report, middle(phone_ntp));
    let dlsr = secs(report_at - sr_at);
    assert!(
        (f64::from(block.delay) / 65_536.0 - dlsr).abs() < 1e-3,
        "DLSR {} for {dlsr} s",
        block.delay
    );
    // The phone answers 300 ms later, having held our SR 200 ms: RTT 100 ms.
    assert_eq!(call.r.remote_view(Leg::A), None);
    call.run_timers(report_at + ms(300));
    call.rtcp_from(
        Leg::A,
        &[RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: 0xa,
            reports: vec![ReportBlock {
                ssrc: ours_a,
                fraction_lost: 13,
                total_lost: 4,
                last_sequence_number: 1200,
                jitter: 37,
                last_sender_report: middle(sr.ntp_time),
                delay: 13_107, // 200 ms in 1/65536 s
            }],
        })],
    );
    let view = call.r.remote_view(Leg::A).unwrap();
    assert_eq!(
        (view.fraction_lost, view.packets_lost, view.jitter),
        (13, 4, 37)
    );
    let rtt = view.round_trip.unwrap();
    assert!(rtt > ms(99) && rtt < ms(101), "round trip {rtt:?}");
    assert_eq!(call.r.remote_view(Leg::B), None, "B's view is B's own");
}

#[test]
fn close_says_bye_on_both_legs_and_stops() {
    let mut call = TwoWay::new(None);
    call.talk(Duration::from_secs(2));
    let at = call.now;
    let sent_before = [call.reports(Leg::A).len(), call.reports(Leg::B).len()];
    call.r.close(at);
    call.drain();
    for (leg, phone_rtcp) in [(Leg::A, PHONE_A_RTCP), (Leg::B, PHONE_B_RTCP)] {
        let reports = call.reports(leg);
        assert_eq!(reports.len(), sent_before[index(leg)] + 1);
        let bye = reports.last().unwrap();
        assert_eq!(bye.to, addr(phone_rtcp));
        let ours = call.r.ssrc_toward(leg);
        // §6.6: SR, SDES, then BYE for our SSRC.
        assert_eq!(sender_report(&bye.parts).ssrc, ours);
        match bye.parts.last() {
            Some(RtcpPacket::Goodbye(goodbye)) => assert_eq!(goodbye.sources, vec![ours]),
            other => panic!("no BYE last: {other:?}"),
        }
        assert_eq!(call.r.stats(leg).rtcp_sent, reports.len() as u64);
    }
    // Closed: nothing forwarded, nothing timed, a second close sends nothing.
    assert_eq!(call.r.poll_timeout(), None);
    call.r.handle_datagram(
        at + ms(20),
        A_RTP,
        addr(PHONE_A),
        &packet(0xa, 999, 1, false),
    );
    call.r.close(at + ms(40));
    assert!(call.r.poll_transmit().is_none());
}

#[test]
fn rtcp_mux_reports_leave_from_the_rtp_socket_to_the_latched_source() {
    let t0 = Instant::now();
    let nat = addr("203.0.113.5:30000");
    let (mut a, b) = legs(Some("10.0.0.1:4000"), None);
    // RFC 5761: RTCP on the RTP port.
    a.rtcp = A_RTP;
    a.remote_rtcp = Some(addr("10.0.0.1:4000"));
    let mut r = Relay::new(t0, a, b, RelayConfig::default());
    // The phone's RTCP arrives from its NAT binding and latches the RTCP destination.
    let rr = build_compound(&[RtcpPacket::ReceiverReport(ReceiverReport {
        ssrc: 0xa,
        reports: vec![],
    })])
    .unwrap();
    r.handle_datagram(t0, A_RTP, nat, &rr);
    assert_eq!(r.rtcp_destination(Leg::A), Some(nat));
    assert_eq!(r.stats(Leg::A).rtcp_received, 1);
    // B has no address at all: only A is timed, and only A gets a report.
    // The first report within 2.5 s × 1.5 / (e − 3/2), reconsideration included (A.7).
    let mut out = Vec::new();
    while out.is_empty() {
        let deadline = r.poll_timeout().unwrap();
        assert!(deadline <= t0 + ms(3080), "{:?}", deadline - t0);
        r.handle_timeout(deadline);
        out = transmits(&mut r);
    }
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].socket, out[0].to), (A_RTP, nat));
    let parts = parse_compound(&out[0].data).unwrap();
    // Nothing sent toward A yet: a receiver report (§6.4.2), no block (nothing heard).
    assert_eq!(
        parts[0],
        RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: r.ssrc_toward(Leg::A),
            reports: vec![],
        })
    );
    assert_eq!(r.stats(Leg::B).rtcp_sent, 0);
}

//! What a media-anchored bridge asks of the relay beyond forwarding: payload types mapped
//! (and G.711 laws translated) between two legs that negotiated apart, the stream toward
//! each leg carried on from the call's own flow and handed back to it, and a media timeout
//! per leg. On a virtual clock (`t0 + Duration`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_session::{
    Datagram, Leg, MediaMachine, PayloadMap, Relay, RelayConfig, RelayEvent, RelayLeg, Rewriter,
    RtpHeader, SocketId, StreamPosition, build_rtp, parse_rtp,
};

const A_RTP: SocketId = SocketId(0);
const A_RTCP: SocketId = SocketId(1);
const B_RTP: SocketId = SocketId(2);
const B_RTCP: SocketId = SocketId(3);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn rtp(payload_type: u8, sequence: u16, timestamp: u32, payload: &[u8]) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type,
        sequence,
        timestamp,
        ssrc: 0x5151,
    };
    build_rtp(&header, payload).unwrap().to_vec()
}

fn relay(t0: Instant) -> Relay {
    let leg = |rtp, rtcp, remote: &str| RelayLeg {
        rtp,
        rtcp,
        remote: Some(addr(remote)),
        remote_rtcp: None,
        symmetric: true,
        clock_rate: 8000,
    };
    Relay::new(
        t0,
        leg(A_RTP, A_RTCP, "192.0.2.10:4000"),
        leg(B_RTP, B_RTCP, "192.0.2.20:5000"),
        RelayConfig {
            seed: 7,
            ..RelayConfig::default()
        },
    )
}

/// The RTP datagrams the relay sends (its RTCP reports left out).
fn rtp_out(relay: &mut Relay) -> Vec<Datagram> {
    std::iter::from_fn(|| relay.poll_transmit())
        .filter(|d| d.socket == A_RTP || d.socket == B_RTP)
        .collect()
}

fn events(relay: &mut Relay) -> Vec<RelayEvent> {
    std::iter::from_fn(|| relay.poll_event()).collect()
}

#[test]
fn payload_types_are_mapped_per_direction_and_the_unlisted_dropped() {
    let t0 = Instant::now();
    let phone_a = addr("192.0.2.10:4000");
    let phone_b = addr("192.0.2.20:5000");
    let mut r = relay(t0);
    // Leg A negotiated PCMU/0 and telephone-event/101; leg B PCMU/0 and telephone-event/96.
    r.set_payload_map(Leg::B, Some(PayloadMap::new().map(0, 0).map(101, 96)));
    r.set_payload_map(Leg::A, Some(PayloadMap::new().map(0, 0).map(96, 101)));
    assert_eq!(PayloadMap::new().map(101, 96).target(101), Some(96));
    assert_eq!(PayloadMap::new().map(101, 96).target(13), None);

    r.handle_datagram(t0, A_RTP, phone_a, &rtp(0, 1, 160, &[0xff; 160]));
    // An RFC 4733 event (digit 5, volume 10, duration 160).
    r.handle_datagram(
        t0 + ms(20),
        A_RTP,
        phone_a,
        &rtp(101, 2, 320, &[5, 10, 0, 160]),
    );
    // Comfort noise (RFC 3389), which leg B did not negotiate.
    r.handle_datagram(t0 + ms(40), A_RTP, phone_a, &rtp(13, 3, 480, &[40]));
    let out = rtp_out(&mut r);
    assert_eq!(out.len(), 2, "the CN packet is dropped");
    let (audio, _) = parse_rtp(&out[0].data).unwrap();
    let (event, range) = parse_rtp(&out[1].data).unwrap();
    assert_eq!(out[1].to, phone_b);
    assert_eq!(audio.payload_type, 0);
    assert_eq!(event.payload_type, 96);
    assert_eq!(
        &out[1].data[range],
        &[5, 10, 0, 160],
        "the event is untouched"
    );
    assert_eq!(event.sequence, audio.sequence.wrapping_add(1));
    assert_eq!(event.timestamp, audio.timestamp.wrapping_add(160));
    assert_eq!(r.stats(Leg::A).dropped_payload_type, 1);
    assert_eq!(r.stats(Leg::A).forwarded, 2);

    // The other way, 96 becomes 101.
    r.handle_datagram(t0, B_RTP, phone_b, &rtp(96, 9, 900, &[1, 0x8a, 0, 80]));
    let out = rtp_out(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, phone_a);
    assert_eq!(parse_rtp(&out[0].data).unwrap().0.payload_type, 101);

    // No map: everything passes as it came.
    r.set_payload_map(Leg::B, None);
    r.handle_datagram(t0 + ms(60), A_RTP, phone_a, &rtp(13, 4, 640, &[40]));
    let out = rtp_out(&mut r);
    assert_eq!(parse_rtp(&out[0].data).unwrap().0.payload_type, 13);
}

#[test]
fn a_translation_table_rewrites_the_payload_octets_and_not_the_padding() {
    let t0 = Instant::now();
    let phone_a = addr("192.0.2.10:4000");
    let mut r = relay(t0);
    let mut table = [0u8; 256];
    for (i, t) in table.iter_mut().enumerate() {
        *t = (i as u8) ^ 0x55;
    }
    r.set_payload_map(
        Leg::B,
        Some(PayloadMap::new().translate(0, 8, Arc::new(table))),
    );
    // Three payload octets and two of padding (RFC 3550 §5.1: P bit, the last octet
    // counts them).
    let mut packet = rtp(0, 1, 160, &[0x00, 0xff, 0x10, 0x00, 0x02]);
    packet[0] |= 0x20;
    r.handle_datagram(t0, A_RTP, phone_a, &packet);
    let out = rtp_out(&mut r);
    assert_eq!(out.len(), 1);
    let (h, range) = parse_rtp(&out[0].data).unwrap();
    assert_eq!(h.payload_type, 8);
    assert_eq!(&out[0].data[range.clone()], &[0x55, 0xaa, 0x45]);
    assert_eq!(&out[0].data[range.end..], &[0x00, 0x02], "padding kept");
}

#[test]
fn the_stream_toward_a_leg_carries_on_from_the_flow_and_back() {
    let t0 = Instant::now();
    let phone_a = addr("192.0.2.10:4000");
    let mut r = relay(t0);
    // The call's flow sent up to sequence 499; its clock read 80 000 at t0.
    let from_flow = StreamPosition {
        ssrc: 0xfeed,
        next_sequence: 500,
        timestamp: 80_000,
        at: t0,
    };
    r.continue_stream(Leg::B, from_flow);
    assert_eq!(r.ssrc_toward(Leg::B), 0xfeed);
    // Nothing forwarded yet: where it stands follows the clock.
    let p = r.position(Leg::B, t0 + ms(10));
    assert_eq!(
        (p.ssrc, p.next_sequence, p.timestamp),
        (0xfeed, 500, 80_080)
    );

    // The first packet arrives 100 ms later: same SSRC, the next sequence number, the
    // timestamp 100 ms on, marked.
    r.handle_datagram(t0 + ms(100), A_RTP, phone_a, &rtp(0, 7000, 1, &[0xff; 160]));
    r.handle_datagram(
        t0 + ms(120),
        A_RTP,
        phone_a,
        &rtp(0, 7001, 161, &[0xff; 160]),
    );
    let out = rtp_out(&mut r);
    let first = parse_rtp(&out[0].data).unwrap().0;
    let second = parse_rtp(&out[1].data).unwrap().0;
    assert_eq!(
        (first.ssrc, first.sequence, first.timestamp, first.marker),
        (0xfeed, 500, 80_800, true)
    );
    assert_eq!(
        (second.sequence, second.timestamp, second.marker),
        (501, 80_960, false)
    );

    // Handed back 5 ms after the last packet: the next sequence number, and a timestamp
    // at least one frame on (nothing overlaps the last packet).
    let back = r.position(Leg::B, t0 + ms(125));
    assert_eq!(back.ssrc, 0xfeed);
    assert_eq!(back.next_sequence, 502);
    assert_eq!(back.timestamp, 80_960 + 160);
    // A second later, the clock decides.
    let later = r.position(Leg::B, t0 + ms(1120));
    assert_eq!(later.timestamp, 80_960 + 8000);

    // The same through a bare Rewriter.
    let mut rw = Rewriter::continuing(from_flow, 8000);
    assert_eq!(rw.ssrc(), 0xfeed);
    assert_eq!(rw.timestamp_at(t0 + ms(20)), Some(80_160));
    let mut p = rtp(0, 1, 1, &[0; 160]);
    let h = rw.rewrite(t0 + ms(40), &mut p).unwrap();
    assert_eq!((h.sequence, h.timestamp, h.marker), (500, 80_320, true));
    // A plain Rewriter knows no clock before its first packet.
    assert_eq!(Rewriter::new(1, 2, 3, 8000).timestamp_at(t0), None);
    assert_eq!(
        Rewriter::new(1, 2, 3, 8000).next_position(t0 + ms(500)),
        StreamPosition {
            ssrc: 1,
            next_sequence: 2,
            timestamp: 3,
            at: t0 + ms(500)
        }
    );
}

#[test]
fn each_leg_has_its_own_media_timeout() {
    let t0 = Instant::now();
    let phone_a = addr("192.0.2.10:4000");
    let mut r = relay(t0);
    assert_eq!(r.media_timeout(Leg::A), None, "the config's default");
    r.set_media_timeout(Leg::A, Some(ms(1000)), t0);
    // Leg B is on hold: its peer sends nothing, and no timeout is due for it.
    r.set_media_timeout(Leg::B, None, t0);
    assert_eq!(r.media_timeout(Leg::A), Some(ms(1000)));
    assert!(r.poll_timeout() <= Some(t0 + ms(1000)));
    r.handle_datagram(t0 + ms(500), A_RTP, phone_a, &rtp(0, 1, 160, &[0xff; 160]));
    let mut now = t0;
    while let Some(at) = r.poll_timeout().filter(|at| *at <= t0 + ms(10_000)) {
        now = at;
        r.handle_timeout(now);
    }
    let evs = events(&mut r);
    assert!(
        evs.contains(&RelayEvent::MediaTimeout { leg: Leg::A }),
        "{evs:?}"
    );
    assert!(
        !evs.contains(&RelayEvent::MediaTimeout { leg: Leg::B }),
        "{evs:?}"
    );
    // A new negotiation: the silence counts again from then.
    r.set_media_timeout(Leg::B, Some(ms(2000)), now);
    assert!(r.poll_timeout().unwrap() <= now + ms(2000));
    r.handle_timeout(now + ms(1999));
    assert!(
        !events(&mut r).contains(&RelayEvent::MediaTimeout { leg: Leg::B }),
        "not before 2 s"
    );
    r.handle_timeout(now + ms(2000));
    assert!(
        events(&mut r).contains(&RelayEvent::MediaTimeout { leg: Leg::B }),
        "leg B timed out 2 s after its new negotiation"
    );
    // RTP from A again: resumed.
    r.handle_datagram(
        now + ms(2100),
        A_RTP,
        phone_a,
        &rtp(0, 2, 320, &[0xff; 160]),
    );
    assert!(events(&mut r).contains(&RelayEvent::MediaResumed { leg: Leg::A }));
}

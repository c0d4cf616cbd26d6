//! An AudioFlow handing its stream to a relay and taking it back (a media-anchored
//! bridge): silent and timerless while suspended, one continuous stream across the hand-
//! overs; and the G.711 µ-law ↔ A-law table a relay between the two laws uses. On a
//! virtual clock (`t0 + Duration`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use media::flow::{AudioFlow, FlowConfig, FlowEvent, FlowIdentity};
use media::{G711, ToneSpec, tone_level_dbm0};
use rtp_session::{
    Datagram, MediaMachine, RtpHeader, SocketId, StreamPosition, build_rtp, parse_rtp,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const RTP: SocketId = SocketId(0);
const RTCP: SocketId = SocketId(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn peer() -> SocketAddr {
    "192.0.2.7:4000".parse().unwrap()
}

fn flow(t0: Instant) -> AudioFlow {
    let mut config = FlowConfig::pcmu(RTP, RTCP, Some(peer()));
    config.media_timeout = Some(ms(1000));
    AudioFlow::new(
        t0,
        config,
        FlowIdentity {
            cname: "join@test".into(),
            seed: 9,
            since_unix_epoch: Duration::from_secs(1_800_000_000),
        },
    )
}

/// Runs the flow's timers up to `until`; the RTP headers it sent.
fn run(flow: &mut AudioFlow, until: Instant) -> Vec<(RtpHeader, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(at) = flow.poll_timeout().filter(|at| *at <= until) {
        flow.handle_timeout(at);
        out.extend(drain(flow));
    }
    out
}

fn drain(flow: &mut AudioFlow) -> Vec<(RtpHeader, Vec<u8>)> {
    std::iter::from_fn(|| flow.poll_transmit())
        .filter(|d: &Datagram| d.socket == RTP)
        .map(|d| {
            let (h, range) = parse_rtp(&d.data).unwrap();
            (h, d.data[range].to_vec())
        })
        .collect()
}

fn events(flow: &mut AudioFlow) -> Vec<FlowEvent> {
    std::iter::from_fn(|| flow.poll_event()).collect()
}

fn packet(sequence: u16) -> Vec<u8> {
    let header = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence,
        timestamp: u32::from(sequence) * 160,
        ssrc: 0xabc,
    };
    build_rtp(&header, &[0xff; 160]).unwrap().to_vec()
}

#[test]
fn a_suspended_flow_is_silent_and_asks_for_no_timer() {
    let t0 = Instant::now();
    let mut f = flow(t0);
    f.play_tone(ToneSpec::single(1000.0, -10.0, None));
    let before = run(&mut f, t0 + ms(100));
    assert_eq!(before.len(), 6, "a packet every 20 ms from t0");
    let last = before.last().unwrap().0;

    let position = f.suspend(t0 + ms(105));
    assert!(f.is_suspended());
    assert!(f.is_playing(), "the tone pauses");
    assert_eq!(position.ssrc, last.ssrc);
    assert_eq!(position.next_sequence, last.sequence.wrapping_add(1));
    assert_eq!(position.timestamp, last.timestamp.wrapping_add(160));
    assert_eq!(position.at, t0 + ms(120), "the next packet time");
    assert_eq!(f.poll_timeout(), None);
    // RTP to its (former) sockets is not read; no media timeout, however long.
    f.handle_datagram(t0 + ms(200), RTP, peer(), &packet(1));
    f.handle_timeout(t0 + ms(10_000));
    assert!(drain(&mut f).is_empty());
    assert!(events(&mut f).is_empty());
    assert_eq!(f.stats().received.packets_received, 0);
    // A new negotiation meanwhile does not restart the packet clock.
    let mut config = f.config().clone();
    config.ptime = ms(30);
    f.reconfigure(t0 + ms(300), config);
    assert_eq!(f.poll_timeout(), None);
    // Nor does a second suspend move the position.
    assert_eq!(
        f.suspend(t0 + ms(400)).next_sequence,
        position.next_sequence
    );
    // Resumed, the tone goes on where it paused.
    f.resume(t0 + ms(500), None);
    let after = run(&mut f, t0 + ms(600));
    let mut decoded = Vec::new();
    for (_, payload) in &after {
        G711::Pcmu.decode(payload, &mut decoded);
    }
    assert!((tone_level_dbm0(&decoded, 1000.0) - -10.0).abs() < 1.0);
}

#[test]
fn resumed_from_the_relay_the_stream_goes_on_where_the_relay_left_it() {
    let t0 = Instant::now();
    let mut f = flow(t0);
    run(&mut f, t0 + ms(40));
    let mine = f.suspend(t0 + ms(50));
    // The relay sent 100 packets with the same SSRC; its clock read 40 000 on at 2.05 s.
    let relay = StreamPosition {
        ssrc: mine.ssrc,
        next_sequence: mine.next_sequence.wrapping_add(100),
        timestamp: mine.timestamp.wrapping_add(16_000),
        at: t0 + ms(2050),
    };
    f.resume(t0 + ms(2060), Some(relay));
    assert!(!f.is_suspended());
    let sent = run(&mut f, t0 + ms(2100));
    let first = sent.first().unwrap().0;
    assert_eq!(first.ssrc, mine.ssrc);
    assert_eq!(first.sequence, relay.next_sequence);
    assert_eq!(
        first.timestamp,
        relay.timestamp.wrapping_add(80),
        "10 ms on"
    );
    assert_eq!(sent[1].0.sequence, relay.next_sequence.wrapping_add(1));
    assert_eq!(sent[1].0.timestamp, first.timestamp.wrapping_add(160));
    assert!(
        sent.iter().all(|(_, payload)| payload == &[0xff; 160]),
        "silence"
    );
    // Receiving again is reported, and the media timeout counts from the resume.
    f.handle_datagram(t0 + ms(2100), RTP, peer(), &packet(5));
    assert!(matches!(
        events(&mut f).as_slice(),
        [FlowEvent::Receiving { .. }]
    ));
    run(&mut f, t0 + ms(3200));
    assert!(events(&mut f).contains(&FlowEvent::Timeout { after: ms(1000) }));

    // Another SSRC from the relay: the flow takes it on.
    f.suspend(t0 + ms(3300));
    let other = StreamPosition {
        ssrc: 0x0bad_cafe,
        next_sequence: 7,
        timestamp: 70,
        at: t0 + ms(3300),
    };
    f.resume(t0 + ms(3300), Some(other));
    let sent = run(&mut f, t0 + ms(3300));
    assert_eq!(
        (sent[0].0.ssrc, sent[0].0.sequence, sent[0].0.timestamp),
        (0x0bad_cafe, 7, 70)
    );
}

#[test]
fn resumed_alone_the_timestamp_has_moved_on_by_the_time_suspended() {
    let t0 = Instant::now();
    let mut f = flow(t0);
    let before = run(&mut f, t0 + ms(20));
    let last = before.last().unwrap().0;
    f.suspend(t0 + ms(30));
    // Resuming a flow that is not suspended does nothing.
    let mut g = flow(t0);
    g.resume(t0, None);
    assert!(!g.is_suspended());

    f.resume(t0 + ms(1030), None);
    let after = run(&mut f, t0 + ms(1030));
    let first = after.first().unwrap().0;
    assert_eq!(first.ssrc, last.ssrc);
    assert_eq!(first.sequence, last.sequence.wrapping_add(1));
    // The next packet was due at 40 ms with last + 160; a second later it carries that
    // plus the 8000 samples suspended (t = 1030 - 30).
    assert_eq!(
        first.timestamp,
        last.timestamp.wrapping_add(160).wrapping_add(8000)
    );
}

#[test]
fn the_g711_translation_table_keeps_the_signal() {
    let u_to_a = G711::Pcmu.translation_to(G711::Pcma);
    let a_to_u = G711::Pcma.translation_to(G711::Pcmu);
    assert_eq!(
        u_to_a[usize::from(G711::Pcmu.silence())],
        G711::Pcma.silence()
    );
    // A 1 kHz tone at -10 dBm0, encoded in µ-law, translated, decoded as A-law.
    let mut tone = media::ToneGenerator::new(ToneSpec::single(1000.0, -10.0, None));
    let mut samples = vec![0i16; 1600];
    tone.fill(&mut samples);
    let mut ulaw = Vec::new();
    G711::Pcmu.encode(&samples, &mut ulaw);
    let alaw: Vec<u8> = ulaw.iter().map(|&c| u_to_a[usize::from(c)]).collect();
    let mut decoded = Vec::new();
    G711::Pcma.decode(&alaw, &mut decoded);
    let level = tone_level_dbm0(&decoded, 1000.0);
    assert!((level - -10.0).abs() < 0.5, "{level} dBm0");
    // Each translated sample stays within a quantisation step of the µ-law one.
    for (&u, &a) in ulaw.iter().zip(&alaw) {
        let (x, y) = (
            i32::from(G711::Pcmu.decode_sample(u)),
            i32::from(G711::Pcma.decode_sample(a)),
        );
        assert!((x - y).abs() <= x.abs() / 8 + 64, "{x} vs {y}");
    }
    // And back: A-law → µ-law → A-law keeps every code within one step.
    for code in 0u8..=255 {
        let back = u_to_a[usize::from(a_to_u[usize::from(code)])];
        let (x, y) = (
            i32::from(G711::Pcma.decode_sample(code)),
            i32::from(G711::Pcma.decode_sample(back)),
        );
        assert!((x - y).abs() <= x.abs() / 8 + 16, "{code:#x}: {x} vs {y}");
    }
}

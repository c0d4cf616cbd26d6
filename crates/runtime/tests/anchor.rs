//! The media plane of a media-anchored bridge on real loopback sockets: two calls' streams
//! set up as the engine's instructions would (`Open`, `Start`), then `Join`ed; UDP sockets
//! play the two phones. RTP crosses with each leg's payload types and one continuous
//! stream per phone, DTMF (RFC 4733) passes with its payload type mapped, PCMU meets PCMA,
//! a silent leg times out, `Unjoin` and `Close` give the calls their own flows back.
//!
//! Media ports 23000–23099 (each test its own slice), so these never meet another test's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_session::{RtpHeader, build_rtp, looks_like_rtcp, parse_rtp};
use runtime::calls::{
    ApplicationEndpointSettings, CallHandle, CallKind, ConversationHandle, ConversationSettings,
    Engine, EngineConfig, MediaInstruction, PortSource, StreamSettings,
};
use runtime::media::flow::FlowEvent;
use runtime::media::{G711, ToneSpec, tone_level_dbm0};
use runtime::media_plane::{BoundPorts, FlowError, FlowEvents, MediaPlane};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const PATTERN: u8 = 0x3c;

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The plane, its port source, its reports, and an engine to hand out call handles.
struct Rig {
    plane: MediaPlane,
    ports: BoundPorts,
    events: FlowEvents,
    engine: Engine,
    conversation: ConversationHandle,
}

impl Rig {
    fn new(first_port: u16) -> Rig {
        let (plane, ports, events) = MediaPlane::new(
            "127.0.0.1".parse().unwrap(),
            (first_port, first_port + 19),
            7,
        )
        .unwrap();
        let mut engine = Engine::new(EngineConfig::default());
        let endpoint = engine
            .add_application_endpoint(ApplicationEndpointSettings::new("sip:anchor@127.0.0.1"))
            .unwrap();
        let conversation = engine
            .new_conversation(endpoint, ConversationSettings::default())
            .unwrap();
        Rig {
            plane,
            ports,
            events,
            engine,
            conversation,
        }
    }

    /// A new AV call with its port opened, as the engine does before its SDP goes out.
    fn call(&mut self) -> (CallHandle, u16) {
        let call = self
            .engine
            .new_call(self.conversation, CallKind::AudioVideo)
            .unwrap();
        let port = self.ports.reserve().unwrap();
        self.instruct(call, MediaInstruction::Open { port });
        (call, port)
    }

    fn instruct(&mut self, call: CallHandle, instruction: MediaInstruction) {
        self.plane
            .instruct(&mut self.engine, now(), call, instruction);
    }

    fn play_tone(&mut self, call: CallHandle) -> Result<(), FlowError> {
        self.plane.command(
            call,
            true,
            true,
            Box::new(|flow, _| flow.play_tone(ToneSpec::single(1000.0, -10.0, None))),
        )
    }

    /// The plane's reports until `done` holds (or 3 s pass).
    async fn wait_event(
        &mut self,
        mut done: impl FnMut(CallHandle, &FlowEvent) -> bool,
    ) -> Vec<(CallHandle, FlowEvent)> {
        let mut seen = Vec::new();
        let found = timeout(Duration::from_secs(3), async {
            while let Some((call, event)) = self.events.recv().await {
                let stop = done(call, &event);
                seen.push((call, event));
                if stop {
                    return;
                }
            }
        })
        .await;
        assert!(found.is_ok(), "not reported; seen: {seen:?}");
        seen
    }
}

/// A negotiated stream toward `phone`.
fn settings(
    port: u16,
    phone: SocketAddr,
    codec: &str,
    payload_type: u8,
    event: Option<u8>,
) -> StreamSettings {
    StreamSettings {
        local_port: port,
        remote: Some(phone),
        codec: codec.into(),
        payload_type,
        clock_rate: 8000,
        ptime: ms(20),
        telephone_event: event,
        send: true,
        receive: true,
        echo: false,
        media_timeout: None,
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Phone {
    socket: UdpSocket,
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
}

#[derive(Debug, Clone)]
struct Packet {
    header: RtpHeader,
    payload: Vec<u8>,
    from: SocketAddr,
}

impl Phone {
    async fn new(ssrc: u32) -> Phone {
        Phone {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            ssrc,
            sequence: 1000,
            timestamp: 50_000,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// One 20 ms packet of `payload_type`.
    async fn send(&mut self, to: u16, payload_type: u8, payload: &[u8]) {
        let header = RtpHeader {
            marker: false,
            payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(160);
        let packet = build_rtp(&header, payload).unwrap();
        self.socket.send_to(&packet, local(to)).await.unwrap();
    }

    /// An RFC 4733 event packet (the timestamp of the event's start; the sequence goes on).
    async fn send_event(&mut self, to: u16, payload_type: u8, start: u32, payload: [u8; 4]) {
        let header = RtpHeader {
            marker: payload[1] & 0x80 == 0 && payload[3] == 160,
            payload_type,
            sequence: self.sequence,
            timestamp: start,
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        let packet = build_rtp(&header, &payload).unwrap();
        self.socket.send_to(&packet, local(to)).await.unwrap();
    }

    /// The next RTP packet (RTCP skipped), if one comes within `wait`.
    async fn next(&self, wait: Duration) -> Option<Packet> {
        let mut buf = vec![0; 2048];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (n, from) = tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .unwrap();
            let data = &buf[..n];
            if looks_like_rtcp(data) {
                continue;
            }
            let Ok((header, range)) = parse_rtp(data) else {
                continue;
            };
            return Some(Packet {
                header,
                payload: data[range].to_vec(),
                from,
            });
        }
    }

    /// Packets for `wait`.
    async fn collect(&self, wait: Duration) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.next(left).await {
                Some(p) => out.push(p),
                None => return out,
            }
        }
    }

    /// The first packet `pick` accepts, within `wait`.
    async fn wait_for(&self, wait: Duration, mut pick: impl FnMut(&Packet) -> bool) -> Packet {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(p) = self.next(left).await else {
                panic!("no such packet within {wait:?}");
            };
            if pick(&p) {
                return p;
            }
        }
    }
}

/// Two started calls with a phone each: a (PCMU/0, telephone-event/101) and b (as given).
async fn two_calls(
    rig: &mut Rig,
    b_codec: &str,
    b_payload_type: u8,
    b_event: Option<u8>,
) -> ((CallHandle, u16, Phone), (CallHandle, u16, Phone)) {
    let (a, port_a) = rig.call();
    let (b, port_b) = rig.call();
    let phone_a = Phone::new(0xaaaa).await;
    let phone_b = Phone::new(0xbbbb).await;
    rig.instruct(
        a,
        MediaInstruction::Start(settings(port_a, phone_a.addr(), "PCMU", 0, Some(101))),
    );
    rig.instruct(
        b,
        MediaInstruction::Start(settings(
            port_b,
            phone_b.addr(),
            b_codec,
            b_payload_type,
            b_event,
        )),
    );
    ((a, port_a, phone_a), (b, port_b, phone_b))
}

fn is_pattern(p: &Packet) -> bool {
    p.payload.iter().all(|&x| x == PATTERN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_calls_relay_rtp_and_dtmf_with_each_legs_payload_types_in_one_stream() {
    let mut rig = Rig::new(23000);
    // Leg b negotiated PCMU on a dynamic payload type, and telephone-event on 96.
    let ((a, port_a, mut phone_a), (b, port_b, mut phone_b)) =
        two_calls(&mut rig, "PCMU", 112, Some(96)).await;

    // Before the join, each phone hears its call's own flow (silence, its payload type).
    let before_a = phone_a.wait_for(ms(2000), |_| true).await;
    let before_b = phone_b.wait_for(ms(2000), |_| true).await;
    assert_eq!(
        (before_a.from, before_a.header.payload_type),
        (local(port_a), 0)
    );
    assert_eq!(
        (before_b.from, before_b.header.payload_type),
        (local(port_b), 112)
    );

    rig.instruct(a, MediaInstruction::Join { peer: b });
    tokio::time::sleep(ms(100)).await;
    // The flows are suspended: within a few in-flight packets, the phones hear nothing.
    phone_a.collect(ms(60)).await;
    phone_b.collect(ms(60)).await;
    assert!(phone_b.collect(ms(200)).await.is_empty(), "flows silent");

    // A speaks: B hears it from b's port, on its own payload type, in b's stream.
    for _ in 0..10 {
        phone_a.send(port_a, 0, &[PATTERN; 160]).await;
        tokio::time::sleep(ms(20)).await;
    }
    let heard: Vec<Packet> = phone_b
        .collect(ms(300))
        .await
        .into_iter()
        .filter(is_pattern)
        .collect();
    assert_eq!(heard.len(), 10, "every packet relayed");
    for p in &heard {
        assert_eq!(p.from, local(port_b), "from the port in b's SDP");
        assert_eq!(p.header.payload_type, 112, "b's payload type");
        assert_eq!(
            p.header.ssrc, before_b.header.ssrc,
            "the stream b's flow began"
        );
    }
    for pair in heard.windows(2) {
        assert_eq!(
            pair[1].header.sequence,
            pair[0].header.sequence.wrapping_add(1)
        );
        assert_eq!(
            pair[1].header.timestamp,
            pair[0].header.timestamp.wrapping_add(160)
        );
    }
    assert!(heard[0].header.marker, "a new talkspurt");
    assert!(
        heard[0]
            .header
            .sequence
            .wrapping_sub(before_b.header.sequence)
            < 200,
        "the sequence goes on from the flow's ({} then {})",
        before_b.header.sequence,
        heard[0].header.sequence
    );

    // B speaks back on 112: A hears it on 0.
    for _ in 0..5 {
        phone_b.send(port_b, 112, &[PATTERN; 160]).await;
        tokio::time::sleep(ms(20)).await;
    }
    let back: Vec<Packet> = phone_a
        .collect(ms(300))
        .await
        .into_iter()
        .filter(is_pattern)
        .collect();
    assert_eq!(back.len(), 5);
    assert!(
        back.iter()
            .all(|p| p.header.payload_type == 0 && p.from == local(port_a))
    );
    assert!(back.iter().all(|p| p.header.ssrc == before_a.header.ssrc));

    // DTMF from A (telephone-event 101): B gets it on 96, payload untouched.
    let start = phone_a.timestamp;
    let digit = [[5, 10, 0, 160], [5, 10, 1, 64], [5, 0x8a, 1, 224]];
    for payload in digit {
        phone_a.send_event(port_a, 101, start, payload).await;
        tokio::time::sleep(ms(20)).await;
    }
    let events: Vec<Packet> = phone_b
        .collect(ms(300))
        .await
        .into_iter()
        .filter(|p| p.header.payload_type != 112)
        .collect();
    assert_eq!(events.len(), 3, "{events:?}");
    for (p, sent) in events.iter().zip(digit) {
        assert_eq!(p.header.payload_type, 96);
        assert_eq!(p.payload, sent);
        assert_eq!(p.header.timestamp, events[0].header.timestamp, "one event");
    }
    // Comfort noise (RFC 3389), which neither leg negotiated, is not passed on.
    phone_a.send(port_a, 13, &[40]).await;
    assert!(
        phone_b
            .collect(ms(200))
            .await
            .iter()
            .all(|p| p.header.payload_type != 13)
    );

    // The engine hears of RTP on both calls, from the relay.
    let seen = rig
        .wait_event(|call, e| call == b && matches!(e, FlowEvent::Receiving { .. }))
        .await;
    assert!(
        seen.iter()
            .any(|(call, e)| *call == a && matches!(e, FlowEvent::Receiving { .. })),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_meets_pcma_through_the_relay() {
    let mut rig = Rig::new(23020);
    let ((a, port_a, mut phone_a), (b, port_b, phone_b)) =
        two_calls(&mut rig, "PCMA", 8, None).await;
    rig.instruct(b, MediaInstruction::Join { peer: a });
    tokio::time::sleep(ms(100)).await;
    // A sends a 1 kHz tone at -10 dBm0 in µ-law.
    let mut tone = media::ToneGenerator::new(ToneSpec::single(1000.0, -10.0, None));
    for _ in 0..25 {
        let mut samples = [0i16; 160];
        tone.fill(&mut samples);
        let mut payload = Vec::new();
        G711::Pcmu.encode(&samples, &mut payload);
        phone_a.send(port_a, 0, &payload).await;
        tokio::time::sleep(ms(20)).await;
    }
    let heard: Vec<Packet> = phone_b
        .collect(ms(300))
        .await
        .into_iter()
        .filter(|p| p.from == local(port_b))
        .collect();
    assert!(heard.len() >= 20, "{} packets", heard.len());
    assert!(heard.iter().all(|p| p.header.payload_type == 8));
    let mut decoded = Vec::new();
    for p in &heard {
        G711::Pcma.decode(&p.payload, &mut decoded);
    }
    let level = tone_level_dbm0(&decoded, 1000.0);
    assert!(
        (level - -10.0).abs() < 1.0,
        "B hears the tone in A-law: {level} dBm0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unjoin_gives_each_call_its_own_flow_back() {
    let mut rig = Rig::new(23040);
    let ((a, port_a, mut phone_a), (b, port_b, mut phone_b)) =
        two_calls(&mut rig, "PCMU", 0, Some(101)).await;
    let before_a = phone_a.wait_for(ms(2000), |_| true).await;
    rig.instruct(a, MediaInstruction::Join { peer: b });
    tokio::time::sleep(ms(100)).await;
    for _ in 0..5 {
        phone_b.send(port_b, 0, &[PATTERN; 160]).await;
        tokio::time::sleep(ms(20)).await;
    }
    let relayed: Vec<Packet> = phone_a
        .collect(ms(200))
        .await
        .into_iter()
        .filter(is_pattern)
        .collect();
    assert_eq!(relayed.len(), 5);
    let last = relayed.last().unwrap().header;
    // Told during the join: b's flow plays once it has its stream back.
    rig.play_tone(b).unwrap();

    rig.instruct(b, MediaInstruction::Unjoin { peer: a });
    tokio::time::sleep(ms(100)).await;
    // The phones no longer hear each other.
    for _ in 0..5 {
        phone_b.send(port_b, 0, &[PATTERN; 160]).await;
        phone_a.send(port_a, 0, &[PATTERN; 160]).await;
        tokio::time::sleep(ms(20)).await;
    }
    let after_a = phone_a.collect(ms(300)).await;
    let after_b = phone_b.collect(ms(300)).await;
    assert!(!after_a.iter().any(is_pattern), "A no longer hears B");
    assert!(!after_b.iter().any(is_pattern), "B no longer hears A");
    // Each phone hears its own call's flow again, in the same stream: the flow went on
    // from the relay's last packet.
    assert!(
        after_a.len() >= 10,
        "a's flow sends again: {}",
        after_a.len()
    );
    assert!(after_a.iter().all(|p| p.from == local(port_a)));
    assert_eq!(after_a[0].header.ssrc, before_a.header.ssrc);
    assert!(
        after_a
            .iter()
            .all(|p| p.header.ssrc == before_a.header.ssrc)
    );
    // The first of the flow's packets may have been read above; it follows at most a few
    // packets after the relay's last.
    let gap = after_a[0].header.sequence.wrapping_sub(last.sequence);
    assert!((1..=10).contains(&gap), "sequence gap {gap}");
    // b plays the tone commanded during the join.
    let mut decoded = Vec::new();
    for p in after_b.iter().filter(|p| p.from == local(port_b)) {
        G711::Pcmu.decode(&p.payload, &mut decoded);
    }
    let level = tone_level_dbm0(&decoded, 1000.0);
    assert!(
        (level - -10.0).abs() < 1.0,
        "B hears b's tone: {level} dBm0"
    );
    // And a's flow takes commands as before (the silence it sent meanwhile read first).
    phone_a.collect(ms(30)).await;
    rig.play_tone(a).unwrap();
    let mut decoded = Vec::new();
    tokio::time::sleep(ms(100)).await;
    for p in phone_a.collect(ms(300)).await {
        G711::Pcmu.decode(&p.payload, &mut decoded);
    }
    let level = tone_level_dbm0(&decoded, 1000.0);
    assert!(
        (level - -10.0).abs() < 1.0,
        "A hears a's tone: {level} dBm0"
    );
    // Joined again, they hear each other again.
    rig.instruct(a, MediaInstruction::Join { peer: b });
    tokio::time::sleep(ms(100)).await;
    phone_b.collect(ms(50)).await;
    phone_a.send(port_a, 0, &[PATTERN; 160]).await;
    phone_b.wait_for(ms(1000), is_pattern).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_joined_call_gives_the_other_its_flow_back() {
    let mut rig = Rig::new(23060);
    let ((a, port_a, mut phone_a), (b, port_b, phone_b)) =
        two_calls(&mut rig, "PCMU", 0, Some(101)).await;
    let before_b = phone_b.wait_for(ms(2000), |_| true).await;
    rig.instruct(a, MediaInstruction::Join { peer: b });
    tokio::time::sleep(ms(100)).await;
    phone_a.send(port_a, 0, &[PATTERN; 160]).await;
    phone_b.wait_for(ms(1000), is_pattern).await;

    rig.instruct(a, MediaInstruction::Close { port: port_a });
    rig.plane.forget(a);
    tokio::time::sleep(ms(200)).await;
    // b's flow sends again (silence), in b's stream; nothing from A any more.
    phone_a.send(port_a, 0, &[PATTERN; 160]).await;
    let after = phone_b.collect(ms(300)).await;
    assert!(after.len() >= 10, "b's flow is back: {}", after.len());
    assert!(!after.iter().any(is_pattern));
    assert!(after.iter().all(|p| p.header.ssrc == before_b.header.ssrc));
    // a's flow is gone, b's takes commands.
    assert_eq!(
        rig.plane.command(a, false, false, Box::new(|_, _| {})),
        Err(FlowError::NoFlow)
    );
    rig.play_tone(b).unwrap();
    // a's sockets are closed: the port can be bound again.
    let mut rebound = None;
    for _ in 0..100 {
        if let Ok(socket) = std::net::UdpSocket::bind(local(port_a)) {
            rebound = Some(socket);
            break;
        }
        tokio::time::sleep(ms(10)).await;
    }
    assert!(rebound.is_some(), "a's RTP port was released");
    // Unjoin and close of calls no longer joined: nothing happens.
    rig.instruct(b, MediaInstruction::Unjoin { peer: a });
    rig.instruct(b, MediaInstruction::Close { port: port_b });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_waits_for_both_streams_and_follows_a_re_invite() {
    let mut rig = Rig::new(23080);
    let (a, port_a) = rig.call();
    let (b, port_b) = rig.call();
    let mut phone_a = Phone::new(0xaaaa).await;
    let phone_b = Phone::new(0xbbbb).await;
    let phone_b2 = Phone::new(0xb2b2).await;
    // Joined before b's media is negotiated: remembered.
    rig.instruct(a, MediaInstruction::Join { peer: b });
    let mut a_settings = settings(port_a, phone_a.addr(), "PCMU", 0, Some(101));
    a_settings.media_timeout = Some(ms(300));
    rig.instruct(a, MediaInstruction::Start(a_settings));
    let mut b_settings = settings(port_b, phone_b.addr(), "PCMU", 0, Some(101));
    b_settings.media_timeout = Some(ms(300));
    rig.instruct(b, MediaInstruction::Start(b_settings.clone()));
    tokio::time::sleep(ms(100)).await;
    phone_b.collect(ms(50)).await;
    phone_a.send(port_a, 0, &[PATTERN; 160]).await;
    let p = phone_b.wait_for(ms(1000), is_pattern).await;
    assert_eq!(p.from, local(port_b));

    // Phone B is silent while A talks: b times out (and a does not).
    let talk = async {
        for _ in 0..30 {
            phone_a.send(port_a, 0, &[PATTERN; 160]).await;
            tokio::time::sleep(ms(20)).await;
        }
    };
    let (_, seen) = tokio::join!(
        talk,
        rig.wait_event(|call, e| call == b && matches!(e, FlowEvent::Timeout { .. }))
    );
    let (_, timeout_event) = seen.last().unwrap();
    assert_eq!(*timeout_event, FlowEvent::Timeout { after: ms(300) });
    assert!(
        !seen
            .iter()
            .any(|(call, e)| *call == a && matches!(e, FlowEvent::Timeout { .. })),
        "{seen:?}"
    );

    // A re-INVITE moves b to another phone.
    b_settings.remote = Some(phone_b2.addr());
    rig.instruct(b, MediaInstruction::Start(b_settings.clone()));
    tokio::time::sleep(ms(100)).await;
    phone_b.collect(ms(50)).await;
    phone_a.send(port_a, 0, &[PATTERN; 160]).await;
    let p = phone_b2.wait_for(ms(1000), is_pattern).await;
    assert_eq!(p.from, local(port_b));
    // Then puts it on hold (we may not send to it): A's packets stop there.
    b_settings.send = false;
    rig.instruct(b, MediaInstruction::Start(b_settings));
    tokio::time::sleep(ms(100)).await;
    phone_b2.collect(ms(50)).await;
    for _ in 0..5 {
        phone_a.send(port_a, 0, &[PATTERN; 160]).await;
        tokio::time::sleep(ms(20)).await;
    }
    assert!(!phone_b2.collect(ms(200)).await.iter().any(is_pattern));
    assert!(
        !phone_b.collect(ms(10)).await.iter().any(is_pattern),
        "nothing for the phone b left"
    );
}

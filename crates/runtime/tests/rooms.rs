//! Conference rooms in the media plane on real loopback sockets: calls' streams set up
//! as the engine's instructions would (`Open`, `Start`), then put in a room
//! (`JoinRoom`). UDP sockets play the phones, each sending a tone of its own (500, 700,
//! 900 Hz, G.711) every 20 ms; Goertzel says what each one hears: the other members and
//! never itself, a PCMA member mixed with PCMU ones; a member that leaves hears its own
//! flow again (silence, then what it is told to play); a `Play` to a member is heard by
//! it alone, a `PlayRoom` by all; DTMF and media timeouts are reported as the member
//! call's; a `Close` removes the member; a new negotiation re-targets it in the room.
//!
//! And through the whole driver: a conference host answers three calls from another
//! Tandem whose application plays a tone on each and records what it hears; the host's
//! application joins them in a room with the façade.
//!
//! Media ports 23400–23499 (each test its own slice), so these never meet another test's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtp_session::{RtpHeader, build_rtp, looks_like_rtcp, parse_rtp};
use runtime::app::{AudioVideoCall, CallEvents, EndpointNotice};
use runtime::calls::{
    ApplicationEndpointSettings, CallAcceptOptions, CallEstablishOptions, CallEvent, CallHandle,
    CallKind, CallState, CallTerminateOptions, ConversationHandle, ConversationSettings, Engine,
    EngineConfig, Event, MediaInstruction, MediaSettings, PortSource, RoomEvent, RoomId,
    StreamSettings,
};
use runtime::media::flow::FlowEvent;
use runtime::media::{G711, ToneGenerator, ToneSpec, level_dbm0, tone_level_dbm0};
use runtime::media_plane::{BoundPorts, FlowEvents, MediaPlane};
use runtime::sip_transport::TransportConfig;
use runtime::{Running, RuntimeConfig};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::timeout;

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The plane, its port source, its reports, and an engine for call and room handles.
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
            (first_port, first_port + 9),
            13,
        )
        .unwrap();
        let mut engine = Engine::new(EngineConfig::default());
        let endpoint = engine
            .add_application_endpoint(ApplicationEndpointSettings::new("sip:room@127.0.0.1"))
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

    fn instruct(&mut self, call: CallHandle, instruction: MediaInstruction) {
        self.plane
            .instruct(&mut self.engine, now(), call, instruction);
    }

    /// A call with its port opened and its stream started toward a new phone sending a
    /// `frequency` tone in `codec`.
    async fn member(&mut self, frequency: f64, codec: G711) -> Member {
        let call = self
            .engine
            .new_call(self.conversation, CallKind::AudioVideo)
            .unwrap();
        let port = self.ports.reserve().unwrap();
        self.instruct(call, MediaInstruction::Open { port });
        let phone = Phone::new(frequency, codec, port).await;
        self.instruct(
            call,
            MediaInstruction::Start(settings(port, phone.addr(), codec, None)),
        );
        Member { call, port, phone }
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
    codec: G711,
    timeout: Option<Duration>,
) -> StreamSettings {
    StreamSettings {
        local_port: port,
        remote: Some(phone),
        codec: codec.name().into(),
        payload_type: codec.payload_type(),
        clock_rate: 8000,
        ptime: ms(20),
        telephone_event: Some(101),
        send: true,
        receive: true,
        echo: false,
        media_timeout: timeout,
    }
}

struct Member {
    call: CallHandle,
    port: u16,
    phone: Phone,
}

/// What a phone's sender does next.
#[derive(Debug, Default)]
struct Sending {
    /// An RFC 4733 digit to send (event code), instead of audio for a while.
    digit: Option<u8>,
    /// Sends nothing.
    muted: bool,
}

/// A phone: a UDP socket that sends a tone every 20 ms to its call's port, and hears.
struct Phone {
    socket: Arc<UdpSocket>,
    codec: G711,
    control: Arc<Mutex<Sending>>,
    sender: JoinHandle<()>,
}

impl Phone {
    async fn new(frequency: f64, codec: G711, to: u16) -> Phone {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let control = Arc::new(Mutex::new(Sending::default()));
        let sender = tokio::spawn(send_tone(
            socket.clone(),
            frequency,
            codec,
            to,
            control.clone(),
        ));
        Phone {
            socket,
            codec,
            control,
            sender,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }

    /// What the phone hears for `wait`: the decoded audio, and the RTP headers.
    async fn listen(&self, wait: Duration) -> (Vec<i16>, Vec<RtpHeader>) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut buf = vec![0; 2048];
        let mut samples = Vec::new();
        let mut headers = Vec::new();
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(deadline, self.socket.recv_from(&mut buf)).await
        {
            let data = &buf[..n];
            if looks_like_rtcp(data) {
                continue;
            }
            if let Ok((header, range)) = parse_rtp(data) {
                if header.payload_type == self.codec.payload_type() {
                    self.codec.decode(&data[range], &mut samples);
                }
                headers.push(header);
            }
        }
        (samples, headers)
    }

    /// The last 0.5 s of what it hears over 0.8 s (the first 0.3 s let moves settle). On a
    /// loaded machine the audio may come late: it listens on, up to 5 s, for 0.5 s of it.
    async fn hear(&self) -> Vec<i16> {
        let (mut samples, _) = self.listen(ms(800)).await;
        let give_up = tokio::time::Instant::now() + ms(4200);
        while samples.len() < 4000 && tokio::time::Instant::now() < give_up {
            let (more, _) = self.listen(ms(200)).await;
            samples.extend(more);
        }
        assert!(samples.len() >= 4000, "{} samples", samples.len());
        samples[samples.len() - 4000..].to_vec()
    }

    fn send_digit(&self, event: u8) {
        self.control.lock().unwrap().digit = Some(event);
    }

    fn mute(&self) {
        self.control.lock().unwrap().muted = true;
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.sender.abort();
    }
}

/// The phone's sender: a tone at -10 dBm0, one packet every 20 ms; a digit as RFC 4733
/// events (five packets, the last three marking its end) in place of the audio.
async fn send_tone(
    socket: Arc<UdpSocket>,
    frequency: f64,
    codec: G711,
    to: u16,
    control: Arc<Mutex<Sending>>,
) {
    let mut tone = ToneGenerator::new(ToneSpec::single(frequency, -10.0, None));
    let mut ticker = tokio::time::interval(ms(20));
    let ssrc = 0x5000 + frequency as u32;
    let mut sequence: u16 = 100;
    let mut timestamp: u32 = 8000;
    let mut frame = vec![0i16; 160];
    let mut payload = Vec::with_capacity(160);
    let mut event: Option<(u8, u32, u16)> = None;
    loop {
        ticker.tick().await;
        let (digit, muted) = {
            let mut c = control.lock().unwrap();
            (c.digit.take(), c.muted)
        };
        if let Some(digit) = digit {
            event = Some((digit, timestamp, 0));
        }
        let packet = match event.as_mut() {
            Some((digit, start, sent)) => {
                *sent += 1;
                let end = *sent >= 3;
                let duration = (160 * u32::from((*sent).min(3))) as u16;
                let header = RtpHeader {
                    marker: *sent == 1,
                    payload_type: 101,
                    sequence,
                    timestamp: *start,
                    ssrc,
                };
                let flags = if end { 0x80 | 10 } else { 10 };
                let d = duration.to_be_bytes();
                let packet = build_rtp(&header, &[*digit, flags, d[0], d[1]]).unwrap();
                if *sent >= 5 {
                    event = None;
                }
                packet
            }
            None => {
                tone.fill(&mut frame);
                payload.clear();
                codec.encode(&frame, &mut payload);
                let header = RtpHeader {
                    marker: false,
                    payload_type: codec.payload_type(),
                    sequence,
                    timestamp,
                    ssrc,
                };
                build_rtp(&header, &payload).unwrap()
            }
        };
        sequence = sequence.wrapping_add(1);
        timestamp = timestamp.wrapping_add(160);
        if !muted {
            let _ = socket.send_to(&packet, local(to)).await;
        }
    }
}

/// Hears each of `present` (above -20 dBm0) and none of `absent` (below -45 dBm0).
fn assert_hears(who: &str, samples: &[i16], present: &[f64], absent: &[f64]) {
    for &f in present {
        let level = tone_level_dbm0(samples, f);
        assert!(level > -20.0, "{who} hears {f} Hz at {level:.1} dBm0 only");
    }
    for &f in absent {
        let level = tone_level_dbm0(samples, f);
        assert!(level < -45.0, "{who} hears {f} Hz at {level:.1} dBm0");
    }
}

const FA: f64 = 500.0;
const FB: f64 = 700.0;
const FC: f64 = 900.0;

/// Three members in a room: A and B in PCMU, C in PCMA.
async fn three_in_a_room(rig: &mut Rig) -> (RoomId, Member, Member, Member) {
    let room = rig.engine.new_room();
    let a = rig.member(FA, G711::Pcmu).await;
    let b = rig.member(FB, G711::Pcmu).await;
    let c = rig.member(FC, G711::Pcma).await;
    for m in [&a, &b, &c] {
        rig.instruct(m.call, MediaInstruction::JoinRoom { room });
    }
    (room, a, b, c)
}

/// A 1-second WAV file (8 kHz, mono, 16-bit) of a `frequency` sine at -10 dBm0.
fn write_wav(name: &str, frequency: f64) -> std::path::PathBuf {
    let mut tone = ToneGenerator::new(ToneSpec::single(frequency, -10.0, None));
    let mut samples = vec![0i16; 8000];
    tone.fill(&mut samples);
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes());
    wav.extend_from_slice(&16000u32.to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    let path = std::env::temp_dir().join(format!("tandem-room-{}-{name}.wav", std::process::id()));
    std::fs::write(&path, wav).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_member_hears_the_other_two_and_not_itself_pcma_with_pcmu() {
    let mut rig = Rig::new(23400);
    let room = rig.engine.new_room();
    let a = rig.member(FA, G711::Pcmu).await;
    let b = rig.member(FB, G711::Pcmu).await;
    let c = rig.member(FC, G711::Pcma).await;
    // Before the room: each phone hears its call's own flow, silence.
    let (before, _) = a.phone.listen(ms(300)).await;
    assert!(before.len() >= 1600, "{} samples", before.len());
    assert!(level_dbm0(&before) < -50.0);
    for m in [&a, &b, &c] {
        rig.instruct(m.call, MediaInstruction::JoinRoom { room });
    }
    let (heard_a, heard_b, heard_c) = tokio::join!(a.phone.hear(), b.phone.hear(), c.phone.hear());
    assert_hears("A", &heard_a, &[FB, FC], &[FA]);
    assert_hears("B", &heard_b, &[FA, FC], &[FB]);
    assert_hears("C (PCMA)", &heard_c, &[FA, FB], &[FC]);
    // Each in its own codec, one stream throughout (the flow moved with its SSRC).
    let (_, headers_a) = a.phone.listen(ms(200)).await;
    let (_, headers_c) = c.phone.listen(ms(200)).await;
    assert!(!headers_a.is_empty() && headers_a.iter().all(|h| h.payload_type == 0));
    assert!(!headers_c.is_empty() && headers_c.iter().all(|h| h.payload_type == 8));
    let ssrcs: std::collections::BTreeSet<u32> = headers_a.iter().map(|h| h.ssrc).collect();
    assert_eq!(ssrcs.len(), 1, "{ssrcs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_leaves_gets_its_own_flow_back_silence_then_a_play() {
    let mut rig = Rig::new(23410);
    let (room, a, b, c) = three_in_a_room(&mut rig).await;
    let (_, in_room) = a.phone.listen(ms(500)).await;
    let room_ssrc = in_room.last().expect("packets in the room").ssrc;
    rig.instruct(a.call, MediaInstruction::LeaveRoom { room });
    let (heard_a, heard_b, heard_c) = tokio::join!(a.phone.hear(), b.phone.hear(), c.phone.hear());
    // A's own flow: silence, in the same stream.
    assert!(level_dbm0(&heard_a) < -50.0, "{}", level_dbm0(&heard_a));
    assert_hears("B", &heard_b, &[FC], &[FA, FB]);
    assert_hears("C", &heard_c, &[FB], &[FA, FC]);
    let (_, after) = a.phone.listen(ms(200)).await;
    assert!(!after.is_empty() && after.iter().all(|h| h.ssrc == room_ssrc));
    // Its own flow plays what it is told.
    let wav = write_wav("leave", 1100.0);
    rig.instruct(
        a.call,
        MediaInstruction::Play {
            file: Some(wav.display().to_string()),
            looped: true,
        },
    );
    let heard = a.phone.hear().await;
    assert_hears("A", &heard, &[1100.0], &[FB, FC]);
    let _ = std::fs::remove_file(wav);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_member_is_not_heard_and_stays_muted_when_it_joins_again() {
    let mut rig = Rig::new(23490);
    let (room, a, b, c) = three_in_a_room(&mut rig).await;
    rig.instruct(b.call, MediaInstruction::Mute { muted: true });
    let (heard_a, heard_b, heard_c) = tokio::join!(a.phone.hear(), b.phone.hear(), c.phone.hear());
    assert_hears("A", &heard_a, &[FC], &[FA, FB]);
    assert_hears("B (muted)", &heard_b, &[FA, FC], &[FB]);
    assert_hears("C", &heard_c, &[FA], &[FB, FC]);
    // Out of the room and back: still muted.
    rig.instruct(b.call, MediaInstruction::LeaveRoom { room });
    rig.instruct(b.call, MediaInstruction::JoinRoom { room });
    let heard_a = a.phone.hear().await;
    assert_hears("A", &heard_a, &[FC], &[FA, FB]);
    rig.instruct(b.call, MediaInstruction::Mute { muted: false });
    let (heard_a, heard_c) = tokio::join!(a.phone.hear(), c.phone.hear());
    assert_hears("A", &heard_a, &[FB, FC], &[FA]);
    assert_hears("C", &heard_c, &[FA, FB], &[FC]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_to_a_member_is_heard_by_it_alone_and_a_room_play_by_all() {
    let mut rig = Rig::new(23420);
    let (room, a, b, c) = three_in_a_room(&mut rig).await;
    let whisper = write_wav("whisper", 1100.0);
    let announcement = write_wav("announcement", 1300.0);
    rig.instruct(
        a.call,
        MediaInstruction::Play {
            file: Some(whisper.display().to_string()),
            looped: true,
        },
    );
    let (heard_a, heard_b, heard_c) = tokio::join!(a.phone.hear(), b.phone.hear(), c.phone.hear());
    assert_hears("A", &heard_a, &[1100.0, FB, FC], &[FA]);
    assert_hears("B", &heard_b, &[FA, FC], &[1100.0, FB]);
    assert_hears("C", &heard_c, &[FA, FB], &[1100.0, FC]);
    rig.instruct(
        b.call,
        MediaInstruction::PlayRoom {
            room,
            file: Some(announcement.display().to_string()),
            looped: true,
        },
    );
    let (heard_a, heard_b, heard_c) = tokio::join!(a.phone.hear(), b.phone.hear(), c.phone.hear());
    assert_hears("A", &heard_a, &[1300.0, 1100.0, FB, FC], &[FA]);
    assert_hears("B", &heard_b, &[1300.0, FA, FC], &[1100.0, FB]);
    assert_hears("C", &heard_c, &[1300.0, FA, FB], &[1100.0, FC]);
    // A flow command of the application (the façade's way) reaches the member in the room.
    rig.plane
        .command(a.call, true, false, Box::new(|flow, _| flow.stop_playing()))
        .unwrap();
    let heard_a = a.phone.hear().await;
    assert_hears("A", &heard_a, &[1300.0, FB, FC], &[1100.0, FA]);
    let _ = std::fs::remove_file(whisper);
    let _ = std::fs::remove_file(announcement);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_report_dtmf_and_timeouts_and_a_close_removes_one() {
    let mut rig = Rig::new(23430);
    let room = rig.engine.new_room();
    let a = rig.member(FA, G711::Pcmu).await;
    let b = rig.member(FB, G711::Pcmu).await;
    let c = rig.member(FC, G711::Pcma).await;
    // B's negotiation has a media timeout.
    rig.instruct(
        b.call,
        MediaInstruction::Start(settings(b.port, b.phone.addr(), G711::Pcmu, Some(ms(400)))),
    );
    for m in [&a, &b, &c] {
        rig.instruct(m.call, MediaInstruction::JoinRoom { room });
    }
    tokio::time::sleep(ms(300)).await;
    // A digit from C's phone is C's call's.
    c.phone.send_digit(5);
    let seen = rig.wait_event(|_, e| matches!(e, FlowEvent::Tone(_))).await;
    let (call, event) = seen.last().unwrap();
    assert_eq!(*call, c.call);
    let FlowEvent::Tone(tone) = event else {
        unreachable!()
    };
    assert_eq!(tone.digit, Some('5'));
    // B goes silent: its call times out, in the room.
    b.phone.mute();
    let seen = rig
        .wait_event(|_, e| matches!(e, FlowEvent::Timeout { .. }))
        .await;
    assert_eq!(seen.last().unwrap().0, b.call);
    // B's call ends: the others no longer hear it, and still hear each other.
    rig.instruct(b.call, MediaInstruction::Close { port: b.port });
    let (heard_a, heard_c) = tokio::join!(a.phone.hear(), c.phone.hear());
    assert_hears("A", &heard_a, &[FC], &[FA, FB]);
    assert_hears("C", &heard_c, &[FA], &[FB, FC]);
    // Nothing comes to B's phone any more (what it had not read yet aside).
    let mut buf = vec![0; 2048];
    let drain_until = tokio::time::Instant::now() + ms(1000);
    while tokio::time::Instant::now() < drain_until
        && timeout(ms(60), b.phone.socket.recv_from(&mut buf))
            .await
            .is_ok()
    {}
    let late = timeout(ms(300), b.phone.socket.recv_from(&mut buf)).await;
    assert!(late.is_err(), "a packet after the close: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_negotiation_retargets_a_member_in_the_room() {
    let mut rig = Rig::new(23440);
    let (_room, a, b, c) = three_in_a_room(&mut rig).await;
    let heard = a.phone.hear().await;
    assert_hears("A", &heard, &[FB, FC], &[FA]);
    // A's phone moves (a re-INVITE with a new address): its old phone stops.
    let moved = Phone::new(FA, G711::Pcmu, a.port).await;
    rig.instruct(
        a.call,
        MediaInstruction::Start(settings(a.port, moved.addr(), G711::Pcmu, None)),
    );
    drop(a.phone);
    let (heard_moved, heard_b) = tokio::join!(moved.hear(), b.phone.hear());
    assert_hears("A, moved", &heard_moved, &[FB, FC], &[FA]);
    assert_hears("B", &heard_b, &[FA, FC], &[FB]);
    drop(c);
}

/// A Tandem on `ip` with no demo users, its RTP ports in `first..=last`.
async fn start(ip: &str, first: u16, last: u16) -> Running {
    let mut engine = EngineConfig {
        media: MediaSettings {
            first_port: first,
            last_port: last,
            ..MediaSettings::default()
        },
        ..EngineConfig::default()
    };
    engine.demo_users.clear();
    let config = RuntimeConfig {
        transport: TransportConfig::new(vec![format!("{ip}:0").parse().unwrap()], vec![]),
        engine,
        dns_servers: Vec::new(),
        media_address: Some(ip.parse().unwrap()),
    };
    runtime::start(config).await.unwrap()
}

/// A call's events until `done` says so (or 10 s pass).
async fn wait_for(events: &mut CallEvents, mut done: impl FnMut(&CallEvent) -> bool) {
    let found = timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if done(&event) {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "event not seen");
}

fn established(event: &CallEvent) -> bool {
    matches!(
        event,
        CallEvent::StateChanged {
            state: CallState::Established,
            ..
        }
    )
}

fn terminated(event: &CallEvent) -> bool {
    matches!(
        event,
        CallEvent::StateChanged {
            state: CallState::Terminated,
            ..
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_driver_an_application_joins_three_calls_in_a_room() {
    let host = start("127.0.0.1", 23450, 23469).await;
    let phones = start("127.0.0.2", 23470, 23489).await;
    let sip_port = host.local_addrs[0].1.port();
    let mut conf = host
        .tandem
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:conf@127.0.0.1"))
        .await
        .unwrap();
    let phone_endpoint = phones
        .tandem
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:phones@127.0.0.2"))
        .await
        .unwrap();
    let mut tap = host.tandem.tap().await.unwrap();
    let room = host.tandem.new_room().await.unwrap();
    assert!(host.tandem.room_members(room).await.unwrap().is_empty());
    // Nobody to hear an announcement yet.
    assert!(host.tandem.play_to_room(room, None, false).await.is_err());

    // The host's application: answers each call with its own media and, once it is
    // established, puts it in the room.
    let host_app = {
        let tandem = host.tandem.clone();
        tokio::spawn(async move {
            let mut calls = Vec::new();
            for _ in 0..3 {
                let Some(EndpointNotice::CallReceived(incoming)) = conf.next_event().await else {
                    panic!("no call");
                };
                let mut events = incoming.events;
                let call = incoming.call;
                call.accept(CallAcceptOptions::new()).await.unwrap();
                wait_for(&mut events, established).await;
                tandem.join_room(call.handle(), room).await.unwrap();
                calls.push((call.handle(), events));
            }
            calls
        })
    };

    // The phones: three calls, each playing its tone and recording what it hears.
    let dir = std::env::temp_dir().join(format!("tandem-rooms-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let target = format!("sip:conf@127.0.0.1:{sip_port}");
    let mut calls = Vec::new();
    for (i, frequency) in [FA, FB, FC].into_iter().enumerate() {
        let conversation = phone_endpoint
            .new_conversation(ConversationSettings::default())
            .await
            .unwrap();
        let (call, events) = AudioVideoCall::new(&conversation).await.unwrap();
        call.flow()
            .play_tone(ToneSpec::single(frequency, -10.0, None))
            .await
            .unwrap();
        let wav = dir.join(format!("phone-{i}.wav"));
        call.flow().record_to(&wav).await.unwrap();
        call.establish(&target, CallEstablishOptions::new())
            .await
            .unwrap();
        calls.push((call, events, wav, frequency));
    }
    let members = timeout(Duration::from_secs(10), host_app)
        .await
        .unwrap()
        .unwrap();
    let handles: Vec<CallHandle> = members.iter().map(|(h, _)| *h).collect();
    assert_eq!(host.tandem.room_members(room).await.unwrap(), handles);
    // The room reported each join, on the tap.
    let mut joined = Vec::new();
    while joined.len() < 3 {
        let event = timeout(Duration::from_secs(5), tap.recv())
            .await
            .unwrap()
            .unwrap();
        if let Event::Room { room: r, event } = event {
            assert_eq!(r, room);
            if let RoomEvent::Joined { call } = event {
                joined.push(call);
            }
        }
    }
    assert_eq!(joined, handles);

    // Everyone talks for a while, then hangs up; the recordings tell who heard whom.
    tokio::time::sleep(ms(1500)).await;
    for (call, events, _, _) in &mut calls {
        call.terminate(CallTerminateOptions::new()).await.unwrap();
        wait_for(events, terminated).await;
    }
    for (_, mut events) in members {
        wait_for(&mut events, terminated).await;
    }
    // The calls that ended left the room, which stays until closed.
    assert!(host.tandem.room_members(room).await.unwrap().is_empty());
    assert!(host.tandem.close_room(room).await.unwrap().is_empty());
    for (i, (_, _, wav, frequency)) in calls.iter().enumerate() {
        let mut samples = Vec::new();
        for _ in 0..50 {
            tokio::time::sleep(ms(50)).await;
            if let Ok(s) = runtime::media::load_wav_file(wav)
                && s.len() > 8000
            {
                samples = s;
                break;
            }
        }
        assert!(samples.len() > 8000, "{} samples recorded", samples.len());
        // Half a second well inside the time all three were in the room.
        let window = &samples[samples.len() - 6000..samples.len() - 2000];
        let others: Vec<f64> = [FA, FB, FC]
            .into_iter()
            .filter(|f| f != frequency)
            .collect();
        assert_hears(&format!("phone {i}"), window, &others, &[*frequency]);
    }
    std::fs::remove_dir_all(&dir).ok();
    host.stop().await.unwrap();
    phones.stop().await.unwrap();
}

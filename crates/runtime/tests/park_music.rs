//! Music on hold on real loopback sockets: `MediaInstruction::Play` (a parked call) makes
//! the call's flow send the hold tone or a WAV file, given before or after the stream
//! started, after an `Unjoin`, and the tone when the file cannot be read.
//!
//! Media ports 23200–23299 (each test its own slice), so these never meet another test's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_session::{looks_like_rtcp, parse_rtp};
use runtime::calls::{
    ApplicationEndpointSettings, CallHandle, CallKind, ConversationHandle, ConversationSettings,
    Engine, EngineConfig, MediaInstruction, PortSource, StreamSettings,
};
use runtime::media::{tone_level_dbm0, ulaw_decode};
use runtime::media_plane::{BoundPorts, FlowEvents, MediaPlane};
use tokio::net::UdpSocket;

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

struct Rig {
    plane: MediaPlane,
    ports: BoundPorts,
    _events: FlowEvents,
    engine: Engine,
    conversation: ConversationHandle,
}

impl Rig {
    fn new(first_port: u16) -> Rig {
        let (plane, ports, events) = MediaPlane::new(
            "127.0.0.1".parse().unwrap(),
            (first_port, first_port + 19),
            11,
        )
        .unwrap();
        let mut engine = Engine::new(EngineConfig::default());
        let endpoint = engine
            .add_application_endpoint(ApplicationEndpointSettings::new("sip:park@127.0.0.1"))
            .unwrap();
        let conversation = engine
            .new_conversation(endpoint, ConversationSettings::default())
            .unwrap();
        Rig {
            plane,
            ports,
            _events: events,
            engine,
            conversation,
        }
    }

    /// A call with its port opened, as the engine does before its SDP goes out.
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
}

/// PCMU toward `phone`.
fn settings(port: u16, phone: SocketAddr) -> StreamSettings {
    StreamSettings {
        local_port: port,
        remote: Some(phone),
        codec: "PCMU".into(),
        payload_type: 0,
        clock_rate: 8000,
        ptime: ms(20),
        telephone_event: None,
        send: true,
        receive: true,
        echo: false,
        media_timeout: None,
    }
}

async fn phone() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// The audio `phone` hears for `wait` (RTCP skipped), decoded.
async fn listen(phone: &UdpSocket, wait: Duration) -> Vec<i16> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0; 2048];
    let mut samples = Vec::new();
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, phone.recv_from(&mut buf)).await {
        let data = &buf[..n];
        if looks_like_rtcp(data) {
            continue;
        }
        if let Ok((header, range)) = parse_rtp(data) {
            assert_eq!(header.payload_type, 0);
            samples.extend(data[range].iter().map(|&code| ulaw_decode(code)));
        }
    }
    samples
}

/// A WAV file (8 kHz, mono, 16-bit) of `seconds` of a `frequency` sine at half scale.
fn write_wav(name: &str, frequency: f64, seconds: f64) -> std::path::PathBuf {
    let count = (8000.0 * seconds) as u32;
    let mut data = Vec::with_capacity(count as usize * 2);
    for n in 0..count {
        let x = (2.0 * std::f64::consts::PI * frequency * f64::from(n) / 8000.0).sin();
        data.extend_from_slice(&((x * 16000.0) as i16).to_le_bytes());
    }
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
    let path = std::env::temp_dir().join(format!("tandem-park-{}-{name}.wav", std::process::id()));
    std::fs::write(&path, wav).unwrap();
    path
}

const HOLD: f64 = 440.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_without_a_file_sends_the_hold_tone() {
    let mut rig = Rig::new(23200);
    let (call, port) = rig.call();
    let phone = phone().await;
    rig.instruct(
        call,
        MediaInstruction::Start(settings(port, phone.local_addr().unwrap())),
    );
    // Silence until told to play.
    let before = listen(&phone, ms(200)).await;
    assert!(before.len() >= 800, "{} samples", before.len());
    assert!(tone_level_dbm0(&before, HOLD) < -60.0);
    rig.instruct(
        call,
        MediaInstruction::Play {
            file: None,
            looped: true,
        },
    );
    let heard = listen(&phone, ms(250)).await;
    assert!(heard.len() >= 1200, "{} samples", heard.len());
    // The first beep: 440 Hz at about -24 dBm0 (the first packets may still be silence).
    let beep = &heard[heard.len() - 1200..];
    let level = tone_level_dbm0(beep, HOLD);
    assert!((-30.0..-18.0).contains(&level), "440 Hz at {level} dBm0");
    assert!(tone_level_dbm0(beep, 1000.0) < level - 20.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wav_file_given_before_the_start_plays_from_the_start_and_loops() {
    let mut rig = Rig::new(23220);
    let path = write_wav("loop", 1000.0, 0.3);
    let (call, port) = rig.call();
    rig.instruct(
        call,
        MediaInstruction::Play {
            file: Some(path.display().to_string()),
            looped: true,
        },
    );
    let phone = phone().await;
    rig.instruct(
        call,
        MediaInstruction::Start(settings(port, phone.local_addr().unwrap())),
    );
    let heard = listen(&phone, ms(700)).await;
    assert!(heard.len() >= 4800, "{} samples", heard.len());
    // From the first packet, and still after the 0.3 s of the file: it loops.
    for window in [&heard[..1600], &heard[3200..4800]] {
        let level = tone_level_dbm0(window, 1000.0);
        assert!(level > -15.0, "1 kHz at {level} dBm0");
        assert!(tone_level_dbm0(window, HOLD) < level - 20.0);
    }
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_plays_the_hold_tone_instead() {
    let mut rig = Rig::new(23240);
    let (call, port) = rig.call();
    let phone = phone().await;
    rig.instruct(
        call,
        MediaInstruction::Play {
            file: Some("/nonexistent/tandem-music.wav".into()),
            looped: true,
        },
    );
    rig.instruct(
        call,
        MediaInstruction::Start(settings(port, phone.local_addr().unwrap())),
    );
    let heard = listen(&phone, ms(250)).await;
    assert!(heard.len() >= 1600, "{} samples", heard.len());
    let level = tone_level_dbm0(&heard[..1600], HOLD);
    assert!(level > -30.0, "440 Hz at {level} dBm0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_after_an_unjoin_is_heard_once_the_flow_resumes() {
    let mut rig = Rig::new(23260);
    let (a, port_a) = rig.call();
    let (b, port_b) = rig.call();
    let phone_a = phone().await;
    let phone_b = phone().await;
    rig.instruct(
        a,
        MediaInstruction::Start(settings(port_a, phone_a.local_addr().unwrap())),
    );
    rig.instruct(
        b,
        MediaInstruction::Start(settings(port_b, phone_b.local_addr().unwrap())),
    );
    rig.instruct(a, MediaInstruction::Join { peer: b });
    tokio::time::sleep(ms(200)).await;
    // Parking leg a: unjoined, then the music; leg b is closed.
    rig.instruct(a, MediaInstruction::Unjoin { peer: b });
    rig.instruct(
        a,
        MediaInstruction::Play {
            file: None,
            looped: true,
        },
    );
    rig.instruct(b, MediaInstruction::Close { port: port_b });
    let heard = listen(&phone_a, ms(300)).await;
    assert!(heard.len() >= 1600, "{} samples", heard.len());
    let level = tone_level_dbm0(&heard[heard.len() - 1600..], HOLD);
    assert!(level > -30.0, "440 Hz at {level} dBm0");
}

//! Media over real loopback sockets: two Tandem runtimes call each other; a 1 kHz tone
//! played into one flow arrives at the other at its level (Goertzel) and is recorded to
//! a WAV file that reads back; DTMF digits arrive with their durations; the demo `echo`
//! user sends the audio back. (A peer that stops sending RTP is hung up after the media
//! timeout: `crates/daemon/tests/sipp_media.rs`, with SIPp as that peer.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use runtime::app::{AudioVideoCall, EndpointNotice};
use runtime::calls::{
    ApplicationEndpointSettings, CallAcceptOptions, CallEstablishOptions, CallEvent, CallState,
    CallTerminateOptions, ConversationSettings, EngineConfig, MediaFlowState, MediaSettings,
};
use runtime::sip_transport::TransportConfig;
use runtime::{Running, RuntimeConfig};
use std::time::Duration;
use tokio::time::timeout;

/// A runtime on `ip` (any free SIP port) with its own RTP range.
async fn start(ip: &str, first_port: u16, demo: bool, media: MediaSettings) -> Running {
    let mut engine = EngineConfig {
        media: MediaSettings {
            first_port,
            last_port: first_port + 99,
            ..media
        },
        ..EngineConfig::default()
    };
    if !demo {
        engine.demo_users.clear();
    }
    let config = RuntimeConfig {
        transport: TransportConfig::new(vec![format!("{ip}:0").parse().unwrap()], vec![]),
        engine,
        dns_servers: Vec::new(),
        media_address: Some(ip.parse().unwrap()),
    };
    runtime::start(config).await.unwrap()
}

fn sip_port(running: &Running) -> u16 {
    running.local_addrs[0].1.port()
}

/// Collects a call's events until `done` says so (or 10 s pass).
async fn wait_for(
    events: &mut runtime::app::CallEvents,
    seen: &mut Vec<CallEvent>,
    mut done: impl FnMut(&CallEvent) -> bool,
) {
    let found = timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            let stop = done(&event);
            seen.push(event);
            if stop {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "timed out; events so far: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_crosses_real_sockets_at_its_level_and_is_recorded() {
    let a = start("127.0.0.1", 46000, false, MediaSettings::default()).await;
    let b = start("127.0.0.2", 46200, false, MediaSettings::default()).await;
    let alice = a
        .tandem
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:alice@127.0.0.1"))
        .await
        .unwrap();
    let mut bob = b
        .tandem
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:bob@127.0.0.2"))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tandem-rt-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("bob-hears.wav");

    // Bob answers, records what he hears, and sends DTMF once the flow is active.
    let bob_task = {
        let wav = wav.clone();
        tokio::spawn(async move {
            let Some(EndpointNotice::CallReceived(incoming)) = bob.next_event().await else {
                panic!("no call");
            };
            let mut events = incoming.events;
            let call = AudioVideoCall::from_incoming(incoming.call).unwrap();
            // Attached before media starts: runs when it does.
            call.flow().record_to(&wav).await.unwrap();
            call.accept(CallAcceptOptions::new()).await.unwrap();
            let mut seen = Vec::new();
            wait_for(&mut events, &mut seen, |e| {
                matches!(
                    e,
                    CallEvent::FlowStateChanged {
                        state: MediaFlowState::Active,
                        ..
                    }
                )
            })
            .await;
            call.flow().send_dtmf("159#").await.unwrap();
            wait_for(&mut events, &mut seen, |e| *e == CallEvent::DtmfSent).await;
            wait_for(&mut events, &mut seen, |e| {
                matches!(
                    e,
                    CallEvent::StateChanged {
                        state: CallState::Terminated,
                        ..
                    }
                )
            })
            .await;
            seen
        })
    };

    let conversation = alice
        .new_conversation(ConversationSettings::default())
        .await
        .unwrap();
    let (call, mut events) = AudioVideoCall::new(&conversation).await.unwrap();
    call.flow()
        .play_tone(runtime::media::ToneSpec::single(1000.0, -10.0, None))
        .await
        .unwrap();
    let target = format!("sip:bob@127.0.0.2:{}", sip_port(&b));
    call.establish(&target, CallEstablishOptions::new())
        .await
        .unwrap();
    let mut seen = Vec::new();
    wait_for(&mut events, &mut seen, |e| {
        matches!(
            e,
            CallEvent::FlowStateChanged {
                state: MediaFlowState::Active,
                ..
            }
        )
    })
    .await;
    // Alice hears Bob's digits.
    let mut tones = Vec::new();
    wait_for(&mut events, &mut seen, |e| {
        if let CallEvent::ToneReceived { tone, duration } = e {
            tones.push((*tone, *duration));
        }
        tones.len() == 4
    })
    .await;
    let digits: String = tones.iter().map(|(t, _)| *t).collect();
    assert_eq!(digits, "159#");
    assert!(
        tones.iter().all(|(_, d)| *d == Duration::from_millis(100)),
        "{tones:?}"
    );
    let stats = call.flow().stats().await.unwrap();
    assert!(stats.packets_sent > 20, "{stats:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    call.terminate(CallTerminateOptions::new()).await.unwrap();
    let bob_seen = timeout(Duration::from_secs(10), bob_task)
        .await
        .unwrap()
        .unwrap();
    assert!(bob_seen.iter().any(|e| matches!(
        e,
        CallEvent::FlowStateChanged {
            state: MediaFlowState::Active,
            ..
        }
    )));
    // The recording is finished when the flow ends; read it back.
    let mut samples = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let Ok(s) = media::load_wav_file(&wav)
            && s.len() > 8000
        {
            samples = s;
            break;
        }
    }
    assert!(samples.len() > 8000, "{} samples recorded", samples.len());
    let window = &samples[samples.len() / 2 - 4000..samples.len() / 2 + 4000];
    let level = media::tone_level_dbm0(window, 1000.0);
    println!(
        "1 kHz at -10 dBm0 over loopback RTP: {level:.2} dBm0 in a {}-sample WAV",
        samples.len()
    );
    assert!((level - -10.0).abs() < 0.5, "{level}");
    assert!(media::tone_level_dbm0(window, 1400.0) < level - 30.0);
    std::fs::remove_dir_all(&dir).ok();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_demo_user_sends_the_audio_back() {
    let a = start("127.0.0.1", 46400, false, MediaSettings::default()).await;
    let b = start("127.0.0.3", 46600, true, MediaSettings::default()).await;
    let alice = a
        .tandem
        .add_application_endpoint(ApplicationEndpointSettings::new("sip:alice@127.0.0.1"))
        .await
        .unwrap();
    let conversation = alice
        .new_conversation(ConversationSettings::default())
        .await
        .unwrap();
    let (call, mut events) = AudioVideoCall::new(&conversation).await.unwrap();
    call.flow()
        .play_tone(runtime::media::ToneSpec::single(600.0, -12.0, None))
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tandem-rt-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("echo.wav");
    call.flow().record_to(&wav).await.unwrap();
    call.establish(
        &format!("sip:echo@127.0.0.3:{}", sip_port(&b)),
        CallEstablishOptions::new(),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    wait_for(&mut events, &mut seen, |e| {
        matches!(
            e,
            CallEvent::FlowStateChanged {
                state: MediaFlowState::Active,
                ..
            }
        )
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let heard = call.flow().stop_recording().await.unwrap();
    assert!(heard > 8000, "{heard}");
    call.terminate(CallTerminateOptions::new()).await.unwrap();
    let samples = media::load_wav_file(&wav).unwrap();
    let window = &samples[samples.len() - 8000..];
    let level = media::tone_level_dbm0(window, 600.0);
    println!("600 Hz at -12 dBm0, echoed by the demo user: {level:.2} dBm0");
    assert!((level - -12.0).abs() < 1.0, "{level}");
    std::fs::remove_dir_all(&dir).ok();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

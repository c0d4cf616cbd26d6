//! The call model's side of media: the RTP port each AV call takes (and gives back), the
//! stream settings handed to the driver, a flow that goes `Active` only when RTP arrives
//! and we send, DTMF indications, media timeouts and media failures. Two engines on the
//! virtual network, whose media plane reports `Receiving` when one stream sends to the
//! other's port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/net.rs"]
mod net;

use calls::{
    CallAcceptOptions, CallError, CallEstablishOptions, CallEvent, CallHandle, CallKind, CallState,
    CallStateTransitionReason as R, ConversationSettings, EndpointHandle, EngineConfig,
    MediaFlowState, MediaIndication, MediaInstruction, MediaSettings, StreamSettings,
};
use net::*;
use sip_message::Method;
use std::time::Duration;

const A: usize = 0;
const B: usize = 1;

fn new_call(net: &mut Net, node: usize, endpoint: EndpointHandle) -> CallHandle {
    let engine = net.engine(node);
    let conversation = engine
        .new_conversation(endpoint, ConversationSettings::default())
        .unwrap();
    engine.new_call(conversation, CallKind::AudioVideo).unwrap()
}

/// A calls B (which accepts everything) and runs one virtual second.
fn call(net: &mut Net, alice: EndpointHandle) -> (CallHandle, CallHandle) {
    net.set_app(B, accept_all(CallAcceptOptions::new()));
    let call = new_call(net, A, alice);
    let now = net.now;
    net.engine(A)
        .establish(now, call, BOB, CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let theirs = net.received(B).last().unwrap().call;
    (call, theirs)
}

fn instructions(net: &Net, node: usize, call: CallHandle) -> Vec<MediaInstruction> {
    net.media_log
        .iter()
        .filter(|(n, c, _)| *n == node && *c == call)
        .map(|(_, _, i)| i.clone())
        .collect()
}

fn starts(net: &Net, node: usize, call: CallHandle) -> Vec<StreamSettings> {
    instructions(net, node, call)
        .into_iter()
        .filter_map(|i| match i {
            MediaInstruction::Start(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn flow_changes(events: &[CallEvent]) -> Vec<(MediaFlowState, MediaFlowState)> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::FlowStateChanged { previous, state } => Some((*previous, *state)),
            _ => None,
        })
        .collect()
}

fn with_media(seed: u64, media: MediaSettings) -> EngineConfig {
    EngineConfig {
        media,
        ..plain_config(seed)
    }
}

#[test]
fn each_call_opens_its_port_before_the_sdp_and_closes_it_at_the_end() {
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, b_call) = call(&mut net, alice);

    // A: the port is opened before the INVITE carries it; B: when it answers.
    let a = instructions(&net, A, a_call);
    let MediaInstruction::Open { port: a_port } = a[0] else {
        panic!("{a:?}");
    };
    let MediaInstruction::Open { port: b_port } = instructions(&net, B, b_call)[0] else {
        panic!();
    };
    assert_eq!((a_port % 2, b_port % 2), (0, 0), "RTP on even ports");
    assert!((16384..=32767).contains(&a_port));
    let invite = &net.requests(A, Method::Invite)[0].1;
    assert!(
        String::from_utf8_lossy(&invite.body).contains(&format!("m=audio {a_port} RTP/AVP")),
        "the offer carries the opened port"
    );

    // Each side starts its stream toward the other's port, with what was negotiated.
    let a_start = &starts(&net, A, a_call)[0];
    assert_eq!(a_start.local_port, a_port);
    assert_eq!(
        a_start.remote,
        Some(format!("127.0.0.2:{b_port}").parse().unwrap())
    );
    assert_eq!(
        (
            a_start.codec.as_str(),
            a_start.payload_type,
            a_start.clock_rate
        ),
        ("PCMU", 0, 8000)
    );
    assert_eq!(a_start.ptime, Duration::from_millis(20));
    assert_eq!(a_start.telephone_event, Some(101));
    assert!(a_start.send && a_start.receive && !a_start.echo);
    assert_eq!(a_start.media_timeout, Some(Duration::from_secs(60)));
    let b_start = &starts(&net, B, b_call)[0];
    assert_eq!(
        b_start.remote,
        Some(format!("127.0.0.1:{a_port}").parse().unwrap())
    );

    // RTP flowed both ways: both flows went Active.
    for (node, c) in [(A, a_call), (B, b_call)] {
        assert_eq!(
            flow_changes(&net.call_events(node, c)),
            [(MediaFlowState::Idle, MediaFlowState::Active)]
        );
    }

    // Hang up: both close their ports; the next call takes another port (round robin).
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, calls::CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        instructions(&net, A, a_call).last(),
        Some(&MediaInstruction::Close { port: a_port })
    );
    assert_eq!(
        instructions(&net, B, b_call).last(),
        Some(&MediaInstruction::Close { port: b_port })
    );
    let (next, _) = call(&mut net, alice);
    let MediaInstruction::Open { port } = instructions(&net, A, next)[0] else {
        panic!();
    };
    assert_eq!(port, a_port + 2);
}

#[test]
fn the_flow_goes_active_only_when_rtp_arrives() {
    let (mut net, alice, _bob) = Net::pair();
    net.media = false;
    let (a_call, _b_call) = call(&mut net, alice);
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established)
    );
    assert_eq!(net.engine(A).flow_state(a_call), Some(MediaFlowState::Idle));
    assert!(flow_changes(&net.call_events(A, a_call)).is_empty());

    let now = net.now;
    net.engine(A)
        .handle_media(now, a_call, MediaIndication::Receiving);
    net.run_for(Duration::from_millis(1));
    assert_eq!(
        net.engine(A).flow_state(a_call),
        Some(MediaFlowState::Active)
    );
    // Again: nothing new.
    let now = net.now;
    net.engine(A)
        .handle_media(now, a_call, MediaIndication::Receiving);
    net.run_for(Duration::from_millis(1));
    assert_eq!(flow_changes(&net.call_events(A, a_call)).len(), 1);
}

#[test]
fn a_held_peer_stops_our_sending_and_a_retrieve_restarts_it() {
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, b_call) = call(&mut net, alice);
    let now = net.now;
    net.engine(B)
        .hold(now, b_call, calls::HoldType::SendOnly)
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let a = starts(&net, A, a_call);
    let held = a.last().unwrap();
    // B holds with sendonly: A only receives.
    assert!(!held.send && held.receive, "{held:?}");
    let b = starts(&net, B, b_call);
    assert!(b.last().unwrap().send && !b.last().unwrap().receive);

    let now = net.now;
    net.engine(B).retrieve(now, b_call).unwrap();
    net.run_for(Duration::from_secs(1));
    let back = starts(&net, A, a_call);
    assert!(back.last().unwrap().send && back.last().unwrap().receive);
    // The port never changed.
    assert!(back.iter().all(|s| s.local_port == back[0].local_port));
}

#[test]
fn tones_are_raised_on_the_call() {
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, _) = call(&mut net, alice);
    let now = net.now;
    for tone in ['1', '#', 'D'] {
        net.engine(A).handle_media(
            now,
            a_call,
            MediaIndication::Tone {
                tone,
                duration: Duration::from_millis(100),
            },
        );
    }
    net.run_for(Duration::from_millis(1));
    let tones: Vec<char> = net
        .call_events(A, a_call)
        .iter()
        .filter_map(|e| match e {
            CallEvent::ToneReceived { tone, duration } => {
                assert_eq!(*duration, Duration::from_millis(100));
                Some(*tone)
            }
            _ => None,
        })
        .collect();
    assert_eq!(tones, ['1', '#', 'D']);

    // The flow's results reach the call's events in order.
    let now = net.now;
    for indication in [
        MediaIndication::PlayCompleted,
        MediaIndication::DtmfSent,
        MediaIndication::RecordingFailed {
            reason: "disk full".into(),
        },
    ] {
        net.engine(A).handle_media(now, a_call, indication);
    }
    net.run_for(Duration::from_millis(1));
    let events = net.call_events(A, a_call);
    let tail = &events[events.len() - 3..];
    assert_eq!(
        tail,
        [
            CallEvent::PlayCompleted,
            CallEvent::DtmfSent,
            CallEvent::RecordingFailed {
                reason: "disk full".into()
            }
        ]
    );
}

#[test]
fn a_media_timeout_is_reported_and_ends_the_call_when_configured() {
    for hangup in [false, true] {
        let media = MediaSettings {
            timeout: Some(Duration::from_secs(5)),
            hangup_on_timeout: hangup,
            ..MediaSettings::default()
        };
        let (mut net, alice, _bob) = Net::pair_with(with_media(1, media), plain_config(2));
        let (a_call, _) = call(&mut net, alice);
        assert_eq!(
            starts(&net, A, a_call)[0].media_timeout,
            Some(Duration::from_secs(5))
        );
        let now = net.now;
        net.engine(A).handle_media(
            now,
            a_call,
            MediaIndication::Timeout {
                after: Duration::from_secs(5),
            },
        );
        net.run_for(Duration::from_secs(1));
        let events = net.call_events(A, a_call);
        assert!(events.contains(&CallEvent::MediaTimedOut {
            after: Duration::from_secs(5)
        }));
        if hangup {
            assert_eq!(net.engine(A).call_state(a_call), None, "ended");
            assert_eq!(
                states(&events).last().unwrap(),
                &(
                    CallState::Terminating,
                    CallState::Terminated,
                    R::MediaTimeout
                )
            );
            let bye = &net.requests(A, Method::Bye)[0].1;
            let reason = header_values(&bye.headers, "Reason");
            assert!(reason[0].contains("No RTP for 5 s"), "{reason:?}");
        } else {
            assert_eq!(
                net.engine(A).call_state(a_call),
                Some(CallState::Established)
            );
            assert!(net.requests(A, Method::Bye).is_empty());
        }
    }
}

#[test]
fn sockets_that_cannot_be_bound_end_the_call_with_media_failure() {
    let (mut net, alice, _bob) = Net::pair();
    let (a_call, _) = call(&mut net, alice);
    let now = net.now;
    net.engine(A).handle_media(
        now,
        a_call,
        MediaIndication::Failed {
            reason: "port 16384 in use".into(),
        },
    );
    net.run_for(Duration::from_secs(1));
    let events = net.call_events(A, a_call);
    assert_eq!(
        states(&events).last().unwrap().2,
        R::MediaFailure {
            reason: "port 16384 in use".into()
        }
    );
    assert_eq!(net.requests(A, Method::Bye).len(), 1);
}

#[test]
fn a_full_port_range_refuses_the_call_and_ports_come_back() {
    // Two RTP ports: 20000 and 20002 (20004 has no RTCP neighbour in range).
    let media = MediaSettings {
        first_port: 20000,
        last_port: 20004,
        ..MediaSettings::default()
    };
    let (mut net, alice, _bob) = Net::pair_with(with_media(1, media), plain_config(2));
    let (first, _) = call(&mut net, alice);
    let (_second, _) = call(&mut net, alice);
    let third = new_call(&mut net, A, alice);
    let now = net.now;
    let error = net
        .engine(A)
        .establish(now, third, BOB, CallEstablishOptions::new())
        .unwrap_err();
    assert!(
        matches!(
            error,
            CallError::NoMediaPort {
                first: 20000,
                last: 20004
            }
        ),
        "{error}"
    );
    assert_eq!(net.engine(A).call_state(third), Some(CallState::Idle));
    // One call ends: its port serves the next.
    let now = net.now;
    net.engine(A)
        .terminate(now, first, calls::CallTerminateOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let now = net.now;
    net.engine(A)
        .establish(now, third, BOB, CallEstablishOptions::new())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(
        instructions(&net, A, third)[0],
        MediaInstruction::Open { port: 20000 }
    );
}

/// The virtual media plane's model of a media-anchored bridge (the engine gives the
/// `Join`s itself once its anchored `BackToBackCall` does; here the test plays them): A
/// calls B, B calls C, and B's two calls are joined. RTP from A reaches C through B's
/// relay, and the reverse; a join asked before the second stream started takes effect
/// when it does; unjoined (or closed), B's own streams are heard again.
#[test]
fn joined_streams_relay_between_their_phones() {
    let (mut net, alice, bob) = Net::pair();
    const C: usize = 2;
    let c_node = net.add("127.0.0.3:5060", plain_config(3));
    assert_eq!(c_node, C);
    net.nodes[C]
        .engine
        .add_application_endpoint(calls::ApplicationEndpointSettings::new(
            "sip:carol@127.0.0.3",
        ))
        .unwrap();
    net.set_app(C, accept_all(CallAcceptOptions::new()));
    let (a_call, ba_call) = call(&mut net, alice);
    let bc_call = new_call(&mut net, B, bob);
    // Joined before the B–C stream has started: remembered, not yet in effect.
    net.media_instruction(B, ba_call, &MediaInstruction::Join { peer: bc_call });
    assert_eq!(net.joined(B, ba_call), None);
    assert_eq!(net.hears(A, a_call), Some((B, ba_call)), "B's own flow");
    let now = net.now;
    net.engine(B)
        .establish(
            now,
            bc_call,
            "sip:carol@127.0.0.3",
            CallEstablishOptions::new(),
        )
        .unwrap();
    net.run_for(Duration::from_secs(1));
    let c_call = net.received(C).last().unwrap().call;
    assert_eq!(net.joined(B, ba_call), Some(bc_call));
    assert_eq!(net.joined(B, bc_call), Some(ba_call));
    // A hears C and C hears A, through B; C's flow went Active on A's RTP.
    assert_eq!(net.hears(C, c_call), Some((A, a_call)));
    assert_eq!(net.hears(A, a_call), Some((C, c_call)));
    assert_eq!(net.hears(B, ba_call), Some((A, a_call)));
    assert!(
        net.call_events(C, c_call)
            .contains(&CallEvent::FlowStateChanged {
                previous: MediaFlowState::Idle,
                state: MediaFlowState::Active,
            })
    );

    // A puts its call on hold (inactive): nothing from A any more, so C hears nothing.
    let now = net.now;
    net.engine(A)
        .hold(now, a_call, calls::HoldType::Inactive)
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.hears(C, c_call), None);
    let now = net.now;
    net.engine(A).retrieve(now, a_call).unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.hears(C, c_call), Some((A, a_call)));

    // Unjoined: each phone hears B's own stream again.
    net.media_instruction(B, bc_call, &MediaInstruction::Unjoin { peer: ba_call });
    assert_eq!(net.hears(C, c_call), Some((B, bc_call)));
    assert_eq!(net.hears(A, a_call), Some((B, ba_call)));
    // An unjoin of calls not joined changes nothing.
    net.media_instruction(B, bc_call, &MediaInstruction::Unjoin { peer: ba_call });
    assert_eq!(net.joined(B, bc_call), None);

    // Joined again, then A hangs up: the join ends with B's A-side stream.
    net.media_instruction(B, ba_call, &MediaInstruction::Join { peer: bc_call });
    assert_eq!(net.hears(C, c_call), Some((A, a_call)));
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, calls::CallTerminateOptions::default())
        .unwrap();
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.joined(B, bc_call), None);
    assert_eq!(net.hears(C, c_call), Some((B, bc_call)));
    let logged = instructions(&net, B, ba_call);
    assert!(logged.contains(&MediaInstruction::Join { peer: bc_call }));
}

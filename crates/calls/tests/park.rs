//! Call park on the virtual net. A (alice) calls T (a B2BUA, user `t`), whose application
//! bridges the call to B (bob); C (carol) retrieves. T parks a leg (by the API, by a
//! REFER to the park number 700, by a `park` route); the parked party hears T's music
//! (the net logs `Play` and `hears` finds T's stream, no one else); a call to the orbit,
//! or `retrieve_parked`, joins it to the retriever; an unretrieved call rings back the
//! parker; a watcher W (a hand-driven SIP peer) follows the orbit by RFC 4235 NOTIFYs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/net.rs"]
mod net;

use bytes::Bytes;
use calls::routing::{self, Action, Match, RouteTable, Rule};
use calls::{
    ApplicationEndpointSettings, B2bEvent, B2bHandle, B2bLeg, B2bState, BridgeMode, BridgeOptions,
    BridgeTarget, CallAcceptOptions, CallDeclineOptions, CallEstablishOptions, CallEvent,
    CallHandle, CallKind, CallOrbit, CallProvisionalResponseOptions, CallState,
    CallStateTransitionReason as R, CallTerminateOptions, CallTransferOptions,
    ConversationSettings, EndpointEvent, EndpointHandle, Engine, EngineConfig, EstablishFailure,
    Event, MediaInstruction, ParkSettings, TransferOutcome,
};
use net::*;
use sip_message::{Message, Method};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const A: usize = 0;
const B: usize = 1;
const T: usize = 2;
const C: usize = 3;
const T_ADDR: &str = "127.0.0.3:5060";
const T_URI: &str = "sip:t@127.0.0.3";
const CAROL: &str = "sip:carol@127.0.0.4";
const ORBIT_URI: &str = "sip:701@127.0.0.3";
const MODES: [BridgeMode; 2] = [BridgeMode::SignalingOnly, BridgeMode::MediaAnchored];

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// T's config: plain, with these park settings.
fn t_config(park: ParkSettings) -> EngineConfig {
    EngineConfig {
        park,
        ..plain_config(3)
    }
}

/// A, B, T and C: T bridges every incoming call to bob (in `mode`), B and C answer
/// every call. Returns the net and alice's and carol's endpoints.
fn setup(mode: BridgeMode, park: ParkSettings) -> (Net, EndpointHandle, EndpointHandle) {
    let (mut net, alice, _bob) = Net::pair();
    assert_eq!(net.add(T_ADDR, t_config(park)), T);
    net.engine(T)
        .add_application_endpoint(ApplicationEndpointSettings::new(T_URI))
        .unwrap();
    assert_eq!(net.add("127.0.0.4:5060", plain_config(4)), C);
    let carol = net
        .engine(C)
        .add_application_endpoint(ApplicationEndpointSettings::new(CAROL))
        .unwrap();
    net.set_app(T, move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            engine
                .bridge(now, received.call, BOB, BridgeOptions::new().mode(mode))
                .expect("bridge");
        }
    });
    net.set_app(B, accept_all(CallAcceptOptions::new()));
    net.set_app(C, accept_all(CallAcceptOptions::new()));
    (net, alice, carol)
}

/// A new call from `endpoint` on `node` to `target`.
fn dial(net: &mut Net, node: usize, endpoint: EndpointHandle, target: &str) -> CallHandle {
    let now = net.now;
    let engine = net.engine(node);
    let conversation = engine
        .new_conversation(endpoint, ConversationSettings::default())
        .unwrap();
    let call = engine.new_call(conversation, CallKind::AudioVideo).unwrap();
    engine
        .establish(now, call, target, CallEstablishOptions::new())
        .unwrap();
    call
}

/// A bridged call A → T → B.
struct Bridged {
    a_call: CallHandle,
    b_call: CallHandle,
    leg_a: CallHandle,
    leg_b: CallHandle,
    bridge: B2bHandle,
}

fn bridged(net: &mut Net, alice: EndpointHandle, wait: Duration) -> Bridged {
    let a_call = dial(net, A, alice, T_URI);
    net.run_for(wait);
    let b_call = net.only_received(B).call;
    let leg_a = net.only_received(T).call;
    let (bridge, _) = net.engine(T).bridge_of(leg_a).expect("leg A is bridged");
    let (_, leg_b) = net.engine(T).bridge_legs(bridge).unwrap();
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established),
        "{}",
        trace(net)
    );
    Bridged {
        a_call,
        b_call,
        leg_a,
        leg_b,
        bridge,
    }
}

fn last_state(net: &Net, node: usize, call: CallHandle) -> Option<(CallState, R)> {
    states(&net.call_events(node, call))
        .last()
        .map(|(_, s, r)| (*s, r.clone()))
}

fn park_events(net: &Net, node: usize, call: CallHandle) -> Vec<CallEvent> {
    net.call_events(node, call)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                CallEvent::Parked { .. }
                    | CallEvent::Retrieved { .. }
                    | CallEvent::ParkTimedOut { .. }
            )
        })
        .collect()
}

fn bridge_events(net: &Net, bridge: B2bHandle) -> Vec<B2bEvent> {
    net.nodes[T]
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Bridge { bridge: b, event } if *b == bridge => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn orbit(number: u16) -> CallOrbit {
    CallOrbit {
        number,
        uri: format!("sip:{number}@127.0.0.3"),
    }
}

/// The fields of the `o=` line of an SDP.
fn origin(sdp: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(sdp)
        .lines()
        .find_map(|l| l.strip_prefix("o="))
        .unwrap()
        .split(' ')
        .map(str::to_owned)
        .collect()
}

/// The parked party (node, call) hears T's music and no one else.
fn assert_hears_music(net: &Net, node: usize, phone: CallHandle, parked: CallHandle, ctx: &str) {
    assert_eq!(net.playing(T, parked), Some(None), "{ctx}");
    assert_eq!(net.hears(node, phone), Some((T, parked)), "{ctx}");
    assert!(
        net.media_log.iter().any(|(n, c, i)| *n == T
            && *c == parked
            && *i
                == MediaInstruction::Play {
                    file: None,
                    looped: true
                }),
        "{ctx}"
    );
}

/// A is joined (through T's relay) to `other` on `node`, and the reverse.
fn assert_joined(net: &Net, a_call: CallHandle, node: usize, other: CallHandle, ctx: &str) {
    assert_eq!(net.hears(A, a_call), Some((node, other)), "{ctx}");
    assert_eq!(net.hears(node, other), Some((A, a_call)), "{ctx}");
}

#[test]
fn park_by_api_plays_music_to_either_leg_in_both_modes_and_hangs_up_the_parker() {
    for mode in MODES {
        for parked_leg in [B2bLeg::A, B2bLeg::B] {
            let ctx = format!("{mode:?}, leg {parked_leg:?} parked");
            let (mut net, alice, _) = setup(mode, ParkSettings::default());
            let s = bridged(&mut net, alice, secs(2));
            let (parked, phone_node, phone, parker_node, parker) = match parked_leg {
                B2bLeg::A => (s.leg_a, A, s.a_call, B, s.b_call),
                B2bLeg::B => (s.leg_b, B, s.b_call, A, s.a_call),
            };
            let now = net.now;
            let got = net.engine(T).park(now, parked).unwrap();
            assert_eq!(got, orbit(701), "{ctx}");
            net.run_for(secs(3));
            let ctx = format!("{ctx}\n{}", trace(&net));
            // The parker was hung up, with a Reason naming the orbit.
            assert_eq!(
                last_state(&net, parker_node, parker),
                Some((CallState::Terminated, R::RemoteTerminated)),
                "{ctx}"
            );
            let bye = &net.requests(T, Method::Bye)[0].1;
            assert!(
                header_values(&bye.headers, "Reason")[0].contains("parked in 701"),
                "{ctx}"
            );
            // The parked party stays, with T: Parking, in orbit 701.
            assert_eq!(
                net.engine(phone_node).call_state(phone),
                Some(CallState::Established),
                "{ctx}"
            );
            assert_eq!(
                net.engine(T).call_state(parked),
                Some(CallState::Parking),
                "{ctx}"
            );
            assert_eq!(net.engine(T).parked_call(701), Some(parked), "{ctx}");
            assert_eq!(net.engine(T).orbit_of(parked), Some(orbit(701)));
            assert_eq!(
                park_events(&net, T, parked),
                vec![CallEvent::Parked { orbit: orbit(701) }],
                "{ctx}"
            );
            assert_eq!(
                last_state(&net, T, parked),
                Some((CallState::Parking, R::Parked))
            );
            let events = bridge_events(&net, s.bridge);
            assert!(
                events.contains(&B2bEvent::Parked {
                    call: parked,
                    orbit: orbit(701)
                }),
                "{events:?}"
            );
            assert_eq!(net.engine(T).bridge_state(s.bridge), None, "{ctx}");
            assert_hears_music(&net, phone_node, phone, parked, &ctx);
            if mode == BridgeMode::SignalingOnly {
                // T re-INVITEd the parked phone with its own media, continuing the
                // origin line of the SDP the phone knew (the other phone's).
                let reinvite = net
                    .requests(T, Method::Invite)
                    .into_iter()
                    .map(|(_, r)| r)
                    .find(|r| r.headers.to().unwrap().tag().is_some())
                    .expect("a re-INVITE");
                let offer = String::from_utf8_lossy(&reinvite.body).into_owned();
                assert!(offer.contains("c=IN IP4 127.0.0.3"), "{offer}");
                let known = match parked_leg {
                    B2bLeg::A => {
                        let ok = net
                            .responses(B)
                            .into_iter()
                            .map(|(_, r)| r)
                            .find(|r| r.status == 200)
                            .unwrap();
                        origin(&ok.body)
                    }
                    B2bLeg::B => origin(&net.requests(A, Method::Invite)[0].1.body),
                };
                let ours = origin(&reinvite.body);
                assert_eq!(ours[..2], known[..2], "{offer}");
                assert_eq!(
                    ours[2].parse::<u64>().unwrap(),
                    known[2].parse::<u64>().unwrap() + 1
                );
            } else {
                // The relay was unjoined before the music.
                let t_media: Vec<_> = net
                    .media_log
                    .iter()
                    .filter(|(n, _, _)| *n == T)
                    .map(|(_, _, i)| i.clone())
                    .collect();
                let unjoin = t_media
                    .iter()
                    .position(|i| matches!(i, MediaInstruction::Unjoin { .. }))
                    .expect("unjoined");
                let play = t_media
                    .iter()
                    .position(|i| matches!(i, MediaInstruction::Play { .. }))
                    .unwrap();
                assert!(unjoin < play, "{t_media:?}");
            }
            // The parked party hangs up: the orbit is free, T forgets the call.
            let now = net.now;
            net.engine(phone_node)
                .terminate(now, phone, CallTerminateOptions::new())
                .unwrap();
            net.run_for(secs(2));
            assert_eq!(net.engine(T).parked_call(701), None, "{ctx}");
            assert_eq!(net.engine(T).call_state(parked), None, "{ctx}");
            net.assert_quiet();
        }
    }
}

#[test]
fn a_plain_call_can_be_parked_once() {
    let (mut net, alice, _) = setup(BridgeMode::SignalingOnly, ParkSettings::default());
    net.set_app(T, accept_all(CallAcceptOptions::new()));
    let a_call = dial(&mut net, A, alice, T_URI);
    net.run_for(secs(2));
    let t_call = net.only_received(T).call;
    let now = net.now;
    let got = net.engine(T).park(now, t_call).unwrap();
    assert_eq!(got, orbit(701));
    net.run_for(secs(1));
    assert_hears_music(&net, A, a_call, t_call, &trace(&net));
    // Parked already: not again.
    let now = net.now;
    assert!(matches!(
        net.engine(T).park(now, t_call),
        Err(calls::CallError::InvalidState {
            state: CallState::Parking,
            ..
        })
    ));
}

#[test]
fn a_refer_to_the_park_number_parks_the_other_leg_in_both_modes() {
    for mode in MODES {
        for transferor in [B, A] {
            let (mut net, alice, _) = setup(mode, ParkSettings::default());
            let s = bridged(&mut net, alice, secs(2));
            // (the transferor's phone call, the parked phone and T's leg toward it)
            let (refer_call, parked_node, parked_phone, parked) = if transferor == B {
                (s.b_call, A, s.a_call, s.leg_a)
            } else {
                (s.a_call, B, s.b_call, s.leg_b)
            };
            let now = net.now;
            net.engine(transferor)
                .transfer(
                    now,
                    refer_call,
                    "sip:700@127.0.0.3",
                    CallTransferOptions::new(),
                )
                .unwrap();
            net.run_for(secs(5));
            let ctx = format!("{mode:?}, REFER from {transferor}\n{}", trace(&net));
            // The transferor heard 200 by NOTIFY, and hung up itself (RFC 5589 §6).
            let completed: Vec<_> = net
                .call_events(transferor, refer_call)
                .into_iter()
                .filter_map(|e| match e {
                    CallEvent::TransferCompleted {
                        final_status,
                        reason,
                        ..
                    } => Some((final_status, reason)),
                    _ => None,
                })
                .collect();
            assert_eq!(completed, vec![(200, TransferOutcome::Accepted)], "{ctx}");
            assert_eq!(
                last_state(&net, transferor, refer_call).map(|(s, _)| s),
                Some(CallState::Terminated),
                "{ctx}"
            );
            assert_eq!(
                net.requests(transferor, Method::Bye).len(),
                1,
                "the transferor hangs up: {ctx}"
            );
            assert!(net.requests(T, Method::Bye).is_empty(), "{ctx}");
            // The other party is parked in 701 and hears T's music.
            assert_eq!(net.engine(T).parked_call(701), Some(parked), "{ctx}");
            assert_eq!(
                park_events(&net, T, parked),
                vec![CallEvent::Parked { orbit: orbit(701) }]
            );
            assert_eq!(
                net.engine(parked_node).call_state(parked_phone),
                Some(CallState::Established)
            );
            assert_hears_music(&net, parked_node, parked_phone, parked, &ctx);
            // Carol dials the orbit: the parked party and carol talk.
            let c_call = dial_orbit(&mut net, 701);
            net.run_for(secs(2));
            let ctx = format!("{ctx}\n{}", trace(&net));
            assert_eq!(
                net.engine(C).call_state(c_call),
                Some(CallState::Established),
                "{ctx}"
            );
            assert_eq!(
                net.hears(parked_node, parked_phone),
                Some((C, c_call)),
                "{ctx}"
            );
            assert_eq!(
                net.hears(C, c_call),
                Some((parked_node, parked_phone)),
                "{ctx}"
            );
            let now = net.now;
            net.engine(parked_node)
                .terminate(now, parked_phone, CallTerminateOptions::new())
                .unwrap();
            net.run_for(secs(2));
            assert_eq!(
                last_state(&net, C, c_call),
                Some((CallState::Terminated, R::RemoteTerminated))
            );
            net.assert_quiet();
        }
    }
}

/// Carol dials orbit `number` at T (from her own endpoint).
fn dial_orbit(net: &mut Net, number: u16) -> CallHandle {
    let user = format!("sip:caller{}@127.0.0.4", net.nodes[C].log.len());
    let caller = net
        .engine(C)
        .add_application_endpoint(ApplicationEndpointSettings::new(user))
        .unwrap();
    dial(net, C, caller, &format!("sip:{number}@127.0.0.3"))
}

#[test]
fn an_invite_to_the_orbit_retrieves_the_call_and_joins_both_ways() {
    for mode in MODES {
        let (mut net, alice, carol) = setup(mode, ParkSettings::default());
        let s = bridged(&mut net, alice, secs(2));
        let now = net.now;
        net.engine(T).park(now, s.leg_a).unwrap();
        net.run_for(secs(2));
        let c_call = dial(&mut net, C, carol, ORBIT_URI);
        net.run_for(secs(2));
        let ctx = format!("{mode:?}\n{}", trace(&net));
        assert_eq!(
            net.engine(C).call_state(c_call),
            Some(CallState::Established),
            "{ctx}"
        );
        // T answered with its own media: carol sees T's address only.
        let t_ok = net
            .responses(T)
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| {
                r.status == 200
                    && r.headers.cseq().is_ok_and(|c| c.method == Method::Invite)
                    && r.headers.call_id().ok()
                        == net.requests(C, Method::Invite)[0].1.headers.call_id().ok()
            })
            .unwrap();
        let answer = String::from_utf8_lossy(&t_ok.body).into_owned();
        assert!(answer.contains("c=IN IP4 127.0.0.3"), "{answer}");
        assert!(!answer.contains("127.0.0.1"), "{answer}");
        // The retriever's leg at T, and the events.
        let t_leg = net
            .call_events(T, s.leg_a)
            .into_iter()
            .find_map(|e| match e {
                CallEvent::Retrieved { orbit: o, by } if o == orbit(701) => Some(by),
                _ => None,
            })
            .expect("Retrieved");
        assert_eq!(
            last_state(&net, T, s.leg_a),
            Some((CallState::Established, R::ParkRetrieved))
        );
        assert_eq!(net.engine(T).parked_call(701), None);
        assert_eq!(net.playing(T, s.leg_a), None, "{ctx}");
        // A new media-anchored bridge: the parked call is its leg A.
        let (bridge, leg) = net.engine(T).bridge_of(s.leg_a).unwrap();
        assert_eq!(leg, B2bLeg::A);
        assert_eq!(net.engine(T).bridge_legs(bridge), Some((s.leg_a, t_leg)));
        assert_eq!(
            net.engine(T).bridge_mode(bridge),
            Some(BridgeMode::MediaAnchored)
        );
        assert_joined(&net, s.a_call, C, c_call, &ctx);
        // Carol hangs up: alice's call ends too (a bridge like any other).
        let now = net.now;
        net.engine(C)
            .terminate(now, c_call, CallTerminateOptions::new())
            .unwrap();
        net.run_for(secs(2));
        assert_eq!(
            last_state(&net, A, s.a_call),
            Some((CallState::Terminated, R::RemoteTerminated)),
            "{ctx}"
        );
        net.assert_quiet();
    }
}

#[test]
fn an_empty_orbit_gets_404_and_a_second_retriever_486() {
    let (mut net, alice, carol) = setup(BridgeMode::MediaAnchored, ParkSettings::default());
    let c_call = dial(&mut net, C, carol, ORBIT_URI);
    net.run_for(secs(2));
    let refused = |net: &Net, call| {
        net.call_events(C, call).into_iter().find_map(|e| match e {
            CallEvent::EstablishCompleted {
                result: Err(EstablishFailure::Refused { status, .. }),
            } => Some(status),
            _ => None,
        })
    };
    assert_eq!(refused(&net, c_call), Some(404), "{}", trace(&net));
    // A number beyond the orbits is nobody: 404 from the endpoint.
    let c_call = dial(&mut net, C, carol, "sip:799@127.0.0.3");
    net.run_for(secs(2));
    assert_eq!(refused(&net, c_call), Some(404));
    // An orbit takes audio calls only: an IM call to it gets 488.
    let s = bridged(&mut net, alice, secs(2));
    let now = net.now;
    net.engine(T).park(now, s.leg_a).unwrap();
    net.run_for(secs(1));
    let now = net.now;
    let conversation = net
        .engine(C)
        .new_conversation(carol, ConversationSettings::default())
        .unwrap();
    let im = net
        .engine(C)
        .new_call(conversation, CallKind::InstantMessaging)
        .unwrap();
    net.engine(C)
        .establish(now, im, ORBIT_URI, CallEstablishOptions::new())
        .unwrap();
    net.run_for(secs(2));
    assert_eq!(refused(&net, im), Some(488), "{}", trace(&net));
    assert_eq!(net.engine(T).parked_call(701), Some(s.leg_a));
    // An orbit whose call a first retriever is taking: 486 for the second.
    // The first retriever's ACK is lost for a while, so its retrieval is still open.
    let first = dial(&mut net, C, carol, ORBIT_URI);
    net.filter = Some(Box::new(
        |m, _, _| !matches!(m, Message::Request(r) if r.method == Method::Ack),
    ));
    net.run_for(Duration::from_millis(200));
    let second = dial_orbit(&mut net, 701);
    net.run_for(Duration::from_millis(200));
    assert_eq!(refused(&net, second), Some(486), "{}", trace(&net));
    net.filter = None;
    net.run_for(secs(5));
    assert_eq!(
        net.engine(C).call_state(first),
        Some(CallState::Established)
    );
    assert_joined(&net, s.a_call, C, first, &trace(&net));
}

#[test]
fn retrieve_parked_calls_a_target_and_joins_it_on_answer_or_leaves_the_call_parked() {
    for mode in MODES {
        let (mut net, alice, _) = setup(mode, ParkSettings::default());
        let s = bridged(&mut net, alice, secs(2));
        let now = net.now;
        net.engine(T).park(now, s.leg_a).unwrap();
        net.run_for(secs(2));
        // Carol is busy: the call stays parked, still hearing the music.
        net.set_app(
            C,
            on_call(|engine, now, call| {
                engine
                    .decline(now, call, CallDeclineOptions::new(486))
                    .unwrap();
            }),
        );
        let now = net.now;
        let leg = net
            .engine(T)
            .retrieve_parked(now, 701, BridgeTarget::new(CAROL))
            .unwrap();
        // One retrieval at a time.
        let now = net.now;
        assert!(
            net.engine(T)
                .retrieve_parked(now, 701, BridgeTarget::new(CAROL))
                .is_err()
        );
        net.run_for(secs(2));
        let ctx = format!("{mode:?}\n{}", trace(&net));
        assert_eq!(last_state(&net, T, leg).unwrap().0, CallState::Terminated);
        assert_eq!(net.engine(T).parked_call(701), Some(s.leg_a), "{ctx}");
        assert_hears_music(&net, A, s.a_call, s.leg_a, &ctx);
        // The retrieval call comes from the orbit.
        let c_in = net.only_received(C);
        assert!(c_in.from.contains("Parked 701"), "{}", c_in.from);
        assert!(c_in.from.contains(ORBIT_URI), "{}", c_in.from);
        // Now carol answers.
        net.set_app(C, accept_all(CallAcceptOptions::new()));
        let now = net.now;
        let leg = net
            .engine(T)
            .retrieve_parked(now, 701, BridgeTarget::new(CAROL))
            .unwrap();
        net.run_for(secs(2));
        let ctx = format!("{mode:?}\n{}", trace(&net));
        let c_call = net.received(C)[1].call;
        assert_eq!(
            park_events(&net, T, s.leg_a).last(),
            Some(&CallEvent::Retrieved {
                orbit: orbit(701),
                by: leg
            }),
            "{ctx}"
        );
        assert_joined(&net, s.a_call, C, c_call, &ctx);
        // No such orbit, no retrieval.
        let now = net.now;
        assert!(matches!(
            net.engine(T)
                .retrieve_parked(now, 702, BridgeTarget::new(CAROL)),
            Err(calls::CallError::NoParkedCall(702))
        ));
    }
}

fn on_call(
    mut act: impl FnMut(&mut Engine, Instant, CallHandle) + 'static,
) -> impl FnMut(&mut Engine, Instant, &Event) + 'static {
    move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            act(engine, now, received.call);
        }
    }
}

fn short_park() -> ParkSettings {
    ParkSettings {
        timeout: secs(30),
        ..ParkSettings::default()
    }
}

#[test]
fn an_unretrieved_call_rings_back_the_parker_and_is_joined_on_answer() {
    for mode in MODES {
        let (mut net, alice, _) = setup(mode, short_park());
        let s = bridged(&mut net, alice, secs(2));
        let now = net.now;
        net.engine(T).park(now, s.leg_a).unwrap();
        net.run_for(secs(25));
        assert_eq!(net.received(B).len(), 1, "no ring-back before the timeout");
        net.run_for(secs(10));
        let ctx = format!("{mode:?}\n{}", trace(&net));
        // Bob is rung back at his Contact, from the orbit, and answers.
        let received = net.received(B);
        assert_eq!(received.len(), 2, "{ctx}");
        assert_eq!(received[1].request_uri, "sip:bob@127.0.0.2:5060");
        assert!(received[1].from.contains(ORBIT_URI), "{}", received[1].from);
        let b_again = received[1].call;
        assert_eq!(
            net.engine(B).call_state(b_again),
            Some(CallState::Established),
            "{ctx}"
        );
        let events = park_events(&net, T, s.leg_a);
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(events[1], CallEvent::ParkTimedOut { orbit: orbit(701) });
        assert!(
            matches!(&events[2], CallEvent::Retrieved { orbit: o, .. } if *o == orbit(701)),
            "{events:?}"
        );
        assert_joined(&net, s.a_call, B, b_again, &ctx);
        assert_eq!(net.engine(T).parked_call(701), None);
    }
}

#[test]
fn an_unretrieved_call_is_ended_when_nobody_answers_the_ring_back() {
    // Bob declines the ring-back; or lets it ring until the establish time limit.
    for ring in [false, true] {
        let (mut net, alice, _) = setup(BridgeMode::MediaAnchored, short_park());
        let s = bridged(&mut net, alice, secs(2));
        let now = net.now;
        net.engine(T).park(now, s.leg_a).unwrap();
        net.run_for(secs(2));
        if ring {
            net.set_app(
                B,
                on_call(|engine, now, call| {
                    engine
                        .send_provisional(now, call, CallProvisionalResponseOptions::new(180))
                        .unwrap();
                }),
            );
        } else {
            net.set_app(
                B,
                on_call(|engine, now, call| {
                    engine
                        .decline(now, call, CallDeclineOptions::new(486))
                        .unwrap();
                }),
            );
        }
        net.run_for(secs(30 + 130));
        let ctx = format!("ring {ring}\n{}", trace(&net));
        assert_eq!(net.received(B).len(), 2, "{ctx}");
        // Alice's call was ended by T with a Reason.
        assert_eq!(
            last_state(&net, A, s.a_call),
            Some((CallState::Terminated, R::RemoteTerminated)),
            "{ctx}"
        );
        let bye = net
            .requests(T, Method::Bye)
            .into_iter()
            .map(|(_, r)| r)
            .find(|r| {
                r.headers.call_id().ok()
                    == net.requests(A, Method::Invite)[0].1.headers.call_id().ok()
            })
            .expect("BYE to alice");
        assert!(
            header_values(&bye.headers, "Reason")[0].contains("not retrieved"),
            "{ctx}"
        );
        assert_eq!(
            park_events(&net, T, s.leg_a)[1],
            CallEvent::ParkTimedOut { orbit: orbit(701) }
        );
        assert_eq!(net.engine(T).parked_call(701), None);
        net.assert_quiet();
    }
}

#[test]
fn a_plain_call_rings_the_fallback_or_is_ended_without_one() {
    for fallback in [Some(CAROL.to_owned()), None] {
        let park = ParkSettings {
            fallback: fallback.clone(),
            ..short_park()
        };
        let (mut net, alice, _) = setup(BridgeMode::SignalingOnly, park);
        net.set_app(T, accept_all(CallAcceptOptions::new()));
        let a_call = dial(&mut net, A, alice, T_URI);
        net.run_for(secs(2));
        let t_call = net.only_received(T).call;
        let now = net.now;
        net.engine(T).park(now, t_call).unwrap();
        net.run_for(secs(35));
        let ctx = format!("fallback {fallback:?}\n{}", trace(&net));
        match fallback {
            Some(_) => {
                let c_call = net.only_received(C).call;
                assert_joined(&net, a_call, C, c_call, &ctx);
            }
            None => {
                assert!(net.received(C).is_empty(), "{ctx}");
                assert_eq!(
                    last_state(&net, A, a_call),
                    Some((CallState::Terminated, R::RemoteTerminated)),
                    "{ctx}"
                );
            }
        }
    }
}

#[test]
fn a_park_route_answers_the_caller_with_music_and_the_orbit_retrieves_it() {
    let (mut net, alice, _bob) = Net::pair();
    let mut config = t_config(ParkSettings::default());
    let when = Match {
        user: Some(routing::regex("^parkme$").unwrap()),
        ..Match::default()
    };
    config.routes = RouteTable::new(vec![Rule::new("park", when, Action::Park).unwrap()]);
    assert_eq!(net.add(T_ADDR, config), T);
    assert_eq!(net.add("127.0.0.4:5060", plain_config(4)), C);
    let carol = net
        .engine(C)
        .add_application_endpoint(ApplicationEndpointSettings::new(CAROL))
        .unwrap();
    net.set_app(C, accept_all(CallAcceptOptions::new()));
    let a_call = dial(&mut net, A, alice, "sip:parkme@127.0.0.3");
    net.run_for(secs(2));
    let ctx = trace(&net);
    assert_eq!(
        net.engine(A).call_state(a_call),
        Some(CallState::Established),
        "{ctx}"
    );
    let parked = net.engine(T).parked_call(701).expect("parked");
    assert_hears_music(&net, A, a_call, parked, &ctx);
    let c_call = dial(&mut net, C, carol, ORBIT_URI);
    net.run_for(secs(2));
    assert_joined(&net, a_call, C, c_call, &trace(&net));
}

#[test]
fn park_and_retrieve_survive_ten_percent_loss_in_both_modes() {
    for mode in MODES {
        for seed in 0..6u64 {
            let ctx = format!("{mode:?} seed {seed}");
            let (mut net, alice, carol) = setup(mode, ParkSettings::default());
            net.reseed(seed);
            net.loss_percent = 10;
            let s = bridged(&mut net, alice, secs(40));
            let now = net.now;
            net.engine(T).park(now, s.leg_a).unwrap();
            net.run_for(secs(40));
            assert_eq!(
                net.engine(A).call_state(s.a_call),
                Some(CallState::Established),
                "{ctx}\n{}",
                trace(&net)
            );
            assert_hears_music(&net, A, s.a_call, s.leg_a, &ctx);
            let c_call = dial(&mut net, C, carol, ORBIT_URI);
            net.run_for(secs(40));
            assert_joined(
                &net,
                s.a_call,
                C,
                c_call,
                &format!("{ctx}\n{}", trace(&net)),
            );
            let now = net.now;
            net.engine(A)
                .terminate(now, s.a_call, CallTerminateOptions::new())
                .unwrap();
            net.run_for(secs(60));
            assert_eq!(
                last_state(&net, C, c_call),
                Some((CallState::Terminated, R::RemoteTerminated)),
                "{ctx}\n{}",
                trace(&net)
            );
            net.loss_percent = 0;
            net.assert_quiet();
        }
    }
}

// ---- BLF (RFC 4235)

const W_ADDR: &str = "127.0.0.9:5060";

fn t_addr() -> SocketAddr {
    T_ADDR.parse().unwrap()
}

/// A SUBSCRIBE from the watcher W.
fn subscribe(
    uri: &str,
    event: &str,
    expires: u32,
    call_id: &str,
    cseq: u32,
    to_tag: Option<&str>,
) -> Message {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let text = format!(
        "SUBSCRIBE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {W_ADDR};branch=z9hG4bK-{call_id}-{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:watcher@127.0.0.9>;tag=w-{call_id}\r\n\
         To: <sip:701@127.0.0.3>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} SUBSCRIBE\r\n\
         Contact: <sip:watcher@{W_ADDR}>\r\n\
         Event: {event}\r\n\
         Accept: application/dialog-info+xml\r\n\
         Expires: {expires}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    Message::parse(Bytes::from(text)).unwrap()
}

/// The NOTIFYs W got for `call_id`, without retransmissions: (Subscription-State, body).
fn notifies(net: &Net, w: usize, call_id: &str) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for r in net.raw[w].requests(Method::Notify) {
        if r.headers.call_id().ok() != Some(call_id) {
            continue;
        }
        let seq = r.headers.cseq().unwrap().seq;
        if seen.contains(&seq) {
            continue;
        }
        seen.push(seq);
        assert_eq!(header_values(&r.headers, "Event"), vec!["dialog"]);
        assert_eq!(
            header_values(&r.headers, "Content-Type"),
            vec!["application/dialog-info+xml"]
        );
        assert_eq!(
            header_values(&r.headers, "Contact"),
            vec!["<sip:701@127.0.0.3:5060>"]
        );
        out.push((
            header_values(&r.headers, "Subscription-State")[0].clone(),
            String::from_utf8_lossy(&r.body).into_owned(),
        ));
    }
    out
}

/// The final responses W got for the SUBSCRIBE with `call_id` and `cseq`.
fn subscribe_statuses(net: &Net, w: usize, call_id: &str, cseq: u32) -> Vec<u16> {
    net.raw[w]
        .responses()
        .into_iter()
        .filter(|r| {
            r.headers.call_id().ok() == Some(call_id)
                && r.headers
                    .cseq()
                    .is_ok_and(|c| c.seq == cseq && c.method == Method::Subscribe)
        })
        .map(|r| r.status)
        .collect()
}

/// A tiny XML check: declarations skipped, every element closed in order, attribute
/// values quoted. Returns the element names in document order.
fn well_formed(xml: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = xml.trim();
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        assert!(
            !text.contains('>') && !text.contains('&') || text.contains("&amp;"),
            "{xml}"
        );
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('?') {
            assert!(tag.ends_with('?'), "{xml}");
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "{xml}");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let mut parts = tag.splitn(2, char::is_whitespace);
        let name = parts.next().unwrap().to_owned();
        let attributes = parts.next().unwrap_or_default();
        assert_eq!(attributes.matches('"').count() % 2, 0, "{xml}");
        for attribute in attributes.split('"').step_by(2) {
            let attribute = attribute.trim();
            assert!(
                attribute.is_empty() || attribute.ends_with('='),
                "{attribute} in {xml}"
            );
        }
        names.push(name.clone());
        if !self_closing {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?} in {xml}");
    assert!(rest.trim().is_empty(), "{xml}");
    names
}

/// The `version` attribute of the `dialog-info` element.
fn version_of(xml: &str) -> u32 {
    let element = &xml[xml.find("<dialog-info").unwrap()..];
    let at = element.find(" version=\"").unwrap() + 10;
    element[at..].split('"').next().unwrap().parse().unwrap()
}

#[test]
fn blf_watchers_follow_the_orbit_from_free_to_parked_to_retrieved_and_unsubscribe() {
    let (mut net, alice, carol) = setup(BridgeMode::SignalingOnly, ParkSettings::default());
    let w = net.add_raw(W_ADDR);
    net.send_raw(
        w,
        t_addr(),
        subscribe(ORBIT_URI, "dialog", 600, "blf-1", 1, None),
    );
    net.run_for(secs(1));
    let ctx = trace(&net);
    assert_eq!(subscribe_statuses(&net, w, "blf-1", 1), vec![200], "{ctx}");
    let ok = net.raw[w].responses()[0].clone();
    assert_eq!(header_values(&ok.headers, "Expires"), vec!["600"]);
    assert!(!header_values(&ok.headers, "Contact").is_empty());
    let t_tag = String::from_utf8_lossy(ok.headers.to().unwrap().tag().unwrap()).into_owned();
    // At once: the full state of a free orbit, version 0.
    let seen = notifies(&net, w, "blf-1");
    assert_eq!(seen.len(), 1, "{ctx}");
    assert!(seen[0].0.starts_with("active;expires="), "{}", seen[0].0);
    assert_eq!(well_formed(&seen[0].1), vec!["dialog-info"]);
    assert_eq!(version_of(&seen[0].1), 0);
    assert!(
        seen[0]
            .1
            .contains("xmlns=\"urn:ietf:params:xml:ns:dialog-info\"")
    );
    assert!(seen[0].1.contains("state=\"full\""));
    assert!(
        seen[0].1.contains("entity=\"sip:701@127.0.0.3\""),
        "{}",
        seen[0].1
    );
    // A call is parked: confirmed.
    let s = bridged(&mut net, alice, secs(2));
    let now = net.now;
    net.engine(T).park(now, s.leg_a).unwrap();
    net.run_for(secs(2));
    let seen = notifies(&net, w, "blf-1");
    assert_eq!(seen.len(), 2, "{}", trace(&net));
    assert_eq!(
        well_formed(&seen[1].1),
        vec!["dialog-info", "dialog", "state"]
    );
    assert_eq!(version_of(&seen[1].1), 1);
    assert!(
        seen[1].1.contains("<state>confirmed</state>"),
        "{}",
        seen[1].1
    );
    // Retrieved: free again.
    let c_call = dial(&mut net, C, carol, ORBIT_URI);
    net.run_for(secs(2));
    assert_eq!(
        net.engine(C).call_state(c_call),
        Some(CallState::Established)
    );
    let seen = notifies(&net, w, "blf-1");
    assert_eq!(seen.len(), 3, "{}", trace(&net));
    assert_eq!(well_formed(&seen[2].1), vec!["dialog-info"]);
    assert_eq!(version_of(&seen[2].1), 2);
    // The NOTIFYs are in one dialog: our tag as From, W's as To, CSeq rising.
    let requests = net.raw[w].requests(Method::Notify);
    for r in &requests {
        assert!(header_values(&r.headers, "From")[0].contains(&t_tag));
        assert!(header_values(&r.headers, "To")[0].contains("tag=w-blf-1"));
        assert_eq!(r.uri, "sip:watcher@127.0.0.9:5060");
    }
    let seqs: Vec<u32> = requests
        .iter()
        .map(|r| r.headers.cseq().unwrap().seq)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // A refresh: 200 and a NOTIFY of the same state, the next version.
    let contact = "sip:701@127.0.0.3:5060";
    net.send_raw(
        w,
        t_addr(),
        subscribe(contact, "dialog", 300, "blf-1", 2, Some(&t_tag)),
    );
    net.run_for(secs(1));
    assert_eq!(subscribe_statuses(&net, w, "blf-1", 2), vec![200]);
    let seen = notifies(&net, w, "blf-1");
    assert_eq!(seen.len(), 4);
    assert_eq!(version_of(&seen[3].1), 3);
    assert!(seen[3].0.starts_with("active;expires="), "{}", seen[3].0);
    // Un-SUBSCRIBE: a final NOTIFY, terminated.
    net.send_raw(
        w,
        t_addr(),
        subscribe(contact, "dialog", 0, "blf-1", 3, Some(&t_tag)),
    );
    net.run_for(secs(1));
    assert_eq!(subscribe_statuses(&net, w, "blf-1", 3), vec![200]);
    let seen = notifies(&net, w, "blf-1");
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[4].0, "terminated;reason=timeout");
    assert_eq!(version_of(&seen[4].1), 4);
    // Over: the dialog is gone.
    net.send_raw(
        w,
        t_addr(),
        subscribe(contact, "dialog", 300, "blf-1", 4, Some(&t_tag)),
    );
    net.run_for(secs(1));
    assert_eq!(subscribe_statuses(&net, w, "blf-1", 4), vec![481]);
}

#[test]
fn blf_refuses_other_events_and_non_orbits_and_expires() {
    let (mut net, _, _) = setup(BridgeMode::SignalingOnly, ParkSettings::default());
    let w = net.add_raw(W_ADDR);
    net.send_raw(
        w,
        t_addr(),
        subscribe(ORBIT_URI, "presence", 600, "blf-2", 1, None),
    );
    net.send_raw(
        w,
        t_addr(),
        subscribe("sip:t@127.0.0.3", "dialog", 600, "blf-3", 1, None),
    );
    net.send_raw(
        w,
        t_addr(),
        subscribe("sip:799@127.0.0.3", "dialog", 600, "blf-4", 1, None),
    );
    net.send_raw(
        w,
        t_addr(),
        subscribe(ORBIT_URI, "dialog", 10, "blf-5", 1, None),
    );
    net.run_for(secs(1));
    assert_eq!(subscribe_statuses(&net, w, "blf-2", 1), vec![489]);
    let bad_event = net.raw[w]
        .responses()
        .into_iter()
        .find(|r| r.status == 489)
        .unwrap();
    assert_eq!(
        header_values(&bad_event.headers, "Allow-Events"),
        vec!["dialog"]
    );
    assert_eq!(subscribe_statuses(&net, w, "blf-3", 1), vec![404]);
    assert_eq!(subscribe_statuses(&net, w, "blf-4", 1), vec![404]);
    assert_eq!(subscribe_statuses(&net, w, "blf-5", 1), vec![423]);
    let brief = net.raw[w]
        .responses()
        .into_iter()
        .find(|r| r.status == 423)
        .unwrap();
    assert_eq!(header_values(&brief.headers, "Min-Expires"), vec!["60"]);
    assert!(net.raw[w].requests(Method::Notify).is_empty());
    // A subscription of 60 s ends by itself with a final NOTIFY.
    net.send_raw(
        w,
        t_addr(),
        subscribe(ORBIT_URI, "dialog", 60, "blf-6", 1, None),
    );
    net.run_for(secs(61));
    let seen = notifies(&net, w, "blf-6");
    assert_eq!(seen.len(), 2, "{}", trace(&net));
    assert_eq!(seen[1].0, "terminated;reason=timeout");
    // Nothing is left to wake T for once the transactions are over.
    net.run_for(secs(40));
    assert_eq!(net.engine(T).poll_timeout(), None);
}

#[test]
fn blf_shows_the_ring_back_as_early() {
    let (mut net, alice, _) = setup(BridgeMode::MediaAnchored, short_park());
    let w = net.add_raw(W_ADDR);
    net.send_raw(
        w,
        t_addr(),
        subscribe(ORBIT_URI, "dialog", 3600, "blf-7", 1, None),
    );
    let s = bridged(&mut net, alice, secs(2));
    net.set_app(
        B,
        on_call(|engine, now, call| {
            engine
                .send_provisional(now, call, CallProvisionalResponseOptions::new(180))
                .unwrap();
        }),
    );
    let now = net.now;
    net.engine(T).park(now, s.leg_a).unwrap();
    net.run_for(secs(32));
    let seen = notifies(&net, w, "blf-7");
    let states: Vec<Option<&str>> = seen
        .iter()
        .map(|(_, xml)| {
            ["confirmed", "early"]
                .into_iter()
                .find(|s| xml.contains(&format!("<state>{s}</state>")))
        })
        .collect();
    assert_eq!(
        states,
        vec![None, Some("confirmed"), Some("early")],
        "{}",
        trace(&net)
    );
}

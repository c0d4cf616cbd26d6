//! Conference rooms on the virtual net. Three phones A (alice), B (bob) and C (carol)
//! each call T, which accepts with its own media; T's application puts the calls in a
//! room and the net's media plane says who hears whom ([`Net::hears_all`]): each phone
//! hears the other two and not itself; a member that hangs up or leaves is heard no
//! more, and a call that left hears T's own stream again. A signalling-only bridge leg
//! cannot join (its RTP does not pass through T); a media-anchored one leaves its bridge.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/net.rs"]
mod net;

use calls::{
    ApplicationEndpointSettings, B2bEvent, B2bState, BridgeMode, BridgeOptions, CallAcceptOptions,
    CallError, CallEstablishOptions, CallEvent, CallHandle, CallKind, CallState,
    CallTerminateOptions, ConversationSettings, EndpointEvent, EndpointHandle, Event,
    MediaInstruction, Operation, RoomEvent, RoomId, RoomLeaveReason,
};
use net::*;
use std::time::Duration;

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const T: usize = 3;
const T_ADDR: &str = "127.0.0.4:5060";
const T_URI: &str = "sip:t@127.0.0.4";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A, B, C and T; T runs `app`, A, B and C answer every call. Returns the net and the
/// three phones' endpoints.
fn setup(
    app: impl FnMut(&mut calls::Engine, std::time::Instant, &Event) + 'static,
) -> (Net, [EndpointHandle; 3]) {
    let (mut net, phones) = Net::trio();
    assert_eq!(net.add(T_ADDR, plain_config(4)), T);
    net.engine(T)
        .add_application_endpoint(ApplicationEndpointSettings::new(T_URI))
        .unwrap();
    net.set_app(T, app);
    for node in [A, B, C] {
        net.set_app(node, accept_all(CallAcceptOptions::new()));
    }
    (net, phones)
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

/// T's call from the phone on `node` (found by its From).
fn t_call_from(net: &Net, node: usize) -> CallHandle {
    let user = ["alice", "bob", "carol"][node];
    let calls: Vec<CallHandle> = net
        .received(T)
        .into_iter()
        .filter(|r| r.from.contains(user))
        .map(|r| r.call)
        .collect();
    assert_eq!(calls.len(), 1, "{user}: {calls:?}");
    calls[0]
}

/// A phone's call and T's side of it.
#[derive(Debug, Clone, Copy)]
struct Party {
    node: usize,
    phone: CallHandle,
    t: CallHandle,
}

/// A, B and C each call T, which accepts with its own media.
fn three_calls() -> (Net, [Party; 3]) {
    let (mut net, phones) = setup(accept_all(CallAcceptOptions::new()));
    let mut out = Vec::new();
    for (node, endpoint) in [A, B, C].into_iter().zip(phones) {
        let phone = dial(&mut net, node, endpoint, T_URI);
        out.push((node, phone));
    }
    net.run_for(secs(2));
    let parties: Vec<Party> = out
        .into_iter()
        .map(|(node, phone)| Party {
            node,
            phone,
            t: t_call_from(&net, node),
        })
        .collect();
    for p in &parties {
        assert_eq!(
            net.engine(p.node).call_state(p.phone),
            Some(CallState::Established),
            "{}",
            trace(&net)
        );
        // Before any room: each phone hears T's own stream of its call.
        assert_eq!(net.hears_all(p.node, p.phone), vec![(T, p.t)]);
    }
    (net, [parties[0], parties[1], parties[2]])
}

fn room_events(net: &Net, room: RoomId) -> Vec<RoomEvent> {
    net.nodes[T]
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Room { room: r, event } if *r == room => Some(event.clone()),
            _ => None,
        })
        .collect()
}

fn join_all(net: &mut Net, parties: &[Party]) -> RoomId {
    let room = net.engine(T).new_room();
    assert!(room.to_string().starts_with("room-"), "{room}");
    for p in parties {
        let now = net.now;
        net.engine(T).join_room(now, p.t, room).unwrap();
    }
    net.run_for(Duration::from_millis(100));
    room
}

/// What `p`'s phone hears, sorted.
fn heard(net: &Net, p: &Party) -> Vec<(usize, CallHandle)> {
    let mut all = net.hears_all(p.node, p.phone);
    all.sort();
    all
}

fn origins(parties: &[&Party]) -> Vec<(usize, CallHandle)> {
    let mut all: Vec<(usize, CallHandle)> = parties.iter().map(|p| (p.node, p.phone)).collect();
    all.sort();
    all
}

#[test]
fn three_members_each_hear_the_other_two_and_not_themselves() {
    let (mut net, [a, b, c]) = three_calls();
    let room = join_all(&mut net, &[a, b, c]);
    assert_eq!(net.engine(T).room_members(room), vec![a.t, b.t, c.t]);
    for p in [a, b, c] {
        assert_eq!(net.engine(T).room_of(p.t), Some(room));
        // The media layer was told, on the call.
        assert!(
            net.media_log.iter().any(|(n, call, i)| *n == T
                && *call == p.t
                && *i == MediaInstruction::JoinRoom { room }),
            "{:?}",
            net.media_log
        );
    }
    assert_eq!(heard(&net, &a), origins(&[&b, &c]));
    assert_eq!(heard(&net, &b), origins(&[&a, &c]));
    assert_eq!(heard(&net, &c), origins(&[&a, &b]));
    // `hears` answers with one of them; T's members still hear their own phones.
    assert!(origins(&[&b, &c]).contains(&net.hears(A, a.phone).unwrap()));
    for p in [a, b, c] {
        assert_eq!(net.hears_all(T, p.t), vec![(p.node, p.phone)]);
    }
    assert_eq!(
        room_events(&net, room),
        vec![
            RoomEvent::Joined { call: a.t },
            RoomEvent::Joined { call: b.t },
            RoomEvent::Joined { call: c.t },
        ]
    );
    // Joining again changes nothing.
    let now = net.now;
    net.engine(T).join_room(now, a.t, room).unwrap();
    assert_eq!(net.engine(T).room_members(room), vec![a.t, b.t, c.t]);
    assert_eq!(room_events(&net, room).len(), 3);
}

#[test]
fn a_member_that_hangs_up_leaves_and_the_others_still_hear_each_other() {
    let (mut net, [a, b, c]) = three_calls();
    let room = join_all(&mut net, &[a, b, c]);
    let now = net.now;
    net.engine(B)
        .terminate(now, b.phone, CallTerminateOptions::new())
        .unwrap();
    net.run_for(secs(1));
    assert_eq!(net.engine(T).call_state(b.t), None, "b's call is gone on T");
    assert_eq!(net.engine(T).room_members(room), vec![a.t, c.t]);
    assert_eq!(net.engine(T).room_of(b.t), None);
    assert_eq!(heard(&net, &a), origins(&[&c]));
    assert_eq!(heard(&net, &c), origins(&[&a]));
    assert_eq!(
        room_events(&net, room).last(),
        Some(&RoomEvent::Left {
            call: b.t,
            reason: RoomLeaveReason::CallEnded
        })
    );
    // No LeaveRoom for an ended call: its Close removes it.
    assert!(
        !net.media_log
            .iter()
            .any(|(_, call, i)| *call == b.t && matches!(i, MediaInstruction::LeaveRoom { .. }))
    );
    // The last one alone hears nobody; the room stays until closed.
    let now = net.now;
    net.engine(C)
        .terminate(now, c.phone, CallTerminateOptions::new())
        .unwrap();
    net.run_for(secs(1));
    assert_eq!(net.engine(T).room_members(room), vec![a.t]);
    assert!(net.hears_all(A, a.phone).is_empty());
    let now = net.now;
    net.engine(A)
        .terminate(now, a.phone, CallTerminateOptions::new())
        .unwrap();
    net.run_for(secs(1));
    assert_eq!(net.engine(T).room_members(room), Vec::<CallHandle>::new());
    assert_eq!(net.engine(T).rooms(), vec![room]);
    let now = net.now;
    assert_eq!(net.engine(T).close_room(now, room).unwrap(), vec![]);
    assert_eq!(net.engine(T).rooms(), vec![]);
    net.collect();
    assert_eq!(room_events(&net, room).last(), Some(&RoomEvent::Closed));
    assert!(matches!(
        net.engine(T).close_room(now, room),
        Err(CallError::NoSuchRoom(r)) if r == room
    ));
    net.assert_quiet();
}

#[test]
fn leave_room_gives_the_call_its_own_stream_back() {
    let (mut net, [a, b, c]) = three_calls();
    let room = join_all(&mut net, &[a, b, c]);
    let now = net.now;
    assert_eq!(net.engine(T).leave_room(now, a.t).unwrap(), room);
    net.run_for(Duration::from_millis(100));
    assert!(
        net.media_log.iter().any(|(n, call, i)| *n == T
            && *call == a.t
            && *i == MediaInstruction::LeaveRoom { room })
    );
    // A hears T's own stream of its call, nobody in the room; the others no longer hear A.
    assert_eq!(net.hears_all(A, a.phone), vec![(T, a.t)]);
    assert_eq!(heard(&net, &b), origins(&[&c]));
    assert_eq!(heard(&net, &c), origins(&[&b]));
    assert_eq!(net.engine(T).room_members(room), vec![b.t, c.t]);
    assert_eq!(
        room_events(&net, room).last(),
        Some(&RoomEvent::Left {
            call: a.t,
            reason: RoomLeaveReason::Requested
        })
    );
    // Leaving again: it is in no room.
    let now = net.now;
    assert!(matches!(
        net.engine(T).leave_room(now, a.t),
        Err(CallError::NotInRoom(call)) if call == a.t
    ));
    // Closing the room gives everyone their own stream.
    assert_eq!(net.engine(T).close_room(now, room).unwrap(), vec![b.t, c.t]);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.hears_all(B, b.phone), vec![(T, b.t)]);
    assert_eq!(net.hears_all(C, c.phone), vec![(T, c.t)]);
    for p in [b, c] {
        assert_eq!(net.engine(T).room_of(p.t), None);
        assert_eq!(
            net.engine(T).call_state(p.t),
            Some(CallState::Established),
            "the calls go on"
        );
    }
}

#[test]
fn a_member_moves_between_rooms_and_hears_the_new_one() {
    let (mut net, [a, b, c]) = three_calls();
    let first = join_all(&mut net, &[a, b]);
    let second = net.engine(T).new_room();
    let now = net.now;
    net.engine(T).join_room(now, c.t, second).unwrap();
    net.engine(T).join_room(now, a.t, second).unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.engine(T).room_members(first), vec![b.t]);
    assert_eq!(net.engine(T).room_members(second), vec![c.t, a.t]);
    assert_eq!(heard(&net, &a), origins(&[&c]));
    assert_eq!(heard(&net, &c), origins(&[&a]));
    assert!(net.hears_all(B, b.phone).is_empty());
    assert_eq!(
        room_events(&net, first).last(),
        Some(&RoomEvent::Left {
            call: a.t,
            reason: RoomLeaveReason::Requested
        })
    );
}

#[test]
fn a_room_wide_announcement_goes_to_the_media_layer_on_a_member() {
    let (mut net, [a, b, _c]) = three_calls();
    let room = net.engine(T).new_room();
    // Nobody to hear it yet.
    assert!(matches!(
        net.engine(T).play_to_room(room, None, false),
        Err(CallError::InvalidArgument { what: "room", .. })
    ));
    let room = {
        let now = net.now;
        net.engine(T).join_room(now, a.t, room).unwrap();
        net.engine(T).join_room(now, b.t, room).unwrap();
        room
    };
    net.engine(T)
        .play_to_room(room, Some("/music/welcome.wav".into()), false)
        .unwrap();
    net.run_for(Duration::from_millis(50));
    assert_eq!(
        net.room_playing(T, room),
        Some(Some("/music/welcome.wav".into()))
    );
    assert!(net.media_log.iter().any(|(n, call, i)| *n == T
        && *call == a.t
        && *i
            == MediaInstruction::PlayRoom {
                room,
                file: Some("/music/welcome.wav".into()),
                looped: false
            }));
    let unknown = net.engine(T).new_room();
    let now = net.now;
    net.engine(T).close_room(now, unknown).unwrap();
    assert!(matches!(
        net.engine(T).play_to_room(unknown, None, true),
        Err(CallError::NoSuchRoom(r)) if r == unknown
    ));
}

#[test]
fn a_parked_member_leaves_its_room_before_the_music() {
    let (mut net, [a, b, c]) = three_calls();
    let room = join_all(&mut net, &[a, b, c]);
    let now = net.now;
    let orbit = net.engine(T).park(now, a.t).unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.engine(T).room_members(room), vec![b.t, c.t]);
    let leave = net
        .media_log
        .iter()
        .position(|(_, call, i)| *call == a.t && *i == MediaInstruction::LeaveRoom { room })
        .expect("LeaveRoom");
    let play = net
        .media_log
        .iter()
        .position(|(_, call, i)| *call == a.t && matches!(i, MediaInstruction::Play { .. }))
        .expect("Play");
    assert!(leave < play, "{:?}", net.media_log);
    assert_eq!(net.playing(T, a.t), Some(None));
    assert_eq!(net.hears_all(A, a.phone), vec![(T, a.t)]);
    assert_eq!(heard(&net, &b), origins(&[&c]));
    assert_eq!(
        room_events(&net, room).last(),
        Some(&RoomEvent::Left {
            call: a.t,
            reason: RoomLeaveReason::Parked
        })
    );
    assert_eq!(net.engine(T).orbit_of(a.t), Some(orbit));
    // A parked call is no room member to be: it is not `Established`.
    let now = net.now;
    assert!(matches!(
        net.engine(T).join_room(now, a.t, room),
        Err(CallError::InvalidState {
            operation: Operation::JoinRoom,
            state: CallState::Parking
        })
    ));
}

/// T bridges every call from alice to bob in `mode`; calls from carol it accepts.
fn bridging(mode: BridgeMode) -> impl FnMut(&mut calls::Engine, std::time::Instant, &Event) {
    move |engine, now, event| {
        if let Event::Endpoint {
            event: EndpointEvent::CallReceived(received),
            ..
        } = event
        {
            if received.from.contains("alice") {
                engine
                    .bridge(now, received.call, BOB, BridgeOptions::new().mode(mode))
                    .expect("bridge");
            } else {
                engine
                    .accept(now, received.call, CallAcceptOptions::new())
                    .expect("accept");
            }
        }
    }
}

#[test]
fn a_signalling_only_bridge_leg_cannot_join_a_room() {
    let (mut net, [alice, _bob, _carol]) = setup(bridging(BridgeMode::SignalingOnly));
    let a_call = dial(&mut net, A, alice, T_URI);
    net.run_for(secs(2));
    let leg_a = t_call_from(&net, A);
    let (bridge, _) = net.engine(T).bridge_of(leg_a).expect("bridged");
    let (_, leg_b) = net.engine(T).bridge_legs(bridge).unwrap();
    let b_call = net.only_received(B).call;
    // The phones hear each other directly.
    assert_eq!(net.hears_all(A, a_call), vec![(B, b_call)]);
    let room = net.engine(T).new_room();
    let now = net.now;
    for leg in [leg_a, leg_b] {
        let error = net.engine(T).join_room(now, leg, room).unwrap_err();
        assert!(
            matches!(error, CallError::NoOwnMedia { call, .. } if call == leg),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("cannot be mixed in a room") && text.contains("signalling-only"),
            "{text}"
        );
    }
    // Nothing changed.
    assert_eq!(net.engine(T).room_members(room), vec![]);
    assert_eq!(
        net.engine(T).bridge_state(bridge),
        Some(B2bState::Established)
    );
    assert_eq!(net.hears_all(A, a_call), vec![(B, b_call)]);
    assert!(room_events(&net, room).is_empty());
    // Other refusals: an unknown room, a call that is no call.
    let closed = net.engine(T).new_room();
    net.engine(T).close_room(now, closed).unwrap();
    assert!(matches!(
        net.engine(T).join_room(now, leg_a, closed),
        Err(CallError::NoSuchRoom(r)) if r == closed
    ));
}

#[test]
fn a_media_anchored_bridge_leg_leaves_its_bridge_for_the_room() {
    let (mut net, [alice, _bob, carol]) = setup(bridging(BridgeMode::MediaAnchored));
    let a_call = dial(&mut net, A, alice, T_URI);
    let c_call = dial(&mut net, C, carol, T_URI);
    net.run_for(secs(2));
    let leg_a = t_call_from(&net, A);
    let t_c = t_call_from(&net, C);
    let (bridge, _) = net.engine(T).bridge_of(leg_a).expect("bridged");
    let (_, leg_b) = net.engine(T).bridge_legs(bridge).unwrap();
    let b_call = net.only_received(B).call;
    // Through T's relay.
    assert_eq!(net.hears_all(A, a_call), vec![(B, b_call)]);
    let room = net.engine(T).new_room();
    let now = net.now;
    net.engine(T).join_room(now, t_c, room).unwrap();
    net.engine(T).join_room(now, leg_a, room).unwrap();
    net.run_for(Duration::from_millis(100));
    // The relay was unjoined first, and the bridge ended with the leg in the room.
    let unjoin = net
        .media_log
        .iter()
        .position(|(_, call, i)| *call == leg_a && matches!(i, MediaInstruction::Unjoin { .. }))
        .expect("Unjoin");
    let join = net
        .media_log
        .iter()
        .position(|(_, call, i)| *call == leg_a && matches!(i, MediaInstruction::JoinRoom { .. }))
        .expect("JoinRoom");
    assert!(unjoin < join);
    let bridge_events: Vec<B2bEvent> = net.nodes[T]
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Event::Bridge { bridge: b, event } if *b == bridge => Some(event.clone()),
            _ => None,
        })
        .collect();
    assert!(
        bridge_events.contains(&B2bEvent::JoinedRoom { call: leg_a, room }),
        "{bridge_events:?}"
    );
    assert_eq!(net.engine(T).bridge_state(bridge), None);
    assert_eq!(net.engine(T).bridge_of(leg_a), None);
    assert_eq!(net.engine(T).bridge_of(leg_b), None);
    // A and C hear each other; B hears T's own stream (silence), and is still up.
    assert_eq!(net.hears_all(A, a_call), vec![(C, c_call)]);
    assert_eq!(net.hears_all(C, c_call), vec![(A, a_call)]);
    assert_eq!(net.hears_all(B, b_call), vec![(T, leg_b)]);
    assert_eq!(
        net.engine(T).call_state(leg_b),
        Some(CallState::Established)
    );
    // B joins too: a three-party conference out of a two-party call.
    net.engine(T).join_room(now, leg_b, room).unwrap();
    net.run_for(Duration::from_millis(100));
    let mut heard_by_b = net.hears_all(B, b_call);
    heard_by_b.sort();
    let mut expected = vec![(A, a_call), (C, c_call)];
    expected.sort();
    assert_eq!(heard_by_b, expected);
    // A hang-up of A no longer ends B's call (the bridge is gone).
    let now = net.now;
    net.engine(A)
        .terminate(now, a_call, CallTerminateOptions::new())
        .unwrap();
    net.run_for(secs(1));
    assert_eq!(
        net.engine(T).call_state(leg_b),
        Some(CallState::Established)
    );
    assert_eq!(net.hears_all(B, b_call), vec![(C, c_call)]);
    assert!(net.call_events(T, leg_b).iter().all(|e| !matches!(
        e,
        CallEvent::StateChanged {
            state: CallState::Terminated,
            ..
        }
    )));
}

#[test]
fn a_call_not_yet_established_cannot_join() {
    // T never answers: the call rings.
    let (mut net, [alice, _, _]) = setup(|_, _, _| {});
    let _a_call = dial(&mut net, A, alice, T_URI);
    net.run_for(Duration::from_millis(200));
    let incoming = t_call_from(&net, A);
    let room = net.engine(T).new_room();
    let now = net.now;
    let error = net.engine(T).join_room(now, incoming, room).unwrap_err();
    assert!(
        matches!(
            error,
            CallError::InvalidState {
                operation: Operation::JoinRoom,
                state: CallState::Incoming
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "join_room is not allowed in state Incoming"
    );
}

#[test]
fn a_muted_member_hears_the_others_and_is_not_heard_until_unmuted() {
    let (mut net, [a, b, c]) = three_calls();
    let room = join_all(&mut net, &[a, b, c]);
    net.engine(T).set_muted(b.t, true).unwrap();
    assert!(net.engine(T).is_muted(b.t));
    net.run_for(Duration::from_millis(100));
    assert!(
        net.media_log.iter().any(|(n, call, i)| *n == T
            && *call == b.t
            && *i == MediaInstruction::Mute { muted: true }),
        "{:?}",
        net.media_log
    );
    assert_eq!(heard(&net, &a), origins(&[&c]));
    assert_eq!(heard(&net, &c), origins(&[&a]));
    assert_eq!(heard(&net, &b), origins(&[&a, &c]), "the muted one hears");
    // Muting again changes nothing and tells the media layer nothing.
    let log = net.media_log.len();
    net.engine(T).set_muted(b.t, true).unwrap();
    assert_eq!(net.media_log.len(), log);

    // The mute outlasts leaving and joining again.
    let now = net.now;
    net.engine(T).leave_room(now, b.t).unwrap();
    net.engine(T).join_room(now, b.t, room).unwrap();
    net.run_for(Duration::from_millis(100));
    assert!(net.engine(T).is_muted(b.t));
    assert_eq!(heard(&net, &a), origins(&[&c]));

    net.engine(T).set_muted(b.t, false).unwrap();
    net.run_for(Duration::from_millis(100));
    assert_eq!(heard(&net, &a), origins(&[&b, &c]));
    assert_eq!(room_events(&net, room).len(), 5, "mute is no room event");

    // A call that ends is forgotten; one that is not established is refused.
    net.engine(T).set_muted(c.t, true).unwrap();
    let now = net.now;
    net.engine(C)
        .terminate(now, c.phone, CallTerminateOptions::new())
        .unwrap();
    net.run_for(secs(1));
    assert!(!net.engine(T).is_muted(c.t));
    assert!(matches!(
        net.engine(T).set_muted(c.t, false),
        Err(CallError::InvalidState {
            operation: Operation::Mute,
            ..
        }) | Err(CallError::NoSuchCall(_))
    ));
}

#[test]
fn a_signalling_only_leg_cannot_be_muted() {
    let (mut net, [alice, _bob, _carol]) = setup(bridging(BridgeMode::SignalingOnly));
    dial(&mut net, A, alice, T_URI);
    net.run_for(secs(2));
    let leg = t_call_from(&net, A);
    assert!(net.engine(T).bridge_of(leg).is_some());
    assert!(matches!(
        net.engine(T).set_muted(leg, true),
        Err(CallError::NoOwnMedia { .. })
    ));
    assert!(!net.engine(T).is_muted(leg));
}
